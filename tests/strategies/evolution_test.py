"""Tests of regularized evolution's settings and build (`enas_tf.strategies.evolution`)."""

import pytest

from enas_tf import strategies
from enas_tf.configs.image import SearchConfig
from enas_tf.errors import UserError
from enas_tf.spaces import MicroSpace
from enas_tf.strategies import evolution
from enas_tf.strategies.evolution.population import RegularizedEvolution


def test_defaults_are_amoebanets():
    config = strategies.default_config("evolution", "image")
    assert (config.population_size, config.sample_size, config.train_arcs) == (100, 25, "uniform")
    assert strategies.default_config("evolution", "lm") == config


@pytest.mark.parametrize(
    "settings, problem",
    [
        ({"population_size": 1}, "population_size must be >= 2"),
        ({"sample_size": 0}, "sample_size must be in"),
        ({"population_size": 10, "sample_size": 11}, "population_size=10"),
        ({"train_arcs": "best"}, "train_arcs must be one of uniform, population"),
    ],
)
def test_bad_settings_are_user_errors(settings, problem):
    with pytest.raises(UserError, match=problem):
        SearchConfig.from_flat(algorithm="evolution", **settings).check()


def test_build_passes_the_settings():
    config = evolution.Config(population_size=8, sample_size=3, train_arcs="population")
    built = strategies.build("evolution", config, MicroSpace(num_nodes=2), seed=1, num_aggregate=4)
    assert isinstance(built, RegularizedEvolution) and evolution.RegularizedEvolution is type(built)
    assert (built.population_size, built.sample_size, built.train_arcs) == (8, 3, "population")
    assert built.num_aggregate == 4
