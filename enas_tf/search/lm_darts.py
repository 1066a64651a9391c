"""DARTS over the enas_lm recurrent cell on a word-level corpus (PTB).

`LmDartsSearch` is `enas_tf.search.lm.LmSearch` with DARTS's relaxed
language model (`enas_tf.lm.relaxed.RelaxedRnnLM`) and the architecture
parameters of the strategy `darts` (one cell: `[edges, activations]`),
picked by `enas-search --space=rnn --algorithm=darts`. Per epoch:

1. child phase (`enas_tf.lm.loop.train_epoch`, as the ENAS search: random
   window lengths, plain SGD scaled by `T / bptt`, clipping, the search's
   regularisers, the hidden state carried): before every training window,
   an architecture step on the next validation window (Adam), the
   validation windows read in order with their own carried state, from
   column `valid_position` and a zero state at the start of each epoch; the
   training window then runs at the new mixing weights. First order: the
   gradient of the validation cross-entropy (no dropout) at the current
   weights. Second order (`--darts_order=2`, DARTS eq. 7-8 as for images,
   `enas_tf.search.darts_steps.unrolled_gradient`): the virtual step is one
   step of the weight optimiser on the coming training window (its carried
   state, dropout and regularisers; the gradient clipped as the weight
   step's, the learning rate scaled by the window's length), the dropout
   masks drawn once and shared by the virtual step and both finite-
   difference gradients (DARTS's code draws new ones for each, which adds
   noise of order 1/eps to the Hessian term); the carried states are
   constants, as in DARTS (its hidden states are detached), and the
   validation state carried on is the one computed at w';
2. no controller phase; the strategy's `end_epoch` logs the mixing weights,
   the derived cell and its share of identity activations; the relaxed
   model's perplexity on the validation split is `darts/valid_perplexity`;
3. derive: the derived enas_lm arc (per node the strongest edge and its
   activation), scored by the relaxed model with its one-hot weights
   (`valid_perplexity`, lower is better; retrain it with `enas-train`).

Like the ENAS language-model search it stops only between epochs (the
carried states are not checkpointed); a resumed run continues exactly.
Departure: the validation loss of the architecture step has no dropout.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from enas_tf.configs.lm import LmSearchConfig
from enas_tf.data.ptb import PtbCorpus
from enas_tf.errors import UserError
from enas_tf.lm import loop as lm_loop
from enas_tf.lm import steps as lm_training
from enas_tf.lm.relaxed import RelaxedRnnLM
from enas_tf.runtime import nonfinite
from enas_tf.search.darts import collapsed
from enas_tf.search.darts_steps import unrolled_gradient
from enas_tf.search.lm import LmSearch


class LmDartsSearch(LmSearch):
    """One recurrent DARTS search in a run directory (module docstring).

    Args: as `LmSearch`; `config.algorithm` is "darts".
    """

    TRACE_NOTE = "The first steps trace the relaxed cell (every edge, every activation)."

    def __init__(
        self,
        config: LmSearchConfig,
        corpus: PtbCorpus,
        output_dir: str,
        *,
        data: dict | None = None,
        overwrite: bool = False,
        verbose: int = 1,
    ):
        if not getattr(config.strategy, "gradient_based", False):
            raise UserError(
                f"Algorithm {config.algorithm} is not DARTS; run it with "
                f"enas_tf.search.lm.LmSearch."
            )
        self.valid_rows = lm_loop.train_rows(corpus.valid, config.batch_size)
        self._valid_state = None
        super().__init__(
            config, corpus, output_dir, data=data, overwrite=overwrite, verbose=verbose
        )

    # ----- SearchBase ---------------------------------------------------------

    def _build_model(self) -> None:
        config = self.config
        self.model = RelaxedRnnLM(
            vocab_size=self.corpus.vocab_size,
            none_op=config.strategy.none_op,
            **config.model_kwargs(),
        )
        self.optimizer = keras.optimizers.SGD(config.optimizer.learning_rate)
        self.optimizer.build(self.model.trainable_variables)
        self.position = tf.Variable(0, dtype=tf.int64, trainable=False, name="position")
        self.reward_index = tf.Variable(0, dtype=tf.int64, trainable=False, name="reward_index")
        self.valid_position = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.arch_sums = tf.Variable(tf.zeros([2], tf.float64), trainable=False)

    def _checkpointed(self) -> dict:
        return {
            **super()._checkpointed(),
            "valid_position": self.valid_position,
            "arch_sums": self.arch_sums,
        }

    def _build_steps(self) -> None:
        super()._build_steps()
        model, architecture = self.model, self.sampler
        tokens = tf.TensorSpec([None, None], tf.int32)
        state_spec = tf.TensorSpec([None, model.hidden_size], model.compute_dtype)
        regularizers, grad_bound = self.regularizers, self.config.optimizer.grad_bound

        def mix_of(alpha):
            return architecture.mix_of(alpha)[0]

        def valid_loss(vx, vy, vstate):
            def loss(mix):
                nll, count, new_state = lm_training.evaluation_loss(model, vx, vy, vstate, mix)
                return nll / count, new_state

            return loss

        def apply(loss, grad, new_state, vstate):
            finite = nonfinite.all_finite(loss, [grad])
            grad = tf.where(finite, grad, tf.zeros_like(grad))

            def step():
                architecture.apply_gradient(grad)
                return tf.constant(True)

            tf.cond(finite, step, lambda: tf.constant(False))
            return loss, tf.where(finite, new_state, vstate)

        @tf.function(input_signature=[tokens, tokens, state_spec], autograph=False)
        def first_order(vx, vy, vstate):
            with tf.GradientTape() as tape:
                loss, new_state = valid_loss(vx, vy, vstate)(mix_of(architecture.alpha))
            return apply(loss, tape.gradient(loss, architecture.alpha), new_state, vstate)

        @tf.function(
            input_signature=[tokens, tokens, state_spec] * 2 + [tf.TensorSpec([], tf.float32)],
            autograph=False,
        )
        def second_order(x, y, state, vx, vy, vstate, xi):
            masks = model.dropout_masks(tf.shape(x)[0])

            def train_loss(mix):
                return lm_training.training_loss(model, x, y, state, mix, regularizers, masks)[0]

            grad, loss, new_state = unrolled_gradient(
                model.trainable_variables,
                architecture.alpha,
                mix_of,
                train_loss,
                valid_loss(vx, vy, vstate),
                xi,
                grad_bound=grad_bound or 0.0,
            )
            return apply(loss, grad, new_state, vstate)

        self.first_order_step, self.second_order_step = first_order, second_order
        order = self.config.strategy.darts_order
        self.architecture_step = second_order if order == 2 else first_order

    def _next_valid_window(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """The next validation window `(x, y)` and whether it starts a pass."""
        position = int(self.valid_position.numpy())
        batch_len = self.valid_rows.shape[1]
        if position >= batch_len - 2:
            position = 0
        length = min(self.config.bptt, batch_len - position - 1)
        x = self.valid_rows[:, position : position + length]
        y = self.valid_rows[:, position + 1 : position + length + 1]
        self.valid_position.assign(position + length)
        return x, y, position == 0

    def _architecture(self, x, y, state) -> None:
        """One architecture step before the training window `(x, y)` with
        carried `state` (`lm_loop.train_epoch`'s `before_step`)."""
        config = self.config
        vx, vy, fresh = self._next_valid_window()
        if fresh or self._valid_state is None:
            self._valid_state = self.model.initial_state(config.batch_size)
        if config.strategy.darts_order == 2:
            scale = lm_training.bptt_lr_scale(x.shape[1], config.bptt)
            xi = tf.constant(config.optimizer.learning_rate * scale, tf.float32)
            args = (x, y, state, vx, vy, self._valid_state, xi)
        else:
            args = (vx, vy, self._valid_state)
        loss, self._valid_state = self.architecture_step(*args)
        if np.isfinite(float(loss)):
            self.arch_sums.assign_add([float(loss), 1.0])

    def _mix(self) -> tf.Tensor:
        """The mixing weights the training window runs at (`arc_fn`)."""
        return tf.stop_gradient(self.sampler.mix()[0])

    def _child_phase(self) -> dict[str, float]:
        config = self.config
        epoch = int(self.epoch.numpy())
        self._valid_state = None  # each epoch's validation windows start from zeros
        result = lm_loop.train_epoch(
            self.train_step,
            self.train_rows,
            self.model.initial_state(config.batch_size),
            np.random.default_rng([config.seed, epoch]),
            start=int(self.position.numpy()),
            bptt=config.bptt,
            max_steps=config.max_steps_per_epoch,
            arc_fn=self._mix,
            before_step=self._architecture,
            verbose=self.verbose,
            nonfinite=self.nonfinite,
        )
        self.position.assign(result.position)
        valid_sum, valid_steps = self.arch_sums.numpy()
        self.arch_sums.assign(tf.zeros_like(self.arch_sums))
        metrics = {f"child/{key}": value for key, value in result.metrics.items()}
        metrics.update(
            {
                "child/steps": float(result.steps),
                "child/learning_rate": config.optimizer.learning_rate,
                "darts/valid_loss": float(valid_sum / max(valid_steps, 1)),
                "darts/valid_perplexity": self._perplexity(self.sampler.mix()[0].numpy()),
            }
        )
        return metrics

    def _controller_phase(self) -> dict[str, float]:
        return {}  # alpha learns in the child phase

    def _epoch_metrics(self) -> dict[str, float]:
        return {}

    def _stop_early(self) -> bool:
        return collapsed(self.sampler, self.config.strategy, int(self.epoch.numpy()), self.verbose)

    def _log_arcs(self) -> list[tuple[str, float]]:
        if not self.config.log_arcs:
            return []
        arc = self.sampler.derive()
        return [(self.space.format(arc), self._reward(arc))]

    def _window_nll(self, window, arc) -> tuple[float, float]:
        x, y = window
        state = self.model.initial_state(self.config.batch_size)
        nll, count, _ = self.eval_step(x, y, state, tf.constant(self.model.one_hot(arc)))
        return float(nll), float(count)

    def _perplexity(self, mix: np.ndarray) -> float:
        return lm_training.evaluate(
            self.model,
            self.corpus.valid,
            self.config.eval_batch_size,
            self.config.bptt,
            arc=mix,
            eval_step=self.eval_step,
        )

    def derive(self) -> dict:
        """`SearchBase.derive` of the derived arc (`evaluation`: "one_hot")."""
        return {**super().derive(), "evaluation": "one_hot"}

    def score(self, arc) -> float:
        """Validation perplexity of the relaxed model at `arc`'s one-hot
        weights (`eval_batch_size` rows, `bptt` windows, state carried)."""
        return self._perplexity(self.model.one_hot(arc))


__all__ = ["LmDartsSearch"]
