"""Tests of the search loop on a tiny supernet (digits)."""

import json

import numpy as np
import pytest
import tensorflow as tf

from enas_tf import data, spaces
from enas_tf.configs.image import SearchConfig
from enas_tf.data.pipeline import train_dataset
from enas_tf.errors import UserError
from enas_tf.ops import shared as shared_ops
from enas_tf.runtime.distribute import mirrored_strategy
from enas_tf.search.image import Search
from enas_tf.testing import read_events

TINY = SearchConfig.from_flat(
    num_nodes=2,
    num_layers=3,
    out_filters=4,
    epochs=1,
    batch_size=256,
    controller_steps=2,
    num_aggregate=3,
    log_arcs=2,
    derive_samples=4,
    flip=False,
    pad=1,
    lr_t0=1,
)


@pytest.fixture(scope="module")
def digits():
    return data.load_images("digits", valid_size=100)


def test_search_derives_and_resumes(digits, tmp_path):
    out = str(tmp_path / "run")
    search = Search(TINY, digits, out, verbose=0)
    result = search.run()
    space = spaces.MicroSpace(num_nodes=2)
    best = (tmp_path / "run" / "best_arc.txt").read_text().strip()
    assert best == result["best_arc"]
    assert spaces.load_arc(str(tmp_path / "run" / "best_arc.json")) == (space, space.parse(best))
    candidates = json.loads((tmp_path / "run" / "candidates.json").read_text())
    scores = [c["valid_accuracy"] for c in candidates["candidates"]]
    assert scores == sorted(scores, reverse=True) and 1 <= len(scores) <= 4
    assert candidates["candidates"][0]["arc"] == best
    assert candidates["flags"]["search"]["space"]["num_nodes"] == 2
    assert (tmp_path / "run" / "best_arc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # One trace of the child step for every sampled architecture.
    assert search.child_step.experimental_get_tracing_count() == 1
    log = [json.loads(line) for line in (tmp_path / "run" / "search_log.jsonl").open()]
    assert [row["epoch"] for row in log] == [1]
    assert "controller/baseline" in log[0] and len(log[0]["arcs"]) == 2

    # A run written before the controller's memory and diagnostics settings
    # existed resumes: they take their defaults (what the run did).
    path = tmp_path / "run" / "config.json"
    recorded = json.loads(path.read_text())
    for key in ("memory", "memory_size", "memory_weight", "controller_diagnostics"):
        del recorded["search"]["strategy"][key]
    path.write_text(json.dumps(recorded))
    # Resume: one more epoch continues from the checkpoint.
    more = Search(TINY.__class__(**{**TINY.__dict__, "epochs": 2}), digits, out, verbose=0)
    assert more.resumed and int(more.epoch.numpy()) == 1
    # The checkpoint holds every shared variable, moving statistics included
    # (the derive step after it changes nothing).
    for a, b in zip(search.net.variables, more.net.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert any(v.numpy().any() for v in more.net.non_trainable_variables[::2])
    more.run()
    assert json.loads(path.read_text())["search"]["strategy"]["memory"] is False
    log = [json.loads(line) for line in (tmp_path / "run" / "search_log.jsonl").open()]
    assert [row["epoch"] for row in log] == [1, 2]
    # The controller's diagnostics, per epoch (on by default).
    assert all(-1 <= row["controller/embedding_spearman_connections"] <= 1 for row in log)
    # TensorBoard: one HParams session (written when the run started), the
    # derived architecture's score after each run's derive step.
    events = read_events(tmp_path / "run" / "logs")
    assert events["files"] == 2 and len(events["_hparams_/session_start_info"]) == 1
    assert [step for step, _ in events["final/valid_accuracy"]] == [1, 2]
    assert [step for step, _ in events["child/loss"]] == [1, 2]


def _check_derived(search, result, out):
    """The derived arc is a valid arc of the space, written, the best-scored
    of the sampled candidates, and scores what was recorded."""
    space = spaces.MicroSpace(num_nodes=2)
    arc = space.parse(result["best_arc"])
    assert space.format(space.validate(list(arc))) == result["best_arc"]
    assert (out / "best_arc.txt").read_text().strip() == result["best_arc"]
    candidates = json.loads((out / "candidates.json").read_text())["candidates"]
    assert len(candidates) == result["candidates"] >= 1
    best = max(candidates, key=lambda c: c["valid_accuracy"])
    assert best == {"arc": result["best_arc"], "valid_accuracy": result["valid_accuracy"]}
    assert search.score(arc) == pytest.approx(result["valid_accuracy"], abs=1e-6)


def test_random_search_and_refusals(digits, tmp_path):
    random = TINY.replace(algorithm="random")
    search = Search(random, digits, str(tmp_path / "r"), verbose=0)
    _check_derived(search, search.run(), tmp_path / "r")
    with pytest.raises(UserError, match="search.algorithm: 'random' -> 'reinforce'"):
        Search(TINY, digits, str(tmp_path / "r"), verbose=0)
    # A run written before the configs nested (a flat `search`, with every
    # controller setting, the algorithm called `controller`) resumes (its
    # config.json is rewritten in the new form) and is still checked.
    path = tmp_path / "r" / "config.json"
    run = json.loads(path.read_text())
    flat = TINY.flat()
    flat["controller"] = flat.pop("algorithm")
    flat["controller"] = "random"
    run["search"] = flat
    path.write_text(json.dumps(run))
    with pytest.raises(UserError, match="search.algorithm: 'random' -> 'reinforce'"):
        Search(TINY, digits, str(tmp_path / "r"), verbose=0)
    resumed = Search(random, digits, str(tmp_path / "r"), verbose=0)
    assert resumed.resumed and int(resumed.epoch.numpy()) == random.epochs
    assert json.loads(path.read_text())["search"] == random.to_json()
    with pytest.raises(UserError, match="validation split"):
        Search(TINY, data.load_images("digits", valid_size=0), str(tmp_path / "v"))


def test_mirrored_strategy_matches_one_device(digits, tmp_path):
    """Two replicas (logical CPUs, see conftest) run one arc, each on half of
    the batch; batch norm uses each replica's own statistics (no cross-replica
    batch norm), so one device computes the same on the two halves."""
    strategy = mirrored_strategy(["/cpu:0", "/cpu:1"])
    one = Search(TINY, digits, str(tmp_path / "one"), verbose=0)
    two = Search(TINY, digits, str(tmp_path / "two"), verbose=0, strategy=strategy)
    assert two.replicas == 2
    for a, b in zip(one.net.variables, two.net.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    arc = tf.constant(one.space.random_arc(0), tf.int32)
    # Rewards: correct predictions summed over the replicas.
    assert two._reward(arc) == pytest.approx(one._reward(arc))

    images, labels = next(iter(train_dataset(digits, 64, flip=False, pad=0, shuffle=False)))
    net, variables = one.net, one.net.trainable_variables

    @tf.function(autograph=False)
    def halves_step(images, labels):
        with tf.GradientTape() as tape:
            # Replica r's dropout seed is (seed, step * replicas + r).
            step = tf.cast(one.optimizer.iterations, tf.int64) * 2
            loss = (
                tf.add_n(
                    [
                        tf.reduce_sum(
                            tf.nn.sparse_softmax_cross_entropy_with_logits(
                                labels[h],
                                net(
                                    images[h],
                                    arc=arc,
                                    training=True,
                                    dropout_seed=tf.stack(
                                        [tf.constant(TINY.seed, tf.int64), step + r]
                                    ),
                                ),
                            )
                        )
                        for r, h in enumerate((slice(0, 32), slice(32, 64)))
                    ]
                )
                / 64
            )
            total = loss + TINY.optimizer.l2 * tf.add_n([tf.reduce_sum(v * v) for v in variables])
        bound = TINY.optimizer.grad_bound
        grads, _ = tf.clip_by_global_norm(tape.gradient(total, variables), bound)
        one.optimizer.apply(grads, variables)
        return loss

    expected = halves_step(images, labels)
    batch = next(iter(two._distribute(tf.data.Dataset.from_tensors((images, labels)))))
    loss, _, finite = two.child_step(batch, arc)
    assert bool(finite)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    for a, b in zip(variables, two.net.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    # Each replica kept statistics of its half; synchronised, both hold their
    # mean.
    shared_ops.sync_statistics(two.net)
    for v in two.net.non_trainable_variables:
        copies = [c.numpy() for c in v.value.values]
        np.testing.assert_allclose(copies[0], copies[1], atol=1e-6)
    _check_derived(two, two.run(), tmp_path / "two")  # a whole epoch and the derive step
    assert two.child_step.experimental_get_tracing_count() == 1


def test_reward_bn_batch_updates_no_statistics(digits, tmp_path):
    config = TINY.replace(reward_bn="batch")
    search = Search(config, digits, str(tmp_path / "b"), verbose=0)
    before = [v.numpy() for v in search.net.non_trainable_variables]
    arc = tf.constant(search.space.random_arc(1), tf.int32)
    search.score(arc)
    for a, b in zip(before, search.net.non_trainable_variables):
        np.testing.assert_array_equal(a, b.numpy())


def test_reward_bn_recalibrate_scores_with_fresh_statistics_and_restores(digits, tmp_path):
    config = TINY.replace(reward_bn="recalibrate", recalibrate_batches=2)
    search = Search(config, digits, str(tmp_path / "r"), verbose=0)
    net = search.net
    images = tf.constant(np.random.default_rng(0).normal(size=(8, 8, 8, 1)), tf.float32)
    arc = tf.constant(search.space.random_arc(1), tf.int32)
    net(images, arc=arc, training=True)  # moving statistics of one batch
    before = [v.numpy() for v in net.non_trainable_variables]
    moving = config.replace(reward_bn="moving")
    stale = Search(moving, digits, str(tmp_path / "m"), verbose=0)
    for target, value in zip(stale.net.variables, net.variables):
        target.assign(value)
    score, stale_score = search.score(arc), stale.score(arc)
    assert 0.0 <= score <= 1.0 and score != stale_score
    assert search.calibrate_step.experimental_get_tracing_count() == 1
    for a, b in zip(before, net.non_trainable_variables):
        np.testing.assert_array_equal(a, b.numpy())


def test_evolution_search_resumes_exactly_and_derives_from_its_population(digits, tmp_path):
    """Regularized evolution through the loop (macro, tiny): 2 epochs in one
    run equal 1 epoch then a resumed one (population, logged proposals and
    their rewards); the derived architecture is the best-scored of the
    population's best members."""
    config = SearchConfig.from_flat(
        space="macro",
        num_layers=2,
        out_filters=4,
        epochs=2,
        batch_size=256,
        controller_steps=2,
        num_aggregate=3,  # 6 proposals per epoch: tournaments from epoch 2 on
        log_arcs=2,
        derive_samples=3,
        flip=False,
        pad=1,
        lr_t0=2,
        algorithm="evolution",
        population_size=4,
        sample_size=2,
    )
    whole = Search(config, digits, str(tmp_path / "whole"), verbose=0)
    result = whole.run()
    first = Search(config.replace(epochs=1), digits, str(tmp_path / "parts"), verbose=0)
    first.run()
    second = Search(config, digits, str(tmp_path / "parts"), verbose=0)
    assert second.resumed and second.sampler.size == 4
    second.run()
    for a, b in zip(whole.sampler.members(), second.sampler.members()):
        np.testing.assert_array_equal(a, b)
    logs = [
        [json.loads(line) for line in (tmp_path / run / "search_log.jsonl").open()]
        for run in ("whole", "parts")
    ]
    for key in ("arcs", "child/loss", "controller/population_best", "controller/reward"):
        assert [row[key] for row in logs[0]] == [row[key] for row in logs[1]], key
    assert int(whole.sampler.admitted.numpy()) == 12
    # Derived from the population: its best distinct members, scored on the
    # whole validation split.
    candidates = json.loads((tmp_path / "whole" / "candidates.json").read_text())["candidates"]
    members = {whole.space.format(arc) for arc in whole.sampler.members()[0]}
    assert {c["arc"] for c in candidates} <= members and len(candidates) <= 3
    assert result["best_arc"] == candidates[0]["arc"]
