"""Tests of the shared and fixed enas_lm cells (spec sec. 1)."""

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from enas_tf.errors import ArcError
from enas_tf.lm.cells import FixedRnnCell, SharedRnnCell, skip_row
from enas_tf.spaces import RnnSpace, archive

H, L = 6, 4
ACTS = [
    np.tanh,
    lambda a: np.maximum(a, 0.0),
    lambda a: 1 / (1 + np.exp(-a)),
    lambda a: a,
]


def reference_cell(x, h, w0, nodes, arc, average, x_mask, l_mask):
    """The cell of spec sec. 1.2 in numpy: x `[B, T, H]`, h `[B, H]`,
    nodes[k - 1] = W_k. Returns (outputs `[B, T, H]`, last)."""
    sigmoid = lambda a: 1 / (1 + np.exp(-a))
    n = len(arc) // 2
    prevs, funcs = arc[0::2], arc[1::2]
    ends = (
        [i for i in range(1, n + 1) if i not in prevs]
        if average == "loose_ends"
        else list(range(1, n + 1))
    )
    outputs = []
    for t in range(x.shape[1]):
        ag = np.concatenate([x[:, t] * x_mask, h * l_mask], 1) @ w0
        a, g = np.split(ag, 2, axis=1)
        s = [sigmoid(g) * np.tanh(a) + (1 - sigmoid(g)) * h]  # unmasked carry
        for k in range(1, n + 1):
            prev = s[prevs[k - 1]]
            a, g = np.split((prev * l_mask) @ nodes[k - 1], 2, axis=1)
            s.append(prev + sigmoid(g) * (ACTS[funcs[k - 1]](a) - prev))
        h = np.mean([s[i] for i in ends], axis=0)
        outputs.append(h)
    return np.stack(outputs, 1), h


def inputs(seed=0, batch=3, time=5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, time, H)).astype(np.float32)
    h = rng.normal(size=(batch, H)).astype(np.float32)
    return x, h


class RnnCellTest(tf.test.TestCase, parameterized.TestCase):
    def test_skip_rows_are_a_bijection(self):
        for funcs in (1, 4):
            rows = {
                skip_row(k, p, f, funcs)
                for k in range(1, L + 1)
                for p in range(k)
                for f in range(funcs)
            }
            self.assertEqual(rows, set(range(funcs * L * (L + 1) // 2)))

    def test_weight_shapes(self):
        shared = SharedRnnCell(H, num_nodes=L)
        shared.build()
        self.assertEqual(tuple(shared.w0.shape), (2 * H, 2 * H))
        # Spec 1.3: F * (1 + ... + L) matrices of [H, 2H].
        self.assertEqual(tuple(shared.skip.shape), (4 * 10, H, 2 * H))
        fixed = FixedRnnCell([0, 0, 1, 1, 0, 2, 2, 3], H)
        fixed.build()
        self.assertEqual(
            [tuple(w.shape) for w in fixed.weights], [(2 * H, 2 * H)] + [(H, 2 * H)] * 4
        )
        for w in shared.weights + fixed.weights:
            self.assertLessEqual(float(tf.reduce_max(tf.abs(w))), 0.04)

    @parameterized.named_parameters(
        ("all", "all", False),
        ("loose_ends", "loose_ends", False),
        ("all_masked", "all", True),
        ("loose_ends_masked", "loose_ends", True),
    )
    def test_shared_cell_matches_equations(self, average, masked):
        cell = SharedRnnCell(H, num_nodes=L, average=average, init_range=0.5)
        cell.build()
        x, h = inputs()
        rng = np.random.default_rng(1)
        ones = np.ones((3, H), np.float32)
        x_mask, l_mask = ones, ones
        if masked:
            x_mask = (rng.random((3, H)) > 0.5).astype(np.float32) * 2
            l_mask = (rng.random((3, H)) > 0.3).astype(np.float32) / 0.7
        for arc in ([0, 0, 1, 1, 2, 2, 0, 3], [0, 3, 0, 2, 0, 1, 3, 0]):
            out, last = cell(
                x,
                state=h,
                arc=tf.constant(arc),
                x_mask=x_mask if masked else None,
                l_mask=l_mask if masked else None,
            )
            w = cell.child_weights(arc)
            want, want_last = reference_cell(
                x,
                h,
                w["w0"],
                [w[f"node{k}"] for k in range(1, L + 1)],
                arc,
                average,
                x_mask,
                l_mask,
            )
            self.assertAllClose(out, want, atol=1e-5)
            self.assertAllClose(last, want_last, atol=1e-5)

    def test_published_loose_ends(self):
        # Spec 1.2: loose ends {7, 8} for the README arc.
        arc = archive.get("enas_lm_ptb").arc
        self.assertEqual(FixedRnnCell(arc, H, average="loose_ends")._ends, (7, 8))
        self.assertEqual(FixedRnnCell(arc, H)._ends, tuple(range(1, 9)))

    def test_fixed_equals_shared_and_zero_state_default(self):
        x, _ = inputs(2)
        shared = SharedRnnCell(H, num_nodes=L, average="loose_ends")
        shared.build()
        arc = RnnSpace(num_nodes=L).random_arc(3)
        fixed = FixedRnnCell(" ".join(map(str, arc)), H, average="loose_ends")
        fixed.build()
        fixed.set_child_weights(shared.child_weights(arc))
        zeros = np.zeros((3, H), np.float32)
        a = shared(x, arc=tf.constant(arc))
        b = fixed(x, state=zeros)
        self.assertAllClose(a[0], b[0], atol=1e-6)

    def test_eager_equals_function(self):
        cell = SharedRnnCell(H, num_nodes=L)
        cell.build()
        x, h = inputs(4)
        arc = tf.constant([0, 1, 0, 2, 1, 3, 3, 0])
        run = tf.function(lambda x, h, arc: cell(x, state=h, arc=arc)[0])
        self.assertAllClose(run(x, h, arc), cell(x, state=h, arc=arc)[0])

    def test_gradient_touches_only_selected_rows(self):
        cell = SharedRnnCell(H, num_nodes=L)
        cell.build()
        x, h = inputs(5)
        arc = [0, 1, 1, 0, 2, 2, 1, 3]
        with tf.GradientTape() as tape:
            out, _ = cell(x, state=h, arc=tf.constant(arc))
            loss = tf.reduce_sum(out**2)
        grad = tape.gradient(loss, cell.skip)
        self.assertIsInstance(grad, tf.IndexedSlices)
        want = sorted(skip_row(k, arc[2 * k - 2], arc[2 * k - 1], 4) for k in range(1, L + 1))
        self.assertEqual(sorted(grad.indices.numpy().tolist()), want)

    def test_config_round_trip(self):
        shared = SharedRnnCell(
            H, num_nodes=3, num_funcs=2, average="loose_ends", init_range=0.1, name="c"
        )
        clone = SharedRnnCell.from_config(shared.get_config())
        self.assertEqual(clone.get_config(), shared.get_config())
        fixed = FixedRnnCell([0, 1, 1, 0], H, num_funcs=2, name="f")
        config = fixed.get_config()
        self.assertEqual(config["arc"], [0, 1, 1, 0])
        self.assertEqual(FixedRnnCell.from_config(config).get_config(), config)
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(fixed))
        self.assertEqual(restored.arc, (0, 1, 1, 0))

    def test_rejects_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "average"):
            SharedRnnCell(H, average="mean")
        with self.assertRaisesRegex(ValueError, "hidden_size"):
            SharedRnnCell(0)
        with self.assertRaises(ArcError):
            FixedRnnCell([0, 4], H)  # activation 4 does not exist
        with self.assertRaises(ArcError):
            FixedRnnCell([0, 0, 2, 0], H)  # node 2 reads nodes 0 .. 1
        cell = SharedRnnCell(H, num_nodes=2)
        cell.build()
        with self.assertRaisesRegex(ValueError, "expected an arc of 4"):
            cell(inputs()[0], arc=tf.constant([0, 0, 1]))
        with self.assertRaisesRegex(ValueError, "arc="):
            cell(inputs()[0])


if __name__ == "__main__":
    tf.test.main()
