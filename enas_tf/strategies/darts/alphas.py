"""`ArchitectureParameters`: DARTS's alpha, its optimiser and its derive
step (the strategy `enas_tf.strategies.darts`)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from enas_tf.controllers.build import Sample
from enas_tf.ops import table
from enas_tf.spaces.micro import CELL_TYPES, MicroSpace
from enas_tf.supernet.relaxed import NONE, edges, relaxed_ops
from enas_tf.viz.draw import draw_arc_array
from enas_tf.viz.heatmap import draw_mix


def derive_cell(weights: np.ndarray, num_nodes: int, ops: tuple[str, ...]) -> list[int]:
    """One cell's decisions from its mixing weights (DARTS sec. 2.4).

    For each computed node, the two incoming edges with the strongest op
    other than "none" (ties: the earlier node), each with that op; the
    stronger edge is the node's input a.

    Args:
      weights: float `[edges, len(ops)]` (`edges(num_nodes)` order).
      num_nodes: B.
      ops: the mixed ops (`relaxed_ops`); "none", if there, is never chosen.

    Returns:
      `[input_a, op_a, input_b, op_b]` per node, flat (the micro arc layout;
      op indices are the space's, which the mixed ops list first).
    """
    weights = np.asarray(weights, np.float64)
    real = [k for k, op in enumerate(ops) if op != NONE]
    index = {e: i for i, e in enumerate(edges(num_nodes))}
    decisions: list[int] = []
    for n in range(2, num_nodes + 2):
        rows = weights[[index[(j, n)] for j in range(n)]][:, real]
        strength = rows.max(axis=1)
        best = sorted(range(n), key=lambda j: (-strength[j], j))[:2]
        for j in best:
            decisions += [j, real[int(np.argmax(rows[j]))]]
    return decisions


class ArchitectureParameters(tf.Module):
    """DARTS's architecture parameters over a micro space.

    `alpha` is float32 `[2, edges, ops]` (normal and reduction cell, the
    edges of `enas_tf.supernet.relaxed.edges`, the ops of `relaxed_ops`);
    `mix()` is its softmax over the ops, what the relaxed network takes.
    The search computes alpha's gradient and calls `apply_gradient` (Adam
    with L2 weight decay added to the gradient, as torch's Adam does in
    DARTS's code). As a strategy it proposes its derived architecture:
    `sample(n)` is n copies of it, `candidates` it alone.

    Args:
      space: the micro space.
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
        if not isinstance(space, MicroSpace):
            raise ValueError(f"DARTS needs a MicroSpace; received {type(space).__name__}.")
        self.space, self.num_aggregate = space, num_aggregate
        self.ops = relaxed_ops(space, none_op)
        self.weight_decay = float(weight_decay)
        shape = (2, len(edges(space.num_nodes)), len(self.ops))
        draw = np.random.default_rng(seed).standard_normal(shape)
        self.alpha = tf.Variable((init_scale * draw).astype(np.float32), name="alpha")
        self.optimizer = keras.optimizers.Adam(learning_rate, beta_1=beta_1, beta_2=beta_2)
        self.optimizer.build([self.alpha])

    def mix(self) -> tf.Tensor:
        """float32 `[2, edges, ops]`: softmax of alpha over the ops."""
        return tf.nn.softmax(self.alpha, axis=-1)

    def apply_gradient(self, gradient: tf.Tensor) -> None:
        """One Adam step of alpha on `gradient` (+ weight decay * alpha)."""
        gradient = gradient + self.weight_decay * self.alpha
        self.optimizer.apply([gradient], [self.alpha])

    # ----- the derived architecture -----------------------------------------

    def derive(self) -> np.ndarray:
        """int32 `[num_decisions]`: the derived architecture (`derive_cell`
        of the normal, then the reduction cell)."""
        mix = self.mix().numpy()
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
        in its normal cell)."""
        ops = [self.space.ops[k] for k in np.asarray(arc)[1::2]]
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
        labels = [f"{j}->{n}" for j, n in edges(self.space.num_nodes)]
        return {
            "alphas": draw_mix(mix, list(CELL_TYPES), labels, list(self.ops)),
            "derived_cells": draw_arc_array(self.space, arc).astype(np.float32) / 255.0,
            "parameter_free_share": share,
            "identity_ops_normal": float(identities),
            "alpha_entropy": float(entropy.mean()),
        }
