"""The protocol every search strategy follows, and shared helpers.

See the package docstring (`enas_tf.strategies`) for how a search loop uses
a strategy and how strategies are registered.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import tensorflow as tf

from enas_tf.controllers.build import Sample
from enas_tf.spaces.base import SearchSpace


@runtime_checkable
class Strategy(Protocol):
    """What the search loop needs of a strategy.

    A strategy is a `tf.Module`: its variables (controller weights, optimizer
    slots, baselines, random generators) are saved in the search checkpoint
    and restored on resume, so a resumed run proposes what an uninterrupted
    one would.

    Attributes:
      space: the searched `SearchSpace`.
      num_aggregate: architectures the loop samples and rewards per update.
    """

    space: SearchSpace
    num_aggregate: int

    def sample(self, batch_size: int = 1) -> Sample:
        """`batch_size` proposed architectures (int32 `Sample.arc`
        `[batch_size, num_decisions]`; the other fields are per-architecture
        float32 statistics, zeros where the strategy has none)."""

    def update(self, arcs: Any, rewards: Any) -> dict[str, float]:
        """Learns from `arcs` (int `[n, num_decisions]`) and their float
        `[n]` rewards (non-finite rewards are skipped and counted); returns
        float metrics, at least `reward` and `skipped`."""


# Optional methods (`train_sample`, `candidates`, `end_epoch`): a strategy
# that does not define the first two gets `sample` for both; `end_epoch` is
# skipped.


def train_sample(strategy: Strategy, batch_size: int = 1) -> Sample:
    """The architectures the child phase trains the shared weights on: the
    strategy's `train_sample(batch_size)` if it has one (e.g. evolution's
    uniform draws), else its proposals (`sample`)."""
    method = getattr(strategy, "train_sample", None)
    return (method or strategy.sample)(batch_size)


def candidates(strategy: Strategy, n: int) -> np.ndarray:
    """At most `n` architectures (int `[m, D]`, duplicates allowed) for the
    derive step to score: the strategy's `candidates(n)` if it has one
    (e.g. evolution's best members), else `n` proposals."""
    method = getattr(strategy, "candidates", None)
    arcs = method(n) if method is not None else strategy.sample(n).arc
    return np.asarray(arcs, np.int32).reshape(-1, strategy.space.num_decisions)


def end_epoch(strategy: Strategy, epoch: int) -> dict[str, Any]:
    """After the controller phase of 1-based `epoch`: the strategy's
    `end_epoch(epoch)` if it has one (e.g. the ENAS controller's memory and
    diagnostics), else nothing. Returns floats (metrics) and float32
    `[H, W, C]` arrays in [0, 1] (images)."""
    method = getattr(strategy, "end_epoch", None)
    return method(epoch) if method is not None else {}


def as_batch(num_decisions: int, arcs: Any, rewards: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """Converts arcs and rewards to int32 `[n, D]` and float32 `[n]` tensors.

    Raises:
      ValueError: when the shapes do not fit each other or the space.
    """
    arcs = tf.convert_to_tensor(arcs, dtype=tf.int32)
    rewards = tf.convert_to_tensor(rewards, dtype=tf.float32)
    if arcs.shape.rank != 2 or arcs.shape[1] != num_decisions:
        raise ValueError(f"Expected arcs of shape [n, {num_decisions}]; received: {arcs.shape}.")
    if rewards.shape.rank != 1 or rewards.shape[0] != arcs.shape[0]:
        raise ValueError(
            f"Expected one reward per arc, shape [{arcs.shape[0]}]; received: {rewards.shape}."
        )
    return arcs, rewards
