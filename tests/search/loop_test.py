"""Tests of enas_tf.search.loop: `SearchBase`, the strategy-agnostic search loop.

The loop runs here around a stand-in subclass (`Toy`) whose "supernet" is one
variable and whose rewards and scores are a fixed function of the
architecture, so whole searches (child and controller phases, logging,
checkpoints, stop and resume, the derive step) take a second each. The CNN
and language-model searches built on it are tested in image_test.py and
lm_test.py.
"""

import json
import signal
import types

import numpy as np
import pytest
import tensorflow as tf

from enas_tf import spaces
from enas_tf.configs.image import SearchConfig
from enas_tf.errors import UserError
from enas_tf.runtime import rundir
from enas_tf.runtime.checkpoints import Stopped
from enas_tf.search import derive
from enas_tf.search.loop import RUN_FILES, SearchBase, _keep_epochs
from enas_tf.strategies.random.sampler import RandomSearch
from enas_tf.strategies.reinforce.trainer import Reinforce
from enas_tf.testing import read_events

CONFIG = SearchConfig.from_flat(
    algorithm="random",
    num_nodes=2,
    epochs=2,
    controller_steps=3,
    num_aggregate=2,
    log_arcs=2,
    derive_samples=6,
    seed=3,
)
# Rewards asked per epoch: controller_steps * num_aggregate, then log_arcs.
PER_EPOCH = 3 * 2 + 2


def value(arc) -> float:
    """The stand-in reward and score of an architecture."""
    arc = np.asarray(arc, np.float64)
    return float(np.sum(arc * np.arange(1, len(arc) + 1)) / 100)


class Toy(SearchBase):
    """A search whose shared weights are one counter of child phases."""

    SAFE_KEYS = ("search.epochs",)
    SCORE_KEY = "toy_score"

    def __init__(self, config, output_dir, *, stop_after=None, **kwargs):
        self.rewarded, self.scored = [], []
        self.stop_after = stop_after  # request SIGTERM after this many rewards
        run = {"tool": "toy", "search": config.to_json()}
        super().__init__(config, output_dir, run, verbose=kwargs.pop("verbose", 0), **kwargs)

    def _build_model(self):
        self.weight = tf.Variable(0.0, trainable=False)

    def _checkpointed(self):
        return {"weight": self.weight}

    def _build_steps(self):
        pass

    def _child_phase(self):
        if int(self.child_done.numpy()) == 0:  # one step; skipped when resumed after it
            self.weight.assign_add(1.0)
            self.child_done.assign_add(1)
            self._stop_if_requested()
        return {"child/weight": float(self.weight.numpy())}

    def _reward(self, arc):
        arc = tuple(int(v) for v in np.asarray(arc))
        self.rewarded.append(arc)
        if len(self.rewarded) == self.stop_after:
            self._stop.requested = signal.SIGTERM  # as StopRequest's handler does
        return value(arc)

    def score(self, arc):
        self.scored.append(tuple(arc))
        return value(arc)


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "search_log.jsonl").open()]


def test_a_search_logs_every_epoch_then_derives_the_best(tmp_path, capsys):
    toy = Toy(CONFIG, str(tmp_path), verbose=1)
    assert not toy.resumed and isinstance(toy.sampler, RandomSearch)
    result = toy.run()
    space = CONFIG.search_space()
    assert len(toy.rewarded) == 2 * PER_EPOCH and float(toy.weight.numpy()) == 2.0
    log = read_log(tmp_path)
    assert [row["epoch"] for row in log] == [1, 2]
    for row, start in zip(log, (0, PER_EPOCH)):
        # controller/reward averages the updates' mean rewards.
        steps = [toy.rewarded[start + 2 * i : start + 2 * i + 2] for i in range(3)]
        expected = np.mean([np.mean([value(a) for a in step]) for step in steps])
        assert row["controller/reward"] == pytest.approx(expected, rel=1e-6)
        assert row["controller/skipped"] == 0.0
        assert "controller/skip_rate" not in row  # LOG_SKIP_RATE is off
        shown = toy.rewarded[start + 6 : start + 8]
        assert row["arcs"] == [
            {"arc": space.format(a), "reward": pytest.approx(value(a))} for a in shown
        ]
        assert row["child/weight"] == row["epoch"] and row["epoch_seconds"] >= 0
    # Derive: unique samples, each scored once, the highest written.
    assert len(set(toy.scored)) == len(toy.scored) == result["candidates"] <= 6
    best = max(toy.scored, key=value)
    assert result["best_arc"] == space.format(best)
    assert result["toy_score"] == pytest.approx(value(best))
    assert result["epoch"] == 2 and result["seed"] == 3
    assert (tmp_path / "best_arc.txt").read_text() == space.format(best) + "\n"
    candidates = json.loads((tmp_path / "candidates.json").read_text())
    scores = [c["toy_score"] for c in candidates["candidates"]]
    assert scores == sorted(scores, reverse=True) and candidates["samples"] == 6
    assert candidates["flags"] == {"tool": "toy", "search": CONFIG.to_json()}
    assert spaces.load_arc(str(tmp_path / "best_arc.json")) == (space, best)
    printed = capsys.readouterr().out
    assert "Epoch 1/2" in printed and "Epoch 2/2" in printed
    assert "  controller: reward " in printed and f"  {space.format(shown[0])}" in printed

    # Rerun: nothing left to search; the same derive step from the checkpoint.
    again = Toy(CONFIG, str(tmp_path))
    assert again.resumed and int(again.epoch.numpy()) == 2
    assert float(again.weight.numpy()) == 2.0
    assert again.run()["best_arc"] == result["best_arc"] and not again.rewarded
    assert [row["epoch"] for row in read_log(tmp_path)] == [1, 2]
    # TensorBoard: the epochs' metrics, one HParams session (written when the
    # run started, not on resume), the best score after each derive step.
    events = read_events(tmp_path / "logs")
    assert [step for step, _ in events["controller/reward"]] == [1, 2]
    assert [float(v) for _, v in events["child/weight"]] == [1.0, 2.0]
    assert len(events["_hparams_/session_start_info"]) == 1
    final = [(step, float(v)) for step, v in events["final/toy_score"]]
    assert final == [(2, pytest.approx(value(best)))] * 2
    assert [(s, float(v)) for s, v in events["final/candidates"]] == [(2, len(toy.scored))] * 2

    # A different run is refused, or replaces this one's files with
    # overwrite (and only them).
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"search.seed: 3 -> 4"):
        Toy(CONFIG.replace(seed=4), str(tmp_path))
    fresh = Toy(CONFIG.replace(seed=4), str(tmp_path), overwrite=True)
    assert not fresh.resumed and int(fresh.epoch.numpy()) == 0
    left = {p.name for p in tmp_path.iterdir()}
    assert "notes.txt" in left and not left & {"search_log.jsonl", *derive.OUTPUT_FILES}
    assert not list(tmp_path.glob("checkpoints/*"))
    assert set(RUN_FILES) == {"checkpoints", "logs", "search_log.jsonl", *derive.OUTPUT_FILES}


def test_a_stopped_search_resumes_where_it_stopped(tmp_path):
    whole = Toy(CONFIG, str(tmp_path / "whole"))
    expected = whole.run()
    # Stop after the 2nd controller step of epoch 2 (its 4th reward).
    run_dir = tmp_path / "stopped"
    first = Toy(CONFIG, str(run_dir), stop_after=PER_EPOCH + 4)
    with pytest.raises(Stopped) as info:
        first.run()
    assert info.value.signum == signal.SIGTERM
    assert info.value.checkpoint == first.manager.latest_checkpoint
    assert int(first.epoch.numpy()) == 1 and int(first.controller_done.numpy()) == 2
    assert int(first.child_done.numpy()) == 1
    # As if killed after logging epoch 2 but before its checkpoint, and
    # while writing a line.
    with (run_dir / "search_log.jsonl").open("a") as f:
        f.write(json.dumps({"epoch": 2, "stale": True}) + '\n{"epoch": 3, "cont')

    second = Toy(CONFIG, str(run_dir))
    assert second.resumed and int(second.epoch.numpy()) == 1
    assert int(second.controller_done.numpy()) == 2 and int(second.child_done.numpy()) == 1
    assert second.run() == expected
    # The resumed run samples what the whole run sampled (the strategy's
    # state is in the checkpoint), and skips the child step already done.
    assert first.rewarded + second.rewarded == whole.rewarded
    assert second.scored == whole.scored and float(second.weight.numpy()) == 2.0
    log, whole_log = read_log(run_dir), read_log(tmp_path / "whole")
    assert [row["epoch"] for row in log] == [1, 2] and "stale" not in log[1]
    assert log[1]["arcs"] == whole_log[1]["arcs"]
    # The stopped epoch's controller metrics average the updates after the resume.
    step3 = whole.rewarded[PER_EPOCH + 4 : PER_EPOCH + 6]
    assert log[1]["controller/reward"] == pytest.approx(np.mean([value(a) for a in step3]))


class EpochToy(Toy):
    """A search that can only stop between epochs, logging skip rates."""

    STOP_INSIDE_EPOCH = False
    LOG_SKIP_RATE = True
    HIGHER_IS_BETTER = False


def test_a_search_that_cannot_stop_midway_stops_after_the_epoch(tmp_path):
    config = CONFIG.replace(space="macro", num_layers=4)
    toy = EpochToy(config, str(tmp_path), stop_after=3)
    with pytest.raises(Stopped) as info:
        toy.run()
    # The whole epoch ran, and its end-of-epoch checkpoint is the one named.
    assert len(toy.rewarded) == PER_EPOCH and int(toy.epoch.numpy()) == 1
    assert int(toy.controller_done.numpy()) == 0 and int(toy.child_done.numpy()) == 0
    assert info.value.checkpoint == toy.manager.latest_checkpoint
    assert toy.manager.checkpoints == [info.value.checkpoint]
    (row,) = read_log(tmp_path)
    # skip_rate: the mean fraction of skip bits set in the updates' samples.
    space = config.search_space()
    bits = np.array(toy.rewarded[:6])[:, list(space.skip_positions)]
    assert row["controller/skip_rate"] == pytest.approx(bits.mean())
    # Resumed, it runs epoch 2; the lowest score wins when lower is better.
    resumed = EpochToy(config, str(tmp_path))
    result = resumed.run()
    assert len(resumed.rewarded) == PER_EPOCH and [r["epoch"] for r in read_log(tmp_path)] == [1, 2]
    assert result["best_arc"] == space.format(min(resumed.scored, key=value))
    assert result["toy_score"] < max(value(a) for a in resumed.scored)


def test_the_default_strategy_is_the_configs_algorithm_with_its_settings(tmp_path):
    config = CONFIG.replace(
        algorithm="reinforce", controller_lr=0.02, baseline_decay=0.5, entropy_weight=0.25
    )
    reinforce = Toy(config, str(tmp_path / "reinforce")).sampler
    assert isinstance(reinforce, Reinforce)
    assert reinforce.learning_rate == 0.02 and reinforce.baseline_decay == 0.5
    assert reinforce.entropy_weight == 0.25 and reinforce.num_aggregate == 2
    assert reinforce.space == config.search_space()
    # Seeded with config.seed: the same seed samples the same arcs.
    samples = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        sampler = Toy(CONFIG.replace(seed=seed), str(tmp_path / name)).sampler
        assert isinstance(sampler, RandomSearch) and sampler.num_aggregate == 2
        samples[name] = sampler.sample(8).arc.numpy()
    np.testing.assert_array_equal(samples["a"], samples["b"])
    assert not np.array_equal(samples["a"], samples["c"])


def upgrade(recorded):
    """`_upgrade_recorded` of a search with CONFIG (it reads only the config)."""
    return SearchBase._upgrade_recorded(types.SimpleNamespace(config=CONFIG), recorded)


def old_flat(config=CONFIG):
    """The flat `search` section older runs recorded: every strategy's
    settings, the algorithm called `controller`."""
    flat = SearchConfig.from_flat(algorithm="reinforce").flat()
    flat.update(config.flat())
    flat["controller"] = flat.pop("algorithm")
    return flat


def test_upgrade_recorded_nests_an_old_flat_search_section():
    recorded = {"tool": "toy", "search": old_flat(), "data": {"dataset": "digits"}}
    upgraded = upgrade(recorded)
    expected = {"tool": "toy", "search": CONFIG.to_json(), "data": {"dataset": "digits"}}
    assert rundir.differences(upgraded, expected) == {}
    space = dict(name="micro", num_nodes=2, num_layers=6, num_ops=5)
    assert upgraded["search"]["space"] == space
    assert upgraded["search"]["algorithm"] == "random" and "controller" not in upgraded["search"]
    assert upgraded["tool"] == "toy" and upgraded["data"] == {"dataset": "digits"}
    assert recorded["search"] == old_flat()  # not changed in place
    # A setting that differs stays a difference, at its nested key.
    changed = upgrade({"search": old_flat(CONFIG.replace(num_nodes=3, lr_max=0.1))})
    assert rundir.differences(changed, {"search": CONFIG.to_json()}) == {
        "search.optimizer.lr_max": (0.1, 0.05),
        "search.space.num_nodes": (3, 2),
    }
    # Nested or missing sections are left as they are.
    nested = {"search": CONFIG.to_json()}
    assert upgrade(nested) is nested
    # A strategy setting the run did not record takes its default.
    config = SearchConfig.from_flat(algorithm="reinforce", memory_size=7)
    older = config.to_json()
    del older["strategy"]["memory"], older["strategy"]["memory_size"]
    ns = types.SimpleNamespace(config=config)
    grown = SearchBase._upgrade_recorded(ns, {"search": older})
    assert grown["search"]["strategy"]["memory"] is False
    assert grown["search"]["strategy"]["memory_size"] == 10000  # the default, not the flag's 7
    assert "memory" not in older["strategy"]  # not changed in place
    current = {"search": config.to_json()}
    assert SearchBase._upgrade_recorded(ns, current) is current
    for other in ({}, {"search": None}, {"search": "text"}):
        assert upgrade(other) is other


def test_an_old_flat_run_directory_resumes_in_the_nested_form(tmp_path):
    Toy(CONFIG, str(tmp_path))
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"tool": "toy", "search": old_flat()}))
    resumed = Toy(CONFIG, str(tmp_path))
    assert resumed.resumed
    assert json.loads(path.read_text()) == {"tool": "toy", "search": CONFIG.to_json()}
    path.write_text(json.dumps({"tool": "toy", "search": old_flat(CONFIG.replace(seed=9))}))
    with pytest.raises(UserError, match=r"search.seed: 9 -> 3"):
        Toy(CONFIG, str(tmp_path))


def test_keep_epochs_drops_the_lines_after_the_checkpoint(tmp_path):
    path = tmp_path / "search_log.jsonl"
    _keep_epochs(str(path), 1)  # no log yet: nothing to do
    assert not path.exists()
    lines = [json.dumps({"epoch": e, "x": e}) for e in (1, 2, 3)]
    path.write_text("\n".join(lines) + '\n{"epoch": 4, "x"\n[]\n')
    _keep_epochs(str(path), 2)
    assert path.read_text() == lines[0] + "\n" + lines[1] + "\n"
    _keep_epochs(str(path), 0)
    assert path.read_text() == ""
