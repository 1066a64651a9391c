"""The ENAS search over enas_lm recurrent cells on a word-level corpus (PTB).

`LmSearch` is `enas_tf.search.loop.SearchBase` around `SharedRnnLM`
(ENAS_LM_REFERENCE sec. 2-4). Per epoch:

1. child phase (`lm_loop.train_epoch`): random-length windows (sec. 2.6) of
   the training text cut into `batch_size` rows, read in order; a new arc
   sampled from the controller for every window; plain SGD with the
   learning rate scaled by `T / bptt`, global-norm clipping and the search
   regularisers (TAR, `1/2 sum w^4` on the selected matrices, sec. 2.4).
   The hidden state is carried from window to window, starting from zeros
   (the original resets it at the end of the text and after every
   controller sample, so each child phase starts from zeros).
   `max_steps_per_epoch` caps the windows of a phase; the next phase then
   continues from there.
2. controller phase (`SearchBase`): `controller_steps` Adam updates (TF
   defaults, lr 5e-5), each averaging the REINFORCE gradients of
   `num_aggregate` samples; the reward of an arc is
   `reward_constant / perplexity` on the next validation window
   (`batch_size x bptt`, cyclic over the validation windows in order, zero
   state, no dropout; sec. 3.3).
3. the validation perplexity of the policy (sec. 4): every validation
   window scored under its own freshly sampled arc from a zero state
   (`valid/sampled_arcs_perplexity`; it measures no single arc).

Derive (`SearchBase`): each candidate is scored by its perplexity on the
whole validation split (`eval_batch_size` rows, `bptt` windows, state carried
across windows: the evaluation protocol of sec. 5.3); the lowest wins
(`valid_perplexity` in candidates.json). enas_lm has no derive step (sec. 4,
sec. 9 item 9).

Departure, following the paper (sec. 9 item 4): the controller's entropy
bonus is the full entropy of each decision (`enas_tf.controllers.rnn`).
The checkpoint holds the shared weights, both optimizers, the controller,
the baseline, the sampler and dropout RNGs, the data pointer and the reward
window index; window lengths are drawn from a generator seeded by
(seed, epoch), so a resumed run continues as it would have.
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
from enas_tf.lm.model import SharedRnnLM
from enas_tf.runtime import nonfinite
from enas_tf.search.loop import SearchBase
from enas_tf.strategies import base as strategy_base

SAFE_KEYS = (
    "search.epochs",
    "search.derive_samples",
    "search.log_arcs",
    "search.eval_batch_size",
    "search.max_steps_per_epoch",
    "data.data_dir",
)


class LmSearch(SearchBase):
    """One language-model search run in a run directory (module docstring).

    Args:
      config: the search settings (checked).
      corpus: the token streams; the model's vocabulary is the corpus's.
      output_dir: run directory; a compatible earlier run there is resumed.
      data: dataset settings recorded in config.json.
      overwrite: replace an incompatible earlier run.
      verbose: 1 for a progress bar per child phase, 0 for none.

    Raises:
      UserError: for bad settings, splits too short for the batch and window
        sizes, or an incompatible `output_dir` (nothing is written then).
    """

    SAFE_KEYS = SAFE_KEYS
    SCORE_KEY = "valid_perplexity"
    HIGHER_IS_BETTER = False
    # The hidden state carried through the child phase is not checkpointed:
    # a signal stops the search at the end of the epoch.
    STOP_INSIDE_EPOCH = False
    TRACE_NOTE = (
        "The first step traces the shared cell's graph once for every "
        "architecture and window length; it takes a while."
    )

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
        config.check()
        if getattr(config.strategy, "gradient_based", False) and type(self) is LmSearch:
            raise UserError(
                f"Algorithm {config.algorithm} relaxes the cell instead of sampling it; "
                f"run it with enas_tf.search.lm_darts.LmDartsSearch."
            )
        self.corpus = corpus
        self.train_rows = lm_loop.train_rows(corpus.train, config.batch_size)
        self.reward_windows = lm_loop.split_windows(
            corpus.valid, config.batch_size, config.bptt, "valid", "--batch_size"
        )
        lm_loop.split_windows(
            corpus.valid, config.eval_batch_size, config.bptt, "valid", "--eval_batch_size"
        )
        run = {
            "tool": "enas-search",
            "search": config.to_json(),
            "data": data or {"dataset": "ptb", "vocab_size": corpus.vocab_size},
        }
        super().__init__(config, output_dir, run, overwrite=overwrite, verbose=verbose)

    def _check_replicas(self) -> None:
        if self.replicas > 1:
            raise UserError("The language-model search runs on one device.")

    def _build_model(self) -> None:
        config = self.config
        self.model = SharedRnnLM(vocab_size=self.corpus.vocab_size, **config.model_kwargs())
        self.optimizer = keras.optimizers.SGD(config.optimizer.learning_rate)
        self.optimizer.build(self.model.trainable_variables)
        self.position = tf.Variable(0, dtype=tf.int64, trainable=False, name="position")
        self.reward_index = tf.Variable(0, dtype=tf.int64, trainable=False, name="reward_index")

    def _checkpointed(self) -> dict:
        return {
            "model": lm_loop.variables_checkpoint(self.model),
            "optimizer": self.optimizer,
            "position": self.position,
            "reward_index": self.reward_index,
            "dropout_rng": self.model.dropout_generator,
        }

    def _build_steps(self) -> None:
        config = self.config
        self.regularizers = lm_training.Regularizers(
            alpha=config.supernet.alpha,
            beta=config.supernet.beta,
            weight_decay=config.supernet.weight_decay,
            weight_penalty="quartic",
        )
        self.train_step = lm_training.make_train_step(
            self.model, self.optimizer, self.regularizers, config.optimizer.grad_bound or None
        )
        self.eval_step = lm_training.make_eval_step(self.model)
        # Skipped (non-finite) child steps; too many in a row stop the run.
        self.nonfinite = nonfinite.NonFiniteCounter(
            config.max_nonfinite, "language-model search, child phase"
        )

    # ----- phases -------------------------------------------------------------

    def _child_phase(self) -> dict[str, float]:
        config = self.config
        epoch = int(self.epoch.numpy())
        result = lm_loop.train_epoch(
            self.train_step,
            self.train_rows,
            self.model.initial_state(config.batch_size),
            np.random.default_rng([config.seed, epoch]),
            start=int(self.position.numpy()),
            bptt=config.bptt,
            max_steps=config.max_steps_per_epoch,
            arc_fn=lambda: strategy_base.train_sample(self.sampler, 1).arc[0],
            verbose=self.verbose,
            nonfinite=self.nonfinite,
        )
        self.position.assign(result.position)
        metrics = {f"child/{key}": value for key, value in result.metrics.items()}
        metrics.update(
            {
                "child/steps": float(result.steps),
                "child/learning_rate": config.optimizer.learning_rate,
            }
        )
        return metrics

    def _window_nll(self, window, arc) -> tuple[float, float]:
        x, y = window
        nll, count, _ = self.eval_step(x, y, self.model.initial_state(self.config.batch_size), arc)
        return float(nll), float(count)

    def _reward(self, arc) -> float:
        index = int(self.reward_index.numpy())
        self.reward_index.assign((index + 1) % len(self.reward_windows))
        nll, count = self._window_nll(self.reward_windows[index], arc)
        return self.config.reward_constant / lm_training.perplexity(nll, count)

    def _reward_text(self, reward: float) -> str:
        ppl = self.config.reward_constant / reward if reward > 0 else float("inf")
        return f"reward {reward:.4f} (valid minibatch perplexity {ppl:.1f})"

    def _epoch_metrics(self) -> dict[str, float]:
        total = count = 0.0
        for window in self.reward_windows:
            nll, n = self._window_nll(window, self.sampler.sample(1).arc[0])
            total, count = total + nll, count + n
        return {"valid/sampled_arcs_perplexity": lm_training.perplexity(total, count)}

    def score(self, arc) -> float:
        """Perplexity of `arc` on the whole validation split, shared weights,
        `eval_batch_size` rows, `bptt` windows, state carried."""
        return lm_training.evaluate(
            self.model,
            self.corpus.valid,
            self.config.eval_batch_size,
            self.config.bptt,
            arc=arc,
            eval_step=self.eval_step,
        )


__all__ = ["SAFE_KEYS", "LmSearch"]
