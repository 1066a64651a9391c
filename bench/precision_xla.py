r"""Benchmark: the cost of mixed precision and XLA for final training on CPU.

Builds the published micro cell (`enas_micro_final`) at a small size and
compiles the training step enas-train runs (SGD + Nesterov, clipping, L2,
skipping of non-finite steps) four ways:

  float32         the default
  mixed_bfloat16  --precision=mixed_bfloat16
  mixed_float16   --precision=mixed_float16 (with dynamic loss scaling)
  float32+xla     --jit_compile

then measures them interleaved (A/B): each round times `--steps` steps of
every variant in turn, so a change in machine load hits all of them alike.
Prints the median images/s of each and its ratio to float32 (the median of
the per-round ratios). Synthetic CIFAR-shaped batches; GPUs are hidden.

Usage:
  python bench/precision_xla.py                    # several minutes on 2 cores
  python bench/precision_xla.py --rounds=3 --steps=3
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = (
    # name: (precision, jit_compile)
    ("float32", "float32", False),
    ("mixed_bfloat16", "mixed_bfloat16", False),
    ("mixed_float16", "mixed_float16", False),
    ("float32+xla", "float32", True),
)


def build(space, arc, config, precision_name: str, jit: bool):
    """A compiled training model, as `train_child` makes it."""
    import keras

    from enas_tf.child.build import build_child
    from enas_tf.runtime import nonfinite, precision
    from enas_tf.train.image import sparse_cross_entropy
    from enas_tf.train.schedules import EpochCosineRestarts

    keras.utils.set_random_seed(0)
    with precision.policy(precision_name):
        model = build_child(space, arc, config, image_shape=(32, 32, 3), num_classes=10)
    loss = sparse_cross_entropy(0.0, 10)
    model.compile(
        optimizer=nonfinite.guard(
            precision.loss_scaled(
                precision_name,
                keras.optimizers.SGD(
                    EpochCosineRestarts(0.05, 1e-4, 10, 2, 100),
                    momentum=0.9,
                    nesterov=True,
                    global_clipnorm=5.0,
                ),
            )
        ),
        loss=loss,
        jit_compile=jit,
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_layers", type=int, default=3)
    parser.add_argument("--out_filters", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    sys.path.insert(0, ROOT)
    import numpy as np

    from enas_tf import spaces
    from enas_tf.configs.image import ChildConfig

    space, arc = spaces.load_arc("enas_micro_final")
    config = ChildConfig(
        out_filters=args.out_filters, num_layers=args.num_layers, keep_prob=0.9, l2=2e-4
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=args.batch).astype("int32")
    models, first = {}, {}
    for name, precision_name, jit in VARIANTS:
        start = time.perf_counter()
        models[name] = build(space, arc, config, precision_name, jit)
        loss = models[name].train_on_batch(x, y)
        first[name] = (time.perf_counter() - start, float(np.ravel(loss)[0]))
        for _ in range(args.warmup - 1):
            models[name].train_on_batch(x, y)
        print(
            f"{name}: built, compiled and warmed up in {time.perf_counter() - start:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    rates = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                model.train_on_batch(x, y)
            rates[name].append(args.batch * args.steps / (time.perf_counter() - start))
    print(
        f"micro enas_micro_final, {args.num_layers + 2} cells, C0={args.out_filters}, "
        f"batch {args.batch}, 32x32x3; {args.rounds} rounds of {args.steps} steps, "
        f"interleaved"
    )
    print(
        f"{'variant':<15} {'build+1st step s':>16} {'1st loss':>9} {'images/s':>9} "
        f"{'vs float32':>10} {'(range)':>14}"
    )
    base = np.array(rates["float32"])
    for name in models:
        ratio = np.array(rates[name]) / base
        print(
            f"{name:<15} {first[name][0]:>16.1f} {first[name][1]:>9.4f} "
            f"{np.median(rates[name]):>9.1f} {np.median(ratio):>10.2f} "
            f"{f'({ratio.min():.2f}-{ratio.max():.2f})':>14}"
        )


if __name__ == "__main__":
    main()
