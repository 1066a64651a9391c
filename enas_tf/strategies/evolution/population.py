"""`RegularizedEvolution`: aging evolution over a space's integer arcs (the
strategy `enas_tf.strategies.evolution`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from enas_tf.controllers.build import Sample
from enas_tf.spaces.base import SearchSpace
from enas_tf.strategies.base import as_batch


class RegularizedEvolution(tf.Module):
    """Regularized evolution with the interface of `Reinforce`.

    The population is a ring of `population_size` slots (arcs and rewards,
    in variables): member `k` (counting every member ever admitted) sits in
    slot `k % population_size`, so admitting one when the ring is full
    replaces the oldest. All randomness comes from a checkpointed
    `tf.random.Generator`, so a resumed run proposes what an uninterrupted
    one would.

    Args:
      space: the search space.
      population_size: members kept.
      sample_size: members drawn (without replacement) per tournament.
      train_arcs: "uniform" or "population": what `train_sample` returns.
      seed: seed of the draws, or None for fresh entropy.
      num_aggregate: proposals a search loop should score per update.
      name: module name.
    """

    def __init__(
        self,
        space: SearchSpace,
        population_size: int = 100,
        sample_size: int = 25,
        train_arcs: str = "uniform",
        seed: int | None = None,
        num_aggregate: int = 1,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if population_size < 2 or not 1 <= sample_size <= population_size:
            raise ValueError(
                "Expected population_size >= 2 and 1 <= sample_size <= population_size; "
                f"received: {population_size}, {sample_size}."
            )
        if train_arcs not in ("uniform", "population"):
            raise ValueError(f"Expected train_arcs uniform or population; received: {train_arcs}.")
        if num_aggregate < 1:
            raise ValueError(f"Expected num_aggregate >= 1; received: {num_aggregate}.")
        self.space = space
        self.num_aggregate = num_aggregate
        self.population_size = population_size
        self.sample_size = sample_size
        self.train_arcs = train_arcs
        self._choices = np.asarray(space.choices_per_decision, np.int64)
        self._mutable = np.flatnonzero(self._choices > 1)
        if self._mutable.size == 0:
            raise ValueError("The space has a single architecture: nothing to evolve.")
        if seed is None:
            self._generator = tf.random.Generator.from_non_deterministic_state()
        else:
            self._generator = tf.random.Generator.from_seed(seed)
        d = space.num_decisions
        self.arcs = tf.Variable(tf.zeros([population_size, d], tf.int32), trainable=False)
        self.rewards = tf.Variable(tf.zeros([population_size]), trainable=False)
        self.admitted = tf.Variable(0, dtype=tf.int64, trainable=False)  # ever admitted

    # ----- the population ------------------------------------------------------

    @property
    def size(self) -> int:
        """Members now in the population."""
        return min(int(self.admitted.numpy()), self.population_size)

    def members(self) -> tuple[np.ndarray, np.ndarray]:
        """The population, oldest first: int32 arcs `[size, D]`, float32
        rewards `[size]`."""
        admitted = int(self.admitted.numpy())
        order = np.arange(max(admitted - self.population_size, 0), admitted) % self.population_size
        return self.arcs.numpy()[order], self.rewards.numpy()[order]

    def _uniform(self, shape: tuple[int, ...]) -> np.ndarray:
        """float64 draws in [0, 1) from the checkpointed generator."""
        if not np.prod(shape):
            return np.zeros(shape)
        return self._generator.uniform(shape, dtype=tf.float64).numpy()

    def _random_arcs(self, n: int) -> np.ndarray:
        u = self._uniform((n, len(self._choices)))
        return np.minimum(np.floor(u * self._choices), self._choices - 1).astype(np.int32)

    def mutate(self, parents: np.ndarray) -> np.ndarray:
        """Each parent (int `[n, D]`) with one decision changed to another of
        its values, the decision and the value drawn uniformly."""
        parents = np.array(parents, np.int32, copy=True, ndmin=2)
        u = self._uniform((len(parents), 2))
        rows = np.arange(len(parents))
        pick = np.minimum((u[:, 0] * self._mutable.size).astype(int), self._mutable.size - 1)
        where = self._mutable[pick]
        n = self._choices[where]
        shift = 1 + np.minimum((u[:, 1] * (n - 1)).astype(np.int64), n - 2)
        parents[rows, where] = (parents[rows, where] + shift) % n
        return parents

    def tournament(self, n: int) -> np.ndarray:
        """`n` parents: each the best-rewarded of `sample_size` members drawn
        without replacement (the first drawn among equals)."""
        arcs, rewards = self.members()
        size = len(arcs)
        draws = min(self.sample_size, size)
        # Without replacement: the `draws` smallest of uniform keys.
        keys = self._uniform((n, size))
        drawn = np.argsort(keys, axis=1, kind="stable")[:, :draws]
        best = drawn[np.arange(n), np.argmax(rewards[drawn], axis=1)]
        return arcs[best]

    # ----- the strategy protocol ---------------------------------------------

    def _sample(self, arcs: np.ndarray) -> Sample:
        arc = tf.constant(arcs, tf.int32)
        zero = tf.zeros([len(arcs)])
        skip_rate = zero
        if self.space.skip_positions:
            bits = arcs[:, list(self.space.skip_positions)]
            skip_rate = tf.constant(bits.mean(axis=1), tf.float32)
        return Sample(arc, zero, zero, zero, skip_rate)

    def sample(self, batch_size: int = 1) -> Sample:
        """`batch_size` proposals: uniform random architectures until the
        population is full, then mutants of tournament winners."""
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"Expected batch_size >= 1; received: {batch_size}.")
        if int(self.admitted.numpy()) < self.population_size:
            return self._sample(self._random_arcs(batch_size))
        return self._sample(self.mutate(self.tournament(batch_size)))

    def train_sample(self, batch_size: int = 1) -> Sample:
        """What the child phase trains the shared weights on (`train_arcs`):
        uniform architectures, or members drawn uniformly from the
        population (uniform ones while it is empty)."""
        if self.train_arcs == "uniform" or self.size == 0:
            return self._sample(self._random_arcs(batch_size))
        arcs, _ = self.members()
        u = self._uniform((batch_size,))
        return self._sample(arcs[np.minimum((u * len(arcs)).astype(int), len(arcs) - 1)])

    def candidates(self, n: int) -> np.ndarray:
        """The derive step's candidates: up to `n` distinct members of the
        population, best-rewarded first (uniform ones if it is empty)."""
        arcs, rewards = self.members()
        if not len(arcs):
            return self._random_arcs(n)
        order = np.argsort(-rewards, kind="stable")
        unique = dict.fromkeys(tuple(int(v) for v in arcs[i]) for i in order)
        return np.array(list(unique)[:n], np.int32)

    def update(self, arcs: Any, rewards: Any) -> dict[str, float]:
        """Admits every arc with a finite reward (oldest members die);
        returns `reward` (mean of the finite rewards, 0 if none), `skipped`
        (the others), and the population's size, best and mean reward.

        Raises:
          ValueError: when the shapes do not fit.
        """
        arcs, rewards = as_batch(self.space.num_decisions, arcs, rewards)
        arcs, values = arcs.numpy(), rewards.numpy()
        finite = np.isfinite(values)
        admitted = int(self.admitted.numpy())
        for arc, value in zip(arcs[finite], values[finite]):
            slot = admitted % self.population_size
            self.arcs[slot].assign(arc)
            self.rewards[slot].assign(value)
            admitted += 1
        self.admitted.assign(admitted)
        _, population = self.members()
        return {
            "reward": float(values[finite].mean()) if finite.any() else 0.0,
            "skipped": float((~finite).sum()),
            "population_size": float(len(population)),
            "population_best": float(population.max()) if len(population) else 0.0,
            "population_mean": float(population.mean()) if len(population) else 0.0,
        }
