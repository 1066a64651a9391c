"""Crash and resume: SIGKILL at random moments, SIGINT/SIGTERM, corrupt checkpoints.

A small macro search on digits runs under `--deterministic` once without
interruption; the same search is then killed with SIGKILL at random moments
and rerun until it finishes. Both must log the same architectures, rewards
and child losses and derive the same architecture.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEARCH = [
    "--space=macro", "--num_layers=2", "--out_filters=8", "--epochs=5", "--batch_size=64",
    "--controller_steps=3", "--num_aggregate=2", "--log_arcs=2", "--derive_samples=4",
    "--valid_size=200", "--eval_batch_size=200", "--deterministic", "--verbose=0",
]


def command(out):
    return [sys.executable, str(ROOT / "tools" / "search.py"), *SEARCH, f"--output_dir={out}"]


def run(out, timeout=600):
    return subprocess.run(command(out), capture_output=True, text=True, timeout=timeout)


def history(out):
    """What must not depend on interruptions: the logged arcs and rewards,
    the child losses, the candidates and the derived architecture."""
    rows = [json.loads(line) for line in (out / "search_log.jsonl").read_text().splitlines()]
    kept = [{k: r[k] for k in ("epoch", "arcs", "child/loss", "child/accuracy")} for r in rows]
    candidates = json.loads((out / "candidates.json").read_text())["candidates"]
    return kept, candidates, (out / "best_arc.txt").read_text()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    result = run(out)
    assert result.returncode == 0, result.stderr
    return history(out)


def test_sigkill_at_random_moments_then_resume_is_exact(reference, tmp_path):
    out = tmp_path / "run"
    rng = random.Random(6)
    kills = 0
    for _ in range(30):
        proc = subprocess.Popen(command(out), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(4.0, 14.0))
        if proc.poll() is not None:  # finished before the kill
            assert proc.returncode == 0, proc.stderr.read()
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        kills += 1
        if kills >= 6:
            break
    assert kills >= 5
    if not (out / "best_arc.txt").exists():
        result = run(out)
        assert result.returncode == 0, result.stderr
    assert history(out) == reference


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_signal_saves_a_checkpoint_and_exits_cleanly(reference, tmp_path, signum):
    out = tmp_path / "run"
    proc = subprocess.Popen(command(out), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    # Wait for training to start (the first checkpoint), then signal.
    deadline = time.time() + 300
    while not (out / "checkpoints" / "checkpoint").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.2)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=300)
    if proc.returncode == 0:  # finished before the signal arrived
        pytest.skip("the run finished before the signal")
    assert proc.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    assert "Stopped on" in stderr and "Run the same command again" in stderr
    result = run(out)
    assert result.returncode == 0, result.stderr
    assert history(out) == reference


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(reference, tmp_path):
    out = tmp_path / "run"
    result = run(out)
    assert result.returncode == 0, result.stderr
    # Truncate the newest checkpoint's data, and rerun with more epochs.
    ckpt = out / "checkpoints"
    newest = (ckpt / "checkpoint").read_text().split('"')[1]
    data = next(ckpt.glob(f"{newest}.data-*"))
    data.write_bytes(data.read_bytes()[: os.path.getsize(data) // 2])
    more = [*command(out), "--epochs=6"]
    result = subprocess.run(more, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "corrupt or truncated" in result.stderr
    rows = [json.loads(line) for line in (out / "search_log.jsonl").read_text().splitlines()]
    # Epoch 5 was redone from epoch 4's checkpoint (its old line dropped).
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["arcs"] for r in rows[:5]] == [r["arcs"] for r in reference[0]]


def test_no_readable_checkpoint_is_a_clear_error(tmp_path):
    out = tmp_path / "run"
    result = run(out)
    assert result.returncode == 0, result.stderr
    for data in (out / "checkpoints").glob("*.data-*"):
        data.write_bytes(b"garbage")
    def files():  # config.json records the new epoch count (a safe change)
        return {p: p.read_bytes() for p in out.rglob("*")
                if p.is_file() and p.name != "config.json"}

    before = files()
    result = subprocess.run([*command(out), "--epochs=6"], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "No checkpoint" in result.stderr and "--overwrite" in result.stderr
    assert files() == before


TRAIN = [
    "--space=macro", "--arc=0 1 0 2 1 1", "--num_layers=3", "--out_filters=8",
    "--dataset=digits", "--valid_size=100", "--epochs=6", "--batch_size=64",
    "--deterministic", "--verbose=0",
]


def train_command(out):
    return [sys.executable, str(ROOT / "tools" / "train.py"), *TRAIN, f"--output_dir={out}"]


def trained(out):
    """The final weights and metrics of a training run."""
    import keras  # noqa: PLC0415 - only these tests need it

    summary = json.loads((out / "summary.json").read_text())
    weights = keras.saving.load_model(out / "model.keras").get_weights()
    return summary, weights


@pytest.fixture(scope="module")
def train_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("train_reference") / "run"
    result = subprocess.run(train_command(out), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return trained(out)


def assert_same_training(out, reference):
    summary, weights = trained(out)
    expected, expected_weights = reference
    for key in ("test_accuracy", "final_valid_accuracy", "best_valid_accuracy", "epochs"):
        assert summary[key] == expected[key], key
    assert len(weights) == len(expected_weights)
    for a, b in zip(weights, expected_weights):
        assert (a == b).all()


def test_final_training_killed_at_random_moments_resumes_exactly(train_reference, tmp_path):
    out = tmp_path / "run"
    rng = random.Random(7)
    kills = 0
    while kills < 5:
        proc = subprocess.Popen(train_command(out), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(6.0, 16.0))
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read()
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        kills += 1
    assert kills >= 5
    if not (out / "summary.json").exists():
        result = subprocess.run(train_command(out), capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
    assert_same_training(out, train_reference)


def test_final_training_stops_on_sigterm_inside_an_epoch(train_reference, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(train_command(out), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / "checkpoints" / "checkpoint").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal")
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and "Stopped on SIGTERM" in stderr
    result = subprocess.run(train_command(out), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert_same_training(out, train_reference)
