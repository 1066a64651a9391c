"""Tests of the child networks' building blocks (`enas_tf.ops.blocks`)."""

import dataclasses

import keras
import numpy as np
import pytest

from enas_tf.errors import UserError
from enas_tf.ops.blocks import Blocks, DropPath, classifier_head, conv_bn, factorized_reduction

EPS = 1e-5


def model_of(fn, shape):
    inputs = keras.Input(shape)
    return keras.Model(inputs, fn(inputs))


def images(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def test_blocks_defaults_and_frozen():
    blocks = Blocks()
    assert (blocks.l2, blocks.bn_momentum, blocks.bn_epsilon) == (0.0, 0.9, 1e-5)
    assert not blocks.synchronized_bn
    assert blocks.regularizer() is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        blocks.l2 = 1.0
    reg = Blocks(l2=0.003).regularizer()
    assert isinstance(reg, keras.regularizers.L2)
    assert reg.get_config()["l2"] == pytest.approx(0.003)


def test_layer_settings():
    blocks = Blocks(l2=1e-4, bn_momentum=0.7, bn_epsilon=1e-3, synchronized_bn=True)
    conv = blocks.conv(6, 3, "c", strides=2)
    assert (conv.filters, conv.kernel_size, conv.strides) == (6, (3, 3), (2, 2))
    assert conv.padding == "same" and not conv.use_bias and conv.name == "c"
    assert isinstance(conv.kernel_initializer, keras.initializers.HeNormal)
    assert conv.kernel_regularizer.get_config()["l2"] == pytest.approx(1e-4)
    sep = blocks.sep_conv(5, 5, "s")
    assert (sep.filters, sep.kernel_size, sep.depth_multiplier) == (5, (5, 5), 1)
    assert not sep.use_bias and sep.padding == "same"
    assert sep.depthwise_regularizer is not None and sep.pointwise_regularizer is not None
    bn = blocks.bn("b")
    assert (bn.momentum, bn.epsilon, bn.synchronized) == (0.7, 1e-3, True)
    assert bn.gamma_regularizer is not None and bn.beta_regularizer is not None
    dense = blocks.dense(4, "fc")
    assert dense.units == 4 and not dense.use_bias
    assert Blocks().conv(6, 3, "c").kernel_regularizer is None


@pytest.mark.parametrize("strides, out", [(1, 6), (2, 3)])
def test_conv_bn_is_conv_then_batch_norm(strides, out):
    model = model_of(lambda x: conv_bn(Blocks(), x, 5, 3, "stem", strides=strides), (6, 6, 2))
    assert model.output.shape == (None, out, out, 5)
    assert [layer.name for layer in model.layers[1:]] == ["stem.conv", "stem.bn"]
    x = images((2, 6, 6, 2))
    conv = model.get_layer("stem.conv")
    # A fresh BN at inference: (v - 0) / sqrt(1 + eps) * 1 + 0.
    want = conv(x).numpy() / np.sqrt(1 + EPS)
    np.testing.assert_allclose(model(x, training=False), want, rtol=1e-5, atol=1e-6)


def test_conv_bn_pre_relu():
    model = model_of(lambda x: conv_bn(Blocks(), x, 3, 1, "n", pre_relu=True), (4, 4, 2))
    assert [layer.name for layer in model.layers[1:]] == ["n.relu", "n.conv", "n.bn"]
    x = images((1, 4, 4, 2))
    # Negative inputs do not reach the conv.
    np.testing.assert_allclose(model(x), model(np.maximum(x, 0)), rtol=1e-6)
    assert not np.allclose(model(x), model(np.abs(x)))


def test_l2_on_every_trainable_variable_without_a_half():
    model = model_of(lambda x: conv_bn(Blocks(l2=0.01), x, 4, 3, "c"), (5, 5, 2))
    bn = model.get_layer("c.bn")
    bn.beta.assign(np.full(4, 0.5, "float32"))
    kernel = model.get_layer("c.conv").kernel.numpy()
    model(images((1, 5, 5, 2)))
    want = 0.01 * (np.sum(kernel**2) + 4 * 1.0**2 + 4 * 0.5**2)
    assert float(sum(model.losses)) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("size, half", [(8, 4), (7, 4), (2, 1)])
def test_factorized_reduction_shapes(size, half):
    model = model_of(lambda x: factorized_reduction(Blocks(), x, 6, "fr"), (size, size, 3))
    assert model.output.shape == (None, half, half, 6)
    assert model.get_layer("fr.path1").kernel.shape == (1, 1, 3, 3)
    assert model.get_layer("fr.path2").kernel.shape == (1, 1, 3, 3)


def test_factorized_reduction_reads_two_offset_grids():
    model = model_of(lambda x: factorized_reduction(Blocks(), x, 4, "fr"), (4, 4, 2))
    x = images((1, 4, 4, 2), seed=2)
    out = model(x, training=False).numpy() * np.sqrt(1 + EPS)  # undo the fresh BN
    w1 = model.get_layer("fr.path1").kernel.numpy()[0, 0]
    w2 = model.get_layer("fr.path2").kernel.numpy()[0, 0]
    np.testing.assert_allclose(out[..., :2], x[:, ::2, ::2] @ w1, rtol=1e-5, atol=1e-6)
    # Path 2: the input shifted one pixel up and left (zeros past the edge).
    np.testing.assert_allclose(out[..., 2:], x[:, 1::2, 1::2] @ w2, rtol=1e-5, atol=1e-6)


def test_factorized_reduction_odd_shift_pads_with_zeros():
    model = model_of(lambda x: factorized_reduction(Blocks(), x, 2, "fr"), (3, 3, 1))
    x = images((1, 3, 3, 1), seed=3)
    out = model(x, training=False).numpy() * np.sqrt(1 + EPS)
    w2 = float(model.get_layer("fr.path2").kernel.numpy()[0, 0, 0, 0])
    # Output pixels read x[1, 1], x[1, 3], x[3, 1], x[3, 3]; row and column 3 are zero.
    want = np.array([[x[0, 1, 1, 0], 0.0], [0.0, 0.0]]) * w2
    np.testing.assert_allclose(out[0, :, :, 1], want, rtol=1e-5, atol=1e-6)


def test_factorized_reduction_needs_even_filters():
    with pytest.raises(
        UserError, match="even channel count; received 5. Use an even --out_filters"
    ):
        factorized_reduction(Blocks(), keras.Input((4, 4, 2)), 5, "fr")


@pytest.mark.parametrize("keep_prob, pre_relu", [(1.0, False), (0.5, True)])
def test_classifier_head(keep_prob, pre_relu):
    model = model_of(
        lambda x: classifier_head(Blocks(), x, 3, keep_prob, "logits", pre_relu), (4, 4, 5)
    )
    names = [layer.name for layer in model.layers[1:]]
    want = ["logits.relu"] * pre_relu + ["logits.pool"]
    want += ["logits.dropout"] * (keep_prob < 1) + ["logits.fc", "logits"]
    assert names == want
    assert model.output.shape == (None, 3)
    fc = model.get_layer("logits.fc")
    assert fc.kernel.shape == (5, 3) and not fc.use_bias
    if keep_prob < 1:
        assert model.get_layer("logits.dropout").rate == pytest.approx(0.5)
    x = images((2, 4, 4, 5))
    pooled = (np.maximum(x, 0) if pre_relu else x).mean(axis=(1, 2))
    np.testing.assert_allclose(model(x), pooled @ fc.kernel.numpy(), rtol=1e-5, atol=1e-6)


def test_classifier_head_logits_are_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = model_of(lambda x: classifier_head(Blocks(), x, 3, 1.0, "logits", True), (4, 4, 2))
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.get_layer("logits.fc").compute_dtype == "float16"
    assert model.output.dtype == "float32"
    assert model(images((1, 4, 4, 2))).dtype == "float32"


def test_drop_path_is_the_identity_at_inference():
    layer = DropPath(0.3, seed=0)
    x = images((16, 2, 2, 3))
    layer(x)  # builds
    layer.progress.assign(1.0)
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer(x, training=False), x)
    assert layer.compute_output_shape((None, 2, 2, 3)) == (None, 2, 2, 3)


@pytest.mark.parametrize("progress, keep", [(1.0, 0.5), (0.5, 0.75)])
def test_drop_path_drops_whole_examples_and_rescales(progress, keep):
    layer = DropPath(0.5, seed=7)
    x = images((2000, 2, 2, 3), seed=1)
    layer(x)
    layer.progress.assign(progress)
    out = layer(x, training=True).numpy()
    ratio = np.divide(out, x, out=np.full_like(x, np.nan), where=x != 0)
    per_example = ratio.reshape(len(x), -1)
    kept = per_example[:, 0] != 0
    # Every value of an example is either zeroed or scaled by 1 / keep.
    np.testing.assert_allclose(per_example[kept], 1 / keep, rtol=1e-5)
    np.testing.assert_array_equal(per_example[~kept], 0.0)
    assert abs(kept.mean() - keep) < 0.04
    # Seeded: a layer with the same seed drops the same examples.
    twin = DropPath(0.5, seed=7)
    twin(x)
    twin.progress.assign(progress)
    np.testing.assert_array_equal(twin(x, training=True), out)
    other = DropPath(0.5, seed=8)
    other(x)
    other.progress.assign(progress)
    assert not np.array_equal(other(x, training=True), out)


@pytest.mark.parametrize("keep_prob", [0.0, -0.5, 1.5])
def test_drop_path_rejects_bad_keep_prob(keep_prob):
    with pytest.raises(ValueError, match=r"final_keep_prob must be in \(0, 1\]"):
        DropPath(keep_prob)
