"""Tests of the random-search strategy (Random-WS)."""

import numpy as np
import tensorflow as tf

from enas_tf.spaces import MacroSpace, MicroSpace
from enas_tf.strategies.random.sampler import RandomSearch


class RandomSearchTest(tf.test.TestCase):
    def test_samples_are_valid_uniform_and_seeded(self):
        space = MicroSpace(num_nodes=3, num_ops=5)
        search = RandomSearch(space, seed=1, num_aggregate=10)
        sample = search.sample(2000)
        arcs = sample.arc.numpy()
        self.assertEqual(arcs.dtype, np.int32)
        for row in arcs[:50]:
            space.validate(list(row))
        choices = np.array(space.choices_per_decision)
        self.assertAllClose(arcs.mean(axis=0), (choices - 1) / 2, atol=0.15)
        self.assertAllEqual(arcs.max(axis=0), choices - 1)
        self.assertAllEqual(sample.log_prob, np.zeros(2000))
        self.assertAllEqual(
            RandomSearch(space, seed=1).sample(5).arc,
            RandomSearch(space, seed=1).sample(5).arc,
        )
        self.assertEqual(search.sample(3).arc.shape, (3, space.num_decisions))
        # Batch sizes 2000 and 3: one trace (the batch size enters as a tensor).
        self.assertEqual(search.sample_function.experimental_get_tracing_count(), 1)

    def test_macro_skip_rate_and_noop_update(self):
        space = MacroSpace(num_layers=5)
        search = RandomSearch(space, seed=0)
        sample = search.sample(4)
        for row, rate in zip(sample.arc.numpy(), sample.skip_rate.numpy()):
            self.assertAllClose(rate, space.decode(row).skip_rate)
        metrics = search.update(sample.arc, [0.5, 0.7, np.nan, 0.9])
        self.assertAllClose(metrics["reward"], 0.7)
        self.assertEqual(metrics["skipped"], 1.0)


if __name__ == "__main__":
    tf.test.main()
