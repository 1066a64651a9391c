"""Export of a language-model run: a SavedModel that scores token ids.

A final-training run of `enas_tf.train.lm` holds `model.keras` (a
`FixedRnnLM`) and `summary.json` (`task: "lm"`). `export_lm_run` writes:

- `saved_model/` with two signatures:
  - `serving_default`: input `tokens`, int32 `[batch, time]` (time >= 2),
    scored from a zero state;
  - `score_with_state`: inputs `tokens` and `state`, float32
    `[batch, hidden]`, the state a previous call returned;
  both return `log_probs`, float32 `[batch, time - 1]`, the log-probability
  of `tokens[:, t]` given `tokens[:, :t]` (and the state) for t >= 1;
  `perplexity`, float32 `[batch]`, `exp(-mean(log_probs))` per row; and
  `state`, float32 `[batch, hidden]`, the state after reading
  `tokens[:, :-1]`. To score a long text in pieces, start each piece with
  the last token of the previous one and pass the returned state: the
  result equals scoring the whole text in one call.
- `model_float32.tflite`: `serving_default` for one sequence (`tokens`
  int32 `[1, time]`, same outputs), converted with TensorFlow's converter
  (builtin ops, or builtins plus select TensorFlow ops if needed), kept only
  when it converts and runs (the report says which ops, or why there is no
  file).
- `export_report.json`: how far each artifact, reloaded from disk, is from
  the Keras model on real token sequences (and the two-piece check).

Tolerances (`LM_TOLERANCES`) are on log-probabilities, which are up to about
-20 on PTB: the SavedModel runs the same kernels as Keras (measured below
1e-5), TFLite its own kernels.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from enas_tf.errors import UserError
from enas_tf.export.image import REPORT_FILE, SAVED_MODEL_DIR, SUMMARY_FILE, tflite_interpreter
from enas_tf.export.run import _size, check_export_dir, read_summary_json, staged_export
from enas_tf.lm.model import FixedRnnLM

SIGNATURE = "serving_default"
STATE_SIGNATURE = "score_with_state"
TFLITE_FILE = "model_float32.tflite"
SEQUENCE_LENGTH = 65  # tokens per sample sequence: 64 scored targets
LM_TOLERANCES = {"saved_model": 1e-4, "pieces": 1e-4, "tflite_float32": 1e-3}
LM_HINT = "train first with enas-train --dataset=ptb --output_dir={run_dir}"


def read_lm_summary(run_dir: str | Path) -> dict[str, Any]:
    """Reads a language-model run's summary.json.

    Raises:
      UserError: when it is missing, malformed or not a language-model run.
    """
    summary = read_summary_json(run_dir)
    path, hint = Path(run_dir) / SUMMARY_FILE, LM_HINT.format(run_dir=run_dir)
    ok = summary.get("task") == "lm"
    ok = ok and all(
        type(summary.get(k)) is int and summary[k] > 0 for k in ("vocab_size", "hidden_size")
    )
    if not ok:
        raise UserError(
            f"{path} is not the summary of a language-model run (it needs task "
            f"'lm', vocab_size and hidden_size); restore it, or {hint}."
        )
    return summary


def load_lm_model(run_dir: str | Path, summary: dict[str, Any]) -> FixedRnnLM:
    """Loads `run_dir/model.keras` and checks it against the summary.

    Raises:
      UserError: a missing or unreadable file, or sizes that differ.
    """
    path, hint = Path(run_dir) / "model.keras", LM_HINT.format(run_dir=run_dir)
    if not path.is_file():
        raise UserError(f"{path} is missing; {hint}.")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - Keras raises anything on bad files
        text = (str(e).strip().splitlines() or [""])[0][:160]
        raise UserError(
            f"{path} could not be loaded ({type(e).__name__}: {text}); restore it, or {hint}."
        ) from None
    sizes = (getattr(model, "vocab_size", None), getattr(model, "hidden_size", None))
    if not isinstance(model, FixedRnnLM) or sizes != (
        summary["vocab_size"],
        summary["hidden_size"],
    ):
        raise UserError(
            f"{path} is not the model {SUMMARY_FILE} describes (vocabulary "
            f"{summary['vocab_size']}, hidden {summary['hidden_size']})."
        )
    return model


def sample_sequences(ids: np.ndarray, count: int, length: int = SEQUENCE_LENGTH) -> np.ndarray:
    """The first `count` (at most) `length`-token sequences of `ids`, int32."""
    count = min(count, len(ids) // length)
    if count < 1:
        raise UserError(
            f"The sample text has {len(ids)} tokens; the export check needs at least {length}."
        )
    return np.asarray(ids[: count * length], np.int32).reshape(count, length)


def score(
    model: FixedRnnLM, tokens: tf.Tensor, state: tf.Tensor | None = None
) -> dict[str, tf.Tensor]:
    """The signatures' outputs (module docstring) for `tokens`, `state`."""
    tokens = tf.convert_to_tensor(tokens, tf.int32)
    if state is None:
        state = tf.zeros([tf.shape(tokens)[0], model.hidden_size], tf.float32)
    out = model(tokens[:, :-1], state=state, training=False)
    # log_softmax and a gather, not the fused cross-entropy: both are TFLite
    # builtins.
    log_probs = tf.gather(tf.nn.log_softmax(out.logits), tokens[:, 1:], batch_dims=2)
    return {
        "log_probs": log_probs,
        "perplexity": tf.exp(-tf.reduce_mean(log_probs, axis=1)),
        "state": tf.cast(out.state, tf.float32),
    }


def export_saved_model(model: FixedRnnLM, path: str | Path, batch: int | None = None) -> None:
    """Writes the SavedModel with the two signatures of the module docstring.

    With `batch`, the batch size is fixed and only `serving_default` is
    written (the source of the TFLite conversion).
    """
    tokens = tf.TensorSpec([batch, None], tf.int32, name="tokens")
    state = tf.TensorSpec([None, model.hidden_size], tf.float32, name="state")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE, lambda tokens: score(model, tokens), input_signature=[tokens])
    if batch is None:
        archive.add_endpoint(
            STATE_SIGNATURE,
            lambda tokens, state: score(model, tokens, state),
            input_signature=[tokens, state],
        )
    archive.write_out(str(path), verbose=False)


def _in_batches(fn: Any, tokens: np.ndarray, size: int = 16) -> dict[str, np.ndarray]:
    """`fn`'s outputs on `tokens` in batches of `size` sequences, concatenated
    (the logits of 16 x 64 tokens over 10,000 words are already 41 MB)."""
    parts = [fn(tokens[i : i + size]) for i in range(0, len(tokens), size)]
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}


def _diff(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or not np.isfinite(b).all():
        return float("inf")
    return float(np.max(np.abs(a - b)))


def _check(name: str, diff: float, **extra: Any) -> dict[str, Any]:
    finite = diff != float("inf")
    return {
        "max_abs_diff": diff if finite else None,
        "tolerance": LM_TOLERANCES[name],
        "passed": bool(finite and diff <= LM_TOLERANCES[name]),
        **extra,
    }


def _convert(saved_model: Path, select_tf_ops: bool) -> bytes:
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model), signature_keys=[SIGNATURE]
    )
    if select_tf_ops:  # TensorFlow kernels for what TFLite lacks (flex delegate)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS,
            tf.lite.OpsSet.SELECT_TF_OPS,
        ]
    return converter.convert()


def _tflite(model: FixedRnnLM, path: Path, tokens: np.ndarray, reference) -> dict:
    """Converts and checks the TFLite model, or says why it is not there.

    The converter lowers the recurrence (a while loop over a tensor list) to
    builtin ops only for a static state shape, so the TFLite model scores one
    sequence at a time: `tokens` int32 `[1, time]`. It is converted from a
    batch-1 SavedModel written beside it (converting the concrete function
    directly gave wrong numbers with TF 2.21). Builtin ops first; if that
    fails, builtins plus select TensorFlow ops (the report says which).
    """
    source, errors = path.parent / ".tflite_source", []
    export_saved_model(model, source, batch=1)
    try:
        for ops, select in (("builtins", False), ("builtins+select_tf_ops", True)):  # noqa: B007 - `ops` is reported after the loop
            try:
                path.write_bytes(_convert(source, select))
                break
            except Exception as e:  # noqa: BLE001 - the converter raises many types
                errors.append((str(e).strip().splitlines() or [type(e).__name__])[0][:200])
        else:
            return {
                "path": None,
                "passed": None,
                "note": f"TFLite conversion failed, no .tflite written: {errors[-1]}",
            }
    finally:
        shutil.rmtree(source)
    cls, name = tflite_interpreter()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r".*tf\.lite\.Interpreter is deprec")
            runner = cls(model_path=str(path)).get_signature_runner(SIGNATURE)
        rows = [runner(tokens=tokens[i : i + 1])["log_probs"] for i in range(len(tokens))]
    except Exception as e:  # noqa: BLE001 - an unverified file is not kept
        path.unlink()
        text = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        return {
            "path": None,
            "passed": None,
            "note": f"TFLite conversion ({ops}) worked but {name} could not run "
            f"the model, so no .tflite is kept: {text}",
        }
    return _check(
        "tflite_float32",
        _diff(reference["log_probs"], np.concatenate(rows)),
        path=path.name,
        size_bytes=_size(path),
        interpreter=name,
        ops=ops,
    )


def export_lm_run(
    run_dir: str | Path, out_dir: str | Path, tokens: np.ndarray, overwrite: bool = False
) -> dict[str, Any]:
    """Exports a language-model run and checks it against the Keras model.

    Written into a temporary sibling of `out_dir`, which replaces `out_dir`
    only when complete. A check beyond its tolerance does not raise; the
    report says which failed.

    Args:
      run_dir: a final-training run with `model.keras` and `summary.json`.
      out_dir: the export directory.
      tokens: int32 `[N, time]` real token sequences (time >= 3).
      overwrite: replace an existing export.

    Returns:
      The report written to `export_report.json`; `passed` is whether the
      SavedModel checks (and TFLite's, when written) passed.
    """
    run, out = Path(run_dir), Path(out_dir)
    summary = read_lm_summary(run)
    check_export_dir(run, out, overwrite)
    model = load_lm_model(run, summary)
    tokens = np.asarray(tokens, np.int32)
    if tokens.ndim != 2 or tokens.shape[1] < 3 or tokens.max() >= model.vocab_size:
        raise UserError(
            f"The sample tokens have shape {list(tokens.shape)}; expected "
            f"[N, time >= 3] ids below {model.vocab_size}."
        )
    reference = _in_batches(lambda t: score(model, t), tokens)
    with staged_export(out) as tmp:
        export_saved_model(model, tmp / SAVED_MODEL_DIR)
        loaded = tf.saved_model.load(str(tmp / SAVED_MODEL_DIR))
        serve, serve_state = loaded.signatures[SIGNATURE], loaded.signatures[STATE_SIGNATURE]
        served = _in_batches(lambda t: serve(tokens=tf.constant(t)), tokens)
        # Perplexities compare on the log scale, that of the log-probabilities.
        diff = max(
            _diff(reference["log_probs"], served["log_probs"]),
            _diff(reference["state"], served["state"]),
            _diff(np.log(reference["perplexity"]), np.log(served["perplexity"])),
        )
        # Two pieces sharing one token, the state passed on: the whole text.
        middle = tokens.shape[1] // 2

        def in_pieces(t: np.ndarray) -> dict[str, Any]:
            first = serve(tokens=tf.constant(t[:, : middle + 1]))
            second = serve_state(tokens=tf.constant(t[:, middle:]), state=first["state"])
            return {"log_probs": np.concatenate([first["log_probs"], second["log_probs"]], axis=1)}

        pieces = _in_batches(in_pieces, tokens)["log_probs"]
        artifacts = {
            "saved_model": _check(
                "saved_model", diff, path=SAVED_MODEL_DIR, size_bytes=_size(tmp / SAVED_MODEL_DIR)
            ),
            "pieces": _check("pieces", _diff(reference["log_probs"], pieces)),
            "tflite_float32": _tflite(model, tmp / TFLITE_FILE, tokens, reference),
        }
        report = {
            "run_dir": str(run.resolve()), "export_dir": str(out.resolve()),
            "task": "lm", "arc": summary.get("arc"), "vocab_size": model.vocab_size,
            "hidden_size": model.hidden_size, "num_sequences": int(tokens.shape[0]),
            "sequence_length": int(tokens.shape[1]),
            "keras_perplexity": float(np.exp(-reference["log_probs"].mean())),
            "signatures": {
                SIGNATURE: {"inputs": {"tokens": "int32 [batch, time]"}},
                STATE_SIGNATURE: {"inputs": {"tokens": "int32 [batch, time]",
                                             "state": f"float32 [batch, {model.hidden_size}]"}},
                "outputs": {"log_probs": "float32 [batch, time - 1]",
                            "perplexity": "float32 [batch]",
                            "state": f"float32 [batch, {model.hidden_size}]"}},
            "tensorflow": tf.__version__,
            "passed": all(a["passed"] is not False for a in artifacts.values()),
            "artifacts": artifacts,
        }  # fmt: skip
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    return report


__all__ = [
    "LM_TOLERANCES",
    "SIGNATURE",
    "STATE_SIGNATURE",
    "TFLITE_FILE",
    "export_lm_run",
    "export_saved_model",
    "load_lm_model",
    "read_lm_summary",
    "sample_sequences",
    "score",
]
