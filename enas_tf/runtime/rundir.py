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
from collections.abc import Callable, Iterable
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
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory; give the path of a file to write.")
    if os.path.exists(path) and not overwrite:
        raise UserError(
            f"{path} already exists; choose another path or pass --overwrite to replace it."
        )
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    except OSError as e:
        raise UserError(f"Cannot write {path}: {_reason(directory, e)}.") from None
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


def _reason(directory: str, error: OSError) -> str:
    """Why `directory` cannot be created: a file in the way, or the OS's word."""
    path = os.path.abspath(directory)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{path} is a file, not a directory"
    return error.strerror or str(error)


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


def _read_run_config(output_dir: str) -> dict[str, Any] | None:
    """The config.json of the run in `output_dir`; None for a new or empty one.

    Raises:
      UserError: when the directory holds something else, or its config.json
        cannot be read.
    """
    path = os.path.join(output_dir, CONFIG_FILE)
    if not (os.path.isdir(output_dir) and os.listdir(output_dir)):
        return None
    if not os.path.isfile(path):
        raise UserError(
            f"{output_dir} is not empty and holds no {CONFIG_FILE}, so it "
            f"is not a run directory of this tool; choose another "
            f"--output_dir (nothing was written)."
        )
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(
            f"Cannot read {path} ({e}); fix or remove it, or choose another --output_dir."
        ) from None
    if not isinstance(config, dict):
        raise UserError(
            f"{path} is not a run configuration (a JSON object); fix or remove "
            f"it, or choose another --output_dir."
        )
    return config


def check_output_dir(output_dir: str) -> None:
    """The checks of `prepare` that need no configuration, for tools to run
    before their slow imports: `output_dir` can be created and written, and
    is empty or a run directory with a readable config.json.

    Raises:
      UserError: naming the problem; nothing is written.
    """
    _read_run_config(output_dir)
    path = os.path.abspath(output_dir)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise UserError(
            f"Cannot create --output_dir {output_dir}: {path} is a file, not a "
            f"directory; choose another --output_dir."
        )
    if not os.access(path, os.W_OK | os.X_OK):
        what = "--output_dir" if path == os.path.abspath(output_dir) else "directory"
        raise UserError(
            f"Cannot write --output_dir {output_dir}: {what} {path} is not "
            f"writable; choose another --output_dir or fix its permissions."
        )


def prepare(
    output_dir: str,
    config: dict[str, Any],
    *,
    overwrite: bool,
    safe_keys: Iterable[str] = (),
    run_files: Iterable[str] = (),
    upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> bool:
    """Makes `output_dir` ready for a run with `config`.

    Args:
      output_dir: the run directory.
      config: the run's configuration (JSON-ready, nested dicts allowed).
      overwrite: start afresh over an incompatible earlier run.
      safe_keys: dotted config keys that may change on resume.
      run_files: names (files or folders) of the run's outputs inside
        `output_dir`; `overwrite` removes only these and `config.json`.
      upgrade: maps the config.json of an older run to the form `config`
        has (renamed or regrouped settings) before they are compared; a
        resumed run's config.json is rewritten in the new form.

    Returns:
      True when an earlier compatible run is resumed, False for a new run.

    Raises:
      UserError: when the directory holds something else, an incompatible
        run (without `overwrite`), or cannot be written.
    """
    path = os.path.join(output_dir, CONFIG_FILE)
    old = _read_run_config(output_dir)
    if old is not None:
        if upgrade is not None:
            old = upgrade(old)
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
        raise UserError(
            f"Cannot create --output_dir {output_dir}: {_reason(output_dir, e)}; "
            f"choose another --output_dir."
        ) from None
    if not os.access(output_dir, os.W_OK):
        raise UserError(f"--output_dir {output_dir} is not writable.")
    write_json_atomic(path, config)
    return False
