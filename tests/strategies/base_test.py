"""Tests of the strategy protocol and its helpers (`enas_tf.strategies.base`)."""

import numpy as np
import pytest
import tensorflow as tf

from enas_tf import strategies
from enas_tf.spaces import MacroSpace, MicroSpace
from enas_tf.strategies.base import Strategy, as_batch
from enas_tf.strategies.random import RandomSearch
from enas_tf.strategies.reinforce import Reinforce


def test_as_batch_converts_lists_and_arrays():
    arcs, rewards = as_batch(3, [[0, 1, 2], [2, 1, 0]], [0.5, 1])
    assert arcs.dtype == tf.int32 and arcs.shape == (2, 3)
    assert rewards.dtype == tf.float32 and rewards.shape == (2,)
    np.testing.assert_array_equal(arcs.numpy(), [[0, 1, 2], [2, 1, 0]])
    np.testing.assert_array_equal(rewards.numpy(), [0.5, 1.0])
    arcs, rewards = as_batch(2, np.array([[1, 0]], np.int64), np.array([np.nan]))
    assert arcs.dtype == tf.int32 and rewards.dtype == tf.float32
    assert np.isnan(rewards.numpy()[0])  # non-finite rewards are left to the strategy


def test_as_batch_accepts_tensors():
    arcs, rewards = as_batch(4, tf.zeros([5, 4], tf.int32), tf.ones([5]))
    assert arcs.shape == (5, 4) and rewards.shape == (5,)


@pytest.mark.parametrize(
    "arcs,rewards,message",
    [
        ([[0, 1]], [0.5], r"Expected arcs of shape \[n, 3\]; received: \(1, 2\)"),
        ([0, 1, 2], [0.5], r"Expected arcs of shape \[n, 3\]; received: \(3,\)"),
        ([[0, 1, 2]], [0.5, 0.7], r"one reward per arc, shape \[1\]; received: \(2,\)"),
        ([[0, 1, 2]], [[0.5]], r"one reward per arc, shape \[1\]; received: \(1, 1\)"),
        ([[0, 1, 2]], 0.5, r"one reward per arc, shape \[1\]; received: \(\)"),
    ],
)
def test_as_batch_refuses_shapes_that_do_not_fit(arcs, rewards, message):
    with pytest.raises(ValueError, match=message):
        as_batch(3, arcs, rewards)


@pytest.mark.parametrize(
    "name,cls",
    [("random", RandomSearch), ("reinforce", Reinforce)],
)
@pytest.mark.parametrize("space", [MicroSpace(num_nodes=2), MacroSpace(num_layers=3)])
def test_built_strategies_are_strategies(name, cls, space):
    strategy = strategies.build(name, None, space, seed=0, num_aggregate=2)
    assert type(strategy) is cls
    assert isinstance(strategy, Strategy)
    assert isinstance(strategy, tf.Module)  # checkpointable
    assert strategy.space == space and strategy.num_aggregate == 2


def test_an_object_missing_part_of_the_protocol_is_not_a_strategy():
    class Complete(tf.Module):
        def __init__(self):
            super().__init__()
            self.space, self.num_aggregate = MicroSpace(), 1

        def sample(self, batch_size=1):
            return None

        def update(self, arcs, rewards):
            return {}

    class NoUpdate(Complete):
        update = None

    assert isinstance(Complete(), Strategy)
    assert not isinstance(NoUpdate(), Strategy)
    no_aggregate = Complete()
    del no_aggregate.num_aggregate
    assert not isinstance(no_aggregate, Strategy)
