"""SIGKILL, then resume: `enas-search` with every strategy but ENAS's
(tests/resume_test.py kills ENAS's at random moments): random and evolution
with shared weights, and the two that train children from scratch (nas,
evolution --evaluation=scratch). Tiny macro nets on digits, --deterministic.

Each algorithm runs twice at once: to the end, and killed (SIGKILL) once it
saved its first checkpoint of an epoch (shared weights) or recorded its
first child (from scratch), then run again to the end. The resumed run must
compute what the uninterrupted one did and, from scratch, train no recorded
child again.
"""

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from enas_tf.testing import run_at_once

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--space=macro",
    "--num_layers=2",
    "--out_filters=4",
    "--epochs=2",
    "--batch_size=128",
    "--valid_size=100",
    "--train_size=300",
    "--num_aggregate=2",
    "--log_arcs=1",
    "--derive_samples=2",
    "--deterministic",
    "--verbose=0",
]
SCRATCH = ["--controller_steps=1", "--child_epochs=2", "--parallel_children=1"]
ALGORITHMS = {
    "random": ["--algorithm=random", "--controller_steps=2"],
    "evolution": [
        "--algorithm=evolution",
        "--controller_steps=2",
        "--population_size=3",
        "--sample_size=2",
    ],
    "nas": ["--algorithm=nas", *SCRATCH],
    "evolution_scratch": [
        "--algorithm=evolution",
        "--evaluation=scratch",
        "--population_size=2",
        "--sample_size=1",
        *SCRATCH,
    ],
}
FROM_SCRATCH = ("nas", "evolution_scratch")
TIMEOUT = 600


def command(algorithm, out):
    return [
        sys.executable,
        str(ROOT / "tools" / "search.py"),
        *TINY,
        *ALGORITHMS[algorithm],
        f"--output_dir={out}",
    ]


def children(out):
    """children.jsonl's whole lines, in the order they were proposed."""
    path = out / "children.jsonl"
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    return sorted(lines, key=lambda c: (c["epoch"], c["update"], c["child"]))


def epochs_logged(out):
    path = out / "search_log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def kill_when(cmd, ready):
    """Starts `cmd`, SIGKILLs it once `ready()` holds."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + TIMEOUT
    while not ready():
        assert proc.poll() is None, f"ended before it was killed:\n{proc.stderr.read()}"
        assert time.time() < deadline, "not ready in time"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def kill(name, out):
    """Kills a run of `name` into `out`; returns the children it recorded."""
    if name in FROM_SCRATCH:
        kill_when(command(name, out), lambda: children(out))
    else:
        kill_when(command(name, out), lambda: epochs_logged(out))
    return children(out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The uninterrupted runs and the killed ones, side by side; then the
    killed ones again, to their end."""
    base = tmp_path_factory.mktemp("resume")
    whole = {name: (command(name, base / name / "whole"), base) for name in ALGORITHMS}
    with concurrent.futures.ThreadPoolExecutor(len(ALGORITHMS) + 1) as pool:
        references = pool.submit(run_at_once, whole)
        kills = {name: pool.submit(kill, name, base / name / "parts") for name in ALGORITHMS}
        killed = {name: future.result() for name, future in kills.items()}
        resumed = run_at_once(
            {name: (command(name, base / name / "parts"), base) for name in ALGORITHMS}
        )
        return base, references.result(), killed, resumed


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_killed_then_resumed_computes_what_an_uninterrupted_run_does(runs, algorithm):
    base, results, killed, resumed = runs
    assert results[algorithm].returncode == 0, results[algorithm].stderr
    assert resumed[algorithm].returncode == 0, resumed[algorithm].stderr
    whole, parts = base / algorithm / "whole", base / algorithm / "parts"
    logs = [epochs_logged(run) for run in (whole, parts)]
    assert len(logs[0]) == len(logs[1]) == 2
    for key in ("arcs", "controller/reward", "child/loss"):
        assert [row.get(key) for row in logs[0]] == [row.get(key) for row in logs[1]], key
    assert (whole / "best_arc.txt").read_text() == (parts / "best_arc.txt").read_text()
    if algorithm in FROM_SCRATCH:
        reference, after = children(whole), children(parts)
        assert len(reference) == 4
        # The children recorded before the kill stay as they were, each once;
        # the resumed run trained the others as the uninterrupted run did.
        assert after[: len(killed[algorithm])] == killed[algorithm]
        keys = [(c["epoch"], c["update"], c["child"]) for c in after]
        assert len(keys) == len(set(keys)) == 4
        for ours, theirs in zip(after, reference):
            for key in ("arc", "seed", "valid_curve", "train_curve", "reward"):
                assert ours[key] == theirs[key], key
