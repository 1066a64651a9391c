"""Tests of skipping NaN / Inf training steps (`enas_tf.runtime.nonfinite`)."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas_tf import data
from enas_tf.configs.image import SearchConfig
from enas_tf.controllers.build import MicroController
from enas_tf.data.pipeline import train_dataset
from enas_tf.errors import UserError
from enas_tf.lm import loop as lm_loop
from enas_tf.lm import steps as lm_training
from enas_tf.lm.model import SharedRnnLM
from enas_tf.runtime import nonfinite
from enas_tf.runtime.distribute import mirrored_strategy
from enas_tf.search.image import Search
from enas_tf.strategies.reinforce.trainer import Reinforce

# A two-layer macro supernet: the same child step as micro, traced fast.
TINY = SearchConfig.from_flat(
    space="macro",
    num_layers=2,
    num_ops=6,
    out_filters=4,
    epochs=1,
    batch_size=256,
    controller_steps=1,
    num_aggregate=2,
    log_arcs=0,
    derive_samples=2,
    flip=False,
    pad=1,
    lr_t0=1,
    max_nonfinite=3,
)


@pytest.fixture(scope="module")
def digits():
    return data.load_images("digits", valid_size=100)


def poisoned(splits):
    """`splits` whose normalised images are all NaN (a NaN channel mean)."""
    return dataclasses.replace(splits, mean=np.full_like(splits.mean, np.nan))


def values(variables):
    return [v.numpy().copy() for v in variables]


def first_batch(search, splits, nan_images=0):
    """The first training batch, distributed; NaN in its first images."""
    images, labels = next(
        iter(train_dataset(splits, TINY.batch_size, flip=False, pad=0, shuffle=False))
    )
    images = images.numpy()
    images[:nan_images, 0, 0, 0] = np.nan
    batch = tf.data.Dataset.from_tensors((images, labels))
    return next(iter(search._distribute(batch)))


# ----- the pieces --------------------------------------------------------------


def test_apply_if_finite_skips_weights_slots_and_iterations():
    w = tf.Variable([1.0, 2.0])
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True)
    optimizer.build([w])

    @tf.function(autograph=False)
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(w * x)
        grads = tape.gradient(loss, [w])
        finite = nonfinite.all_finite(loss, grads)
        return nonfinite.apply_if_finite(optimizer, grads, [w], finite)

    assert bool(step(tf.constant([1.0, 1.0])))
    before = values([w, *optimizer.variables])
    assert not bool(step(tf.constant([np.nan, 1.0])))
    assert not bool(step(tf.constant([np.inf, 1.0])))
    for a, b in zip(before, values([w, *optimizer.variables])):
        np.testing.assert_array_equal(a, b)
    assert int(optimizer.iterations) == 1
    assert bool(step(tf.constant([1.0, 1.0])))
    assert int(optimizer.iterations) == 2
    assert step.experimental_get_tracing_count() == 1


def test_counter_counts_resets_and_raises():
    counter = nonfinite.NonFiniteCounter(3, "unit test")
    assert counter.update(True)
    assert not counter.update(False)
    assert not counter.update(np.bool_(False))
    assert counter.update(tf.constant(True))  # resets the run of skips
    assert (counter.total, counter.consecutive) == (2, 0)
    counter.update(False)
    counter.update(False)
    with pytest.raises(
        UserError,
        match="3 training steps in a row.*unit test.*Lower the learning rate.*check the data",
    ):
        counter.update(False)
    assert counter.total == 5
    never = nonfinite.NonFiniteCounter(0)
    for _ in range(20):
        never.update(False)
    assert never.total == 20


def test_nan_rewards_never_reach_the_baseline():
    controller = MicroController(num_nodes=2, seed=0)
    trainer = Reinforce(controller, baseline_decay=0.5)
    arcs = trainer.sample(3).arc.numpy()
    trainer.update(arcs[:1], [0.4])
    baseline = float(trainer.baseline)
    metrics = trainer.update(arcs, [np.nan, np.inf, -np.inf])
    assert float(trainer.baseline) == baseline and metrics["skipped"] == 3.0
    trainer.update(arcs[:2], [np.nan, 0.8])
    assert np.isfinite(float(trainer.baseline))
    # Only the finite reward moved it (entropy bonus aside: 1e-4 weight).
    assert float(trainer.baseline) == pytest.approx(0.5 * baseline + 0.5 * 0.8, abs=1e-2)


# ----- the CNN search -----------------------------------------------------------


def test_search_child_step_skips_a_nan_batch(digits, tmp_path):
    search = Search(TINY, digits, str(tmp_path / "run"), verbose=0)
    arc = tf.constant(search.space.random_arc(0), tf.int32)
    before = values(search.net.variables) + values(search.optimizer.variables)
    loss, _, finite = search.child_step(first_batch(search, digits, 1), arc)
    assert not bool(finite) and not np.isfinite(float(loss))
    after = values(search.net.variables) + values(search.optimizer.variables)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    loss, _, finite = search.child_step(first_batch(search, digits), arc)
    assert bool(finite) and np.isfinite(float(loss))
    assert int(search.optimizer.iterations.numpy()) == 1
    assert search.child_step.experimental_get_tracing_count() == 1


def test_mirrored_replicas_skip_together(digits, tmp_path):
    """Only replica 0's half of the batch has a NaN: both replicas skip."""
    strategy = mirrored_strategy(["/cpu:0", "/cpu:1"])
    config = TINY.replace(grad_bound=0.0)  # no all-reduce before
    search = Search(config, digits, str(tmp_path / "run"), verbose=0, strategy=strategy)
    arc = tf.constant(search.space.random_arc(1), tf.int32)
    before = [
        [x.numpy() for x in strategy.experimental_local_results(v)]
        for v in search.net.trainable_variables
    ]
    # One NaN image, in replica 0's half of the batch only.
    _, _, finite = search.child_step(first_batch(search, digits, 1), arc)
    assert not bool(finite)
    after = [
        [x.numpy() for x in strategy.experimental_local_results(v)]
        for v in search.net.trainable_variables
    ]
    for a, b in zip(before, after):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert int(search.optimizer.iterations.numpy()) == 0
    _, _, finite = search.child_step(first_batch(search, digits), arc)
    assert bool(finite) and int(search.optimizer.iterations.numpy()) == 1
    assert search.child_step.experimental_get_tracing_count() == 1


def test_search_stops_after_max_nonfinite_and_keeps_the_checkpoint(digits, tmp_path):
    out = str(tmp_path / "run")
    search = Search(TINY, digits, out, verbose=0)
    search.run()
    log = [json.loads(line) for line in open(os.path.join(out, "search_log.jsonl"))]
    assert log[0]["child/nonfinite_steps"] == 0.0
    newest = search.manager.latest_checkpoint
    files = sorted(f for f in os.listdir(os.path.join(out, "checkpoints")))
    stamp = {f: os.path.getmtime(os.path.join(out, "checkpoints", f)) for f in files}

    longer = TINY.replace(epochs=2)
    bad = Search(longer, poisoned(digits), out, verbose=0)
    assert int(bad.epoch.numpy()) == 1
    weights = values(bad.net.variables)
    with pytest.raises(UserError, match="3 training steps in a row.*learning rate"):
        bad.run()
    assert bad.nonfinite.total == 3
    assert int(bad.child_done.numpy()) == 2  # the third step raised
    for a, b in zip(weights, values(bad.net.variables)):
        np.testing.assert_array_equal(a, b)
    # Nothing written: the newest checkpoint is the last good one, readable.
    assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == files
    assert {f: os.path.getmtime(os.path.join(out, "checkpoints", f)) for f in files} == stamp
    again = Search(longer, digits, out, verbose=0)
    assert again.manager.latest_checkpoint == newest
    assert int(again.epoch.numpy()) == 1 and int(again.child_done.numpy()) == 0
    for a, b in zip(weights, values(again.net.variables)):
        np.testing.assert_array_equal(a, b)


# ----- language models ----------------------------------------------------------


def test_lm_step_skips_and_train_epoch_stops():
    model = SharedRnnLM(num_nodes=2, seed=0, vocab_size=20, hidden_size=8)
    optimizer = keras.optimizers.SGD(1.0)
    step = lm_training.make_train_step(model, optimizer)
    x = np.random.default_rng(0).integers(0, 20, (2, 5)).astype(np.int32)
    arc = tf.constant(model.space.random_arc(0), tf.int32)
    state = model.initial_state(2) + 0.5
    _, metrics = step(x, x, state, tf.constant(1.0), arc)
    assert bool(metrics["finite"])
    # A NaN weight (as after an overflow) makes the loss NaN.
    bad = model.trainable_variables[0]
    bad.assign(tf.fill(bad.shape, np.nan))
    before = values(model.trainable_variables)
    new_state, metrics = step(x, x, state, tf.constant(1.0), arc)
    assert not bool(metrics["finite"])
    np.testing.assert_array_equal(new_state, state)
    for a, b in zip(before, values(model.trainable_variables)):
        np.testing.assert_array_equal(a, b)
    assert int(optimizer.iterations) == 1
    assert step.experimental_get_tracing_count() == 1

    rows = np.random.default_rng(1).integers(0, 20, (2, 60)).astype(np.int32)
    counter = nonfinite.NonFiniteCounter(4, "language-model training")
    with pytest.raises(UserError, match="4 training steps in a row"):
        lm_loop.train_epoch(
            step,
            rows,
            model.initial_state(2),
            np.random.default_rng(0),
            bptt=5,
            arc_fn=lambda: arc,
            nonfinite=counter,
        )
    result = lm_loop.train_epoch(
        step,
        rows,
        model.initial_state(2),
        np.random.default_rng(0),
        bptt=5,
        max_steps=3,
        arc_fn=lambda: arc,
        nonfinite=nonfinite.NonFiniteCounter(0),
    )
    assert result.metrics["nonfinite_steps"] == 3.0


# ----- Keras fit (final CNN training) -------------------------------------------


def test_fit_guard_skips_and_callback_raises():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.BatchNormalization(), keras.layers.Dense(2)]
    )
    model.compile(optimizer=nonfinite.guard(keras.optimizers.SGD(0.1, momentum=0.9)), loss="mse")
    x = np.ones((8, 3), np.float32)
    y = np.zeros((8, 2), np.float32)
    x[4:] = np.nan  # the second of two batches
    callback = nonfinite.NonFiniteCallback(model.optimizer, max_nonfinite=2)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[callback])
    assert callback.total == 1
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert int(model.optimizer.iterations) == 1
    before = model.get_weights()
    with pytest.raises(UserError, match="2 training steps in a row.*final training"):
        model.fit(x[4:], y[4:], batch_size=2, epochs=1, verbose=0, callbacks=[callback])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
