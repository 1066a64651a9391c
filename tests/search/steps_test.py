"""Tests of the shared-weight search steps (`enas_tf.search.steps`)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas_tf.search import steps
from enas_tf.supernet.macro import MacroSupernet

SHAPE = (8, 8, 3)


def _setup(**overrides):
    keras.utils.set_random_seed(0)
    net = MacroSupernet(num_layers=2, num_ops=6, out_filters=4, num_classes=5, image_shape=SHAPE)
    optimizer = keras.optimizers.SGD(0.1)
    spec = (tf.TensorSpec([None, *SHAPE], tf.float32), tf.TensorSpec([None], tf.int32))
    settings = dict(l2=1e-4, grad_bound=5.0, seed=0, batch_stats=True) | overrides
    made = steps.make_steps(
        net,
        optimizer,
        tf.distribute.get_strategy(),
        spec,
        net.space.num_decisions,
        steps.StepSettings(**settings),
    )
    rng = np.random.default_rng(0)
    batch = (
        tf.constant(rng.normal(size=(6, *SHAPE)), tf.float32),
        tf.constant(rng.integers(0, 5, size=6), tf.int32),
    )
    arcs = [tf.constant(net.space.random_arc(seed), tf.int32) for seed in range(3)]
    return net, made, batch, arcs


def _values(variables):
    return [v.numpy().copy() for v in variables]


@pytest.fixture(scope="module")
def setup():
    return _setup()


def test_one_trace_trains_every_architecture(setup):
    net, made, batch, arcs = setup
    before = _values(net.trainable_variables)
    for arc in arcs:
        loss, accuracy, finite = made.train(batch, arc)
        assert bool(finite) and np.isfinite(float(loss)) and 0.0 <= float(accuracy) <= 1.0
    assert made.train.experimental_get_tracing_count() == 1
    assert any(not np.allclose(a, b) for a, b in zip(before, _values(net.trainable_variables)))


def test_evaluate_counts_the_batch_and_calibrate_moves_statistics(setup):
    net, made, batch, arcs = setup
    correct, count = made.evaluate(batch, arcs[0])
    assert float(count) == 6 and 0 <= float(correct) <= 6
    before = _values(net.non_trainable_variables)
    made.calibrate(batch, arcs[0])
    changed = [not np.allclose(a, b) for a, b in zip(before, _values(net.non_trainable_variables))]
    assert any(changed) and not all(changed)  # only the arc's layers' statistics
    assert made.evaluate.experimental_get_tracing_count() == 1


def test_a_non_finite_batch_changes_nothing(setup):
    net, made, batch, arcs = setup
    weights, statistics = _values(net.trainable_variables), _values(net.non_trainable_variables)
    images = batch[0].numpy()
    images[0, 0, 0, 0] = np.nan
    _, _, finite = made.train((tf.constant(images), batch[1]), arcs[1])
    assert not bool(finite)
    for a, b in zip(weights, _values(net.trainable_variables)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(statistics, _values(net.non_trainable_variables)):
        np.testing.assert_array_equal(a, b)


def test_gradients_are_clipped_to_the_bound():
    net, made, batch, arcs = _setup(l2=0.0, grad_bound=1e-6)
    before = _values(net.trainable_variables)
    made.train(batch, arcs[0])
    moved = np.sqrt(
        sum(np.sum((a - b) ** 2) for a, b in zip(before, _values(net.trainable_variables)))
    )
    # SGD(0.1) on a gradient of global norm <= 1e-6.
    assert 0 < moved <= 0.1 * 1e-6 * 1.001
