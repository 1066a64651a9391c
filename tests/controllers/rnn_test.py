"""Tests of the enas_lm recurrent-cell controller (spec sec. 3)."""

import math

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from enas_tf.controllers.build import RnnController, Sample, controller_for
from enas_tf.controllers.rnn import pointer_prior
from enas_tf.spaces import RnnSpace
from enas_tf.strategies.reinforce.trainer import Reinforce

SMALL = {"lstm_size": 16}


def log_softmax(x):
    x = np.asarray(x, np.float64)
    m = np.max(x)
    return x - m - np.log(np.sum(np.exp(x - m)))


def entropy_of(log_probs):
    return float(-np.sum(np.exp(log_probs) * log_probs))


def reference_score(weights, arc, num_nodes, c=2.25, temperature=5.0):
    """(log_prob, entropy) of one arc, spec sec. 3.2 written in numpy."""
    w = {name.split("/")[-1]: np.asarray(v, np.float64) for name, v in weights}
    size = w["lstm_kernel"].shape[0] // 2
    sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x))

    def lstm(x, cell, h):
        i, f, o, g = np.split(np.concatenate([x, h]) @ w["lstm_kernel"], 4)
        cell = sigmoid(i) * np.tanh(g) + sigmoid(f) * cell
        return sigmoid(o) * np.tanh(cell), cell

    process = lambda u: c * np.tanh(u / temperature)
    cell, h = np.zeros(size), np.zeros(size)
    x = w["start_embedding"][0]
    outputs, anchors = [np.zeros(size)], [np.zeros(size)]
    log_prob = entropy = 0.0
    for k in range(1, num_nodes + 1):
        h, cell = lstm(x, cell, h)
        query = h @ w["attn_w2"]
        u = np.array([np.tanh(query + a) @ w["attn_v"][:, 0] for a in anchors])
        logits = process(u) - np.array([(k - j) ** 2 / 6.0 for j in range(k)])
        lp = log_softmax(logits)
        prev, func = arc[2 * (k - 1)], arc[2 * k - 1]
        log_prob += lp[prev]
        entropy += entropy_of(lp)
        outputs.append(h)
        anchors.append(h @ w["attn_w1"])
        h, cell = lstm(outputs[prev] / (0.1 + k - prev), cell, h)
        lp = log_softmax(process(w["op_embedding"] @ h))
        log_prob += lp[func]
        entropy += entropy_of(lp)
        x = w["op_embedding"][func]
    return log_prob, entropy


class RnnControllerTest(tf.test.TestCase, parameterized.TestCase):
    def test_parameter_count(self):
        # Spec 3.1: w_lstm 128 x 256, g_emb 1 x 64, w_emb 4 x 64 (tied, no
        # softmax matrix), attn_w_1 and attn_w_2 64 x 64, attn_v 64 x 1.
        controller = RnnController()
        want = 128 * 256 + 64 + 4 * 64 + 2 * 64 * 64 + 64
        self.assertEqual(want, 41_344)
        self.assertEqual(controller.count_params(), want)
        names = sorted(v.path.split("/")[-1] for v in controller.trainable_variables)
        self.assertEqual(
            names,
            [
                "attn_v",
                "attn_w1",
                "attn_w2",
                "lstm_kernel",
                "op_embedding",
                "start_embedding",
            ],
        )

    def test_initial_range(self):
        for v in RnnController(seed=0).trainable_variables:
            self.assertLessEqual(float(tf.reduce_max(tf.abs(v))), 0.01)
            self.assertGreater(float(tf.reduce_max(tf.abs(v))), 0.005)

    def test_zero_weights_closed_form(self):
        # h = 0 throughout: pointer logits are the prior -(k - j)^2 / 6,
        # activation logits 0 (uniform over F).
        nodes, funcs = 4, 4
        controller = RnnController(num_nodes=nodes, num_funcs=funcs, seed=0)
        for v in controller.trainable_variables:
            v.assign(tf.zeros_like(v))
        sample = controller.sample(8)
        for row, log_prob, entropy in zip(
            sample.arc.numpy(), sample.log_prob.numpy(), sample.entropy.numpy()
        ):
            want_lp = want_ent = 0.0
            for k in range(1, nodes + 1):
                lp = log_softmax(pointer_prior(k))
                want_lp += lp[row[2 * (k - 1)]] - math.log(funcs)
                want_ent += entropy_of(lp) + math.log(funcs)
            self.assertAllClose(log_prob, want_lp, rtol=1e-5)
            self.assertAllClose(entropy, want_ent, rtol=1e-5)

    def test_fresh_controller_matches_hand_computation(self):
        controller = RnnController(num_nodes=5, seed=3)
        weights = [(v.path, v.numpy()) for v in controller.trainable_variables]
        sample = controller.sample(4)
        for row, log_prob, entropy in zip(
            sample.arc.numpy(), sample.log_prob.numpy(), sample.entropy.numpy()
        ):
            want = reference_score(weights, row, 5)
            self.assertAllClose(log_prob, want[0], rtol=1e-5)
            self.assertAllClose(entropy, want[1], rtol=1e-5)

    def test_settings_enter_the_math(self):
        controller = RnnController(num_nodes=3, tanh_constant=1.5, temperature=2.0, seed=1, **SMALL)
        for v in controller.trainable_variables:  # larger, so c and T matter
            v.assign(v * 50.0)
        weights = [(v.path, v.numpy()) for v in controller.trainable_variables]
        arc = controller.sample(1).arc.numpy()[0]
        got = controller.log_prob_and_entropy(arc[None])
        want = reference_score(weights, arc, 3, c=1.5, temperature=2.0)
        self.assertAllClose(got.log_prob[0], want[0], rtol=1e-5)
        self.assertAllClose(got.entropy[0], want[1], rtol=1e-5)

    def test_samples_valid_and_scored_alike(self):
        space = RnnSpace(num_nodes=6)
        controller = controller_for(space, seed=2, **SMALL)
        self.assertIsInstance(controller, RnnController)
        sample = controller.sample(16)
        self.assertIsInstance(sample, Sample)
        self.assertEqual(sample.arc.shape, (16, 12))
        self.assertEqual(sample.arc.dtype, tf.int32)
        for row in sample.arc.numpy():
            space.validate(list(row))
        self.assertAllEqual(sample.arc[:, 0], [0] * 16)  # p_1 is always 0
        scored = controller.log_prob_and_entropy(sample.arc)
        self.assertAllClose(scored.log_prob, sample.log_prob, rtol=1e-5)
        self.assertAllClose(scored.entropy, sample.entropy, rtol=1e-5)
        self.assertAllEqual(sample.skip_penalty, [0.0] * 16)

    def test_samples_vary_and_trace_once(self):
        controller = RnnController(num_nodes=4, seed=5, **SMALL)
        arcs = [controller.sample(3).arc.numpy() for _ in range(6)]
        self.assertEqual(controller.sample_function.experimental_get_tracing_count(), 1)
        self.assertGreater(len({a.tobytes() for a in arcs}), 1)

    def test_same_seed_same_samples(self):
        a, b = (RnnController(num_nodes=4, seed=9, **SMALL) for _ in range(2))
        self.assertAllEqual(a.sample(5).arc, b.sample(5).arc)

    def test_log_prob_gradient_reaches_every_variable(self):
        controller = RnnController(num_nodes=3, **SMALL)
        arcs = controller.sample(4).arc
        with tf.GradientTape() as tape:
            loss = -tf.reduce_sum(controller.log_prob_and_entropy(arcs).log_prob)
        grads = tape.gradient(loss, controller.trainable_variables)
        for v, g in zip(controller.trainable_variables, grads):
            self.assertIsNotNone(g, msg=v.path)
            self.assertGreater(float(tf.reduce_sum(tf.abs(g))), 0.0, msg=v.path)

    def test_reinforce_update_runs(self):
        """One REINFORCE update of the rnn controller: the metrics are the
        trainer's formulas computed by hand from the controller's scores,
        and the step lowers the loss it reports (the low-reward arcs lose
        the most probability)."""
        controller = RnnController(num_nodes=3, seed=0, **SMALL)
        for v in controller.trainable_variables:  # larger, so one step shows
            v.assign(v * 50.0)
        trainer = Reinforce(controller, learning_rate=0.01, num_aggregate=4)
        sample = trainer.sample(4)
        rewards = np.array([1.0, 0.5, 0.2, 0.9])
        scored = controller.log_prob_and_entropy(sample.arc)
        log_prob, entropy = (np.float64(t.numpy()) for t in (scored.log_prob, scored.entropy))
        total = rewards + 1e-4 * entropy  # the entropy bonus
        baselines, b = [], total[0]  # starts at the first reward
        for r in total:
            b -= (1 - 0.99) * (b - r)
            baselines.append(b)
        advantage = total - np.array(baselines)
        loss = np.mean(-log_prob * advantage)
        metrics = trainer.update(sample.arc, rewards)
        self.assertNotIn("skip_rate", metrics)
        self.assertAllClose(metrics["loss"], loss, rtol=1e-5)
        self.assertAllClose(metrics["baseline"], baselines[-1], rtol=1e-6)
        self.assertAllClose(metrics["reward"], rewards.mean(), rtol=1e-6)
        self.assertAllClose(metrics["entropy"], entropy.mean(), rtol=1e-5)
        self.assertAllClose(metrics["log_prob"], log_prob.mean(), rtol=1e-5)
        self.assertEqual(metrics["skipped"], 0.0)
        after = np.float64(controller.log_prob_and_entropy(sample.arc).log_prob.numpy())
        # Measured: the loss drops by 7.6e-4, arc 2 (reward 0.2) loses 2.6e-3.
        self.assertLess(np.mean(-after * advantage), loss - 2e-4)
        self.assertEqual(int(np.argmin(after - log_prob)), 2)

    def test_config_round_trip(self):
        controller = RnnController(
            num_nodes=3, num_funcs=2, temperature=None, seed=4, name="ctl", **SMALL
        )
        config = controller.get_config()
        self.assertEqual((config["num_nodes"], config["num_funcs"]), (3, 2))
        clone = RnnController.from_config(config)
        self.assertEqual(clone.get_config(), config)
        clone.set_weights(controller.get_weights())
        arcs = controller.sample(3).arc
        self.assertAllClose(
            clone.log_prob_and_entropy(arcs).log_prob,
            controller.log_prob_and_entropy(arcs).log_prob,
        )
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(controller)
        )
        self.assertIsInstance(restored, RnnController)

    def test_scoring_rejects_out_of_range_arcs(self):
        controller = RnnController(num_nodes=2, **SMALL)
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "out of range"):
            controller.log_prob_and_entropy([[1, 0, 0, 0]])  # p_1 must be 0


if __name__ == "__main__":
    tf.test.main()
