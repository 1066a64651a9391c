"""Tests of the random strategy's settings and build (`enas_tf.strategies.random`)."""

import numpy as np

from enas_tf import strategies
from enas_tf.spaces import MacroSpace, RnnSpace
from enas_tf.strategies import random
from enas_tf.strategies.random.sampler import RandomSearch


def test_no_settings_of_its_own():
    config = strategies.default_config("random", "lm")
    assert config == random.Config() and not vars(config)
    config.check("macro")


def test_build_is_seeded_by_the_loop_seed():
    space = MacroSpace(num_layers=3)
    one = random.build(random.Config(), space, seed=5, num_aggregate=3)
    assert isinstance(one, RandomSearch) and one.num_aggregate == 3 and one.space == space
    again = random.build(random.Config(), space, seed=5, num_aggregate=3)
    other = random.build(random.Config(), space, seed=6, num_aggregate=3)
    arcs = one.sample(8).arc.numpy()
    np.testing.assert_array_equal(arcs, again.sample(8).arc.numpy())
    assert not np.array_equal(arcs, other.sample(8).arc.numpy())


def test_the_class_is_reachable_from_the_package():
    assert random.RandomSearch is RandomSearch
    rnn = strategies.build("random", None, RnnSpace(num_nodes=3), seed=0)
    RnnSpace(num_nodes=3).validate(list(rnn.sample(1).arc.numpy()[0]))
