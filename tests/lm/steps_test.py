"""Tests of the enas_lm losses, steps and evaluation."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from enas_tf.data.ptb import batchify, load_ptb
from enas_tf.lm import steps as lm_training
from enas_tf.lm.model import FixedRnnLM, SharedRnnLM
from enas_tf.lm.steps import Regularizers
from enas_tf.testing import shared_ptb_dir

V, H, L = 30, 8, 4
SMALL = {"vocab_size": V, "hidden_size": H}
PTB_DIR = shared_ptb_dir()


def window(seed=0, batch=3, time=6):
    ids = np.random.default_rng(seed).integers(0, V, (batch, time + 1))
    ids = ids.astype(np.int32)
    return ids[:, :-1], ids[:, 1:]


class LmTrainingTest(tf.test.TestCase, parameterized.TestCase):
    def test_train_step_traces_once_for_every_arc_and_length(self):
        model = SharedRnnLM(num_nodes=L, seed=0, **SMALL)
        step = lm_training.make_train_step(model, keras.optimizers.SGD(1.0))
        evaluate = lm_training.make_eval_step(model)
        rng = np.random.default_rng(0)
        state = model.initial_state(3)
        arcs = set()
        for i in range(20):
            arc = model.space.random_arc(rng)
            arcs.add(arc)
            x, y = window(i, time=int(rng.integers(1, 7)))
            scale = lm_training.bptt_lr_scale(x.shape[1], 6)
            state, metrics = step(x, y, state, tf.constant(scale), tf.constant(arc))
            evaluate(x, y, state, tf.constant(arc))
        self.assertGreater(len(arcs), 15)
        self.assertTrue(np.isfinite(float(metrics["loss"])))
        self.assertEqual(step.experimental_get_tracing_count(), 1)
        self.assertEqual(evaluate.experimental_get_tracing_count(), 1)

    def test_step_updates_only_selected_skip_rows(self):
        model = SharedRnnLM(num_nodes=L, seed=0, **SMALL)
        step = lm_training.make_train_step(model, keras.optimizers.SGD(5.0), grad_bound=None)
        arc = [0, 1, 0, 2, 2, 0, 3, 3]
        rows = model.cell.selected_rows(arc).numpy()
        before = model.cell.skip.numpy()
        x, y = window(1)
        _, metrics = step(x, y, model.initial_state(3), tf.constant(1.0), tf.constant(arc))
        moved = np.any(model.cell.skip.numpy() != before, axis=(1, 2))
        self.assertEqual(sorted(np.flatnonzero(moved)), sorted(rows))
        self.assertGreater(float(metrics["grad_norm"]), 0.0)

    def test_lr_scale_and_clipping(self):
        x, y = window(2)
        moves = []
        for scale in (1.0, 0.5):
            keras.utils.set_random_seed(0)  # same initial weights
            model = FixedRnnLM([0, 1, 0, 2], seed=0, init_range=0.04, **SMALL)
            w = model.embedding.numpy()
            step = lm_training.make_train_step(model, keras.optimizers.SGD(1.0), grad_bound=1e-3)
            _, metrics = step(x, y, model.initial_state(3), tf.constant(scale))
            moves.append(model.embedding.numpy() - w)
            self.assertGreater(float(metrics["grad_norm"]), 1e-3)
        self.assertAllClose(moves[1], 0.5 * moves[0], atol=1e-7)
        # Clipped to global norm 1e-3, so the embedding moved at most that.
        self.assertLessEqual(np.linalg.norm(moves[0]), 1e-3 + 1e-7)

    def test_regularizers_only_in_training(self):
        model = SharedRnnLM(num_nodes=L, seed=0, init_range=0.5, **SMALL)
        arc = [0, 2, 1, 0, 1, 3, 2, 1]
        x, y = window(3)
        reg = Regularizers(alpha=0.7, beta=1.0, weight_decay=1e-3)
        loss, _, terms = lm_training.training_loss(model, x, y, None, tf.constant(arc), reg)
        for name in ("ar", "tar", "weight_penalty"):
            self.assertGreater(float(terms[name]), 0.0, msg=name)
        self.assertAllClose(
            loss,
            sum(float(terms[k]) for k in ("cross_entropy", "ar", "tar", "weight_penalty")),
        )
        nll_sum, count, _ = lm_training.evaluation_loss(model, x, y, None, tf.constant(arc))
        out = model(x, arc=tf.constant(arc))
        want = lm_training.token_nll(out.logits, y).numpy()
        self.assertAllClose(nll_sum, want.sum(), rtol=1e-6)
        self.assertEqual(float(count), 18.0)

    def test_regularizer_formulas(self):
        model = SharedRnnLM(num_nodes=L, seed=0, init_range=0.5, **SMALL)
        arc = [0, 2, 1, 0, 1, 3, 2, 1]
        hidden = np.random.default_rng(4).normal(size=(2, 5, H)).astype(np.float32)
        w = model.cell.child_weights(arc)
        kernels = [w["w0"]] + [w[f"node{k}"] for k in range(1, L + 1)]
        quartic = lm_training.regularization(
            model, hidden, tf.constant(arc), Regularizers(alpha=0.5, beta=2.0)
        )
        self.assertAllClose(quartic["ar"], 0.5 * np.mean(hidden**2))
        diff = hidden[:, 1:] - hidden[:, :-1]
        self.assertAllClose(quartic["tar"], 2.0 * np.mean(diff**2))
        # Search: 8e-7 * 1/2 sum w^4 over W_0 and every selected matrix
        # (node 1 included: the code's off-by-one is not reproduced).
        want = 8e-7 * sum(0.5 * np.sum(k.astype(np.float64) ** 4) for k in kernels)
        self.assertAllClose(quartic["weight_penalty"], want, rtol=1e-5)
        l2 = lm_training.regularization(
            model, hidden, tf.constant(arc), lm_training.FIXED_GPU_REGULARIZERS
        )
        want = 8e-7 * sum(
            np.sum(k.astype(np.float64) ** 2) for k in kernels + [model.embedding.numpy()]
        )
        self.assertAllClose(l2["weight_penalty"], want, rtol=1e-5)
        self.assertAllClose(l2["ar"], 0.7 * np.mean(hidden**2))
        self.assertEqual(float(l2["tar"]), 0.0)
        # The fixed child has the same penalty: it holds the same weights.
        child = model.build_child(arc)
        child_l2 = lm_training.regularization(
            child, hidden, None, lm_training.FIXED_GPU_REGULARIZERS
        )
        self.assertAllClose(child_l2["weight_penalty"], l2["weight_penalty"])
        one_step = lm_training.regularization(
            model, hidden[:, :1], tf.constant(arc), Regularizers()
        )
        self.assertEqual(float(one_step["tar"]), 0.0)

    def test_uniform_model_perplexity_is_vocab_size(self):
        model = FixedRnnLM([0, 0, 1, 1, 2, 2], **SMALL)
        for v in model.weights:
            v.assign(tf.zeros_like(v))  # zero logits: uniform over V words
        ids = np.random.default_rng(5).integers(0, V, 200)
        ppl = lm_training.evaluate(model, ids, batch_size=4, bptt=7)
        self.assertAllClose(ppl, V, rtol=1e-6)
        self.assertAllClose(lm_training.perplexity(2 * math.log(V), 2), V)
        with self.assertRaisesRegex(ValueError, "token count"):
            lm_training.perplexity(1.0, 0)

    def test_bptt_lengths(self):
        rng = np.random.default_rng(0)
        lengths = [lm_training.sample_bptt_length(rng) for _ in range(4000)]
        # Spec 2.6: [25, 44] for base 35, [7, 27] for 17.5; mean about 33.6.
        self.assertTrue(all(7 <= n <= 44 for n in lengths))
        self.assertTrue(all(n >= 25 or n <= 27 for n in lengths))
        self.assertAllClose(np.mean(lengths), 33.6, atol=0.3)
        short = [lm_training.sample_bptt_length(rng, short_prob=1.0) for _ in range(500)]
        self.assertEqual((min(short), max(short)), (7, 27))
        self.assertEqual(lm_training.bptt_lr_scale(28), 0.8)

    def test_random_windows_walk_the_stream(self):
        batched = batchify(np.arange(2 * 300), 2)
        rng = np.random.default_rng(1)
        pieces = list(lm_training.random_windows(batched, rng))
        xs = np.concatenate([x for x, _ in pieces], 1)
        ys = np.concatenate([y for _, y in pieces], 1)
        self.assertAllEqual(xs, batched[:, : xs.shape[1]])
        self.assertAllEqual(ys, batched[:, 1 : xs.shape[1] + 1])
        # The last window brings the pointer to batch_len - 3 or beyond.
        self.assertGreaterEqual(xs.shape[1], 300 - 3)
        self.assertLess(xs.shape[1] - pieces[-1][0].shape[1], 300 - 3)
        with self.assertRaisesRegex(ValueError, "5 tokens"):
            list(lm_training.random_windows(batched[:, :4], rng))

    def test_regularizers_reject_bad_values(self):
        with self.assertRaisesRegex(ValueError, "weight_penalty"):
            Regularizers(weight_penalty="l1")
        with self.assertRaisesRegex(ValueError, "beta"):
            Regularizers(beta=-1.0)


@pytest.mark.skipif(not PTB_DIR.is_dir(), reason="no ../shared/data/ptb")
def test_a_few_steps_on_ptb():
    corpus = load_ptb(PTB_DIR)
    model = SharedRnnLM(vocab_size=corpus.vocab_size, hidden_size=16, num_nodes=3, seed=0)
    step = lm_training.make_train_step(model, keras.optimizers.SGD(20.0))
    rng = np.random.default_rng(0)
    batched = batchify(corpus.train[:20_000], 8)
    state = model.initial_state(8)
    for (x, y), _ in zip(lm_training.random_windows(batched, rng), range(4)):
        arc = tf.constant(model.space.random_arc(rng), tf.int32)
        scale = tf.constant(lm_training.bptt_lr_scale(x.shape[1]))
        state, metrics = step(x, y, state, scale, arc)
        assert np.isfinite(float(metrics["loss"]))
    ppl = lm_training.evaluate(
        model, corpus.valid[:2_000], batch_size=4, arc=model.space.random_arc(rng)
    )
    # An almost untrained model: near-uniform, far below the vocabulary.
    assert 100 < ppl < 2 * corpus.vocab_size


if __name__ == "__main__":
    tf.test.main()
