"""`RandomSearch`: uniform, seeded samples of a space; nothing learned
(the strategy `enas_tf.strategies.random`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from enas_tf.controllers.build import Sample
from enas_tf.spaces.base import SearchSpace
from enas_tf.strategies.base import as_batch


class RandomSearch(tf.Module):
    """Uniform random search with the interface of `Reinforce`.

    `sample` draws every decision uniformly (seeded; the generator is
    checkpointable) and returns zero log-probabilities and entropies; `update`
    learns nothing and only reports the rewards.

    Args:
      space: the search space.
      seed: sampling seed, or None for fresh entropy.
      num_aggregate: arcs a search loop should sample per update.
      name: module name.
    """

    def __init__(
        self,
        space: SearchSpace,
        seed: int | None = None,
        num_aggregate: int = 1,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if num_aggregate < 1:
            raise ValueError(f"Expected num_aggregate >= 1; received: {num_aggregate}.")
        self.space = space
        self.num_aggregate = num_aggregate
        if seed is None:
            self._generator = tf.random.Generator.from_non_deterministic_state()
        else:
            self._generator = tf.random.Generator.from_seed(seed)
        self._choices = np.asarray(space.choices_per_decision, np.int32)
        self._skip_positions = np.asarray(space.skip_positions, np.int32)
        self._sample_fn = tf.function(self._sample, autograph=False)

    @property
    def sample_function(self) -> Any:
        """The `tf.function` behind `sample` (for tracing-count checks)."""
        return self._sample_fn

    def sample(self, batch_size: int = 1) -> Sample:
        """Samples `batch_size` arcs uniformly.

        Returns:
          A `Sample`; `log_prob`, `entropy` and `skip_penalty` are zeros,
          `skip_rate` is the fraction of skip bits set (macro) or zeros.
        """
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"Expected batch_size >= 1; received: {batch_size}.")
        return self._sample_fn(tf.constant(batch_size, tf.int32))  # one trace

    def _sample(self, batch_size: tf.Tensor) -> Sample:
        shape = [batch_size, self.space.num_decisions]
        # float64 keeps floor(u * n) uniform over [0, n) for every n here.
        u = self._generator.uniform(shape, dtype=tf.float64)
        arc = tf.cast(tf.floor(u * self._choices.astype(np.float64)), tf.int32)
        arc = tf.minimum(arc, self._choices - 1)  # guards u * n rounding to n
        zero = tf.zeros([batch_size])
        skip_rate = zero
        if self._skip_positions.size:
            bits = tf.gather(arc, self._skip_positions, axis=1)
            skip_rate = tf.reduce_mean(tf.cast(bits, tf.float32), axis=1)
        return Sample(arc, zero, zero, zero, skip_rate)

    def update(self, arcs: Any, rewards: Any) -> dict[str, float]:
        """Learns nothing; returns `reward` (mean of the finite rewards, 0 if
        none) and `skipped` (the count of the others).

        Raises:
          ValueError: when the shapes do not fit.
        """
        _, rewards = as_batch(self.space.num_decisions, arcs, rewards)
        values = rewards.numpy()
        finite = values[np.isfinite(values)]
        return {
            "reward": float(finite.mean()) if finite.size else 0.0,
            "skipped": float(values.size - finite.size),
        }
