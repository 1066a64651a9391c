r"""Benchmark: a training step of the shared enas_lm cell vs the fixed cell.

For random arcs a of `RnnSpace(num_nodes)`, times a training step (forward
with dropout, search regularisers, gradient, global-norm clip, SGD) of

  shared: `SharedRnnLM` on arc a (one trace serves every arc), and
  fixed:  `FixedRnnLM` of a (`shared.child_config(a)`: same sizes, rates),

interleaved (shared, fixed, shared, ...) so that machine noise hits both
alike, and prints tokens/s of each, the per-arc and median shared/fixed
step-time ratio (target <= 1.3), the trace times and the peak RSS.

`--activation` and `--input` swap how the shared cell picks a node's
activation and predecessor (`rnn_cell` module docstring):
  activation=switch: `tf.switch_case`, only the chosen activation runs
                     (the library default);
  activation=all:    compute the 4 activations, gather one;
  input=gather:      stack the earlier nodes, gather one (the default);
  input=switch:      `tf.switch_case` over the earlier nodes.

`--precision=mixed_bfloat16` (or mixed_float16) builds both models under
that Keras dtype policy (the models compute in 16 bits, logits and loss in
float32). `--jit_compile` compiles the steps with XLA; the shared cell
then needs `--activation=all` (XLA cannot compile the gradient of a
`tf.switch_case` inside the time loop). With either, the library's default
shared model (float32, no XLA) is also timed on the same arcs, interleaved,
and the step-time ratio (this configuration / default) is printed.

`--profile=DIR` then profiles `--profile_steps` shared steps with the
TensorFlow profiler and prints the ops that took the most time (as
`bench/peer_child_phase.py` does).

Usage (the search size is the default: V 10000, H 200, L 9, batch 128, 35):
  python bench/rnn_step.py
  python bench/rnn_step.py --arcs=5 --profile=/tmp/lm_profile
  python bench/rnn_step.py --vocab=1000 --hidden=64 --batch=16 --bptt=10 \
      --arcs=5 --steps=2
  python bench/rnn_step.py --precision=mixed_bfloat16
  python bench/rnn_step.py --jit_compile --activation=all
"""

import argparse
import os
import resource
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=10000, help="Vocabulary size.")
    parser.add_argument("--hidden", type=int, default=200, help="Hidden size H.")
    parser.add_argument("--nodes", type=int, default=9, help="Searched nodes L.")
    parser.add_argument("--batch", type=int, default=128, help="Batch size.")
    parser.add_argument("--bptt", type=int, default=35, help="Window length T.")
    parser.add_argument("--arcs", type=int, default=5, help="Random arcs (>= 5).")
    parser.add_argument("--steps", type=int, default=3, help="Timed steps per model and arc.")
    parser.add_argument(
        "--activation",
        choices=["switch", "all"],
        default="switch",
        help="Shared-cell activation choice.",
    )
    parser.add_argument(
        "--input",
        choices=["gather", "switch"],
        default="gather",
        help="Shared-cell predecessor choice.",
    )
    parser.add_argument(
        "--precision",
        default="float32",
        choices=["float32", "mixed_bfloat16", "mixed_float16"],
        help="Keras dtype policy of the models.",
    )
    parser.add_argument(
        "--jit_compile", action="store_true", help="Compile the training steps with XLA."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of arcs, data.")
    parser.add_argument(
        "--profile", default=None, help="Directory for a TensorFlow profile of shared steps."
    )
    parser.add_argument("--profile_steps", type=int, default=3)
    parser.add_argument("--top_ops", type=int, default=12, help="Ops printed from the profile.")
    return parser.parse_args(argv)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux: KiB), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def shared_class(activation: str, input_choice: str):
    """`SharedRnnLM` whose cell picks activations and inputs as asked."""
    import tensorflow as tf

    from enas_tf.lm import cells as rnn_cell
    from enas_tf.lm.model import SharedRnnLM

    def activation_all(a, func, num_funcs):
        funcs = rnn_cell.ACTIVATIONS[:num_funcs]
        return tf.gather(tf.stack([f(a) for f in funcs]), func)

    def select_switch(nodes, index):
        if len(nodes) == 1:
            return nodes[0]
        return tf.switch_case(index, [lambda n=n: n for n in nodes])

    class Cell(rnn_cell.SharedRnnCell):
        pass

    if activation == "all":
        Cell.pick_activation = staticmethod(activation_all)
    if input_choice == "switch":
        Cell.pick_input = staticmethod(select_switch)

    class Model(SharedRnnLM):
        cell_class = Cell

    return Model


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, ROOT)
    import keras
    import numpy as np
    import tensorflow as tf

    from enas_tf.lm import steps as lm_training
    from enas_tf.lm.model import FixedRnnLM, SharedRnnLM
    from enas_tf.runtime import precision

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    tokens = rng.integers(0, args.vocab, (args.batch, args.bptt + 1)).astype(np.int32)
    x, y = tf.constant(tokens[:, :-1]), tf.constant(tokens[:, 1:])
    scale = tf.constant(1.0)
    n_tokens = args.batch * args.bptt

    def make_step(model):
        step = lm_training.make_train_step(model, keras.optimizers.SGD(20.0))
        if args.jit_compile:  # the same Python function, compiled
            step = tf.function(
                step.python_function,
                jit_compile=True,
                input_signature=step.input_signature,
                autograph=False,
            )
        step.model = model
        return step

    def timed(step, *extra):
        state = step.model.initial_state(args.batch)  # in the compute dtype
        start = time.perf_counter()
        _, metrics = step(x, y, state, scale, *extra)
        metrics["loss"].numpy()  # waits for the result
        return time.perf_counter() - start

    model_class = shared_class(args.activation, args.input)
    sizes = {
        "vocab_size": args.vocab,
        "hidden_size": args.hidden,
        "num_nodes": args.nodes,
        "seed": 0,
    }
    with precision.policy(args.precision):
        shared = model_class(**sizes)
    baseline = None
    if args.precision != "float32" or args.jit_compile:
        jit, args.jit_compile = args.jit_compile, False
        baseline = make_step(SharedRnnLM(**sizes))
        args.jit_compile = jit
    space = shared.space
    shared_step = make_step(shared)
    arc0 = tf.constant(space.random_arc(rng), tf.int32)
    start = time.perf_counter()
    shared_step.get_concrete_function()
    trace = time.perf_counter() - start
    first = timed(shared_step, arc0)
    print(
        f"shared ({args.activation} activation, {args.input} input): trace "
        f"{trace:.1f} s, first call {first:.1f} s; peak RSS {peak_rss_mb():.0f} MiB",
        flush=True,
    )

    print(
        f"\n{'arc':>3} {'shared tok/s':>13} {'fixed tok/s':>12} "
        f"{'shared/fixed':>13} {'fixed trace s':>14}",
        flush=True,
    )
    ratios, shared_rates, fixed_rates, fixed_traces = [], [], [], []
    baseline_times, precision_ratios = [], []
    for a in range(args.arcs):
        arc = space.random_arc(rng)
        with precision.policy(args.precision):
            fixed = FixedRnnLM(**shared.child_config(arc))
        fixed_step = make_step(fixed)
        start = time.perf_counter()
        timed(fixed_step)  # trace + first call
        fixed_traces.append(time.perf_counter() - start)
        arc_tensor = tf.constant(arc, tf.int32)
        timed(shared_step, arc_tensor)  # warm-up on this arc
        if baseline is not None:
            timed(baseline, arc_tensor)  # its trace, on the first arc
        times = {"shared": [], "fixed": []}
        for _ in range(args.steps):
            times["shared"].append(timed(shared_step, arc_tensor))
            times["fixed"].append(timed(fixed_step))
            if baseline is not None:
                baseline_times.append(timed(baseline, arc_tensor))
                precision_ratios.append(times["shared"][-1] / baseline_times[-1])
        t_shared = statistics.median(times["shared"])
        t_fixed = statistics.median(times["fixed"])
        ratios.append(t_shared / t_fixed)
        shared_rates.append(n_tokens / t_shared)
        fixed_rates.append(n_tokens / t_fixed)
        print(
            f"{a:>3} {shared_rates[-1]:>13.0f} {fixed_rates[-1]:>12.0f} "
            f"{ratios[-1]:>13.3f} {fixed_traces[-1]:>14.1f}",
            flush=True,
        )
    print(
        f"\nV {args.vocab}, H {args.hidden}, L {args.nodes}, batch {args.batch}, "
        f"T {args.bptt}; {args.arcs} arcs, {args.steps} timed steps each"
    )
    print(
        f"median tokens/s: shared {statistics.median(shared_rates):.0f}, "
        f"fixed {statistics.median(fixed_rates):.0f}"
    )
    print(
        f"median shared/fixed step time: {statistics.median(ratios):.3f} "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f}; target <= 1.3)"
    )
    print(
        f"shared trace {trace:.1f} s + first call {first:.1f} s once; fixed "
        f"trace + first call {statistics.median(fixed_traces):.1f} s per arc"
    )
    if baseline is not None:
        print(
            f"shared step time, this configuration / the default (float32, switch "
            f"activation, no XLA), interleaved: median "
            f"{statistics.median(precision_ratios):.3f} (min {min(precision_ratios):.3f}, "
            f"max {max(precision_ratios):.3f}); default shared "
            f"{n_tokens / statistics.median(baseline_times):.0f} tokens/s"
        )
    print(f"peak RSS {peak_rss_mb():.0f} MiB (whole process)")
    if args.profile:
        from bench.profiling import print_top_ops

        tf.profiler.experimental.start(args.profile)
        for _ in range(args.profile_steps):
            timed(shared_step, arc0)
        tf.profiler.experimental.stop()
        print_top_ops(args.profile, args.top_ops, args.profile_steps, "shared steps")


if __name__ == "__main__":
    main()
