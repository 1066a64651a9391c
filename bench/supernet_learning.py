"""Do the shared weights learn? Random-WS on digits, as issue 14 measured.

A new uniformly random architecture every step (the child phase of a
search whose controller knows nothing), at the issue's configuration: the
built-in digits split (1,077 train / 360 valid), micro space with 5 nodes,
`--num_layers=3` (5 cells), 8 filters, batch 64, 30 epochs, SGD Nesterov
momentum 0.9, learning rate cosine 0.05 -> 5e-4 over the run, L2 1e-4,
global-norm clipping 5, the search's augmentation for digits (pad 1 and
crop, no flip). Per epoch it prints the child's training accuracy (training
mode, on the augmented batches) and the mean validation accuracy of 10
fixed random architectures scored three ways (`--reward_bn`): batch
statistics, recalibrated moving statistics (4 training batches) and the
shared moving statistics.

    python bench/supernet_learning.py                       # today's supernet
    python bench/supernet_learning.py --design=issue14      # the one issue 14 measured
    python bench/supernet_learning.py --space=macro --num_layers=6 --out_filters=16
    python bench/supernet_learning.py --space=rnn --data_dir=PTB_DIR

`--space=rnn` asks the same of the recurrent cell on PTB at the
flags/ptb_quick.flags sizes (H 64, 9 nodes, batch 64, windows of 35, SGD
lr 20, the search's regularisers and clipping, 150 steps per epoch): a
`SharedRnnLM` trained on a new random cell every step against one fixed
cell (`FixedRnnLM`) trained for the same steps; it prints the validation
perplexity (whole split, state carried) of the fixed cell, of the same cell
with the shared weights, and the mean over 5 other random cells.

`--design=issue14` builds the micro supernet as it was when issue 14 was
filed (loose-end cell outputs, He-normal initialisation, every batch-norm
scale at 1).
"""

from __future__ import annotations

import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from enas_tf.data.images import load_images  # noqa: E402
from enas_tf.data.pipeline import eval_dataset, normalize, train_dataset  # noqa: E402
from enas_tf.supernet.build import recalibrated  # noqa: E402
from enas_tf.supernet.macro import MacroSupernet  # noqa: E402
from enas_tf.supernet.micro import MicroSupernet  # noqa: E402

flags.DEFINE_enum("space", "micro", ["micro", "macro", "rnn"], "Search space.")
flags.DEFINE_string("data_dir", None, "rnn: directory of PTB's train/valid/test.txt.")
flags.DEFINE_integer("steps_per_epoch", 150, "rnn: training windows per epoch.")
flags.DEFINE_enum(
    "design",
    "default",
    ["default", "issue14"],
    "Micro: today's supernet, or the one issue 14 measured.",
)
flags.DEFINE_integer("num_nodes", 5, "Micro: nodes per cell.")
flags.DEFINE_integer("num_layers", 3, "Micro: normal cells L; macro: layers.")
flags.DEFINE_integer("out_filters", 8, "Channels of the first stage.")
flags.DEFINE_integer("epochs", 30, "Epochs.")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_float("lr_max", 0.05, "Initial learning rate (cosine to lr_min).")
flags.DEFINE_float("lr_min", 5e-4, "Final learning rate.")
flags.DEFINE_float("l2", 1e-4, "L2 weight.")
flags.DEFINE_integer("pad", 1, "Pad-and-crop augmentation (0: none).")
flags.DEFINE_integer("eval_arcs", 10, "Fixed random architectures scored per epoch.")
flags.DEFINE_integer("eval_every", 1, "Score them every this many epochs.")
flags.DEFINE_integer("recalibrate_batches", 4, "Training batches of reward_bn=recalibrate.")
flags.DEFINE_integer("seed", 0, "Seed.")
FLAGS = flags.FLAGS


def build(splits):
    common = dict(
        num_layers=FLAGS.num_layers,
        out_filters=FLAGS.out_filters,
        num_classes=splits.num_classes,
        image_shape=splits.image_shape,
        keep_prob=1.0,
    )
    if FLAGS.space == "macro":
        return MacroSupernet(**common)
    old = dict(cell_output="loose_ends", initializer="he_normal", zero_last_bn=False)
    return MicroSupernet(
        num_nodes=FLAGS.num_nodes, num_ops=5, **common, **(old if FLAGS.design == "issue14" else {})
    )


def main(argv):
    del argv
    keras.utils.set_random_seed(FLAGS.seed)
    if FLAGS.space == "rnn":
        return main_rnn()
    splits = load_images("digits", valid_size=360)
    net = build(splits)
    space = net.space
    steps = math.ceil(len(splits.train_images) / FLAGS.batch_size) * FLAGS.epochs
    schedule = keras.optimizers.schedules.CosineDecay(
        FLAGS.lr_max, steps, alpha=FLAGS.lr_min / FLAGS.lr_max
    )
    optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True)
    optimizer.build(net.trainable_variables)

    signature = [
        tf.TensorSpec([None, *splits.image_shape], tf.float32),
        tf.TensorSpec([None], tf.int32),
        tf.TensorSpec([space.num_decisions], tf.int32),
    ]

    @tf.function(input_signature=signature, autograph=False)
    def train_step(images, labels, arc):
        with tf.GradientTape() as tape:
            logits = net(images, arc=arc, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
            total = loss + FLAGS.l2 * tf.add_n(
                [tf.reduce_sum(tf.square(v)) for v in net.trainable_variables]
            )
        variables = net.trainable_variables
        grads, _ = tf.clip_by_global_norm(tape.gradient(total, variables), 5.0)
        optimizer.apply(grads, variables)
        return loss, _accuracy(logits, labels)

    @tf.function(autograph=False)
    def evaluate(images, labels, arc, batch_stats):
        return _accuracy(net(images, arc=arc, batch_stats=batch_stats), labels)

    @tf.function(autograph=False)
    def calibrate(images, arc):
        net(images, arc=arc, training=True)

    rng = np.random.default_rng(FLAGS.seed + 1)
    eval_arcs = [tf.constant(space.random_arc(rng), tf.int32) for _ in range(FLAGS.eval_arcs)]
    valid = (
        normalize(splits.valid_images, splits.mean, splits.std),
        tf.constant(splits.valid_labels),
    )
    order = rng.permutation(len(splits.train_images))[
        : FLAGS.recalibrate_batches * FLAGS.batch_size
    ]
    calibration = [
        images
        for images, _ in eval_dataset(
            splits.train_images[order], splits.train_labels[order], splits, FLAGS.batch_size
        )
    ]

    def scores():
        batch = np.mean([float(evaluate(*valid, arc, True)) for arc in eval_arcs])
        moving = np.mean([float(evaluate(*valid, arc, False)) for arc in eval_arcs])
        recal = []
        for arc in eval_arcs:
            with recalibrated(net, lambda images, arc=arc: calibrate(images, arc), calibration):
                recal.append(float(evaluate(*valid, arc, False)))
        return batch, float(np.mean(recal)), moving

    design = "" if FLAGS.space == "macro" else f", design {FLAGS.design}"
    print(
        f"Random-WS on digits, {space.describe()}{design}: "
        f"{sum(int(np.prod(v.shape)) for v in net.trainable_variables):,} shared weights"
    )
    print("epoch | loss | child train acc | valid acc: batch stats / recalibrated / moving | s")
    start, rows = time.time(), []
    for epoch in range(1, FLAGS.epochs + 1):
        data = train_dataset(
            splits, FLAGS.batch_size, pad=FLAGS.pad, flip=False, seed=FLAGS.seed + epoch
        )
        losses, accuracies = [], []
        for images, labels in data:
            arc = tf.constant(space.random_arc(rng), tf.int32)
            loss, accuracy = train_step(images, labels, arc)
            losses.append(float(loss))
            accuracies.append(float(accuracy))
        line = f"{epoch:5d} | {np.mean(losses):.3f} | {np.mean(accuracies):.3f}"
        if epoch % FLAGS.eval_every == 0 or epoch in (1, FLAGS.epochs):
            rows.append((epoch, np.mean(accuracies), *scores()))
            line += " | {:.3f} / {:.3f} / {:.3f}".format(*rows[-1][2:])
        print(f"{line} | {time.time() - start:.0f}", flush=True)
    epoch, train, batch, recal, moving = rows[-1]
    print(
        f"final (epoch {epoch}): child training accuracy {train:.3f}; mean validation "
        f"accuracy of {len(eval_arcs)} random architectures: batch statistics "
        f"{batch:.3f}, recalibrated {recal:.3f}, moving {moving:.3f}; "
        f"{train_step.experimental_get_tracing_count()} trace(s) of the step"
    )


def main_rnn():
    from enas_tf.data.ptb import batchify, load_ptb, windows
    from enas_tf.lm.model import SharedRnnLM
    from enas_tf.lm.steps import evaluate, make_eval_step, make_train_step

    if not FLAGS.data_dir:
        raise app.UsageError("--space=rnn needs --data_dir (PTB's text files).")
    corpus = load_ptb(FLAGS.data_dir)
    dropouts = dict(drop_e=0.0, drop_i=0.1, drop_x=0.2, drop_l=0.1, drop_o=0.2)
    shared = SharedRnnLM(corpus.vocab_size, 64, num_nodes=9, seed=FLAGS.seed, **dropouts)
    space = shared.space
    rng = np.random.default_rng(FLAGS.seed + 1)
    arcs = [space.random_arc(rng) for _ in range(6)]
    fixed = shared.build_child(arcs[0])
    batched = batchify(corpus.train, 64)

    def train(model, arc_of_step):
        step = make_train_step(model, keras.optimizers.SGD(20.0))
        start = time.time()
        for epoch in range(FLAGS.epochs):
            state = model.initial_state(64)
            for i, (x, y) in enumerate(windows(batched, 35)):
                if i == FLAGS.steps_per_epoch:
                    break
                extra = arc_of_step()
                state, metrics = step(x, y, state, tf.constant(1.0), *extra)
            print(
                f"  epoch {epoch + 1}: loss {float(metrics['cross_entropy']):.3f} "
                f"({time.time() - start:.0f} s)",
                flush=True,
            )

    print(
        f"PTB, {space.describe()}, H 64: shared weights on random cells vs one "
        f"fixed cell, {FLAGS.epochs} x {FLAGS.steps_per_epoch} steps each"
    )
    print("shared (a new random cell every step):")
    train(shared, lambda: [tf.constant(space.random_arc(rng), tf.int32)])
    print("fixed cell:")
    train(fixed, lambda: [])
    step = make_eval_step(shared)
    ppl = [evaluate(shared, corpus.valid, 64, arc=arc, eval_step=step) for arc in arcs]
    alone = evaluate(fixed, corpus.valid, 64)
    print(
        f"valid perplexity: fixed cell trained alone {alone:.1f}; the same cell with "
        f"shared weights {ppl[0]:.1f}; 5 other random cells with shared weights "
        f"{np.mean(ppl[1:]):.1f} ({min(ppl[1:]):.1f}-{max(ppl[1:]):.1f})"
    )


def _accuracy(logits, labels):
    return tf.reduce_mean(
        tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
    )


if __name__ == "__main__":
    app.run(main)
