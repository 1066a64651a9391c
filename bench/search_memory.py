r"""Benchmark: memory of a long CNN search child phase (issue 6, long runs).

Builds `enas_tf.search.Search` with a micro supernet like the quickstart's
(B = 3 nodes, L = 3, C0 = 8; scikit-learn's 8x8 digits, batch 32) and runs
--steps child training steps through its `child_step`, a new architecture
sampled from the controller for every step (the batches cycle over the
training split). It prints the resident set size (VmRSS, and the peak VmHWM,
from /proc/self/status) after --warmup steps and at the end, the growth in
between, the step rate after the warm-up and the number of traces of the
child step (1: one graph for every architecture). Target: growth under 50 MB
after the warm-up. CPU; Linux (/proc).

Usage:
  python bench/search_memory.py
  python bench/search_memory.py --steps=500 --warmup=50
"""

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICRO = dict(
    space="micro", num_nodes=3, num_layers=3, out_filters=8, batch_size=32,
    lr_t0=10, lr_t_mul=1, controller_steps=1, num_aggregate=1, log_arcs=0,
    derive_samples=1, pad=1, flip=False, epochs=1,
)
TARGET_MB = 50.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000,
                        help="Child steps in all, warm-up included.")
    parser.add_argument("--warmup", type=int, default=100,
                        help="Steps before the first memory reading.")
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


def main(argv=None) -> None:
    args = parse_args(argv)
    if not 0 < args.warmup < args.steps:
        sys.exit("Need 0 < --warmup < --steps.")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, ROOT)
    from enas_tf import data
    from enas_tf.config import SearchConfig
    from enas_tf.data.pipeline import train_dataset
    from enas_tf.search import Search

    splits = data.load_images("digits", valid_size=360)
    config = SearchConfig(**MICRO)
    with tempfile.TemporaryDirectory() as out:
        search = Search(config, splits, out, verbose=0)
        batches = train_dataset(splits, config.batch_size, cutout_size=config.cutout_size,
                                flip=config.flip, pad=config.pad, seed=config.seed
                                ).repeat()
        start = time.perf_counter()
        warm_time = None
        for step, batch in enumerate(batches.take(args.steps), start=1):
            arc = search.sampler.sample(1).arc[0]
            result = search.child_step(batch, arc)
            float(result[0])
            if step == args.warmup:
                warm_rss, warm_hwm = memory_mb()
                warm_time = time.perf_counter()
                print(f"after {step} warm-up steps: RSS {warm_rss:.1f} MB, "
                      f"peak {warm_hwm:.1f} MB ({warm_time - start:.1f} s)", flush=True)
            elif step % 500 == 0:
                rss, _ = memory_mb()
                print(f"  step {step}: RSS {rss:.1f} MB", flush=True)
        end = time.perf_counter()
        end_rss, end_hwm = memory_mb()
        traces = search.child_step.experimental_get_tracing_count()
    measured = args.steps - args.warmup
    growth = end_rss - warm_rss
    print(f"after {args.steps} steps: RSS {end_rss:.1f} MB, peak {end_hwm:.1f} MB")
    print(f"growth after warm-up: {growth:+.1f} MB over {measured} steps "
          f"({growth / measured * 1024:+.1f} kB/step); target < {TARGET_MB:.0f} MB: "
          f"{'met' if growth < TARGET_MB else 'MISSED'}")
    print(f"step rate after warm-up: {measured / (end - warm_time):.1f} steps/s "
          f"({measured * config.batch_size / (end - warm_time):.0f} images/s)")
    print(f"child_step traces: {traces}")


if __name__ == "__main__":
    main()
