"""Tests of enas_tf.runtime.distribute (two logical CPUs, see conftest)."""

import dataclasses
import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas_tf import data, spaces
from enas_tf.configs.image import ChildConfig, TrainConfig
from enas_tf.errors import UserError
from enas_tf.runtime.distribute import (
    Workers,
    check_tf_config,
    make_strategy,
    mirrored_strategy,
    peer_failure,
)
from enas_tf.train.image import train_child


def _all_reduce(strategy, shape):
    """Each replica's copy of the all-reduced sum of ones of `shape`."""

    def replica_sum():
        ctx = tf.distribute.get_replica_context()
        return ctx.all_reduce("sum", tf.ones(shape))

    @tf.function
    def step():
        return strategy.run(replica_sum)

    return [v.numpy() for v in strategy.experimental_local_results(step())]


def test_successive_mirrored_strategies_keep_their_collectives_apart():
    # Two plain MirroredStrategy objects of one process share collective
    # keys: the second one's all-reduce of another shape is refused.
    first = mirrored_strategy(["/cpu:0", "/cpu:1"])
    second = mirrored_strategy(["/cpu:0", "/cpu:1"])
    for values in (_all_reduce(first, [3]), _all_reduce(second, [5]), _all_reduce(first, [3])):
        assert len(values) == 2
        for value in values:
            assert (value == 2.0).all()
    assert _all_reduce(second, [5])[0].shape == (5,)


def test_make_strategy():
    assert make_strategy("default") is tf.distribute.get_strategy()
    strategy = make_strategy("mirrored", ["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with pytest.raises(UserError, match="Unknown strategy 'ring'"):
        make_strategy("ring")
    with pytest.raises(UserError, match=r"Unknown device\(s\) /gpu:3 .*/cpu:0"):
        make_strategy("mirrored", ["/cpu:0", "/gpu:3"])


def test_tf_config_checks(monkeypatch):
    good = {
        "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
        "task": {"type": "worker", "index": 1},
    }
    monkeypatch.setenv("TF_CONFIG", json.dumps(good))
    assert check_tf_config() == good
    for value, problem in [
        ("", "needs the TF_CONFIG environment variable"),
        ("[1", "not valid JSON"),
        ("{}", 'needs a "cluster" and a "task"'),
        (json.dumps({**good, "cluster": {"ps": ["a:1"]}}), "unknown jobs: ps"),
        (json.dumps({**good, "cluster": {"worker": ["nohost"]}}), '"host:port"'),
        (json.dumps({**good, "task": {"type": "worker", "index": 2}}), "is not in the cluster"),
        (json.dumps({**good, "task": {"type": "chief", "index": 0}}), "is not in the cluster"),
    ]:
        monkeypatch.setenv("TF_CONFIG", value)
        with pytest.raises(UserError, match=re.escape(problem)) as error:
            check_tf_config()
        assert "TF_CONFIG=" in str(error.value) or "one chief" in str(error.value)
    with pytest.raises(UserError, match="--devices applies to --strategy=mirrored"):
        make_strategy("multi_worker", ["/cpu:0"])


def test_one_process_is_the_chief_and_agrees_at_once(tmp_path):
    for strategy in (tf.distribute.get_strategy(), mirrored_strategy(["/cpu:0", "/cpu:1"])):
        workers = Workers(strategy)
        assert workers.is_chief and not workers.multi
        assert workers.checkpoint_dir(str(tmp_path)) == str(tmp_path)
        assert workers.any_stop(True) and not workers.any_stop(False)
        workers.check_same("anything", [1.0])  # nothing to compare with
        workers.barrier()
    assert not peer_failure(tf.errors.UnavailableError(None, None, "peer gone"))


def test_mirrored_final_training_matches_one_device(tmp_path):
    """Two replicas with synchronized batch norm and the gradient clipped
    after the all-reduce train what one device trains on the same global
    batches (no dropout: its masks are drawn per replica)."""
    splits = data.load_images("digits", valid_size=100)
    splits = dataclasses.replace(  # whole batches: no uneven last split
        splits, train_images=splits.train_images[:256], train_labels=splits.train_labels[:256]
    )
    space = spaces.MicroSpace(num_nodes=1)
    arc = space.parse("0 1 1 4 0 0 0 3")
    child = ChildConfig(out_filters=4, num_layers=3, keep_prob=1.0)
    # A small bound: clipping is active at every step.
    train = TrainConfig(epochs=1, batch_size=64, pad=1, grad_bound=0.1)
    models = {}
    for name, strategy in [("one", None), ("two", mirrored_strategy(["/cpu:0", "/cpu:1"]))]:
        summary = train_child(
            space, arc, child, train, splits, str(tmp_path / name), verbose=0, strategy=strategy
        )
        models[name] = keras.saving.load_model(tmp_path / name / "model.keras")
        models[name + "_summary"] = summary
    assert models["two_summary"]["final_train_accuracy"] == pytest.approx(
        models["one_summary"]["final_train_accuracy"], abs=1e-6
    )
    for a, b in zip(models["one"].weights, models["two"].weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-4)
