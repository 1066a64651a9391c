"""LSTM policies over the macro and micro spaces (ENAS sec. 3, spec sec. 4).

`MacroController` and `MicroController` build on `controller_base.Controller`
(re-exported here with `Sample`, and with `RnnController`, the enas_lm
controller of `enas_tf.controllers.rnn`). A controller is a `keras.Model` whose only
job is to sample architectures and to score given ones:

- `sample(batch_size)` draws `batch_size` independent arcs in one vectorised
  pass (LSTM state `[batch, S]`) and returns a `Sample`;
- `log_prob_and_entropy(arcs)` runs the same network teacher-forced on given
  arcs (needed for REINFORCE gradients of arcs sampled earlier).

Both share `_run`, a Python loop over the decisions with a static count, so one
trace serves every arc (STYLE "One traced graph for every arc"). Randomness
comes from a `tf.random.Generator` owned by the controller: a seed makes
sampling reproducible and `tf.train.Checkpoint` saves its state.

Departures from the original code, following the paper instead (spec sec. 10):

- Entropy (bug 14): both controllers report the full entropy of every
  decision's distribution, not only the sampled choice's `p * -log p`.
- Macro skip bits (bug 13): `P(b = 1) = sigmoid(l)`, with `l` the processed
  attention logit, is used for sampling, log-probability, entropy and the
  skip penalty alike (the code sampled from `sigmoid(2 l)`).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

from enas_tf.controllers.base import Controller, Sample, choose, select
from enas_tf.controllers.rnn import RnnController
from enas_tf.spaces.base import SearchSpace
from enas_tf.spaces.macro import MacroSpace
from enas_tf.spaces.micro import MicroSpace
from enas_tf.spaces.rnn import RnnSpace

# Spec sec. 4.2 / 10: initial micro op bias (favours the two sep-convs) and the
# fixed normal-cell op offset. Spaces with fewer ops take the first entries.
MICRO_OP_BIAS_INIT = (10.0, 10.0, 0.0, 0.0, 0.0)
MICRO_NORMAL_OP_OFFSET = (0.25, 0.25, -0.25, -0.25, -0.25)


@keras.saving.register_keras_serializable(package="enas_tf")
class MacroController(Controller):
    """The macro ("general") controller of spec 4.1.

    Per layer l: an op decision, then l skip bits. The skip bit j of layer l
    is 1 with probability `sigmoid(l_j)`, `l_j` the attention score after
    `/ T` and `c * tanh`; this departs from the original code, which sampled
    from `sigmoid(2 l_j)` but penalised `sigmoid(l_j)` (spec 10, bug 13), and
    follows the paper. The same probability enters the log-probability, the
    entropy (full Bernoulli entropy, spec 10 bug 14) and the skip penalty
    `KL(s_j || (1 - skip_target, skip_target))`, summed over a layer's bits
    and averaged over layers 1 .. L-1.

    Bit j of layer l is scored against layer j's controller anchor; the child
    reads it as `prev[j]` (stem for j = 0), as in the original (spec 10,
    bug 12, see `spaces.macro`).

    Args:
      num_layers: L of the macro space.
      num_ops: ops per layer (6 in search).
      lstm_size: S, the LSTM width (64 in the scripts).
      tanh_constant: c of `c * tanh(logits)`, or None (1.5 in the scripts).
      temperature: T dividing the logits, or None (unset in the scripts).
      skip_target: target skip probability of the KL penalty (0.4).
      seed: seed of the initial values and of sampling, or None.
      **kwargs: `keras.Model` arguments (name, trainable).
    """

    has_skip_penalty = True

    def __init__(
        self,
        num_layers: int = 12,
        num_ops: int = 6,
        lstm_size: int = 64,
        tanh_constant: float | None = 1.5,
        temperature: float | None = None,
        skip_target: float = 0.4,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(lstm_size, tanh_constant, temperature, seed, **kwargs)
        self._space = MacroSpace(num_layers=num_layers, num_ops=num_ops)
        if not 0.0 < skip_target < 1.0:
            raise ValueError(f"Expected 0 < skip_target < 1; received: {skip_target}.")
        self.num_layers = num_layers
        self.num_ops = num_ops
        self.skip_target = skip_target
        self.build()

    def build(self, input_shape: Any = None) -> None:
        del input_shape  # the controller has no inputs to size it
        self._build_common(self.num_ops)

    @property
    def space(self) -> MacroSpace:
        return self._space

    def _run(self, batch_size: int | tf.Tensor, arcs: tf.Tensor | None) -> Sample:
        state, start = self._initial(batch_size)
        zero = tf.zeros([batch_size])
        log_prob, entropy, penalty, skips = zero, zero, zero, zero
        # Cross-entropy terms of the target (spec 4.1 "Skip penalty").
        log_rho_0 = math.log(1.0 - self.skip_target)
        log_rho_1 = math.log(self.skip_target)
        c = self.tanh_constant
        inputs, anchors, keys, pieces, position = start, [], [], [], 0
        for layer in range(self.num_layers):
            h, state = self._lstm(inputs, state)
            logits = self._process(tf.matmul(h, self.op_softmax), c)
            forced = None if arcs is None else arcs[:, position]
            op, lp, ent = choose(logits, forced, self._generator)
            pieces.append(op[:, None])
            log_prob, entropy = log_prob + lp, entropy + ent
            position += 1
            h, state = self._lstm(self._embed(op), state)
            if layer == 0:
                inputs = start  # layer 0 makes no skip decision, spec 4.1 step 1
            else:
                skip_logits = self._process(self._attention(keys, h), c)
                p = tf.sigmoid(skip_logits)
                if arcs is None:
                    u = self._generator.uniform(tf.shape(skip_logits))
                    bits = tf.cast(u < p, tf.int32)
                else:
                    bits = arcs[:, position : position + layer]
                pieces.append(bits)
                position += layer
                log_p1 = tf.math.log_sigmoid(skip_logits)
                log_p0 = tf.math.log_sigmoid(-skip_logits)
                b = tf.cast(bits, tf.float32)
                log_prob += tf.reduce_sum(b * log_p1 + (1.0 - b) * log_p0, axis=1)
                neg_ent = p * log_p1 + (1.0 - p) * log_p0
                entropy -= tf.reduce_sum(neg_ent, axis=1)
                cross = p * log_rho_1 + (1.0 - p) * log_rho_0
                penalty += tf.reduce_sum(neg_ent - cross, axis=1)
                skips += tf.reduce_sum(b, axis=1)
                # Spec 4.1 step 5: a zero vector when no skip is chosen.
                total = tf.matmul(b[:, None, :], tf.stack(anchors, axis=1))[:, 0, :]
                inputs = total / (1.0 + tf.reduce_sum(b, axis=1, keepdims=True))
            anchors.append(h)
            keys.append(tf.matmul(h, self.attn_key))
        if self.num_layers > 1:
            penalty /= float(self.num_layers - 1)
            skips /= float(self.num_layers * (self.num_layers - 1) // 2)
        arc = tf.concat(pieces, axis=1) if arcs is None else arcs
        return Sample(arc, log_prob, entropy, penalty, skips, embedding=h)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "num_ops": self.num_ops,
            "skip_target": self.skip_target,
        }


@keras.saving.register_keras_serializable(package="enas_tf")
class MicroController(Controller):
    """The micro (cell) controller of spec 4.2.

    Samples the normal cell, then the reduction cell, continuing from the
    normal pass's LSTM state with the same variables. Per node: two input
    indices, then two ops (5 LSTM steps); emitted as
    `(input_a, op_a, input_b, op_b)`. Op logits are
    `(c / op_tanh_reduce) * tanh((h W_s + b_s) / T)`, plus a fixed
    (+0.25, +0.25, -0.25, -0.25, -0.25) in the normal cell only; `b_s` starts
    at (10, 10, 0, 0, 0) (first `num_ops` entries).

    Args:
      num_nodes: B, computed nodes per cell.
      num_ops: ops per input (5).
      lstm_size: S, the LSTM width (64 in the scripts).
      tanh_constant: c, or None (1.10 in the scripts).
      op_tanh_reduce: divisor of c for the op logits (2.5).
      temperature: T dividing the logits, or None.
      seed: seed of the initial values and of sampling, or None.
      **kwargs: `keras.Model` arguments (name, trainable).
    """

    def __init__(
        self,
        num_nodes: int = 5,
        num_ops: int = 5,
        lstm_size: int = 64,
        tanh_constant: float | None = 1.10,
        op_tanh_reduce: float = 2.5,
        temperature: float | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(lstm_size, tanh_constant, temperature, seed, **kwargs)
        self._space = MicroSpace(num_nodes=num_nodes, num_ops=num_ops)
        if not op_tanh_reduce > 0:
            raise ValueError(f"Expected op_tanh_reduce > 0; received: {op_tanh_reduce}.")
        self.num_nodes = num_nodes
        self.num_ops = num_ops
        self.op_tanh_reduce = op_tanh_reduce
        self.build()

    def build(self, input_shape: Any = None) -> None:
        del input_shape  # the controller has no inputs to size it
        self._build_common(self.num_ops)
        bias = MICRO_OP_BIAS_INIT[: self.num_ops]
        self.op_bias = self.add_weight(
            shape=(1, self.num_ops),
            initializer=keras.initializers.Constant(bias),
            name="op_bias",
        )

    @property
    def space(self) -> MicroSpace:
        return self._space

    def _run(self, batch_size: int | tf.Tensor, arcs: tf.Tensor | None) -> Sample:
        state, start = self._initial(batch_size)
        zero = tf.zeros([batch_size])
        log_prob, entropy = zero, zero
        c = self.tanh_constant
        op_c = None if c is None else c / self.op_tanh_reduce
        offset = tf.constant([MICRO_NORMAL_OP_OFFSET[: self.num_ops]])
        columns = []
        for cell in range(2):  # normal, then reduction (spec 4.2)
            anchors, keys = [], []
            for _ in range(2):  # input nodes: anchor 0, key from LSTM(g)
                h, state = self._lstm(start, state)
                anchors.append(tf.zeros_like(h))
                keys.append(tf.matmul(h, self.attn_key))
            for node in range(2, self.num_nodes + 2):
                # Arc column of this node's input_a; (a, op_a, b, op_b).
                base = cell * 4 * self.num_nodes + 4 * (node - 2)
                inputs, chosen = start, {}
                for slot in (0, 2):  # indices first, spec 4.2 step 2
                    h, state = self._lstm(inputs, state)
                    logits = self._process(self._attention(keys, h), c)
                    forced = None if arcs is None else arcs[:, base + slot]
                    index, lp, ent = choose(logits, forced, self._generator)
                    log_prob, entropy = log_prob + lp, entropy + ent
                    chosen[slot] = index
                    inputs = select(tf.stack(anchors, axis=1), index)
                for slot in (1, 3):
                    h, state = self._lstm(inputs, state)
                    z = tf.matmul(h, self.op_softmax) + self.op_bias
                    logits = self._process(z, op_c)
                    if cell == 0:
                        logits += offset  # normal cell only
                    forced = None if arcs is None else arcs[:, base + slot]
                    op, lp, ent = choose(logits, forced, self._generator)
                    log_prob, entropy = log_prob + lp, entropy + ent
                    chosen[slot] = op
                    inputs = self._embed(op)
                h, state = self._lstm(inputs, state)
                anchors.append(h)
                keys.append(tf.matmul(h, self.attn_key))
                columns.extend(chosen[k] for k in range(4))
        arc = tf.stack(columns, axis=1) if arcs is None else arcs
        return Sample(arc, log_prob, entropy, zero, zero, embedding=h)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_nodes": self.num_nodes,
            "num_ops": self.num_ops,
            "op_tanh_reduce": self.op_tanh_reduce,
        }


def controller_for(space: SearchSpace, **kwargs: Any) -> Controller:
    """Builds the controller of a macro, micro or enas_lm recurrent space.

    Args:
      space: a `MacroSpace`, `MicroSpace` or `RnnSpace`.
      **kwargs: controller arguments (lstm_size, tanh_constant, seed, ...).

    Returns:
      A `MacroController`, `MicroController` or `RnnController` emitting arcs
      of `space`.

    Raises:
      ValueError: for a space without a controller (`LegacyRnnSpace`).
    """
    if isinstance(space, MacroSpace):
        return MacroController(space.num_layers, space.num_ops, **kwargs)
    if isinstance(space, MicroSpace):
        return MicroController(space.num_nodes, space.num_ops, **kwargs)
    if isinstance(space, RnnSpace):
        return RnnController(space.num_nodes, space.num_funcs, **kwargs)
    raise ValueError(f"Expected a macro, micro or rnn space; received: {space.describe()}.")


__all__ = [
    "MICRO_NORMAL_OP_OFFSET",
    "MICRO_OP_BIAS_INIT",
    "Controller",
    "MacroController",
    "MicroController",
    "RnnController",
    "Sample",
    "controller_for",
]
