"""Losses, steps and evaluation of the enas_lm language models.

Training (ENAS_LM_REFERENCE sec. 2.2-2.6, 5.1-5.2): the loss is the mean
token cross-entropy plus regularisers (`Regularizers`, training loss only;
reported cross-entropies are plain); gradients are clipped by their global
norm and the learning rate is scaled per step by `T / 35`, `T` the sampled
window length (`sample_bptt_length`, `random_windows`, `bptt_lr_scale`).

Evaluation (sec. 5.3): no dropout; sum the token negative log-likelihoods
and count the tokens, carrying the state across windows;
`perplexity = exp(sum / count)`.

`make_train_step` and `make_eval_step` build `tf.function`s with an input
signature: batch and time are `None` (random BPTT lengths share the trace)
and the arc is an int32 `[2 L]` tensor, so one trace serves every arc.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from enas_tf.data.ptb import batchify, windows
from enas_tf.lm.model import SharedRnnLM
from enas_tf.runtime import nonfinite

WEIGHT_PENALTIES = ("quartic", "l2", "none")


@dataclasses.dataclass(frozen=True)
class Regularizers:
    """Terms added to the training loss only (spec sec. 2.4, 5.1, 5.2).

    Defaults are the search values (`child.py`); `FIXED_GPU_REGULARIZERS`
    and `FIXED_TPU_REGULARIZERS` are the final-training ones.

    Attributes:
      alpha: AR, `alpha * mean(h^2)` over the undropped outputs `[B, T, H]`.
      beta: TAR (slowness), `beta * mean((h_{t+1} - h_t)^2)` over
        `[B, T - 1, H]`, undropped outputs, within the window.
      weight_decay: coefficient of the weight penalty.
      weight_penalty: "quartic": `1/2 sum w^4` over `W_0` and the selected
        node matrices (the search code applies `l2_loss` to `w**2`; it also
        leaves node 1's matrix out by an off-by-one slice, which we treat as
        a bug: node 1 is included; the embedding is not); "l2": `sum w^2`
        over every weight of the (selected) child, embedding included, as
        the fixed recipes (no 1/2); "none".
    """

    alpha: float = 0.0
    beta: float = 1.0
    weight_decay: float = 8e-7
    weight_penalty: str = "quartic"

    def __post_init__(self) -> None:
        if self.weight_penalty not in WEIGHT_PENALTIES:
            raise ValueError(
                f"Expected weight_penalty in {WEIGHT_PENALTIES}; received: {self.weight_penalty!r}."
            )
        for name in ("alpha", "beta", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"Expected {name} >= 0; received: {getattr(self, name)}.")


SEARCH_REGULARIZERS = Regularizers()
FIXED_GPU_REGULARIZERS = Regularizers(alpha=0.7, beta=0.0, weight_penalty="l2")
FIXED_TPU_REGULARIZERS = Regularizers(alpha=0.0, beta=0.0, weight_penalty="l2")


def token_nll(logits: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """float32 `[batch, time]` negative log-likelihoods of `targets`."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(targets, tf.int32), logits=tf.cast(logits, tf.float32)
    )


def regularization(
    model: Any, hidden: tf.Tensor, arc: Any, regularizers: Regularizers
) -> dict[str, tf.Tensor]:
    """The regularisers' values (already weighted), float32 scalars.

    Args:
      model: a `SharedRnnLM` or `FixedRnnLM`.
      hidden: `[batch, time, hidden]` undropped outputs (`LMOutput.hidden`).
      arc: the arc tensor (shared model) or None.
      regularizers: the coefficients.

    Returns:
      `{"ar", "tar", "weight_penalty"}`.
    """
    h = tf.cast(hidden, tf.float32)
    zero = tf.constant(0.0)
    ar = regularizers.alpha * tf.reduce_mean(h * h) if regularizers.alpha else zero
    tar = zero
    if regularizers.beta:
        diff = h[:, 1:] - h[:, :-1]
        # A window of one step has no pair: 0, not the NaN of an empty mean.
        size = tf.maximum(tf.cast(tf.size(diff), tf.float32), 1.0)
        tar = regularizers.beta * tf.reduce_sum(diff * diff) / size
    penalty = zero
    if regularizers.weight_decay and regularizers.weight_penalty != "none":
        kernels = [tf.cast(w, tf.float32) for w in model.kernels(arc)]
        if regularizers.weight_penalty == "quartic":
            total = tf.add_n([0.5 * tf.reduce_sum(tf.square(w * w)) for w in kernels])
        else:
            kernels.append(tf.cast(model.embedding.value, tf.float32))
            total = tf.add_n([tf.reduce_sum(w * w) for w in kernels])
        penalty = regularizers.weight_decay * total
    return {"ar": ar, "tar": tar, "weight_penalty": penalty}


def training_loss(
    model: Any,
    tokens: tf.Tensor,
    targets: tf.Tensor,
    state: tf.Tensor | None = None,
    arc: Any = None,
    regularizers: Regularizers = SEARCH_REGULARIZERS,
    masks: Any = None,
) -> tuple[tf.Tensor, tf.Tensor, dict[str, tf.Tensor]]:
    """The training objective of one window (dropout on).

    Args:
      model: a `SharedRnnLM` (with `arc`) or `FixedRnnLM`.
      tokens, targets: int32 `[batch, time]`; targets are tokens shifted by 1.
      state: `[batch, hidden]` carried state, or None for zeros.
      arc: int32 `[2 L]` tensor for the shared model.
      regularizers: the terms to add.
      masks: the dropout masks (`model.dropout_masks`), or None for fresh
        ones.

    Returns:
      `(loss, new_state, terms)`: the scalar objective (mean cross-entropy
      plus regularisers), h_T, and float32 scalars `cross_entropy`, `ar`,
      `tar`, `weight_penalty`.
    """
    if masks is None:
        output = model(tokens, state=state, arc=arc, training=True)
    else:
        output = model.forward(tokens, state, arc, masks)
    cross_entropy = tf.reduce_mean(token_nll(output.logits, targets))
    terms = regularization(model, output.hidden, arc, regularizers)
    loss = cross_entropy + tf.add_n(list(terms.values()))
    return loss, output.state, {"cross_entropy": cross_entropy, **terms}


def evaluation_loss(
    model: Any,
    tokens: tf.Tensor,
    targets: tf.Tensor,
    state: tf.Tensor | None = None,
    arc: Any = None,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """`(sum of token NLLs, token count, new state)` of one window, no
    dropout and no regularisers (float32, float32, `[batch, hidden]`)."""
    output = model(tokens, state=state, arc=arc, training=False)
    nll = token_nll(output.logits, targets)
    return tf.reduce_sum(nll), tf.cast(tf.size(nll), tf.float32), output.state


def perplexity(nll_sum: float, count: float) -> float:
    """`exp(nll_sum / count)`, the perplexity of summed NLLs (inf when a
    diverged model's mean NLL is too large for a float)."""
    if not count > 0:
        raise ValueError(f"Expected a positive token count; received: {count}.")
    try:
        return math.exp(float(nll_sum) / float(count))
    except OverflowError:
        return math.inf


def clip_gradients(
    gradients: list[Any],
    bound: float | None,
) -> tuple[list[Any], tf.Tensor]:
    """Clips by global norm (spec sec. 2.5; `IndexedSlices` stay sparse).

    Returns:
      `(clipped, global_norm)`; with `bound` None only the norm is computed.
    """
    norm = tf.linalg.global_norm([g for g in gradients if g is not None])
    if bound is None:
        return list(gradients), norm
    clipped, _ = tf.clip_by_global_norm(gradients, bound, use_norm=norm)
    return clipped, norm


def scale_gradient(gradient: Any, scale: tf.Tensor) -> Any:
    """`scale * gradient` for a dense tensor or `IndexedSlices`."""
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values * scale, gradient.indices, gradient.dense_shape)
    return gradient * scale


def bptt_lr_scale(length: int, base: float = 35.0) -> float:
    """The learning-rate factor of a window of `length` steps: `length / base`
    (spec sec. 2.5, base 35)."""
    return float(length) / float(base)


def sample_bptt_length(
    rng: np.random.Generator,
    base: float = 35.0,
    short_prob: float = 0.05,
    std: float = 5.0,
    max_length: int = 55,
) -> int:
    """A random window length (spec sec. 2.6, `random_len=True`).

    The mean is `base` with probability `1 - short_prob`, else `base / 2`;
    the length is a normal draw with that mean and `std`, truncated to
    +-2 std, cast to int (truncation), capped at `max_length`: in [25, 44]
    for base 35, [7, 27] for 17.5. At least 1.
    """
    mean = base if rng.random() >= short_prob else base / 2.0
    while True:
        z = rng.normal()
        if abs(z) <= 2.0:
            break
    return max(1, min(int(mean + std * z), max_length))


def random_windows(
    batched: np.ndarray,
    rng: np.random.Generator,
    base: float = 35.0,
    **length_args: Any,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of random-length windows over a `batchify`d stream.

    Spec sec. 2.6: from `start = 0`, each window takes a length
    `T = min(sample_bptt_length(...), batch_len - start - 1)` and yields
    `x = data[:, start:start+T]`, `y = data[:, start+1:start+T+1]`; the
    epoch ends after the window that brings `start` to `batch_len - 3` or
    beyond. Train with `bptt_lr_scale(x.shape[1], base)`.

    Args:
      batched: int `[batch, batch_len]`, `batch_len >= 5`.
      rng: numpy generator of the lengths.
      base: mean window length (35).
      **length_args: more `sample_bptt_length` arguments.

    Yields:
      `(x, y)`, int32 `[batch, T]`.
    """
    data = np.asarray(batched, np.int32)
    batch_len = data.shape[1]
    if batch_len < 5:
        raise ValueError(f"Expected rows of >= 5 tokens; received {batch_len}.")
    start = 0
    while start < batch_len - 3:
        length = sample_bptt_length(rng, base, **length_args)
        length = min(length, batch_len - start - 1)
        yield data[:, start : start + length], data[:, start + 1 : start + length + 1]
        start += length


def _signature(model: Any) -> list[tf.TensorSpec]:
    tokens = tf.TensorSpec([None, None], tf.int32)
    state = tf.TensorSpec([None, model.hidden_size], model.compute_dtype)
    return [tokens, tokens, state]


def _arc_spec(model: Any) -> list[tf.TensorSpec]:
    """The `arc` argument's spec: an int32 arc (`SharedRnnLM`), float32
    mixing weights (DARTS's `RelaxedRnnLM`, which has `mix_shape`), or none."""
    if isinstance(model, SharedRnnLM):
        return [tf.TensorSpec([model.space.num_decisions], tf.int32)]
    if hasattr(model, "mix_shape"):
        return [tf.TensorSpec(model.mix_shape, tf.float32)]
    return []


def make_train_step(
    model: Any,
    optimizer: keras.optimizers.Optimizer,
    regularizers: Regularizers = SEARCH_REGULARIZERS,
    grad_bound: float | None = 0.1,
) -> Any:
    """A `tf.function` SGD step: `step(tokens, targets, state, lr_scale[, arc])`.

    Forward with dropout, loss plus regularisers, gradient, global-norm clip
    at `grad_bound`, gradients times `lr_scale`, `optimizer.apply`. A step
    whose loss or gradients are not all finite applies nothing (the
    weights and optimizer stay as they were; `enas_tf.runtime.nonfinite`) and
    returns the incoming state unchanged. Scaling
    the clipped gradient by `lr_scale` equals scaling the learning rate for
    plain SGD, the optimiser of every enas_lm recipe (spec sec. 2.5, 5.1);
    with momentum or Adam it would not. Unselected `skip` rows of the shared
    model get no gradient (`IndexedSlices`), so SGD leaves them unchanged.

    Args:
      model: a `SharedRnnLM` (then `arc`, int32 `[2 L]`, is the last
        argument) or `FixedRnnLM`.
      optimizer: e.g. `keras.optimizers.SGD(20.0)`.
      regularizers: training-loss terms.
      grad_bound: global-norm bound (0.1 search, 0.25 fixed), or None.

    Returns:
      The `tf.function`; it returns `(new_state, metrics)` with float32
      `loss`, `cross_entropy`, `ar`, `tar`, `weight_penalty`, `grad_norm`
      (before clipping) and bool `finite` (False: the update was skipped).
    """
    variables = model.trainable_variables
    optimizer.build(variables)

    def step(tokens, targets, state, lr_scale, arc=None):
        with tf.GradientTape() as tape:
            loss, new_state, terms = training_loss(model, tokens, targets, state, arc, regularizers)
        gradients = tape.gradient(loss, variables)
        finite = nonfinite.all_finite(loss, gradients)
        gradients, norm = clip_gradients(gradients, grad_bound)
        gradients = [scale_gradient(g, lr_scale) for g in gradients]
        nonfinite.apply_if_finite(optimizer, gradients, variables, finite)
        # A skipped step does not carry a NaN state into the next window.
        new_state = tf.nest.map_structure(
            lambda new, old: tf.where(finite, new, old), new_state, state
        )
        return new_state, {"loss": loss, **terms, "grad_norm": norm, "finite": finite}

    signature = [*_signature(model), tf.TensorSpec([], tf.float32), *_arc_spec(model)]
    return tf.function(step, input_signature=signature, autograph=False)


def make_eval_step(model: Any) -> Any:
    """A `tf.function` of `evaluation_loss`: `step(tokens, targets, state[,
    arc])` -> `(nll_sum, count, new_state)`."""

    def step(tokens, targets, state, arc=None):
        return evaluation_loss(model, tokens, targets, state, arc)

    signature = [*_signature(model), *_arc_spec(model)]
    return tf.function(step, input_signature=signature, autograph=False)


def evaluate(
    model: Any,
    ids: np.ndarray,
    batch_size: int,
    bptt: int = 35,
    arc: Any = None,
    eval_step: Any = None,
) -> float:
    """Perplexity over a token stream, GPU protocol (spec sec. 5.3).

    The stream is cut into `batch_size` rows and read in `bptt` windows in
    order; the state starts at zero and is carried across windows; the tail
    past the last full window is dropped.

    Args:
      model: a `SharedRnnLM` (with `arc`) or `FixedRnnLM`.
      ids: int `[N]` token ids.
      batch_size, bptt: window shape (64 x 35 valid; 1 x 1 test).
      arc: the arc, for the shared model.
      eval_step: a `make_eval_step(model)` to reuse its trace, or None.

    Returns:
      `exp(total NLL / token count)`.
    """
    step = eval_step or make_eval_step(model)
    extra = [] if arc is None else [tf.constant(arc, _arc_spec(model)[0].dtype)]
    state = model.initial_state(batch_size)
    total = count = 0.0
    for x, y in windows(batchify(ids, batch_size), bptt):
        nll, n, state = step(x, y, state, *extra)
        total += float(nll)
        count += float(n)
    return perplexity(total, count)


__all__ = [
    "FIXED_GPU_REGULARIZERS",
    "FIXED_TPU_REGULARIZERS",
    "SEARCH_REGULARIZERS",
    "WEIGHT_PENALTIES",
    "Regularizers",
    "bptt_lr_scale",
    "clip_gradients",
    "evaluate",
    "evaluation_loss",
    "make_eval_step",
    "make_train_step",
    "perplexity",
    "random_windows",
    "regularization",
    "sample_bptt_length",
    "scale_gradient",
    "token_nll",
    "training_loss",
]
