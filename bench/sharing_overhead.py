r"""Benchmark: what weight sharing costs a training step of the micro supernet.

At the micro search size (B = 5 nodes, L = 6, so 8 cells, C0 = 20, 32x32x3
images, 10 classes), for random architectures a, times a training step
(forward, gradient, SGD with momentum 0.9) of

  supernet:    `MicroSupernet` on arc a (one trace serves every arc; only the
               chosen ops run),
  child:       the fixed child a (`build_child(space, a, net.child_config())`,
               the network the supernet computes on a), and
  compute-all: the supernet variant that runs every candidate op of every
               slot and then picks the chosen output (`--compute_all`),

interleaved (supernet, child, compute-all, supernet, ...) so that machine
noise hits all alike. Prints per-arc median step times and ratios, their
median, and the trace times (building the step's graph, then its first
call, which optimises the graph). CPU unless --device=gpu.

Usage:
  python bench/sharing_overhead.py                      # batch 160, 10 arcs
  python bench/sharing_overhead.py --batch=32 --steps=2 --no-compute_all
"""

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = {
    "num_nodes": 5,
    "num_layers": 6,
    "out_filters": 20,
    "num_classes": 10,
    "image_shape": (32, 32, 3),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=160, help="Images per step.")
    parser.add_argument("--arcs", type=int, default=10, help="Random architectures.")
    parser.add_argument(
        "--steps", type=int, default=2, help="Timed steps per model and architecture."
    )
    parser.add_argument(
        "--compute_all",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Also time the compute-every-op variant.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of arcs and data.")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    return parser.parse_args(argv)


def train_step(model, optimizer, signature, with_arc):
    """A `tf.function` training step: cross-entropy, gradient, SGD update."""
    import tensorflow as tf

    def update(images, labels, **arc):
        with tf.GradientTape() as tape:
            logits = model(images, training=True, **arc)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        variables = model.trainable_variables
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    if with_arc:
        step = lambda images, labels, arc: update(images, labels, arc=arc)
    else:
        step = lambda images, labels: update(images, labels)
    return tf.function(step, input_signature=signature, autograph=False)


def timed(fn, *args):
    start = time.perf_counter()
    fn(*args).numpy()  # waits for the result
    return time.perf_counter() - start


def traced(step, *args):
    """(seconds to trace the step, seconds of its first call)."""
    start = time.perf_counter()
    step.get_concrete_function()
    trace = time.perf_counter() - start
    return trace, timed(step, *args)


def compute_all_supernet_class():
    """`MicroSupernet` whose slots run every candidate, then pick one."""
    import tensorflow as tf

    from enas_tf.supernet import micro as supernet_micro
    from enas_tf.supernet import slots

    def select(candidates, index):
        # The original ENAS search code's way: stack the nodes, index them.
        return tf.gather(tf.stack(candidates), index)

    def slot(inputs, strides, branch, rows, flat_rows, layout, stats, **settings):
        picked = slots.unflatten(flat_rows, layout)
        outputs = [
            run() for run in slots.candidate_ops(inputs, strides, rows, picked, stats, **settings)
        ]
        return tf.gather(tf.stack(outputs), branch)

    class ComputeAllSupernet(supernet_micro.MicroSupernet):
        pass

    ComputeAllSupernet.pick_input = staticmethod(select)
    ComputeAllSupernet.slot_function = staticmethod(slot)
    return ComputeAllSupernet


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, ROOT)
    import keras
    import numpy as np
    import tensorflow as tf

    from enas_tf.child.build import build_child
    from enas_tf.supernet.micro import MicroSupernet

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    shape = (args.batch, *SIZE["image_shape"])
    images = tf.constant(rng.normal(size=shape), tf.float32)
    labels = tf.constant(rng.integers(0, SIZE["num_classes"], args.batch), tf.int32)
    data = [tf.TensorSpec(images.shape, tf.float32), tf.TensorSpec(labels.shape, tf.int32)]

    def sgd(model):
        optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
        optimizer.build(model.trainable_variables)
        return optimizer

    classes = {"supernet": MicroSupernet}
    if args.compute_all:
        classes["compute-all"] = compute_all_supernet_class()
    shared = {}
    for name, cls in classes.items():
        net = cls(**SIZE)
        arc_spec = tf.TensorSpec([net.space.num_decisions], tf.int32)
        step = train_step(net, sgd(net), data + [arc_spec], with_arc=True)
        arc0 = tf.constant(net.space.random_arc(rng), tf.int32)
        trace, first = traced(step, images, labels, arc0)
        shared[name] = (net, step, trace, first)
        print(f"{name}: trace {trace:.1f} s, first call {first:.1f} s", flush=True)
    space = shared["supernet"][0].space
    config = shared["supernet"][0].child_config()

    names = ["supernet", "child", *(["compute-all"] if args.compute_all else [])]
    print(
        f"\n{'arc':>3} "
        + " ".join(f"{n + ' ms':>14}" for n in names)
        + " "
        + " ".join(f"{n + '/child':>18}" for n in names if n != "child")
        + f" {'child trace s':>13}",
        flush=True,
    )
    ratios = {n: [] for n in names if n != "child"}
    child_traces = []
    for a in range(args.arcs):
        arc = space.random_arc(rng)
        child = build_child(
            space, arc, config, image_shape=SIZE["image_shape"], num_classes=SIZE["num_classes"]
        )
        child_step = train_step(child, sgd(child), data, with_arc=False)
        child_traces.append(sum(traced(child_step, images, labels)))
        arc_tensor = tf.constant(arc, tf.int32)
        calls = {n: (shared[n][1], images, labels, arc_tensor) for n in shared}
        calls["child"] = (child_step, images, labels)
        for n in names:  # warm-up (the supernet's first call on this arc)
            timed(*calls[n])
        times = {n: [] for n in names}
        for _ in range(args.steps):
            for n in names:
                times[n].append(timed(*calls[n]))
        median = {n: statistics.median(t) for n, t in times.items()}
        for n, r in ratios.items():
            r.append(median[n] / median["child"])
        print(
            f"{a:>3} "
            + " ".join(f"{1000 * median[n]:>14.0f}" for n in names)
            + " "
            + " ".join(f"{ratios[n][-1]:>18.3f}" for n in ratios)
            + f" {child_traces[-1]:>13.1f}",
            flush=True,
        )
    print(f"\nbatch {args.batch}, {args.arcs} arcs, {args.steps} timed steps each")
    for n, r in ratios.items():
        print(
            f"median {n}/child step time: {statistics.median(r):.3f} "
            f"(min {min(r):.3f}, max {max(r):.3f})"
        )
    for n, (_, _, trace, first) in shared.items():
        print(f"{n} step: trace {trace:.1f} s + first call {first:.1f} s, once for all arcs")
    print(
        f"child step: trace + first call {statistics.median(child_traces):.1f} s "
        f"(median), once per arc"
    )


if __name__ == "__main__":
    main()
