"""Tests of DARTS's relaxed networks (`enas_tf.supernet.relaxed`)."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas_tf.child.macro import build_macro_child
from enas_tf.child.micro import build_micro_child
from enas_tf.ops.blocks import Blocks, op_branch
from enas_tf.spaces.macro import MacroSpace
from enas_tf.spaces.micro import MicroSpace, cell_edges, relaxed_ops
from enas_tf.supernet.relaxed import (
    EdgeMix,
    SkipGate,
    build_relaxed_macro,
    build_relaxed_micro,
    mixed_edge,
)

SPACE = MicroSpace(num_nodes=2)
SHAPE = (8, 8, 3)
# Two distinct inputs per node, every op used: normal node 2 = sep3(0) +
# identity(1), node 3 = avg(2) + sep5(0); reduction node 2 = identity(0) +
# max(1) (strided), node 3 = sep3(2) + avg(1).
ARC = (0, 0, 1, 4, 2, 2, 0, 1, 0, 4, 1, 3, 2, 0, 1, 2)


def test_edges_and_ops():
    assert cell_edges(2) == ((0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    assert len(cell_edges(5)) == 5 * 8 // 2
    assert relaxed_ops(SPACE.ops) == (*SPACE.ops, "none")
    assert relaxed_ops(SPACE.ops, none_op=False) == SPACE.ops


def test_mixed_op_is_the_weighted_sum_of_the_tables_ops():
    """One edge of a reduction cell (strided): its output is sum_k w_k op_k(x)
    over the table's ops (none adds nothing), each op the fixed child's."""
    keras.utils.set_random_seed(1)
    ops = relaxed_ops(SPACE.ops)
    x = keras.Input(shape=(8, 8, 4))
    mix = keras.Input(batch_shape=(2, 5, len(ops)))
    blocks = Blocks()
    out = mixed_edge(blocks, x, ops, 4, 2, 1, 3, mix, "edge", pool_bn=False)
    layer = out._keras_history.operation
    assert isinstance(layer, EdgeMix)
    relaxed = keras.Model([x, mix], out)
    images = np.random.default_rng(0).normal(size=(3, 8, 8, 4)).astype(np.float32)
    weights = np.random.default_rng(1).uniform(size=(2, 5, len(ops))).astype(np.float32)
    expected = 0.0
    for k, op in enumerate(ops[:-1]):
        xi = keras.Input(shape=(8, 8, 4))
        single = keras.Model(xi, op_branch(blocks, xi, op, 4, 2, f"edge.{op}"))
        for la in single.layers:
            if la.weights:
                la.set_weights(relaxed.get_layer(la.name).get_weights())
        expected = expected + weights[1, 3, k] * single(images, training=True).numpy()
    got = relaxed([images, weights], training=True).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert layer.ops == [0, 1, 2, 3, 4]  # "none" (index 5) is not computed


def _child_name(name, arc):
    """The relaxed network's name of the fixed child's layer `name`."""
    match = re.match(r"cell(\d+)\.node(\d+)\.([ab])\.(.*)", name)
    if not match:
        return name
    position, node, slot, rest = match.groups()
    reduction = int(position) in (1, 3)  # num_layers=3: reductions at 1 and 3
    cell = SPACE.decode(arc).reduce if reduction else SPACE.decode(arc).normal
    spec = cell.nodes[int(node) - 2]
    index, op = (spec.input_a, spec.op_a) if slot == "a" else (spec.input_b, spec.op_b)
    return f"cell{position}.node{node}.from{index}.{SPACE.ops[op]}.{rest}"


def one_hot(arc):
    mix = np.zeros((2, len(cell_edges(2)), len(relaxed_ops(SPACE.ops))), np.float32)
    index = {e: i for i, e in enumerate(cell_edges(2))}
    arc = np.reshape(arc, (2, 2, 4))
    for cell in range(2):
        for n, (a, op_a, b, op_b) in enumerate(arc[cell], start=2):
            mix[cell, index[(a, n)], op_a] = 1.0
            mix[cell, index[(b, n)], op_b] = 1.0
    return mix


def test_one_hot_weights_compute_the_fixed_child():
    keras.utils.set_random_seed(2)
    relaxed = build_relaxed_micro(
        SPACE,
        image_shape=SHAPE,
        num_classes=5,
        num_layers=3,
        out_filters=4,
        affine=True,
        pool_bn=False,
    )
    child = build_micro_child(
        SPACE.decode(ARC),
        image_shape=SHAPE,
        num_classes=5,
        num_layers=3,
        out_filters=4,
        cell_output="all",
    )
    assert len(child.trainable_weights) < len(relaxed.trainable_weights)
    for layer in child.layers:
        if layer.weights:
            source = relaxed.get_layer(_child_name(layer.name, ARC))
            # Random, not the initial values: every weight must be matched.
            values = [
                np.random.default_rng(len(w.path)).normal(size=w.shape).astype(np.float32)
                if w.trainable
                else w.numpy()
                for w in source.weights
            ]
            source.set_weights(values)
            layer.set_weights(values)
    images = np.random.default_rng(3).normal(size=(4, *SHAPE)).astype(np.float32)
    for training in (False, True):
        np.testing.assert_allclose(
            relaxed([images, one_hot(ARC)], training=training).numpy(),
            child(images, training=training).numpy(),
            rtol=1e-4,
            atol=1e-4,
        )
    # Other weights change the output (the mixture is live).
    mixed = np.full_like(one_hot(ARC), 1.0 / len(relaxed_ops(SPACE.ops)))
    assert not np.allclose(relaxed([images, mixed]).numpy(), child(images).numpy(), atol=1e-3)


def test_darts_options_change_the_batch_norms():
    keras.utils.set_random_seed(3)
    net = build_relaxed_micro(SPACE, image_shape=SHAPE, num_classes=3, num_layers=0, out_filters=4)
    names = [w.path for w in net.weights]
    # affine=False: no gamma/beta in the cells, the stem keeps its own.
    assert any(p.startswith("stem.bn") and p.endswith("gamma") for p in names)
    assert not any(p.startswith("cell") and p.endswith(("gamma", "beta")) for p in names)
    # pool_bn: a batch norm after each pool.
    assert any(".avg_pool_3x3.bn/" in p for p in names)
    mix = tf.nn.softmax(tf.zeros((2, len(cell_edges(2)), 6))).numpy()
    assert net([np.zeros((2, *SHAPE), np.float32), mix]).shape == (2, 3)


@pytest.mark.parametrize("none_op", [True, False])
def test_mix_input_shape(none_op):
    net = build_relaxed_micro(
        MicroSpace(num_nodes=1, num_ops=3),
        image_shape=SHAPE,
        num_classes=2,
        num_layers=0,
        out_filters=2,
        none_op=none_op,
    )
    assert net.inputs[1].shape == (2, 2, 3 + none_op)


# Macro: 4 layers (reductions after layers 0 and 1), every op once or more:
# sep3; avg + skip stem; conv5 + skip layer0; max + skips stem, layer1.
MACRO = MacroSpace(num_layers=4)
MACRO_ARC = (1, 4, 1, 2, 0, 1, 5, 1, 0, 1)
MACRO_OPS = relaxed_ops(MACRO.ops)


def macro_one_hot(arc):
    mix = np.zeros((1, 4, len(MACRO_OPS) + 4), np.float32)
    for layer, decoded in enumerate(MACRO.decode(arc).layers):
        mix[0, layer, decoded.op] = 1.0
        for j, bit in enumerate(decoded.skip_bits):
            mix[0, layer, len(MACRO_OPS) + j] = bit
    return mix


def _macro_child_weights(name, relaxed, arc):
    """The fixed macro child's weights of layer `name`, from `relaxed`: op
    layers by their op's name; a skip projection's kernel is the rows of
    its selected inputs and of the op's output."""
    layers = MACRO.decode(arc).layers
    match = re.match(r"layer(\d+)\.op\.(.*)", name)
    if match:
        index, rest = int(match.group(1)), match.group(2)
        return relaxed.get_layer(
            f"layer{index}.op.{MACRO.ops[layers[index].op]}.{rest}"
        ).get_weights()
    match = re.match(r"layer(\d+)\.skip\.conv", name)
    if match:
        index = int(match.group(1))
        (kernel,) = relaxed.get_layer(name).get_weights()
        width = kernel.shape[2] // (index + 1)
        rows = [*layers[index].skip_sources, index]
        return [np.concatenate([kernel[:, :, j * width : (j + 1) * width] for j in rows], 2)]
    return relaxed.get_layer(name).get_weights()


def test_macro_one_hot_weights_compute_the_fixed_child():
    keras.utils.set_random_seed(4)
    relaxed = build_relaxed_macro(
        MACRO, image_shape=SHAPE, num_classes=5, out_filters=4, affine=True, pool_bn=False
    )
    for w in relaxed.trainable_weights:  # random, not initial: every weight must match
        w.assign(np.random.default_rng(len(w.path)).normal(size=w.shape).astype(np.float32))
    child = build_macro_child(
        MACRO.decode(MACRO_ARC), image_shape=SHAPE, num_classes=5, out_filters=4
    )
    assert len(child.trainable_weights) < len(relaxed.trainable_weights)
    for layer in child.layers:
        if layer.weights:
            layer.set_weights(_macro_child_weights(layer.name, relaxed, MACRO_ARC))
    images = np.random.default_rng(5).normal(size=(4, *SHAPE)).astype(np.float32)
    for training in (False, True):
        np.testing.assert_allclose(
            relaxed([images, macro_one_hot(MACRO_ARC)], training=training).numpy(),
            child(images, training=training).numpy(),
            rtol=1e-4,
            atol=1e-4,
        )
    # A half-open gate changes the output (skips are live).
    gated = macro_one_hot(MACRO_ARC)
    gated[0, 2, len(MACRO_OPS)] = 0.5
    assert not np.allclose(relaxed([images, gated]).numpy(), child(images).numpy(), atol=1e-3)


def test_macro_gate_scales_its_input():
    x = np.random.default_rng(6).normal(size=(2, 3, 3, 2)).astype(np.float32)
    mix = np.zeros((1, 3, 9), np.float32)
    mix[0, 2, 7] = 0.25
    np.testing.assert_allclose(SkipGate(2, 7)([x, mix]).numpy(), 0.25 * x)


@pytest.mark.parametrize("none_op", [True, False])
def test_macro_mix_input_and_options(none_op):
    net = build_relaxed_macro(
        MacroSpace(num_layers=3, num_ops=5),
        image_shape=SHAPE,
        num_classes=2,
        out_filters=2,
        none_op=none_op,
    )
    assert net.inputs[1].shape == (1, 3, 5 + none_op + 3)
    names = [w.path for w in net.weights]
    assert any(p.startswith("stem.bn") and p.endswith("gamma") for p in names)
    assert not any(p.startswith("layer") and p.endswith(("gamma", "beta")) for p in names)
    assert any(".avg_pool_3x3.bn/" in p for p in names)
    assert not any(".max_pool_3x3" in p for p in names)  # num_ops=5
