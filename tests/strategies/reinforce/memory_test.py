"""Tests of the controller that remembers and of the controller diagnostics
(`enas_tf.strategies.reinforce.memory`, `.diagnostics`)."""

import math

import numpy as np
import tensorflow as tf

from enas_tf.controllers.build import MacroController, MicroController
from enas_tf.spaces import MacroSpace, MicroSpace, RnnSpace
from enas_tf.strategies.reinforce.diagnostics import (
    controller_diagnostics,
    embedding_correlations,
    op_decisions,
    ranks,
    spearman,
)
from enas_tf.strategies.reinforce.memory import MEMORY_BATCH, ArchitectureMemory
from enas_tf.strategies.reinforce.trainer import Reinforce


def small_micro(seed=0):
    return MicroController(num_nodes=2, num_ops=5, lstm_size=16, seed=seed)


class MemoryTest(tf.test.TestCase):
    def test_schedule_fills_then_replaces_the_oldest(self):
        memory = ArchitectureMemory(3, size=100, start_epoch=2, loss_epoch=3, seed=0)
        self.assertEqual(memory.additions(1), 0)
        # size // 10 per epoch until full, then size // 100.
        for epoch in range(2, 12):
            self.assertEqual(memory.additions(epoch), 10)
            memory.add(np.full([10, 3], epoch, np.int32))
        self.assertEqual(int(memory.count.numpy()), 100)
        self.assertEqual(memory.additions(12), 1)
        memory.add([[7, 7, 7], [8, 8, 8]])
        rows = memory.arcs.numpy()
        # The two oldest rows (epoch 2's first) were replaced, in order.
        self.assertAllEqual(rows[:3], [[7, 7, 7], [8, 8, 8], [2, 2, 2]])
        self.assertEqual(int(memory.oldest.numpy()), 2)

    def test_the_loss_starts_at_its_epoch_with_a_filled_buffer(self):
        memory = ArchitectureMemory(3, size=100, start_epoch=1, loss_epoch=3, seed=0)
        memory.epochs_done.assign(5)
        self.assertEqual(float(memory.loss_weight()), 0.0)  # empty
        memory.add([[1, 2, 3]])
        memory.epochs_done.assign(1)  # the current epoch is 2
        self.assertEqual(float(memory.loss_weight()), 0.0)
        memory.epochs_done.assign(2)  # epoch 3
        self.assertEqual(float(memory.loss_weight()), 1.0)
        # Batches draw filled rows only.
        self.assertAllEqual(memory.batch(), np.tile([[1, 2, 3]], [MEMORY_BATCH, 1]))

    def test_memory_loss_decreases_on_a_fixed_buffer(self):
        """With rewards equal to the baseline (no policy gradient), the
        updates train the controller to reproduce the remembered arcs.
        (Unsquashed logits: with `c * tanh` they learn it far more slowly.)"""
        controller = MicroController(
            num_nodes=2, num_ops=5, lstm_size=16, seed=0, tanh_constant=None
        )
        memory = ArchitectureMemory(
            controller.num_decisions, size=100, start_epoch=1, loss_epoch=1, seed=0
        )
        remembered = np.stack([controller.space.random_arc(seed) for seed in range(4)])
        memory.add(np.tile(remembered, [25, 1]))
        trainer = Reinforce(
            controller, learning_rate=0.05, entropy_weight=0.0, memory=memory, beta_1=0.9
        )
        before = float(tf.reduce_mean(controller.log_prob_and_entropy(remembered).log_prob))
        losses = []
        for _ in range(30):
            arcs = controller.sample(4).arc
            metrics = trainer.update(arcs, [0.5] * 4)
            self.assertEqual(metrics["memory_loss_weight"], 1.0)
            losses.append(metrics["memory_loss"])
        after = float(tf.reduce_mean(controller.log_prob_and_entropy(remembered).log_prob))
        self.assertLess(losses[-1], 0.5 * losses[0])
        self.assertGreater(after, before + 3.0)
        # One trace of the update for every batch.
        self.assertEqual(trainer.update_step.experimental_get_tracing_count(), 1)

    def test_end_epoch_remembers_samples_and_logs_diagnostics(self):
        controller = small_micro()
        memory = ArchitectureMemory(controller.num_decisions, size=100, start_epoch=2, seed=0)
        trainer = Reinforce(controller, memory=memory)
        logs = trainer.end_epoch(1)
        self.assertEqual(logs["memory_size"], 0.0)
        logs = trainer.end_epoch(2)
        self.assertEqual(logs["memory_size"], 10.0)
        self.assertEqual(int(memory.epochs_done.numpy()), 2)
        for arc in memory.arcs.numpy()[:10]:
            controller.space.validate(list(arc))
        image = logs["hidden_states"]
        self.assertEqual(image.shape, (100, 16, 1))
        self.assertTrue(0.0 <= image.min() and image.max() <= 1.0)
        for key in ("embedding_spearman_connections", "embedding_spearman_ops"):
            self.assertBetween(logs[key], -1.0, 1.0)
        # Without memory and diagnostics there is nothing to log.
        self.assertEqual(Reinforce(small_micro(), diagnostics=False).end_epoch(3), {})


class DiagnosticsTest(tf.test.TestCase):
    def test_ranks_and_spearman(self):
        self.assertAllEqual(ranks(np.array([3.0, 1.0, 2.0, 2.0])), [3.0, 0.0, 1.5, 1.5])
        x = np.array([1.0, 2.0, 3.0, 4.0])
        self.assertAlmostEqual(spearman(x, x**3), 1.0)
        self.assertAlmostEqual(spearman(x, -x), -1.0)
        self.assertTrue(math.isnan(spearman(x, np.ones(4))))

    def test_op_decisions_per_space(self):
        self.assertAllEqual(op_decisions(MicroSpace(num_nodes=2)), [False, True] * 8)
        self.assertAllEqual(
            op_decisions(MacroSpace(num_layers=3)), [True, True, False, True, False, False]
        )
        self.assertAllEqual(op_decisions(RnnSpace(num_nodes=2)), [False, True, False, True])

    def test_embeddings_that_encode_the_architecture_correlate(self):
        """Embeddings that are the arcs themselves (one-hot per decision):
        the more two arcs share, the closer; uninformative embeddings: 0."""
        space = MicroSpace(num_nodes=2)
        arcs = np.stack([space.random_arc(seed) for seed in range(60)])
        one_hot = np.concatenate(
            [np.eye(n)[arcs[:, i]] for i, n in enumerate(space.choices_per_decision)], axis=1
        )
        found = embedding_correlations(space, arcs, one_hot)
        self.assertLess(found["embedding_spearman_connections"], -0.4)
        self.assertLess(found["embedding_spearman_ops"], -0.4)
        noise = np.random.default_rng(0).normal(size=one_hot.shape)
        for value in embedding_correlations(space, arcs, noise).values():
            self.assertLess(abs(value), 0.1)

    def test_diagnostics_leave_the_controllers_sampling_alone(self):
        controller, twin = small_micro(seed=4), small_micro(seed=4)
        logs = controller_diagnostics(controller)
        self.assertEqual(logs["hidden_states"].shape, (100, 16, 1))
        self.assertAllEqual(controller.sample(5).arc, twin.sample(5).arc)

    def test_macro_embeddings(self):
        controller = MacroController(num_layers=3, num_ops=6, lstm_size=8, seed=0)
        sample = controller.sample(4)
        self.assertEqual(sample.embedding.shape, (4, 8))
        # Teacher-forced on the same arcs: the same embeddings.
        self.assertAllClose(controller.log_prob_and_entropy(sample.arc).embedding, sample.embedding)
