"""Skipping training steps with NaN or Inf losses or gradients.

A step whose loss or gradients are not all finite leaves the weights and the
optimizer's state (slots, iterations) unchanged; the skipped steps are
counted and logged, and after `max_nonfinite` in a row the run stops with a
`UserError` (the last checkpoint on disk is the last good one: nothing is
saved on the way out).

- `all_finite(loss, grads)`: a bool scalar tensor (inside a `tf.function`).
- `apply_if_finite(optimizer, grads, variables, finite)`: `optimizer.apply`
  under a `tf.cond`, one traced graph for both outcomes.
- `snapshot(variables)`, `restore_unless(finite, variables, saved)`: undo
  what the forward pass of a skipped step wrote (batch-norm moving
  statistics). Under a
  `tf.distribute` strategy the caller decides `finite` on the all-reduced
  gradients (the same value on every replica); the cond then runs in the
  cross-replica context, as Keras's `LossScaleOptimizer` does.
- `NonFiniteCounter`: the Python side (counts, logs, raises).
- `FiniteGuardOptimizer` and `NonFiniteCallback`: the same for Keras `fit`.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from absl import logging

from enas_tf.errors import UserError

DEFAULT_MAX_NONFINITE = 10


def all_finite(loss, grads=()) -> tf.Tensor:
    """True when `loss` and every gradient (None skipped) are finite."""
    checks = [tf.reduce_all(tf.math.is_finite(loss))]
    for g in grads:
        if g is None:
            continue
        values = g.values if isinstance(g, tf.IndexedSlices) else g
        checks.append(tf.reduce_all(tf.math.is_finite(values)))
    return tf.reduce_all(tf.stack(checks))


def apply_if_finite(optimizer, grads, variables, finite) -> tf.Tensor:
    """`optimizer.apply(grads, variables)` when `finite`, else nothing.

    Call in a replica context (or with no strategy). `finite` must be the
    same on every replica. Returns `finite`.
    """
    finite = tf.convert_to_tensor(finite, tf.bool)
    grads, variables = list(grads), list(variables)

    def apply():
        optimizer.apply(grads, variables)
        return tf.constant(True)

    def skip():
        return tf.constant(False)

    ctx = tf.distribute.get_replica_context()
    if ctx is None:
        raise ValueError("apply_if_finite must be called in a replica context.")
    if (
        not tf.distribute.has_strategy()
        or tf.__internal__.distribute.strategy_supports_no_merge_call()
    ):
        tf.cond(finite, apply, skip)
        return finite

    def cross_replica(strategy, finite, grads, variables):
        first = strategy.experimental_local_results(finite)[0]

        def apply_each():
            strategy.extended.call_for_each_replica(
                lambda g, v: optimizer.apply(g, v), args=(grads, variables)
            )
            return tf.constant(True)

        tf.cond(first, apply_each, skip)

    ctx.merge_call(cross_replica, args=(finite, grads, variables))
    return finite


def _tf_variable(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


def snapshot(variables) -> list[tf.Tensor]:
    """The values of `variables` (e.g. batch-norm moving statistics, which
    the forward pass updates) before a step, for `restore_unless`. In a
    replica context, each replica's own copy."""
    return [tf.identity(_tf_variable(v).read_value()) for v in variables]


def restore_unless(finite, variables, saved) -> None:
    """Assigns `saved` (`snapshot`) back to `variables` unless `finite`."""
    variables = [_tf_variable(v) for v in variables]

    def restore():
        for v, old in zip(variables, saved):
            v.assign(old)
        return tf.constant(False)

    if variables:
        tf.cond(finite, lambda: tf.constant(True), restore)


def message(where: str, count: int) -> str:
    return (
        f"{count} training steps in a row had a NaN or Inf loss or gradient "
        f"({where}); each was skipped, and the run is stopped. Lower the "
        f"learning rate (or the gradient bound), check the data for NaN or "
        f"Inf values, or raise --max_nonfinite to tolerate more. The last "
        f"checkpoint on disk is the last good one; a rerun resumes from it."
    )


class NonFiniteCounter:
    """Counts skipped (non-finite) steps; raises after too many in a row.

    Args:
      max_nonfinite: consecutive skipped steps that stop the run (0: never).
      where: what is being trained, for the messages ("child phase").
    """

    def __init__(self, max_nonfinite: int = DEFAULT_MAX_NONFINITE, where: str = "training"):
        self.max_nonfinite, self.where = max_nonfinite, where
        self.total = 0
        self.consecutive = 0

    def update(self, finite, step: int | None = None) -> bool:
        """Records one step; returns whether it was finite.

        Raises:
          UserError: after `max_nonfinite` non-finite steps in a row.
        """
        finite = bool(finite)
        if finite:
            self.consecutive = 0
            return True
        self.total += 1
        self.consecutive += 1
        logging.warning(
            "Skipped a %s step%s with a NaN or Inf loss or gradient (%d in a row, %d in all).",
            self.where,
            "" if step is None else f" ({step})",
            self.consecutive,
            self.total,
        )
        if self.max_nonfinite and self.consecutive >= self.max_nonfinite:
            raise UserError(message(self.where, self.consecutive))
        return False


class FiniteGuardOptimizer:
    """Wraps a Keras optimizer's `apply` so non-finite steps are skipped.

    `guard(optimizer)` patches the instance's `apply` in place (the
    checkpoint layout and the optimizer's class stay those of the wrapped
    optimizer); the patched function carries a `nonfinite_steps` counter
    variable (not tracked by the optimizer) that `NonFiniteCallback` reads.

    Under a `tf.distribute` strategy with several replicas the wrapper first
    all-reduces the gradients (Keras scales each replica's loss by
    1/replicas, so the sum is the global batch's gradient) and turns off the
    optimizer's own all-reduce: the finiteness test, the loss-scale overflow
    test and `global_clipnorm` clipping then see the global gradient, the
    same values on every replica. Keras 3 alone clips each replica's
    gradient before summing, which is not what one device computes on the
    same global batch.

    A `keras.optimizers.LossScaleOptimizer` (float16) gets non-finite
    gradients whenever its scale is too high: such an overflow step goes to
    the wrapper, which skips it and halves the scale, and is not counted.
    Only an overflow at scale <= 1, where the gradient itself is not
    finite, is skipped here and counted (a NaN loss thus halves the scale
    to 1 first: 15 uncounted steps from Keras' 2**15).
    """

    @staticmethod
    def guard(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
        if hasattr(optimizer.apply, "nonfinite_steps"):
            return optimizer
        counter = tf.Variable(
            0,
            dtype=tf.int64,
            trainable=False,
            name="nonfinite_steps",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        original = optimizer.apply

        def apply(grads, trainable_variables=None):
            if not tf.inside_function() or trainable_variables is None:
                return original(grads, trainable_variables)
            grads = list(grads)
            ctx = tf.distribute.get_replica_context()
            if ctx is not None and ctx.num_replicas_in_sync > 1:
                grads = _all_reduced(ctx, grads, optimizer)
            finite = all_finite(tf.constant(0.0), grads)
            passed = finite  # to the wrapped optimizer
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                if not optimizer.built:
                    optimizer.build(trainable_variables)
                overflow = tf.greater(optimizer.dynamic_scale, 1.0)
                passed = tf.logical_or(finite, overflow)
            counter.assign_add(tf.cast(tf.logical_not(passed), tf.int64))
            apply_if_finite(_Unguarded(original), grads, trainable_variables, passed)

        apply.nonfinite_steps = counter
        optimizer.apply = apply
        return optimizer


class _Unguarded:
    """The wrapped optimizer's original `apply`, for `apply_if_finite`."""

    def __init__(self, apply):
        self.apply = apply


def _all_reduced(ctx, grads, optimizer) -> list:
    """`grads` summed over the replicas; the optimizer (and a loss-scale
    optimizer's inner one) then skip their own all-reduce."""
    present = [g for g in grads if g is not None]
    reduced = iter(ctx.all_reduce(tf.distribute.ReduceOp.SUM, present) if present else [])
    grads = [None if g is None else next(reduced) for g in grads]
    for opt in (optimizer, getattr(optimizer, "inner_optimizer", None)):
        if opt is not None and hasattr(opt, "_all_reduce_sum_gradients"):
            # Keras' hook (backend/tensorflow/optimizer.py); already summed.
            opt._all_reduce_sum_gradients = list
    return grads


def guard(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """`FiniteGuardOptimizer.guard`: `optimizer`, skipping non-finite steps."""
    return FiniteGuardOptimizer.guard(optimizer)


class NonFiniteCallback(keras.callbacks.Callback):
    """Counts the steps a `FiniteGuardOptimizer` skipped during `fit`.

    Raises `UserError` after `max_nonfinite` skipped batches in a row;
    `total` holds the count. The model's non-trainable variables (batch-norm
    moving statistics, updated by the forward pass) are copied before each
    batch and put back after a skipped one.
    """

    def __init__(self, optimizer, max_nonfinite: int = DEFAULT_MAX_NONFINITE):
        super().__init__()
        self.optimizer_ = optimizer
        self.counter = NonFiniteCounter(max_nonfinite, "final training")
        self._seen = 0
        self._save = self._restore = None

    def on_train_begin(self, logs=None):
        if self._save is not None or tf.distribute.has_strategy():
            return
        variables = [_tf_variable(v) for v in self.model.non_trainable_variables]
        if not variables:
            return
        backup = [tf.Variable(v.read_value(), trainable=False) for v in variables]

        def copy(sources, targets):
            for s, t in zip(sources, targets):
                t.assign(s.read_value())

        self._save = tf.function(lambda: copy(variables, backup), autograph=False)
        self._restore = tf.function(lambda: copy(backup, variables), autograph=False)

    def on_train_batch_begin(self, batch, logs=None):
        if self._save is not None:
            self._save()

    @property
    def total(self) -> int:
        return self.counter.total

    def on_train_batch_end(self, batch, logs=None):
        variable = getattr(self.optimizer_.apply, "nonfinite_steps", None)
        if variable is None:
            return
        seen = int(variable.numpy())
        skipped, self._seen = seen - self._seen, seen
        if skipped:
            if self._restore is not None:
                self._restore()
            for _ in range(skipped):
                self.counter.update(False, batch)
        else:
            self.counter.update(True)


__all__ = [
    "DEFAULT_MAX_NONFINITE",
    "FiniteGuardOptimizer",
    "NonFiniteCallback",
    "NonFiniteCounter",
    "all_finite",
    "apply_if_finite",
    "guard",
    "restore_unless",
    "snapshot",
    "message",
]
