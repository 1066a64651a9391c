"""A micro cell's slots: the candidate ops of one node input, one switch.

Each slot (input a or b of a node) of a `MicroSupernet` cell is one
`tf.switch_case` over its candidate ops (`candidate_ops`), run on the slot's
row of the cell's weight stacks (`slot_rows`). A cell's trainable stacks are
read once per step as one flat stack per row group (`flat_weights`); a slot
gathers its row and splits it back into weights (`unflatten`), so each
slot's weight gradient is a single one-row `IndexedSlices`.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from enas_tf.ops import shared as ops
from enas_tf.ops import table
from enas_tf.spaces.micro import MICRO_OPS


def slot_rows(n: int, slot: int) -> tuple[int, int]:
    """First rows of node `n`'s slot (0 = a, 1 = b) in a cell's stacks.

    Sep-conv stacks hold one row per input (earlier node) for each slot of
    each node, in order: node n's slot starts at 2 * (2 + ... + (n - 1)) +
    slot * n. Reduce stacks (identity on input 0 or 1 of a reduction cell)
    hold two rows per slot.
    """
    return (n - 2) * (n + 1) + slot * n, 2 * (2 * (n - 2) + slot)


def candidate_ops(inputs, strides, rows, picked, stats, num_ops, momentum, epsilon, training):
    """A slot's candidate ops, as callables in branch order.

    Branch b applies op `MICRO_OPS[b % num_ops]` to `inputs[b // num_ops]`
    with stride `strides[b // num_ops]`. A branch that runs in training
    updates the moving statistics of the rows it uses.

    Args:
      inputs: the chosen node, or (in a reduction cell) the chosen still
        large node and the chosen reduced node.
      strides: Python ints, one per input.
      rows: int32 `[2]`: the row of the sep-conv stacks and of the reduce
        stacks (`slot_rows` plus the input index).
      picked: the slot's rows of the trainable weights, as tensors:
        `{op: [(dw, pw, gamma, beta)] * 2}` for the sep convs and, in a
        reduction cell, `{"identity": [(path1, path2, gamma, beta)]}`.
      stats: the moving statistics, as `tf.Variable` stacks, in the same
        structure: `{op: [(mean, var)] * units}`.
      num_ops, momentum, epsilon, training: as `MicroSupernet` (`training`
        is a `shared_ops.bn_mode`).

    Returns:
      `len(inputs) * num_ops` callables without arguments, each returning
      a float32 `[batch, height, width, channels]` output of the slot.
    """
    row = {op: rows[1] if op == "identity" else rows[0] for op in picked}
    moving = {
        op: [[tf.gather(s, row[op]) for s in unit] for unit in units] for op, units in stats.items()
    }

    def norm(x, op, u):
        x, new = ops.batch_norm(x, *picked[op][u][2:], *moving[op][u], momentum, epsilon, training)
        if training is True:
            ops.update_rows(*stats[op][u], row[op], new)
        return x

    def run(op, x, stride):
        spec = table.op(op)
        if spec.kind == "sep_conv":
            for u, (dw, pw, *_) in enumerate(picked[op]):
                x = ops.sep_conv(tf.nn.relu(x), dw, pw, stride if u == 0 else 1)
                x = norm(x, op, u)
            return x
        if spec.kind == "pool":
            return ops.pool(x, spec.pool, stride)
        if stride == 2:  # identity on a large input: factorized reduction
            return norm(ops.factorized_reduction(x, *picked[op][0][:2]), op, 0)
        return tf.identity(x)

    return [
        functools.partial(run, op, x, stride)
        for x, stride in zip(inputs, strides)
        for op in MICRO_OPS[:num_ops]
    ]


def unflatten(flat_rows, layout):
    """The slot's weights `{op: [(dw, pw, gamma, beta), ...]}` from its rows of
    a cell's flat stacks (`flat_weights`).

    Args:
      flat_rows: `{group: [width] tensor}`, one row per flat stack.
      layout: `{group: ((op, unit, shapes), ...)}`, static: the weights of
        each row in order, `shapes` the shapes of the unit's weights.
    """
    picked = {}
    for group, units in layout.items():
        sizes = [int(np.prod(shape)) for _, _, shapes in units for shape in shapes]
        pieces = iter(tf.split(flat_rows[group], sizes))
        for op, _, shapes in units:
            picked.setdefault(op, []).append(
                tuple(tf.reshape(next(pieces), shape) for shape in shapes)
            )
    return picked


def switch_slot(inputs, strides, branch, rows, flat_rows, layout, stats, **settings):
    """The output of candidate `branch` (see `candidate_ops`); only it runs.

    `flat_rows` and `layout` give the slot's trainable weights (`unflatten`).
    """
    picked = unflatten(flat_rows, layout)
    branches = candidate_ops(inputs, strides, rows, picked, stats, **settings)
    return tf.switch_case(branch, branches)


def flat_weights(stacks):
    """A cell's trainable stacks as one flat stack per group of rows.

    Args:
      stacks: `{group: [(op, unit, (stack, ...)), ...]}`, stacks of equal
        row counts within a group (the sep convs' rows; the reduce rows).

    Returns:
      `(flat, layout)`: `flat[group]` is `[rows, width]`, every stack of
      the group reshaped to `[rows, -1]` and concatenated, and
      `layout[group]` the static `((op, unit, shapes), ...)` that
      `unflatten` reads a row back with. One gather of a flat stack gives a
      slot all its weights, and its gradient is one `IndexedSlices` row.
    """
    flat, layout = {}, {}
    for group, units in stacks.items():
        rows = units[0][2][0].shape[0]
        flat[group] = tf.concat(
            [tf.reshape(w, [rows, -1]) for _, _, ws in units for w in ws], axis=1
        )
        layout[group] = tuple(
            (op, unit, tuple(tuple(w.shape[1:]) for w in ws)) for op, unit, ws in units
        )
    return flat, layout
