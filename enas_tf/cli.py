"""Shared plumbing of the command-line tools (`tools/*.py`).

Tools call `run(main)` instead of `absl.app.run(main)`. User errors, bad flags
and extra arguments then print one clear paragraph on stderr and exit with
status 2, without a traceback; a run stopped by SIGINT/SIGTERM after saving
(`enas_tf.checkpoints.Stopped`) exits with 128 + the signal number; anything
else is a bug and keeps its traceback.
The library itself never reads flags.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from absl import app, flags

from enas_tf.checkpoints import Stopped
from enas_tf.errors import UserError

USAGE_ERROR = 2


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
        return None

    app.run(wrapped, flags_parser=_parse_flags)
