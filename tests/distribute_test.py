"""Tests of enas_tf.distribute (two logical CPUs, see conftest)."""

import pytest
import tensorflow as tf

from enas_tf.distribute import make_strategy, mirrored_strategy
from enas_tf.errors import UserError


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
    for values in (_all_reduce(first, [3]), _all_reduce(second, [5]),
                   _all_reduce(first, [3])):
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
