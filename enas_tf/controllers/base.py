"""Parts shared by the ENAS controllers: `Sample`, the LSTM cell, sampling.

`Controller` is the base `keras.Model` of `MacroController` and
`MicroController` (in `enas_tf.controllers.build`): the bias-free LSTM cell of spec
sec. 0.5, logit processing (`/ T`, then `c * tanh`), the attention scores, the
seeded sampler and the `sample` / `log_prob_and_entropy` entry points, which
both run the subclass's `_run` (a Python loop with a static count over the
decisions, so one trace serves every arc).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import keras
import tensorflow as tf

from enas_tf.spaces.base import SearchSpace

# Spec sec. 0.3: every controller variable starts uniform(-0.1, 0.1).
_INIT_RANGE = 0.1


class Sample(NamedTuple):
    """Sampled (or scored) architectures and their statistics.

    Attributes:
      arc: int32 `[batch, num_decisions]`, in the space's arc layout.
      log_prob: float32 `[batch]`, sum of the chosen decisions'
        log-probabilities; differentiable w.r.t. the controller variables.
      entropy: float32 `[batch]`, sum over decisions of the full entropy of
        each decision's distribution.
      skip_penalty: float32 `[batch]`, the macro skip KL penalty (spec 4.1);
        zeros for the micro controller.
      skip_rate: float32 `[batch]`, fraction of possible skips taken (macro);
        zeros for the micro controller (spec 4.2 logs it as 0).
      embedding: float32 `[batch, lstm_size]`, the controller's last LSTM
        output for each architecture (its embedding of the architecture,
        Adam & Lorraine 2019), or None for strategies without a controller.
    """

    arc: tf.Tensor
    log_prob: tf.Tensor
    entropy: tf.Tensor
    skip_penalty: tf.Tensor
    skip_rate: tf.Tensor
    embedding: tf.Tensor | None = None


def check_positive_or_none(name: str, value: float | None) -> None:
    """Raises ValueError unless `value` is None or positive."""
    if value is not None and not value > 0:
        raise ValueError(f"Expected {name} > 0 or None; received: {value}.")


def one_hot(choice: tf.Tensor, depth: int) -> tf.Tensor:
    """float32 `[batch, depth]` one-hot rows of an int32 `[batch]` choice."""
    return tf.one_hot(choice, depth, dtype=tf.float32)


def select(rows: tf.Tensor, choice: tf.Tensor) -> tf.Tensor:
    """Picks `rows[b, choice[b]]` from float32 `[batch, n, S]` -> `[batch, S]`."""
    weights = one_hot(choice, rows.shape[1])
    return tf.matmul(weights[:, None, :], rows)[:, 0, :]


def choose(
    logits: tf.Tensor, forced: tf.Tensor | None, generator: tf.random.Generator
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Samples (or takes) one categorical decision per row.

    Args:
      logits: float32 `[batch, n]`, already processed.
      forced: int32 `[batch]` choices to score, or None to sample.
      generator: source of the sampling seed.

    Returns:
      (choice int32 `[batch]`, log-probability `[batch]`, entropy `[batch]`).
    """
    log_probs = tf.nn.log_softmax(logits)
    if forced is None:
        seed = generator.make_seeds(1)[:, 0]
        drawn = tf.random.stateless_categorical(logits, 1, seed=seed)
        choice = tf.cast(drawn[:, 0], tf.int32)
    else:
        choice = forced
    # A one-hot product rather than a batched gather: same value, and its
    # gradient is far cheaper to trace.
    log_prob = tf.reduce_sum(one_hot(choice, logits.shape[-1]) * log_probs, axis=-1)
    entropy = -tf.reduce_sum(tf.exp(log_probs) * log_probs, axis=-1)
    return choice, log_prob, entropy


class Controller(keras.Model):
    """Base of the ENAS controllers; subclasses create variables and `_run`.

    Args:
      lstm_size: S, the LSTM width.
      tanh_constant: c of `c * tanh(logits)`, or None for no squashing.
      temperature: T dividing the logits, or None.
      seed: seed of the initial values and of sampling, or None for fresh
        entropy.
      **kwargs: `keras.Model` arguments (name, trainable). The dtype is
        float32 whatever the global policy.

    Raises:
      ValueError: for a non-positive size, constant or temperature.
    """

    # Whether `Sample.skip_penalty` is a loss term its trainer adds (the
    # macro controller's skip KL penalty, spec 4.1; 4.2: micro has none).
    has_skip_penalty: bool = False

    def __init__(
        self,
        lstm_size: int,
        tanh_constant: float | None,
        temperature: float | None,
        seed: int | None,
        **kwargs: Any,
    ) -> None:
        kwargs["dtype"] = "float32"  # controller math stays float32 (STYLE)
        super().__init__(**kwargs)
        if lstm_size < 1:
            raise ValueError(f"Expected lstm_size >= 1; received: {lstm_size}.")
        check_positive_or_none("tanh_constant", tanh_constant)
        check_positive_or_none("temperature", temperature)
        self.lstm_size = lstm_size
        self.tanh_constant = tanh_constant
        self.temperature = temperature
        self.seed = seed
        if seed is None:
            self._generator = tf.random.Generator.from_non_deterministic_state()
        else:
            self._generator = tf.random.Generator.from_seed(seed)
        # Built here rather than as a decorated method: a decorated method
        # holds its instance weakly and breaks on temporaries. No autograph:
        # the decision loop is plain Python with a static count.
        self._sample_fn = tf.function(self._sample, autograph=False)

    @property
    def space(self) -> SearchSpace:
        """The search space whose arcs this controller emits."""
        raise NotImplementedError

    @property
    def num_decisions(self) -> int:
        """Length of an arc."""
        return self.space.num_decisions

    def _build_common(
        self,
        num_ops: int,
        init_range: float = _INIT_RANGE,
        op_softmax: bool = True,
    ) -> None:
        """Creates the variables every controller has (spec 4.1/4.2).

        Args:
          num_ops: rows of the op embedding (and columns of the op softmax).
          init_range: variables start uniform(-init_range, init_range).
          op_softmax: False for controllers whose op logits reuse the op
            embedding (the enas_lm controller), so no `op_softmax` exists.
        """
        # A local seed stream so that a seeded controller is reproducible
        # without giving two same-shaped variables the same values.
        seeds = None if self.seed is None else keras.random.SeedGenerator(self.seed)
        size = self.lstm_size
        init = keras.initializers.RandomUniform(-init_range, init_range, seed=seeds)

        def weight(name, shape):
            return self.add_weight(shape=shape, initializer=init, name=name)

        self.lstm_kernel = weight("lstm_kernel", (2 * size, 4 * size))
        self.start_embedding = weight("start_embedding", (1, size))
        self.op_embedding = weight("op_embedding", (num_ops, size))
        if op_softmax:
            self.op_softmax = weight("op_softmax", (size, num_ops))
        self.attn_key = weight("attn_w1", (size, size))
        self.attn_query = weight("attn_w2", (size, size))
        self.attn_v = weight("attn_v", (size, 1))

    def _lstm(
        self, inputs: tf.Tensor, state: tuple[tf.Tensor, tf.Tensor]
    ) -> tuple[tf.Tensor, tuple[tf.Tensor, tf.Tensor]]:
        """One step of the bias-free LSTM of spec 0.5; state is (c, h)."""
        c, h = state
        gates = tf.matmul(tf.concat([inputs, h], axis=1), self.lstm_kernel)
        i, f, o, g = tf.split(gates, 4, axis=1)  # this order, spec 0.5
        c = tf.sigmoid(i) * tf.tanh(g) + tf.sigmoid(f) * c
        h = tf.sigmoid(o) * tf.tanh(c)
        return h, (c, h)

    def _process(self, logits: tf.Tensor, tanh_constant: float | None) -> tf.Tensor:
        """Applies `/ T`, then `c * tanh` (spec 4.1 step 2)."""
        if self.temperature is not None:
            logits = logits / self.temperature
        if tanh_constant is not None:
            logits = tanh_constant * tf.tanh(logits)
        return logits

    def _embed(self, op: tf.Tensor) -> tf.Tensor:
        """`E_op[op]` for int32 `[batch]` op ids, float32 `[batch, S]`."""
        return tf.matmul(one_hot(op, self.op_embedding.shape[0]), self.op_embedding)

    def _attention(self, keys: list[tf.Tensor], h: tf.Tensor) -> tf.Tensor:
        """Raw scores `tanh(key_j + h W_2) v`, float32 `[batch, len(keys)]`."""
        query = tf.matmul(h, self.attn_query)
        hidden = tf.tanh(tf.stack(keys, axis=1) + query[:, None, :])
        # [batch * j, S] @ v keeps the gradient free of broadcasting.
        scores = tf.matmul(tf.reshape(hidden, [-1, self.lstm_size]), self.attn_v)
        return tf.reshape(scores, [-1, len(keys)])

    def _initial(self, batch_size: int | tf.Tensor) -> tuple[Any, tf.Tensor]:
        zeros = tf.zeros([batch_size, self.lstm_size])
        start = tf.tile(self.start_embedding, [batch_size, 1])
        return (zeros, zeros), start

    def _run(self, batch_size: int | tf.Tensor, arcs: tf.Tensor | None) -> Sample:
        raise NotImplementedError

    def sample(self, batch_size: int = 1) -> Sample:
        """Samples `batch_size` independent architectures.

        Runs a `tf.function` traced once whatever `batch_size` (it enters
        as a tensor); see `sample_function`.

        Args:
          batch_size: number of architectures.

        Returns:
          A `Sample` with `arc` int32 `[batch_size, num_decisions]`.

        Raises:
          ValueError: when `batch_size` < 1.
        """
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"Expected batch_size >= 1; received: {batch_size}.")
        return self._sample_fn(tf.constant(batch_size, tf.int32))

    @property
    def sample_function(self) -> Any:
        """The `tf.function` behind `sample` (for tracing-count checks)."""
        return self._sample_fn

    def _sample(self, batch_size: tf.Tensor) -> Sample:
        return self._run(batch_size, None)

    def log_prob_and_entropy(self, arcs: Any) -> Sample:
        """Scores given architectures with the network teacher-forced on them.

        Args:
          arcs: int `[batch, num_decisions]` (tensor or array), valid arcs.

        Returns:
          A `Sample` whose `arc` is `arcs` and whose `log_prob`, `entropy`,
          `skip_penalty` and `skip_rate` are those the same arcs have when
          sampled; `log_prob` is differentiable.

        Raises:
          tf.errors.InvalidArgumentError: for an entry outside its decision's
            range (checked in the graph, so also inside `tf.function`).
        """
        arcs = tf.convert_to_tensor(arcs, dtype=tf.int32)
        arcs = tf.ensure_shape(arcs, [None, self.num_decisions])
        choices = tf.constant(self.space.choices_per_decision, tf.int32)
        tf.debugging.assert_non_negative(arcs, message="Negative arc entry.")
        tf.debugging.assert_less(
            arcs,
            choices,
            message=f"Arc entry out of range for {self.space.describe()}.",
        )
        return self._run(tf.shape(arcs)[0], arcs)

    def call(self, arcs: tf.Tensor) -> Sample:
        """Same as `log_prob_and_entropy`.

        Call arguments:
          arcs: int32 `[batch, num_decisions]`.
        """
        return self.log_prob_and_entropy(arcs)

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "lstm_size": self.lstm_size,
            "tanh_constant": self.tanh_constant,
            "temperature": self.temperature,
            "seed": self.seed,
        }
