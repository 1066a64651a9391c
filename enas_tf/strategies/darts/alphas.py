"""`ArchitectureParameters`: DARTS's alpha, its optimiser and its derive
step (the strategy `enas_tf.strategies.darts`)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from enas_tf.controllers.build import Sample
from enas_tf.ops import table
from enas_tf.spaces.macro import MacroSpace, skip_source_name
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


def derive_macro(weights: np.ndarray, num_layers: int, ops: tuple[str, ...]) -> list[int]:
    """The macro arc of a relaxed macro network's mixing weights
    `[layers, len(ops) + layers]` (`enas_tf.supernet.relaxed`): per layer
    its strongest op other than "none", and the skips whose gate is above
    one half (the more likely value of the relaxed Bernoulli)."""
    weights = np.asarray(weights, np.float64)
    real = [k for k, op in enumerate(ops) if op != NONE_OP]
    arc: list[int] = []
    for layer in range(num_layers):
        arc.append(real[int(np.argmax(weights[layer, real]))])
        arc += [int(weights[layer, len(ops) + j] > 0.5) for j in range(layer)]
    return arc


def one_hot_mix(space, ops: tuple[str, ...], arc) -> np.ndarray:
    """float32 mixing weights of `arc` for a relaxed image network (micro:
    `[2, edges, ops]`, weight 1 on each node's two (input, op) edges, 2 on
    one edge when both read the same input with the same op; macro:
    `[1, layers, ops + layers]`, each layer's op and its skip bits as
    gates)."""
    arc = np.asarray(arc, np.int64)
    if isinstance(space, MacroSpace):
        mix = np.zeros((1, space.num_layers, len(ops) + space.num_layers), np.float32)
        for layer, decoded in enumerate(space.decode(arc).layers):
            mix[0, layer, decoded.op] = 1.0
            mix[0, layer, len(ops) : len(ops) + layer] = decoded.skip_bits
        return mix
    index = {e: i for i, e in enumerate(cell_edges(space.num_nodes))}
    mix = np.zeros((2, len(index), len(ops)), np.float32)
    for cell, nodes in enumerate(arc.reshape(2, space.num_nodes, 4)):
        for n, (input_a, op_a, input_b, op_b) in enumerate(nodes, start=2):
            mix[cell, index[(int(input_a), n)], int(op_a)] += 1.0
            mix[cell, index[(int(input_b), n)], int(op_b)] += 1.0
    return mix


class ArchitectureParameters(tf.Module):
    """DARTS's architecture parameters over a micro space.

    `alpha` is float32 `[cells, edges, ops]`: for a micro space the normal
    and reduction cells, the edges of `enas_tf.spaces.micro.cell_edges` and
    the ops of `relaxed_ops`; for an enas_lm space (`RnnSpace`) one cell,
    the edges of `rnn_edges` and the activations of `rnn_relaxed_ops`.
    `mix()` is its softmax over the ops, what the relaxed network takes.
    For a macro space `alpha` is `[1, layers, ops + layers]`: per layer the
    op logits, then one logit per skip input; `mix()` is the softmax of the
    former and the sigmoid of the latter (the skip gates, 0 where a layer
    has no such input).
    The search computes alpha's gradient and calls `apply_gradient` (Adam
    with L2 weight decay added to the gradient, as torch's Adam does in
    DARTS's code). As a strategy it proposes its derived architecture:
    `sample(n)` is n copies of it, `candidates` it alone.

    Args:
      space: a `MicroSpace`, `MacroSpace` or `RnnSpace`.
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
        self.gates = None  # macro: which skip gates exist, [1, layers, layers]
        if isinstance(space, MicroSpace):
            self.cells, edges = CELL_TYPES, cell_edges(space.num_nodes)
            self.ops = self.columns = relaxed_ops(space.ops, none_op)
            self.rows = tuple(f"{j}->{n}" for j, n in edges)
        elif isinstance(space, RnnSpace):
            self.cells, edges = ("cell",), rnn_edges(space.num_nodes)
            self.ops = self.columns = rnn_relaxed_ops(space.num_funcs, none_op)
            self.rows = tuple(f"{j}->{n}" for j, n in edges)
        elif isinstance(space, MacroSpace):
            layers = space.num_layers
            self.cells, self.ops = ("layers",), relaxed_ops(space.ops, none_op)
            self.rows = tuple(f"layer{layer}" for layer in range(layers))
            skips = tuple(f"skip {skip_source_name(j)}" for j in range(layers))
            self.columns = (*self.ops, *skips)
            gates = np.tril(np.ones((layers, layers), np.float32), k=-1)[None]
            self.gates = tf.constant(gates)
        else:
            raise ValueError(
                "DARTS needs a MicroSpace, MacroSpace or RnnSpace; received "
                f"{type(space).__name__}."
            )
        self.space, self.num_aggregate = space, num_aggregate
        self.weight_decay = float(weight_decay)
        shape = (len(self.cells), len(self.rows), len(self.columns))
        draw = np.random.default_rng(seed).standard_normal(shape)
        self.alpha = tf.Variable((init_scale * draw).astype(np.float32), name="alpha")
        self.optimizer = keras.optimizers.Adam(learning_rate, beta_1=beta_1, beta_2=beta_2)
        self.optimizer.build([self.alpha])

    def mix(self) -> tf.Tensor:
        """float32 `[cells, edges, ops]`: softmax of alpha over the ops
        (macro: and the skip gates)."""
        return self.mix_of(self.alpha)

    def mix_of(self, alpha: tf.Tensor) -> tf.Tensor:
        """The mixing weights of architecture parameters `alpha` (`mix`)."""
        if self.gates is None:
            return tf.nn.softmax(alpha, axis=-1)
        num_ops = len(self.ops)
        ops = tf.nn.softmax(alpha[..., :num_ops], axis=-1)
        return tf.concat([ops, tf.sigmoid(alpha[..., num_ops:]) * self.gates], axis=-1)

    def apply_gradient(self, gradient: tf.Tensor) -> None:
        """One Adam step of alpha on `gradient` (+ weight decay * alpha)."""
        gradient = gradient + self.weight_decay * self.alpha
        self.optimizer.apply([gradient], [self.alpha])

    # ----- the derived architecture -----------------------------------------

    def derive(self) -> np.ndarray:
        """int32 `[num_decisions]`: the derived architecture (`derive_cell`
        of the normal, then the reduction cell; `derive_rnn` of the
        recurrent cell; `derive_macro` of the macro network)."""
        mix = self.mix().numpy()
        if isinstance(self.space, RnnSpace):
            return np.asarray(derive_rnn(mix[0], self.space.num_nodes, self.ops), np.int32)
        if isinstance(self.space, MacroSpace):
            return np.asarray(derive_macro(mix[0], self.space.num_layers, self.ops), np.int32)
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
        activations, identity activations); for a macro network (share of
        pooling layers, 0: it has no identity op)."""
        if isinstance(self.space, MacroSpace):
            ops = [self.space.ops[layer.op] for layer in self.space.decode(arc).layers]
            return float(np.mean([table.op(op).parameter_free for op in ops])), 0
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
        cell, and the mean entropy of the edges' softmax (macro: of the
        layers' op softmax; and the derived skip rate)."""
        del epoch
        mix = self.mix().numpy()
        arc = self.derive()
        share, identities = self.parameter_free(arc)
        ops = mix[..., : len(self.ops)]
        entropy = -np.sum(ops * np.log(np.maximum(ops, 1e-30)), axis=-1)
        logs = {
            "alphas": draw_mix(mix, list(self.cells), list(self.rows), list(self.columns)),
            "derived_cells": draw_arc_array(self.space, arc).astype(np.float32) / 255.0,
            "parameter_free_share": share,
            "alpha_entropy": float(entropy.mean()),
        }
        if isinstance(self.space, MacroSpace):
            logs["skip_rate"] = self.space.decode(arc).skip_rate
        else:
            logs["identity_ops_normal"] = float(identities)
        return logs
