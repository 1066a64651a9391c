"""The shared-weight steps of a CNN search, as plain functions.

`make_steps` returns the three `tf.function`s a strategy's search runs on a
supernet: one training step of the sampled architecture (the child phase),
one evaluation batch (rewards and derive scores) and one moving-statistics
update (recalibration). Each takes a (distributed) batch and the
architecture as an int32 tensor, so one trace serves every architecture.
Steps of other search methods (e.g. DARTS's mixed-op step) go beside these.

Under a multi-device strategy every replica runs the same architecture and
the results are sums over the global batch. The training step all-reduces
the gradients, clips their global norm (on the global gradient, as on one
device) and applies them. A NaN or Inf loss or gradient on any replica skips
the update on all of them and restores the moving statistics. Under
mixed_float16 the loss is scaled (`precision.LossScale`): a step whose
gradients overflow is skipped too, the scale halved, and it is not counted
as non-finite.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from enas_tf.runtime import nonfinite


@dataclasses.dataclass(frozen=True)
class StepSettings:
    """What the steps need of a search's settings.

    Attributes:
      l2: weight decay, added to the loss as `l2 * sum(w ** 2)`.
      grad_bound: global-norm gradient clipping (0: none).
      seed: the dropout seed; masks come from (seed, step, replica), so a
        resumed run draws the ones an uninterrupted run would.
      batch_stats: evaluate with batch statistics (ENAS's reward) instead of
        the moving ones.
      replicas: replicas in sync.
      multi_worker: take replica 0's architecture on every replica (the
        controllers of the workers sample alike; this makes it certain).
    """

    l2: float
    grad_bound: float
    seed: int
    batch_stats: bool
    replicas: int = 1
    multi_worker: bool = False


@dataclasses.dataclass(frozen=True)
class SearchSteps:
    """The traced steps; each takes `(batch, arc)`.

    Attributes:
      train: `(loss, accuracy, finite)` of one update; `finite` False when
        it was skipped for a NaN or Inf loss or gradient.
      evaluate: `(correct predictions, examples)` of `arc` on the batch.
      calibrate: one moving-average update of `arc`'s batch-norm statistics.
    """

    train: Callable[..., Any]
    evaluate: Callable[..., Any]
    calibrate: Callable[..., Any]


def make_steps(
    net,
    optimizer,
    strategy: tf.distribute.Strategy,
    batch_spec,
    num_decisions: int,
    settings: StepSettings,
    loss_scale=None,
) -> SearchSteps:
    """The steps of `net` (a supernet called as `net(images, arc=...)`).

    Args:
      net: the supernet, built under `strategy`'s scope.
      optimizer: its optimizer (the one whose `iterations` seeds dropout).
      strategy: the `tf.distribute` strategy the steps run under.
      batch_spec: the element spec of a (distributed) `(images, labels)`
        batch.
      num_decisions: the length of an architecture.
      settings: see `StepSettings`.
      loss_scale: a `precision.LossScale` (mixed_float16), or None.
    """
    arc_spec = tf.TensorSpec([num_decisions], tf.int32)
    replicas = settings.replicas
    same_arc = _replica0_arc if settings.multi_worker else (lambda ctx, arc: arc)

    def train(images, labels, arc):
        ctx = tf.distribute.get_replica_context()
        arc = same_arc(ctx, arc)
        return _train_replica(net, optimizer, ctx, images, labels, arc, settings, loss_scale)

    def evaluate(images, labels, arc):
        arc = same_arc(tf.distribute.get_replica_context(), arc)
        logits = net(images, arc=arc, batch_stats=settings.batch_stats)
        return correct_predictions(logits, labels), tf.cast(tf.shape(labels)[0], tf.float32)

    def calibrate(images, labels, arc):
        del labels
        arc = same_arc(tf.distribute.get_replica_context(), arc)
        net(images, arc=arc, training=True)  # updates the moving statistics

    def summed(values):
        return [strategy.reduce("sum", v, axis=None) for v in values]

    @tf.function(input_signature=[batch_spec, arc_spec], autograph=False)
    def train_step(batch, arc):
        loss_sum, correct, count, finite, overflow = summed(strategy.run(train, args=(*batch, arc)))
        if loss_scale is not None:
            # The flags are all-reduced: every replica decided the same.
            overflow = overflow > 0.5
            loss_scale.update(
                overflow, tf.logical_and(finite > replicas - 0.5, tf.logical_not(overflow))
            )
        # `count` is the global count on every replica: sum / replicas.
        count /= replicas
        return loss_sum / count, correct / count, finite > replicas - 0.5

    @tf.function(input_signature=[batch_spec, arc_spec], autograph=False)
    def eval_step(batch, arc):
        return tuple(summed(strategy.run(evaluate, args=(*batch, arc))))

    @tf.function(input_signature=[batch_spec, arc_spec], autograph=False)
    def calibrate_step(batch, arc):
        strategy.run(calibrate, args=(*batch, arc))

    return SearchSteps(train=train_step, evaluate=eval_step, calibrate=calibrate_step)


def _train_replica(net, optimizer, ctx, images, labels, arc, settings, loss_scale):
    """One replica's update: (loss sum, correct, global count, applied,
    overflow), the last two as float flags."""
    replicas = settings.replicas
    count = ctx.all_reduce("sum", tf.cast(tf.shape(labels)[0], tf.float32))
    # Moving statistics before the forward pass updates them.
    statistics = nonfinite.snapshot(net.non_trainable_variables)
    with tf.GradientTape() as tape:
        step = tf.cast(optimizer.iterations, tf.int64)
        replica = tf.cast(ctx.replica_id_in_sync_group, tf.int64)
        seed = tf.stack([tf.constant(settings.seed, tf.int64), step * replicas + replica])
        logits = net(images, arc=arc, training=True, dropout_seed=seed)
        loss_sum = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        total = loss_sum / count
        if settings.l2 > 0:
            squares = tf.add_n([tf.reduce_sum(tf.square(v)) for v in net.trainable_variables])
            total += settings.l2 / replicas * squares
        # float16: scaled so that small gradients do not underflow.
        scaled = total if loss_scale is None else loss_scale.scale_loss(total)
    variables = net.trainable_variables
    grads = tape.gradient(scaled, variables)
    if loss_scale is not None:
        grads = loss_scale.unscale(grads)
    grads, finite, failed, overflow = _checked_gradients(ctx, total, grads, settings, loss_scale)
    nonfinite.apply_if_finite(optimizer, grads, variables, finite)
    nonfinite.restore_unless(finite, net.non_trainable_variables, statistics)
    return (
        loss_sum,
        correct_predictions(logits, labels),
        count,
        tf.cast(tf.logical_not(failed), tf.float32),
        tf.cast(overflow, tf.float32),
    )


def _checked_gradients(ctx, total, grads, settings, loss_scale):
    """All-reduced and clipped gradients, and whether to apply them.

    A NaN or Inf loss or gradient on any replica skips the update on every
    replica (the same decision everywhere); with gradient clipping one
    all-reduce carries the flags with the gradients. The flags are [loss not
    finite, a gradient not finite], apart, since under loss scaling the
    second alone is an overflow, not a failure.

    Returns:
      (grads, finite: apply them, failed: a non-finite step, overflow).
    """
    replicas = settings.replicas
    flags = tf.stack([nonfinite.all_finite(total), nonfinite.all_finite(0.0, grads)])
    bad = 1.0 - tf.cast(flags, tf.float32)
    if settings.grad_bound > 0 and replicas > 1:
        *grads, bad = ctx.all_reduce("sum", [*grads, bad])
    elif replicas > 1:
        bad = ctx.all_reduce("sum", bad)
    finite = tf.reduce_all(tf.equal(bad, 0.0))
    failed, overflow = tf.logical_not(finite), tf.constant(False)
    if loss_scale is not None:
        failed, overflow = loss_scale.classify(bad[0], bad[1])
    if settings.grad_bound > 0:
        grads, _ = tf.clip_by_global_norm(grads, settings.grad_bound)
        if replicas > 1:
            # The optimizer sums over replicas again.
            grads = [_scale(g, 1.0 / replicas) for g in grads]
    return grads, finite, failed, overflow


def correct_predictions(logits, labels):
    """Correct predictions (float32 scalar)."""
    predictions = tf.argmax(logits, -1, output_type=tf.int32)
    return tf.reduce_sum(tf.cast(tf.equal(predictions, labels), tf.float32))


def _scale(grad, factor):
    if isinstance(grad, tf.IndexedSlices):
        return tf.IndexedSlices(grad.values * factor, grad.indices, grad.dense_shape)
    return grad * factor


def _replica0_arc(ctx, arc):
    """`arc` as replica 0 has it, on every replica (an all-reduce)."""
    first = tf.cast(tf.equal(ctx.replica_id_in_sync_group, 0), tf.float32)
    total = ctx.all_reduce("sum", tf.cast(arc, tf.float32) * first)
    return tf.cast(tf.round(total), arc.dtype)
