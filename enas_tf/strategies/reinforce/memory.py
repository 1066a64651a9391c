"""A controller that remembers: Adam & Lorraine (2019), sec. 5.

"Understanding Neural Architecture Search Techniques" found the ENAS
controller's policy forgets the architectures it sampled, and proposed a
memory: a buffer of sampled architectures and a supervised loss that makes
the controller reproduce them, added to the policy-gradient loss. Their
schedule (CIFAR-10, 150 epochs), the defaults of `reinforce.Config`: from
epoch 5, 1,000 sampled architectures join the buffer per epoch up to 10,000;
once full, 100 are replaced per epoch (the oldest); from epoch 10, every
controller update adds `memory_weight` times the mean negative
log-likelihood of `MEMORY_BATCH` (100) architectures drawn from the buffer,
teacher-forced through the controller (autoregressively, as it samples).

Sizes scale with `size`: `size // 10` join per epoch, `size // 100` are
replaced once full. The buffer, its position and its random generator are
variables of the strategy, so a resumed search remembers the same
architectures and draws the same batches.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

MEMORY_BATCH = 100


class ArchitectureMemory(tf.Module):
    """The buffer of remembered architectures (module docstring).

    Args:
      num_decisions: the length of an architecture.
      size: the buffer's capacity (10,000 in the paper; >= 100).
      start_epoch: the first epoch (1-based) whose end adds architectures.
      loss_epoch: the first epoch (1-based) whose updates use the loss.
      seed: seed of the batches drawn for the loss.
    """

    def __init__(
        self,
        num_decisions: int,
        size: int = 10_000,
        start_epoch: int = 5,
        loss_epoch: int = 10,
        seed: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if size < MEMORY_BATCH:
            raise ValueError(f"Expected size >= {MEMORY_BATCH}; received: {size}.")
        self.size, self.start_epoch, self.loss_epoch = size, start_epoch, loss_epoch
        self.arcs = tf.Variable(tf.zeros([size, num_decisions], tf.int32), trainable=False)
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False)  # filled rows
        self.oldest = tf.Variable(0, dtype=tf.int64, trainable=False)  # once full
        self.epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.generator = (
            tf.random.Generator.from_seed(seed)
            if seed is not None
            else tf.random.Generator.from_non_deterministic_state()
        )

    def additions(self, epoch: int) -> int:
        """Architectures that join at the end of 1-based `epoch`."""
        if epoch < self.start_epoch:
            return 0
        count = int(self.count.numpy())
        if count < self.size:
            return min(self.size // 10, self.size - count)
        return self.size // 100

    def add(self, arcs: np.ndarray) -> None:
        """Appends `arcs` (int `[n, D]`); once full, they replace the oldest."""
        arcs = np.asarray(arcs, np.int32)
        rows = self.arcs.numpy()
        count, oldest = int(self.count.numpy()), int(self.oldest.numpy())
        for arc in arcs:
            if count < self.size:
                rows[count] = arc
                count += 1
            else:
                rows[oldest] = arc
                oldest = (oldest + 1) % self.size
        self.arcs.assign(rows)
        self.count.assign(count)
        self.oldest.assign(oldest)

    def loss_weight(self) -> tf.Tensor:
        """1.0 when the updates of the current epoch use the loss (the
        buffer has rows and the epoch is `loss_epoch` or later), else 0."""
        active = tf.logical_and(self.epochs_done + 1 >= self.loss_epoch, self.count > 0)
        return tf.cast(active, tf.float32)

    def batch(self) -> tf.Tensor:
        """`MEMORY_BATCH` remembered architectures drawn uniformly (with
        replacement), int32 `[MEMORY_BATCH, D]` (rows of zeros, an unused
        draw, while the buffer is empty)."""
        high = tf.maximum(self.count, 1)
        index = self.generator.uniform([MEMORY_BATCH], 0, high, dtype=tf.int64)
        return tf.gather(self.arcs, index)
