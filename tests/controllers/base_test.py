"""Tests of the parts shared by the controllers (`enas_tf.controllers.base`)."""

import numpy as np
import pytest
import tensorflow as tf

from enas_tf.controllers.base import (
    Controller,
    Sample,
    check_positive_or_none,
    choose,
    one_hot,
    select,
)
from enas_tf.controllers.build import controller_for
from enas_tf.spaces import MacroSpace, MicroSpace, RnnSpace


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def built(lstm_size=3, num_ops=4, seed=0, **kwargs):
    """A base `Controller` with the common variables, no `_run`."""
    kwargs = {"tanh_constant": None, "temperature": None, **kwargs}
    controller = Controller(lstm_size, seed=seed, **kwargs)
    controller._build_common(num_ops)
    return controller


@pytest.mark.parametrize("value", [None, 1e-6, 0.5, 3])
def test_check_positive_or_none_accepts(value):
    check_positive_or_none("temperature", value)


@pytest.mark.parametrize("value", [0, 0.0, -1.5, float("nan")])
def test_check_positive_or_none_rejects(value):
    with pytest.raises(ValueError, match=rf"Expected temperature > 0 or None; received: {value}\."):
        check_positive_or_none("temperature", value)


def test_one_hot_and_select():
    hot = one_hot(tf.constant([2, 0], tf.int32), 3)
    assert hot.dtype == tf.float32
    np.testing.assert_array_equal(hot, [[0, 0, 1], [1, 0, 0]])
    rows = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    picked = select(tf.constant(rows), tf.constant([1, 2], tf.int32))
    assert picked.shape == (2, 4)
    np.testing.assert_array_equal(picked, [rows[0, 1], rows[1, 2]])


def test_choose_scores_forced_choices():
    logits = np.array([[1.0, 2.0, 0.5], [-1.0, 0.0, 3.0]], np.float32)
    generator = tf.random.Generator.from_seed(0)
    state = generator.state.numpy().copy()
    choice, log_prob, entropy = choose(
        tf.constant(logits), tf.constant([2, 0], tf.int32), generator
    )
    np.testing.assert_array_equal(choice, [2, 0])
    lsm = log_softmax(logits)
    np.testing.assert_allclose(log_prob, [lsm[0, 2], lsm[1, 0]], rtol=1e-5)
    np.testing.assert_allclose(entropy, -(np.exp(lsm) * lsm).sum(axis=1), rtol=1e-5)
    # Scoring draws no seed.
    np.testing.assert_array_equal(generator.state.numpy(), state)


def test_choose_samples_reproducibly_and_scores_what_it_drew():
    logits = tf.constant(np.log([[0.1, 0.2, 0.7]] * 500), tf.float32)
    draws = [choose(logits, None, tf.random.Generator.from_seed(s)) for s in (4, 4, 5)]
    (a, lp_a, ent_a), (b, _, _), (c, _, _) = draws
    assert a.dtype == tf.int32 and a.shape == (500,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_allclose(lp_a, np.log([0.1, 0.2, 0.7])[a.numpy()], rtol=1e-5)
    np.testing.assert_allclose(ent_a, [-np.sum([p * np.log(p) for p in (0.1, 0.2, 0.7)])] * 500)
    # About the right frequencies.
    np.testing.assert_allclose(np.bincount(a, minlength=3) / 500, [0.1, 0.2, 0.7], atol=0.06)


def test_choose_follows_a_peaked_distribution():
    logits = tf.constant([[0.0, 60.0, 0.0], [50.0, 0.0, 0.0]] * 20, tf.float32)
    choice, log_prob, entropy = choose(logits, None, tf.random.Generator.from_seed(1))
    np.testing.assert_array_equal(choice, [1, 0] * 20)
    np.testing.assert_allclose(log_prob, 0.0, atol=1e-6)
    np.testing.assert_allclose(entropy, 0.0, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"lstm_size": 0}, "lstm_size >= 1"),
        ({"tanh_constant": 0.0}, "Expected tanh_constant > 0 or None"),
        ({"temperature": -2.0}, "Expected temperature > 0 or None"),
    ],
)
def test_controller_rejects_bad_settings(kwargs, name):
    settings = {"lstm_size": 4, "tanh_constant": 1.5, "temperature": None, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=name):
        Controller(**settings)


@pytest.mark.parametrize(
    "temperature, tanh_constant, expected",
    [
        (None, None, lambda z: z),
        (4.0, None, lambda z: z / 4.0),
        (None, 2.5, lambda z: 2.5 * np.tanh(z)),
        (4.0, 2.5, lambda z: 2.5 * np.tanh(z / 4.0)),
    ],
)
def test_process_divides_then_squashes(temperature, tanh_constant, expected):
    controller = Controller(4, tanh_constant=1.0, temperature=temperature, seed=0)
    z = np.array([[-8.0, -0.5, 0.0, 1.0, 9.0]], np.float32)
    got = controller._process(tf.constant(z), tanh_constant)
    np.testing.assert_allclose(got, expected(z.astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_common_variables_shapes_and_range():
    controller = built(lstm_size=3, num_ops=4, seed=0)
    shapes = {v.path.split("/")[-1]: tuple(v.shape) for v in controller.trainable_variables}
    assert shapes == {
        "lstm_kernel": (6, 12),
        "start_embedding": (1, 3),
        "op_embedding": (4, 3),
        "op_softmax": (3, 4),
        "attn_w1": (3, 3),
        "attn_w2": (3, 3),
        "attn_v": (3, 1),
    }
    values = np.concatenate([v.numpy().ravel() for v in controller.trainable_variables])
    assert np.abs(values).max() <= 0.1 and np.abs(values).min() > 0
    # Seeded: the same values again, and no two same-shaped variables alike.
    again = built(lstm_size=3, num_ops=4, seed=0)
    for v, w in zip(controller.trainable_variables, again.trainable_variables):
        np.testing.assert_array_equal(v.numpy(), w.numpy())
    assert not np.array_equal(controller.attn_key.numpy(), controller.attn_query.numpy())
    no_softmax = Controller(3, None, None, seed=0)
    no_softmax._build_common(4, op_softmax=False)
    assert not hasattr(no_softmax, "op_softmax")


def test_lstm_step_matches_the_formula():
    controller = built(lstm_size=3, seed=2)
    rng = np.random.default_rng(0)
    x, c, h = (rng.normal(size=(2, 3)).astype(np.float32) for _ in range(3))
    out, (c_new, h_new) = controller._lstm(tf.constant(x), (tf.constant(c), tf.constant(h)))
    gates = np.concatenate([x, h], axis=1) @ controller.lstm_kernel.numpy()
    i, f, o, g = np.split(gates, 4, axis=1)
    want_c = sigmoid(i) * np.tanh(g) + sigmoid(f) * c
    want_h = sigmoid(o) * np.tanh(want_c)
    np.testing.assert_allclose(c_new, want_c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_new, want_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out, h_new)


def test_embed_attention_and_initial_state():
    controller = built(lstm_size=3, num_ops=4, seed=3)
    embedded = controller._embed(tf.constant([3, 0, 3], tf.int32))
    table = controller.op_embedding.numpy()
    np.testing.assert_allclose(embedded, table[[3, 0, 3]], rtol=1e-6)

    rng = np.random.default_rng(1)
    keys = [rng.normal(size=(2, 3)).astype(np.float32) for _ in range(4)]
    h = rng.normal(size=(2, 3)).astype(np.float32)
    scores = controller._attention([tf.constant(k) for k in keys], tf.constant(h))
    assert scores.shape == (2, 4)
    query = h @ controller.attn_query.numpy()
    v = controller.attn_v.numpy()[:, 0]
    want = np.stack([np.tanh(k + query) @ v for k in keys], axis=1)
    np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-6)

    (c, h0), start = controller._initial(5)
    assert c.shape == h0.shape == start.shape == (5, 3)
    np.testing.assert_array_equal(c, np.zeros((5, 3)))
    np.testing.assert_array_equal(start, np.tile(controller.start_embedding.numpy(), (5, 1)))


def test_base_controller_has_no_space_or_run():
    controller = Controller(4, 1.5, 2.0, seed=7, name="ctl")
    with pytest.raises(NotImplementedError):
        _ = controller.space
    with pytest.raises(ValueError, match="batch_size >= 1; received: 0"):
        controller.sample(0)
    with pytest.raises(NotImplementedError):
        controller.sample(1)
    assert controller.get_config() == {
        "name": "ctl",
        "trainable": True,
        "lstm_size": 4,
        "tanh_constant": 1.5,
        "temperature": 2.0,
        "seed": 7,
    }


@pytest.mark.parametrize(
    "space",
    [
        MacroSpace(num_layers=3, num_ops=4),
        MicroSpace(num_nodes=2, num_ops=3),
        RnnSpace(num_nodes=3),
    ],
    ids=["macro", "micro", "rnn"],
)
def test_tiny_controller_samples_valid_arcs(space):
    controller = controller_for(space, lstm_size=8, seed=0)
    assert controller.num_decisions == space.num_decisions
    sample = controller.sample(12)
    assert isinstance(sample, Sample)
    assert sample.arc.shape == (12, space.num_decisions)
    for row in sample.arc.numpy():
        assert space.validate(row) == tuple(int(a) for a in row)
    # Entropy is a sum of non-negative entropies; probabilities are <= 1.
    assert (sample.entropy.numpy() > 0).all() and (sample.log_prob.numpy() < 0).all()
    assert len({row.tobytes() for row in sample.arc.numpy()}) > 1


def test_scoring_checks_the_arc_shape_and_sign():
    space = MicroSpace(num_nodes=2, num_ops=3)
    controller = controller_for(space, lstm_size=8, seed=0)
    arcs = np.zeros((2, space.num_decisions), np.int32)
    scored = controller.log_prob_and_entropy(arcs)
    np.testing.assert_array_equal(scored.arc, arcs)
    assert scored.log_prob.shape == (2,)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        controller.log_prob_and_entropy(arcs[:, :-1])
    arcs[1, 3] = -1
    with pytest.raises(tf.errors.InvalidArgumentError, match="Negative arc entry"):
        controller.log_prob_and_entropy(arcs)
