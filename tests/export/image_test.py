"""Tests of enas_tf.export.image on a small trained stand-in of a training run.

The artifacts are reloaded with plain TensorFlow (`tf.saved_model.load`,
`tf.lite.Interpreter`), never through enas_tf, and compared with the Keras
model computed by hand: what a user of the export would do.
"""

import json
import os
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas_tf.data import load_images
from enas_tf.errors import UserError
from enas_tf.export import image as export
from enas_tf.export import run as export_run
from enas_tf.testing import keras_probs, make_standin_run, tflite_interpreter, tflite_probs


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    make_standin_run(path)
    return path


@pytest.fixture(scope="module")
def images():
    return load_images("digits").test_images[:200]


@pytest.fixture(scope="module")
def exported(run_dir, images):
    """One export shared by the tests that only read it."""
    out = run_dir / "export"
    return out, export_run.export_run(run_dir, out, images)


def test_saved_model_signature_and_outputs(run_dir, images, exported):
    out, _ = exported
    serve = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    _, kwargs = serve.structured_input_signature
    assert list(kwargs) == ["images"]
    assert kwargs["images"].dtype == tf.uint8
    assert kwargs["images"].shape.as_list() == [None, 8, 8, 1]
    assert list(serve.structured_outputs) == ["probabilities"]
    assert serve.structured_outputs["probabilities"].dtype == tf.float32
    assert serve.structured_outputs["probabilities"].shape.as_list() == [None, 10]

    probs = serve(images=tf.constant(images))["probabilities"].numpy()
    expected = keras_probs(run_dir, images)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(1), expected.argmax(1))


@pytest.mark.parametrize("quantization", ["float32", "dynamic_range"])
def test_tflite_runs_any_batch_size(run_dir, images, exported, quantization):
    out, _ = exported
    interpreter = tflite_interpreter(out / f"model_{quantization}.tflite")
    (inp,) = interpreter.get_input_details()
    assert inp["dtype"] == np.uint8
    assert inp["shape_signature"].tolist() == [-1, 8, 8, 1]

    expected = keras_probs(run_dir, images)
    for n in (len(images), 7, 1):  # resized each time: the batch is variable
        probs = tflite_probs(interpreter, images[:n])
        assert probs.shape == (n, 10) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    probs = tflite_probs(interpreter, images)
    diff = np.abs(probs - expected).max()
    agreement = np.mean(probs.argmax(1) == expected.argmax(1))
    if quantization == "float32":
        assert diff < 1e-5 and agreement == 1.0
    else:  # measured 0.016 and 99.5%; the defaults leave room
        assert 0 < diff < 0.1 and agreement >= 0.97


def test_dynamic_range_quantizes_weights(exported):
    out, report = exported
    sizes = {k: a["size_bytes"] for k, a in report["artifacts"].items()}
    assert sizes["tflite_dynamic_range"] < 0.7 * sizes["tflite_float32"]
    assert sizes["tflite_float32"] == os.path.getsize(out / "model_float32.tflite")


def test_report(exported, images):
    out, report = exported
    assert json.loads((out / "export_report.json").read_text()) == report
    assert report["passed"] and report["num_samples"] == len(images)
    assert set(report["artifacts"]) == set(export.TOLERANCES)
    for name, artifact in report["artifacts"].items():
        tolerance = export.TOLERANCES[name]
        assert (out / artifact["path"]).exists()
        assert artifact["passed"]
        assert artifact["max_abs_diff"] <= tolerance.max_abs_diff
        assert artifact["top1_agreement"] >= tolerance.min_top1_agreement
        assert artifact["tolerance"] == {
            "max_abs_diff": tolerance.max_abs_diff,
            "min_top1_agreement": tolerance.min_top1_agreement,
        }
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []


def test_normalisation_matches_hand_computation():
    """Per-channel (x/255 - mean)/std, a zero std counting as 1."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4, 4, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(5)(pooled))
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.25, 0.0]
    serving = export.serving_model(model, mean, std)
    assert serving.inputs[0].dtype == "uint8"
    assert serving.inputs[0].name == "images"

    images = np.random.default_rng(0).integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    normalize = keras.Model(serving.inputs[0], serving.get_layer("normalize").output)
    by_hand = (images / 255.0 - np.array(mean)) / np.array([0.2, 0.25, 1.0])
    np.testing.assert_allclose(normalize(images).numpy(), by_hand, atol=1e-5)

    logits = model(by_hand.astype(np.float32)).numpy().astype(np.float64)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    served = serving(images).numpy()
    assert served.dtype == np.float32
    np.testing.assert_allclose(served, probs, atol=1e-6)


def test_serving_model_rejects_wrong_stats():
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten()])
    with pytest.raises(UserError, match="one value per channel"):
        export.serving_model(model, [0.5], [0.2])


def test_verify_math():
    tol = export.Tolerance(max_abs_diff=0.25, min_top1_agreement=1.0)
    ref = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])
    close = np.array([[0.65, 0.25, 0.1], [0.3, 0.5, 0.2]])
    check = export.verify(ref, close, tol)
    assert check.max_abs_diff == pytest.approx(0.2)
    assert check.top1_agreement == 1.0 and check.passed
    assert not export.verify(ref, close, export.Tolerance(0.1, 1.0)).passed

    flipped = np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])  # row 2: class 2
    check = export.verify(ref, flipped, tol)
    assert check.max_abs_diff == pytest.approx(0.3)
    assert check.top1_agreement == 0.5 and not check.passed
    assert export.verify(ref, flipped, export.Tolerance(0.5, 0.5)).passed

    for broken in (ref[:1], ref[:, :2], np.where(ref > 0.5, np.nan, ref)):
        check = export.verify(ref, broken, tol)
        assert check.max_abs_diff == np.inf and not check.passed
    with pytest.raises(ValueError):
        export.verify(np.zeros((0, 3)), np.zeros((0, 3)), tol)


def test_default_tolerances():
    for name in ("saved_model", "tflite_float32"):
        assert export.TOLERANCES[name] == export.Tolerance(1e-4, 0.99)
    assert export.TOLERANCES["tflite_dynamic_range"] == export.Tolerance(0.15, 0.97)


def test_existing_export_needs_overwrite_and_is_replaced_whole(run_dir, images, tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "model_float32.tflite").write_bytes(b"old")
    with pytest.raises(UserError, match="--overwrite.*--export_dir"):
        export_run.export_run(run_dir, out, images[:20])
    assert [p.name for p in out.iterdir()] == ["model_float32.tflite"]

    report = export_run.export_run(run_dir, out, images[:20], overwrite=True)
    assert report["passed"]
    assert (out / "model_float32.tflite").read_bytes() != b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temp dirs


def test_overwrite_never_deletes_foreign_files(run_dir, images, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="notes.txt"):
        export_run.export_run(run_dir, tmp_path, images[:20], overwrite=True)
    with pytest.raises(UserError, match="run directory"):
        export_run.export_run(run_dir, run_dir, images[:20], overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_failure_midway_leaves_old_export_intact(run_dir, images, tmp_path, monkeypatch):
    out = tmp_path / "export"
    out.mkdir()
    (out / "export_report.json").write_text("old")

    def broken(*args):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(export_run, "export_tflite", broken)
    with pytest.raises(RuntimeError, match="converter crashed"):
        export_run.export_run(run_dir, out, images[:20], overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    assert [p.name for p in out.iterdir()] == ["export_report.json"]
    assert (out / "export_report.json").read_text() == "old"


def test_check_beyond_tolerance_is_reported_and_files_kept(run_dir, images, tmp_path, monkeypatch):
    strict = export.Tolerance(max_abs_diff=0.0, min_top1_agreement=1.0)
    monkeypatch.setitem(export.TOLERANCES, "tflite_dynamic_range", strict)
    report = export_run.export_run(run_dir, tmp_path / "export", images[:50])
    assert not report["passed"]
    assert [k for k, a in report["artifacts"].items() if not a["passed"]] == [
        "tflite_dynamic_range"
    ]
    assert (tmp_path / "export" / "model_dynamic_range.tflite").is_file()


@pytest.mark.parametrize(
    "damage, fragments",
    [
        (lambda d: (d / "summary.json").unlink(), ["summary.json is missing"]),
        (lambda d: (d / "summary.json").write_text('{"dataset": "dig'),
         ["summary.json is not valid JSON"]),
        (lambda d: (d / "summary.json").write_text('{"dataset": "digits"}'),
         ["lacks image_shape, num_classes, mean, std"]),
        (lambda d: (d / "model.keras").unlink(), ["model.keras is missing",
                                                  "enas-train --output_dir="]),
        (lambda d: (d / "model.keras").write_bytes(b"PK\x03\x04 truncated"),
         ["model.keras is not a .keras (zip) file", "corrupt or truncated"]),
    ],
)  # fmt: skip
def test_broken_run_is_a_user_error(run_dir, images, tmp_path, damage, fragments):
    broken = tmp_path / "run"
    broken.mkdir()
    for name in ("model.keras", "summary.json"):
        (broken / name).write_bytes((run_dir / name).read_bytes())
    damage(broken)
    with pytest.raises(UserError) as error:
        export_run.export_run(broken, broken / "export", images[:10])
    for fragment in fragments:
        assert fragment in str(error.value)
    assert not (broken / "export").exists()


@pytest.mark.parametrize("part", ["file", "weights"])
def test_truncated_model_is_a_user_error(run_dir, images, tmp_path, part):
    (tmp_path / "summary.json").write_bytes((run_dir / "summary.json").read_bytes())
    model = tmp_path / "model.keras"
    if part == "file":
        data = (run_dir / "model.keras").read_bytes()
        model.write_bytes(data[: len(data) // 2])
    else:  # a valid zip whose weights file is cut short
        original = zipfile.ZipFile(run_dir / "model.keras")
        with original as src, zipfile.ZipFile(model, "w") as dst:
            for name in src.namelist():
                data = src.read(name)
                dst.writestr(name, data[:100] if name.endswith(".h5") else data)
    with pytest.raises(UserError, match="model.keras.*corrupt or truncated"):
        export_run.export_run(tmp_path, tmp_path / "export", images[:10])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras", "summary.json"]


def test_sample_images_must_fit_the_model(run_dir, tmp_path):
    with pytest.raises(UserError, match=r"shape \[5, 28, 28, 1\]"):
        export_run.export_run(run_dir, tmp_path / "e", np.zeros((5, 28, 28, 1), np.uint8))
    with pytest.raises(UserError, match="float32"):
        export_run.export_run(run_dir, tmp_path / "e", np.zeros((5, 8, 8, 1), np.float32))
    assert not (tmp_path / "e").exists()
