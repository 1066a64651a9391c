"""Training epochs and whole-stream evaluation of the enas_lm models.

Used by the search (`enas_tf.search.lm`) and final training
(`enas_tf.train.lm`); the steps come from `enas_tf.lm.steps`.

`train_epoch` reads windows of a `batchify`d training text in order
(ENAS_LM_REFERENCE sec. 2.6): each window's length is drawn around `bptt`
(`random_bptt`; the TPU recipe uses fixed windows), the learning rate is
scaled by `T / bptt`, and the hidden state is carried from window to window.
The epoch ends after the window that reaches the end of the text (the next
one starts again at column 0 from a zero state), or after `max_steps`
windows: then the next epoch continues from there, so small epochs still
cover the whole text.

`evaluate_stream` scores every target of a token stream with the state
carried. With batch 1 it gives the test protocol of spec sec. 5.3 (BPTT 1,
82,429 one-token steps on PTB) exactly: the recurrence is the same whether
the stream is fed one token or `window` tokens per call, only the number of
calls changes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from enas_tf.data.ptb import batchify, windows
from enas_tf.errors import UserError
from enas_tf.lm.steps import bptt_lr_scale, perplexity, sample_bptt_length

# Tokens per call when scoring a stream at batch 1 (spec sec. 5.3 protocol).
TEST_WINDOW = 1000
_MEANS = ("loss", "cross_entropy", "ar", "tar", "weight_penalty", "grad_norm")


@dataclasses.dataclass(frozen=True)
class EpochResult:
    """What `train_epoch` did.

    Attributes:
      position: the column where the next epoch starts (0 after the end).
      steps: windows trained on.
      wrapped: whether the epoch reached the end of the text.
      metrics: means over the steps of `loss`, `cross_entropy`, `ar`,
        `tar`, `weight_penalty`, `grad_norm`, and `perplexity`,
        `exp(token-weighted mean cross-entropy)`.
    """

    position: int
    steps: int
    wrapped: bool
    metrics: dict[str, float]


def train_rows(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """The training text as `batchify` rows, checked for `train_epoch`.

    Raises:
      UserError: when a row would hold fewer than 5 tokens.
    """
    if len(ids) < 5 * batch_size:
        raise UserError(
            f"The train split has {len(ids)} tokens, too few for --batch_size="
            f"{batch_size} rows of at least 5 tokens; give a smaller --batch_size."
        )
    return batchify(ids, batch_size)


def split_windows(
    ids: np.ndarray, batch_size: int, bptt: int, split: str, flag: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The `bptt` windows of `batchify(ids, batch_size)`, in order.

    Raises:
      UserError: naming `split` and `flag` when there is no whole window.
    """
    rows = len(ids) // batch_size
    if rows < bptt + 1:
        raise UserError(
            f"The {split} split ({len(ids)} tokens) is too short for {flag}="
            f"{batch_size} and --bptt={bptt}: each of its rows would hold {rows} "
            f"tokens, and one window needs {bptt + 1}. Give a smaller {flag} or --bptt."
        )
    return list(windows(batchify(ids, batch_size), bptt))


def window_length(
    rng: np.random.Generator, bptt: int, random_bptt: bool, position: int, batch_len: int
) -> int:
    """The next window's length: random around `bptt` (spec sec. 2.6) or
    `bptt`, capped so that the targets stay inside the row."""
    length = sample_bptt_length(rng, float(bptt)) if random_bptt else bptt
    return max(1, min(length, batch_len - position - 1))


def train_epoch(
    step: Any,
    batched: np.ndarray,
    initial_state: tf.Tensor,
    rng: np.random.Generator,
    *,
    start: int = 0,
    bptt: int = 35,
    random_bptt: bool = True,
    max_steps: int = 0,
    arc_fn: Callable[[], tf.Tensor] | None = None,
    before_step: Callable[[np.ndarray, np.ndarray, tf.Tensor], Any] | None = None,
    after_step: Callable[[], Any] | None = None,
    verbose: int = 0,
    nonfinite: Any = None,
) -> EpochResult:
    """Trains on the windows of one epoch (module docstring).

    Args:
      step: a `lm_training.make_train_step` function.
      batched: int32 `[batch, batch_len]` training text (`batchify`),
        batch_len >= 5.
      initial_state: the zero state `[batch, hidden]`.
      rng: numpy generator of the window lengths.
      start: the column to start from (a previous `EpochResult.position`).
      bptt: mean window length; the learning-rate scale is `T / bptt`.
      random_bptt: random lengths (True) or fixed `bptt` windows.
      max_steps: stop after this many windows (0: at the end of the text).
      arc_fn: returns the int32 arc of each step (shared model), or None.
      before_step: called as `before_step(x, y, state)` with each training
        window and its carried state before its step (e.g. DARTS's
        architecture step, which needs the window), or None.
      after_step: called after every step (e.g. iterate averaging).
      verbose: 1 for a progress bar.
      nonfinite: an `enas_tf.runtime.nonfinite.NonFiniteCounter` told of every step
        (it raises UserError after too many skipped steps in a row), or None.
        Skipped steps stay out of the means; `nonfinite_steps` counts them.

    Returns:
      An `EpochResult`.
    """
    batch_len = batched.shape[1]
    position, steps, tokens, weighted, skipped = start, 0, 0, 0.0, 0
    if position >= batch_len - 3:
        position = 0
    state, sums = initial_state, dict.fromkeys(_MEANS, 0.0)
    bar = keras.utils.Progbar(None, verbose=verbose, stateful_metrics=["perplexity"])
    wrapped = False
    while not max_steps or steps < max_steps:
        length = window_length(rng, bptt, random_bptt, position, batch_len)
        x = batched[:, position : position + length]
        y = batched[:, position + 1 : position + length + 1]
        if before_step is not None:
            before_step(x, y, state)
        extra = [] if arc_fn is None else [arc_fn()]
        scale = tf.constant(bptt_lr_scale(length, bptt), tf.float32)
        state, metrics = step(x, y, state, scale, *extra)
        if after_step is not None:
            after_step()
        finite = bool(metrics.get("finite", True))
        if nonfinite is not None:
            nonfinite.update(finite, steps)
        if finite:
            values = {key: float(metrics[key]) for key in _MEANS}
            for key in _MEANS:
                sums[key] += values[key]
            tokens += length
            weighted += values["cross_entropy"] * length
        else:
            skipped += 1
        steps += 1
        position += length
        if tokens:
            bar.update(steps, [("perplexity", math.exp(min(weighted / tokens, 50.0)))])
        if position >= batch_len - 3:
            position, wrapped = 0, True
            break
    good = max(steps - skipped, 1)
    result = {key: value / good for key, value in sums.items()}
    result["perplexity"] = perplexity(weighted, tokens) if tokens else float("nan")
    result["nonfinite_steps"] = float(skipped)
    return EpochResult(position, steps, wrapped, result)


def evaluate_stream(
    eval_step: Any,
    ids: np.ndarray,
    initial_state: tf.Tensor,
    window: int = TEST_WINDOW,
    arc: Any = None,
) -> tuple[float, int]:
    """Scores every target of a stream, state carried (spec sec. 5.3).

    The stream is cut into `initial_state.shape[0]` rows (`batchify`; the
    last `N % rows` tokens are dropped) and read in windows of `window`
    tokens, the last one shorter, so that every one of the `L - 1` targets
    of each row is scored.

    Args:
      eval_step: a `lm_training.make_eval_step` function.
      ids: int `[N]` token ids.
      initial_state: zeros `[rows, hidden]` (1 row for the test protocol).
      window: tokens per call (any length gives the same result).
      arc: the arc, for a shared model.

    Returns:
      `(perplexity, targets scored)`.
    """
    batched = batchify(ids, int(initial_state.shape[0]))
    extra = [] if arc is None else [tf.constant(arc, tf.int32)]
    state, total, count = initial_state, 0.0, 0.0
    for start in range(0, batched.shape[1] - 1, window):
        stop = min(start + window, batched.shape[1] - 1)
        x, y = batched[:, start:stop], batched[:, start + 1 : stop + 1]
        nll, n, state = eval_step(x, y, state, *extra)
        total += float(nll)
        count += float(n)
    return perplexity(total, count), int(count)


def variables_checkpoint(model: keras.Model) -> tf.train.Checkpoint:
    """Every weight of `model`, keyed by its (unique) name, for a checkpoint.

    The underlying `tf.Variable`s are saved under the weights' own names
    ("embedding", "w0", "skip", "node1", ...), which do not depend on the
    model's name, so a checkpoint restores into any model of the same sizes.

    Raises:
      ValueError: when two weights share a name.
    """
    named = {v.name: v.value for v in model.weights}
    if len(named) != len(model.weights):
        raise ValueError(f"Weight names of {model.name} are not unique.")
    return tf.train.Checkpoint(**named)


__all__ = [
    "TEST_WINDOW",
    "EpochResult",
    "evaluate_stream",
    "split_windows",
    "train_epoch",
    "train_rows",
    "variables_checkpoint",
    "window_length",
]
