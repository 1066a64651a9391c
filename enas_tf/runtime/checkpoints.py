"""Crash-safe checkpoints and clean stops on SIGINT / SIGTERM.

Atomicity. `tf.train.CheckpointManager.save` writes the tensors of a new
checkpoint under a temporary prefix, renames them into place, and only then
rewrites the small `checkpoint` index file (itself written to a temporary
file and renamed). A process killed at any moment therefore leaves either
the old index or the new one, each naming complete files; the last few
checkpoints are kept (`max_to_keep`).

Corruption. Files can still be damaged afterwards (a full disk, a copy cut
short, a bad block). `restore_newest` tries the kept checkpoints from the
newest down; TensorFlow checks every tensor's CRC32C while reading, so a
truncated or corrupt one fails, is reported on stderr, and the previous one
is used. When none can be read the run stops with a `UserError`: nothing is
deleted, the user decides.

Stopping. `StopRequest` turns SIGINT and SIGTERM into a flag that the loops
poll between steps: they finish the step, save a checkpoint and raise
`Stopped`, which the tools turn into a one-line message and the shell's
status for that signal (130 for SIGINT, 143 for SIGTERM). A second SIGINT
interrupts at once (the newest checkpoint stays intact).
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from absl import logging

from enas_tf.errors import UserError

# TensorFlow is imported where it is used: the tools import this module
# (for `Stopped`) before their checks, which must stay fast.


class Stopped(Exception):
    """A run stopped cleanly on a signal, after saving a checkpoint.

    Attributes:
      signum: the signal received.
      checkpoint: the checkpoint written before stopping.
    """

    def __init__(self, signum: int, checkpoint: str | None):
        self.signum, self.checkpoint = signum, checkpoint
        name = signal.Signals(signum).name
        super().__init__(
            f"Stopped on {name}; the run was saved to {checkpoint}. Run the same "
            f"command again to resume it."
        )

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """Records SIGINT / SIGTERM while active, instead of dying at once.

    Use as a context manager around a training loop and poll `requested`
    (the signal number, or None) between steps. Only the main thread can
    install handlers; elsewhere this does nothing (signals keep their
    default behaviour). The previous handlers come back on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.requested = signum
        print(
            f"\nReceived {signal.Signals(signum).name}: finishing the current step, "
            f"then saving a checkpoint and stopping (Ctrl-C again to stop at once).",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def restore_newest(checkpoint: Any, manager: Any) -> str | None:
    """Restores the newest readable checkpoint of `manager` into `checkpoint`.

    Args:
      checkpoint: a `tf.train.Checkpoint`.
      manager: its `tf.train.CheckpointManager`.

    Returns:
      The path restored, or None when there is no checkpoint yet.

    Raises:
      UserError: when checkpoints exist but none can be read.
    """
    paths = list(manager.checkpoints)
    if not paths:
        return None
    for path in reversed(paths):
        try:
            checkpoint.restore(path).expect_partial()
        except Exception as e:  # noqa: BLE001 - TF raises OpError, ValueError, IndexError...
            message = str(e).strip().splitlines()[0][:200]
            logging.warning("Checkpoint %s is unreadable: %s", path, message)
            print(
                f"warning: checkpoint {path} is corrupt or truncated ({message}); "
                f"trying the previous one.",
                file=sys.stderr,
                flush=True,
            )
            continue
        if path != paths[-1]:
            print(
                f"Resuming from {path}, the newest readable checkpoint.",
                file=sys.stderr,
                flush=True,
            )
        return path
    raise UserError(
        f"No checkpoint in {manager.directory} is readable (all are corrupt or "
        f"truncated), so the run cannot resume. Move that directory away to "
        f"start again in the same --output_dir, or pass --overwrite."
    )


def enable_determinism(seed: int) -> None:
    """Seeds Python, NumPy and TensorFlow and makes TF ops deterministic.

    With it, a run and a run killed and resumed from its checkpoints compute
    the same numbers (op determinism can slow some GPU kernels down).
    """
    global _DETERMINISTIC
    import keras  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    _DETERMINISTIC = True


_DETERMINISTIC = False


def determinism_enabled() -> bool:
    """Whether `enable_determinism` was called in this process (processes
    it starts, e.g. the workers training children, do the same)."""
    return _DETERMINISTIC


__all__ = [
    "StopRequest",
    "Stopped",
    "determinism_enabled",
    "enable_determinism",
    "restore_newest",
]
