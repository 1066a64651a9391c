"""Tests of the fixed child networks (macro and micro)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas_tf import spaces
from enas_tf.child.build import build_child, inference_model
from enas_tf.configs.image import ChildConfig
from enas_tf.errors import UserError
from enas_tf.ops.blocks import DropPath
from enas_tf.ops.flops import count_params
from enas_tf.spaces.macro import MACRO_OPS, pool_layers
from enas_tf.spaces.micro import MICRO_OPS, reduction_positions

# ----- parameter counts by hand, from the structure in ENAS_REFERENCE -------


def bn(c):
    return 2 * c


def fr(c_in, c_out):  # two 1x1 convs to c_out/2, then BN
    return c_in * c_out + bn(c_out)


def conv_bn(c_in, c_out, k=1):
    return k * k * c_in * c_out + bn(c_out)


def macro_params(arch, c0, classes, separable):
    c = c0
    total = conv_bn(3, c, 3)  # stem
    pools = pool_layers(len(arch.layers))
    for index, layer in enumerate(arch.layers):
        op = MACRO_OPS[layer.op]
        total += conv_bn(c, c)  # the op's leading 1x1
        if not op.endswith("pool_3x3"):
            k = int(op[-1])
            if op.startswith("sep") and separable:
                total += k * k * c + c * c + bn(c)
            else:
                total += conv_bn(c, c, k)
        if index > 0:
            total += conv_bn((len(layer.skip_sources) + 1) * c, c)
        if index in pools:
            # Every earlier tensor (stem + layers 0..index) is reduced; all of
            # them feed a later layer in the published network.
            total += (index + 2) * fr(c, 2 * c)
            c *= 2
    return total + c * classes


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


def test_published_macro_builds_at_final_settings():
    space, arc = spaces.load_arc("enas_macro_final")
    arch = space.decode(arc)
    for separable, pinned in ((True, 30_947_424), (False, 42_559_392)):
        model = build_child(
            space,
            arc,
            ChildConfig(out_filters=96, keep_prob=0.5, separable=separable),
            image_shape=(32, 32, 3),
            num_classes=10,
        )
        assert count_params(model) == macro_params(arch, 96, 10, separable) == pinned
        assert model.output_shape == (None, 10)
    # Channels double at the two reductions: 96 -> 192 -> 384.
    assert model.get_layer("logits.fc").kernel.shape == (384, 10)


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


TINY = [
    (spaces.MicroSpace(num_nodes=2), ChildConfig(out_filters=4, num_layers=3)),
    (spaces.MacroSpace(num_layers=4), ChildConfig(out_filters=4)),
]


@pytest.mark.parametrize("space, config", TINY, ids=["micro", "macro"])
def test_every_op_builds_and_eager_equals_graph(space, config):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    for seed in range(4):
        arc = space.random_arc(seed)
        model = build_child(space, arc, config, image_shape=(8, 8, 3), num_classes=5)
        eager = model(images, training=False)
        graph = tf.function(lambda x, m=model: m(x, training=False))(images)
        np.testing.assert_allclose(eager, graph, rtol=1e-5, atol=1e-5)
        assert eager.shape == (2, 5) and eager.dtype == tf.float32


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


def test_inference_twin_matches_and_reloads_without_enas_tf(tmp_path):
    space = spaces.MicroSpace(num_nodes=2)
    arc = space.random_arc(5)
    config = ChildConfig(out_filters=4, num_layers=3, drop_path_keep_prob=0.5, aux_weight=0.4)
    model = build_child(space, arc, config, image_shape=(8, 8, 1), num_classes=4)
    assert any(isinstance(layer, DropPath) for layer in model.layers)
    twin = inference_model(space, arc, config, model)
    assert not any(isinstance(layer, DropPath) for layer in twin.layers)
    images = np.random.default_rng(1).normal(size=(3, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(model(images, training=False)[0], twin(images), atol=1e-6)
    twin.save(tmp_path / "twin.keras")
    # The twin is stock Keras only: it loads with no custom objects at all.
    with keras.saving.custom_object_scope({}):
        loaded = keras.models.load_model(tmp_path / "twin.keras", compile=False)
    np.testing.assert_allclose(loaded(images), twin(images), atol=1e-6)
    # The training model (with DropPath) round-trips through .keras too.
    model.save(tmp_path / "train.keras")
    again = keras.models.load_model(tmp_path / "train.keras", compile=False)
    np.testing.assert_allclose(again(images)[0], model(images)[0], atol=1e-6)


def test_drop_path():
    layer = DropPath(0.25, seed=3)
    x = np.ones((4000, 1, 1, 2), "float32")
    np.testing.assert_array_equal(layer(x, training=False), x)
    layer.progress.assign(0.0)
    np.testing.assert_array_equal(layer(x, training=True), x)  # keep = 1
    layer.progress.assign(1.0)
    out = np.asarray(layer(x, training=True))
    assert set(np.unique(out)) == {0.0, 4.0}  # dropped, or scaled by 1/keep
    assert abs((out[:, 0, 0, 0] > 0).mean() - 0.25) < 0.03
    np.testing.assert_array_equal(out[..., 0], out[..., 1])  # whole example
    assert DropPath.from_config(layer.get_config()).final_keep_prob == 0.25


def test_bad_configs():
    micro, macro = spaces.MicroSpace(num_nodes=1), spaces.MacroSpace(num_layers=2)
    arc = micro.random_arc(0)
    shape = dict(image_shape=(8, 8, 3), num_classes=2)
    with pytest.raises(UserError, match="even number"):
        build_child(micro, arc, ChildConfig(out_filters=5), **shape)
    with pytest.raises(UserError, match="no auxiliary head and no drop path"):
        build_child(macro, macro.random_arc(0), ChildConfig(aux_weight=0.4), **shape)
    with pytest.raises(UserError, match="num_layers >= 3"):
        build_child(micro, arc, ChildConfig(num_layers=2), **shape)
    with pytest.raises(UserError, match="cell_output must be one of loose_ends, all"):
        build_child(micro, arc, ChildConfig(cell_output="every"), **shape)
    with pytest.raises(UserError, match="macro network has no cells"):
        build_child(macro, macro.random_arc(0), ChildConfig(cell_output="all"), **shape)
    with pytest.raises(UserError, match="recurrent cell"):
        build_child(spaces.RnnSpace(2), (0, 0, 0, 0), ChildConfig(), **shape)
    with pytest.raises(spaces.ArcError, match="expected 8 integers"):
        build_child(micro, arc[:-1], ChildConfig(), **shape)
