"""Drives `tools/data.py` (enas-data) in a subprocess."""

import subprocess
import sys
from pathlib import Path

import pytest

from enas_tf.testing import shared_ptb_dir

ROOT = Path(__file__).resolve().parents[2]
PTB = shared_ptb_dir()


def run_data(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "data.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def assert_user_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("data.py: error: "), result.stderr
    for fragment in fragments:
        assert fragment in last


def test_digits_pipeline_runs():
    result = run_data("--dataset=digits", "--batch_size=64", "--cutout_size=4")
    assert result.returncode == 0, result.stderr
    assert "digits: 1077 train, 360 valid, 360 test images of 8x8x1" in result.stdout
    assert "pad 4 + crop + cutout 4" in result.stdout  # no flip for digits
    assert "1077 images in" in result.stdout


@pytest.mark.skipif(not PTB.is_dir(), reason="no shared PTB copy")
def test_ptb_summary():
    result = run_data("--dataset=ptb", f"--data_dir={PTB}", "--batch_size=64")
    assert result.returncode == 0, result.stderr
    assert "929589 train, 73760 valid, 82430 test tokens; vocabulary 10000" in result.stdout
    assert "train: 414 windows of [64, 35] tokens" in result.stdout


def test_missing_cifar_is_one_clear_error(tmp_path):
    result = run_data("--dataset=cifar10", f"--data_dir={tmp_path}")
    assert_user_error(result, "cifar10", "not available offline", str(tmp_path), "--download")


def test_bad_input(tmp_path):
    assert_user_error(run_data("--dataset=imagenet"), "--dataset=imagenet")
    assert_user_error(run_data("--dataset=ptb"), "PTB needs --data_dir")
    assert_user_error(run_data("--dataset=ptb", f"--data_dir={tmp_path}"), "train.txt")
    assert_user_error(run_data("--dataset=digits", "--valid_size=5000"), "valid_size=5000")
    assert_user_error(run_data("--dataset=digits", "--cutout_size=9"), "larger than the 8x8")
    assert_user_error(run_data("extra"), "Unexpected arguments: extra")
