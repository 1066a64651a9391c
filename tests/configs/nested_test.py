"""Tests of search configs made of sections (`enas_tf.configs.nested`)."""

import dataclasses

import pytest

from enas_tf import strategies
from enas_tf.configs.image import SearchConfig
from enas_tf.configs.lm import LmSearchConfig
from enas_tf.errors import UserError


@pytest.mark.parametrize("cls", [SearchConfig, LmSearchConfig])
@pytest.mark.parametrize("algorithm", ["reinforce", "random"])
def test_flat_names_are_unique_and_round_trip(cls, algorithm):
    config = cls.from_flat(algorithm=algorithm)
    paths = config.paths()
    assert len(set(paths.values())) == len(paths)
    assert cls.from_flat(config.flat()) == config
    assert cls.from_json(config.to_json()) == config
    # The sections are what config.json records.
    assert set(config.to_json()) >= {"space", "supernet", "optimizer", "strategy", "algorithm"}


def test_leaves_land_in_their_sections():
    config = SearchConfig.from_flat(
        space="macro", num_layers=4, out_filters=12, lr_max=0.1, controller_lr=1e-3, epochs=3
    )
    assert config.space.name == "macro" and config.space.num_layers == 4
    assert config.supernet.out_filters == 12 and config.optimizer.lr_max == 0.1
    assert config.strategy.controller_lr == 1e-3 and config.epochs == 3
    assert config.flat()["space"] == "macro"
    with pytest.raises(TypeError, match="has no setting hidden_size"):
        SearchConfig.from_flat(hidden_size=8)
    # Settings of another strategy are not settings of this one.
    with pytest.raises(TypeError, match="algorithm 'random' has no setting controller_lr"):
        SearchConfig.from_flat(algorithm="random", controller_lr=1e-3)


def test_each_kind_takes_its_strategy_defaults():
    assert SearchConfig().strategy == strategies.default_config("reinforce", "image")
    lm = LmSearchConfig()
    assert lm.strategy == strategies.default_config("reinforce", "lm")
    assert (lm.strategy.controller_lr, lm.strategy.temperature) == (5e-5, 5.0)
    assert SearchConfig(algorithm="random").strategy == strategies.config_class("random")()


def test_replace_changes_leaves_and_algorithms():
    config = SearchConfig().replace(num_nodes=3, entropy_weight=0.5)
    assert config.space.num_nodes == 3 and config.strategy.entropy_weight == 0.5
    random = config.replace(algorithm="random")
    assert random.algorithm == "random" and "entropy_weight" not in random.flat()
    back = random.replace(algorithm="reinforce")
    assert back.strategy == SearchConfig().strategy  # the defaults again
    assert back.space.num_nodes == 3


def test_a_mismatched_strategy_section_is_refused():
    config = dataclasses.replace(SearchConfig(algorithm="random"), strategy=SearchConfig().strategy)
    with pytest.raises(UserError, match="settings of algorithm random"):
        config.check()


def test_flat_records_of_older_runs_are_read():
    config = SearchConfig.from_flat(algorithm="random", num_nodes=3)
    old = {**SearchConfig.from_flat(num_nodes=3).flat(), "controller": "random"}
    del old["algorithm"]  # older runs: `controller`, and every controller setting
    assert SearchConfig.from_json(old) == config
    nested = config.upgrade_flat(old)
    assert nested["space"]["num_nodes"] == 3 and nested["algorithm"] == "random"
    assert "strategy" not in nested and "controller_lr" not in str(nested)
    with pytest.raises(TypeError, match="no setting retired"):
        SearchConfig.from_json({**old, "retired": 1})
    assert SearchConfig.from_json({**old, "retired": 1}, ignore_unknown=True) == config


def test_strategy_settings_an_older_lm_run_lacked_take_todays_values():
    config = LmSearchConfig()
    old = config.flat()
    for name in ("op_tanh_reduce", "skip_target", "skip_weight"):  # not in flat LM runs
        del old[name]
    assert config.upgrade_flat(old) == config.to_json()
    # A setting the old run had keeps its value, to show as a difference.
    old["controller_lr"] = 1.0
    assert config.upgrade_flat(old)["strategy"]["controller_lr"] == 1.0
