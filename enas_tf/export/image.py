"""Export a trained network for serving: a TF SavedModel and two TFLite files.

A final-training run directory holds `model.keras` (normalised float32 images
to logits) and `summary.json` (dataset, image_shape, num_classes, mean, std).
`export_run` wraps the model so that it takes raw uint8 images, normalises
them in the graph as `(x / 255 - mean) / std` and returns softmax
probabilities, then writes into the export directory:

- `saved_model/`: signature `serving_default`, input `images` (uint8
  `[None, H, W, C]`), output `{"probabilities": float32 [None, classes]}`.
- `model_float32.tflite`, `model_dynamic_range.tflite` (int8 weights, float
  activations): converted from that SavedModel, with a variable batch size.
- `export_report.json`: how far each artifact, reloaded from disk, is from the
  Keras serving model on sample images.

Default tolerances (`TOLERANCES`) on probabilities come from measurements with
TF 2.21 on digits: stand-ins of 2-12 separable-conv layers and ENAS micro and
macro nets (65-98% test accuracy, 256-360 test images). Float32 artifacts were
within 3.2e-6 of Keras with 100% top-1 agreement; dynamic range within
0.015-0.052 with >= 99.2% agreement. Broken exports (normalisation missing, or
std off by 25%) were 0.38-1.0 away. Hence:

- saved_model, tflite_float32: max abs diff 1e-4, top-1 agreement >= 0.99.
  The diff bound alone proves the numerics right, so disagreement can only
  come from near-ties; demanding 100% would add only false alarms.
- tflite_dynamic_range: max abs diff 0.15 (3x the largest measured), top-1
  agreement >= 0.97.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from enas_tf.errors import UserError

MODEL_FILE = "model.keras"
SUMMARY_FILE = "summary.json"
SUMMARY_KEYS = ("dataset", "image_shape", "num_classes", "mean", "std")
SAVED_MODEL_DIR = "saved_model"
QUANTIZATIONS = ("float32", "dynamic_range")
TFLITE_FILES = {q: f"model_{q}.tflite" for q in QUANTIZATIONS}
REPORT_FILE = "export_report.json"
SIGNATURE = "serving_default"
INPUT_NAME = "images"
OUTPUT_KEY = "probabilities"
TRAIN_HINT = "train first with enas-train --output_dir={run_dir}"
_BATCH = 256  # images per inference call, to bound memory on big samples
_PathLike = str | os.PathLike


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How far an artifact's probabilities may be from the Keras model's.

    Attributes:
      max_abs_diff: largest allowed absolute difference of any probability.
      min_top1_agreement: smallest allowed fraction of images whose most
        probable class is the same.
    """

    max_abs_diff: float
    min_top1_agreement: float


@dataclasses.dataclass(frozen=True)
class Check:
    """The result of `verify`.

    Attributes:
      max_abs_diff: largest absolute difference of any probability (inf for
        a wrong shape or non-finite values).
      top1_agreement: fraction of images with the same most probable class.
      passed: whether both are within the tolerance.
    """

    max_abs_diff: float
    top1_agreement: float
    passed: bool


TOLERANCES = {
    "saved_model": Tolerance(max_abs_diff=1e-4, min_top1_agreement=0.99),
    "tflite_float32": Tolerance(max_abs_diff=1e-4, min_top1_agreement=0.99),
    "tflite_dynamic_range": Tolerance(max_abs_diff=0.15, min_top1_agreement=0.97),
}


def serving_model(model: keras.Model, mean: Sequence[float], std: Sequence[float]) -> keras.Model:
    """Wraps `model` to take raw uint8 images and return class probabilities.

    `(x / 255 - mean) / std` is one `Rescaling` layer computing
    `x * scale + offset` with `scale = 1 / (255 * std)`, `offset = -mean / std`.
    A zero std (a constant channel) counts as 1, as in the training pipeline.

    Args:
      model: from normalised float32 images `[batch, H, W, C]` (known H, W,
        C) to logits `[batch, num_classes]`.
      mean: per-channel mean of the training images scaled to [0, 1].
      std: per-channel standard deviation on the same scale.

    Returns:
      A model from uint8 `[None, H, W, C]` (input `images`) to float32
      probabilities `[None, num_classes]`.

    Raises:
      UserError: `model` is not one image input to one output, or mean and
        std do not have one value per channel.
    """
    shape = tuple(model.inputs[0].shape[1:])
    if len(model.inputs) + len(model.outputs) != 2 or len(shape) != 3 or None in shape:
        raise UserError(
            f"The model maps {[list(t.shape) for t in model.inputs]} to "
            f"{[list(t.shape) for t in model.outputs]}; only a model from one "
            "[batch, H, W, C] image tensor (known H, W, C) to logits can be served."
        )
    mean64 = np.asarray(mean, np.float64).reshape(-1)
    std64 = np.asarray(std, np.float64).reshape(-1)
    if len(mean64) != shape[-1] or len(std64) != shape[-1]:
        raise UserError(
            f"mean and std need one value per channel ({shape[-1]}); received "
            f"{len(mean64)} and {len(std64)} values."
        )
    std64 = np.where(std64 > 0, std64, 1.0)
    images = keras.Input(shape, dtype="uint8", name=INPUT_NAME)
    # float32 explicitly, so a mixed-precision policy cannot lower the output.
    x = keras.layers.Rescaling(
        scale=(1.0 / (255.0 * std64)).tolist(),
        offset=(-mean64 / std64).tolist(),
        dtype="float32",
        name="normalize",
    )(images)
    probs = keras.layers.Softmax(dtype="float32", name=OUTPUT_KEY)(model(x))
    return keras.Model(images, probs, name="serving")


def export_saved_model(serving: keras.Model, path: _PathLike) -> None:
    """Writes `serving` as a SavedModel whose one signature is `serving_default`.

    The signature takes `images`, uint8 `[None, H, W, C]`, and returns
    `{"probabilities": float32 [None, num_classes]}`.
    """
    shape = [None, *serving.inputs[0].shape[1:]]

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_KEY: serving(images, training=False)}

    archive = keras.export.ExportArchive()
    archive.track(serving)
    archive.add_endpoint(
        SIGNATURE, serve, input_signature=[tf.TensorSpec(shape, tf.uint8, INPUT_NAME)]
    )
    archive.write_out(str(path), verbose=False)


def export_tflite(saved_model_dir: _PathLike, path: _PathLike, quantization: str) -> None:
    """Converts an exported SavedModel to a .tflite file.

    The input keeps the variable batch size (shape signature `[-1, H, W, C]`);
    `resize_tensor_input` sets it before `allocate_tensors`.

    Args:
      saved_model_dir: a SavedModel from `export_saved_model`.
      path: the .tflite file to write.
      quantization: "float32", or "dynamic_range" (int8 weights, float
        activations, no representative dataset).

    Raises:
      ValueError: for another quantization.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be in {QUANTIZATIONS}: {quantization!r}")
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=[SIGNATURE]
    )
    if quantization == "dynamic_range":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    Path(path).write_bytes(converter.convert())


def tflite_interpreter() -> tuple[type, str]:
    """The interpreter class `run_tflite` uses, and its name.

    LiteRT ("ai_edge_litert") when installed, else "tf.lite": TF 2.21 still
    ships `tf.lite.Interpreter` but warns that it is deprecated.
    """
    try:
        # Optional: LiteRT is preferred when installed, never required.
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return tf.lite.Interpreter, "tf.lite"
    return Interpreter, "ai_edge_litert"


def _batched(fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray) -> np.ndarray:
    starts = range(0, len(images), _BATCH)
    return np.concatenate([fn(images[s : s + _BATCH]) for s in starts])


def run_tflite(path: _PathLike, images: np.ndarray) -> np.ndarray:
    """Runs a one-input, one-output .tflite file on images `[N, H, W, C]`.

    Returns:
      The output for the N images (probabilities for an export).
    """
    cls, name = tflite_interpreter()
    with warnings.catch_warnings():
        if name == "tf.lite":  # a deliberate fallback: the warning is noise
            warnings.filterwarnings("ignore", r".*tf\.lite\.Interpreter is deprec")
        interpreter = cls(model_path=str(path))
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()

    def run(batch: np.ndarray) -> np.ndarray:
        interpreter.resize_tensor_input(inp["index"], batch.shape, strict=True)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], np.ascontiguousarray(batch, inp["dtype"]))
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    return _batched(run, images)


def run_saved_model(path: _PathLike, images: np.ndarray) -> np.ndarray:
    """Runs an exported SavedModel's `serving_default` on uint8 images."""
    serve = tf.saved_model.load(str(path)).signatures[SIGNATURE]
    return _batched(
        lambda b: serve(**{INPUT_NAME: tf.constant(b, tf.uint8)})[OUTPUT_KEY].numpy(),
        images,
    )


def verify(reference_probs: np.ndarray, candidate_probs: np.ndarray, tolerance: Tolerance) -> Check:
    """Compares an artifact's probabilities `[N, classes]` with the reference.

    A candidate of another shape or with NaN/inf fails with an infinite
    difference rather than raising: that is what a broken export looks like.

    Raises:
      ValueError: the reference is not a non-empty `[N, classes]` array.
    """
    ref = np.asarray(reference_probs, np.float64)
    cand = np.asarray(candidate_probs, np.float64)
    if ref.ndim != 2 or ref.size == 0:
        raise ValueError(f"reference_probs must be [N, classes]; got {ref.shape}.")
    if cand.shape != ref.shape:
        return Check(math.inf, 0.0, False)
    diff = float(np.max(np.abs(ref - cand))) if np.isfinite(cand).all() else math.inf
    agree = float(np.mean(ref.argmax(axis=1) == cand.argmax(axis=1)))
    ok = diff <= tolerance.max_abs_diff and agree >= tolerance.min_top1_agreement
    return Check(diff, agree, bool(ok))
