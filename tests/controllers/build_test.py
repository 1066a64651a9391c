"""Tests of the macro and micro LSTM controllers."""

import math

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from enas_tf.controllers.build import (
    MICRO_NORMAL_OP_OFFSET,
    MacroController,
    MicroController,
    RnnController,
    Sample,
    controller_for,
)
from enas_tf.spaces import LegacyRnnSpace, MacroSpace, MicroSpace, RnnSpace

SMALL = {"lstm_size": 16}


def zero_weights(controller):
    for v in controller.trainable_variables:
        v.assign(tf.zeros_like(v))


def log_softmax(x):
    x = np.asarray(x, np.float64)
    return x - np.log(np.sum(np.exp(x)))


def micro_op_probs(bias, c=1.10, reduce=2.5, normal=True, temperature=None):
    """Op probabilities of the micro controller when h = 0 (hand formula)."""
    z = np.asarray(bias, np.float64)
    if temperature is not None:
        z = z / temperature
    logits = c / reduce * np.tanh(z)
    if normal:
        logits = logits + np.asarray(MICRO_NORMAL_OP_OFFSET[: len(z)])
    return np.exp(log_softmax(logits))


def micro_score_zero_weights(space, arc):
    """(log_prob, entropy) of an arc when every controller variable is 0."""
    normal_lsm = log_softmax(MICRO_NORMAL_OP_OFFSET[: space.num_ops])
    normal_entropy = -np.sum(np.exp(normal_lsm) * normal_lsm)
    log_prob = entropy = 0.0
    for position, (name, n) in enumerate(zip(space.decision_names, space.choices_per_decision)):
        if name.startswith("normal") and "/op_" in name:
            log_prob += normal_lsm[arc[position]]
            entropy += normal_entropy
        else:
            log_prob -= math.log(n)
            entropy += math.log(n)
    return log_prob, entropy


class ControllerTest(tf.test.TestCase, parameterized.TestCase):
    def test_parameter_totals(self):
        # Spec 4.1 / 4.2, measured on the original graph (S = 64).
        macro, micro = MacroController(), MicroController()
        self.assertEqual(macro.count_params(), 41_856)
        self.assertEqual(micro.count_params(), 41_733)
        for controller in (macro, micro):
            trainable = sum(int(np.prod(v.shape)) for v in controller.trainable_variables)
            self.assertEqual(trainable, controller.count_params())

    def test_initial_values(self):
        controller = MicroController(seed=0)
        for v in controller.trainable_variables:
            if "op_bias" in v.path:
                self.assertAllEqual(v, [[10.0, 10.0, 0.0, 0.0, 0.0]])
            else:
                self.assertLessEqual(float(tf.reduce_max(tf.abs(v))), 0.1)
        small = MicroController(num_nodes=2, num_ops=3, **SMALL)
        self.assertAllEqual(small.op_bias, [[10.0, 10.0, 0.0]])

    @parameterized.named_parameters(
        ("macro_small", MacroSpace(num_layers=3, num_ops=4)),
        ("macro_one_layer", MacroSpace(num_layers=1, num_ops=2)),
        ("macro_default", MacroSpace()),
        ("micro_small", MicroSpace(num_nodes=2, num_ops=3)),
        ("micro_default", MicroSpace()),
    )
    def test_sampled_arcs_are_valid(self, space):
        controller = controller_for(space, seed=1)
        sample = controller.sample(16)
        self.assertIsInstance(sample, Sample)
        self.assertEqual(sample.arc.dtype, tf.int32)
        self.assertEqual(sample.arc.shape, (16, space.num_decisions))
        for field in ("log_prob", "entropy", "skip_penalty", "skip_rate"):
            value = getattr(sample, field)
            self.assertEqual(value.dtype, tf.float32)
            self.assertEqual(value.shape, (16,))
        for row in sample.arc.numpy():
            space.validate(list(row))

    def test_same_seed_same_samples(self):
        for space in (MacroSpace(num_layers=3), MicroSpace(num_nodes=1)):
            a, b, c = (controller_for(space, seed=s, **SMALL) for s in (7, 7, 8))
            first, second = a.sample(8), b.sample(8)
            self.assertAllEqual(first.arc, second.arc)
            self.assertAllClose(first.log_prob, second.log_prob)
            self.assertAllEqual(a.sample(8).arc, b.sample(8).arc)
            self.assertNotAllEqual(first.arc, c.sample(8).arc)

    def test_generator_state_is_checkpointed(self):
        controller = MacroController(num_layers=4, seed=3, **SMALL)
        path = tf.train.Checkpoint(controller=controller).write(self.get_temp_dir() + "/ckpt")
        expected = controller.sample(5).arc
        tf.train.Checkpoint(controller=controller).read(path).assert_consumed()
        self.assertAllEqual(controller.sample(5).arc, expected)

    def test_macro_zero_weights_is_uniform(self):
        layers, ops = 4, 6
        controller = MacroController(num_layers=layers, num_ops=ops, seed=0)
        zero_weights(controller)
        sample = controller.sample(6)
        # Op logits 0 -> 1/6 each; q = 0 -> p(skip) = 0.5 (log 2 per bit).
        expected = layers * math.log(ops) + layers * (layers - 1) / 2 * math.log(2)
        self.assertAllClose(sample.entropy, [expected] * 6)
        self.assertAllClose(sample.log_prob, [-expected] * 6)

    def test_micro_zero_weights_is_uniform_up_to_normal_offset(self):
        space = MicroSpace(num_nodes=3, num_ops=5)
        controller = controller_for(space, seed=0)
        zero_weights(controller)  # the op bias too
        sample = controller.sample(6)
        for row, log_prob, entropy in zip(
            sample.arc.numpy(), sample.log_prob.numpy(), sample.entropy.numpy()
        ):
            want_log_prob, want_entropy = micro_score_zero_weights(space, row)
            self.assertAllClose(log_prob, want_log_prob, rtol=1e-5)
            self.assertAllClose(entropy, want_entropy, rtol=1e-5)

    def test_micro_zero_weights_without_tanh_is_uniform(self):
        # Without c the op logits are 0 + offset as well: same formula.
        space = MicroSpace(num_nodes=2, num_ops=4)
        controller = controller_for(space, tanh_constant=None, **SMALL)
        zero_weights(controller)
        sample = controller.sample(3)
        want = micro_score_zero_weights(space, sample.arc.numpy()[0])
        self.assertAllClose(sample.log_prob[0], want[0], rtol=1e-5)
        self.assertAllClose(sample.entropy[0], want[1], rtol=1e-5)

    @parameterized.named_parameters(("plain", None), ("temperature", 5.0))
    def test_micro_initial_op_probabilities(self, temperature):
        space = MicroSpace(num_nodes=2)
        controller = MicroController(num_nodes=2, temperature=temperature)
        for v in controller.trainable_variables:
            if "op_bias" not in v.path:
                v.assign(tf.zeros_like(v))  # h = 0, so op logits come from b_s
        bias = (10.0, 10.0, 0.0, 0.0, 0.0)
        base = np.zeros((5, space.num_decisions), np.int32)
        for cell, normal in ((0, True), (1, False)):
            arcs = base.copy()
            position = cell * 4 * space.num_nodes + 1  # node 2's op_a
            arcs[:, position] = np.arange(5)
            log_prob = controller.log_prob_and_entropy(arcs).log_prob.numpy()
            # Only that decision differs, so normalising gives its probabilities.
            probs = np.exp(log_prob - np.log(np.sum(np.exp(log_prob))))
            want = micro_op_probs(bias, normal=normal, temperature=temperature)
            self.assertAllClose(probs, want, rtol=1e-4)
            if temperature is None:
                # Spec 4.2: about 0.31 (normal) and 0.25 (reduction) each.
                self.assertAllClose(probs[:2], [0.315, 0.315] if normal else [0.254] * 2, atol=2e-3)

    @parameterized.named_parameters(
        ("macro", MacroSpace(num_layers=5, num_ops=6)),
        ("micro", MicroSpace(num_nodes=3, num_ops=5)),
        ("micro_temperature", MicroSpace(num_nodes=2, num_ops=5), 2.0),
    )
    def test_scoring_matches_sampling(self, space, temperature=None):
        controller = controller_for(space, temperature=temperature, seed=4, **SMALL)
        sample = controller.sample(7)
        scored = controller.log_prob_and_entropy(sample.arc)
        self.assertAllEqual(scored.arc, sample.arc)
        for field in ("log_prob", "entropy", "skip_penalty", "skip_rate"):
            self.assertAllClose(
                getattr(scored, field),
                getattr(sample, field),
                rtol=1e-5,
                atol=1e-6,
                msg=field,
            )
        # The Keras call path scores too.
        self.assertAllClose(controller(sample.arc).log_prob, sample.log_prob, rtol=1e-5)

    def test_log_prob_is_differentiable(self):
        for controller in (
            MacroController(num_layers=3, **SMALL),
            MicroController(num_nodes=2, **SMALL),
        ):
            arcs = controller.sample(4).arc
            with tf.GradientTape() as tape:
                loss = -tf.reduce_sum(controller.log_prob_and_entropy(arcs).log_prob)
            grads = tape.gradient(loss, controller.trainable_variables)
            for v, g in zip(controller.trainable_variables, grads):
                self.assertIsNotNone(g, msg=v.path)
                self.assertGreater(float(tf.reduce_sum(tf.abs(g))), 0.0, msg=v.path)

    def test_skip_penalty_and_rate_with_zero_weights(self):
        layers = 4
        controller = MacroController(num_layers=layers, skip_target=0.4, seed=2)
        zero_weights(controller)
        sample = controller.sample(5)
        per_bit = 0.5 * math.log(0.5 / 0.6) + 0.5 * math.log(0.5 / 0.4)
        # Layer l has l bits; the penalty is the mean over layers 1 .. L-1.
        want = np.mean([n * per_bit for n in range(1, layers)])
        self.assertAllClose(sample.skip_penalty, [want] * 5)
        for row, rate in zip(sample.arc.numpy(), sample.skip_rate.numpy()):
            self.assertAllClose(rate, controller.space.decode(row).skip_rate)

    def test_one_layer_has_no_skips(self):
        sample = MacroController(num_layers=1, **SMALL).sample(3)
        self.assertAllEqual(sample.skip_penalty, [0.0] * 3)
        self.assertAllEqual(sample.skip_rate, [0.0] * 3)

    def test_micro_has_no_skip_statistics(self):
        sample = MicroController(num_nodes=2, **SMALL).sample(3)
        self.assertAllEqual(sample.skip_penalty, [0.0] * 3)
        self.assertAllEqual(sample.skip_rate, [0.0] * 3)

    def test_sample_traces_once_per_batch_size(self):
        for controller in (
            MacroController(num_layers=3, **SMALL),
            MicroController(num_nodes=2, **SMALL),
        ):
            arcs = [controller.sample(4).arc.numpy() for _ in range(6)]
            self.assertEqual(controller.sample_function.experimental_get_tracing_count(), 1)
            self.assertGreater(len({a.tobytes() for a in arcs}), 1)

    @parameterized.named_parameters(
        (
            "macro",
            MacroController,
            {"num_layers": 3, "num_ops": 4, "skip_target": 0.3, "temperature": 2.0},
        ),
        (
            "micro",
            MicroController,
            {
                "num_nodes": 2,
                "num_ops": 3,
                "op_tanh_reduce": 2.0,
                "tanh_constant": None,
            },
        ),
    )
    def test_config_round_trip(self, cls, kwargs):
        controller = cls(seed=5, name="ctl", **SMALL, **kwargs)
        config = controller.get_config()
        for key, value in kwargs.items():
            self.assertEqual(config[key], value)
        clone = cls.from_config(config)
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
        self.assertIsInstance(restored, cls)
        self.assertEqual(restored.get_config(), config)

    def test_controller_for(self):
        self.assertIsInstance(controller_for(MacroSpace(num_layers=2), **SMALL), MacroController)
        micro = controller_for(MicroSpace(num_nodes=2, num_ops=4), **SMALL)
        self.assertIsInstance(micro, MicroController)
        self.assertEqual(micro.space, MicroSpace(num_nodes=2, num_ops=4))
        self.assertIsInstance(controller_for(RnnSpace(num_nodes=2), **SMALL), RnnController)
        with self.assertRaisesRegex(ValueError, "macro, micro or rnn"):
            controller_for(LegacyRnnSpace())

    def test_scoring_rejects_out_of_range_arcs(self):
        controller = MicroController(num_nodes=2, **SMALL)
        arc = np.zeros((1, controller.num_decisions), np.int32)
        arc[0, 4] = 2  # node 3 reads nodes 0 .. 2: fine
        controller.log_prob_and_entropy(arc)
        arc[0, 0] = 2  # node 2 reads only nodes 0 and 1
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "out of range"):
            controller.log_prob_and_entropy(arc)
        with self.assertRaisesRegex(ValueError, "batch_size"):
            controller.sample(0)

    def test_rejects_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "skip_target"):
            MacroController(skip_target=1.0)
        with self.assertRaisesRegex(ValueError, "temperature"):
            MicroController(temperature=0.0)
        with self.assertRaisesRegex(ValueError, "lstm_size"):
            MicroController(lstm_size=0)


if __name__ == "__main__":
    tf.test.main()
