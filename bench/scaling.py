r"""Benchmark: images/s of final training on 1 vs 2 replicas and 1 vs 2 workers.

Trains the published micro cell (enas_micro_final) at the search network's
size (L = 6, C0 = 20; no aux head, no drop path) with Keras `fit`, the model
and optimizer built as enas-train builds them, on synthetic CIFAR-shaped
batches, under four set-ups, each in its own processes:

  1 device:   the default strategy, one process
  2 devices:  MirroredStrategy over two logical CPU devices, one process
  1 worker:   MultiWorkerMirroredStrategy with one worker (TF_CONFIG)
  2 workers:  MultiWorkerMirroredStrategy, two processes on 127.0.0.1

The global batch is the same in all four (--batch, split over the
replicas). Rounds are interleaved (A, B, C, D, A, B, ...) so that a drift of
the host's speed affects all alike; each round reports the median step time
after warm-up, and the ratios are computed within a round. On this 2-core
CPU machine the replicas share the same two cores: the figures measure the
overhead of the distribution machinery, not a speed-up (which needs real
devices).

Usage:
  python bench/scaling.py                 # 2 rounds, 20 timed steps each
  python bench/scaling.py --rounds=3 --steps=30 --batch=64
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUPS = ("1 device", "2 devices", "1 worker", "2 workers")


def worker(args) -> None:
    """One process of a set-up: prints the median step time as JSON."""
    import tensorflow as tf  # noqa: PLC0415

    if args.mode == "2 devices":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
    sys.path.insert(0, ROOT)
    from enas_tf.runtime.distribute import make_strategy  # noqa: PLC0415

    strategy = {
        "1 device": lambda: make_strategy("default"),
        "2 devices": lambda: make_strategy("mirrored", ["/cpu:0", "/cpu:1"]),
    }.get(args.mode, lambda: make_strategy("multi_worker"))()
    import keras  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from enas_tf import spaces  # noqa: PLC0415
    from enas_tf.child.build import build_child  # noqa: PLC0415
    from enas_tf.configs.image import ChildConfig  # noqa: PLC0415
    from enas_tf.runtime import nonfinite
    from enas_tf.runtime.distribute import shard_by_data  # noqa: PLC0415
    from enas_tf.train.image import sparse_cross_entropy  # noqa: PLC0415
    from enas_tf.train.schedules import EpochCosineRestarts  # noqa: PLC0415

    space, arc = spaces.load_arc("enas_micro_final")
    config = ChildConfig(out_filters=20, num_layers=6, keep_prob=0.9, l2=2e-4)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_child(space, arc, config, image_shape=(32, 32, 3), num_classes=10)
        model.compile(
            optimizer=nonfinite.guard(
                keras.optimizers.SGD(
                    EpochCosineRestarts(0.05, 1e-4, 10, 2, 100),
                    momentum=0.9,
                    nesterov=True,
                    global_clipnorm=5.0,
                )
            ),
            loss=sparse_cross_entropy(0.0, 10),
        )
    rng = np.random.default_rng(0)
    steps = args.warmup + args.steps
    images = rng.normal(size=(args.batch * 4, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 10, args.batch * 4).astype(np.int32)
    data = shard_by_data(
        tf.data.Dataset.from_tensor_slices((images, labels))
        .repeat()
        .batch(args.batch, drop_remainder=True)
        .take(steps)
    )
    if args.mode in ("1 worker", "2 workers"):
        from enas_tf.runtime.distribute import fix_keras_fit  # noqa: PLC0415

        with strategy.scope():
            fix_keras_fit(model, data)

    times = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(data, epochs=1, verbose=0, callbacks=[Timer()])
    print(json.dumps({"step_s": statistics.median(times[args.warmup :])}), flush=True)


def run_setup(mode: str, args) -> float:
    """The median step time of `mode` (the slowest worker's)."""
    sys.path.insert(0, ROOT)
    from enas_tf.testing import free_ports  # noqa: PLC0415

    workers = 2 if mode == "2 workers" else 1
    ports = free_ports(workers)
    procs = []
    for index in range(workers):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
        env.pop("TF_CONFIG", None)
        if mode in ("1 worker", "2 workers"):
            env["TF_CONFIG"] = json.dumps(
                {
                    "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                    "task": {"type": "worker", "index": index},
                }
            )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--mode",
                    mode,
                    "--steps",
                    str(args.steps),
                    "--warmup",
                    str(args.warmup),
                    "--batch",
                    str(args.batch),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode:
            sys.exit(f"{mode} failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1])["step_s"])
    return max(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--mode", choices=SETUPS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        worker(args)
        return
    print(
        f"micro child (L=6, C0=20), global batch {args.batch}, CPU, "
        f"{args.steps} timed steps after {args.warmup}, {args.rounds} rounds"
    )
    rounds = []
    for r in range(args.rounds):
        step = {mode: run_setup(mode, args) for mode in SETUPS}
        rounds.append(step)
        print(
            f"round {r + 1}: "
            + ", ".join(f"{m} {args.batch / s:,.0f} img/s" for m, s in step.items()),
            flush=True,
        )

    def ratio(a, b):
        return statistics.median(r[a] / r[b] for r in rounds)

    print(f"images/s, 2 devices / 1 device (one process): {ratio('1 device', '2 devices'):.3f}")
    print(f"images/s, 2 workers / 1 worker:                {ratio('1 worker', '2 workers'):.3f}")
    print(f"images/s, 1 worker (MWMS) / 1 device:           {ratio('1 device', '1 worker'):.3f}")


if __name__ == "__main__":
    main()
