"""Search strategies compared at equal wall-clock budget, through the tools.

Methods (each `enas-search --algorithm=...` on the same data and space):
ENAS (`reinforce`), Random-WS (`random`), regularized evolution with shared
weights (`evolution`), regularized evolution training every child from
scratch (`evolution --evaluation=scratch`) and NAS without weight sharing
(`nas`) and DARTS (`darts`). The shared-weight methods use
flags/quickstart.flags (and flags/digits_evolution.flags' population), the
from-scratch ones flags/digits_nas.flags and
flags/digits_evolution_scratch.flags, DARTS flags/digits_darts.flags: the
same micro space and network sizes.

Each search starts with unbounded epochs and gets SIGTERM after
`--budget_seconds` (start-up included); it stops cleanly after its current
step (a from-scratch search loses the children in training), and is run
again with `--epochs` = its finished epochs, which only derives (the derive
step's scoring is outside the budget; for the from-scratch methods it reads
the records). The derived architecture is then trained from scratch with
`enas-train` (flags/digits_quick.flags, `--train_epochs`) and its test
accuracy read. Printed: one line per run, then one table: retrained test
accuracy (mean +- std over seeds), search seconds, architectures evaluated
(shared weights: rewards computed, i.e. finished epochs x controller steps x
proposals, plus the derive step's candidates; from scratch: children
trained; DARTS: 1, the architecture it derives, having scored none).

    python bench/strategies.py                                 # digits, 3 seeds
    python bench/strategies.py --seeds=1 --budget_seconds=60 --train_epochs=2
    python bench/strategies.py --dataset=fashion_mnist --train_size=2000 \\
        --valid_size=1000

Runs go to `--work_dir` (default: enas_strategies in the system's temporary
directory; a finished run there is reused).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name -> the search's flags.
METHODS = {
    "enas": ["--flagfile=flags/quickstart.flags", "--algorithm=reinforce"],
    "random_ws": ["--flagfile=flags/quickstart.flags", "--algorithm=random"],
    "evolution_ws": ["--flagfile=flags/digits_evolution.flags"],
    "evolution_scratch": ["--flagfile=flags/digits_evolution_scratch.flags"],
    "nas": ["--flagfile=flags/digits_nas.flags"],
    "darts": ["--flagfile=flags/digits_darts.flags"],
}
SCRATCH = ("evolution_scratch", "nas")

flags.DEFINE_list("methods", list(METHODS), "Methods to run.")
flags.DEFINE_integer("seeds", 3, "Seeds per method.")
flags.DEFINE_integer("budget_seconds", 240, "Wall-clock budget of each search.")
flags.DEFINE_integer("train_epochs", 10, "Epochs of the derived architecture's training.")
flags.DEFINE_string("work_dir", None, "Where runs go (default: a temporary folder's).")
flags.DEFINE_string("dataset", "digits", "Dataset of the searches and trainings.")
flags.DEFINE_integer("valid_size", 360, "Validation images (rewards, scores).")
flags.DEFINE_integer("train_size", None, "Training images used (default: all).")
FLAGS = flags.FLAGS


def _data_flags():
    data = [f"--dataset={FLAGS.dataset}", f"--valid_size={FLAGS.valid_size}"]
    if FLAGS.train_size:
        data.append(f"--train_size={FLAGS.train_size}")
    return data


def _tool(name, *args, budget=None):
    """Runs tools/NAME.py; with `budget`, SIGTERM after that many seconds.
    Returns (wall seconds, exit code)."""
    cmd = [sys.executable, "-m", f"tools.{name}", *args, *_data_flags(), "--verbose=0"]
    start = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        proc.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    if proc.returncode not in (0, 128 + signal.SIGTERM, -signal.SIGTERM):
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
    return time.time() - start, proc.returncode


def _finished_epochs(out):
    path = os.path.join(out, "search_log.jsonl")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for line in f if line.strip())


def _search(method, seed):
    """The search of `method` with `seed` under the budget; returns its
    record (reused from record.json when finished before)."""
    out = os.path.join(FLAGS.work_dir, f"{method}_{seed}")
    record_path = os.path.join(out, "record.json")
    if os.path.exists(record_path):
        with open(record_path) as f:
            return json.load(f)
    args = [*METHODS[method], f"--seed={seed}", f"--output_dir={out}"]
    seconds, code = _tool(
        "search", *args, "--epochs=100000", "--overwrite", budget=FLAGS.budget_seconds
    )
    epochs = _finished_epochs(out)
    if epochs == 0:
        raise RuntimeError(f"{method} seed {seed}: no epoch in {FLAGS.budget_seconds} s")
    if code != 0:  # stopped by the budget: derive from the finished epochs
        _tool("search", *args, f"--epochs={epochs}")
    with open(os.path.join(out, "candidates.json")) as f:
        candidates = json.load(f)
    if method in SCRATCH:
        with open(os.path.join(out, "children.jsonl")) as f:
            evaluated = sum(1 for line in f if json.loads(line)["epoch"] <= epochs)
    elif method == "darts":
        evaluated = len(candidates["candidates"])  # it derives one, scoring none
    else:
        search = candidates["flags"]["search"]
        per_epoch = search["controller_steps"] * search["num_aggregate"]
        evaluated = epochs * per_epoch + len(candidates["candidates"])
    record = {
        "method": method,
        "seed": seed,
        "search_seconds": round(seconds, 1),
        "epochs": epochs,
        "evaluated": evaluated,
        "best_arc": candidates["candidates"][0]["arc"],
        "valid_accuracy": candidates["candidates"][0]["valid_accuracy"],
    }
    record["test_accuracy"] = _train(os.path.join(out, "best_arc.json"), seed, out)
    with open(record_path, "w") as f:
        json.dump(record, f)
    return record


def _train(arc_json, seed, search_dir):
    out = os.path.join(search_dir, "train")
    _tool(
        "train",
        "--flagfile=flags/digits_quick.flags",
        f"--arc={arc_json}",
        f"--seed={seed}",
        f"--epochs={FLAGS.train_epochs}",
        f"--lr_t0={FLAGS.train_epochs}",
        f"--output_dir={out}",
        "--overwrite",
    )
    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f)["test_accuracy"]


def _stats(values):
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)) ** 0.5
    return mean, std


def main(argv):
    del argv
    unknown = set(FLAGS.methods) - set(METHODS)
    if unknown:
        raise app.UsageError(f"Unknown methods {sorted(unknown)}; choose from {list(METHODS)}.")
    if FLAGS.work_dir is None:
        FLAGS.work_dir = os.path.join(tempfile.gettempdir(), "enas_strategies")
    os.makedirs(FLAGS.work_dir, exist_ok=True)
    rows = {}
    # Seeds outermost: a method's runs spread over the session, so host
    # speed drifts hit every method alike.
    for seed in range(FLAGS.seeds):
        for method in FLAGS.methods:
            r = _search(method, seed)
            rows.setdefault(method, []).append(r)
            print(
                f"{method} seed {seed}: {r['epochs']} epochs, {r['evaluated']} architectures "
                f"evaluated in {r['search_seconds']:.0f} s; best {r['best_arc']} "
                f"(valid {r['valid_accuracy']:.4f}); retrained test accuracy "
                f"{r['test_accuracy']:.4f}",
                flush=True,
            )
    print(
        f"\n{FLAGS.dataset}, budget {FLAGS.budget_seconds} s per search, derived "
        f"architecture retrained {FLAGS.train_epochs} epochs (flags/digits_quick.flags)\n"
    )
    print("| method | retrained test accuracy | search s | architectures evaluated | seeds |")
    print("|---|---|---|---|---|")
    for method, records in rows.items():
        mean, std = _stats([r["test_accuracy"] for r in records])
        seconds = _stats([r["search_seconds"] for r in records])[0]
        evaluated = _stats([r["evaluated"] for r in records])[0]
        print(
            f"| {method} | {mean:.4f} +- {std:.4f} | {seconds:.0f} | {evaluated:.0f} | "
            f"{len(records)} |"
        )


if __name__ == "__main__":
    app.run(main)
