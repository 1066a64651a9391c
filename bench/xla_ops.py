r"""Benchmark: the supernets' ops with and without XLA, forward + backward.

Issue 15 asked whether XLA (`jit_compile`) can speed up the micro search
step now that its shapes are static. Compiling the whole step did not
finish in 16 minutes on this CPU, and XLA cannot compile one slot's switch
alone (the gradient of a `tf.switch_case` traced outside XLA carries its
intermediates as optionals, which XLA has no kernel for), so this script
measures the question op by op: each op of a micro cell at the search
size's first stage (64 x 32 x 32 x 20 by default) is timed forward +
backward as a plain `tf.function` and as an XLA-compiled one, interleaved
round by round, and the script prints the medians and the XLA / plain
ratio:

  sep_conv_unit   ReLU -> depthwise 3x3 -> pointwise -> batch norm (training)
  depthwise       depthwise 3x3 alone
  pointwise       1x1 convolution alone
  batch_norm      fused batch norm with batch statistics
  max_pool        3x3 stride-1 max pooling

Usage:
  python bench/xla_ops.py
  python bench/xla_ops.py --height=16 --channels=40 --rounds=10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--height", type=int, default=32, help="Height and width.")
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=15, help="Timed rounds.")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    c = args.channels
    x = tf.random.stateless_normal([args.batch, args.height, args.height, c], seed=[0, 1])
    depthwise = tf.Variable(tf.random.stateless_normal([3, 3, c, 1], seed=[0, 2]) * 0.3)
    pointwise = tf.Variable(tf.random.stateless_normal([1, 1, c, c], seed=[0, 3]) * 0.2)
    gamma, beta = tf.Variable(tf.ones([c])), tf.Variable(tf.zeros([c]))
    weights = [depthwise, pointwise, gamma, beta]

    def batch_norm(t):
        return tf.compat.v1.nn.fused_batch_norm(t, gamma, beta, is_training=True)[0]

    ops = {
        "sep_conv_unit": lambda t: batch_norm(
            tf.nn.separable_conv2d(tf.nn.relu(t), depthwise, pointwise, [1, 1, 1, 1], "SAME")
        ),
        "depthwise": lambda t: tf.nn.depthwise_conv2d(t, depthwise, [1, 1, 1, 1], "SAME"),
        "pointwise": lambda t: tf.nn.conv2d(t, pointwise, 1, "SAME"),
        "batch_norm": batch_norm,
        "max_pool": lambda t: tf.nn.max_pool2d(t, 3, 1, "SAME"),
    }

    def step(op, jit):
        @tf.function(jit_compile=jit, autograph=False)
        def run(t):
            with tf.GradientTape() as tape:
                tape.watch(t)
                y = op(t)
                loss = tf.reduce_sum(y * y)
            return tape.gradient(loss, [t, *weights], unconnected_gradients="zero")

        return run

    steps = {(name, jit): step(op, jit) for name, op in ops.items() for jit in (False, True)}
    for run in steps.values():  # trace and compile
        [g.numpy() for g in run(x)]
    times = {key: [] for key in steps}
    for _ in range(args.rounds):
        for key, run in steps.items():
            start = time.perf_counter()
            [g.numpy() for g in run(x)]
            times[key].append(time.perf_counter() - start)
    print(
        f"forward + backward, {args.batch}x{args.height}x{args.height}x{c}, median of "
        f"{args.rounds} interleaved rounds (ms)"
    )
    print(f"{'op':<15} {'plain':>8} {'XLA':>8} {'XLA/plain':>10}")
    for name in ops:
        plain = statistics.median(times[(name, False)])
        xla = statistics.median(times[(name, True)])
        print(f"{name:<15} {1000 * plain:8.2f} {1000 * xla:8.2f} {xla / plain:10.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
