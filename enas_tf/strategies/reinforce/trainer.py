"""The REINFORCE trainer of an ENAS controller (spec sec. 4 "Common trainer").

`Reinforce`: the reward gets an entropy bonus, a moving-average baseline is
updated on every sample, and the gradients of `num_aggregate` samples are
averaged into one Adam step (what the original's SyncReplicasOptimizer did
with one replica). The strategy's settings and `build` are in the package
(`enas_tf.strategies.reinforce`).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from enas_tf.controllers.build import Controller, Sample
from enas_tf.spaces.base import SearchSpace
from enas_tf.strategies.base import as_batch
from enas_tf.strategies.reinforce.diagnostics import controller_diagnostics
from enas_tf.strategies.reinforce.memory import ArchitectureMemory


class Reinforce(tf.Module):
    """REINFORCE trainer of a controller (spec sec. 4 "Common trainer").

    For sample i of an update: `R_i = reward_i + entropy_weight * H_i`; the
    baseline moves `b <- b - (1 - baseline_decay) * (b - R_i)`, sample by
    sample in order, starting from the run's first reward (the original
    started from 0); the loss is
    `mean_i(-log_prob_i * (R_i - b_i)) + skip_weight * mean_i(skip_penalty_i)`
    (the penalty for the macro controller only), with `b_i` the baseline just
    after sample i's update. The spec notes the TF1 graph does not fix whether
    the loss reads b before or after the update; we take the updated value,
    the apparent intent. Reward, entropy and baseline are constants for the
    gradient. One Adam step per `update` (by default beta_1 = 0, epsilon =
    1e-3, spec sec. 10), no clipping.

    Samples whose reward is NaN or infinite are left out of the loss (its
    means run over the kept samples) and of the baseline, and are counted in
    the `skipped` metric; if all are, no step is taken.

    Args:
      controller: a `MacroController`, `MicroController` or `RnnController`.
      learning_rate: Adam learning rate (1e-3 macro, 3.5e-3 micro scripts).
      entropy_weight: weight of the entropy bonus in the reward (1e-4).
      baseline_decay: beta of the moving-average baseline (0.99).
      skip_weight: weight of the macro skip penalty (0.8); ignored for micro.
      num_aggregate: arcs a search loop should sample per update (20 macro,
        10 micro and rnn); `update` itself accepts any count.
      beta_1: Adam beta_1 (0 in the CNN scripts; 0.9, the TF default, in
        enas_lm).
      epsilon: Adam epsilon (1e-3 in the CNN scripts; 1e-8, the TF1
        default, in enas_lm).
      memory: with an `ArchitectureMemory`, each update adds
        `memory_weight` times the mean negative log-likelihood of a batch
        of remembered architectures to the loss, once the memory's schedule
        says so (Adam & Lorraine 2019; `memory.py`); `end_epoch` fills it.
      memory_weight: weight of that supervised loss.
      diagnostics: compute the controller's diagnostics in `end_epoch`
        (`diagnostics.py`).
      name: module name.

    Raises:
      ValueError: for out-of-range arguments.
    """

    def __init__(
        self,
        controller: Controller,
        learning_rate: float = 1e-3,
        entropy_weight: float = 1e-4,
        baseline_decay: float = 0.99,
        skip_weight: float = 0.8,
        num_aggregate: int = 20,
        beta_1: float = 0.0,
        epsilon: float = 1e-3,
        memory: ArchitectureMemory | None = None,
        memory_weight: float = 1.0,
        diagnostics: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if not learning_rate > 0:
            raise ValueError(f"Expected learning_rate > 0; received: {learning_rate}.")
        if not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f"Expected 0 <= baseline_decay < 1; received: {baseline_decay}.")
        if num_aggregate < 1:
            raise ValueError(f"Expected num_aggregate >= 1; received: {num_aggregate}.")
        self.controller = controller
        self.learning_rate = learning_rate
        self.entropy_weight = entropy_weight
        self.baseline_decay = baseline_decay
        # Spec 4.2: the micro controller has no skip penalty.
        self.uses_skip_penalty = controller.has_skip_penalty
        self.skip_weight = skip_weight if self.uses_skip_penalty else 0.0
        self.num_aggregate = num_aggregate
        self.memory, self.memory_weight, self.diagnostics = memory, memory_weight, diagnostics
        # Spec sec. 4 / 10: the CNN scripts use beta_1 = 0 and epsilon = 1e-3,
        # enas_lm the TF defaults (ENAS_LM_REFERENCE sec. 3.3); no clipping;
        # the learning-rate decay of the scripts never fires (constant).
        self.optimizer = keras.optimizers.Adam(
            learning_rate=learning_rate, beta_1=beta_1, beta_2=0.999, epsilon=epsilon
        )
        self.optimizer.build(controller.trainable_variables)
        self.baseline = tf.Variable(0.0, trainable=False, name="baseline")
        # The baseline starts at the first finite reward, not at 0 (which
        # would make every early advantage the reward itself, a large
        # positive push on whatever was sampled first).
        self.baseline_started = tf.Variable(False, trainable=False, name="baseline_started")
        signature = [
            tf.TensorSpec([None, controller.num_decisions], tf.int32),
            tf.TensorSpec([None], tf.float32),
        ]
        # One trace for every arc batch (STYLE "One traced graph for every
        # arc"); explicit tf.cond, so no autograph.
        self.update_step = tf.function(
            self._update_step, input_signature=signature, autograph=False
        )

    @property
    def space(self) -> SearchSpace:
        """The controller's search space."""
        return self.controller.space

    def sample(self, batch_size: int = 1) -> Sample:
        """Samples `batch_size` architectures from the controller."""
        return self.controller.sample(batch_size)

    def update(self, arcs: Any, rewards: Any) -> dict[str, float]:
        """One controller update from already-sampled arcs and their rewards.

        Args:
          arcs: int `[n, num_decisions]` arcs, e.g. `Sample.arc`.
          rewards: float `[n]` child rewards (validation accuracy); NaN or
            infinite values are skipped.

        Returns:
          Float metrics: `loss`, `baseline` (after the update), `reward`,
          `entropy` and `log_prob` (means over the kept samples), `skipped`
          (samples with a non-finite reward), and for the macro controller
          `skip_rate` and `skip_penalty`.

        Raises:
          ValueError: when the shapes do not fit.
        """
        arcs, rewards = as_batch(self.controller.num_decisions, arcs, rewards)
        metrics = self.update_step(arcs, rewards)
        return {key: float(value) for key, value in metrics.items()}

    def _update_step(self, arcs: tf.Tensor, rewards: tf.Tensor) -> dict[str, Any]:
        variables = self.controller.trainable_variables
        with tf.GradientTape() as tape:
            scored = self.controller.log_prob_and_entropy(arcs)
            # The entropy bonus goes into the reward, not the loss (spec 4).
            total = rewards + self.entropy_weight * scored.entropy
            keep = tf.math.is_finite(total)
            total = tf.stop_gradient(tf.where(keep, total, 0.0))
            weight = tf.cast(keep, tf.float32)
            count = tf.reduce_sum(weight)
            denominator = tf.maximum(count, 1.0)
            with tape.stop_recording():  # constants for the gradient (spec 4)
                baselines = self._baselines(total, keep)
            advantage = tf.where(keep, total - baselines, 0.0)
            loss = tf.reduce_sum(-scored.log_prob * advantage) / denominator
            penalty = tf.reduce_sum(weight * scored.skip_penalty) / denominator
            if self.uses_skip_penalty:
                loss += self.skip_weight * penalty
            if self.memory is not None:
                remembered = self.controller.log_prob_and_entropy(self.memory.batch())
                memory_loss = -tf.reduce_mean(remembered.log_prob)
                loss += self.memory_weight * self.memory.loss_weight() * memory_loss
        gradients = tape.gradient(loss, variables)
        # Variables a tiny space never uses (e.g. attention for one layer)
        # get zero gradients rather than None; embedding gradients are made
        # dense so Adam decays every row as the original's dense update did.
        gradients = [
            tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
            for g, v in zip(gradients, variables)
        ]

        def apply() -> tf.Tensor:
            self.optimizer.apply(gradients, variables)
            return tf.constant(True)

        tf.cond(count > 0, apply, lambda: tf.constant(False))
        # The last entry is the baseline after the batch (the old one if the
        # batch is empty).
        self.baseline.assign(tf.concat([[self.baseline], baselines], 0)[-1])
        self.baseline_started.assign(tf.logical_or(self.baseline_started, tf.reduce_any(keep)))

        def mean(x: tf.Tensor) -> tf.Tensor:
            return tf.reduce_sum(tf.where(keep, x, 0.0)) / denominator

        metrics = {
            "loss": loss,
            "baseline": self.baseline.read_value(),
            "reward": mean(rewards),
            "entropy": mean(scored.entropy),
            "log_prob": mean(scored.log_prob),
            "skipped": tf.cast(tf.size(keep), tf.float32) - count,
        }
        if self.uses_skip_penalty:
            metrics["skip_rate"] = mean(scored.skip_rate)
            metrics["skip_penalty"] = penalty
        if self.memory is not None:
            metrics["memory_loss"] = memory_loss
            metrics["memory_loss_weight"] = self.memory.loss_weight()
        return metrics

    def end_epoch(self, epoch: int) -> dict[str, object]:
        """After the controller phase of 1-based `epoch`: the memory takes
        its sampled architectures (`memory.py`), and the diagnostics
        (`diagnostics.py`) are computed.

        Returns:
          Floats (`memory_size`, the embedding correlations) and the image
          `hidden_states` (float32 `[100, S, 1]`).
        """
        logs: dict[str, object] = {}
        if self.diagnostics:
            logs.update(controller_diagnostics(self.controller))
        if self.memory is not None:
            added = self.memory.additions(epoch)
            if added:
                self.memory.add(self.controller.sample(added).arc.numpy())
            self.memory.epochs_done.assign(epoch)
            logs["memory_size"] = float(self.memory.count.numpy())
        return logs

    def _baselines(self, total: tf.Tensor, keep: tf.Tensor) -> tf.Tensor:
        """The baseline after each sample's update, float32 `[n]`.

        Sequential over the batch (spec 4: updated on every sample); samples
        not kept leave it unchanged. Before the first kept sample of the run
        it is that sample's reward (the original started it at 0).
        """
        rate = 1.0 - self.baseline_decay
        first = tf.gather(total, tf.argmax(tf.cast(keep, tf.int32)))
        # (A baseline already away from 0 counts as started: checkpoints
        # written before `baseline_started` existed.)
        started = tf.logical_or(self.baseline_started, tf.not_equal(self.baseline, 0.0))
        start = tf.where(started, self.baseline.read_value(), first)

        def step(b: tf.Tensor, elems: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
            reward, ok = elems
            return tf.where(ok, b - rate * (b - reward), b)

        return tf.scan(step, (total, keep), initializer=start)
