"""Tests of enas_tf.child.micro: the fixed micro network (stacked cells)."""

import keras
import numpy as np
import pytest

from enas_tf import spaces
from enas_tf.child.build import build_child, inference_model
from enas_tf.child.micro import build_micro_child
from enas_tf.configs.image import ChildConfig
from enas_tf.ops.blocks import DropPath
from enas_tf.ops.flops import count_params
from enas_tf.spaces.micro import MICRO_OPS, reduction_positions

# ----- parameter counts by hand, from the structure in ENAS_REFERENCE -------


def bn(c):
    return 2 * c


def fr(c_in, c_out):  # two 1x1 convs to c_out/2, then BN
    return c_in * c_out + bn(c_out)


def conv_bn(c_in, c_out, k=1):
    return k * k * c_in * c_out + bn(c_out)


def micro_params(arch, num_layers, c0, classes, aux):
    def sep(c, k):
        return 2 * (k * k * c + c * c + bn(c))

    reductions = reduction_positions(num_layers)
    c = c0
    pp = p = (3 * c0, 32)  # (channels, resolution) of the stem
    total = conv_bn(3, 3 * c0, 3)
    aux_in = None
    for position in range(num_layers + 2):
        red = position in reductions
        c = 2 * c if red else c
        if pp[1] == 2 * p[1]:
            total += fr(pp[0], c)
        else:
            total += conv_bn(pp[0], c)
        total += conv_bn(p[0], c)
        cell = arch.reduce if red else arch.normal
        for node in cell.nodes:
            for index, op_id in ((node.input_a, node.op_a), (node.input_b, node.op_b)):
                op = MICRO_OPS[op_id]
                if op.startswith("sep"):
                    total += sep(c, int(op[-1]))
                elif op == "identity" and red and index < 2:
                    total += fr(c, c)
        ends = cell.loose_ends
        if red:
            total += sum(fr(c, c) for i in ends if i < 2)
        pp, p = p, (len(ends) * c, p[1] // 2 if red else p[1])
        if position == reductions[1] + 1:
            aux_in = p[0]
    total += p[0] * classes
    if aux:
        total += conv_bn(aux_in, 128) + conv_bn(128, 768, 2) + 768 * classes
    return total


def test_published_micro_builds_at_final_settings():
    space, arc = spaces.load_arc("enas_micro_final")
    arch = space.decode(arc)
    config = ChildConfig(
        out_filters=36,
        num_layers=15,
        keep_prob=0.8,
        drop_path_keep_prob=0.6,
        aux_weight=0.4,
    )
    model = build_child(space, arc, config, image_shape=(32, 32, 3), num_classes=10)
    assert count_params(model) == micro_params(arch, 15, 36, 10, aux=True) == 4_224_268
    twin = inference_model(space, arc, config, model)
    assert count_params(twin) == micro_params(arch, 15, 36, 10, aux=False) == 3_729_420
    # Spec sec. 7.2: output channels 180 (C = 36), 288 after the first
    # reduction, 720 at the end; the aux head reads position 12.
    assert model.get_layer("cell4.out").output.shape[1:] == (32, 32, 180)
    assert model.get_layer("cell5.out").output.shape[1:] == (16, 16, 288)
    assert model.get_layer("cell16.out").output.shape[1:] == (8, 8, 720)
    assert model.get_layer("aux.relu").input.shape[1:] == (8, 8, 720)
    assert reduction_positions(15) == (5, 11) and reduction_positions(6) == (2, 5)


def test_layer_base_adds_one_conv_per_cell():
    space, arc = spaces.load_arc("enas_micro_final")
    plain = build_child(
        space,
        arc,
        ChildConfig(out_filters=8, num_layers=3),
        image_shape=(32, 32, 3),
        num_classes=10,
    )
    based = build_child(
        space,
        arc,
        ChildConfig(out_filters=8, num_layers=3, layer_base=True),
        image_shape=(32, 32, 3),
        num_classes=10,
    )
    widths = [8, 16, 16, 32, 32]  # C of the 5 cells
    assert count_params(based) - count_params(plain) == sum(c * c + 2 * c for c in widths)


def test_all_micro_ops_in_both_cells():
    space = spaces.MicroSpace(num_nodes=5)
    # Node n uses op n-2 on input 0 and input 1: every op, strided or not.
    cell = [v for n in range(5) for v in (0, n, 1, n)]
    model = build_child(
        space,
        cell + cell,
        ChildConfig(out_filters=4, num_layers=3),
        image_shape=(8, 8, 3),
        num_classes=3,
    )
    assert model(np.zeros((1, 8, 8, 3), "float32")).shape == (1, 3)


# ----- small networks, inspected layer by layer -------------------------------

C = 4  # out_filters
SPACE = spaces.MicroSpace(num_nodes=2)
SEP3, SEP5, AVG, MAX, IDENTITY = range(5)
# Normal cell: node2 = sep3(in0) + identity(in1), node3 = avg(node2) + max(in0);
# loose end: node3 alone. Reduction cell: node2 = identity(in0) + avg(in1),
# node3 = sep5(in0) + identity(in0); loose ends: node2, node3.
ARC = [0, SEP3, 1, IDENTITY, 2, AVG, 0, MAX] + [0, IDENTITY, 1, AVG, 0, SEP5, 0, IDENTITY]
# A reduction cell that leaves its input 1 loose: node2 = sep3(in0) +
# sep3(in0), node3 = sep3(node2) + sep3(node2); loose ends: in1, node3.
LOOSE_INPUT = ARC[:8] + [0, SEP3, 0, SEP3, 2, SEP3, 2, SEP3]
# num_layers=3: five cell positions, reductions at 1 and 3 (8x8 -> 4x4 -> 2x2).
LAYERS = 3


def build(arc=ARC, **kwargs):
    settings = dict(image_shape=(8, 8, 3), num_classes=5, num_layers=LAYERS, out_filters=C)
    return build_micro_child(SPACE.decode(arc), **{**settings, **kwargs})


def source(tensor) -> str:
    """The name of the layer that computed a Keras tensor."""
    return tensor._keras_history.operation.name


def names(model, prefix) -> set[str]:
    return {layer.name for layer in model.layers if layer.name.startswith(prefix)}


def cell_output(model, position) -> keras.KerasTensor:
    """What cell `position` hands on: the next cell's calibration input."""
    return model.get_layer(f"cell{position + 1}.in.y.relu").input


def test_cells_reduce_where_the_space_says_and_read_the_two_previous():
    assert reduction_positions(LAYERS) == (1, 3)
    model = build()
    # The stem has 3*C channels; the first cell reads it as both inputs.
    assert model.get_layer("stem.bn").output.shape[1:] == (8, 8, 3 * C)
    assert source(model.get_layer("cell0.in.x.relu").input) == "stem.bn"
    assert source(model.get_layer("cell0.in.y.relu").input) == "stem.bn"
    # Normal cells output their single loose end (node3, C channels) as is;
    # reduction cells concatenate node2 and node3 at half the resolution.
    shapes = [cell_output(model, p).shape[1:] for p in range(4)]
    assert shapes == [(8, 8, C), (4, 4, 4 * C), (4, 4, 2 * C), (2, 2, 8 * C)]
    assert [source(cell_output(model, p)) for p in range(4)] == [
        "cell0.node3",
        "cell1.out",
        "cell2.node3",
        "cell3.out",
    ]
    # Each cell reads [two cells back, previous]; when the older input is
    # twice as large (just after a reduction) it gets a factorized
    # reduction, otherwise a 1x1 conv, like the newer input.
    for position in range(1, 5):
        older = "stem.bn" if position == 1 else source(cell_output(model, position - 2))
        assert source(model.get_layer(f"cell{position}.in.x.relu").input) == older
        assert source(model.get_layer(f"cell{position}.in.y.relu").input) == source(
            cell_output(model, position - 1)
        )
    for position in (0, 1, 3):
        assert f"cell{position}.in.x.conv" in names(model, f"cell{position}.in.x")
    for position in (2, 4):  # after a reduction
        assert names(model, f"cell{position}.in.x.") >= {
            f"cell{position}.in.x.path1",
            f"cell{position}.in.x.path2",
        }
        assert f"cell{position}.in.x.conv" not in names(model, f"cell{position}.in.x")
    # The head has a ReLU before the pool (cells end in additions).
    assert source(model.get_layer("logits.relu").input) == "cell4.node3"


def test_reduction_cells_stride_what_reads_their_inputs():
    model = build()
    shape = lambda name: tuple(model.get_layer(name).output.shape[1:])
    # Normal cell: identity builds nothing; ops keep the resolution.
    assert not names(model, "cell0.node2.b.")
    assert shape("cell0.node2.a.sep2.bn") == (8, 8, C)
    assert shape("cell0.node3.a.pool") == (8, 8, C)
    # Reduction cell: ops on node 0/1 have stride 2 (identity: a factorized
    # reduction), ops on computed nodes stride 1.
    reduce = model.get_layer("cell1.node2.b.pool")
    assert reduce.strides == (2, 2) and shape("cell1.node2.b.pool") == (4, 4, 2 * C)
    assert shape("cell1.node2.a.reduce.bn") == (4, 4, 2 * C)
    assert shape("cell1.node3.b.reduce.bn") == (4, 4, 2 * C)
    assert model.get_layer("cell1.node3.a.sep1.conv").strides == (2, 2)
    assert model.get_layer("cell1.node3.a.sep2.conv").strides == (1, 1)
    assert shape("cell1.node3.a.sep1.conv") == (4, 4, 2 * C)
    assert model.get_layer("cell1.node3.a.sep1.conv").kernel_size == (5, 5)
    # LOOSE_INPUT's reduction cell: node3 reads node2 at stride 1, and the
    # loose input 1 is reduced before the concatenation.
    loose = build(LOOSE_INPUT)
    assert loose.get_layer("cell1.node3.a.sep1.conv").strides == (1, 1)
    ends = [source(t) for t in loose.get_layer("cell1.out").input]
    assert ends == ["cell1.end1.bn", "cell1.node3"]
    assert loose.get_layer("cell1.out").output.shape[1:] == (4, 4, 4 * C)


def test_cell_output_all_concatenates_every_computed_node():
    loose, every = build(LOOSE_INPUT), build(LOOSE_INPUT, cell_output="all")
    for position in range(5):
        ends = [source(t) for t in every.get_layer(f"cell{position}.out").input]
        assert ends == [f"cell{position}.node2", f"cell{position}.node3"]
    # B*C channels in every cell, whatever its loose ends; no input is
    # reduced for the output.
    widths = [every.get_layer(f"cell{p}.out").output.shape[-1] for p in range(5)]
    assert widths == [2 * C, 4 * C, 4 * C, 8 * C, 8 * C]
    assert not names(every, "cell1.end") and names(loose, "cell1.end1.")
    # Nothing reads the reduction cell's input 1 any more, so its
    # calibration is left out of the model.
    assert not names(every, "cell1.in.y") and names(loose, "cell1.in.y.")
    assert [cell_output(loose, p).shape[-1] for p in range(4)] == [C, 4 * C, 2 * C, 8 * C]
    images = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    assert every(images).shape == (2, 5)


def test_drop_path_keep_probability_falls_with_depth_and_skips_identity():
    model = build(drop_path_keep_prob=0.5)
    drops = {layer.name: layer for layer in model.layers if isinstance(layer, DropPath)}
    # Every op but identity (also when reduced) is followed by drop path.
    branches = {
        "normal": ["node2.a", "node3.a", "node3.b"],
        "reduce": ["node2.b", "node3.a"],
    }
    expected = {}
    for position in range(5):
        kind = "reduce" if position in (1, 3) else "normal"
        for branch in branches[kind]:
            expected[f"cell{position}.{branch}.drop"] = 1 - (position + 1) / 5 * 0.5
    assert set(drops) == set(expected)
    for name, keep in expected.items():
        assert drops[name].final_keep_prob == pytest.approx(keep)
        assert source(drops[name].input).startswith(name.removesuffix("drop"))
    # The last cell reaches drop_path_keep_prob; 1 builds no DropPath at all.
    assert drops["cell4.node3.b.drop"].final_keep_prob == pytest.approx(0.5)
    assert not any(isinstance(layer, DropPath) for layer in build().layers)


def test_aux_head_follows_the_cell_after_the_second_reduction():
    model = build(aux_head=True)
    assert len(model.outputs) == 2
    assert source(model.get_layer("aux.relu").input) == "cell4.node3"
    # Maps smaller than 5x5 are pooled whole (here 2x2 -> 1x1), and the
    # 2x2 conv shrinks to what is left.
    pool = model.get_layer("aux.pool")
    assert pool.pool_size == (2, 2) and pool.strides == (1, 1)
    assert model.get_layer("aux.conv.conv").kernel.shape == (1, 1, 128, 768)
    assert model.get_layer("aux_logits.fc").kernel.shape == (768, 5)
    images = np.random.default_rng(0).normal(size=(3, 8, 8, 3)).astype("float32")
    logits, aux_logits = model(images)
    assert logits.shape == aux_logits.shape == (3, 5)
    # At CIFAR size: average pool 5x5, stride 3, over the 8x8 map.
    big = build(image_shape=(32, 32, 3), aux_head=True)
    pool = big.get_layer("aux.pool")
    assert pool.pool_size == (5, 5) and pool.strides == (3, 3)
    assert pool.output.shape[1:3] == (2, 2)
    assert big.get_layer("aux.conv.conv").kernel.shape == (2, 2, 128, 768)
    assert not names(build(), "aux")
