"""DARTS's steps on a relaxed network, as plain functions.

`make_darts_steps` returns the `tf.function`s of a DARTS search
(`enas_tf.search.darts`): the architecture step (alpha's gradient on a
validation batch, first or second order; one Adam step), the weight step
(SGD on a training batch at the current mixing weights) and an evaluation
batch at given mixing weights. The mixing weights are a tensor, so one trace
serves every alpha and every one-hot architecture.

Losses (DARTS's code): the weights' training loss is the cross-entropy plus
`l2 * sum(w ** 2)` over the weights (DARTS's SGD weight decay 3e-4 is
`l2` = 1.5e-4); the validation loss of alpha is the cross-entropy alone.
Batch norm normalises with the batch's statistics in every step (DARTS keeps
its network in training mode during the search); the architecture step
leaves the moving statistics as they were, so only the weight step moves
them.

Second order (DARTS eq. 7-8): with `xi` the weights' current learning
rate and `w' = w - xi * dL_train/dw (w, alpha)`,

    dL_val(w', alpha)/dalpha - xi * (dL_train/dalpha (w+, alpha)
                                   - dL_train/dalpha (w-, alpha)) / (2 eps)

with `w+- = w +- eps * dL_val/dw' (w', alpha)` and
`eps = 0.01 / ||dL_val/dw'||`. The weights take the values w', w+ and w-
in turn and are restored after. `unrolled_alpha_gradient` is that
computation, testable on its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from enas_tf.runtime import nonfinite
from enas_tf.search.steps import correct_predictions

# DARTS's finite-difference step: eps = R / ||grad||.
FINITE_DIFFERENCE_R = 0.01


@dataclasses.dataclass(frozen=True)
class DartsSteps:
    """The traced steps.

    Attributes:
      architecture: `(train_batch, valid_batch) -> valid loss`; one Adam step
        of alpha.
      weights: `(train_batch) -> (loss, accuracy, finite)`; one SGD step of
        the weights (skipped when not finite).
      evaluate: `(batch, mix) -> (correct predictions, examples)` with the
        batch's statistics, nothing updated.
    """

    architecture: Callable[..., Any]
    weights: Callable[..., Any]
    evaluate: Callable[..., Any]


def cross_entropy(net, images, labels, mix) -> tuple[tf.Tensor, tf.Tensor]:
    """(mean cross-entropy, logits) of the relaxed `net` at `mix`, batch
    statistics."""
    logits = net([images, mix], training=True)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    return tf.reduce_mean(losses), logits


def training_loss(net, images, labels, mix, l2: float) -> tuple[tf.Tensor, tf.Tensor]:
    """(cross-entropy + l2 * sum of squared weights, logits)."""
    loss, logits = cross_entropy(net, images, labels, mix)
    if l2 > 0:
        squares = tf.add_n([tf.reduce_sum(tf.square(v)) for v in net.trainable_variables])
        loss += tf.cast(l2 * squares, loss.dtype)
    return loss, logits


def _assign(variables, values) -> None:
    for v, value in zip(variables, values):
        v.assign(value)


def unrolled_gradient(
    weights: list[tf.Variable],
    alpha: tf.Variable,
    mix_fn,
    train_loss,
    valid_loss,
    xi,
    *,
    r: float = FINITE_DIFFERENCE_R,
    grad_bound: float = 0.0,
) -> tuple[tf.Tensor, tf.Tensor, Any]:
    """DARTS's second-order gradient of a validation loss w.r.t. `alpha`
    (module docstring), for any model: returns (gradient, validation loss
    at w', `valid_loss`'s second output).

    Args:
      weights: the model's trainable variables (w; restored on return).
      alpha: the architecture parameters.
      mix_fn: alpha -> the model's mixing weights.
      train_loss: mix -> the scalar training loss at the weights' current
        values (its randomness, e.g. dropout masks, fixed across calls).
      valid_loss: mix -> (scalar validation loss, anything).
      xi: the virtual step's learning rate.
      r: the finite difference's radius, eps = r / ||dL_val/dw'||.
      grad_bound: global-norm clipping of the virtual step's gradient, as
        the weight step clips (0: none).
    """
    saved = nonfinite.snapshot(weights)

    def dense(grads):
        return [
            tf.zeros_like(w) if g is None else tf.convert_to_tensor(g) for g, w in zip(grads, saved)
        ]

    with tf.GradientTape() as tape:
        loss = train_loss(mix_fn(alpha))
    grads = dense(tape.gradient(loss, weights))
    if grad_bound > 0:
        grads, _ = tf.clip_by_global_norm(grads, grad_bound)
    _assign(weights, [w - tf.cast(xi, w.dtype) * g for w, g in zip(saved, grads)])  # w'
    with tf.GradientTape() as tape:
        unrolled_loss, extra = valid_loss(mix_fn(alpha))
    alpha_grad, *valid_grads = tape.gradient(unrolled_loss, [alpha, *weights])
    valid_grads = dense(valid_grads)
    eps = r / tf.maximum(tf.linalg.global_norm(valid_grads), 1e-12)

    def train_alpha_gradient(sign):
        _assign(weights, [w + sign * tf.cast(eps, w.dtype) * g for w, g in zip(saved, valid_grads)])
        with tf.GradientTape() as tape:
            loss = train_loss(mix_fn(alpha))
        return tape.gradient(loss, alpha)

    plus, minus = train_alpha_gradient(1.0), train_alpha_gradient(-1.0)  # w+, w-
    _assign(weights, saved)
    xi, eps = tf.cast(xi, alpha_grad.dtype), tf.cast(eps, alpha_grad.dtype)
    return alpha_grad - xi * (plus - minus) / (2.0 * eps), unrolled_loss, extra


def unrolled_alpha_gradient(
    net,
    alpha: tf.Variable,
    mix_fn,
    train_batch,
    valid_batch,
    xi,
    l2: float,
    r: float = FINITE_DIFFERENCE_R,
) -> tuple[tf.Tensor, tf.Tensor]:
    """`unrolled_gradient` of a relaxed image network; returns (gradient,
    validation loss at w').

    Args:
      net: the relaxed network, called as `net([images, mix])`.
      alpha: the architecture parameters.
      mix_fn: alpha -> the network's mixing weights.
      train_batch, valid_batch: `(images, labels)`.
      xi: the virtual step's learning rate.
      l2: the training loss's L2 weight.
      r: the finite difference's radius, eps = r / ||dL_val/dw'||.
    """
    (train_images, train_labels), (valid_images, valid_labels) = train_batch, valid_batch

    def train_loss(mix):
        return training_loss(net, train_images, train_labels, mix, l2)[0]

    def valid_loss(mix):
        return cross_entropy(net, valid_images, valid_labels, mix)[0], ()

    grad, loss, _ = unrolled_gradient(
        net.trainable_variables, alpha, mix_fn, train_loss, valid_loss, xi, r=r
    )
    return grad, loss


def first_order_alpha_gradient(net, alpha, mix_fn, valid_batch) -> tuple[tf.Tensor, tf.Tensor]:
    """(dL_val/dalpha at the current weights, validation loss)."""
    images, labels = valid_batch
    with tf.GradientTape() as tape:
        loss, _ = cross_entropy(net, images, labels, mix_fn(alpha))
    return tape.gradient(loss, alpha), loss


def make_darts_steps(
    net,
    optimizer,
    architecture,
    batch_spec,
    *,
    order: int,
    l2: float,
    grad_bound: float,
) -> DartsSteps:
    """The steps of a DARTS search.

    Args:
      net: the relaxed network (`enas_tf.supernet.relaxed`).
      optimizer: the weights' SGD (its learning rate is the second-order
        step's xi).
      architecture: `ArchitectureParameters` (alpha, `mix`, `mix_of`,
        `apply_gradient`).
      batch_spec: the element spec of an `(images, labels)` batch.
      order: 1 or 2 (module docstring).
      l2: the training loss's L2 weight.
      grad_bound: global-norm clipping of the weights' gradient (0: none).
    """
    alpha = architecture.alpha
    mix_spec = tf.TensorSpec(alpha.shape, tf.float32)

    @tf.function(input_signature=[batch_spec, batch_spec], autograph=False)
    def architecture_step(train_batch, valid_batch):
        statistics = nonfinite.snapshot(net.non_trainable_variables)
        if order == 1:
            grad, loss = first_order_alpha_gradient(net, alpha, architecture.mix_of, valid_batch)
        else:
            xi = tf.cast(optimizer.learning_rate, tf.float32)
            grad, loss = unrolled_alpha_gradient(
                net, alpha, architecture.mix_of, train_batch, valid_batch, xi, l2
            )
        finite = nonfinite.all_finite(loss, [grad])
        grad = tf.where(finite, grad, tf.zeros_like(grad))
        _assign(net.non_trainable_variables, statistics)
        # A non-finite gradient leaves alpha (and Adam's moments) unchanged.
        tf.cond(finite, lambda: _apply(architecture, grad), lambda: tf.constant(False))
        return loss

    @tf.function(input_signature=[batch_spec], autograph=False)
    def weight_step(batch):
        images, labels = batch
        mix = tf.stop_gradient(architecture.mix())
        statistics = nonfinite.snapshot(net.non_trainable_variables)
        variables = net.trainable_variables
        with tf.GradientTape() as tape:
            loss, logits = training_loss(net, images, labels, mix, l2)
        grads = tape.gradient(loss, variables)
        finite = nonfinite.all_finite(loss, grads)
        if grad_bound > 0:
            grads, _ = tf.clip_by_global_norm(grads, grad_bound)
        nonfinite.apply_if_finite(optimizer, grads, variables, finite)
        nonfinite.restore_unless(finite, net.non_trainable_variables, statistics)
        count = tf.cast(tf.shape(labels)[0], tf.float32)
        return loss, correct_predictions(logits, labels) / count, finite

    @tf.function(input_signature=[batch_spec, mix_spec], autograph=False)
    def evaluate(batch, mix):
        images, labels = batch
        statistics = nonfinite.snapshot(net.non_trainable_variables)
        logits = net([images, mix], training=True)
        correct = correct_predictions(logits, labels)
        _assign(net.non_trainable_variables, statistics)
        return correct, tf.cast(tf.shape(labels)[0], tf.float32)

    return DartsSteps(architecture=architecture_step, weights=weight_step, evaluate=evaluate)


def _apply(architecture, grad) -> tf.Tensor:
    architecture.apply_gradient(grad)
    return tf.constant(True)
