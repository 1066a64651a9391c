"""`ArchitectureParameters`: DARTS's alpha, its optimiser and its derive
step (the strategy `enas_tf.strategies.darts`)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from enas_tf.controllers.build import Sample
from enas_tf.ops import table
from enas_tf.spaces.micro import CELL_TYPES, NONE_OP, MicroSpace, cell_edges, relaxed_ops
from enas_tf.spaces.rnn import RnnSpace, rnn_edges, rnn_relaxed_ops
from enas_tf.viz.draw import draw_arc_array
from enas_tf.viz.heatmap import draw_mix


def derive_cell(weights: np.ndarray, num_nodes: int, ops: tuple[str, ...]) -> list[int]:
    """One cell's decisions from its mixing weights (DARTS sec. 2.4).

    For each computed node, the two incoming edges with the strongest op
    other than "none" (ties: the earlier node), each with that op; the
    stronger edge is the node's input a.

    Args:
      weights: float `[edges, len(ops)]` (`cell_edges(num_nodes)` order).
      num_nodes: B.
      ops: the mixed ops (`relaxed_ops`); "none", if there, is never chosen.

    Returns:
      `[input_a, op_a, input_b, op_b]` per node, flat (the micro arc layout;
      op indices are the space's, which the mixed ops list first).
    """
    weights = np.asarray(weights, np.float64)
    real = [k for k, op in enumerate(ops) if op != NONE_OP]
    index = {e: i for i, e in enumerate(cell_edges(num_nodes))}
    decisions: list[int] = []
    for n in range(2, num_nodes + 2):
        rows = weights[[index[(j, n)] for j in range(n)]][:, real]
        strength = rows.max(axis=1)
        best = sorted(range(n), key=lambda j: (-strength[j], j))[:2]
        for j in best:
            decisions += [j, real[int(np.argmax(rows[j]))]]
    return decisions


def derive_rnn(weights: np.ndarray, num_nodes: int, ops: tuple[str, ...]) -> list[int]:
    """The enas_lm arc of a relaxed recurrent cell's mixing weights
    `[edges, ops]` (`rnn_edges` order; DARTS's recurrent genotype): per
    node, the incoming edge with the strongest activation other than "none"
    (ties: the earlier node), with that activation: `[p_1, f_1, ...]`."""
    weights = np.asarray(weights, np.float64)
    real = [f for f, op in enumerate(ops) if op != NONE_OP]
    index = {e: i for i, e in enumerate(rnn_edges(num_nodes))}
    arc: list[int] = []
    for k in range(1, num_nodes + 1):
        rows = weights[[index[(j, k)] for j in range(k)]][:, real]
        best = int(np.argmax(rows.max(axis=1)))  # argmax: the first of ties
        arc += [best, real[int(np.argmax(rows[best]))]]
    return arc


class ArchitectureParameters(tf.Module):
    """DARTS's architecture parameters over a micro space.

    `alpha` is float32 `[cells, edges, ops]`: for a micro space the normal
    and reduction cells, the edges of `enas_tf.spaces.micro.cell_edges` and
    the ops of `relaxed_ops`; for an enas_lm space (`RnnSpace`) one cell,
    the edges of `rnn_edges` and the activations of `rnn_relaxed_ops`.
    `mix()` is its softmax over the ops, what the relaxed network takes.
    The search computes alpha's gradient and calls `apply_gradient` (Adam
    with L2 weight decay added to the gradient, as torch's Adam does in
    DARTS's code). As a strategy it proposes its derived architecture:
    `sample(n)` is n copies of it, `candidates` it alone.

    Args:
      space: a `MicroSpace` or an `RnnSpace`.
      none_op: whether the ops include "none".
      seed: seed of alpha's initial draw (None: fresh entropy).
      init_scale: alpha starts as `init_scale * N(0, 1)` (DARTS: 1e-3).
      learning_rate, beta_1, beta_2: Adam's.
      weight_decay: L2 weight decay of alpha.
      num_aggregate: kept for the strategy protocol.
    """

    def __init__(
        self,
        space: MicroSpace,
        *,
        none_op: bool = True,
        seed: int | None = None,
        init_scale: float = 1e-3,
        learning_rate: float = 3e-4,
        beta_1: float = 0.5,
        beta_2: float = 0.999,
        weight_decay: float = 1e-3,
        num_aggregate: int = 1,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if isinstance(space, MicroSpace):
            self.cells, self.edges = CELL_TYPES, cell_edges(space.num_nodes)
            self.ops = relaxed_ops(space.ops, none_op)
        elif isinstance(space, RnnSpace):
            self.cells, self.edges = ("cell",), rnn_edges(space.num_nodes)
            self.ops = rnn_relaxed_ops(space.num_funcs, none_op)
        else:
            raise ValueError(
                f"DARTS needs a MicroSpace or an RnnSpace; received {type(space).__name__}."
            )
        self.space, self.num_aggregate = space, num_aggregate
        self.weight_decay = float(weight_decay)
        shape = (len(self.cells), len(self.edges), len(self.ops))
        draw = np.random.default_rng(seed).standard_normal(shape)
        self.alpha = tf.Variable((init_scale * draw).astype(np.float32), name="alpha")
        self.optimizer = keras.optimizers.Adam(learning_rate, beta_1=beta_1, beta_2=beta_2)
        self.optimizer.build([self.alpha])

    def mix(self) -> tf.Tensor:
        """float32 `[cells, edges, ops]`: softmax of alpha over the ops."""
        return tf.nn.softmax(self.alpha, axis=-1)

    def apply_gradient(self, gradient: tf.Tensor) -> None:
        """One Adam step of alpha on `gradient` (+ weight decay * alpha)."""
        gradient = gradient + self.weight_decay * self.alpha
        self.optimizer.apply([gradient], [self.alpha])

    # ----- the derived architecture -----------------------------------------

    def derive(self) -> np.ndarray:
        """int32 `[num_decisions]`: the derived architecture (`derive_cell`
        of the normal, then the reduction cell; `derive_rnn` of the
        recurrent cell)."""
        mix = self.mix().numpy()
        if isinstance(self.space, RnnSpace):
            return np.asarray(derive_rnn(mix[0], self.space.num_nodes, self.ops), np.int32)
        arc = []
        for cell in range(2):
            arc += derive_cell(mix[cell], self.space.num_nodes, self.ops)
        return np.asarray(arc, np.int32)

    def sample(self, batch_size: int = 1) -> Sample:
        """`batch_size` copies of the derived architecture (zero
        statistics: nothing is sampled)."""
        arc = tf.constant(np.tile(self.derive(), (int(batch_size), 1)))
        zero = tf.zeros([int(batch_size)])
        return Sample(arc, zero, zero, zero, zero)

    def candidates(self, n: int) -> np.ndarray:
        """The derived architecture alone (DARTS derives one)."""
        del n
        return self.derive()[None]

    def update(self, arcs: Any, rewards: Any) -> dict[str, float]:
        """DARTS learns from gradients, not rewards (`apply_gradient`)."""
        raise NotImplementedError(
            "DARTS learns its architecture parameters by gradient descent "
            "(enas_tf.search.darts.DartsSearch calls apply_gradient), not from rewards."
        )

    def parameter_free(self, arc: np.ndarray) -> tuple[float, int]:
        """(share of parameter-free ops in `arc`'s two cells, identity ops
        in its normal cell); for a recurrent cell (share of identity
        activations, identity activations)."""
        ids = np.asarray(arc)[1::2]
        if isinstance(self.space, RnnSpace):
            identities = int(sum(self.ops[int(f)] == "identity" for f in ids))
            return identities / len(ids), identities
        ops = [self.space.ops[k] for k in ids]
        free = [table.op(op).parameter_free for op in ops]
        normal = ops[: len(ops) // 2]
        return float(np.mean(free)), sum(table.op(op).kind == "identity" for op in normal)

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        """Per epoch: the mixing weights (one heat map per cell: rows are
        edges, columns ops) and the derived cells as images; the derived
        cells' share of parameter-free ops, identity ops of the normal
        cell, and the mean entropy of the edges' softmax."""
        del epoch
        mix = self.mix().numpy()
        arc = self.derive()
        share, identities = self.parameter_free(arc)
        entropy = -np.sum(mix * np.log(np.maximum(mix, 1e-30)), axis=-1)
        labels = [f"{j}->{n}" for j, n in self.edges]
        return {
            "alphas": draw_mix(mix, list(self.cells), labels, list(self.ops)),
            "derived_cells": draw_arc_array(self.space, arc).astype(np.float32) / 255.0,
            "parameter_free_share": share,
            "identity_ops_normal": float(identities),
            "alpha_entropy": float(entropy.mean()),
        }
