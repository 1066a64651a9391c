"""Tests of final language-model training, averaging and evaluation."""

import csv
import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas_tf import data
from enas_tf.configs.lm import LmTrainConfig
from enas_tf.errors import UserError
from enas_tf.lm import loop as lm_loop
from enas_tf.lm import steps as lm_training
from enas_tf.lm.model import FixedRnnLM
from enas_tf.spaces import RnnSpace
from enas_tf.testing import read_events, write_tiny_ptb
from enas_tf.train.lm import IterateAverage, averaging_due, describe, train_lm

SPACE = RnnSpace(num_nodes=3)
ARC = SPACE.parse("0 2 1 0 1 1")
# Settings that learn in 50 steps: light dropout, a larger initialisation
# (from the default 0.05, cells without a sigmoid sit near h = 0 with tiny
# gradients for a hundred steps) and a learning rate that stays stable.
TINY = LmTrainConfig(
    hidden_size=8,
    batch_size=4,
    bptt=5,
    epochs=2,
    max_steps_per_epoch=25,
    eval_batch_size=2,
    seed=1,
    init_range=0.5,
    learning_rate=5.0,
    grad_bound=1.0,
    drop_e=0.05,
    drop_i=0.1,
    drop_x=0.3,
    drop_l=0.1,
    drop_o=0.3,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return data.load_ptb(write_tiny_ptb(str(tmp_path_factory.mktemp("tiny"))))


def test_trains_evaluates_saves_and_resumes(corpus, tmp_path):
    out = tmp_path / "run"
    summary = train_lm(SPACE, ARC, TINY, corpus, str(out), verbose=0)
    assert summary["epochs"] == 2 and summary["steps"] == 50
    assert summary["arc"] == "0 2 1 0 1 1" and summary["task"] == "lm"
    # Every test target is scored, at batch 1 with the state carried.
    assert summary["test_targets"] == len(corpus.test) - 1
    # Learned something: a uniform model scores the vocabulary size, 31, an
    # untrained one 30-33 (seeds 1-5); 50 steps reach 13-17, below the
    # unigram perplexity (19.9).
    assert 1.0 < summary["test_perplexity"] < 0.75 * corpus.vocab_size
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert summary["best_valid_perplexity"] == min(float(r["valid_perplexity"]) for r in rows)
    # The saved model is the evaluated one.
    model = keras.models.load_model(out / "model.keras")
    assert isinstance(model, FixedRnnLM) and list(model.arc) == list(ARC)
    valid = lm_training.evaluate(model, corpus.valid, 2, 5)
    assert valid == pytest.approx(summary["valid_perplexity"], rel=1e-5)
    assert summary["params"] == corpus.vocab_size * 8 + 4 * 64 + 2 * 3 * 64
    # Resume with more epochs: continues after epoch 2.
    more = train_lm(SPACE, ARC, dataclasses.replace(TINY, epochs=3), corpus, str(out), verbose=0)
    assert more["resumed"] and more["epochs"] == 3 and more["steps"] == 75
    assert json.loads((out / "summary.json").read_text())["epochs"] == 3
    events = read_events(out / "logs")
    assert events["files"] == 2 and len(events["_hparams_/session_start_info"]) == 1
    assert [step for step, _ in events["valid_perplexity"]] == [1, 2, 3]
    finals = events["final/test_perplexity"]
    assert [step for step, _ in finals] == [2, 3]
    assert float(finals[-1][1]) == pytest.approx(more["test_perplexity"], rel=1e-6)
    # Another architecture in the same directory is refused.
    with pytest.raises(UserError, match="holds a different run"):
        train_lm(SPACE, SPACE.parse("0 0 0 0 0 0"), TINY, corpus, str(out), verbose=0)


def test_averaging_trigger():
    assert not averaging_due([10.0, 9.0, 8.0], 8.5, 1)  # 8.5 < min(10, 9)
    assert averaging_due([10.0, 9.0, 8.0], 9.5, 1)
    assert not averaging_due([10.0, 9.0], 20.0, 2)  # needs more than 2 earlier
    assert not averaging_due([10.0, 9.0, 8.0], 50.0, 0)  # 0: never


def test_iterate_average_is_the_mean_of_the_iterates():
    v = keras.Variable(np.zeros(3, np.float32))
    average = IterateAverage([v])
    assert not average.is_active
    v.assign([5.0, 5.0, 5.0])
    average.start()
    for value in ([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 5.0, 8.0]):
        v.assign(value)
        average.update()
    with average.applied():
        np.testing.assert_allclose(v.numpy(), [2.0, 3.0, 4.0], rtol=1e-6)
    np.testing.assert_array_equal(v.numpy(), [2.0, 5.0, 8.0])  # live weights back
    assert int(average.count.numpy()) == 3


def test_averaging_starts_when_validation_worsens(corpus, tmp_path, monkeypatch):
    # Validation perplexities as scripted: epoch 3 is worse than epoch 1, the
    # best of all but the last (average_after=1) earlier epochs.
    script = iter([10.0, 9.0, 11.0, 8.0, 8.0])
    monkeypatch.setattr(lm_training, "evaluate", lambda *a, **k: next(script))
    config = dataclasses.replace(TINY, epochs=4, average_after=1)
    summary = train_lm(SPACE, ARC, config, corpus, str(tmp_path / "avg"), verbose=0)
    with open(tmp_path / "avg" / "history.csv", newline="") as f:
        averaging = [int(r["averaging"]) for r in csv.DictReader(f)]
    assert averaging == [0, 0, 1, 1]
    assert summary["averaging_from_epoch"] == 3
    assert summary["evaluation"]["weights"] == "averaged"


def test_stream_evaluation_does_not_depend_on_the_window(corpus):
    model = FixedRnnLM(list(ARC), vocab_size=corpus.vocab_size, hidden_size=8, seed=0)
    step = lm_training.make_eval_step(model)
    ids = corpus.test[:200]
    ppl_1, count_1 = lm_loop.evaluate_stream(step, ids, model.initial_state(1), window=1)
    ppl_37, count_37 = lm_loop.evaluate_stream(step, ids, model.initial_state(1), window=37)
    assert count_1 == count_37 == 199
    assert ppl_37 == pytest.approx(ppl_1, rel=1e-5)
    assert step.experimental_get_tracing_count() == 1
    # Two rows: each row's targets, state carried per row.
    _, count = lm_loop.evaluate_stream(step, ids, model.initial_state(2), window=37)
    assert count == 2 * 99


def test_describe_counts_the_published_cell():
    text = describe(
        RnnSpace(num_nodes=8),
        RnnSpace(num_nodes=8).parse("0 2 1 0 2 1 2 2 4 0 5 0 3 2 6 2"),
        LmTrainConfig(),
    )
    assert "params 20,800,000" in text  # V H + 4 H^2 + 2 L H^2 (spec sec. 5.4)


def test_train_window_lengths_cover_the_text():
    rows = np.arange(4 * 50, dtype=np.int32).reshape(4, 50)
    seen = []

    def step(x, y, state, scale, *arc):
        seen.append((x[0, 0], x.shape[1], float(scale)))
        np.testing.assert_array_equal(y, x + 1)
        return state, dict.fromkeys(
            ("loss", "cross_entropy", "ar", "tar", "weight_penalty", "grad_norm"), 1.0
        )

    zero = tf.zeros([4, 2])
    rng = np.random.default_rng(0)
    first = lm_loop.train_epoch(step, rows, zero, rng, bptt=5, random_bptt=False, max_steps=3)
    assert (first.position, first.steps, first.wrapped) == (15, 3, False)
    rest = lm_loop.train_epoch(step, rows, zero, rng, start=15, bptt=5, random_bptt=False)
    assert rest.wrapped and rest.position == 0
    starts = [s for s, _, _ in seen]
    assert starts == list(range(0, 49, 5))[: len(starts)] and starts[-1] >= 45
    assert all(scale == pytest.approx(length / 5) for _, length, scale in seen)
