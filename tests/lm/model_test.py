"""Tests of the enas_lm language models (shared and fixed)."""

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from enas_tf.lm.model import DropoutMasks, FixedRnnLM, LMOutput, SharedRnnLM
from enas_tf.spaces import RnnSpace, archive

V, H, L = 30, 8, 4
SMALL = {"vocab_size": V, "hidden_size": H}


def tokens(seed=0, batch=3, time=6):
    return np.random.default_rng(seed).integers(0, V, (batch, time)).astype(np.int32)


class LanguageModelTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.named_parameters(("all", "all"), ("loose_ends", "loose_ends"))
    def test_weight_inheritance(self, average):
        shared = SharedRnnLM(num_nodes=L, average=average, init_range=0.3, seed=0, **SMALL)
        rng = np.random.default_rng(1)
        x = tokens(1)
        state = rng.normal(size=(3, H)).astype(np.float32)
        for _ in range(5):
            arc = shared.space.random_arc(rng)
            child = shared.build_child(arc)
            self.assertEqual(child.count_params(), V * H + 4 * H * H + 2 * L * H * H)
            got = shared(x, state=state, arc=tf.constant(arc))
            want = child(x, state=state)
            self.assertAllClose(got.logits, want.logits, atol=1e-5)
            self.assertAllClose(got.state, want.state, atol=1e-5)
            self.assertAllClose(got.hidden, want.hidden, atol=1e-5)

    def test_child_copies_rates_and_sizes(self):
        shared = SharedRnnLM(num_nodes=L, drop_e=0.3, average="loose_ends", **SMALL)
        arc = RnnSpace(num_nodes=L).random_arc(0)
        child = shared.build_child(arc, seed=4)
        config = child.get_config()
        self.assertEqual(config["drop_e"], 0.3)
        self.assertEqual(config["average"], "loose_ends")
        self.assertEqual(config["seed"], 4)
        self.assertEqual(child.arc, arc)
        with self.assertRaisesRegex(ValueError, "Missing child weights"):
            child.set_child_weights({"embedding": np.zeros((V, H))})

    def test_output_shapes_and_state_carry(self):
        model = SharedRnnLM(num_nodes=L, seed=0, **SMALL)
        arc = tf.constant(model.space.random_arc(2))
        x = tokens(2, time=8)
        whole = model(x, arc=arc)
        self.assertIsInstance(whole, LMOutput)
        self.assertEqual(whole.logits.shape, (3, 8, V))
        self.assertEqual(whole.logits.dtype, tf.float32)
        self.assertEqual(whole.state.shape, (3, H))
        self.assertEqual(whole.hidden.shape, (3, 8, H))
        # Two windows with the state carried = one long window.
        first = model(x[:, :5], arc=arc)
        second = model(x[:, 5:], state=first.state, arc=arc)
        self.assertAllClose(
            np.concatenate([first.logits, second.logits], 1), whole.logits, atol=1e-5
        )
        self.assertAllClose(second.state, whole.state, atol=1e-6)
        self.assertAllClose(model.initial_state(3), np.zeros((3, H)))

    def test_dropout_masks_fixed_over_time(self):
        model = SharedRnnLM(num_nodes=L, seed=0, **SMALL)
        masks = model.dropout_masks(3)
        shapes = [tuple(m.shape) for m in masks]
        # No time axis anywhere: the same mask serves every step.
        self.assertEqual(shapes, [(V, 1), (3, 1, H), (3, H), (3, H), (3, 1, H)])
        for mask, rate in zip(masks, (0.1, 0.2, 0.75, 0.25, 0.75)):
            values = np.unique(mask.numpy())
            self.assertAllClose(values, [0.0, 1 / (1 - rate)])
        # Embedding dropout drops word types: a word is dropped at every
        # position or none; input dropout drops the same units at every step.
        only_e = SharedRnnLM(num_nodes=L, drop_e=0.5, drop_i=0.0, seed=1, **SMALL)
        x = np.tile(np.arange(V, dtype=np.int32)[None], [2, 2])  # each word 4x
        e_masks = only_e.dropout_masks(2)
        embedded = only_e.embed(x, e_masks).numpy()
        dropped = np.all(embedded == 0, axis=-1)
        for word in range(V):
            self.assertEqual(len(set(dropped[x == word])), 1)
        self.assertTrue(dropped.any() and not dropped.all())
        only_i = SharedRnnLM(num_nodes=L, drop_e=0.0, drop_i=0.5, seed=2, **SMALL)
        embedded = only_i.embed(x, only_i.dropout_masks(2)).numpy()
        zero = embedded == 0
        self.assertTrue(np.all(zero == zero[:, :1]))
        self.assertTrue(zero.any())

    def test_output_dropout_fixed_over_time_in_logits(self):
        # With only drop_o, logits_t = (h_t * m) E^T: removing E^T shows m.
        model = FixedRnnLM(
            [0, 0, 1, 1],
            drop_e=0.0,
            drop_i=0.0,
            drop_x=0.0,
            drop_l=0.0,
            drop_o=0.5,
            seed=3,
            vocab_size=40,
            hidden_size=H,
        )
        x = tokens(3, time=7)
        out = model(x, training=True)
        emb = model.embedding.numpy()
        dropped_h, *_ = np.linalg.lstsq(emb, out.logits.numpy().reshape(-1, 40).T, rcond=None)
        ratio = dropped_h.T.reshape(3, 7, H) / out.hidden.numpy()
        self.assertAllClose(ratio, np.broadcast_to(ratio[:, :1], ratio.shape), atol=1e-3)
        self.assertAllClose(np.unique(ratio.round(3)), [0.0, 2.0])

    def test_training_differs_inference_is_deterministic(self):
        model = SharedRnnLM(num_nodes=L, seed=0, **SMALL)
        arc = tf.constant(model.space.random_arc(0))
        x = tokens(4)
        self.assertAllEqual(model(x, arc=arc).logits, model(x, arc=arc).logits)
        self.assertNotAllClose(model(x, arc=arc, training=True).logits, model(x, arc=arc).logits)
        no_dropout = {f"drop_{k}": 0.0 for k in "eixlo"}
        plain = SharedRnnLM(num_nodes=L, seed=0, **SMALL, **no_dropout)
        self.assertEqual(plain.dropout_masks(3), DropoutMasks())

    def test_shared_search_size(self):
        # Spec 1.3: V H + 4 H^2 + F (1 + ... + L) 2 H^2 at H = 200, L = 9.
        model = SharedRnnLM()
        want = 10000 * 200 + 4 * 200**2 + 4 * 45 * 2 * 200**2
        self.assertEqual(want, 16_560_000)
        self.assertEqual(model.count_params(), want)

    def test_published_cell_at_final_size(self):
        # Spec 1.4 / 5.4: V H + 4 H^2 + 2 L H^2; the README cell, L = 8, at
        # the GPU size H = 800: 8.0M + 2.56M + 10.24M.
        published = archive.get("enas_lm_ptb")
        model = FixedRnnLM(published.arc)
        v, h, nodes = 10000, 800, published.config["num_nodes"]
        want = v * h + 4 * h * h + 2 * nodes * h * h
        self.assertEqual(want, 20_800_000)
        self.assertEqual(model.count_params(), want)
        self.assertEqual(model.arc, (0, 2, 1, 0, 2, 1, 2, 2, 4, 0, 5, 0, 3, 2, 6, 2))
        out = model(np.zeros((1, 2), np.int32))
        self.assertEqual(out.logits.shape, (1, 2, 10000))

    def test_config_round_trip(self):
        shared = SharedRnnLM(
            num_nodes=3,
            num_funcs=2,
            average="loose_ends",
            drop_x=0.5,
            seed=7,
            name="lm",
            **SMALL,
        )
        config = shared.get_config()
        clone = SharedRnnLM.from_config(config)
        self.assertEqual(clone.get_config(), config)
        clone.set_weights(shared.get_weights())
        arc = tf.constant([0, 1, 1, 0, 0, 1])
        x = tokens(5)
        self.assertAllClose(clone(x, arc=arc).logits, shared(x, arc=arc).logits)
        fixed = FixedRnnLM([0, 1, 1, 0], num_funcs=2, seed=1, **SMALL)
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(fixed))
        self.assertIsInstance(restored, FixedRnnLM)
        self.assertEqual(restored.get_config(), fixed.get_config())

    def test_checkpoint_restores_weights_and_dropout_stream(self):
        a = SharedRnnLM(num_nodes=3, seed=1, **SMALL)
        b = SharedRnnLM(num_nodes=3, seed=2, **SMALL)
        path = tf.train.Checkpoint(model=a).write(self.get_temp_dir() + "/ckpt")
        masks = a.dropout_masks(2)
        tf.train.Checkpoint(model=b).read(path).assert_consumed()
        for got, want in zip(b.get_weights(), a.get_weights()):
            self.assertAllEqual(got, want)
        self.assertAllEqual(b.dropout_masks(2).x, masks.x)

    def test_rejects_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "drop_o"):
            SharedRnnLM(drop_o=1.0, **SMALL)
        with self.assertRaisesRegex(ValueError, "vocab_size"):
            SharedRnnLM(vocab_size=0)
        model = FixedRnnLM([0, 1], **SMALL)
        with self.assertRaisesRegex(ValueError, "fixed architecture"):
            model(tokens(), arc=tf.constant([0, 1]))


if __name__ == "__main__":
    tf.test.main()
