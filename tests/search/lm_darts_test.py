"""Tests of recurrent DARTS (`enas_tf.search.lm_darts`) on tiny generated text."""

import json
import math

import numpy as np
import pytest

from enas_tf import data, spaces
from enas_tf.configs.lm import LmSearchConfig
from enas_tf.errors import UserError
from enas_tf.search.lm import LmSearch
from enas_tf.search.lm_darts import LmDartsSearch
from enas_tf.testing import write_tiny_ptb

TINY = LmSearchConfig.from_flat(
    algorithm="darts",
    arch_lr=0.05,
    num_nodes=3,
    hidden_size=8,
    drop_e=0.0,
    drop_i=0.1,
    drop_x=0.3,
    drop_l=0.1,
    drop_o=0.3,
    learning_rate=5.0,
    grad_bound=1.0,
    batch_size=4,
    bptt=5,
    epochs=1,
    max_steps_per_epoch=40,
    eval_batch_size=2,
    log_arcs=1,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return data.load_ptb(write_tiny_ptb(str(tmp_path_factory.mktemp("tiny"))))


def test_recurrent_darts_learns_derives_and_resumes(corpus, tmp_path):
    out = tmp_path / "run"
    search = LmDartsSearch(TINY, corpus, str(out), verbose=0)
    alpha = search.sampler.alpha.numpy()
    result = search.run()
    assert not np.allclose(search.sampler.alpha.numpy(), alpha)
    space = spaces.RnnSpace(num_nodes=3)
    arc = search.sampler.derive()
    assert result["best_arc"] == space.format(arc) and result["candidates"] == 1
    assert result["evaluation"] == "one_hot"
    assert spaces.load_arc(str(out / "best_arc.json")) == (space, tuple(arc.tolist()))
    assert result["valid_perplexity"] == pytest.approx(search.score(arc), rel=1e-6)
    (log,) = [json.loads(line) for line in (out / "search_log.jsonl").open()]
    # The relaxed model learned the text (uniform: the vocabulary, 31).
    assert 1.0 < log["darts/valid_perplexity"] < 0.75 * corpus.vocab_size
    assert log["child/steps"] == 40 and math.isfinite(log["darts/valid_loss"])
    assert 0.0 <= log["controller/parameter_free_share"] <= 1.0
    assert log["arcs"][0]["arc"] == result["best_arc"]
    # 40 validation windows of 5 consumed, in order.
    assert int(search.valid_position.numpy()) > 0
    for fn in (search.train_step, search.eval_step, search.architecture_step):
        assert fn.experimental_get_tracing_count() == 1
    # Resumed with one more epoch: it continues from the checkpoint.
    more = LmDartsSearch(TINY.replace(epochs=2), corpus, str(out), verbose=0)
    assert more.resumed and int(more.epoch.numpy()) == 1
    np.testing.assert_array_equal(more.sampler.alpha.numpy(), search.sampler.alpha.numpy())
    assert int(more.valid_position.numpy()) == int(search.valid_position.numpy())
    more.run()
    log = [json.loads(line) for line in (out / "search_log.jsonl").open()]
    assert [row["epoch"] for row in log] == [1, 2]


def test_second_order_architecture_step(corpus, tmp_path):
    """With xi = 0 the unrolled step is the first-order step (same alpha
    update, loss and carried validation state); with xi > 0 it scores the
    validation window after a virtual step; the weights are restored; a
    second-order search runs with one trace of the step."""
    search = LmDartsSearch(TINY.replace(darts_order=2), corpus, str(tmp_path), verbose=0)
    assert search.architecture_step is search.second_order_step
    x, y = search.train_rows[:, :5], search.train_rows[:, 1:6]
    vx, vy = search.valid_rows[:, :5], search.valid_rows[:, 1:6]
    state = search.model.initial_state(4)
    arch = search.sampler
    weights = [w.numpy() for w in search.model.trainable_variables]
    saved = [v.numpy() for v in (arch.alpha, *arch.optimizer.variables)]

    def step(fn, *args):
        for v, value in zip((arch.alpha, *arch.optimizer.variables), saved):
            v.assign(value)
        loss, new_state = fn(*args)
        return float(loss), new_state.numpy(), arch.alpha.numpy()

    first = step(search.first_order_step, vx, vy, state)
    zero = step(search.second_order_step, x, y, state, vx, vy, state, 0.0)
    unrolled = step(search.second_order_step, x, y, state, vx, vy, state, 5.0)
    assert zero[0] == pytest.approx(first[0], rel=1e-6)
    np.testing.assert_allclose(zero[1], first[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(zero[2], first[2], rtol=1e-5, atol=1e-7)
    assert not np.allclose(first[2], saved[0])  # alpha moved
    assert abs(unrolled[0] - first[0]) > 1e-4  # scored at w' = w - xi g
    for w, value in zip(search.model.trainable_variables, weights):
        np.testing.assert_array_equal(w.numpy(), value)
    search.run()
    assert search.second_order_step.experimental_get_tracing_count() == 1
    assert search.first_order_step.experimental_get_tracing_count() == 1  # the calls above
    assert int(search.valid_position.numpy()) > 0


def test_refusals(corpus, tmp_path):
    with pytest.raises(UserError, match="is not DARTS"):
        LmDartsSearch(TINY.replace(algorithm="random"), corpus, str(tmp_path / "b"))
    with pytest.raises(UserError, match="run it with enas_tf.search.lm_darts.LmDartsSearch"):
        LmSearch(TINY, corpus, str(tmp_path / "c"))
    assert not any((tmp_path / name).exists() for name in "abc")
