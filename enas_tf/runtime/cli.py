"""Shared plumbing of the command-line tools (`tools/*.py`).

Tools call `run(main)` instead of `absl.app.run(main)`. User errors, bad flags
and extra arguments then print one clear paragraph on stderr and exit with
status 2, without a traceback; a run stopped by SIGINT/SIGTERM after saving
(`enas_tf.runtime.checkpoints.Stopped`) exits with 128 + the signal number; a
multi-worker run whose other worker died exits with status 1 and says to
restart every worker; anything else is a bug and keeps its traceback.
The library itself never reads flags.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from absl import app, flags

from enas_tf.errors import UserError
from enas_tf.runtime.checkpoints import Stopped

USAGE_ERROR = 2
PEER_FAILED = 1
STRATEGIES = ("default", "mirrored", "multi_worker")


def program_name() -> str:
    """The name the tool was started as (`enas-arc`, `arc.py`)."""
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "enas"


def fail(message: str) -> None:
    """Prints `message` as a user error and exits with status 2."""
    print(f"{program_name()}: error: {message}", file=sys.stderr)
    sys.exit(USAGE_ERROR)


def check_cutout(cutout_size: int, dataset: str) -> None:
    """Raises UserError when --cutout_size exceeds the dataset's images."""
    from enas_tf.data.images import IMAGE_SHAPES  # pylint: disable=import-outside-toplevel

    height, width = IMAGE_SHAPES[dataset][:2]
    if cutout_size > min(height, width):
        raise UserError(
            f"--cutout_size={cutout_size} is larger than the {height}x{width} "
            f"images of {dataset}, so cutout would erase them; give at most "
            f"{min(height, width)} (0: no cutout)."
        )


def define_strategy_flags() -> None:
    """Defines --strategy and --devices (search and final training)."""
    flags.DEFINE_enum(
        "strategy",
        "default",
        list(STRATEGIES),
        "default: one device. mirrored: tf.distribute.MirroredStrategy over "
        "--devices (default: every local GPU), each step's global batch "
        "(--batch_size) split over them. multi_worker: "
        "tf.distribute.MultiWorkerMirroredStrategy over the workers of the "
        "TF_CONFIG environment variable (start the same command on each; "
        "worker 0 or the chief writes --output_dir, which every worker must "
        "see). One architecture per step on every replica.",
    )
    flags.DEFINE_list("devices", None, "Devices of --strategy=mirrored, e.g. /gpu:0,/gpu:1.")


def strategy_from_flags():
    """The `tf.distribute.Strategy` of --strategy / --devices.

    Call it before any other TensorFlow work (a multi-worker strategy must
    start the collective runtime first).
    """
    values = flags.FLAGS
    if values.devices and values.strategy != "mirrored":
        raise UserError("--devices needs --strategy=mirrored.")
    if values.strategy == "default":
        return None
    from enas_tf.runtime import distribute  # pylint: disable=import-outside-toplevel

    return distribute.make_strategy(values.strategy, values.devices)


def _peer_died(error: BaseException) -> bool:
    if "tensorflow" not in sys.modules:
        return False
    from enas_tf.runtime import distribute  # pylint: disable=import-outside-toplevel

    return distribute.peer_failure(error)


def _parse_flags(argv: Sequence[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(f"{str(e).rstrip('.')}. Run with --helpfull to list the flags.")
        raise  # not reached


def run(main: Callable[[list[str]], int | None]) -> None:
    """Runs `main` like `absl.app.run`, turning user errors into exit code 2."""

    def wrapped(argv: list[str]) -> int | None:
        try:
            return main(argv)
        except UserError as e:
            fail(str(e))
        except app.UsageError as e:
            fail(f"{e} Run with --help for usage.")
        except Stopped as e:  # SIGINT / SIGTERM: saved, stopped cleanly
            print(f"{program_name()}: {e}", file=sys.stderr)
            sys.exit(e.exit_code)
        except Exception as e:  # noqa: BLE001 - only a dead peer is handled
            if not _peer_died(e):
                raise
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            print(
                f"{program_name()}: error: another worker of this multi-worker run "
                f"stopped ({type(e).__name__}: {first}). Nothing after the last "
                f"checkpoint was kept. Restart every worker with the same command "
                f"to resume the run.",
                file=sys.stderr,
            )
            sys.exit(PEER_FAILED)
        return None

    app.run(wrapped, flags_parser=_parse_flags)
