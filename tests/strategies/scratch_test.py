"""The settings of strategies that train every proposal from scratch."""

import math

import pytest

from enas_tf.errors import UserError
from enas_tf.strategies import evolution, nas, reinforce
from enas_tf.strategies.scratch import ScratchSettings


def test_score_is_the_best_of_the_last_epochs_and_reward_its_power():
    settings = ScratchSettings(reward_epochs=2, reward_power=3.0)
    # Epoch 2's 0.5 is outside the last two epochs.
    assert settings.score([0.1, 0.5, 0.3, 0.2]) == 0.3
    assert settings.reward(0.5) == 0.125
    # Fewer epochs than reward_epochs: all of them; none: NaN.
    assert ScratchSettings(reward_epochs=5).score([0.2, 0.4]) == 0.4
    assert math.isnan(settings.score([]))
    assert ScratchSettings(reward_power=1.0).reward(0.7) == 0.7


def test_checks_name_the_setting_and_refuse_the_rnn_space():
    ScratchSettings().check_scratch("micro")
    for bad, message in (
        ({"child_epochs": 0}, "child_epochs must be >= 1"),
        ({"reward_epochs": 0}, "reward_epochs must be >= 1"),
        ({"parallel_children": 0}, "parallel_children must be >= 1"),
        ({"reward_power": -1.0}, "reward_power must be > 0"),
    ):
        with pytest.raises(UserError, match=message):
            ScratchSettings(**bad).check_scratch("macro")
    with pytest.raises(UserError, match="image spaces"):
        ScratchSettings().check_scratch("rnn")


def test_which_strategies_train_from_scratch():
    assert nas.Config().from_scratch
    assert not evolution.Config().from_scratch
    assert evolution.Config(evaluation="scratch").from_scratch
    assert not hasattr(reinforce.Config(), "from_scratch")
    # nas takes the controller's settings and checks them too.
    with pytest.raises(UserError, match="controller_lr must be > 0"):
        nas.Config(controller_lr=0.0).check("micro")
    with pytest.raises(UserError, match="evaluation must be one of shared, scratch"):
        evolution.Config(evaluation="bogus").check("micro")
    # Shared-weight evolution runs on every space; from scratch, images only.
    evolution.Config().check("rnn")
    with pytest.raises(UserError, match="image spaces"):
        evolution.Config(evaluation="scratch").check("rnn")
    # nas's controller defaults per kind of search are reinforce's.
    assert nas.DEFAULTS["lm"].controller_lr == reinforce.DEFAULTS["lm"].controller_lr
