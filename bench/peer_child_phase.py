r"""Benchmark: the micro search's child phase at the configuration of issue 15.

Issue 15 measured NNI 3.0's ENAS cell search (PyTorch, CPU) beside ours on
this kind of machine: micro space, 5 nodes, 8 cells (`num_layers=6`), 20
filters, batch 64, synthetic 32x32x3 images and 10 classes, a new
controller sample every step, SGD Nesterov momentum 0.9 (lr 0.05), L2 1e-4,
global-norm clipping 5. The peer's figures (two rounds): child-phase
training 25.1 / 20.1 images/s, controller sampling 15.9 / 9.3
architectures/s, one validation batch of 64 with batch-statistic batch norm
838 / 922 ms, peak RSS 2.49 / 2.46 GiB.

This script prints ours at exactly that configuration: a `MicroSupernet`
whose cells output their loose ends (the peer's NNI `ENAS` space uses
`merge_op='loose_end'`; `--cell_output=all` times enas-search's default,
every node concatenated) and `controller_for(space)`, and a plain `tf.function` training step that
takes the architecture as an int32 tensor (so one trace serves every
architecture; the script checks it). It prints

  - trace + first call of the training step (seconds; the controller's
    own first sample is timed apart);
  - child-phase images/s: each timed step samples an architecture from the
    controller and trains the supernet on it (sampling included); and,
    interleaved with those steps, the same on uniformly random
    architectures (Random-WS's child phase). The two differ by the
    controller's initial op prior: the original's +10 bias on the sep-conv
    logits (ENAS_REFERENCE) makes ~60% of the sampled ops sep convs, the
    costliest op, against 40% for uniform arcs (the share is printed);
  - controller sampling, architectures/s (one architecture per call, as
    the search samples them);
  - one validation batch of 64, batch-statistic batch norm (ms, median);
  - peak RSS (VmHWM) of this process after the training steps and after
    sampling and validation (what the peer's figure covers), and at the
    end (after the FLOP count below builds Keras children);
  - the step's arithmetic rate: multiply-adds of the sampled architectures
    (`enas_tf.ops.flops.count_flops`, forward; a training step is taken as 3x
    the forward) per second, in GFLOP/s (1 multiply-add = 2 FLOP).

`--compare_to=REV` also builds the supernet of git revision REV of this
repository (its `enas_tf`, imported under another name) and times its
training step on the same architectures, interleaved step by step with
this checkout's, and prints the step-time ratio (this checkout / REV): an
A/B of a change in one run, as host speed drifts between runs (the peak
RSS then counts both supernets).

`--jit_compile` compiles the training step with XLA. `--profile=DIR` also
profiles `--profile_steps` steps with the TensorFlow profiler (open DIR in
TensorBoard's profile tab) and prints the ops that took the most time.
CPU unless --device=gpu.

    python bench/peer_child_phase.py
    python bench/peer_child_phase.py --steps=10 --profile=/tmp/profile
    python bench/peer_child_phase.py --jit_compile
    python bench/peer_child_phase.py --compare_to=46fef49
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = {
    "num_nodes": 5,
    "num_layers": 6,
    "out_filters": 20,
    "num_classes": 10,
    "image_shape": (32, 32, 3),
}
PEER = {
    "images/s": (25.1, 20.1),
    "arcs/s": (15.9, 9.3),
    "eval ms": (838, 922),
    "peak GiB": (2.49, 2.46),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="Images per step.")
    parser.add_argument("--steps", type=int, default=20, help="Timed child steps.")
    parser.add_argument("--samples", type=int, default=50, help="Timed controller samples.")
    parser.add_argument("--eval_batches", type=int, default=5, help="Timed validation batches.")
    parser.add_argument(
        "--jit_compile", action="store_true", help="Compile the training step with XLA."
    )
    parser.add_argument(
        "--precision",
        default="float32",
        choices=["float32", "mixed_bfloat16", "mixed_float16"],
        help="Keras dtype policy of the supernet.",
    )
    parser.add_argument(
        "--profile", default=None, help="Directory for a TensorFlow profile of a few steps."
    )
    parser.add_argument("--profile_steps", type=int, default=3)
    parser.add_argument("--top_ops", type=int, default=15, help="Ops printed from the profile.")
    parser.add_argument(
        "--compare_to",
        default=None,
        metavar="REV",
        help="Git revision whose supernet is timed beside this one.",
    )
    parser.add_argument(
        "--cell_output",
        choices=["loose_ends", "all"],
        default="loose_ends",
        help="The supernet's cell output: loose_ends (the peer's "
        "merge_op='loose_end', default) or all (enas-search's "
        "default).",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    return parser.parse_args(argv)


def peak_rss_gib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def supernet_at(revision: str):
    """`MicroSupernet` of git revision `revision` of this repository: its
    `enas_tf` extracted to a temporary directory and imported as
    `enas_tf_<revision>`."""
    name = "enas_tf_" + re.sub(r"\W", "_", revision)
    target = tempfile.mkdtemp(prefix="peer_child_phase_")
    try:
        archive = subprocess.run(
            ["git", "-C", ROOT, "archive", revision, "enas_tf"], check=True, capture_output=True
        ).stdout
    except subprocess.CalledProcessError as error:
        sys.exit(
            f"peer_child_phase.py: error: --compare_to={revision}: {error.stderr.decode().strip()}"
        )
    subprocess.run(["tar", "-x", "-C", target], input=archive, check=True)
    os.rename(os.path.join(target, "enas_tf"), os.path.join(target, name))
    for folder, _, files in os.walk(os.path.join(target, name)):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                with open(path) as f:
                    text = re.sub(r"\benas_tf\b", name, f.read())
                with open(path, "w") as f:
                    f.write(text)
    sys.path.insert(0, target)
    return importlib.import_module(f"{name}.supernet_micro").MicroSupernet


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, ROOT)
    import keras
    import numpy as np
    import tensorflow as tf

    from bench.profiling import print_top_ops
    from enas_tf.child.build import build_child
    from enas_tf.controllers.build import controller_for
    from enas_tf.ops.flops import count_flops
    from enas_tf.supernet.micro import MicroSupernet

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    shape = (args.batch, *SIZE["image_shape"])
    images = tf.constant(rng.normal(size=shape), tf.float32)
    labels = tf.constant(rng.integers(0, SIZE["num_classes"], args.batch), tf.int32)

    keras.mixed_precision.set_global_policy(args.precision)
    net = MicroSupernet(**SIZE, cell_output=args.cell_output)
    space = net.space
    controller = controller_for(space, seed=args.seed)
    arc_spec = tf.TensorSpec([space.num_decisions], tf.int32)
    data = [tf.TensorSpec(images.shape, tf.float32), tf.TensorSpec(labels.shape, tf.int32)]

    def train_step(net):
        optimizer = keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True)
        optimizer.build(net.trainable_variables)

        def train(images, labels, arc):
            with tf.GradientTape() as tape:
                logits = net(images, arc=arc, training=True)
                loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
                )
                loss += 1e-4 * tf.add_n(
                    [tf.reduce_sum(tf.square(v)) for v in net.trainable_variables]
                )
            grads = tape.gradient(loss, net.trainable_variables)
            grads, _ = tf.clip_by_global_norm(grads, 5.0)
            optimizer.apply(grads, net.trainable_variables)
            return loss

        return tf.function(
            train, input_signature=[*data, arc_spec], autograph=False, jit_compile=args.jit_compile
        )

    step = train_step(net)
    evaluate = tf.function(
        lambda images, labels, arc: tf.reduce_sum(
            tf.cast(
                tf.equal(
                    tf.argmax(net(images, arc=arc, batch_stats=True), -1, output_type=tf.int32),
                    labels,
                ),
                tf.int32,
            )
        ),
        input_signature=[*data, arc_spec],
        autograph=False,
    )

    def sample():
        return controller.sample().arc[0]

    start = time.perf_counter()
    first_arc = sample()
    controller_trace = time.perf_counter() - start
    print(f"controller: trace + first sample {controller_trace:.1f} s", flush=True)
    start = time.perf_counter()
    step(images, labels, first_arc).numpy()
    trace = time.perf_counter() - start
    print(f"trace + first call of the training step: {trace:.1f} s", flush=True)
    step(images, labels, sample()).numpy()  # warm-up on a second architecture
    other, other_times = None, []
    if args.compare_to:
        other = train_step(supernet_at(args.compare_to)(**SIZE, cell_output=args.cell_output))
        start = time.perf_counter()
        other(images, labels, sample()).numpy()
        print(
            f"{args.compare_to}: trace + first call {time.perf_counter() - start:.1f} s", flush=True
        )
        other(images, labels, sample()).numpy()

    def other_step(arc):
        if other is not None:
            begin = time.perf_counter()
            other(images, labels, arc).numpy()
            other_times.append(time.perf_counter() - begin)

    arcs, times, uniform_arcs, uniform_times = [], [], [], []
    for _ in range(args.steps):
        begin = time.perf_counter()
        arc = sample()
        step(images, labels, arc).numpy()
        times.append(time.perf_counter() - begin)
        arcs.append(arc.numpy())
        other_step(arc)
        uniform = tf.constant(space.random_arc(rng), tf.int32)
        begin = time.perf_counter()
        step(images, labels, uniform).numpy()
        uniform_times.append(time.perf_counter() - begin)
        uniform_arcs.append(uniform.numpy())
        other_step(uniform)
    seconds = statistics.median(times)
    train_rss = peak_rss_gib()
    uniform_seconds = statistics.median(uniform_times)

    def sep_share(sampled):
        ops = [
            op
            for arc in sampled
            for cell in (space.decode(arc).normal, space.decode(arc).reduce)
            for node in cell.nodes
            for op in (node.op_a, node.op_b)
        ]
        return sum(space.ops[op].startswith("sep_conv") for op in ops) / len(ops)

    print(
        f"child phase: {args.batch / seconds:.1f} images/s "
        f"(median step {1000 * seconds:.0f} ms over {args.steps} controller samples, "
        f"{sep_share(arcs):.0%} sep convs; mean "
        f"{args.batch * len(times) / sum(times):.1f} images/s)",
        flush=True,
    )
    print(
        f"child phase on uniform random architectures: "
        f"{args.batch / uniform_seconds:.1f} images/s (median step "
        f"{1000 * uniform_seconds:.0f} ms, {sep_share(uniform_arcs):.0%} sep convs)",
        flush=True,
    )
    if other is not None:
        ours = [t for pair in zip(times, uniform_times) for t in pair]
        ratios = [a / b for a, b in zip(ours, other_times)]
        print(
            f"A/B: step time of this checkout / {args.compare_to}, same "
            f"{len(ratios)} architectures interleaved: median "
            f"{statistics.median(ratios):.3f} (min {min(ratios):.2f}, max "
            f"{max(ratios):.2f}); {args.compare_to}'s median step "
            f"{1000 * statistics.median(other_times):.0f} ms",
            flush=True,
        )

    begin = time.perf_counter()
    for _ in range(args.samples):
        controller.sample()
    arcs_per_s = args.samples / (time.perf_counter() - begin)
    print(f"controller sampling: {arcs_per_s:.0f} architectures/s", flush=True)

    eval_times = []
    for _ in range(args.eval_batches + 1):
        arc = sample()
        begin = time.perf_counter()
        evaluate(images, labels, arc).numpy()
        eval_times.append(time.perf_counter() - begin)
    eval_ms = 1000 * statistics.median(eval_times[1:])  # the first traces
    search_rss = peak_rss_gib()  # before the FLOP count builds Keras children
    print(f"one validation batch of {args.batch}, batch statistics: {eval_ms:.0f} ms", flush=True)

    macs = [
        count_flops(
            build_child(
                space,
                arc,
                net.child_config(),
                image_shape=SIZE["image_shape"],
                num_classes=SIZE["num_classes"],
            )
        )
        for arc in arcs[:5]
    ]
    gflops = 3 * 2 * statistics.mean(macs) * args.batch / seconds / 1e9
    print(
        f"arithmetic: {statistics.mean(macs) / 1e6:.0f} M multiply-adds per image "
        f"forward (mean of 5 sampled architectures); training step ~{gflops:.1f} "
        "GFLOP/s",
        flush=True,
    )
    traces = step.experimental_get_tracing_count()
    print(f"traces of the training step: {traces} (for {2 * args.steps + 2} architectures)")

    if args.profile:
        tf.profiler.experimental.start(args.profile)
        for _ in range(args.profile_steps):
            step(images, labels, sample()).numpy()
        tf.profiler.experimental.stop()
        print_top_ops(args.profile, args.top_ops, args.profile_steps)

    rss = peak_rss_gib()
    print(
        f"peak RSS: {train_rss:.2f} GiB after the training steps, "
        f"{search_rss:.2f} GiB after controller sampling and validation "
        f"({rss:.2f} GiB at the end, after the FLOP count's Keras children"
        f"{' and the profile' if args.profile else ''})"
    )
    print("\nfigure | peer (NNI 3.0, PyTorch; issue 15, two rounds) | enas-tf")
    print(
        f"child-phase images/s | {PEER['images/s'][0]} / {PEER['images/s'][1]} | "
        f"{args.batch / seconds:.1f} ({args.batch / seconds / 25.1:.2f}x the peer's 25.1); "
        f"uniform arcs {args.batch / uniform_seconds:.1f}"
    )
    print(
        f"controller architectures/s | {PEER['arcs/s'][0]} / {PEER['arcs/s'][1]} | {arcs_per_s:.0f}"
    )
    print(
        f"validation batch of {args.batch}, ms | {PEER['eval ms'][0]} / {PEER['eval ms'][1]} | "
        f"{eval_ms:.0f}"
    )
    print(f"peak RSS, GiB | {PEER['peak GiB'][0]} / {PEER['peak GiB'][1]} | {search_rss:.2f}")
    print(f"trace + first call, s | - | {trace:.1f}")


if __name__ == "__main__":
    main()
