"""SIGKILL while children train from scratch, then resume: `enas-search`
with nas and with evolution --evaluation=scratch (tiny macro nets, digits).

Each algorithm runs twice at once: to the end, and killed (SIGKILL) once its
first child is recorded, then run again to the end. The resumed run must
train no recorded child again and find what the uninterrupted one found.
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
    "--controller_steps=1",
    "--num_aggregate=2",
    "--child_epochs=2",
    "--parallel_children=1",
    "--log_arcs=1",
    "--derive_samples=2",
    "--deterministic",
    "--verbose=0",
]
ALGORITHMS = {
    "nas": ["--algorithm=nas"],
    "evolution": [
        "--algorithm=evolution",
        "--evaluation=scratch",
        "--population_size=2",
        "--sample_size=1",
    ],
}
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
    path = out / "children.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def kill_after_first_child(cmd, out):
    """Starts `cmd`, SIGKILLs it once children.jsonl holds a child; returns
    the children recorded then."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + TIMEOUT
    while not children(out):
        assert proc.poll() is None, f"ended before its first child:\n{proc.stderr.read()}"
        assert time.time() < deadline, "no child in time"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return children(out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The uninterrupted runs and the killed ones, side by side; then the
    killed ones again, to their end."""
    base = tmp_path_factory.mktemp("scratch")
    whole = {name: (command(name, base / name / "whole"), base) for name in ALGORITHMS}
    with concurrent.futures.ThreadPoolExecutor(len(ALGORITHMS) + 1) as pool:
        references = pool.submit(run_at_once, whole)
        kills = {
            name: pool.submit(
                kill_after_first_child, command(name, base / name / "parts"), base / name / "parts"
            )
            for name in ALGORITHMS
        }
        killed = {name: kill.result() for name, kill in kills.items()}
        resumed = run_at_once(
            {name: (command(name, base / name / "parts"), base) for name in ALGORITHMS}
        )
        return base, references.result(), killed, resumed


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_killed_while_children_train_resumes_without_retraining(runs, algorithm):
    base, results, killed, resumed = runs
    assert results[algorithm].returncode == 0, results[algorithm].stderr
    assert resumed[algorithm].returncode == 0, resumed[algorithm].stderr
    reference = children(base / algorithm / "whole")
    assert len(reference) == 4
    after = children(base / algorithm / "parts")
    # The children recorded before the kill stay as they were, each once.
    assert after[: len(killed[algorithm])] == killed[algorithm]
    keys = [(c["epoch"], c["update"], c["child"]) for c in after]
    assert len(keys) == len(set(keys)) == 4
    # ... and the resumed run trained the others as the uninterrupted run.
    for ours, theirs in zip(sorted(after, key=lambda c: (c["epoch"], c["child"])), reference):
        for key in ("arc", "seed", "valid_curve", "train_curve", "reward"):
            assert ours[key] == theirs[key], key
    best = [(base / algorithm / run / "best_arc.txt").read_text() for run in ("whole", "parts")]
    assert best[0] == best[1]
