"""Mixed precision for the CNN child networks and supernets.

A precision is a Keras dtype policy name (`PRECISIONS`). Under
"mixed_float16" or "mixed_bfloat16" the networks compute in 16 bits while
their variables, the logits, the loss, the optimizers and the controller
stay float32 (Keras' mixed-precision recipe):

- `policy(name)` builds Keras objects under a policy without leaking it:
  the global policy is set for the block and restored after, so what is
  built later (the controller, the inference twin) stays float32.
- `loss_scaled(name, optimizer)` wraps a Keras optimizer in
  `keras.optimizers.LossScaleOptimizer` for "mixed_float16" (final
  training with `Model.fit`).
- `LossScale` is dynamic loss scaling for a hand-written step (the
  search's child step): scale the loss, unscale the gradients, skip a step
  whose gradients overflowed and halve the scale, double it after
  `growth_steps` good steps.

float16 has 5 exponent bits, so small gradients underflow unless the loss is
scaled; bfloat16 has float32's exponent range and needs no scaling.

XLA (`jit_compile`): final training compiles; the search's child step does
not (`refuse_search_jit_compile`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from enas_tf.errors import UserError

# TensorFlow and Keras are imported where used: `enas_tf.configs.image` checks a
# precision (`check_precision`) before anything heavy is imported.

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")

# Keras' LossScaleOptimizer defaults: start high, since a scale too high
# falls fast (halved per overflow) and one too low rises slowly.
INITIAL_SCALE = 2.0**15
GROWTH_STEPS = 2000

SEARCH_JIT_MESSAGE = (
    "enas-search cannot compile its child step with XLA (--jit_compile): in the "
    "supernets' gradient, the 1x1 convolutions over the concatenated skip "
    "inputs or loose ends have an input-channel count set by the architecture "
    'tensor, and XLA refuses it ("Dynamic output feature dim on convolution '
    'kernel is not supported", Conv2DBackpropInput; checked on TF 2.21 for '
    "both micro and macro supernets); the language-model search is not "
    "compiled either. Drop --jit_compile; final training (enas-train "
    "--jit_compile) compiles."
)


def check_precision(name: str) -> None:
    """Raises UserError unless `name` is one of `PRECISIONS`."""
    if name not in PRECISIONS:
        raise UserError(
            f"precision must be one of {', '.join(PRECISIONS)}; received "
            f"{name!r}. Use mixed_bfloat16 on CPUs and TPUs, mixed_float16 "
            f"on NVIDIA GPUs (with loss scaling), float32 to compute as "
            f"before."
        )


def uses_loss_scale(name: str) -> bool:
    """True for float16 compute, whose gradients need loss scaling."""
    return name == "mixed_float16"


def refuse_search_jit_compile() -> None:
    """Raises the UserError that explains why a search cannot use XLA."""
    raise UserError(SEARCH_JIT_MESSAGE)


@contextlib.contextmanager
def policy(name: str) -> Iterator[None]:
    """Keras' global dtype policy is `name` inside the block, then restored.

    Layers take their policy when constructed, so build the networks inside
    the block and everything else (controllers, inference twins) outside.
    The policy is process-global: do not build other models in another
    thread meanwhile.

    Raises:
      UserError: for a name not in `PRECISIONS`.
    """
    import keras

    check_precision(name)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def loss_scaled(name: str, optimizer, initial_scale: float = INITIAL_SCALE):
    """`optimizer` in a `LossScaleOptimizer` for "mixed_float16", else as is.

    `Model.fit` multiplies the loss by the scale; the wrapper divides the
    gradients by it, skips a step with overflowed (non-finite) gradients and
    halves the scale, and doubles it after `GROWTH_STEPS` good steps.
    """
    import keras

    if not uses_loss_scale(name):
        return optimizer
    return keras.optimizers.LossScaleOptimizer(
        optimizer, initial_scale=initial_scale, dynamic_growth_steps=GROWTH_STEPS
    )


class LossScale:
    """Dynamic loss scaling of a hand-written training step.

    The rules of Keras' `LossScaleOptimizer`, except that a non-finite loss
    is not an overflow but a failed step (the forward pass, which scaling
    does not touch, produced it), and so is an overflow at scale 1 (the
    gradient itself is not finite): the caller counts those as non-finite
    steps (`enas_tf.runtime.nonfinite`). The scale never drops below 1.

    Create it under the strategy's scope; `scale_loss` and `unscale` run in
    a replica context, `update` in the cross-replica context (or with no
    strategy) with flags all-reduced over the replicas, so every replica's
    copy of the state stays equal.

    Args:
      initial_scale: the first scale (float32).
      growth_steps: good steps in a row after which the scale doubles.
    """

    def __init__(self, initial_scale: float = INITIAL_SCALE, growth_steps: int = GROWTH_STEPS):
        if initial_scale < 1 or growth_steps < 1:
            raise ValueError(
                f"Need initial_scale >= 1 and growth_steps >= 1; received "
                f"{initial_scale} and {growth_steps}."
            )
        import tensorflow as tf

        self.growth_steps = int(growth_steps)
        self.scale = tf.Variable(
            float(initial_scale), dtype=tf.float32, trainable=False, name="loss_scale"
        )
        self.good_steps = tf.Variable(
            0, dtype=tf.int64, trainable=False, name="loss_scale_good_steps"
        )

    def checkpoint(self):
        """The scale and the good-step count (`tf.train.Checkpoint`)."""
        import tensorflow as tf

        return tf.train.Checkpoint(scale=self.scale, good_steps=self.good_steps)

    def scale_loss(self, loss):
        """`loss * scale` (float32)."""
        import tensorflow as tf

        return loss * tf.cast(self.scale, loss.dtype)

    def unscale(self, grads) -> list:
        """Each gradient divided by the scale (None kept)."""
        inverse = 1.0 / self.scale
        return [None if g is None else _multiply(g, inverse) for g in grads]

    def classify(self, loss_bad, grads_bad):
        """`(failed, overflow)` bool scalars of a step.

        Args:
          loss_bad: > 0 when the (unscaled) loss was not finite (on some
            replica: a sum of flags).
          grads_bad: > 0 when a gradient was not finite.

        Returns:
          failed: a non-finite step to count (loss not finite, or an
            overflow at scale 1); overflow: skipped for the scale only.
        """
        import tensorflow as tf

        loss_bad = tf.greater(loss_bad, 0)
        grads_bad = tf.greater(grads_bad, 0)
        overflow = tf.logical_and(
            tf.logical_and(grads_bad, tf.logical_not(loss_bad)), tf.greater(self.scale, 1.0)
        )
        failed = tf.logical_and(tf.logical_or(loss_bad, grads_bad), tf.logical_not(overflow))
        return failed, overflow

    def update(self, overflow, applied) -> None:
        """Halves the scale (not below 1) after an overflow; doubles it after
        `growth_steps` applied steps in a row. A failed step changes nothing."""
        import tensorflow as tf

        overflow = tf.convert_to_tensor(overflow, tf.bool)
        applied = tf.convert_to_tensor(applied, tf.bool)
        good = self.good_steps + tf.cast(applied, tf.int64)
        grow = tf.logical_and(applied, good >= self.growth_steps)
        scale = tf.where(
            overflow,
            tf.maximum(self.scale * 0.5, 1.0),
            tf.where(grow, self.scale * 2.0, self.scale),
        )
        good = tf.where(tf.logical_or(overflow, grow), tf.zeros_like(good), good)
        self.scale.assign(scale)
        self.good_steps.assign(good)


def _multiply(grad, factor):
    import tensorflow as tf

    if isinstance(grad, tf.IndexedSlices):
        return tf.IndexedSlices(
            grad.values * tf.cast(factor, grad.values.dtype), grad.indices, grad.dense_shape
        )
    return grad * tf.cast(factor, grad.dtype)


__all__ = [
    "GROWTH_STEPS",
    "INITIAL_SCALE",
    "LossScale",
    "PRECISIONS",
    "SEARCH_JIT_MESSAGE",
    "check_precision",
    "loss_scaled",
    "policy",
    "refuse_search_jit_compile",
    "uses_loss_scale",
]
