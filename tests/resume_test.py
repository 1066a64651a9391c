"""Crash and resume: SIGKILL at random moments, SIGINT/SIGTERM, corrupt checkpoints.

A small macro search on digits runs under `--deterministic` once without
interruption; the same search is then killed with SIGKILL at random moments
(during start-up, and in training after the process wrote a checkpoint of its
own), stopped with SIGINT and SIGTERM, and rerun until it finishes. Both must
log the same architectures, rewards and child losses and derive the same
architecture. Final training (enas-train) goes through the same.

Every run here is a subprocess whose start-up (imports, building and tracing
the graphs; single-threaded) dominates its time, so the module starts all of
them at once, in threads (`runs`), and each test waits for the runs it checks.
"""

import concurrent.futures
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEARCH = [
    "--space=macro", "--num_layers=2", "--out_filters=8", "--epochs=10", "--batch_size=64",
    "--controller_steps=3", "--num_aggregate=2", "--log_arcs=2", "--derive_samples=4",
    "--valid_size=200", "--eval_batch_size=200", "--deterministic", "--verbose=0",
]
SEARCH_EPOCHS = 10
TRAIN = [
    "--space=macro", "--arc=0 1 0 2 1 1", "--num_layers=3", "--out_filters=8",
    "--dataset=digits", "--valid_size=100", "--epochs=8", "--batch_size=64",
    "--deterministic", "--verbose=0",
]
SEARCH_STOPS = [signal.SIGINT, signal.SIGTERM]  # clean stops, after the kills
TRAIN_STOPS = [signal.SIGTERM]
TIMEOUT = 900  # seconds for one run; the runs share the cores


def command(out):
    return [sys.executable, str(ROOT / "tools" / "search.py"), *SEARCH, f"--output_dir={out}"]


def train_command(out):
    return [sys.executable, str(ROOT / "tools" / "train.py"), *TRAIN, f"--output_dir={out}"]


class Processes:
    """The subprocesses of this module; `stop` ends the live ones (teardown)."""

    def __init__(self):
        self.live, self.stopping, self.lock = set(), threading.Event(), threading.Lock()

    def start(self, cmd):
        with self.lock:
            assert not self.stopping.is_set(), "the module is stopping"
            # stderr goes to a file: a pipe nobody reads could fill and block.
            log = tempfile.TemporaryFile("w+")
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
            proc.log = log
            self.live.add(proc)
        return proc

    def finish(self, proc):
        """Waits for `proc`; returns its stderr."""
        try:
            proc.wait(timeout=TIMEOUT)
        finally:
            with self.lock:
                self.live.discard(proc)
        return stderr_of(proc)

    def run(self, cmd):
        """Runs `cmd` to its end; returns (status, stderr)."""
        proc = self.start(cmd)
        stderr = self.finish(proc)
        return proc.returncode, stderr

    def stop(self):
        with self.lock:
            self.stopping.set()
            for proc in self.live:
                proc.kill()  # only our own children, by their Popen


def stderr_of(proc):
    """What `proc` (ended) wrote to stderr."""
    proc.log.seek(0)
    return proc.log.read()


def newest_checkpoint(out):
    try:
        return (out / "checkpoints" / "checkpoint").read_text().split('"')[1]
    except (FileNotFoundError, IndexError):
        return None


def wait_for_checkpoint(proc, out, before):
    """Waits until `proc` has written a checkpoint of its own (not `before`)."""
    deadline = time.time() + TIMEOUT
    while newest_checkpoint(out) == before:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended with status {proc.returncode} before "
                                 f"writing a checkpoint:\n{stderr_of(proc)}")
        assert time.time() < deadline, "no checkpoint in time"
        time.sleep(0.05)


def sleep_until_next_checkpoint(out, seconds):
    """Sleeps `seconds`, or less if a checkpoint comes first: a run goes at
    most two epochs further between interruptions, so every step of a plan
    finds epochs left to interrupt (the epoch counts leave room for that)."""
    first, deadline = newest_checkpoint(out), time.time() + seconds
    while time.time() < deadline and newest_checkpoint(out) == first:
        time.sleep(0.01)


def complete(procs, cmd, out):
    status, stderr = procs.run(cmd(out))
    assert status == 0, stderr
    return out


def interrupted(procs, cmd, out, seed, stops):
    """Runs `cmd(out)` to its end through interruptions, in a random order:
    3 SIGKILLs at random moments of the first 3-12 s (start-up), 2 SIGKILLs at
    random moments after the process saved a checkpoint of its own (in
    training, or deriving/saving after the last epoch); then the clean stops
    `stops` (signals sent just after a checkpoint of the process's own, so
    inside training). Returns `out` and what happened, for the test to check:
    a list of (step, checkpoint before, checkpoint after, status, stderr)."""
    rng = random.Random(seed)
    plan = ["early"] * 3 + ["trained"] * 2
    rng.shuffle(plan)
    events = []
    for step in [*plan, *stops, "finish"]:
        before = newest_checkpoint(out)
        proc = procs.start(cmd(out))
        if step == "early":
            time.sleep(rng.uniform(3.0, 12.0))
            assert proc.poll() is None, f"ended before the kill:\n{stderr_of(proc)}"
            proc.send_signal(signal.SIGKILL)
        elif step == "trained":
            wait_for_checkpoint(proc, out, before)
            sleep_until_next_checkpoint(out, rng.uniform(0.0, 1.5))
            proc.send_signal(signal.SIGKILL)
        elif step != "finish":  # a clean stop
            wait_for_checkpoint(proc, out, before)
            sleep_until_next_checkpoint(out, rng.uniform(0.0, 0.5))
            proc.send_signal(step)
        stderr = procs.finish(proc)
        events.append((step, before, newest_checkpoint(out), proc.returncode, stderr))
    return out, events


def assert_interruptions(events, stops):
    assert [e[0] for e in events].count("early") == 3
    assert [e[0] for e in events].count("trained") == 2
    for step, before, after, status, stderr in events:
        if step in ("early", "trained"):
            assert status == -signal.SIGKILL, (step, status, stderr)
            if step == "trained":  # killed after training from `before` on
                assert after not in (None, before)
        elif step == "finish":
            assert status == 0, stderr
        else:
            assert status == 128 + step, stderr
            assert "Traceback" not in stderr
            assert f"Stopped on {signal.Signals(step).name}" in stderr, stderr
            assert "Run the same command again" in stderr
    assert [e[0] for e in events][-len(stops) - 1:-1] == stops


def history(out):
    """What must not depend on interruptions: the logged arcs and rewards,
    the child losses, the candidates and the derived architecture."""
    rows = [json.loads(line) for line in (out / "search_log.jsonl").read_text().splitlines()]
    kept = [{k: r[k] for k in ("epoch", "arcs", "child/loss", "child/accuracy")} for r in rows]
    candidates = json.loads((out / "candidates.json").read_text())["candidates"]
    return kept, candidates, (out / "best_arc.txt").read_text()


def corrupt_newest(procs, reference):
    """A copy of the finished reference search, its newest checkpoint's data
    truncated, rerun with one more epoch."""
    out = reference.result().parent / "corrupt"
    shutil.copytree(reference.result(), out)
    ckpt = out / "checkpoints"
    data = next(ckpt.glob(f"{newest_checkpoint(out)}.data-*"))
    data.write_bytes(data.read_bytes()[: os.path.getsize(data) // 2])
    return out, procs.run([*command(out), f"--epochs={SEARCH_EPOCHS + 1}"])


def none_readable(procs, reference):
    """A copy of the finished reference search, every checkpoint's data
    replaced by garbage, rerun with one more epoch."""
    out = reference.result().parent / "garbage"
    shutil.copytree(reference.result(), out)
    for data in (out / "checkpoints").glob("*.data-*"):
        data.write_bytes(b"garbage")
    before = unchanged_files(out)
    return out, before, procs.run([*command(out), f"--epochs={SEARCH_EPOCHS + 1}"])


def unchanged_files(out):  # config.json records the new epoch count (a safe change)
    return {p: p.read_bytes() for p in out.rglob("*")
            if p.is_file() and p.name != "config.json"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every run of this module, started at once (see the module docstring);
    name -> future."""
    base = tmp_path_factory.mktemp("resume")
    procs = Processes()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=6)
    futures = {}
    futures["search_reference"] = pool.submit(complete, procs, command, base / "search" / "run")
    futures["train_reference"] = pool.submit(complete, procs, train_command,
                                             base / "train" / "run")
    futures["search_interrupted"] = pool.submit(
        interrupted, procs, command, base / "search_interrupted", 6, SEARCH_STOPS)
    futures["train_interrupted"] = pool.submit(
        interrupted, procs, train_command, base / "train_interrupted", 7, TRAIN_STOPS)
    futures["corrupt_newest"] = pool.submit(corrupt_newest, procs,
                                            futures["search_reference"])
    futures["none_readable"] = pool.submit(none_readable, procs,
                                           futures["search_reference"])
    yield futures
    procs.stop()
    pool.shutdown(wait=True, cancel_futures=True)


def test_sigkill_at_random_moments_and_signals_then_resume_is_exact(runs):
    out, events = runs["search_interrupted"].result()
    assert_interruptions(events, SEARCH_STOPS)
    assert history(out) == history(runs["search_reference"].result())


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(runs):
    out, (status, stderr) = runs["corrupt_newest"].result()
    assert status == 0, stderr
    assert "corrupt or truncated" in stderr
    rows = [json.loads(line) for line in (out / "search_log.jsonl").read_text().splitlines()]
    # The last epoch was redone from the previous epoch's checkpoint (its old
    # line dropped), then one more.
    assert [r["epoch"] for r in rows] == list(range(1, SEARCH_EPOCHS + 2))
    reference = history(runs["search_reference"].result())
    assert [r["arcs"] for r in rows[:SEARCH_EPOCHS]] == [r["arcs"] for r in reference[0]]


def test_no_readable_checkpoint_is_a_clear_error(runs):
    out, before, (status, stderr) = runs["none_readable"].result()
    assert status == 2, stderr
    assert "Traceback" not in stderr
    assert "No checkpoint" in stderr and "--overwrite" in stderr
    assert unchanged_files(out) == before


def trained(out):
    """The final weights and metrics of a training run."""
    import keras  # noqa: PLC0415 - only these tests need it

    summary = json.loads((out / "summary.json").read_text())
    weights = keras.saving.load_model(out / "model.keras").get_weights()
    return summary, weights


def test_final_training_killed_and_stopped_resumes_exactly(runs):
    out, events = runs["train_interrupted"].result()
    assert_interruptions(events, TRAIN_STOPS)
    summary, weights = trained(out)
    expected, expected_weights = trained(runs["train_reference"].result())
    for key in ("test_accuracy", "final_valid_accuracy", "best_valid_accuracy", "epochs"):
        assert summary[key] == expected[key], key
    assert len(weights) == len(expected_weights)
    for a, b in zip(weights, expected_weights):
        assert (a == b).all()
