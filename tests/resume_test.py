"""Crash and resume: SIGKILL at random moments, SIGINT/SIGTERM, corrupt checkpoints.

A small macro search on digits runs under `--deterministic` once without
interruption; the same search is then killed with SIGKILL at random moments
(during start-up, and in training after the process wrote a checkpoint of its
own), stopped with SIGINT and SIGTERM, and rerun until it finishes. Both must
log the same architectures, rewards and child losses and derive the same
architecture. Final training (enas-train), the language-model search
(`--space=rnn`) and language-model final training (tiny generated text) go
through the same.

Every run here is a subprocess whose start-up (imports, building and tracing
the graphs; single-threaded) dominates its time, so the module starts the
runs of the selected tests at once, in threads (`runs`), and each test waits
for the runs it checks.
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

import numpy as np
import pytest

from enas_tf.testing import write_tiny_ptb

ROOT = Path(__file__).resolve().parents[1]
SEARCH = [
    "--space=macro",
    "--num_layers=2",
    "--out_filters=8",
    "--epochs=10",
    "--batch_size=64",
    "--controller_steps=3",
    "--num_aggregate=2",
    "--log_arcs=2",
    "--derive_samples=4",
    "--valid_size=200",
    "--eval_batch_size=200",
    "--deterministic",
    "--verbose=0",
]
SEARCH_EPOCHS = 10
TRAIN = [
    "--space=macro",
    "--arc=0 1 0 2 1 1",
    "--num_layers=3",
    "--out_filters=8",
    "--dataset=digits",
    "--valid_size=100",
    "--epochs=8",
    "--batch_size=64",
    "--deterministic",
    "--verbose=0",
]
# Language models on tiny generated text (`text` is its directory): an epoch
# is a few windows, so most of a run is start-up.
LM_SEARCH = [
    "--space=rnn",
    "--num_nodes=3",
    "--hidden_size=8",
    "--batch_size=4",
    "--bptt=5",
    "--epochs=10",
    "--max_steps_per_epoch=4",
    "--eval_batch_size=2",
    "--controller_steps=2",
    "--num_aggregate=2",
    "--log_arcs=2",
    "--derive_samples=3",
    "--deterministic",
    "--verbose=0",
]
LM_TRAIN = [
    "--space=rnn",
    "--arc=0 1 1 3 2 0",
    "--hidden_size=8",
    "--batch_size=4",
    "--bptt=5",
    "--epochs=8",
    "--max_steps_per_epoch=4",
    "--eval_batch_size=2",
    "--deterministic",
    "--verbose=0",
]
SEARCH_STOPS = [signal.SIGINT, signal.SIGTERM]  # clean stops, after the kills
TRAIN_STOPS = [signal.SIGTERM]
EARLY = (3.0, 12.0)  # seconds after the start: the early SIGKILLs (start-up)
LM_EARLY = (2.0, 6.0)
TIMEOUT = 900  # seconds for one run; the runs share the cores


def tool(name, flags):
    """The command line of a run of tools/`name`.py with `flags` (strings,
    "{text}" standing for the tiny text's directory) into `out`."""

    def cmd(out):
        text = out.parent / "text"
        if any("{text}" in f for f in flags) and not text.exists():
            write_tiny_ptb(str(text))
        return [
            sys.executable,
            str(ROOT / "tools" / f"{name}.py"),
            *(f.format(text=text) for f in flags),
            f"--output_dir={out}",
        ]

    return cmd


command = tool("search", SEARCH)
train_command = tool("train", TRAIN)
lm_command = tool("search", [*LM_SEARCH, "--data_dir={text}"])
lm_train_command = tool("train", [*LM_TRAIN, "--data_dir={text}"])


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
            raise AssertionError(
                f"the run ended with status {proc.returncode} before "
                f"writing a checkpoint:\n{stderr_of(proc)}"
            )
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


def interrupted(procs, cmd, out, seed, stops, early=EARLY):
    """Runs `cmd(out)` to its end through interruptions, in a random order:
    3 SIGKILLs at random moments of the first `early` seconds (start-up), 2 SIGKILLs at
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
            time.sleep(rng.uniform(*early))
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
    assert [e[0] for e in events][-len(stops) - 1 : -1] == stops


CNN_KEPT = ("epoch", "arcs", "child/loss", "child/accuracy")


def history(out, keys=CNN_KEPT):
    """What must not depend on interruptions: the logged arcs and rewards,
    the child losses, the candidates and the derived architecture. `keys`
    of the log; None: all but the timings (the LM search stops only between
    epochs, so even its controller metrics must match; the CNN search's
    controller metrics average the updates one process ran)."""
    rows = [json.loads(line) for line in (out / "search_log.jsonl").read_text().splitlines()]
    kept = [
        {k: v for k, v in r.items() if (k in keys if keys else k != "epoch_seconds")} for r in rows
    ]
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
    return {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "config.json"}


# What each test needs: names of the runs (futures) the `runs` fixture starts.
NEEDS = {
    "test_sigkill_at_random_moments_and_signals_then_resume_is_exact": (
        "search_reference",
        "search_interrupted",
    ),
    "test_corrupt_newest_checkpoint_falls_back_to_the_previous": (
        "search_reference",
        "corrupt_newest",
    ),
    "test_no_readable_checkpoint_is_a_clear_error": ("search_reference", "none_readable"),
    "test_final_training_killed_and_stopped_resumes_exactly": (
        "train_reference",
        "train_interrupted",
    ),
    "test_lm_search_killed_and_stopped_resumes_exactly": ("lm_reference", "lm_interrupted"),
    "test_lm_training_killed_and_stopped_resumes_exactly": (
        "lm_train_reference",
        "lm_train_interrupted",
    ),
}


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
    """The runs of the selected tests, started at once (see the module
    docstring); name -> future."""
    base = tmp_path_factory.mktemp("resume")
    selected = {
        item.originalname for item in request.session.items if item.module is request.module
    }
    wanted = {name for test in selected for name in NEEDS.get(test, ())}
    procs = Processes()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=6)
    futures = {}

    def start(name, fn, *args):
        if name in wanted:
            futures[name] = pool.submit(fn, procs, *args)

    # The references first: the corruption runs wait for the search's.
    start("search_reference", complete, command, base / "search" / "run")
    start("train_reference", complete, train_command, base / "train" / "run")
    start("lm_reference", complete, lm_command, base / "lm" / "run")
    start("lm_train_reference", complete, lm_train_command, base / "lm_train" / "run")
    start(
        "search_interrupted",
        interrupted,
        command,
        base / "search_interrupted" / "run",
        6,
        SEARCH_STOPS,
    )
    start(
        "train_interrupted",
        interrupted,
        train_command,
        base / "train_interrupted" / "run",
        7,
        TRAIN_STOPS,
    )
    start(
        "lm_interrupted",
        interrupted,
        lm_command,
        base / "lm_interrupted" / "run",
        8,
        SEARCH_STOPS,
        LM_EARLY,
    )
    start(
        "lm_train_interrupted",
        interrupted,
        lm_train_command,
        base / "lm_train_interrupted" / "run",
        9,
        TRAIN_STOPS,
        LM_EARLY,
    )
    start("corrupt_newest", corrupt_newest, futures.get("search_reference"))
    start("none_readable", none_readable, futures.get("search_reference"))
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


# The language models' CPU kernels are not bitwise reproducible across
# processes: two uninterrupted runs of the same command sometimes differ in
# the last bit of a weight (measured: 1 ulp of the tied embedding after a few
# steps, with one intra-op thread and with oneDNN off too; the traced graphs
# are identical). So their floats are compared to a relative 1e-4 and their
# architectures, epochs and step counts exactly.
LM_RTOL = 1e-4


def assert_close(a, b, where="run"):
    """`a == b`, floats to LM_RTOL (nested dicts, lists and tuples)."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=LM_RTOL), where
    elif isinstance(a, dict):
        assert sorted(a) == sorted(b), where
        for key in a:
            assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def test_lm_search_killed_and_stopped_resumes_exactly(runs):
    out, events = runs["lm_interrupted"].result()
    assert_interruptions(events, SEARCH_STOPS)
    assert_close(history(out, keys=None), history(runs["lm_reference"].result(), keys=None))


def lm_trained(out):
    """The final metrics, per-epoch history (less timings) and weights of an
    LM training run."""
    import keras  # noqa: PLC0415 - only these tests need it

    import enas_tf.lm.model  # noqa: F401, PLC0415 - registers the LM classes for loading

    summary = json.loads((out / "summary.json").read_text())
    rows = (out / "history.csv").read_text().splitlines()
    rows = [
        {
            key: (float(v) if "perplexity" in key or key == "grad_norm" else v)
            for key, v in zip(rows[0].split(","), row.split(","))
            if key != "seconds"
        }
        for row in rows[1:]
    ]
    weights = keras.saving.load_model(out / "model.keras").get_weights()
    return summary, rows, weights


def test_lm_training_killed_and_stopped_resumes_exactly(runs):
    out, events = runs["lm_train_interrupted"].result()
    assert_interruptions(events, TRAIN_STOPS)
    summary, rows, weights = lm_trained(out)
    expected, expected_rows, expected_weights = lm_trained(runs["lm_train_reference"].result())
    assert_close(rows, expected_rows, "history")
    for key in (
        "valid_perplexity",
        "best_valid_perplexity",
        "test_perplexity",
        "epochs",
        "steps",
        "averaging_from_epoch",
    ):
        assert_close(summary[key], expected[key], key)
    assert len(weights) == len(expected_weights)
    for a, b in zip(weights, expected_weights):
        np.testing.assert_allclose(a, b, rtol=LM_RTOL, atol=1e-6)
