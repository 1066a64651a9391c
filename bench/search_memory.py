r"""Benchmark: memory of a long CNN search (issue 6, long runs).

A micro supernet like the quickstart's (B = 3 nodes, L = 3, C0 = 8;
scikit-learn's 8x8 digits, batch 32) searches for --steps child training
steps, a new architecture sampled by the controller for every step. It
prints the resident set size (VmRSS, and the peak VmHWM, from
/proc/self/status) after --warmup steps and at the end, the growth in
between, the step rate and the number of traces of the child step (1: one
graph for every architecture). Target: growth under 50 MB after the warm-up.
CPU; Linux (/proc).

Modes:
  search       (default) the whole search loop, `Search.run`: child phase,
               controller phase (REINFORCE on sampled architectures' rewards),
               logged architectures, TensorBoard summaries, search_log.jsonl
               and a checkpoint every epoch (34 child steps), as `enas-search`
               runs it; memory is read at the end of each epoch.
  child_steps  only `Search.child_step`, in a Python loop over the batches
               (no controller, logging or checkpoints): isolates the
               supernet's step.

Usage:
  python bench/search_memory.py
  python bench/search_memory.py --mode=child_steps --steps=500 --warmup=50
"""

import argparse
import math
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICRO = dict(
    space="micro",
    num_nodes=3,
    num_layers=3,
    out_filters=8,
    batch_size=32,
    lr_t0=10,
    lr_t_mul=1,
    controller_steps=10,
    num_aggregate=2,
    log_arcs=2,
    derive_samples=1,
    pad=1,
    flip=False,
    epochs=1,
)
TARGET_MB = 50.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mode",
        choices=("search", "child_steps"),
        default="search",
        help="What runs (see the module docstring).",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=2000,
        help="Child steps in all, warm-up included (search mode: rounded up to whole epochs).",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=100,
        help="Steps before the first memory reading (search mode: rounded up to whole epochs).",
    )
    return parser.parse_args(argv)


def memory_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB."""
    values = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = float(rest.split()[0]) / 1024  # kB
    return values["VmRSS"], values["VmHWM"]


class Readings:
    """Memory readings against child steps: the first at the warm-up, then
    one every 500 steps (printed as they come), and the last."""

    def __init__(self, warmup: int):
        self.warmup, self.start = warmup, time.perf_counter()
        self.warm = None  # (step, rss, time)
        self.next_print = 0
        self.last = None  # (step, rss, peak, time)

    def record(self, step: int) -> None:
        rss, peak = memory_mb()
        now = time.perf_counter()
        self.last = (step, rss, peak, now)
        if self.warm is None and step >= self.warmup:
            self.warm = (step, rss, now)
            self.next_print = (step // 500 + 1) * 500
            print(
                f"after {step} warm-up steps: RSS {rss:.1f} MB, peak {peak:.1f} MB "
                f"({now - self.start:.1f} s)",
                flush=True,
            )
        elif self.warm is not None and step >= self.next_print:
            self.next_print = (step // 500 + 1) * 500
            print(f"  step {step}: RSS {rss:.1f} MB", flush=True)

    def report(self, batch_size: int, traces: int) -> None:
        step, rss, peak, end = self.last
        warm_step, warm_rss, warm_time = self.warm
        measured = step - warm_step
        growth = rss - warm_rss
        print(f"after {step} steps: RSS {rss:.1f} MB, peak {peak:.1f} MB")
        print(
            f"growth after warm-up: {growth:+.1f} MB over {measured} steps "
            f"({growth / measured * 1024:+.1f} kB/step); target < {TARGET_MB:.0f} MB: "
            f"{'met' if growth < TARGET_MB else 'MISSED'}"
        )
        print(
            f"rate after warm-up: {measured / (end - warm_time):.1f} child steps/s "
            f"({measured * batch_size / (end - warm_time):.0f} images/s, "
            f"controller phases included in search mode)"
        )
        print(f"child_step traces: {traces}")


def run_child_steps(search, splits, config, args) -> Readings:
    """--steps child steps of `search`, outside its loop (--mode=child_steps)."""
    from enas_tf.data.pipeline import train_dataset

    batches = train_dataset(
        splits,
        config.batch_size,
        cutout_size=config.cutout_size,
        flip=config.flip,
        pad=config.pad,
        seed=config.seed,
    ).repeat()
    readings = Readings(args.warmup)
    for step, batch in enumerate(batches.take(args.steps), start=1):
        arc = search.sampler.sample(1).arc[0]
        float(search.child_step(batch, arc)[0])
        if step == args.warmup or step % 500 == 0 or step == args.steps:
            readings.record(step)
    return readings


def main(argv=None) -> None:
    args = parse_args(argv)
    if not 0 < args.warmup < args.steps:
        sys.exit("Need 0 < --warmup < --steps.")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, ROOT)
    from enas_tf import data
    from enas_tf.configs.image import SearchConfig
    from enas_tf.search.image import Search

    splits = data.load_images("digits", valid_size=360)
    config = SearchConfig.from_flat(**MICRO)
    with tempfile.TemporaryDirectory() as out:
        if args.mode == "child_steps":
            search = Search(config, splits, out, verbose=0)
            readings = run_child_steps(search, splits, config, args)
        else:
            per_epoch = math.ceil(len(splits.train_labels) / config.batch_size)
            config = config.replace(epochs=math.ceil(args.steps / per_epoch))
            readings = Readings(args.warmup)

            class MeasuredSearch(Search):
                def _epoch_metrics(self):
                    metrics = super()._epoch_metrics()
                    readings.record((int(self.epoch.numpy()) + 1) * self.steps_per_epoch)
                    return metrics

            search = MeasuredSearch(config, splits, out, verbose=0)
            print(
                f"{config.epochs} epochs of {search.steps_per_epoch} child steps and "
                f"{config.controller_steps} controller steps "
                f"({config.num_aggregate} architectures each)",
                flush=True,
            )
            search.run()
        readings.report(config.batch_size, search.child_step.experimental_get_tracing_count())


if __name__ == "__main__":
    main()
