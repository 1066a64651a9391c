"""Shared plumbing of the command-line tools (`tools/*.py`).

Tools call `run(main)` instead of `absl.app.run(main)`. User errors, bad flags
and extra arguments then print one clear paragraph on stderr and exit with
status 2, without a traceback; anything else is a bug and keeps its traceback.
The library itself never reads flags.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Sequence

from absl import app, flags

from enas_tf.errors import UserError

USAGE_ERROR = 2


def program_name() -> str:
    """The name the tool was started as (`enas-arc`, `arc.py`)."""
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "enas"


def fail(message: str) -> None:
    """Prints `message` as a user error and exits with status 2."""
    print(f"{program_name()}: error: {message}", file=sys.stderr)
    sys.exit(USAGE_ERROR)


def _parse_flags(argv: Sequence[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(f"{e}. Run with --helpfull to list the flags.")
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
        return None

    app.run(wrapped, flags_parser=_parse_flags)


def write_text_atomic(path: str, text: str, *, overwrite: bool = False) -> None:
    """Writes `text` to `path` atomically; refuses to replace a file unless asked.

    The text goes to a temporary file in the same directory, which then
    replaces `path` in one `os.replace`, so a reader never sees half a file
    and a crash never leaves one.

    Raises:
      UserError: when `path` exists and `overwrite` is False, or the
        directory cannot be written.
    """
    if os.path.exists(path) and not overwrite:
        raise UserError(
            f"{path} already exists; choose another --output or pass "
            f"--overwrite to replace it."
        )
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    except OSError as e:
        raise UserError(f"Cannot write {path}: {e.strerror}.") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
