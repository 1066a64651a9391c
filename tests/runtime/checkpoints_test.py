"""Tests of checkpoint restoring and clean stops (`enas_tf.runtime.checkpoints`)."""

import os
import signal
import threading

import numpy as np
import pytest
import tensorflow as tf

from enas_tf.errors import UserError
from enas_tf.runtime.checkpoints import Stopped, StopRequest, restore_newest


def _saved(directory, count=3):
    """A manager over `count` checkpoints of a variable holding 1, 2, ..."""
    v = tf.Variable(tf.zeros([3]))
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=v), str(directory), max_to_keep=5)
    for i in range(1, count + 1):
        v.assign(tf.fill([3], float(i)))
        manager.save()
    return manager.checkpoints


def _fresh(directory):
    """A new variable, its checkpoint and a manager over `directory`."""
    v = tf.Variable(tf.fill([3], -1.0))
    checkpoint = tf.train.Checkpoint(v=v)
    return v, checkpoint, tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=5)


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _flip_a_byte(path):
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    with open(path, "wb") as f:
        f.write(data)


def test_no_checkpoint_restores_nothing(tmp_path):
    v, checkpoint, manager = _fresh(tmp_path)
    assert restore_newest(checkpoint, manager) is None
    np.testing.assert_array_equal(v.numpy(), [-1.0] * 3)


def test_restores_the_newest(tmp_path, capsys):
    paths = _saved(tmp_path)
    v, checkpoint, manager = _fresh(tmp_path)
    assert restore_newest(checkpoint, manager) == paths[-1]
    np.testing.assert_array_equal(v.numpy(), [3.0] * 3)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "damage,suffix",
    [
        (_truncate, ".data-00000-of-00001"),
        (_flip_a_byte, ".data-00000-of-00001"),
        (_truncate, ".index"),
    ],
)
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, capsys, damage, suffix):
    paths = _saved(tmp_path)
    damage(paths[-1] + suffix)
    v, checkpoint, manager = _fresh(tmp_path)
    assert restore_newest(checkpoint, manager) == paths[-2]
    np.testing.assert_array_equal(v.numpy(), [2.0] * 3)
    err = capsys.readouterr().err
    assert f"checkpoint {paths[-1]} is corrupt or truncated" in err
    assert f"Resuming from {paths[-2]}" in err
    # Nothing is deleted.
    assert os.path.exists(paths[-1] + suffix)


def test_two_damaged_checkpoints_fall_back_to_the_oldest(tmp_path):
    paths = _saved(tmp_path)
    _truncate(paths[-1] + ".data-00000-of-00001")
    _truncate(paths[-2] + ".index")
    v, checkpoint, manager = _fresh(tmp_path)
    assert restore_newest(checkpoint, manager) == paths[0]
    np.testing.assert_array_equal(v.numpy(), [1.0] * 3)


def test_no_readable_checkpoint_is_a_user_error(tmp_path):
    for path in _saved(tmp_path, count=2):
        _truncate(path + ".data-00000-of-00001")
    _, checkpoint, manager = _fresh(tmp_path)
    with pytest.raises(UserError, match="No checkpoint in .* is readable"):
        restore_newest(checkpoint, manager)
    assert len(manager.checkpoints) == 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_request_records_a_signal_and_restores_the_handlers(signum, capsys):
    before = {s: signal.getsignal(s) for s in StopRequest.SIGNALS}
    with StopRequest() as stop:
        assert stop.requested is None
        assert all(signal.getsignal(s) != before[s] for s in StopRequest.SIGNALS)
        os.kill(os.getpid(), signum)
        for _ in range(100):  # the handler runs between bytecodes
            if stop.requested is not None:
                break
        assert stop.requested == signum
    assert {s: signal.getsignal(s) for s in StopRequest.SIGNALS} == before
    assert f"Received {signal.Signals(signum).name}" in capsys.readouterr().err


def test_a_second_sigint_interrupts_at_once():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with StopRequest() as stop:
            stop._handle(signal.SIGINT, None)
            assert stop.requested == signal.SIGINT
            stop._handle(signal.SIGINT, None)
    assert signal.getsignal(signal.SIGINT) == before
    # After a SIGTERM, a SIGINT is only recorded.
    with StopRequest() as stop:
        stop._handle(signal.SIGTERM, None)
        stop._handle(signal.SIGINT, None)
        assert stop.requested == signal.SIGINT


def test_stop_request_outside_the_main_thread_installs_nothing():
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def run():
        with StopRequest() as stop:
            seen.append((signal.getsignal(signal.SIGTERM), dict(stop._previous)))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [(before, {})]


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stopped(signum, code):
    error = Stopped(signum, "/run/checkpoints/ckpt-4")
    assert error.exit_code == code
    assert error.signum == signum and error.checkpoint == "/run/checkpoints/ckpt-4"
    assert str(error) == (
        f"Stopped on {signal.Signals(signum).name}; the run was saved to "
        f"/run/checkpoints/ckpt-4. Run the same command again to resume it."
    )
