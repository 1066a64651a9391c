"""Tests of a micro cell's slot pieces (`enas_tf.supernet.slots`)."""

import numpy as np
import tensorflow as tf

from enas_tf.supernet import slots


def test_slot_rows_tile_the_stacks():
    # Node n's slots each hold n rows (one per earlier node) in the sep-conv
    # stacks and 2 rows in the reduce stacks, back to back from node 2 on.
    sep, reduce = [], []
    for n in range(2, 7):
        for slot in (0, 1):
            first, first_reduce = slots.slot_rows(n, slot)
            sep.extend(range(first, first + n))
            reduce.extend(range(first_reduce, first_reduce + 2))
    assert sep == list(range(len(sep))) and reduce == list(range(len(reduce)))


def test_flat_weights_round_trip():
    rng = np.random.default_rng(0)
    dw = tf.constant(rng.normal(size=(4, 3, 3, 2, 1)), tf.float32)
    pw = tf.constant(rng.normal(size=(4, 1, 1, 2, 5)), tf.float32)
    gamma = tf.constant(rng.normal(size=(4, 5)), tf.float32)
    stacks = {"sep": [("sep_conv_3x3", 1, (dw, pw, gamma))]}
    flat, layout = slots.flat_weights(stacks)
    assert flat["sep"].shape == (4, 3 * 3 * 2 + 2 * 5 + 5)
    picked = slots.unflatten({"sep": flat["sep"][2]}, layout)
    for got, want in zip(picked["sep_conv_3x3"][0], (dw, pw, gamma)):
        np.testing.assert_array_equal(got, want[2])
