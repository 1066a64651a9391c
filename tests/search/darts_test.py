"""Tests of the DARTS search (`enas_tf.search.darts`) on a tiny relaxed
network (digits)."""

import dataclasses
import json
import signal

import numpy as np
import pytest

from enas_tf import data
from enas_tf.configs.image import SearchConfig
from enas_tf.errors import UserError
from enas_tf.runtime.checkpoints import Stopped
from enas_tf.runtime.distribute import mirrored_strategy
from enas_tf.search.darts import DartsSearch
from enas_tf.search.image import Search, make_search
from enas_tf.testing import read_events

DARTS = SearchConfig.from_flat(
    algorithm="darts",
    darts_order=1,
    arch_lr=0.05,
    num_nodes=1,
    num_layers=3,
    out_filters=4,
    epochs=2,
    batch_size=128,
    eval_batch_size=200,
    keep_prob=1.0,
    log_arcs=1,
    flip=False,
    pad=0,
    lr_t0=2,
    lr_t_mul=1,
)


@pytest.fixture(scope="module")
def digits():
    return data.load_images("digits", valid_size=200, train_size=384)


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "search_log.jsonl").open()]


@pytest.fixture(scope="module")
def whole(digits, tmp_path_factory):
    """A first-order search of 2 epochs: (search, alpha before, result)."""
    run_dir = tmp_path_factory.mktemp("darts") / "whole"
    search = make_search(DARTS, digits, str(run_dir), verbose=0)
    alpha = search.sampler.alpha.numpy()
    return search, alpha, search.run(), run_dir


def test_darts_searches_logs_and_derives(whole):
    search, alpha, result, run_dir = whole
    assert isinstance(search, DartsSearch) and search.steps_per_epoch == 3
    assert not np.allclose(search.sampler.alpha.numpy(), alpha)
    arc = search.sampler.derive()
    assert result["best_arc"] == search.space.format(arc) and result["candidates"] == 1
    assert result["evaluation"] == "one_hot" and result["epoch"] == 2
    assert result["valid_accuracy"] == pytest.approx(search.score(arc))
    assert json.loads((run_dir / "best_arc.json").read_text())["arc"] == arc.tolist()
    log = read_log(run_dir)
    assert [row["epoch"] for row in log] == [1, 2]
    for key in (
        "child/loss",
        "darts/valid_loss",
        "darts/valid_accuracy",
        "controller/parameter_free_share",
        "controller/identity_ops_normal",
        "controller/alpha_entropy",
    ):
        assert np.isfinite(log[1][key]), key
    # The relaxed network learns digits above chance in 6 steps.
    assert log[1]["darts/valid_accuracy"] > 0.2
    assert log[1]["arcs"][0]["arc"] == result["best_arc"]
    events = read_events(run_dir / "logs")
    for tag in ("controller/alphas", "controller/derived_cells"):
        assert [step for step, _ in events[tag]] == [1, 2], tag
    # One trace of each step for the whole run.
    for fn in (search.steps.architecture, search.steps.weights, search.steps.evaluate):
        assert fn.experimental_get_tracing_count() == 1


def test_a_stopped_darts_search_resumes_exactly(digits, whole, tmp_path):
    whole, _, _, whole_dir = whole
    first = make_search(DARTS, digits, str(tmp_path / "parts"), verbose=0)
    weights, calls = first.steps.weights, []

    def weights_then_stop(batch):  # a SIGTERM during step 2 of epoch 2 (3 per epoch)
        calls.append(1)
        if len(calls) == 5:
            first._stop.requested = signal.SIGTERM
        return weights(batch)

    first.steps = dataclasses.replace(first.steps, weights=weights_then_stop)
    with pytest.raises(Stopped):
        first.run()
    resumed = make_search(DARTS, digits, str(tmp_path / "parts"), verbose=0)
    assert int(resumed.epoch.numpy()) == 1 and int(resumed.child_done.numpy()) == 2
    resumed.run()
    np.testing.assert_allclose(
        resumed.sampler.alpha.numpy(), whole.sampler.alpha.numpy(), rtol=1e-5, atol=1e-6
    )
    for a, b in zip(resumed.net.variables, whole.net.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    resumed_log, whole_log = read_log(tmp_path / "parts"), read_log(whole_dir)
    assert [r["epoch"] for r in resumed_log] == [1, 2]
    assert resumed_log[1]["child/loss"] == pytest.approx(whole_log[1]["child/loss"], rel=1e-4)


def test_early_stop_on_skip_connections(digits, tmp_path):
    """A search whose derived normal cell has collapsed to skip connections
    stops before its next epoch (here, as if resumed after epoch 1)."""
    config = DARTS.replace(darts_order=1, epochs=3, early_stop_skips=1, log_arcs=0)
    search = make_search(config, digits, str(tmp_path), verbose=0)
    assert not search._stop_early()  # epoch 0: never
    alpha = np.zeros(search.sampler.alpha.shape, np.float32)
    alpha[0, :, 4] = 5.0  # identity on every normal edge: collapsed
    search.sampler.alpha.assign(alpha)
    search.epoch.assign(1)
    result = search.run()
    assert result["epoch"] == 1 and not (tmp_path / "search_log.jsonl").exists()
    assert search.steps.weights.experimental_get_tracing_count() == 0  # nothing trained
    best = search.space.parse(result["best_arc"])
    assert [int(op) for op in best[1:4:2]] == [4, 4]  # the normal cell's two ops
    # Below the threshold (the normal cell has 2 ops) the search goes on.
    other = make_search(config.replace(early_stop_skips=3), digits, str(tmp_path / "b"))
    other.sampler.alpha.assign(alpha)
    other.epoch.assign(1)
    assert not other._stop_early()


def test_darts_refusals(digits, tmp_path):
    for change, match in (
        (dict(keep_prob=0.9), "--keep_prob=1"),
        (dict(cell_output="loose_ends"), "--cell_output=all"),
        (dict(reward_bn="moving"), "--reward_bn=batch"),
        (dict(precision="mixed_float16"), "float32 or mixed_bfloat16"),
    ):
        with pytest.raises(UserError, match=match):
            make_search(DARTS.replace(**change), digits, str(tmp_path / "x"), verbose=0)
    with pytest.raises(UserError, match="one device"):
        DartsSearch(DARTS, digits, str(tmp_path / "y"), strategy=mirrored_strategy(None))
    with pytest.raises(UserError, match="make_search"):
        Search(DARTS, digits, str(tmp_path / "z"))
    assert not (tmp_path / "x").exists()


def test_a_second_order_darts_search_over_the_macro_space(digits, tmp_path):
    """The macro relaxation end to end: alpha's op part and skip gates move,
    the derived arc is a macro arc scored with its one-hot weights."""
    config = DARTS.replace(space="macro", num_layers=3, darts_order=2, epochs=1, lr_t0=1)
    search = make_search(config, digits, str(tmp_path), verbose=0)
    k = search.space.num_ops + 1  # the ops and "none"
    assert search.sampler.alpha.shape == (1, 3, k + 3)
    alpha = search.sampler.alpha.numpy()
    result = search.run()
    moved = search.sampler.alpha.numpy() - alpha
    assert np.abs(moved[0, :, :k]).max() > 1e-3 and np.abs(moved[0, 1:, k]).max() > 1e-3
    arc = search.sampler.derive()
    assert search.space.name == "macro" and len(arc) == 6
    assert result["best_arc"] == search.space.format(arc) and result["evaluation"] == "one_hot"
    assert result["valid_accuracy"] == pytest.approx(search.score(arc))
    log = read_log(tmp_path)[0]
    assert 0 <= log["controller/skip_rate"] <= 1 and log["darts/valid_accuracy"] > 0.1
    assert search.steps.architecture.experimental_get_tracing_count() == 1
