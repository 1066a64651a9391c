"""Tests of the enas_lm training epochs and stream evaluation (`enas_tf.lm.loop`)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas_tf.data.ptb import batchify
from enas_tf.errors import UserError
from enas_tf.lm import loop as lm_loop
from enas_tf.lm import steps as lm_training
from enas_tf.lm.model import FixedRnnLM, SharedRnnLM

V, H = 12, 4
ARC = [0, 2, 1, 0, 1, 1]
LOG_7 = math.log(7.0)


def test_train_rows_are_the_batchified_text():
    ids = np.arange(23)
    rows = lm_loop.train_rows(ids, 4)
    assert rows.shape == (4, 5) and rows.dtype == np.int32
    np.testing.assert_array_equal(rows, batchify(ids, 4))
    np.testing.assert_array_equal(rows[1], [5, 6, 7, 8, 9])


def test_train_rows_refuse_rows_under_five_tokens():
    lm_loop.train_rows(np.arange(20), 4)  # exactly 5 per row: fine
    with pytest.raises(UserError) as error:
        lm_loop.train_rows(np.arange(19), 4)
    message = str(error.value)
    assert "The train split has 19 tokens, too few for --batch_size=4" in message
    assert "give a smaller --batch_size" in message


def test_split_windows_in_order():
    ids = np.arange(2 * 11)
    pieces = lm_loop.split_windows(ids, 2, 3, "valid", "--eval_batch_size")
    assert len(pieces) == 3  # (11 - 1) // 3
    batched = batchify(ids, 2)
    for k, (x, y) in enumerate(pieces):
        np.testing.assert_array_equal(x, batched[:, 3 * k : 3 * k + 3])
        np.testing.assert_array_equal(y, batched[:, 3 * k + 1 : 3 * k + 4])
    # A row of exactly bptt + 1 tokens holds one window.
    assert len(lm_loop.split_windows(np.arange(8), 2, 3, "test", "--batch_size")) == 1


@pytest.mark.parametrize(
    "split, flag, tokens, batch, bptt",
    [("valid", "--eval_batch_size", 20, 4, 5), ("test", "--test_batch_size", 7, 2, 3)],
)
def test_split_windows_names_the_split_and_the_flag(split, flag, tokens, batch, bptt):
    rows = tokens // batch
    with pytest.raises(UserError) as error:
        lm_loop.split_windows(np.arange(tokens), batch, bptt, split, flag)
    assert str(error.value) == (
        f"The {split} split ({tokens} tokens) is too short for {flag}={batch} and "
        f"--bptt={bptt}: each of its rows would hold {rows} tokens, and one window needs "
        f"{bptt + 1}. Give a smaller {flag} or --bptt."
    )


def test_window_length():
    rng = np.random.default_rng(0)
    assert lm_loop.window_length(rng, 35, False, 0, 1000) == 35
    assert lm_loop.window_length(rng, 35, False, 980, 1000) == 19  # targets stay in the row
    assert lm_loop.window_length(rng, 35, False, 998, 1000) == 1
    assert lm_loop.window_length(rng, 35, False, 999, 1000) == 1  # never below 1
    lengths = {lm_loop.window_length(rng, 35, True, 0, 1000) for _ in range(300)}
    assert min(lengths) >= 7 and max(lengths) <= 44 and len(lengths) > 10


class FakeStep:
    """A train or eval step that records its windows and counts states."""

    def __init__(self, nll_per_token=LOG_7, finite=None):
        self.calls, self.nll, self.finite = [], nll_per_token, finite or (lambda i: True)

    def train(self, x, y, state, scale, *arc):
        i = len(self.calls)
        self.calls.append((np.array(x), np.array(y), np.array(state), float(scale), arc))
        metrics = dict.fromkeys(lm_loop._MEANS, float(i))
        metrics["cross_entropy"] = self.nll
        metrics["finite"] = self.finite(i)
        return state + 1.0, metrics

    def eval(self, x, y, state, *arc):
        self.calls.append((np.array(x), np.array(y), np.array(state), None, arc))
        n = np.size(y)
        return tf.constant(self.nll * n), tf.constant(float(n)), state + 1.0


def test_train_epoch_walks_the_text_and_carries_the_state():
    batched = batchify(np.arange(2 * 20), 2)
    fake = FakeStep()
    result = lm_loop.train_epoch(
        fake.train, batched, tf.zeros([2, 3]), np.random.default_rng(0), bptt=4, random_bptt=False
    )
    # Windows of 4 from column 0, the last capped so that its targets stay in
    # the row; the epoch ends once the column reaches 20 - 3.
    assert [c[0].shape[1] for c in fake.calls] == [4, 4, 4, 4, 3]
    assert result.wrapped and result.position == 0 and result.steps == 5
    xs = np.concatenate([c[0] for c in fake.calls], axis=1)
    np.testing.assert_array_equal(xs, batched[:, :19])
    for x, y, _, _, arc in fake.calls:
        np.testing.assert_array_equal(y, x + 1)  # the text is 0, 1, 2, ...
        assert arc == ()
    assert [c[3] for c in fake.calls] == [1.0, 1.0, 1.0, 1.0, 0.75]  # T / bptt
    assert [float(c[2][0, 0]) for c in fake.calls] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert result.metrics["loss"] == pytest.approx(2.0)  # mean of 0 .. 4
    assert result.metrics["perplexity"] == pytest.approx(7.0)
    assert result.metrics["nonfinite_steps"] == 0.0


def test_train_epoch_stops_after_max_steps_and_continues_there():
    batched = batchify(np.arange(2 * 30), 2)
    fake = FakeStep()
    arcs = iter(range(100))
    kwargs = {"bptt": 5, "random_bptt": False, "max_steps": 2}
    first = lm_loop.train_epoch(
        fake.train,
        batched,
        tf.zeros([2, 1]),
        np.random.default_rng(0),
        arc_fn=lambda: tf.constant(next(arcs)),
        **kwargs,
    )
    assert (first.position, first.steps, first.wrapped) == (10, 2, False)
    assert [int(c[4][0]) for c in fake.calls] == [0, 1]
    second = lm_loop.train_epoch(
        fake.train,
        batched,
        tf.zeros([2, 1]),
        np.random.default_rng(0),
        start=first.position,
        **kwargs,
    )
    np.testing.assert_array_equal(fake.calls[2][0], batched[:, 10:15])
    assert (second.position, second.steps) == (20, 2)
    # Within 3 columns of the end: a new epoch starts from column 0.
    fake.calls.clear()
    lm_loop.train_epoch(
        fake.train, batched, tf.zeros([2, 1]), np.random.default_rng(0), start=27, **kwargs
    )
    np.testing.assert_array_equal(fake.calls[0][0], batched[:, 0:5])


def test_train_epoch_leaves_skipped_steps_out_of_the_means():
    batched = batchify(np.arange(40), 1)
    fake = FakeStep(finite=lambda i: i != 1)
    after = []
    result = lm_loop.train_epoch(
        fake.train,
        batched,
        tf.zeros([1, 1]),
        np.random.default_rng(0),
        bptt=10,
        random_bptt=False,
        after_step=lambda: after.append(1),
    )
    assert result.steps == 4 and len(after) == 4
    assert result.metrics["nonfinite_steps"] == 1.0
    assert result.metrics["loss"] == pytest.approx((0 + 2 + 3) / 3)
    assert result.metrics["perplexity"] == pytest.approx(7.0)


@pytest.mark.parametrize("window", [1, 4, 1000])
def test_evaluate_stream_scores_every_target_once(window):
    ids = np.arange(3 * 11 + 2)  # the last 2 tokens are dropped
    fake = FakeStep(nll_per_token=math.log(5.0))
    ppl, count = lm_loop.evaluate_stream(
        fake.eval, ids, tf.zeros([3, 2]), window=window, arc=[1, 0]
    )
    assert count == 3 * 10
    assert ppl == pytest.approx(5.0)
    batched = batchify(ids, 3)
    xs = np.concatenate([c[0] for c in fake.calls], axis=1)
    ys = np.concatenate([c[1] for c in fake.calls], axis=1)
    np.testing.assert_array_equal(xs, batched[:, :-1])
    np.testing.assert_array_equal(ys, batched[:, 1:])
    assert len(fake.calls) == math.ceil(10 / window)
    assert [float(c[2][0, 0]) for c in fake.calls] == list(range(len(fake.calls)))  # carried
    for *_, arc in fake.calls:
        assert arc[0].dtype == tf.int32 and arc[0].numpy().tolist() == [1, 0]


def test_evaluate_stream_matches_one_call_on_whole_rows():
    keras.utils.set_random_seed(0)
    model = FixedRnnLM(ARC, vocab_size=V, hidden_size=H, seed=0)
    ids = np.random.default_rng(0).integers(0, V, 2 * 25)
    ppl, count = lm_loop.evaluate_stream(
        lm_training.make_eval_step(model), ids, model.initial_state(2), window=6
    )
    batched = batchify(ids, 2)
    logits = model(batched[:, :-1], state=model.initial_state(2)).logits
    nll = lm_training.token_nll(logits, batched[:, 1:]).numpy()
    assert count == 2 * 24
    assert ppl == pytest.approx(math.exp(nll.mean()), rel=1e-5)


def test_evaluate_stream_of_a_uniform_shared_model_is_the_vocabulary():
    model = SharedRnnLM(vocab_size=V, hidden_size=H, num_nodes=3, seed=0)
    for v in model.weights:
        v.assign(tf.zeros_like(v))  # zero logits
    step = lm_training.make_eval_step(model)
    ids = np.random.default_rng(1).integers(0, V, 40)
    ppl, count = lm_loop.evaluate_stream(step, ids, model.initial_state(1), window=9, arc=ARC)
    assert count == 39
    assert ppl == pytest.approx(V, rel=1e-5)


def test_variables_checkpoint_restores_into_a_model_of_another_name(tmp_path):
    a = FixedRnnLM(ARC, vocab_size=V, hidden_size=H, seed=0, name="first")
    b = FixedRnnLM(ARC, vocab_size=V, hidden_size=H, seed=1, name="second")
    assert not np.array_equal(a.embedding.numpy(), b.embedding.numpy())
    path = lm_loop.variables_checkpoint(a).write(str(tmp_path / "ckpt"))
    lm_loop.variables_checkpoint(b).read(path).assert_consumed()
    for v, w in zip(a.weights, b.weights):
        np.testing.assert_array_equal(v.numpy(), w.numpy())
    names = {name for name, _ in tf.train.list_variables(path) if not name.startswith("_")}
    assert {n.split("/")[0] for n in names} == {"embedding", "w0", "node1", "node2", "node3"}


def test_variables_checkpoint_needs_unique_names():
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(2)], name="twice"
    )
    with pytest.raises(ValueError, match="Weight names of twice are not unique"):
        lm_loop.variables_checkpoint(model)
