r"""Benchmark: architectures the LSTM controllers sample per second.

For the macro controller (12 layers, 6 ops: the macro search) and the micro
controller (B = 5 nodes, 5 ops: the micro search), times `sample(n)` for
single (n = 1, what the child phase does every step) and batched calls (n =
100, what the derive step does), after a warm-up call that traces each
batch size once. Also times a REINFORCE update on `num_aggregate` = 10
samples. Interleaves the cases round by round so that machine noise hits all
alike; prints the median rate of each. CPU.

Usage:
  python bench/controller_sampling.py
  python bench/controller_sampling.py --rounds=5 --calls=50
"""

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="Timed rounds per case.")
    parser.add_argument("--calls", type=int, default=100, help="Calls per round.")
    parser.add_argument("--batch", type=int, default=100, help="Batched sample size.")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, ROOT)
    import numpy as np

    from enas_tf import spaces
    from enas_tf.controllers.build import controller_for
    from enas_tf.strategies.reinforce.trainer import Reinforce

    controllers = {
        "macro": controller_for(spaces.MacroSpace(num_layers=12, num_ops=6), seed=0),
        "micro": controller_for(spaces.MicroSpace(num_nodes=5, num_ops=5), seed=0),
    }
    trainers = {name: Reinforce(c, num_aggregate=10) for name, c in controllers.items()}
    cases = {}
    for name, controller in controllers.items():
        cases[f"{name} sample(1)"] = (lambda c=controller: c.sample(1), 1)
        cases[f"{name} sample({args.batch})"] = (
            lambda c=controller: c.sample(args.batch),
            args.batch,
        )
        sample = controller.sample(10)
        rewards = np.linspace(0.1, 0.9, 10).astype(np.float32)
        cases[f"{name} update(10)"] = (
            lambda t=trainers[name], s=sample, r=rewards: t.update(s.arc, r),
            10,
        )
    for fn, _ in cases.values():  # warm-up: one trace per case
        fn()
    rates = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, (fn, arcs) in cases.items():
            start = time.perf_counter()
            for _ in range(args.calls):
                out = fn()
            getattr(out, "arc", None)
            rates[name].append(arcs * args.calls / (time.perf_counter() - start))
    print(f"{'case':<20} {'arcs/s (median)':>16} {'ms per call':>12}")
    for name, r in rates.items():
        rate = statistics.median(r)
        print(f"{name:<20} {rate:>16.0f} {1000 * cases[name][1] / rate:>12.2f}")


if __name__ == "__main__":
    main()
