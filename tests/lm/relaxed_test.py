"""Tests of DARTS's relaxed recurrent cell (`enas_tf.lm.relaxed`)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas_tf.lm.cells import FixedRnnCell
from enas_tf.lm.relaxed import RelaxedRnnCell, RelaxedRnnLM
from enas_tf.spaces.rnn import RnnSpace, rnn_edges, rnn_relaxed_ops

H, L = 6, 4


def one_hot(arc):
    return RelaxedRnnLM(vocab_size=3, hidden_size=H, num_nodes=L).one_hot(arc)


def test_edges_and_ops():
    assert rnn_edges(3) == ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    assert rnn_relaxed_ops(4) == ("tanh", "relu", "sigmoid", "identity", "none")
    assert rnn_relaxed_ops(2, none_op=False) == ("tanh", "relu")


@pytest.mark.parametrize("seed", [0, 1])
def test_one_hot_weights_compute_the_fixed_cell(seed):
    keras.utils.set_random_seed(seed)
    arc = RnnSpace(num_nodes=L).random_arc(seed)
    relaxed = RelaxedRnnCell(H, num_nodes=L)
    relaxed.build()
    fixed = FixedRnnCell(arc, H, average="all")
    fixed.build()
    fixed.set_child_weights(relaxed.child_weights())
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(3, 5, H)), tf.float32)
    state = tf.constant(rng.normal(size=(3, H)), tf.float32)
    masks = dict(
        x_mask=tf.constant(rng.uniform(size=(3, H)) > 0.3, tf.float32),
        l_mask=tf.constant(rng.uniform(size=(3, H)) > 0.3, tf.float32),
    )
    got, last = relaxed(x, state, arc=tf.constant(one_hot(arc)), **masks)
    want, want_last = fixed(x, state, **masks)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(last.numpy(), want_last.numpy(), rtol=1e-5, atol=1e-6)
    # A uniform mixture is another function; "none" alone zeroes a node.
    uniform = np.full_like(one_hot(arc), 0.2)
    assert not np.allclose(relaxed(x, state, arc=uniform)[0].numpy(), want.numpy(), atol=1e-3)


def test_mixing_weights_are_checked_and_differentiable():
    relaxed = RelaxedRnnCell(H, num_nodes=L)
    x = tf.zeros((2, 3, H))
    with pytest.raises(ValueError, match=r"Expected mixing weights of shape \(10, 5\)"):
        relaxed(x, arc=tf.zeros((10, 4)))
    alpha = tf.Variable(tf.random.normal((10, 5), seed=0))
    x = tf.random.normal((2, 3, H), seed=1)
    with tf.GradientTape() as tape:
        out, _ = relaxed(x, arc=tf.nn.softmax(alpha))
        loss = tf.reduce_sum(out**2)
    grad = tape.gradient(loss, alpha)
    assert grad is not None and np.all(np.isfinite(grad.numpy()))
    assert np.abs(grad.numpy()[:, :4]).sum() > 0
