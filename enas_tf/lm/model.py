"""Word-level language models around the enas_lm cells (ENAS_LM_REFERENCE 2, 5).

`SharedRnnLM` (search: every arc of an `RnnSpace`, the arc passed as an
int32 tensor) and `FixedRnnLM` (final training of one arc) are the same
network around `SharedRnnCell` / `FixedRnnCell`:

    x = E[tokens] (embedding dropout)  -> variational input dropout
    h_1 .. h_T = cell(x, h_0)          (x and recurrent dropout in the cell)
    logits = dropout(h) E^T            (tied softmax, no bias, undropped E)

The hidden state is explicit: `model(tokens, state=h_0, ...)` returns the
last state, and the caller carries it across minibatches and decides when to
reset it (spec sec. 2.1: end of epoch, after each controller sample, before
each validation window in search). Losses and steps are in
`enas_tf.lm.steps`.

Dropouts (spec sec. 2.3), training only, inverted (survivors scaled by
1 / keep), one mask per call that stays fixed over the time steps:
`drop_e` rows of E (whole word types, lookup only), `drop_i` `[B, 1, H]` on
the embedded sequence, `drop_x` `[B, H]` on x_t at the base node (on top of
`drop_i`), `drop_l` `[B, H]` on h_{t-1} at the base node and on every node's
matmul input, `drop_o` `[B, 1, H]` on the outputs before the softmax.
`drop_w` (DropConnect) is 0 in every enas_lm recipe and is not implemented.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from enas_tf.lm.cells import FixedRnnCell, SharedRnnCell
from enas_tf.spaces.rnn import RnnSpace

DROPOUTS = ("drop_e", "drop_i", "drop_x", "drop_l", "drop_o")


def dropout_rates(*rates: float) -> dict[str, float]:
    """`{name: rate}` of the five dropouts, given in `DROPOUTS` order."""
    if len(rates) != len(DROPOUTS):
        raise ValueError(f"Expected the rates of {', '.join(DROPOUTS)}; received {rates}.")
    return dict(zip(DROPOUTS, rates))


class DropoutMasks(NamedTuple):
    """One training call's dropout masks (None: no dropout there).

    Attributes:
      embedding: `[vocab, 1]`, rows of E.
      inputs: `[batch, 1, hidden]`, the embedded sequence.
      x: `[batch, hidden]`, x_t at the base node.
      hidden: `[batch, hidden]`, node matmul inputs (`drop_l`).
      outputs: `[batch, 1, hidden]`, cell outputs before the softmax.
    """

    embedding: tf.Tensor | None = None
    inputs: tf.Tensor | None = None
    x: tf.Tensor | None = None
    hidden: tf.Tensor | None = None
    outputs: tf.Tensor | None = None


class LMOutput(NamedTuple):
    """What a language model call returns.

    Attributes:
      logits: float32 `[batch, time, vocab]`, next-word logits.
      state: `[batch, hidden]`, h_T, the next call's `state`.
      hidden: `[batch, time, hidden]`, h_1 .. h_T before output dropout
        (what the AR and TAR regularisers read).
    """

    logits: tf.Tensor
    state: tf.Tensor
    hidden: tf.Tensor


class _RnnLM(keras.Model):
    """Embedding, dropouts and tied softmax around a cell."""

    def __init__(
        self,
        cell: Any,
        vocab_size: int,
        hidden_size: int,
        init_range: float,
        dropouts: dict[str, float],
        seed: int | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if vocab_size < 1:
            raise ValueError(f"Expected vocab_size >= 1; received: {vocab_size}.")
        for name, rate in dropouts.items():
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"Expected 0 <= {name} < 1; received: {rate}.")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.init_range = init_range
        self.dropouts = dict(dropouts)
        self.seed = seed
        if seed is None:
            self._generator = tf.random.Generator.from_non_deterministic_state()
        else:
            self._generator = tf.random.Generator.from_seed(seed)
        self.cell = cell
        self.embedding = self.add_weight(
            shape=(vocab_size, hidden_size),
            name="embedding",
            initializer=keras.initializers.RandomUniform(-init_range, init_range),
        )
        self.cell.build()
        self.built = True  # every weight exists now

    @property
    def space(self) -> RnnSpace:
        """The cell's `RnnSpace`."""
        return self.cell.space

    @property
    def dropout_generator(self) -> tf.random.Generator:
        """The generator of the dropout masks (checkpoint it to resume exactly)."""
        return self._generator

    def initial_state(self, batch_size: int) -> tf.Tensor:
        """Zeros `[batch_size, hidden]`, the state after a reset."""
        return tf.zeros([batch_size, self.hidden_size], self.compute_dtype)

    def _mask(self, shape: Any, rate: float) -> tf.Tensor | None:
        if rate == 0.0:
            return None
        u = self._generator.uniform(shape)
        return tf.cast(u >= rate, self.compute_dtype) / (1.0 - rate)

    def dropout_masks(self, batch_size: Any) -> DropoutMasks:
        """Draws the masks of one training call (spec sec. 2.3)."""
        b, h, rate = batch_size, self.hidden_size, self.dropouts
        return DropoutMasks(
            embedding=self._mask([self.vocab_size, 1], rate["drop_e"]),
            inputs=self._mask([b, 1, h], rate["drop_i"]),
            x=self._mask([b, h], rate["drop_x"]),
            hidden=self._mask([b, h], rate["drop_l"]),
            outputs=self._mask([b, 1, h], rate["drop_o"]),
        )

    def embed(self, tokens: tf.Tensor, masks: DropoutMasks) -> tf.Tensor:
        """`[batch, time, hidden]` embedded tokens after `drop_e`, `drop_i`."""
        emb = tf.cast(self.embedding.value, self.compute_dtype)
        x = tf.gather(emb, tokens)
        if masks.embedding is not None:
            # Same as looking up in E * mask, without scaling all of E.
            x = x * tf.gather(masks.embedding, tokens)
        if masks.inputs is not None:
            x = x * masks.inputs
        return x

    def forward(
        self, tokens: tf.Tensor, state: tf.Tensor | None, arc: Any, masks: DropoutMasks
    ) -> LMOutput:
        """The model with given masks (`DropoutMasks()` for inference)."""
        tokens = tf.convert_to_tensor(tokens, tf.int32)
        x = self.embed(tokens, masks)
        hidden, last = self.cell(x, state=state, arc=arc, x_mask=masks.x, l_mask=masks.hidden)
        out = hidden if masks.outputs is None else hidden * masks.outputs
        emb = tf.cast(self.embedding.value, self.compute_dtype)
        shape = tf.shape(out)
        logits = tf.matmul(tf.reshape(out, [-1, self.hidden_size]), emb, transpose_b=True)
        logits = tf.reshape(logits, [shape[0], shape[1], self.vocab_size])
        return LMOutput(tf.cast(logits, tf.float32), last, hidden)

    def call(
        self,
        tokens: tf.Tensor,
        state: tf.Tensor | None = None,
        arc: Any = None,
        training: bool = False,
    ) -> LMOutput:
        """Next-word logits of a `[batch, time]` token window.

        Call arguments:
          tokens: int32 `[batch, time]` word ids, time >= 1.
          state: `[batch, hidden]` state carried from the previous window, or
            None for zeros.
          arc: int32 `[2 L]` tensor (`SharedRnnLM` only).
          training: Python bool; True draws fresh dropout masks.

        Returns:
          An `LMOutput`.
        """
        tokens = tf.convert_to_tensor(tokens, tf.int32)
        masks = DropoutMasks()
        if training:
            masks = self.dropout_masks(tf.shape(tokens)[0])
        return self.forward(tokens, state, arc, masks)

    def kernels(self, arc: Any = None) -> list[tf.Tensor]:
        """The cell matrices `[W_0, W_1, ..., W_L]` of the (selected) child."""
        return self.cell.kernels(arc)

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_funcs": self.cell.num_funcs,
            "average": self.cell.average,
            "init_range": self.init_range,
            **self.dropouts,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="enas_tf")
class SharedRnnLM(_RnnLM):
    """The search model: every arc of `RnnSpace(num_nodes, num_funcs)`.

    Defaults are the enas_lm search values (spec sec. 7.1). Weights:
    `embedding` `[V, H]` and the `SharedRnnCell`'s `w0`, `skip`.

    Args:
      vocab_size: V (10,000 for PTB).
      hidden_size: H, also the embedding size (200).
      num_nodes: L (9).
      num_funcs: activations (4).
      average: cell output, "all" (search) or "loose_ends".
      init_range: every weight starts U(-init_range, init_range) (0.04).
      drop_e, drop_i, drop_x, drop_l, drop_o: dropout rates (module doc).
      seed: seed of the dropout masks, or None.
      **kwargs: `keras.Model` arguments.

    Call arguments: see `_RnnLM.call`; `arc` is required.
    """

    # The cell's class; `bench/rnn_step.py` swaps in other selection ops.
    cell_class = SharedRnnCell

    def __init__(
        self,
        vocab_size: int = 10000,
        hidden_size: int = 200,
        num_nodes: int = 9,
        num_funcs: int = 4,
        average: str = "all",
        init_range: float = 0.04,
        drop_e: float = 0.1,
        drop_i: float = 0.2,
        drop_x: float = 0.75,
        drop_l: float = 0.25,
        drop_o: float = 0.75,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        cell = self.cell_class(hidden_size, num_nodes, num_funcs, average, init_range, name="cell")
        dropouts = dropout_rates(drop_e, drop_i, drop_x, drop_l, drop_o)
        super().__init__(cell, vocab_size, hidden_size, init_range, dropouts, seed, **kwargs)

    def child_weights(self, arc: Any) -> dict[str, np.ndarray]:
        """`FixedRnnLM` weights of `arc`: `embedding`, `w0`, `node1..nodeL`."""
        return {"embedding": self.embedding.numpy(), **self.cell.child_weights(arc)}

    def child_config(self, arc: Any) -> dict[str, Any]:
        """`FixedRnnLM` arguments for `arc` at this model's sizes and rates."""
        config = self.get_config()
        for key in ("name", "trainable", "num_nodes"):
            config.pop(key)
        return {**config, "arc": list(self.space.validate(arc))}

    def build_child(self, arc: Any, **overrides: Any) -> FixedRnnLM:
        """A `FixedRnnLM` of `arc` holding this model's selected weights.

        Args:
          arc: an arc of `self.space`.
          **overrides: `FixedRnnLM` arguments to change (dropouts, seed,
            average, ...; not the sizes).
        """
        child = FixedRnnLM(**{**self.child_config(arc), **overrides})
        child.set_child_weights(self.child_weights(arc))
        return child

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_nodes": self.cell.num_nodes}


@keras.saving.register_keras_serializable(package="enas_tf")
class FixedRnnLM(_RnnLM):
    """The final-training model of one arc (spec sec. 5).

    Defaults are the GPU recipe (`fixed_lib.py`, spec sec. 5.1); the TPU
    recipe (sec. 5.2) is `hidden_size=850, average="loose_ends",
    init_range=0.04, drop_e=0.15, drop_i=0.2, drop_x=0.75, drop_l=0.25`.
    Weights: `embedding` `[V, H]`, the `FixedRnnCell`'s `w0`, `node1..nodeL`;
    `V H + 4 H^2 + 2 L H^2` parameters.

    Args:
      arc: the `RnnSpace` arc (2 L integers, or their text).
      vocab_size, hidden_size, num_funcs, average, init_range, drop_*,
        seed, **kwargs: as `SharedRnnLM`.

    Call arguments: see `_RnnLM.call`; no `arc`.
    """

    def __init__(
        self,
        arc: Any,
        vocab_size: int = 10000,
        hidden_size: int = 800,
        num_funcs: int = 4,
        average: str = "all",
        init_range: float = 0.05,
        drop_e: float = 0.125,
        drop_i: float = 0.175,
        drop_x: float = 0.725,
        drop_l: float = 0.225,
        drop_o: float = 0.75,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        cell = FixedRnnCell(arc, hidden_size, num_funcs, average, init_range, name="cell")
        dropouts = dropout_rates(drop_e, drop_i, drop_x, drop_l, drop_o)
        super().__init__(cell, vocab_size, hidden_size, init_range, dropouts, seed, **kwargs)

    @property
    def arc(self) -> tuple[int, ...]:
        """The cell's arc."""
        return self.cell.arc

    def call(
        self,
        tokens: tf.Tensor,
        state: tf.Tensor | None = None,
        arc: Any = None,
        training: bool = False,
    ) -> LMOutput:
        if arc is not None:
            raise ValueError("FixedRnnLM has a fixed architecture; do not pass arc=.")
        return super().call(tokens, state=state, training=training)

    def set_child_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Assigns `SharedRnnLM.child_weights(arc)` (same arc and sizes).

        Raises:
          ValueError: for a missing weight or a shape mismatch.
        """
        missing = {"embedding", "w0"} - set(weights)
        missing |= {
            f"node{k}" for k in range(1, self.cell.num_nodes + 1) if f"node{k}" not in weights
        }
        if missing:
            raise ValueError(f"Missing child weights: {sorted(missing)}.")
        if tuple(weights["embedding"].shape) != tuple(self.embedding.shape):
            raise ValueError(
                f"Weight 'embedding': expected shape {tuple(self.embedding.shape)}"
                f"; received {tuple(weights['embedding'].shape)}."
            )
        self.embedding.assign(weights["embedding"])
        self.cell.set_child_weights(weights)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "arc": list(self.arc)}


__all__ = ["DROPOUTS", "DropoutMasks", "FixedRnnLM", "LMOutput", "SharedRnnLM"]
