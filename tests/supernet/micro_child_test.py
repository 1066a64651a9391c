"""Tests of taking an architecture's weights out of the micro supernet
(`enas_tf.supernet.micro_child`).

That the fixed child then computes what the supernet does is tested in
tests/supernet/micro_test.py; here: which weights, keyed how.
"""

import keras
import numpy as np
import pytest

from enas_tf.child.build import build_child
from enas_tf.supernet.micro import MicroSupernet
from enas_tf.supernet.micro_child import child_weights, kept_inputs, load_child_weights

SHAPE = (8, 8, 3)
# Normal: node 2 = sep3(0) + identity(1), node 3 = avg(2) + avg(0); reduction:
# node 2 = identity(0) + identity(1) (factorized reductions), node 3 = sep5(2) + max(0).
WITH_REDUCE_PATHS = (0, 0, 1, 4, 2, 2, 0, 2, 0, 4, 1, 4, 2, 1, 0, 3)
# Input 1 read by no node in either cell: a loose end of both.
LOOSE_INPUT = (0, 1, 0, 1, 2, 3, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2)
# Arcs whose cells read both of their inputs (random arc 5 does too).
ARCS = [WITH_REDUCE_PATHS, 5]


def arc_of(net, arc):
    return net.space.random_arc(arc) if isinstance(arc, int) else arc


@pytest.fixture(scope="module", params=["all", "loose_ends"])
def net(request):
    keras.utils.set_random_seed(0)
    return MicroSupernet(
        num_nodes=2,
        num_layers=3,
        out_filters=4,
        num_classes=5,
        image_shape=SHAPE,
        cell_output=request.param,
    )


_CHILDREN = {}


def child_of(net, arc):
    """The fixed child of `arc` (built once per cell output and arc: building is slow)."""
    key = (net.cell_output, tuple(arc))
    if key not in _CHILDREN:
        _CHILDREN[key] = build_child(
            net.space, arc, net.child_config(), image_shape=SHAPE, num_classes=5
        )
    return _CHILDREN[key]


@pytest.mark.parametrize("arc", ARCS)
def test_one_entry_per_weighted_child_layer(net, arc):
    arc = arc_of(net, arc)
    assert_one_entry_per_weighted_layer(net, arc)


def assert_one_entry_per_weighted_layer(net, arc):
    weights = child_weights(net, arc)
    child = child_of(net, arc)
    weighted = {layer.name: layer for layer in child.layers if layer.weights}
    assert len(weighted) == len([layer for layer in child.layers if layer.weights])
    assert set(weights) == set(weighted)
    for name, layer in weighted.items():
        shapes = [tuple(w.shape) for w in layer.get_weights()]
        assert [np.shape(w) for w in weights[name]] == shapes, name
    # The method of the supernet gives the same.
    same = net.child_weights(arc)
    assert set(same) == set(weights)
    for name in weights:
        for a, b in zip(same[name], weights[name]):
            np.testing.assert_array_equal(a, b)


def test_reduction_paths_and_loose_ends_have_entries(net):
    keys = set(child_weights(net, WITH_REDUCE_PATHS))
    reduction = sorted(net.reductions)[0]
    for slot in "ab":
        for part in ("path1", "path2", "bn"):
            assert f"cell{reduction}.node2.{slot}.reduce.{part}" in keys
    ends = {k for k in child_weights(net, LOOSE_INPUT) if ".end" in k}
    if net.cell_output == "all":
        assert not ends
    else:  # input 1 of each reduction cell is a loose end, reduced to half size
        assert ends == {
            f"cell{p}.end1.{part}" for p in net.reductions for part in ("path1", "path2", "bn")
        }
        # Every input is then part of a cell's output: no layer is dead.
        assert_one_entry_per_weighted_layer(net, LOOSE_INPUT)


@pytest.mark.parametrize("arc", [WITH_REDUCE_PATHS, LOOSE_INPUT])
def test_weights_are_the_shared_values(net, arc):
    weights = child_weights(net, arc)
    np.testing.assert_array_equal(weights["stem.conv"][0], net.shared["stem.conv"].numpy())
    # Cell 0, node 2, slot a reads input 0 with a sep conv: row 0 of the stacks.
    op = ("sep_conv_3x3", "sep_conv_5x5")[arc[1]]
    dw, pw = weights["cell0.node2.a.sep1.conv"]
    np.testing.assert_array_equal(dw, net.shared[f"cell0.{op}.sep1.dw"].numpy()[0])
    np.testing.assert_array_equal(pw, net.shared[f"cell0.{op}.sep1.pw"].numpy()[0])
    # The classifier reads the last (normal) cell's output: rows of its nodes.
    rows = [0, 1] if net.cell_output == "all" else list(net.space.decode(arc).normal.loose_ends)
    want = net.shared["logits.fc"].numpy()[rows].reshape(-1, 5)
    np.testing.assert_array_equal(weights["logits.fc"][0], want)


def test_load_child_weights_sets_every_layer(net):
    arc = WITH_REDUCE_PATHS
    weights = child_weights(net, arc)
    child = child_of(net, arc)
    load_child_weights(child, weights)
    for layer in (layer for layer in child.layers if layer.weights):
        got, want = layer.get_weights(), weights[layer.name]
        assert len(got) == len(want), layer.name
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("missing", ["stem.bn", "logits.fc", "cell0.node2.a.sep1.conv"])
def test_load_child_weights_names_a_missing_layer(net, missing):
    arc = WITH_REDUCE_PATHS
    weights = child_weights(net, arc)
    del weights[missing]
    child = child_of(net, arc)
    with pytest.raises(ValueError, match=rf"No shared weights for child layer '{missing}'\."):
        load_child_weights(child, weights)


def test_load_child_weights_refuses_other_shapes(net):
    weights = child_weights(net, WITH_REDUCE_PATHS)
    kernel = weights["stem.conv"][0]
    weights["stem.conv"] = [np.zeros((*kernel.shape[:3], kernel.shape[3] + 2), kernel.dtype)]
    with pytest.raises(ValueError):
        load_child_weights(child_of(net, WITH_REDUCE_PATHS), weights)


# The reduction cells (positions 1 and 3) read input 0 only: with
# cell_output="all" the child has no cell1.in.y / cell3.in.y layers.
UNREAD_INPUT = (0, 0, 1, 4, 2, 2, 0, 2, 0, 0, 0, 0, 2, 2, 2, 2)
# Normal cells read input 1 only, reduction cells input 0 only: with
# cell_output="all" nothing reads cells 0 and 2, and the child drops them.
DEAD_CELLS = (1, 0, 1, 4, 2, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2)


@pytest.mark.parametrize("arc", [UNREAD_INPUT, DEAD_CELLS, LOOSE_INPUT, 0, 1, 2, 3])
def test_entries_match_the_child_whatever_it_drops(net, arc):
    # With cell_output="all" a child drops the input calibrations no node
    # reads, and cells nothing reads; the weights must leave them out too, or
    # weight inheritance (`supernet.transfer.load_inherited`) refuses them.
    assert_one_entry_per_weighted_layer(net, arc_of(net, arc))


def test_kept_inputs(net):
    unread = kept_inputs(net, net.space.decode(UNREAD_INPUT))
    dead = kept_inputs(net, net.space.decode(DEAD_CELLS))
    if net.cell_output == "loose_ends":
        assert unread == dead == [{0, 1}] * (net.num_layers + 2)
    else:
        assert unread == [{0, 1}, {0}, {0, 1}, {0}, {0, 1}]
        # Cell 4 (normal) reads input 1 (cell 3); cell 3 (reduction) reads
        # input 0 (cell 1); nothing reads cells 2 and 0.
        assert dead == [None, {0}, None, {0}, {1}]
        keys = child_weights(net, DEAD_CELLS)
        assert not any(k.startswith(("cell0.", "cell2.")) for k in keys)
