"""LSTM policy over the enas_lm recurrent-cell space (ENAS_LM_REFERENCE sec. 3).

`RnnController` builds on `controller_base.Controller`: one bias-free LSTM
layer (64 units), variables initialised U(-0.01, 0.01), and per searched node
k = 1 .. L two decisions, emitted as `[p_1, f_1, ..., p_L, f_L]`
(`RnnSpace`'s arc):

1. `h <- LSTM(input)`. Pointer scores over nodes j = 0 .. k-1 use the anchors
   of the earlier nodes: `u_j = v . tanh(h W_2 + A_j)`, `A_0 = 0`,
   `A_j = h_j W_1` (h_j from step 1 of node j). Then `u <- c tanh(u / T)`
   (temperature T = 5, tanh constant c = 2.25) and the locality prior
   `u_j <- u_j - (k - j)^2 / 6`. Sample `p_k`.
2. `h <- LSTM(H[p_k] / (0.1 + k - p_k))` with `H[0] = 0`, `H[j] = h_j`.
   Activation logits are tied to the activation embeddings:
   `z = c tanh(h E^T / T)`. Sample `f_k`; the next input is `E[f_k]`.

The first input is `g_emb` (`start_embedding`). Variables: `lstm_kernel`
`[2S, 4S]`, `start_embedding` `[1, S]`, `op_embedding` (`w_emb`) `[F, S]`,
`attn_w1`, `attn_w2` `[S, S]`, `attn_v` `[S, 1]`: 41,344 for S = 64, F = 4.

Departure from the code, following the paper (spec sec. 9 item 4): the
entropy is the full entropy of every decision's distribution, as in the CNN
controllers; enas_lm used `-pi(a) log pi(a)` of the sampled action only.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from enas_tf.controllers.base import Controller, Sample, choose, select
from enas_tf.spaces.rnn import RnnSpace

# Spec sec. 3.1 / 7.1: controller init range and the locality prior's divisor.
RNN_INIT_RANGE = 0.01
RNN_PRIOR_SCALE = 6.0


def pointer_prior(node: int) -> list[float]:
    """The fixed prior `-(k - j)^2 / 6` added to node k's pointer logits."""
    return [-((node - j) ** 2) / RNN_PRIOR_SCALE for j in range(node)]


@keras.saving.register_keras_serializable(package="enas_tf")
class RnnController(Controller):
    """The enas_lm controller of spec sec. 3.

    Args:
      num_nodes: L of `RnnSpace` (9 in the search).
      num_funcs: activations (4).
      lstm_size: S, the LSTM width (64).
      tanh_constant: c of `c * tanh(logits)`, or None (2.25).
      temperature: T dividing the logits, or None (5.0).
      seed: seed of the initial values and of sampling, or None.
      **kwargs: `keras.Model` arguments (name, trainable).
    """

    def __init__(
        self,
        num_nodes: int = 9,
        num_funcs: int = 4,
        lstm_size: int = 64,
        tanh_constant: float | None = 2.25,
        temperature: float | None = 5.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(lstm_size, tanh_constant, temperature, seed, **kwargs)
        self._space = RnnSpace(num_nodes=num_nodes, num_funcs=num_funcs)
        self.num_nodes = num_nodes
        self.num_funcs = num_funcs
        self.build()

    def build(self, input_shape: Any = None) -> None:
        del input_shape  # the controller has no inputs to size it
        # Tied activation logits: no op_softmax (spec sec. 3.1).
        self._build_common(self.num_funcs, init_range=RNN_INIT_RANGE, op_softmax=False)

    @property
    def space(self) -> RnnSpace:
        return self._space

    def _run(self, batch_size: int | tf.Tensor, arcs: tf.Tensor | None) -> Sample:
        state, inputs = self._initial(batch_size)
        zero = tf.zeros([batch_size])
        log_prob, entropy = zero, zero
        c = self.tanh_constant
        base = tf.zeros([batch_size, self.lstm_size])
        outputs, anchors, columns = [base], [base], []
        for k in range(1, self.num_nodes + 1):
            h, state = self._lstm(inputs, state)
            logits = self._process(self._attention(anchors, h), c)
            logits += tf.constant([pointer_prior(k)])
            forced = None if arcs is None else arcs[:, 2 * (k - 1)]
            prev, lp, ent = choose(logits, forced, self._generator)
            log_prob, entropy = log_prob + lp, entropy + ent
            outputs.append(h)
            anchors.append(tf.matmul(h, self.attn_key))
            distance = float(k) + 0.1 - tf.cast(prev, tf.float32)
            inputs = select(tf.stack(outputs[:k], axis=1), prev) / distance[:, None]
            h, state = self._lstm(inputs, state)
            z = tf.matmul(h, self.op_embedding, transpose_b=True)
            forced = None if arcs is None else arcs[:, 2 * k - 1]
            func, lp, ent = choose(self._process(z, c), forced, self._generator)
            log_prob, entropy = log_prob + lp, entropy + ent
            inputs = self._embed(func)
            columns.extend([prev, func])
        arc = tf.stack(columns, axis=1) if arcs is None else arcs
        return Sample(arc, log_prob, entropy, zero, zero, embedding=h)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_nodes": self.num_nodes,
            "num_funcs": self.num_funcs,
        }


__all__ = ["RNN_INIT_RANGE", "RnnController", "pointer_prior"]
