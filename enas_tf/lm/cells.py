"""Recurrent cells of the enas_lm space: shared-weight supernet and fixed cell.

Both cells run the enas_lm cell (ENAS_LM_REFERENCE sec. 1.2) over a whole
sequence. Per time step, with `m_x`, `m_l` the `[batch, hidden]` dropout
masks (fixed over time; all-ones at inference):

    [a | g] = concat(x_t * m_x, h_{t-1} * m_l) W_0,   s_0 = hw(h_{t-1}, tanh)
    [a | g] = (s_{p_k} * m_l) W_k,                    s_k = hw(s_{p_k}, f_k)
    hw(s, act) = s + sigmoid(g) * (act(a) - s)        (highway; no bias)

and `h_t` is the mean of the searched nodes `s_1 .. s_L` (`average="all"`,
the search and GPU-fixed code) or of the loose ends (`average="loose_ends"`,
the TPU-fixed recipe behind the README's 56.1; spec sec. 9 item 1).

`SharedRnnCell` holds every candidate matrix (spec sec. 1.3): one `[H, 2H]`
matrix per (node k, predecessor p, activation f), stored as rows of one
stack `[F * L (L + 1) / 2, H, 2H]` (`skip_row` gives the row). The arc is an
int32 tensor: the L matrices it selects are gathered once per sequence
(`tf.gather`, so gradients are `IndexedSlices` touching only those rows and
plain SGD moves nothing else), node k reads its predecessor through
`pick_input` and applies its activation through `pick_activation`. Only the
selected matmuls run, and one traced graph serves every arc.

`FixedRnnCell` is the retraining cell of one arc (spec sec. 1.4): `W_0` and
one `[H, 2H]` matrix per node, plain Keras weights, Python-chosen ops. Given
`SharedRnnCell.child_weights(arc)` it computes the same numbers.

Activation and input choice: the arc's activation runs through
`tf.switch_case` inside the time loop, so only the chosen activation runs,
forward and backward. Computing all four and gathering one (what the search
code does) was slower: `bench/rnn_step.py` (V 2000, H 64, L 9, batch 16,
T 20, 5 arcs; one run each on a shared 2-core CPU, so noisy) gave a median
shared/fixed step-time ratio of 1.19 with the switch and 1.30 computing all.
The predecessor is a `tf.gather` on the stacked nodes, a copy of k small
`[batch, H]` tensors; a switch there measured the same (1.19).

The x-part of the base node's matmul, `(x_t * m_x) W_0[:H]`, does not depend
on the state, so both cells compute it for all time steps in one matmul
before the time loop (same arithmetic in both, so outputs still match).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from enas_tf.spaces.rnn import RNN_ACTIVATIONS, RnnArch, RnnSpace

# Functions in arc-id order (RNN_ACTIVATIONS: tanh, ReLU, sigmoid, identity).
ACTIVATIONS = (tf.tanh, tf.nn.relu, tf.sigmoid, tf.identity)
AVERAGES = ("all", "loose_ends")


def skip_row(node: int, prev: int, func: int, num_funcs: int) -> int:
    """Row of `SharedRnnCell`'s stack for node `node` (1-based) reading
    node `prev` with activation `func`: `F (k - 1) k / 2 + f k + p`."""
    return num_funcs * (node - 1) * node // 2 + func * node + prev


def select_gather(nodes: list[tf.Tensor], index: tf.Tensor) -> tf.Tensor:
    """`nodes[index]` by stacking and gathering (the default `pick_input`)."""
    if len(nodes) == 1:
        return nodes[0]
    return tf.gather(tf.stack(nodes), index)


def activation_switch(a: tf.Tensor, func: tf.Tensor, num_funcs: int) -> tf.Tensor:
    """`ACTIVATIONS[func](a)`, running only the chosen one (the default)."""
    if num_funcs == 1:
        return ACTIVATIONS[0](a)
    return tf.switch_case(func, [lambda f=f: f(a) for f in ACTIVATIONS[:num_funcs]])


def _check(
    hidden_size: int, num_nodes: int, num_funcs: int, average: str, init_range: float
) -> None:
    if hidden_size < 1:
        raise ValueError(f"Expected hidden_size >= 1; received: {hidden_size}.")
    RnnSpace(num_nodes=num_nodes, num_funcs=num_funcs)  # checks both
    if average not in AVERAGES:
        raise ValueError(f"Expected average in {AVERAGES}; received: {average!r}.")
    if not init_range > 0:
        raise ValueError(f"Expected init_range > 0; received: {init_range}.")


class _RnnCell(keras.layers.Layer):
    """Common part of the two cells: `W_0`, the time loop, the base node.

    Subclasses define `_build_nodes()` (the node weights), `_plan(arc)` (the
    per-sequence data of the arc), `_node(k, nodes, l_mask, plan)` (s_k) and
    `_output(nodes, plan)` (h_t).
    """

    def __init__(
        self,
        hidden_size: int,
        num_nodes: int,
        num_funcs: int,
        average: str,
        init_range: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check(hidden_size, num_nodes, num_funcs, average, init_range)
        self.hidden_size = hidden_size
        self.num_nodes = num_nodes
        self.num_funcs = num_funcs
        self.average = average
        self.init_range = init_range
        self.space = RnnSpace(num_nodes=num_nodes, num_funcs=num_funcs)

    def _init(self) -> keras.initializers.Initializer:
        # Spec sec. 2.1: every weight U(-init_range, init_range).
        return keras.initializers.RandomUniform(-self.init_range, self.init_range)

    def build(self, input_shape: Any = None) -> None:
        del input_shape  # sizes come from the constructor
        h = self.hidden_size
        self.w0 = self.add_weight(shape=(2 * h, 2 * h), initializer=self._init(), name="w0")
        self._build_nodes()
        self.built = True

    @staticmethod
    def _highway(prev: tf.Tensor, ag: tf.Tensor, act: Any) -> tf.Tensor:
        """`prev + sigmoid(g) * (act(a) - prev)`; `act` maps `a` to `act(a)`."""
        a, g = tf.split(ag, 2, axis=-1)
        return prev + tf.sigmoid(g) * (act(a) - prev)

    def call(
        self,
        inputs: tf.Tensor,
        state: tf.Tensor | None = None,
        arc: Any = None,
        x_mask: tf.Tensor | None = None,
        l_mask: tf.Tensor | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Runs the cell over a sequence.

        Call arguments:
          inputs: `[batch, time, hidden]`, the embedded (and input-dropped)
            words; time >= 1.
          state: `[batch, hidden]` h_{-1}, or None for zeros.
          arc: int32 `[2 L]` (shared cell only; a tensor, so one trace serves
            every arc).
          x_mask: `[batch, hidden]` mask of x_t at the base node, or None.
          l_mask: `[batch, hidden]` mask of h_{t-1} at the base node and of
            every node's matmul input, or None.

        Returns:
          `(outputs, last)`: `[batch, time, hidden]` h_1 .. h_T (undropped)
          and `[batch, hidden]` h_T, in the compute dtype.
        """
        dtype = self.compute_dtype
        x = tf.cast(inputs, dtype)
        h = self.hidden_size
        if state is None:
            state = tf.zeros([tf.shape(x)[0], h], dtype)
        state = tf.cast(state, dtype)
        if x_mask is not None:
            x = x * tf.cast(x_mask, dtype)[:, None, :]
        if l_mask is not None:
            l_mask = tf.cast(l_mask, dtype)
        w0 = tf.cast(self.w0.value, dtype)
        # [time, batch, hidden]; the state-free half of the base matmul, once.
        x = tf.transpose(x, [1, 0, 2])
        shape = tf.shape(x)
        xw = tf.reshape(tf.matmul(tf.reshape(x, [-1, h]), w0[:h]), [shape[0], shape[1], 2 * h])
        w_h = w0[h:]
        plan = self._plan(arc)

        def step(h_prev: tf.Tensor, xw_t: tf.Tensor) -> tf.Tensor:
            read = h_prev if l_mask is None else h_prev * l_mask
            # The carry uses the unmasked h_{t-1} (spec sec. 1.2).
            nodes = [self._highway(h_prev, xw_t + tf.matmul(read, w_h), tf.tanh)]
            for k in range(1, self.num_nodes + 1):
                nodes.append(self._node(k, nodes, l_mask, plan))
            return self._output(nodes, plan)

        outputs = tf.scan(step, xw, initializer=state)
        return tf.transpose(outputs, [1, 0, 2]), outputs[-1]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "hidden_size": self.hidden_size,
            "num_nodes": self.num_nodes,
            "num_funcs": self.num_funcs,
            "average": self.average,
            "init_range": self.init_range,
        }


@keras.saving.register_keras_serializable(package="enas_tf")
class SharedRnnCell(_RnnCell):
    """The enas_lm cell for every arc of `RnnSpace(num_nodes, num_funcs)`.

    Weights: `w0` `[2H, 2H]` and `skip` `[F L (L + 1) / 2, H, 2H]`, a
    matrix per (node, predecessor, activation) (spec sec. 1.3; the activation
    index is the code's, which the paper's equations leave out).

    Args:
      hidden_size: H (also the embedding size).
      num_nodes: L, searched nodes (9 in the search).
      num_funcs: F, activations the arc may use (4).
      average: "all" (mean of s_1 .. s_L, the search code) or "loose_ends".
      init_range: weights start U(-init_range, init_range) (0.04).
      **kwargs: `keras.layers.Layer` arguments.

    Call arguments: see `_RnnCell.call`; `arc` is required.
    """

    # Swappable, for the benchmark (see the module docstring).
    pick_input = staticmethod(select_gather)
    pick_activation = staticmethod(activation_switch)

    def __init__(
        self,
        hidden_size: int,
        num_nodes: int = 9,
        num_funcs: int = 4,
        average: str = "all",
        init_range: float = 0.04,
        **kwargs: Any,
    ) -> None:
        super().__init__(hidden_size, num_nodes, num_funcs, average, init_range, **kwargs)
        rows = [[skip_row(k, 0, 0, num_funcs), k] for k in range(1, num_nodes + 1)]
        self._row_base = np.asarray(rows, np.int32)  # [L, 2]: offset, k

    def _build_nodes(self) -> None:
        h, n = self.hidden_size, self.num_nodes
        rows = self.num_funcs * n * (n + 1) // 2
        self.skip = self.add_weight(shape=(rows, h, 2 * h), initializer=self._init(), name="skip")

    def selected_rows(self, arc: Any) -> tf.Tensor:
        """int32 `[L]`: the `skip` rows `arc` uses (`skip_row` per node)."""
        arc = tf.convert_to_tensor(arc, tf.int32)
        if arc.shape.rank != 1 or arc.shape[0] not in (None, 2 * self.num_nodes):
            raise ValueError(
                f"{self.space.describe()}: expected an arc of "
                f"{2 * self.num_nodes} integers; received shape {arc.shape}."
            )
        prev, func = arc[0::2], arc[1::2]
        return self._row_base[:, 0] + func * self._row_base[:, 1] + prev

    def kernels(self, arc: Any) -> list[tf.Tensor]:
        """`[W_0, W_1, ..., W_L]` of `arc` (gathered), compute dtype."""
        dtype = self.compute_dtype
        chosen = tf.gather(self.skip.value, self.selected_rows(arc))
        return [tf.cast(self.w0.value, dtype)] + tf.unstack(
            tf.cast(chosen, dtype), num=self.num_nodes
        )

    def _plan(self, arc: Any) -> tuple:
        if arc is None:
            raise ValueError("SharedRnnCell needs the architecture: arc=...")
        arc = tf.convert_to_tensor(arc, tf.int32)
        weights = self.kernels(arc)[1:]
        prev, func = arc[0::2], arc[1::2]
        n = self.num_nodes
        if self.average == "all":
            mix = tf.constant([0.0] + [1.0 / n] * n, self.compute_dtype)
        else:
            # Loose ends: nodes 1 .. L that no p_k points to (spec sec. 1.2).
            used = tf.reduce_any(tf.equal(tf.range(n + 1)[:, None], prev[None, :]), axis=1)
            loose = tf.cast(tf.logical_not(used), self.compute_dtype)
            loose = loose * tf.constant([0.0] + [1.0] * n, self.compute_dtype)
            mix = loose / tf.reduce_sum(loose)
        return weights, tf.unstack(prev, n), tf.unstack(func, n), mix

    def _node(self, k, nodes, l_mask, plan):
        weights, prev, func, _ = plan
        x = self.pick_input(nodes, prev[k - 1])
        read = x if l_mask is None else x * l_mask
        ag = tf.matmul(read, weights[k - 1])
        act = lambda a: self.pick_activation(a, func[k - 1], self.num_funcs)
        return self._highway(x, ag, act)

    def _output(self, nodes, plan):
        mix = plan[3]
        if self.average == "all":
            return tf.add_n(nodes[1:]) / float(self.num_nodes)
        return tf.tensordot(mix, tf.stack(nodes), axes=1)

    def child_weights(self, arc: Any) -> dict[str, np.ndarray]:
        """The `FixedRnnCell` weights of `arc`: `w0` and `node1 .. nodeL`."""
        arch: RnnArch = self.space.decode(arc)
        skip = self.skip.numpy()
        weights = {"w0": self.w0.numpy()}
        for k, node in enumerate(arch.nodes, start=1):
            row = skip_row(k, node.input, node.activation, self.num_funcs)
            weights[f"node{k}"] = skip[row]
        return weights


@keras.saving.register_keras_serializable(package="enas_tf")
class FixedRnnCell(_RnnCell):
    """The enas_lm cell of one arc (spec sec. 1.4): plain Keras weights.

    Weights: `w0` `[2H, 2H]` and `node1 .. nodeL` `[H, 2H]`.

    Args:
      arc: the `RnnSpace` arc: 2 L integers, or their space-separated text.
      hidden_size: H.
      num_funcs: F of the space the arc comes from (4).
      average: "all" or "loose_ends", as `SharedRnnCell`.
      init_range: weights start U(-init_range, init_range).
      **kwargs: `keras.layers.Layer` arguments.

    Call arguments: see `_RnnCell.call`; no `arc`.
    """

    def __init__(
        self,
        arc: Any,
        hidden_size: int,
        num_funcs: int = 4,
        average: str = "all",
        init_range: float = 0.04,
        **kwargs: Any,
    ) -> None:
        values = arc.split() if isinstance(arc, str) else list(arc)
        values = [int(v) if isinstance(arc, str) else v for v in values]
        num_nodes = len(values) // 2
        super().__init__(hidden_size, num_nodes, num_funcs, average, init_range, **kwargs)
        self.arc = self.space.validate(values)
        self.arch: RnnArch = self.space.decode(self.arc)
        if average == "all":
            self._ends = tuple(range(1, num_nodes + 1))
        else:
            self._ends = self.arch.loose_ends

    def _build_nodes(self) -> None:
        h = self.hidden_size
        self.node_weights = [
            self.add_weight(shape=(h, 2 * h), initializer=self._init(), name=f"node{k}")
            for k in range(1, self.num_nodes + 1)
        ]

    def kernels(self, arc: Any = None) -> list[tf.Tensor]:
        """`[W_0, W_1, ..., W_L]`, compute dtype (`arc` is ignored)."""
        del arc
        return [tf.cast(w.value, self.compute_dtype) for w in (self.w0, *self.node_weights)]

    def _plan(self, arc: Any) -> list[tf.Tensor]:
        # Read once per sequence, outside the time loop (a same-dtype cast
        # returns the variable itself; TFLite cannot read one inside a loop).
        return [tf.identity(w) for w in self.kernels()[1:]]

    def _node(self, k, nodes, l_mask, plan):
        node = self.arch.nodes[k - 1]
        x = nodes[node.input]
        read = x if l_mask is None else x * l_mask
        return self._highway(x, tf.matmul(read, plan[k - 1]), ACTIVATIONS[node.activation])

    def _output(self, nodes, plan):
        return tf.add_n([nodes[i] for i in self._ends]) / float(len(self._ends))

    def set_child_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Assigns `SharedRnnCell.child_weights(arc)` of this cell's arc."""
        for name, var in zip(
            ["w0"] + [f"node{k}" for k in range(1, self.num_nodes + 1)],
            (self.w0, *self.node_weights),
        ):
            if tuple(weights[name].shape) != tuple(var.shape):
                raise ValueError(
                    f"Weight {name!r}: expected shape {tuple(var.shape)}; "
                    f"received {tuple(weights[name].shape)}."
                )
            var.assign(weights[name])

    def describe(self) -> str:
        """The cell's equations, one node per line."""
        return self.space.render(self.arc)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["num_nodes"]  # given by the arc
        return {**config, "arc": list(self.arc)}


__all__ = [
    "ACTIVATIONS",
    "AVERAGES",
    "RNN_ACTIVATIONS",
    "FixedRnnCell",
    "SharedRnnCell",
    "activation_switch",
    "select_gather",
    "skip_row",
]
