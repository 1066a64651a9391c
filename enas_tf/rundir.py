"""Run directories: atomic writes, and resuming only a compatible run.

A tool that writes into `--output_dir` records its configuration in
`config.json` there. Running again with the same directory resumes when the
configuration matches, accepts "safe" differences (e.g. more epochs) with a
warning, and otherwise refuses with the list of differences, so a run is
never silently mixed with another. `overwrite=True` clears the previous
run's files (only files this package writes) before starting afresh.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from typing import Any

from absl import logging

from enas_tf.errors import UserError

CONFIG_FILE = "config.json"


def write_text_atomic(path: str, text: str, *, overwrite: bool = True) -> None:
    """Writes `text` (UTF-8) to `path` so that no reader ever sees half a file.

    Raises:
      UserError: as `write_bytes_atomic`.
    """
    write_bytes_atomic(path, text.encode("utf-8"), overwrite=overwrite)


def write_bytes_atomic(path: str, data: bytes, *, overwrite: bool = True) -> None:
    """Writes `data` to `path` so that no reader ever sees half a file.

    The bytes go to a temporary file in the same directory, which then
    replaces `path` in one `os.replace`.

    Raises:
      UserError: when `path` exists and `overwrite` is False, or the
        directory cannot be written.
    """
    if os.path.exists(path) and not overwrite:
        raise UserError(
            f"{path} already exists; choose another path or pass --overwrite "
            f"to replace it."
        )
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    except OSError as e:
        raise UserError(f"Cannot write {path}: {e.strerror}.") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp creates the file private (0600); give it the usual mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str, data: Any) -> None:
    """Writes `data` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differences(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple]:
    """Dotted keys whose values differ: key -> (old value, new value)."""
    a, b = _flatten(old), _flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def prepare(
    output_dir: str,
    config: dict[str, Any],
    *,
    overwrite: bool,
    safe_keys: Iterable[str] = (),
    run_files: Iterable[str] = (),
) -> bool:
    """Makes `output_dir` ready for a run with `config`.

    Args:
      output_dir: the run directory.
      config: the run's configuration (JSON-ready, nested dicts allowed).
      overwrite: start afresh over an incompatible earlier run.
      safe_keys: dotted config keys that may change on resume.
      run_files: names (files or folders) of the run's outputs inside
        `output_dir`; `overwrite` removes only these and `config.json`.

    Returns:
      True when an earlier compatible run is resumed, False for a new run.

    Raises:
      UserError: when the directory holds something else, an incompatible
        run (without `overwrite`), or cannot be written.
    """
    path = os.path.join(output_dir, CONFIG_FILE)
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        if not os.path.isfile(path):
            raise UserError(
                f"{output_dir} is not empty and holds no {CONFIG_FILE}, so it "
                f"is not a run directory of this tool; choose another "
                f"--output_dir (nothing was written)."
            )
        try:
            with open(path, encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(
                f"Cannot read {path} ({e}); fix or remove it, or choose another "
                f"--output_dir."
            ) from None
        diff = differences(old, config)
        unsafe = {k: v for k, v in diff.items() if k not in set(safe_keys)}
        if not unsafe:
            for key, (before, after) in diff.items():
                logging.warning("Resuming with %s changed: %r -> %r", key, before, after)
            write_json_atomic(path, config)
            return True
        if not overwrite:
            listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in unsafe.items())
            raise UserError(
                f"{output_dir} holds a different run ({listed}). Choose another "
                f"--output_dir, or pass --overwrite to replace that run."
            )
        for name in [*run_files, CONFIG_FILE]:
            target = os.path.join(output_dir, name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.exists(target):
                os.unlink(target)
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        raise UserError(f"Cannot create --output_dir {output_dir}: {e.strerror}.") from None
    if not os.access(output_dir, os.W_OK):
        raise UserError(f"--output_dir {output_dir} is not writable.")
    write_json_atomic(path, config)
    return False
