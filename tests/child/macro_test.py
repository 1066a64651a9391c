"""Tests of enas_tf.child.macro: the fixed macro network of an architecture."""

import keras
import numpy as np
import pytest

from enas_tf import spaces
from enas_tf.child.build import build_child
from enas_tf.child.macro import build_macro_child
from enas_tf.configs.image import ChildConfig
from enas_tf.ops.flops import count_params
from enas_tf.spaces.macro import MACRO_OPS, MacroArch, MacroLayer, pool_layers

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


# ----- small networks, inspected layer by layer -------------------------------

C = 4  # out_filters
# Six layers: the network reduces after layers 1 and 3 (8x8 -> 4x4 -> 2x2).
SKIPPY = MacroArch(
    (
        MacroLayer(0, ()),
        MacroLayer(1, (1,)),  # skip from the stem
        MacroLayer(4, (0, 0)),  # no skips
        MacroLayer(5, (1, 0, 1)),  # the stem and layer1, both reduced once
        MacroLayer(2, (0, 0, 0, 0)),
        MacroLayer(3, (1, 0, 0, 0, 1)),  # the stem (reduced twice) and layer3
    )
)
NO_SKIPS = MacroArch(tuple(MacroLayer(0, (0,) * i) for i in range(6)))


def build(arch, **kwargs):
    settings = dict(image_shape=(8, 8, 3), num_classes=5, out_filters=C)
    return build_macro_child(arch, **{**settings, **kwargs})


def source(tensor) -> str:
    """The name of the layer that computed a Keras tensor."""
    return tensor._keras_history.operation.name


def names(model, part) -> set[str]:
    return {layer.name for layer in model.layers if part in layer.name}


def test_skips_concatenate_the_selected_tensors_before_the_op_output():
    assert pool_layers(6) == (1, 3)
    model = build(SKIPPY)
    concat = lambda index: [source(t) for t in model.get_layer(f"layer{index}.concat").input]
    assert concat(1) == ["stem.bn", "layer1.op.bn"]
    # Tensors from before a reduction arrive reduced (at the new resolution).
    assert concat(3) == ["layer1.reduce0.bn", "layer1.reduce2.bn", "layer3.op.pool"]
    assert concat(5) == ["layer3.reduce0.bn", "layer3.reduce4.bn", "layer5.op.bn"]
    # Layers without skips have no concatenation, but still the projection;
    # layer 0 (no skip decisions) has neither.
    assert not names(model, "layer2.concat") | names(model, "layer4.concat")
    assert source(model.get_layer("layer2.skip.relu").input) == "layer2.op.pool"
    assert not names(model, "layer0.skip") | names(model, "layer0.concat")
    # The projection takes the concatenation back to C channels:
    # (skips + 1) * C in, C (times 2 per reduction) out.
    widths = {1: (2 * C, C), 2: (2 * C, 2 * C), 3: (6 * C, 2 * C), 5: (12 * C, 4 * C)}
    for index, (c_in, c_out) in widths.items():
        assert model.get_layer(f"layer{index}.skip.conv").kernel.shape == (1, 1, c_in, c_out)


def test_only_reductions_a_later_layer_reads_are_built():
    skippy, plain = build(SKIPPY), build(NO_SKIPS)
    # At each reduction every earlier tensor may be reduced; only those read
    # later (the main path, and skip sources of later layers) are in the model.
    assert names(skippy, ".reduce") >= {f"layer1.reduce{j}.bn" for j in (0, 2)}
    reduced = {n.split(".bn")[0] for n in names(skippy, ".reduce") if n.endswith(".bn")}
    assert reduced == {"layer1.reduce0", "layer1.reduce2", "layer3.reduce0", "layer3.reduce4"}
    reduced = {n.split(".bn")[0] for n in names(plain, ".reduce") if n.endswith(".bn")}
    assert reduced == {"layer1.reduce2", "layer3.reduce4"}
    # Resolution halves and channels double at each reduction.
    shapes = [plain.get_layer(f"layer{i}.skip.bn").output.shape[1:] for i in range(1, 6)]
    assert shapes == [(8, 8, C), (4, 4, 2 * C), (4, 4, 2 * C), (2, 2, 4 * C), (2, 2, 4 * C)]
    assert plain.get_layer("logits.fc").kernel.shape == (4 * C, 5)
    # The parameters differ by the two extra reductions of the stem and the
    # wider projections of the layers with skips.
    extra = fr(C, 2 * C) + fr(2 * C, 4 * C)
    extra += (2 * C - C) * C + (6 * C - 2 * C) * 2 * C + (12 * C - 4 * C) * 4 * C
    # ... and the ops differ: SKIPPY has sep3, avg, max, conv5, sep5 after conv3.
    ops_skippy = (C * C * 9 + bn(C)) + (9 * C + C * C + bn(C)) + 0 + 0
    ops_skippy += 25 * (4 * C) ** 2 + bn(4 * C) + 25 * 4 * C + (4 * C) ** 2 + bn(4 * C)
    ops_plain = sum(9 * c * c + bn(c) for c in (C, C, 2 * C, 2 * C, 4 * C, 4 * C))
    assert count_params(skippy) - count_params(plain) == extra + ops_skippy - ops_plain


@pytest.mark.parametrize("separable", [True, False])
@pytest.mark.parametrize("op_id", range(len(MACRO_OPS)))
def test_each_op_is_pre_activated_and_built_as_named(op_id, separable):
    model = build(MacroArch((MacroLayer(op_id, ()),)), separable=separable)
    op = MACRO_OPS[op_id]
    # Every op starts with ReLU -> 1x1 conv -> BN on the previous tensor.
    assert source(model.get_layer("layer0.op.in.relu").input) == "stem.bn"
    assert model.get_layer("layer0.op.in.conv").kernel.shape == (1, 1, C, C)
    built = names(model, "layer0.op.") - names(model, "layer0.op.in.")
    if op.endswith("pool_3x3"):
        pool = model.get_layer("layer0.op.pool")
        expected = (
            keras.layers.AveragePooling2D if op.startswith("avg") else keras.layers.MaxPooling2D
        )
        assert type(pool) is expected
        assert pool.pool_size == (3, 3) and pool.strides == (1, 1) and pool.padding == "same"
        assert built == {"layer0.op.pool"}  # no weights beyond the 1x1 conv
        return
    k = int(op[-1])
    if op.startswith("sep") and separable:
        conv = model.get_layer("layer0.op.sep")
        assert type(conv) is keras.layers.SeparableConv2D
        assert built == {"layer0.op.relu", "layer0.op.sep", "layer0.op.bn"}
    else:  # a regular conv; the original's sep ops with separable=False
        conv = model.get_layer("layer0.op.conv")
        assert type(conv) is keras.layers.Conv2D and conv.kernel.shape == (k, k, C, C)
        assert built == {"layer0.op.relu", "layer0.op.conv", "layer0.op.bn"}
    assert conv.kernel_size == (k, k) and not conv.use_bias
    assert source(model.get_layer("layer0.op.relu").input) == "layer0.op.in.bn"


def test_head_pools_drops_and_classifies_without_bias():
    model = build(NO_SKIPS, keep_prob=0.6)
    dropout = model.get_layer("logits.dropout")
    assert dropout.rate == pytest.approx(0.4)
    # No ReLU before the pool (the last layer ends in batch norm).
    assert source(model.get_layer("logits.pool").input) == "layer5.skip.bn"
    assert not model.get_layer("logits.fc").use_bias
    assert "logits.dropout" not in names(build(NO_SKIPS), "dropout")
    images = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype("float32")
    # Inference is deterministic; training drops features of the pooled map.
    np.testing.assert_array_equal(model(images), model(images))
    assert not np.allclose(model(images, training=True), model(images, training=True))
    assert model.name == "macro_child" and build(NO_SKIPS, name="m").name == "m"
