"""Tests of the stacked-weight TensorFlow ops of the supernets."""

import numpy as np
import pytest
import tensorflow as tf

from enas_tf.ops import shared as ops


def two_paths(x, path1, path2):
    """The factorized reduction as the child computes it: two 1x1 stride-2
    convolutions, the second on the input shifted up-left, concatenated."""
    return tf.concat(
        [ops.conv(x, path1[None, None], 2), ops.conv(ops.shift(x), path2[None, None], 2)], -1
    )


@pytest.mark.parametrize("height, width", [(8, 8), (7, 7), (6, 5)])
def test_factorized_reduction_is_the_two_paths(height, width):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(3, height, width, 4)), tf.float32)
    path1, path2 = (tf.constant(rng.normal(size=(4, 3)), tf.float32) for _ in range(2))
    got = ops.factorized_reduction(x, path1, path2)
    assert got.shape == (3, (height + 1) // 2, (width + 1) // 2, 6)
    np.testing.assert_allclose(got, two_paths(x, path1, path2), atol=1e-5)


def test_factorized_reduction_gradients_and_unknown_shapes():
    """Same gradients as the two paths, also traced with unknown sizes
    (the loose-end supernet gathers a variable number of weight rows)."""
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(2, 7, 6, 4)), tf.float32)
    path1, path2 = (tf.Variable(rng.normal(size=(4, 2)), dtype=tf.float32) for _ in range(2))
    spec = tf.TensorSpec([None, None, None, None], tf.float32)

    @tf.function(input_signature=[spec], autograph=False)
    def grads(images):
        results = []
        for fn in (ops.factorized_reduction, two_paths):
            with tf.GradientTape() as tape:
                tape.watch(images)
                loss = tf.reduce_sum(tf.sin(fn(images, tf.identity(path1), path2)))
            results.append(tape.gradient(loss, [images, path1, path2]))
        return results

    ours, reference = grads(x)
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("strides", [1, 2])
def test_max_pool_matches_stock_inside_a_switch_branch(strides):
    """`max_pool` (gradient recomputes the pool) gives the values and
    gradients of `tf.nn.max_pool2d`, also in a switch branch of a shared
    trace, where it reads a tensor captured from the enclosing graph."""
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(2, 7, 6, 3)), tf.float32)
    upstream = tf.constant(
        rng.normal(size=(2, (7 + strides - 1) // strides, (6 + strides - 1) // strides, 3)),
        tf.float32,
    )
    slot = ops.shared_trace(
        lambda t, branch, pool: tf.switch_case(
            branch, [lambda: pool(t, strides), lambda: 2.0 * t[:, ::strides, ::strides]]
        )
    )

    @tf.function(autograph=False)
    def run(images):
        results = []
        for pool in (ops.max_pool, lambda t, s: tf.nn.max_pool2d(t, 3, s, "SAME")):
            with tf.GradientTape() as tape:
                tape.watch(images)
                y = slot(images, tf.constant(0), pool)
                loss = tf.reduce_sum(y * upstream)
            results.append((y, tape.gradient(loss, images)))
        return results

    (y, grad), (want_y, want_grad) = run(x)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_allclose(grad, want_grad, atol=1e-6)
    assert np.count_nonzero(grad) > 0
