"""Drives `tools/export.py` (enas-export) the way a user does, in a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from enas_tf.data import load_images
from enas_tf.testing import keras_probs, make_standin_run, tflite_interpreter, tflite_probs

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def run_export(*args, module=False):
    entry = ["-m", "tools.export"] if module else [str(ROOT / "tools" / "export.py")]
    return subprocess.run(
        [sys.executable, *entry, *args],
        capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=120, check=False,
    )  # fmt: skip


def assert_user_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    # TensorFlow's start-up noise is hidden: the error is the only line.
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("export.py: error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def listing(directory):
    return sorted(str(p.relative_to(directory)) for p in Path(directory).rglob("*"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    make_standin_run(path, epochs=1)
    return path


def test_export_refuse_then_overwrite(run_dir, tmp_path):
    out = tmp_path / "export"
    result = run_export(f"--run_dir={run_dir}", f"--export_dir={out}",
                        "--num_samples=64")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["artifact", "size"]
    for row, name in zip(lines[1:4], ("saved_model", "tflite_float32",
                                      "tflite_dynamic_range")):  # fmt: skip
        assert row.split()[0] == name and row.endswith("yes")
    assert f"exported to {out}" in result.stdout
    report = json.loads((out / "export_report.json").read_text())
    assert report["passed"] and report["num_samples"] == 64

    # The files work with plain TensorFlow and agree with the Keras model.
    images = load_images("digits").test_images[:30]
    expected = keras_probs(run_dir, images)
    serve = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    probs = serve(images=tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    interpreter = tflite_interpreter(out / "model_float32.tflite")
    np.testing.assert_allclose(tflite_probs(interpreter, images), expected, atol=1e-5)

    before = {p: (out / p).stat().st_mtime_ns for p in listing(out)}
    result = run_export(f"--run_dir={run_dir}", f"--export_dir={out}")
    assert_user_error(result, str(out), "--overwrite", "--export_dir")
    assert {p: (out / p).stat().st_mtime_ns for p in listing(out)} == before

    result = run_export(f"--run_dir={run_dir}", f"--export_dir={out}",
                        "--num_samples=10", "--overwrite")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "export_report.json").read_text())["num_samples"] == 10
    assert listing(tmp_path) == ["export", *(f"export/{p}" for p in listing(out))]


def test_check_beyond_tolerance_exits_1_and_keeps_files(run_dir, tmp_path):
    # A tolerance no quantized model can meet stands in for a broken export.
    code = (
        "import sys; sys.argv[0] = 'export.py'; from enas_tf.export import image as export; "
        "export.TOLERANCES['tflite_dynamic_range'] = export.Tolerance(0.0, 1.0); "
        "from tools import export as tool; tool.run()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, f"--run_dir={run_dir}",
         f"--export_dir={tmp_path / 'e'}", "--num_samples=32"],
        capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert "check failed: tflite_dynamic_range" in message
    assert "may be wrong" in message
    assert next(r for r in result.stdout.splitlines() if "dynamic" in r).endswith("NO")
    assert (tmp_path / "e" / "model_dynamic_range.tflite").is_file()


def test_corrupt_model_exits_2_and_writes_nothing(run_dir, tmp_path):
    (tmp_path / "summary.json").write_bytes((run_dir / "summary.json").read_bytes())
    data = (run_dir / "model.keras").read_bytes()
    (tmp_path / "model.keras").write_bytes(data[: len(data) // 3])
    result = run_export(f"--run_dir={tmp_path}")
    assert_user_error(result, "model.keras", "corrupt or truncated", "enas-train")
    assert listing(tmp_path) == ["model.keras", "summary.json"]


def test_missing_run_dir_exits_2_also_as_a_module(tmp_path):
    result = run_export(f"--run_dir={tmp_path / 'nope'}", module=True)
    assert_user_error(result, "nope does not exist", "--output_dir=")
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "args, fragment",
    [
        ([], "--run_dir"),
        (["--run_dir=r", "--num_samples=0"], "num_samples"),
        (["--run_dir=r", "extra"], "Unexpected arguments: extra"),
    ],
)
def test_bad_flags_exit_2(args, fragment):
    assert_user_error(run_export(*args), fragment)
