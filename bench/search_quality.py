"""Search quality: ENAS against Random-WS at equal budget, through the tools.

For each method (`--algorithm=reinforce`, the ENAS controller, and
`--algorithm=random`, Random-WS: the same loop and supernet with uniform
sampling) and seed, runs `enas-search` with the quickstart settings (so
both spend the same child steps and the same reward evaluations), then
trains the derived architecture from scratch with `enas-train`
(flags/digits_quick.flags) and reads its test accuracy. It prints the mean
+- std per method, the controller's mean reward per epoch (the rising
curve of a controller that learns; random's stays flat), and the Kendall
tau between shared-weight scores (candidates.json of the first Random-WS
run) and stand-alone test accuracies of `--tau_archs` of its candidates,
spread over the score range.

    python bench/search_quality.py                       # digits, 3 seeds
    python bench/search_quality.py --seeds=1 --tau_archs=4 --search_epochs=10
    python bench/search_quality.py --dataset=fashion_mnist --train_size=1000 \
        --valid_size=1000 --train_epochs=10   # ~83 min on 2 cores

`--dataset`, `--valid_size` and `--train_size` go to both tools (the
searches and the stand-alone trainings); other settings are the quickstart's
and flags/digits_quick.flags'.

Runs go to `--work_dir` (default: enas_search_quality in the system's
temporary directory; kept, so a rerun reuses finished runs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_integer("seeds", 3, "Seeds per method.")
flags.DEFINE_integer("search_epochs", 30, "Search epochs (both methods).")
flags.DEFINE_integer("train_epochs", 20, "Epochs of each stand-alone training.")
flags.DEFINE_integer("tau_archs", 10, "Candidates trained for the rank correlation.")
flags.DEFINE_string(
    "work_dir",
    None,
    "Where runs are written (default: enas_search_quality in the system's temporary directory).",
)
flags.DEFINE_string("dataset", "digits", "Dataset of the searches and trainings.")
flags.DEFINE_integer("valid_size", 360, "Validation images (rewards, scores).")
flags.DEFINE_integer("train_size", None, "Training images used (default: all).")
FLAGS = flags.FLAGS


def _tool(name, *args):
    """Runs a tool (`python -m tools.NAME`) on the benchmark's data; returns
    its wall time."""
    data = [f"--dataset={FLAGS.dataset}", f"--valid_size={FLAGS.valid_size}"]
    if FLAGS.train_size:
        data.append(f"--train_size={FLAGS.train_size}")
    start = time.time()
    subprocess.run(
        [sys.executable, "-m", f"tools.{name}", *args, *data, "--verbose=0"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.time() - start


def _search(method, seed):
    out = os.path.join(FLAGS.work_dir, f"{method}_{seed}")
    seconds = None
    if not os.path.exists(os.path.join(out, "best_arc.json")):
        seconds = _tool(
            "search",
            "--flagfile=flags/quickstart.flags",
            f"--algorithm={method}",
            f"--seed={seed}",
            f"--epochs={FLAGS.search_epochs}",
            f"--lr_t0={FLAGS.search_epochs}",
            f"--output_dir={out}",
            "--overwrite",
        )
    with open(os.path.join(out, "search_log.jsonl")) as f:
        log = [json.loads(line) for line in f]
    rewards = [line.get("controller/reward", float("nan")) for line in log]
    return out, rewards, seconds


def _train(arc, seed, name):
    """Trains `arc` (a best_arc.json path or a micro arc string) from scratch."""
    out = os.path.join(FLAGS.work_dir, "train", name)
    summary = os.path.join(out, "summary.json")
    if not os.path.exists(summary):
        space = [] if arc.endswith(".json") else ["--space=micro"]
        _tool(
            "train",
            "--flagfile=flags/digits_quick.flags",
            f"--arc={arc}",
            *space,
            f"--seed={seed}",
            f"--epochs={FLAGS.train_epochs}",
            f"--lr_t0={FLAGS.train_epochs}",
            f"--output_dir={out}",
            "--overwrite",
        )
    with open(summary) as f:
        return json.load(f)["test_accuracy"]


def kendall_tau(x, y):
    """Kendall's tau-a of two equally long sequences (ties count 0)."""
    pairs = concordant = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            sign = (x[i] - x[j]) * (y[i] - y[j])
            concordant += (sign > 0) - (sign < 0)
            pairs += 1
    return concordant / max(pairs, 1)


def _stats(values):
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)) ** 0.5
    return mean, std


def main(argv):
    del argv
    if FLAGS.work_dir is None:
        FLAGS.work_dir = os.path.join(tempfile.gettempdir(), "enas_search_quality")
    os.makedirs(FLAGS.work_dir, exist_ok=True)
    results = {}
    for method in ("reinforce", "random"):
        for seed in range(FLAGS.seeds):
            out, rewards, seconds = _search(method, seed)
            arc = os.path.join(out, "best_arc.json")
            accuracy = _train(arc, seed, f"{method}_{seed}")
            results.setdefault(method, []).append((accuracy, rewards, seconds))
            print(
                f"{method} seed {seed}: derived architecture's test accuracy "
                f"{accuracy:.4f}; search {seconds or float('nan'):.0f} s",
                flush=True,
            )
    print(
        "\nmethod | retrained test accuracy (mean +- std) | search time (s) | "
        "mean reward, epochs 1-3 -> last 3"
    )
    for method, rows in results.items():
        mean, std = _stats([r[0] for r in rows])
        times = [r[2] for r in rows if r[2] is not None]
        curves = [r[1] for r in rows]
        first = _stats([sum(c[:3]) / 3 for c in curves])[0]
        last = _stats([sum(c[-3:]) / 3 for c in curves])[0]
        time_text = f"{sum(times) / len(times):.0f}" if times else "reused"
        print(
            f"{method} | {mean:.4f} +- {std:.4f} (n={len(rows)}) | {time_text} | "
            f"{first:.3f} -> {last:.3f}"
        )
    with open(os.path.join(FLAGS.work_dir, "random_0", "candidates.json")) as f:
        candidates = json.load(f)["candidates"]
    step = max(1, len(candidates) // FLAGS.tau_archs)
    chosen = candidates[::step][: FLAGS.tau_archs]
    shared, alone = [], []
    for i, candidate in enumerate(chosen):
        shared.append(candidate["valid_accuracy"])
        alone.append(_train(candidate["arc"], 0, f"tau_{i}"))
    print(
        f"\nKendall tau, shared-weight valid accuracy vs stand-alone test accuracy, "
        f"{len(chosen)} architectures: {kendall_tau(shared, alone):.3f}"
    )
    for s, a, c in zip(shared, alone, chosen):
        print(f"  shared {s:.4f}  stand-alone {a:.4f}  {c['arc']}")


if __name__ == "__main__":
    app.run(main)
