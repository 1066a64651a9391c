"""Tests of the language-model run settings (`enas_tf.configs.lm`)."""

import dataclasses

import pytest

from enas_tf import strategies
from enas_tf.configs import lm
from enas_tf.configs.lm import LmSearchConfig, LmTrainConfig
from enas_tf.errors import UserError
from enas_tf.spaces import RnnSpace


def test_defaults_pass():
    LmSearchConfig().check()
    LmTrainConfig().check()


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"space": "micro"}, "search space is rnn; received 'micro'"),
        ({"num_nodes": 0}, "num_nodes must be >= 1; received 0"),
        ({"hidden_size": 0}, "hidden_size must be >= 1"),
        ({"bptt": 0}, "bptt must be >= 1"),
        ({"derive_samples": 0}, "derive_samples must be >= 1"),
        ({"drop_x": 1.0}, r"drop_x must be in \[0, 1\); received 1.0"),
        ({"drop_e": -0.1}, r"drop_e must be in \[0, 1\)"),
        ({"init_range": 0.0}, "init_range and learning_rate must be > 0"),
        ({"learning_rate": -1.0}, "init_range and learning_rate must be > 0"),
        ({"beta": -1.0}, "beta must be >= 0; received -1.0"),
        ({"max_steps_per_epoch": -1}, "max_steps_per_epoch must be >= 0"),
        ({"max_nonfinite": -1}, "max_nonfinite must be >= 0"),
        ({"controller_lr": 0.0}, "controller_lr must be > 0; received 0.0"),
        ({"reward_constant": -80.0}, "reward_constant must be > 0; received -80.0"),
        ({"temperature": -5.0}, "tanh_constant, temperature and skip_weight must be >= 0"),
        ({"log_arcs": -1}, "log_arcs must be >= 0; received -1"),
        ({"baseline_decay": 1.5}, r"baseline_decay must be in \[0, 1\)"),
    ],
)
def test_search_settings_out_of_range(changes, message):
    config = LmSearchConfig().replace(**changes)
    with pytest.raises(UserError, match=message):
        config.check()


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"hidden_size": 0}, "hidden_size must be >= 1"),
        ({"eval_batch_size": 0}, "eval_batch_size must be >= 1"),
        ({"drop_o": 1.0}, r"drop_o must be in \[0, 1\)"),
        ({"alpha": -0.7}, "alpha must be >= 0"),
        ({"grad_bound": -0.25}, "grad_bound must be >= 0"),
        ({"average": "last"}, "average must be all or loose_ends; received 'last'"),
        ({"average_after": -1}, "average_after must be >= 0"),
    ],
)
def test_train_settings_out_of_range(changes, message):
    config = dataclasses.replace(LmTrainConfig(), **changes)
    with pytest.raises(UserError, match=message):
        config.check()


def test_search_space_and_model():
    config = LmSearchConfig.from_flat(num_nodes=3, hidden_size=16, seed=7)
    config.check()
    space = config.search_space()
    assert space == RnnSpace(num_nodes=3)
    assert space.num_decisions == 2 * 3
    assert config.model_kwargs() == {
        "hidden_size": 16,
        "init_range": 0.04,
        "drop_e": 0.1,
        "drop_i": 0.2,
        "drop_x": 0.75,
        "drop_l": 0.25,
        "drop_o": 0.75,
        "num_nodes": 3,
        "seed": 7,
    }


def test_train_model_kwargs():
    kwargs = LmTrainConfig(average="loose_ends", hidden_size=32).model_kwargs()
    assert kwargs["average"] == "loose_ends" and kwargs["seed"] == 2126
    assert kwargs["hidden_size"] == 32
    assert {k: kwargs[k] for k in lm.DROPOUTS} == {
        "drop_e": 0.125,
        "drop_i": 0.175,
        "drop_x": 0.725,
        "drop_l": 0.225,
        "drop_o": 0.75,
    }


def test_help_names_only_fields():
    fields = set(LmSearchConfig().flat())
    fields |= {f.name for f in dataclasses.fields(LmTrainConfig)}
    assert set(lm.HELP) <= fields


def test_an_unknown_algorithm_is_refused_naming_the_known_ones():
    known = ", ".join(strategies.names())
    with pytest.raises(UserError, match=f"algorithm must be one of {known}; received 'annealing'"):
        LmSearchConfig.from_flat(algorithm="annealing").check()
    for name in strategies.names():
        config = LmSearchConfig.from_flat(algorithm=name)
        if getattr(config.strategy, "from_scratch", False):  # image spaces only
            with pytest.raises(UserError, match="implemented for the image spaces"):
                config.check()
        else:
            config.check()
