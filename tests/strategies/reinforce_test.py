"""Tests of the REINFORCE strategy's settings and build
(`enas_tf.strategies.reinforce`)."""

import dataclasses

import tensorflow as tf
from absl.testing import parameterized

from enas_tf import strategies
from enas_tf.errors import UserError
from enas_tf.spaces import MacroSpace, MicroSpace, RnnSpace
from enas_tf.strategies import reinforce
from enas_tf.strategies.reinforce.trainer import Reinforce


class BuildTest(tf.test.TestCase, parameterized.TestCase):
    """`enas_tf.strategies.reinforce.build` from the strategy's `Config`."""

    @parameterized.named_parameters(
        ("micro", MicroSpace(num_nodes=2), "image", (0.0, 1e-3), 1.10),
        ("macro", MacroSpace(num_layers=3), "image", (0.0, 1e-3), 1.10),
        ("rnn", RnnSpace(num_nodes=3), "lm", (0.9, 1e-8), 2.25),
    )
    def test_settings_reach_the_controller_and_trainer(self, space, kind, adam, tanh):
        config = strategies.default_config("reinforce", kind)
        config = dataclasses.replace(config, entropy_weight=0.25, skip_weight=0.5)
        trainer = reinforce.build(config, space, seed=3, num_aggregate=4)
        self.assertIsInstance(trainer, Reinforce)
        self.assertEqual(trainer.space, space)
        self.assertEqual((trainer.entropy_weight, trainer.num_aggregate), (0.25, 4))
        # Adam as the original scripts: CNN beta_1 0, epsilon 1e-3; enas_lm TF's.
        optimizer = trainer.optimizer.get_config()
        self.assertAllClose((optimizer["beta_1"], optimizer["epsilon"]), adam)
        self.assertAllClose(trainer.controller.tanh_constant, tanh)
        self.assertEqual(trainer.skip_weight, 0.5 if isinstance(space, MacroSpace) else 0.0)
        # Seeded: the same seed samples the same arcs.
        again = reinforce.build(config, space, seed=3, num_aggregate=4)
        self.assertAllEqual(trainer.sample(3).arc, again.sample(3).arc)

    @parameterized.parameters(
        ({"controller_lr": 0.0}, "micro", "controller_lr must be > 0"),
        ({"baseline_decay": 1.0}, "micro", r"baseline_decay must be in \[0, 1\)"),
        ({"tanh_constant": -1.0}, "rnn", "tanh_constant, temperature and skip_weight"),
        ({"op_tanh_reduce": 0.0}, "micro", "op_tanh_reduce must be > 0"),
        ({"skip_target": 1.0}, "macro", r"skip_target must be in \(0, 1\)"),
    )
    def test_config_checks(self, changes, space, message):
        config = dataclasses.replace(reinforce.Config(), **changes)
        with self.assertRaisesRegex(UserError, message):
            config.check(space)

    def test_skip_target_only_matters_for_macro(self):
        reinforce.Config(skip_target=1.0).check("micro")
