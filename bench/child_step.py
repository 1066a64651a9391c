r"""Benchmark: training-step speed and peak memory of the fixed micro child.

Measures the Keras training step that enas-train runs (SGD + Nesterov,
clipping, L2, aux head, drop path) on the published micro cells, on synthetic
CIFAR-shaped batches, at two sizes:

  search: the micro search network (L = 6, 8 cells, C0 = 20), batch 160
  final:  the micro final network (L = 15, 17 cells, C0 = 36), batch 144

Each size runs in its own process so that its peak RSS is its own. CPU by
default (GPUs are hidden unless --device=gpu).

Usage:
  python bench/child_step.py                    # both sizes
  python bench/child_step.py --sizes=search --steps=10
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {
    # name: (num_layers, out_filters, batch, drop_path_keep_prob, keep_prob)
    "search": (6, 20, 160, 1.0, 0.9),
    "final": (15, 36, 144, 0.6, 0.8),
}


def measure(size: str, steps: int, warmup: int) -> dict:
    sys.path.insert(0, ROOT)
    import keras
    import numpy as np

    from enas_tf import spaces
    from enas_tf.child.build import build_child
    from enas_tf.configs.image import ChildConfig
    from enas_tf.ops.flops import count_flops, count_params
    from enas_tf.train.image import sparse_cross_entropy
    from enas_tf.train.schedules import EpochCosineRestarts

    layers, filters, batch, drop_keep, keep = SIZES[size]
    space, arc = spaces.load_arc("enas_micro_final")
    config = ChildConfig(
        out_filters=filters,
        num_layers=layers,
        keep_prob=keep,
        drop_path_keep_prob=drop_keep,
        aux_weight=0.4,
        l2=2e-4,
    )
    keras.utils.set_random_seed(0)
    model = build_child(space, arc, config, image_shape=(32, 32, 3), num_classes=10)
    loss = sparse_cross_entropy(0.0, 10)
    model.compile(
        optimizer=keras.optimizers.SGD(
            EpochCosineRestarts(0.05, 1e-4, 10, 2, 100),
            momentum=0.9,
            nesterov=True,
            global_clipnorm=5.0,
        ),
        loss=[loss, loss],
        loss_weights=[1.0, 0.4],
        jit_compile=False,
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=batch).astype("int32")
    for _ in range(warmup):
        model.train_on_batch(x, (y, y))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(x, (y, y))
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {
        "size": size,
        "cells": layers + 2,
        "out_filters": filters,
        "batch": batch,
        "image": "32x32x3",
        "params": count_params(model),
        "flops": count_flops(model),
        "step_ms": round(1000 * median, 1),
        "images_per_s": round(batch / median, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="search,final")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.warmup)))
        return
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    print(
        f"{'size':<7} {'cells':>5} {'C0':>3} {'batch':>5} {'params':>10} "
        f"{'MMACs/img':>9} {'step ms':>8} {'images/s':>9} {'peak RSS MB':>11}"
    )
    for size in args.sizes.split(","):
        out = (
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    f"--child={size}",
                    f"--steps={args.steps}",
                    f"--warmup={args.warmup}",
                ],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        r = json.loads(out)
        print(
            f"{r['size']:<7} {r['cells']:>5} {r['out_filters']:>3} {r['batch']:>5} "
            f"{r['params']:>10,} {r['flops'] / 1e6:>9.0f} {r['step_ms']:>8.0f} "
            f"{r['images_per_s']:>9.1f} {r['peak_rss_mb']:>11.0f}"
        )


if __name__ == "__main__":
    main()
