"""Tests of the command-line plumbing (`enas_tf.runtime.cli`), in-process.

`cli.run` goes through `absl.app.run`, which parses the global flags and
installs absl's logging handler; the `absl_state` fixture puts both back.
"""

import logging
import signal
import sys

import pytest
import tensorflow as tf
from absl import app, flags
from absl import logging as absl_logging

from enas_tf.errors import ArcError, UserError
from enas_tf.runtime import cli, distribute
from enas_tf.runtime.checkpoints import Stopped

FLAGS = flags.FLAGS


@pytest.fixture
def absl_state(monkeypatch):
    """Global flags (with --strategy and --devices) and logging, restored after."""
    monkeypatch.setattr(sys, "argv", ["enas-test"])
    was_parsed = FLAGS.is_parsed()
    handlers, level = logging.root.handlers[:], logging.root.level
    absl_level = absl_logging.get_absl_logger().level
    defined = "strategy" not in FLAGS
    if defined:
        cli.define_strategy_flags()
    try:
        yield FLAGS
    finally:
        if defined:
            delattr(FLAGS, "strategy")
            delattr(FLAGS, "devices")
        if not was_parsed:
            FLAGS.unparse_flags()
        logging.root.handlers[:] = handlers
        logging.root.setLevel(level)
        absl_logging.get_absl_logger().setLevel(absl_level)


def run_main(main, capsys, *args):
    """`cli.run(main)` with `args` on the command line: (exit code, stderr)."""
    sys.argv = ["enas-test", *args]
    with pytest.raises(SystemExit) as exit_info:
        cli.run(main)
    return exit_info.value.code, capsys.readouterr().err


def test_program_name(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/enas-arc", "--x"])
    assert cli.program_name() == "enas-arc"
    monkeypatch.setattr(sys, "argv", [""])
    assert cli.program_name() == "enas"
    monkeypatch.setattr(sys, "argv", [])
    assert cli.program_name() == "enas"


def test_fail_prints_one_line_and_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["tools/arc.py"])
    with pytest.raises(SystemExit) as exit_info:
        cli.fail("the arc is too long.")
    assert exit_info.value.code == cli.USAGE_ERROR == 2
    captured = capsys.readouterr()
    assert captured.err == "arc.py: error: the arc is too long.\n"
    assert captured.out == ""


@pytest.mark.parametrize(
    "size, dataset", [(0, "digits"), (8, "digits"), (28, "mnist"), (32, "cifar10")]
)
def test_check_cutout_accepts_up_to_the_image_side(size, dataset):
    cli.check_cutout(size, dataset)


@pytest.mark.parametrize(
    "size, dataset, side", [(9, "digits", "8x8"), (29, "fashion_mnist", "28x28"),
                            (33, "cifar100", "32x32")]
)  # fmt: skip
def test_check_cutout_refuses_more_than_the_image(size, dataset, side):
    with pytest.raises(UserError) as error:
        cli.check_cutout(size, dataset)
    assert str(error.value) == (
        f"--cutout_size={size} is larger than the {side} images of {dataset}, so cutout "
        f"would erase them; give at most {side.split('x')[0]} (0: no cutout)."
    )


def test_run_passes_the_arguments_and_the_exit_code(absl_state, capsys):
    seen = []

    def main(argv):
        seen.append(list(argv))
        return 3

    code, err = run_main(main, capsys, "extra")
    assert code == 3 and err == ""
    assert seen == [["enas-test", "extra"]]
    code, _ = run_main(lambda argv: None, capsys)
    assert not code


@pytest.mark.parametrize(
    "error",
    [
        UserError("The arc has 3 entries; expected 4."),
        ArcError("The arc has 3 entries; expected 4."),
    ],
)
def test_run_turns_a_user_error_into_exit_code_2(absl_state, capsys, error):
    def main(argv):
        raise error

    code, err = run_main(main, capsys)
    assert code == 2
    assert err == "enas-test: error: The arc has 3 entries; expected 4.\n"
    assert "Traceback" not in err


def test_run_turns_a_usage_error_into_exit_code_2(absl_state, capsys):
    def main(argv):
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}.")

    code, err = run_main(main, capsys, "a", "b")
    assert code == 2
    assert err == "enas-test: error: Unexpected arguments: a b. Run with --help for usage.\n"


def test_run_refuses_an_unknown_flag_in_one_line(absl_state, capsys):
    called = []
    code, err = run_main(called.append, capsys, "--no_such_flag=1")
    assert code == 2 and not called
    assert err.startswith("enas-test: error: ")
    assert "no_such_flag" in err and err.endswith("Run with --help to list the flags.\n")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_run_exits_with_the_signal_status_after_a_clean_stop(absl_state, capsys, signum):
    def main(argv):
        raise Stopped(signum, "/runs/a/ckpt-3")

    code, err = run_main(main, capsys)
    assert code == 128 + signum
    assert err == (
        f"enas-test: Stopped on {signal.Signals(signum).name}; the run was saved to "
        "/runs/a/ckpt-3. Run the same command again to resume it.\n"
    )


def test_run_keeps_the_traceback_of_a_bug(absl_state, capsys):
    def main(argv):
        raise RuntimeError("a bug")

    sys.argv = ["enas-test"]
    with pytest.raises(RuntimeError, match="a bug"):
        cli.run(main)
    # A collective error with no multi-worker run in the process is a bug too.
    with pytest.raises(tf.errors.UnavailableError):
        cli.run(lambda argv: _raise(tf.errors.UnavailableError(None, None, "gone")))
    assert "error:" not in capsys.readouterr().err


def _raise(error):
    raise error


def test_run_reports_a_dead_peer_with_exit_code_1(absl_state, capsys, monkeypatch):
    monkeypatch.setattr(distribute, "_ACTIVE", [True])  # a multi-worker run
    error = tf.errors.UnavailableError(None, None, "Socket closed\nmore detail")
    code, err = run_main(lambda argv: _raise(error), capsys)
    assert code == cli.PEER_FAILED == 1
    assert err.startswith(
        "enas-test: error: another worker of this multi-worker run stopped "
        "(UnavailableError: Socket closed). Nothing after the last checkpoint was kept."
    )
    assert "Restart every worker with the same command" in err
    assert err.count("\n") == 1
    # Other errors are still bugs.
    with pytest.raises(ValueError):
        run_main(lambda argv: _raise(ValueError("x")), capsys)


def test_strategy_from_flags(absl_state):
    absl_state(["enas-test"])
    assert cli.strategy_from_flags() is None
    absl_state.devices = ["/cpu:0"]
    with pytest.raises(UserError, match="--devices needs --strategy=mirrored"):
        cli.strategy_from_flags()
    absl_state.strategy = "mirrored"
    absl_state.devices = ["/cpu:0", "/cpu:1"]
    strategy = cli.strategy_from_flags()
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync == 2


def test_strategy_flags_are_an_enum(absl_state):
    with pytest.raises(flags.IllegalFlagValueError):
        absl_state(["enas-test", "--strategy=fastest"])
    assert cli.STRATEGIES == ("default", "mirrored", "multi_worker")


def test_help_prints_the_doc_and_grouped_flags_then_exits_0(absl_state, capsys):
    flags.DEFINE_integer("cli_test_epochs", 3, "Epochs.")
    flags.DEFINE_bool("cli_test_fast", False, "Go fast.")
    flags.DEFINE_string("cli_test_name", None, "A name.")
    try:
        called = []

        def main(argv):
            called.append(argv)

        sys.argv = ["enas-test", "--cli_test_epochs=x", "--help"]
        with pytest.raises(SystemExit) as exit_info:
            cli.run(main, {"Training": ["cli_test_epochs", "no_such_flag"]})
        out, err = capsys.readouterr()
        assert exit_info.value.code == 0 and not called and err == ""
        # This module's docstring is the usage text (whatever __main__ is).
        assert out.startswith(sys.modules[__name__].__doc__.strip()[:40])
        training = out.index("Training:\n  --cli_test_epochs: Epochs. (default: 3)")
        other = out.index("Other flags:\n")
        assert training < other < out.index("--[no]cli_test_fast: Go fast. (default: false)")
        assert "--cli_test_name: A name.\n" in out  # no default shown for None
        assert "--strategy: <default|mirrored|multi_worker>" in out  # the cli's own
        assert "--flagfile:" not in out and out.rstrip().endswith("(--flagfile, --verbosity, ...).")
        sys.argv = ["enas-test", "--helpfull"]
        with pytest.raises(SystemExit) as exit_info:
            cli.run(main)
        out = capsys.readouterr().out
        assert exit_info.value.code == 0 and not called
        assert out.index("Flags:\n") < out.index("--cli_test_epochs") < out.index("--verbosity:")
        assert "--flagfile=FILE" in out
    finally:
        for name in ("cli_test_epochs", "cli_test_fast", "cli_test_name"):
            delattr(FLAGS, name)


def test_describe_flag_wraps_long_help():
    flag = flags.FlagValues()
    flags.DEFINE_float("rate", 0.5, "word " * 40, flag_values=flag)
    text = cli.describe_flag(flag["rate"])
    lines = text.splitlines()
    assert lines[0].startswith("  --rate: word") and text.endswith("(default: 0.5)")
    assert all(len(line) <= cli.WIDTH for line in lines)
    assert all(line.startswith("      ") for line in lines[1:])
