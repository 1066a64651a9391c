"""Tests of the searches that train every proposal from scratch (nas, and
evolution with evaluation=scratch) on tiny macro networks (digits)."""

import json
import signal

import numpy as np
import pytest

from enas_tf import data
from enas_tf.configs.image import SearchConfig
from enas_tf.errors import UserError
from enas_tf.runtime.checkpoints import Stopped
from enas_tf.runtime.distribute import mirrored_strategy
from enas_tf.search.image import Search, make_search
from enas_tf.search.scratch import ScratchSearch

NAS = SearchConfig.from_flat(
    algorithm="nas",
    space="macro",
    num_layers=2,
    out_filters=8,
    epochs=1,
    batch_size=64,
    controller_steps=1,
    num_aggregate=2,
    log_arcs=2,
    derive_samples=3,
    flip=False,
    pad=0,
    child_epochs=3,
    reward_epochs=2,
    parallel_children=2,
)


@pytest.fixture(scope="module")
def digits():
    return data.load_images("digits", valid_size=100)


def _children(run_dir):
    """children.jsonl's records in the order they were proposed (the file
    has them in the order they finished)."""
    records = [json.loads(line) for line in (run_dir / "children.jsonl").open()]
    return sorted(records, key=lambda r: (r["epoch"], r["update"], r["child"]))


def test_nas_trains_rewards_and_derives_the_best_child(digits, tmp_path):
    run_dir = tmp_path / "run"
    search = make_search(NAS, digits, str(run_dir), verbose=0)
    assert isinstance(search, ScratchSearch)
    result = search.run()
    children = _children(run_dir)
    assert [(c["epoch"], c["update"], c["child"]) for c in children] == [(1, 1, 1), (1, 1, 2)]
    for child in children:
        # Trained child_epochs epochs; the score is the best of the last
        # reward_epochs validation accuracies, the reward its cube.
        assert len(child["valid_curve"]) == len(child["train_curve"]) == 3
        assert child["valid_accuracy"] == max(child["valid_curve"][-2:])
        assert child["reward"] == pytest.approx(child["valid_accuracy"] ** 3)
        assert child["params"] > 0 and "error" not in child
        # A macro net of 2 layers and 8 filters learns digits well above
        # chance (0.1) in 3 epochs of 23 steps (0.31-0.71 measured).
        assert child["valid_accuracy"] > 0.25
    # The controller learned from those rewards: REINFORCE's baseline
    # started at the first and moved towards the second (decay 0.99; the
    # entropy bonus is tiny).
    baseline = children[0]["reward"]
    baseline -= 0.01 * (baseline - children[1]["reward"])
    assert float(search.sampler.baseline.numpy()) == pytest.approx(baseline, rel=0.02)
    # Derived: the best trained child.
    best = max(children, key=lambda c: c["valid_accuracy"])
    assert result["best_arc"] == best["arc"] == (run_dir / "best_arc.txt").read_text().strip()
    assert result["valid_accuracy"] == best["valid_accuracy"] and result["children"] == 2
    candidates = json.loads((run_dir / "candidates.json").read_text())["candidates"]
    assert candidates[0]["arc"] == best["arc"] and candidates[0]["trainings"] == 1
    log = [json.loads(line) for line in (run_dir / "search_log.jsonl").open()]
    assert log[0]["children/trained"] == 2
    assert log[0]["children/best_valid_accuracy"] == best["valid_accuracy"]
    assert [a["arc"] for a in log[0]["arcs"]][0] == best["arc"]


def test_a_stopped_update_is_proposed_again_and_its_finished_children_reused(digits, tmp_path):
    """A run stopped (SIGTERM) or killed while an update's children train
    resumes from the checkpoint before that update: its strategy proposes
    the same children, and those children.jsonl holds are not retrained.
    (Children trained in other processes than the uninterrupted run's
    compute the same curves: a child is a function of its architecture and
    seed.)"""
    config = NAS.replace(controller_steps=2, parallel_children=1, child_epochs=2)
    whole = make_search(config, digits, str(tmp_path / "whole"), verbose=0)
    whole.run()
    records = _children(tmp_path / "whole")
    parts = tmp_path / "parts"
    first = make_search(config, digits, str(parts), verbose=0)
    update = first.sampler.update

    def update_then_stop(arcs, rewards):  # a SIGTERM during update 1
        first._stop.requested = signal.SIGTERM
        return update(arcs, rewards)

    first.sampler.update = update_then_stop
    with pytest.raises(Stopped):
        first.run()
    # As if killed while update 2 trained: its first child recorded, then a
    # line cut short.
    with open(parts / "children.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(records[2]) + "\n")
        f.write('{"epoch": 1, "update": 2, "ch')
    resumed = make_search(config, digits, str(parts), verbose=0)
    assert int(resumed.controller_done.numpy()) == 1
    resumed.run()
    assert resumed._trained == 1  # update 2's second child only
    timeless = lambda records: [{**r, "seconds": None} for r in records]  # noqa: E731
    assert timeless(_children(parts)) == timeless(records)
    assert (parts / "best_arc.txt").read_text() == (tmp_path / "whole" / "best_arc.txt").read_text()


def test_evolution_from_scratch_admits_the_children_scores(digits, tmp_path):
    config = NAS.replace(
        algorithm="evolution",
        evaluation="scratch",
        population_size=3,
        sample_size=2,
        num_aggregate=2,
        controller_steps=2,
        child_epochs=1,
        reward_power=1.0,
    )
    search = make_search(config, digits, str(tmp_path / "run"), verbose=0)
    assert isinstance(search, ScratchSearch)
    search.run()
    children = _children(tmp_path / "run")
    assert len(children) == 4
    # The population holds the 3 youngest children with their scores.
    arcs, rewards = search.sampler.members()
    assert [search.space.format(a) for a in arcs] == [c["arc"] for c in children[1:]]
    np.testing.assert_allclose(rewards, [c["valid_accuracy"] for c in children[1:]], rtol=1e-6)


def test_settings_and_refusals(digits, tmp_path):
    with pytest.raises(UserError, match="run it with enas_tf.search.image.make_search"):
        Search(NAS, digits, str(tmp_path / "a"), verbose=0)
    with pytest.raises(UserError, match="scores architectures with shared weights"):
        ScratchSearch(NAS.replace(algorithm="reinforce"), digits, str(tmp_path / "b"))
    with pytest.raises(UserError, match="drop --strategy"):
        ScratchSearch(NAS, digits, str(tmp_path / "c"), strategy=mirrored_strategy(None))
    for bad, message in (
        ({"child_epochs": 0}, "child_epochs must be >= 1"),
        ({"reward_power": 0.0}, "reward_power must be > 0"),
        ({"parallel_children": 0}, "parallel_children must be >= 1"),
    ):
        with pytest.raises(UserError, match=message):
            NAS.replace(**bad).check()
    # Nothing was written by the refused searches.
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()
