"""DARTS's relaxed recurrent cell over the enas_lm space.

Liu et al. (2019), sec. 2.1 and the recurrent search network of its code:
the base node is the enas_lm cell's (`[a | g] = [x_t, h_{t-1}] W_0`,
`s_0 = hw(h_{t-1}, tanh)`), and every searched node k = 1 .. L mixes *all*
its predecessors j < k and every activation f, with one matrix per node:

    [a_j | g_j] = (s_j * m_l) W_k                     for j = 0 .. k-1
    s_k = sum_j sum_f mix[e(j, k), f] * hw(s_j, f)    hw(s, f) = s + sigmoid(g) (f(a) - s)

where `mix[e, :]` are the weights of edge e over the activations
(`RNN_ACTIVATIONS[:F]`, then DARTS's "none", which adds nothing) and
`h_t` is the mean of s_1 .. s_L (`average="all"`). With one-hot weights
(node k: 1 at edge (p_k, k), activation f_k) this is the fixed cell of the
arc `[p_1, f_1, ..., p_L, f_L]` with `W_k` as node k's matrix
(`FixedRnnCell`, tests/lm/relaxed_test.py); DARTS derives such an arc by
keeping, per node, the strongest incoming edge and its strongest activation
other than "none" (`enas_tf.strategies.darts.alphas.derive_rnn`).

`RelaxedRnnLM` is the language model around it (`enas_tf.lm.model`'s
embedding, dropouts and tied softmax), called with `arc=mix`.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from enas_tf.lm.cells import ACTIVATIONS, _RnnCell
from enas_tf.lm.model import _RnnLM, dropout_rates
from enas_tf.spaces.rnn import rnn_edges, rnn_relaxed_ops


@keras.saving.register_keras_serializable(package="enas_tf")
class RelaxedRnnCell(_RnnCell):
    """DARTS's relaxed cell for `RnnSpace(num_nodes, num_funcs)`.

    Weights: `w0` `[2H, 2H]` and `nodes` `[L, H, 2H]` (one matrix per node,
    shared by its incoming edges, as DARTS's recurrent cell).

    Args:
      hidden_size: H.
      num_nodes: L.
      num_funcs: F, activations mixed (4).
      none_op: mix in DARTS's "none" (sets the width of the mixing weights).
      init_range: weights start U(-init_range, init_range).
      **kwargs: `keras.layers.Layer` arguments.

    Call arguments: see `_RnnCell.call`; `arc` is the mixing weights, float
    `[L(L+1)/2, F (+1)]` (a tensor: one trace serves every alpha).
    """

    def __init__(
        self,
        hidden_size: int,
        num_nodes: int = 8,
        num_funcs: int = 4,
        none_op: bool = True,
        init_range: float = 0.04,
        **kwargs: Any,
    ) -> None:
        super().__init__(hidden_size, num_nodes, num_funcs, "all", init_range, **kwargs)
        self.none_op = bool(none_op)
        self.ops = rnn_relaxed_ops(num_funcs, none_op)
        edges = rnn_edges(num_nodes)
        # Node k's edges are rows first[k] .. first[k] + k - 1 of the mix.
        self._first = {k: edges.index((0, k)) for k in range(1, num_nodes + 1)}

    def _build_nodes(self) -> None:
        h = self.hidden_size
        self.nodes = self.add_weight(
            shape=(self.num_nodes, h, 2 * h), initializer=self._init(), name="nodes"
        )

    def kernels(self, arc: Any = None) -> list[tf.Tensor]:
        """`[W_0, W_1, ..., W_L]`, compute dtype (`arc` is ignored)."""
        del arc
        dtype = self.compute_dtype
        return [tf.cast(self.w0.value, dtype)] + tf.unstack(
            tf.cast(self.nodes.value, dtype), num=self.num_nodes
        )

    def _plan(self, arc: Any) -> tuple:
        if arc is None:
            raise ValueError("RelaxedRnnCell needs the mixing weights: arc=mix.")
        mix = tf.cast(tf.convert_to_tensor(arc), self.compute_dtype)
        expected = (len(rnn_edges(self.num_nodes)), len(self.ops))
        if tuple(mix.shape) != expected:
            raise ValueError(f"Expected mixing weights of shape {expected}; received {mix.shape}.")
        return self.kernels()[1:], mix

    def _node(self, k, nodes, l_mask, plan):
        weights, mix = plan
        states = tf.stack(nodes[:k])  # [k, batch, H]
        read = states if l_mask is None else states * l_mask
        ag = tf.einsum("jbh,hg->jbg", read, weights[k - 1])
        rows = mix[self._first[k] : self._first[k] + k]  # [k, ops]
        out = tf.zeros_like(nodes[0])
        for f in range(self.num_funcs):
            mixed = self._highway(states, ag, ACTIVATIONS[f])  # [k, batch, H]
            out += tf.tensordot(rows[:, f], mixed, axes=1)
        return out

    def _output(self, nodes, plan):
        return tf.add_n(nodes[1:]) / float(self.num_nodes)

    def child_weights(self) -> dict[str, np.ndarray]:
        """`FixedRnnCell` weights (any arc of the space): `w0`, `node1 ..`."""
        nodes = self.nodes.numpy()
        weights = {"w0": self.w0.numpy()}
        weights.update({f"node{k}": nodes[k - 1] for k in range(1, self.num_nodes + 1)})
        return weights

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["average"]
        return {**config, "none_op": self.none_op}


@keras.saving.register_keras_serializable(package="enas_tf")
class RelaxedRnnLM(_RnnLM):
    """The DARTS search model: `RelaxedRnnCell` in the enas_lm language model.

    Args:
      vocab_size: V.
      hidden_size: H, also the embedding size.
      num_nodes: L.
      num_funcs: activations mixed (4).
      none_op: mix in DARTS's "none".
      init_range: every weight starts U(-init_range, init_range).
      drop_e, drop_i, drop_x, drop_l, drop_o: dropout rates (`enas_tf.lm.model`).
      seed: seed of the dropout masks, or None.
      **kwargs: `keras.Model` arguments.

    Call arguments: see `enas_tf.lm.model._RnnLM.call`; `arc` is the mixing
    weights, float32 `mix_shape`.
    """

    def __init__(
        self,
        vocab_size: int = 10000,
        hidden_size: int = 300,
        num_nodes: int = 8,
        num_funcs: int = 4,
        none_op: bool = True,
        init_range: float = 0.04,
        drop_e: float = 0.0,
        drop_i: float = 0.2,
        drop_x: float = 0.75,
        drop_l: float = 0.25,
        drop_o: float = 0.75,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        cell = RelaxedRnnCell(hidden_size, num_nodes, num_funcs, none_op, init_range, name="cell")
        dropouts = dropout_rates(drop_e, drop_i, drop_x, drop_l, drop_o)
        super().__init__(cell, vocab_size, hidden_size, init_range, dropouts, seed, **kwargs)

    @property
    def mix_shape(self) -> tuple[int, int]:
        """`(edges, ops)` of the mixing weights."""
        return len(rnn_edges(self.cell.num_nodes)), len(self.cell.ops)

    def one_hot(self, arc: Any) -> np.ndarray:
        """float32 mixing weights of an enas_lm arc: node k's edge from
        p_k at activation f_k is 1, the rest 0."""
        arc = [int(v) for v in arc]
        mix = np.zeros(self.mix_shape, np.float32)
        index = {e: i for i, e in enumerate(rnn_edges(self.cell.num_nodes))}
        for k in range(1, self.cell.num_nodes + 1):
            mix[index[(arc[2 * k - 2], k)], arc[2 * k - 1]] = 1.0
        return mix

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["average"]
        return {**config, "num_nodes": self.cell.num_nodes, "none_op": self.cell.none_op}
