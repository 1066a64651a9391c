"""Export a final-training run directory: the steps around `enas_tf.export.image`.

`export_run` reads a run's `model.keras` and `summary.json`, writes the
SavedModel and TFLite artifacts with their checks into a temporary sibling
directory, and swaps it into place only when complete, so a failure never
leaves half an export and never damages an existing one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from enas_tf.errors import UserError
from enas_tf.export.image import (
    INPUT_NAME,
    MODEL_FILE,
    OUTPUT_KEY,
    QUANTIZATIONS,
    REPORT_FILE,
    SAVED_MODEL_DIR,
    SIGNATURE,
    SUMMARY_FILE,
    SUMMARY_KEYS,
    TFLITE_FILES,
    TOLERANCES,
    TRAIN_HINT,
    Check,
    Tolerance,
    _batched,
    _PathLike,
    export_saved_model,
    export_tflite,
    run_saved_model,
    run_tflite,
    serving_model,
    tflite_interpreter,
    verify,
)


def read_summary_json(run_dir: _PathLike) -> dict[str, Any]:
    """Reads `run_dir/summary.json` (any run: image or language model).

    Raises:
      UserError: the run directory or file is missing or is not a JSON
        object.
    """
    run_dir = Path(run_dir)
    path, hint = run_dir / SUMMARY_FILE, TRAIN_HINT.format(run_dir=run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--run_dir {run_dir} is a file, not a run directory; {hint}.")
    if not run_dir.is_dir():
        raise UserError(f"Run directory {run_dir} does not exist; {hint}.")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if (run_dir / "best_arc.json").is_file():  # an enas-search run
            raise UserError(
                f"{run_dir} is a search run (enas-search), not a trained network; "
                f"train its architecture first with enas-train "
                f"--arc={run_dir / 'best_arc.json'} --output_dir=RUN, then export RUN."
            ) from None
        raise UserError(f"{path} is missing (an unfinished run?); {hint}.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"Cannot read {path}: {e}.") from None
    except json.JSONDecodeError as e:
        raise UserError(
            f"{path} is not valid JSON ({e.msg} at line {e.lineno}); it is corrupt "
            f"or truncated. Restore it, or {hint}."
        ) from None
    if not isinstance(summary, dict):
        raise UserError(
            f"{path} is not a run summary (a JSON object); it is corrupt. Restore it, or {hint}."
        )
    return summary


def read_summary(run_dir: _PathLike) -> dict[str, Any]:
    """Reads and checks `run_dir/summary.json`; `image_shape` becomes a tuple.

    Raises:
      UserError: the run directory or file is missing, is not valid JSON,
        lacks a key or has a malformed one.
    """
    summary = read_summary_json(run_dir)
    path = Path(run_dir) / SUMMARY_FILE
    hint = TRAIN_HINT.format(run_dir=Path(run_dir))
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}; restore it, or {hint}.")
    try:
        shape = tuple(int(d) for d in summary["image_shape"])
        stats = [np.asarray(summary[k], np.float64) for k in ("mean", "std")]
        ok = len(shape) == 3 and min(shape) > 0 and isinstance(summary["dataset"], str)
        ok = ok and type(summary["num_classes"]) is int and summary["num_classes"] > 0
        ok = ok and all(s.shape == shape[-1:] and np.isfinite(s).all() for s in stats)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise UserError(
            f"{path} is malformed: it needs dataset (a name), image_shape [H, W, C], "
            f"num_classes (an integer), mean and std (C numbers each). Restore it, "
            f"or {hint}."
        )
    return {**summary, "image_shape": shape}


def load_run_model(run_dir: _PathLike, summary: dict[str, Any]) -> keras.Model:
    """Loads `run_dir/model.keras` and checks its shapes against `summary`.

    Raises:
      UserError: the file is missing or cannot be loaded, or its input or
        output shape does not match the summary.
    """
    path, hint = Path(run_dir) / MODEL_FILE, TRAIN_HINT.format(run_dir=run_dir)
    if not path.is_file():
        raise UserError(f"{path} is missing; {hint}.")
    if not zipfile.is_zipfile(path):  # Keras would call it "File not found"
        raise UserError(
            f"{path} is not a .keras (zip) file; it is corrupt or truncated. Restore it, or {hint}."
        )
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001
        # A bad file raises anything from BadZipFile to KeyError inside Keras.
        text = (str(e).strip().splitlines() or [""])[0][:160]
        raise UserError(
            f"{path} could not be loaded ({type(e).__name__}: {text}); it is "
            f"corrupt or truncated. Restore it, or {hint}."
        ) from None
    inputs = [tuple(t.shape) for t in model.inputs]
    outputs = [tuple(t.shape) for t in model.outputs]
    want_in, want_out = (None, *summary["image_shape"]), summary["num_classes"]
    if inputs != [want_in] or len(outputs) != 1 or outputs[0][-1] != want_out:
        raise UserError(
            f"{path} maps {inputs} to {outputs}, but {SUMMARY_FILE} says "
            f"{want_in} images and {want_out} classes: the two files are from "
            "different runs."
        )
    return model


def check_export_dir(run_dir: _PathLike, out_dir: _PathLike, overwrite: bool) -> None:
    """Refuses an export directory whose replacement could lose data.

    Raises:
      UserError: `out_dir` is a file, is the run directory or one of its
        parents, is not empty and `overwrite` is False, or holds files an
        export never writes (replacing it could delete someone's data).
    """
    out, run = Path(out_dir), Path(run_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; choose another --export_dir.")
    if out.resolve() == run.resolve() or out.resolve() in run.resolve().parents:
        raise UserError(
            f"--export_dir={out} would replace the run directory {run} itself; "
            "choose another --export_dir (the default is RUN/export)."
        )
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if entries and not overwrite:
        raise UserError(
            f"{out} already exists and is not empty; pass --overwrite to replace "
            "the export there, or choose another --export_dir."
        )
    ours = {SAVED_MODEL_DIR, REPORT_FILE, *TFLITE_FILES.values()}
    foreign = [e for e in entries if e not in ours]
    if foreign:
        raise UserError(
            f"{out} holds {', '.join(foreign[:5])}, which an export never writes; "
            "it is not replaced even with --overwrite. Choose another --export_dir."
        )


def _check_images(images: Any, shape: tuple[int, ...]) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != shape or not len(images):
        raise UserError(
            f"The sample images have shape {list(images.shape)}, but the model "
            f"takes [N, {', '.join(map(str, shape))}] images (N >= 1): use images "
            "of the dataset the model was trained on."
        )
    if images.dtype != np.uint8:
        raise UserError(f"The sample images are {images.dtype}, not uint8 pixels.")
    return images


def _size(path: Path) -> int:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files)


@contextlib.contextmanager
def staged_export(out: Path) -> Iterator[Path]:
    """Yields a fresh directory next to `out` to write an export into.

    When the block finishes, the directory replaces `out` (`_install`); when
    it raises, the directory is deleted and `out` is untouched.

    Raises:
      UserError: the parent of `out` cannot be written.
    """
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as e:
        raise UserError(f"Cannot write {out}: {e.strerror or e}.") from None
    try:
        yield tmp
        _install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _install(tmp: Path, out: Path) -> None:
    """Moves the finished export `tmp` to `out`, replacing an old export.

    POSIX cannot swap two directories in one step, so the old one is renamed
    aside, and deleted only once the new one is in place (or put back).
    """
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    if out.exists():
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        if old.exists():
            os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _artifact(rel: str, size: int, check: Check, tol: Tolerance) -> dict[str, Any]:
    finite = math.isfinite(check.max_abs_diff)  # JSON has no inf
    return {
        "path": rel,
        "size_bytes": size,
        "max_abs_diff": check.max_abs_diff if finite else None,
        "top1_agreement": check.top1_agreement,
        "tolerance": dataclasses.asdict(tol),
        "passed": check.passed,
    }


def export_run(
    run_dir: _PathLike,
    out_dir: _PathLike,
    sample_images: np.ndarray,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Exports a training run and checks each artifact against the Keras model.

    Everything is written into a temporary sibling of `out_dir`, which
    replaces `out_dir` only when complete: an error leaves no partial export
    and the previous one intact. A check beyond its tolerance does not raise;
    the artifacts are still written and the report says which check failed.

    Args:
      run_dir: a final-training run holding `model.keras` and `summary.json`.
      out_dir: the export directory to create (or replace, with `overwrite`).
      sample_images: uint8 `[N, H, W, C]` images to compare outputs on.
      overwrite: replace an existing, non-empty export directory.

    Returns:
      The report also written to `out_dir/export_report.json`: `passed` and,
      under `artifacts`, for each key of `TOLERANCES`: `path` (relative to
      `out_dir`), `size_bytes`, `max_abs_diff` (None if not finite),
      `top1_agreement`, `tolerance`, `passed`.

    Raises:
      UserError: a missing or malformed run, sample images of the wrong
        shape or dtype, or an export directory that cannot be written or
        may not be replaced.
    """
    run, out = Path(run_dir), Path(out_dir)
    summary = read_summary(run)
    images = _check_images(sample_images, summary["image_shape"])
    check_export_dir(run, out, overwrite)
    model = load_run_model(run, summary)
    serving = serving_model(model, summary["mean"], summary["std"])
    # Eager calls: `predict` would retrace for every model exported in a process.
    reference = _batched(lambda b: serving(b, training=False).numpy(), images)
    with staged_export(out) as tmp:
        export_saved_model(serving, tmp / SAVED_MODEL_DIR)
        files = {"saved_model": SAVED_MODEL_DIR}
        for q in QUANTIZATIONS:
            export_tflite(tmp / SAVED_MODEL_DIR, tmp / TFLITE_FILES[q], q)
            files[f"tflite_{q}"] = TFLITE_FILES[q]
        artifacts = {}
        for name, rel in files.items():
            runner = run_saved_model if name == "saved_model" else run_tflite
            check = verify(reference, runner(tmp / rel, images), TOLERANCES[name])
            artifacts[name] = _artifact(rel, _size(tmp / rel), check, TOLERANCES[name])
        report = {
            "run_dir": str(run.resolve()),
            "export_dir": str(out.resolve()),
            "dataset": summary["dataset"],
            "image_shape": list(summary["image_shape"]),
            "num_classes": summary["num_classes"],
            "num_samples": len(images),
            "signature": {"name": SIGNATURE, "input": INPUT_NAME,
                          "input_dtype": "uint8", "output": OUTPUT_KEY},
            "tensorflow": tf.__version__,
            "tflite_interpreter": tflite_interpreter()[1],
            "passed": all(a["passed"] for a in artifacts.values()),
            "artifacts": artifacts,
        }  # fmt: skip
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    return report
