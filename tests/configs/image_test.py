"""Tests of the CNN run settings (`enas_tf.configs.image`)."""

import dataclasses

import pytest

from enas_tf import strategies
from enas_tf.configs.image import ChildConfig, SearchConfig, TrainConfig
from enas_tf.errors import UserError
from enas_tf.spaces import MacroSpace, MicroSpace, RnnSpace


def test_defaults_pass():
    SearchConfig().check()
    SearchConfig.from_flat(
        space="macro", num_ops=6
    ).check()  # cell_output "all" only applies to micro
    TrainConfig().check()
    ChildConfig().check(MicroSpace())
    ChildConfig().check(MacroSpace())


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"space": "rnn"}, "space must be micro or macro; received 'rnn'"),
        ({"precision": "float16"}, "precision must be one of"),
        ({"reward_bn": "frozen"}, "reward_bn must be one of batch, recalibrate, moving"),
        ({"cell_output": "last"}, "cell_output must be one of loose_ends, all"),
        ({"epochs": 0}, "epochs must be >= 1; received 0"),
        ({"controller_steps": 0}, "controller_steps must be >= 1"),
        ({"recalibrate_batches": 0}, "recalibrate_batches must be >= 1"),
        ({"lr_min": 0.1}, "lr_min=0.1, lr_max=0.05"),
        ({"lr_min": -1e-4}, "0 <= lr_min <= lr_max"),
        ({"keep_prob": 0.0}, r"keep_prob must be in \(0, 1\]; received 0.0"),
        ({"keep_prob": 1.5}, "keep_prob must be in"),
        ({"baseline_decay": 1.0}, r"baseline_decay must be in \[0, 1\); received 1.0"),
        ({"l2": -1.0}, "l2"),
        ({"grad_bound": -1.0}, "grad_bound"),
        ({"pad": -1}, "cutout_size and pad must be >= 0"),
        ({"max_nonfinite": -1}, "max_nonfinite must be >= 0"),
        ({"out_filters": 5}, r"out_filters must be an even number >= 2 \(.*\); received 5"),
        ({"num_layers": 2}, "num_layers >= 3"),
        ({"num_ops": 6}, "micro space: num_ops must be at most 5"),
        ({"num_nodes": 0}, "micro space: num_nodes must be >= 1"),
        ({"space": "macro", "num_layers": 0}, "macro space: num_layers must be >= 1"),
        ({"space": "macro", "out_filters": 3}, "out_filters must be an even number"),
        ({"controller_lr": 0.0}, "controller_lr must be > 0; received 0.0"),
        ({"temperature": -1.0}, "tanh_constant, temperature and skip_weight must be >= 0"),
        ({"tanh_constant": -0.5}, "tanh_constant, temperature and skip_weight must be >= 0"),
        ({"skip_weight": -0.1}, "tanh_constant, temperature and skip_weight must be >= 0"),
        ({"op_tanh_reduce": 0.0}, "op_tanh_reduce must be > 0"),
        ({"space": "macro", "skip_target": 1.0}, r"skip_target must be in \(0, 1\)"),
    ],
)
def test_search_settings_out_of_range(changes, message):
    config = SearchConfig().replace(**changes)
    with pytest.raises(UserError, match=message):
        config.check()


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"precision": "half"}, "precision must be one of"),
        ({"batch_size": 0}, "batch_size must be >= 1; received 0"),
        ({"lr_t0": 0}, "lr_t0 must be >= 1"),
        ({"lr_min": 1.0}, "lr_min=1.0, lr_max=0.05"),
        ({"lr_t_mul": 0.5}, "lr_t_mul must be >= 1; received 0.5"),
        ({"label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\)"),
        ({"cutout_size": -1}, "grad_bound, cutout_size and pad must be >= 0"),
        ({"max_nonfinite": -2}, "max_nonfinite must be >= 0"),
    ],
)
def test_train_settings_out_of_range(changes, message):
    config = dataclasses.replace(TrainConfig(), **changes)
    with pytest.raises(UserError, match=message):
        config.check()


@pytest.mark.parametrize(
    "changes,space,message",
    [
        ({"out_filters": 0}, MicroSpace(), "out_filters must be an even number"),
        ({"keep_prob": 0.0}, MicroSpace(), r"keep_prob must be in \(0, 1\]"),
        ({"drop_path_keep_prob": 1.5}, MicroSpace(), r"drop_path_keep_prob must be in \(0, 1\]"),
        ({"aux_weight": -0.4}, MicroSpace(), "aux_weight and l2 must be >= 0"),
        ({"cell_output": "last"}, MicroSpace(), "cell_output must be one of"),
        ({"num_layers": 2}, MicroSpace(), "num_layers >= 3"),
        ({"aux_weight": 0.4}, MacroSpace(), "set aux_weight=0"),
        ({"drop_path_keep_prob": 0.6}, MacroSpace(), "drop_path_keep_prob=1"),
        ({"cell_output": "all"}, MacroSpace(), "cell_output applies to micro cells"),
        ({}, RnnSpace(), "the rnn space is a recurrent cell"),
    ],
)
def test_child_settings_that_do_not_fit_the_space(changes, space, message):
    config = dataclasses.replace(ChildConfig(), **changes)
    with pytest.raises(UserError, match=message):
        config.check(space)


def test_macro_child_ignores_the_micro_only_num_layers():
    ChildConfig(num_layers=1).check(MacroSpace(num_layers=2))


def test_micro_search_space_and_child_config():
    config = SearchConfig.from_flat(
        num_nodes=3, num_ops=4, num_layers=4, out_filters=8, keep_prob=0.8, cell_output="loose_ends"
    )
    config.check()
    assert config.search_space() == MicroSpace(num_nodes=3, num_ops=4)
    assert config.child_config() == ChildConfig(
        out_filters=8, num_layers=4, keep_prob=0.8, cell_output="loose_ends"
    )
    # The default: every node concatenated.
    assert SearchConfig().child_config().cell_output == "all"


def test_macro_search_space_and_child_config():
    config = SearchConfig.from_flat(
        space="macro", num_layers=4, num_ops=6, out_filters=12, keep_prob=0.7
    )
    config.check()
    space = config.search_space()
    assert space == MacroSpace(num_layers=4, num_ops=6)
    assert space.num_decisions == 4 * 5 // 2
    child = config.child_config()
    # The macro network has no cells: the micro default "all" is not passed on.
    assert child == ChildConfig(out_filters=12, num_layers=4, keep_prob=0.7)
    assert child.cell_output == "loose_ends"
    child.check(space)


def test_an_unknown_algorithm_is_refused_naming_the_known_ones():
    known = ", ".join(strategies.names())
    assert known == "darts, evolution, nas, random, reinforce"
    with pytest.raises(UserError, match=f"algorithm must be one of {known}; received 'annealing'"):
        SearchConfig.from_flat(algorithm="annealing").check()
    for name in strategies.names():
        SearchConfig.from_flat(algorithm=name).check()
