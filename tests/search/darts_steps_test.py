"""Tests of DARTS's steps (`enas_tf.search.darts_steps`)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas_tf.search import darts_steps
from enas_tf.spaces.micro import MicroSpace
from enas_tf.strategies.darts.alphas import ArchitectureParameters
from enas_tf.supernet.relaxed import build_relaxed_micro

SPACE = MicroSpace(num_nodes=1, num_ops=3)  # sep3, sep5, avg + none
SHAPE = (4, 4, 1)


def tiny_net():
    return build_relaxed_micro(
        SPACE, image_shape=SHAPE, num_classes=3, num_layers=0, out_filters=2, affine=True
    )


def batches(dtype=np.float32, n=6):
    rng = np.random.default_rng(0)
    make = lambda: (  # noqa: E731
        tf.constant(rng.normal(size=(n, *SHAPE)).astype(dtype)),
        tf.constant(rng.integers(0, 3, size=n).astype(np.int32)),
    )
    return make(), make()


@pytest.fixture
def float64():
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        yield
    finally:
        keras.config.set_floatx("float32")
        keras.config.set_dtype_policy("float32")


def softmax(a):
    return tf.nn.softmax(a, axis=-1)


def unrolled_loss(net, alpha, train, valid, xi, l2):
    """L_val(w - xi * dL_train/dw (w, alpha), alpha), weights restored."""
    weights = net.trainable_variables
    saved = [v.numpy() for v in weights]
    with tf.GradientTape() as tape:
        loss, _ = darts_steps.training_loss(net, *train, softmax(alpha), l2)
    grads = tape.gradient(loss, weights)
    for v, w, g in zip(weights, saved, grads):
        v.assign(w - xi * g)
    value = float(darts_steps.cross_entropy(net, *valid, softmax(alpha))[0])
    for v, w in zip(weights, saved):
        v.assign(w)
    return value


def test_second_order_gradient_matches_finite_differences(float64):
    keras.utils.set_random_seed(0)
    net = tiny_net()
    train, valid = batches(np.float64)
    alpha = tf.Variable(np.random.default_rng(1).normal(size=(2, 2, 4)))
    xi, l2, h = 0.5, 1e-3, 1e-5
    before = [v.numpy() for v in net.trainable_variables]
    got, _ = darts_steps.unrolled_alpha_gradient(net, alpha, softmax, train, valid, xi, l2)
    for v, w in zip(net.trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), w)  # restored
    # A smaller finite-difference radius than DARTS's 0.01 approximates the
    # Hessian-vector product better (float64).
    fine, _ = darts_steps.unrolled_alpha_gradient(net, alpha, softmax, train, valid, xi, l2, r=1e-5)
    truth = np.zeros(alpha.shape)
    start = alpha.numpy()
    for index in np.ndindex(*alpha.shape):
        values = []
        for sign in (1, -1):
            moved = start.copy()
            moved[index] += sign * h
            values.append(unrolled_loss(net, tf.constant(moved), train, valid, xi, l2))
        truth[index] = (values[0] - values[1]) / (2 * h)
    first, _ = darts_steps.first_order_alpha_gradient(net, alpha, softmax, valid)
    error = lambda g: np.linalg.norm(g.numpy() - truth) / np.linalg.norm(truth)  # noqa: E731
    assert error(fine) < 1e-4, error(fine)
    assert error(got) < 0.1, error(got)  # DARTS's radius
    assert error(first) > 1.0  # the second-order term matters here


def test_steps_trace_once_and_touch_only_their_variables():
    keras.utils.set_random_seed(1)
    net = tiny_net()
    arch = ArchitectureParameters(SPACE, seed=0, learning_rate=0.1)
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(net.trainable_variables)
    train, valid = batches()
    spec = (tf.TensorSpec([None, *SHAPE], tf.float32), tf.TensorSpec([None], tf.int32))
    for order in (1, 2):
        steps = darts_steps.make_darts_steps(
            net, optimizer, arch, spec, order=order, l2=1e-4, grad_bound=5.0
        )
        weights = [v.numpy() for v in net.variables]
        alpha = arch.alpha.numpy()
        for _ in range(2):
            loss = steps.architecture(train, valid)
        assert np.isfinite(float(loss))
        assert not np.allclose(arch.alpha.numpy(), alpha)
        for v, w in zip(net.variables, weights):  # weights and moving statistics
            np.testing.assert_array_equal(v.numpy(), w)
        alpha = arch.alpha.numpy()
        loss, accuracy, finite = steps.weights(train)
        assert bool(finite) and 0 <= float(accuracy) <= 1
        np.testing.assert_array_equal(arch.alpha.numpy(), alpha)
        assert not np.allclose(net.trainable_variables[0].numpy(), weights[0])
        stats = [v.numpy() for v in net.non_trainable_variables]
        correct, count = steps.evaluate(train, arch.mix())
        assert float(count) == 6 and 0 <= float(correct) <= 6
        for v, s in zip(net.non_trainable_variables, stats):
            np.testing.assert_array_equal(v.numpy(), s)
        steps.evaluate(valid, tf.zeros_like(arch.alpha))  # another mix: no retrace
        for fn in (steps.architecture, steps.weights, steps.evaluate):
            assert fn.experimental_get_tracing_count() == 1


def test_a_non_finite_validation_batch_leaves_alpha_unchanged():
    keras.utils.set_random_seed(2)
    net = tiny_net()
    arch = ArchitectureParameters(SPACE, seed=0)
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(net.trainable_variables)
    train, valid = batches()
    spec = (tf.TensorSpec([None, *SHAPE], tf.float32), tf.TensorSpec([None], tf.int32))
    steps = darts_steps.make_darts_steps(net, optimizer, arch, spec, order=2, l2=0.0, grad_bound=0)
    alpha = arch.alpha.numpy()
    bad = (valid[0] * np.nan, valid[1])
    assert not np.isfinite(float(steps.architecture(train, bad)))
    np.testing.assert_array_equal(arch.alpha.numpy(), alpha)
    assert int(arch.optimizer.iterations.numpy()) == 0
