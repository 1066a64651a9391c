r"""Benchmark: what DARTS's relaxation costs against the ENAS supernet.

At one micro search size (default: DARTS's CIFAR-10 search network, B = 4
nodes, 8 cells (L = 6), C0 = 16, batch 64, 32x32x3 images, 10 classes),
times one search step per batch of

  enas:    the ENAS supernet's training step on a random architecture
           (`enas_tf.search.steps`, what the child phase runs per batch);
  darts1:  a first-order DARTS step: the architecture step on a validation
           batch, then the weight step (`enas_tf.search.darts_steps`);
  darts2:  the same with second-order (unrolled) architecture gradients;

each in a process of its own (peak RSS is per process), A and B
interleaved: `--rounds` rounds of (enas, darts1, darts2). Each process
builds its network, traces its steps (timed: build, trace + first call),
runs `--warmup` steps, then times `--steps` steps and prints a JSON line;
the parent prints per-round ratios to enas and their median, and the peak
RSS of each.

`--space=macro` compares the ENAS macro supernet with the relaxed macro
network (`--num_layers` layers of `--out_filters` channels; `--num_nodes`
unused).

Usage:
  python bench/darts_cost.py                     # 2 rounds, 5 timed steps
  python bench/darts_cost.py --num_nodes=3 --num_layers=3 --out_filters=8 \
      --image_size=8 --batch=64                  # the digits quick size
  python bench/darts_cost.py --space=macro --num_layers=12 --out_filters=36
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("enas", "darts1", "darts2")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", choices=("micro", "macro"), default="micro")
    parser.add_argument("--num_nodes", type=int, default=4)
    parser.add_argument("--num_layers", type=int, default=6)
    parser.add_argument("--out_filters", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="Timed steps per process.")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed steps after the trace.")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--one", choices=METHODS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _batch(args, rng, channels=3):
    import tensorflow as tf

    shape = (args.batch, args.image_size, args.image_size, channels)
    return (
        tf.constant(rng.normal(size=shape).astype("float32")),
        tf.constant(rng.integers(0, 10, size=args.batch).astype("int32")),
    )


def _enas(args, rng):
    import keras
    import tensorflow as tf

    from enas_tf.configs.image import SearchConfig
    from enas_tf.search import steps
    from enas_tf.supernet.build import build_supernet

    sizes = dict(num_layers=args.num_layers, out_filters=args.out_filters)
    if args.space == "micro":
        sizes["num_nodes"] = args.num_nodes
    config = SearchConfig.from_flat(space=args.space, **sizes)
    net = build_supernet(config, (args.image_size,) * 2 + (3,), 10)
    optimizer = keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True)
    optimizer.build(net.trainable_variables)
    batch = _batch(args, rng)
    spec = tuple(tf.TensorSpec([None, *t.shape[1:]], t.dtype) for t in batch)
    settings = steps.StepSettings(l2=1e-4, grad_bound=5.0, seed=0, batch_stats=True)
    made = steps.make_steps(
        net, optimizer, tf.distribute.get_strategy(), spec, net.space.num_decisions, settings
    )
    space = config.search_space()

    def step():
        arc = tf.constant(space.random_arc(rng), tf.int32)
        return made.train(batch, arc)

    return step


def _darts(args, rng, order):
    import keras
    import tensorflow as tf

    from enas_tf.search.darts_steps import make_darts_steps
    from enas_tf.spaces.macro import MacroSpace
    from enas_tf.spaces.micro import MicroSpace
    from enas_tf.strategies.darts.alphas import ArchitectureParameters
    from enas_tf.supernet.relaxed import build_relaxed_macro, build_relaxed_micro

    shape = (args.image_size,) * 2 + (3,)
    if args.space == "macro":
        space = MacroSpace(num_layers=args.num_layers)
        net = build_relaxed_macro(
            space, image_shape=shape, num_classes=10, out_filters=args.out_filters
        )
    else:
        space = MicroSpace(num_nodes=args.num_nodes)
        net = build_relaxed_micro(
            space,
            image_shape=shape,
            num_classes=10,
            num_layers=args.num_layers,
            out_filters=args.out_filters,
        )
    optimizer = keras.optimizers.SGD(0.025, momentum=0.9)
    optimizer.build(net.trainable_variables)
    arch = ArchitectureParameters(space, seed=0)
    train, valid = _batch(args, rng), _batch(args, rng)
    spec = tuple(tf.TensorSpec([None, *t.shape[1:]], t.dtype) for t in train)
    made = make_darts_steps(net, optimizer, arch, spec, order=order, l2=1.5e-4, grad_bound=5.0)

    def step():
        made.architecture(train, valid)
        return made.weights(train)

    return step


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def run_one(args) -> None:
    """Builds, traces and times one method in this process; prints JSON."""
    import numpy as np

    rng = np.random.default_rng(0)
    start = time.perf_counter()
    step = _enas(args, rng) if args.one == "enas" else _darts(args, rng, int(args.one[-1]))
    built = time.perf_counter() - start
    start = time.perf_counter()
    float(step()[0])
    first = time.perf_counter() - start
    for _ in range(args.warmup):
        float(step()[0])
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        float(step()[0])
        times.append(time.perf_counter() - start)
    print(
        json.dumps(
            {
                "method": args.one,
                "build_s": round(built, 1),
                "trace_and_first_s": round(first, 1),
                "step_s": statistics.median(times),
                "peak_rss_gib": round(_peak_rss_gib(), 2),
            }
        ),
        flush=True,
    )


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.one:
        run_one(args)
        return
    methods = args.methods.split(",")
    passed = [a for a in (argv if argv is not None else sys.argv[1:]) if "--methods" not in a]
    results: dict[str, list[dict]] = {m: [] for m in methods}
    for round_ in range(args.rounds):
        for method in methods:
            out = subprocess.run(
                [sys.executable, os.path.abspath(__file__), *passed, f"--one={method}"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            record = json.loads(out.stdout.strip().splitlines()[-1])
            results[method].append(record)
            print(f"round {round_ + 1}: {record}", flush=True)
    if args.space == "macro":
        size = f"macro L={args.num_layers}, C={args.out_filters}"
    else:
        size = f"micro B={args.num_nodes}, {args.num_layers + 2} cells, C0={args.out_filters}"
    print(
        f"\n{size}, batch {args.batch}, {args.image_size}x{args.image_size}x3; medians over "
        f"{args.rounds} rounds of {args.steps} steps"
    )
    base = results.get("enas")
    for method, records in results.items():
        step = statistics.median(r["step_s"] for r in records)
        rss = max(r["peak_rss_gib"] for r in records)
        trace = statistics.median(r["trace_and_first_s"] for r in records)
        line = (
            f"{method}: step {step:.3f} s, peak RSS {rss:.2f} GiB, trace + first step {trace:.0f} s"
        )
        if base and method != "enas":
            ratios = [r["step_s"] / b["step_s"] for r, b in zip(records, base)]
            spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
            line += f", step / enas {statistics.median(ratios):.2f} ({spread})"
        print(line)


if __name__ == "__main__":
    main()
