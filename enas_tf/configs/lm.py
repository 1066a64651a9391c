"""Configuration of the language-model search and final training (no TF).

`LmSearchConfig` (defaults: google-research `enas_lm` search, ENAS_LM_REFERENCE
sec. 7.1) and `LmTrainConfig` (defaults: its GPU fixed-cell recipe, sec. 5.1
and 7.2) are frozen dataclasses that the tools fill from flags and check
before TensorFlow is imported or anything is written; `check` raises
`UserError` with the fix. `HELP` holds the flag help of every field.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, ClassVar

from enas_tf.configs.image import check_positive, check_strategy
from enas_tf.configs.nested import Nested
from enas_tf.errors import UserError
from enas_tf.spaces import RnnSpace

# Penn Treebank's vocabulary (Mikolov's split), for sizes without the data.
PTB_VOCAB_SIZE = 10000
DROPOUTS = ("drop_e", "drop_i", "drop_x", "drop_l", "drop_o")
AVERAGES = ("all", "loose_ends")

HELP = {
    "num_nodes": "Rnn: searched cell nodes L (the arc has 2 L integers).",
    "hidden_size": "Rnn: hidden size H, also the embedding size.",
    "init_range": "Rnn: every weight starts uniform in [-init_range, init_range].",
    "drop_e": "Rnn: dropout of embedding rows (whole word types).",
    "drop_i": "Rnn: variational dropout of the embedded inputs.",
    "drop_x": "Rnn: dropout of x_t entering the cell's base node.",
    "drop_l": "Rnn: dropout of h_{t-1} and of every node's matmul input.",
    "drop_o": "Rnn: variational dropout of the outputs before the softmax.",
    "alpha": "Rnn: activation regulariser alpha * mean(h^2) (AR).",
    "beta": "Rnn: temporal slowness beta * mean((h_t+1 - h_t)^2) (TAR).",
    "weight_decay": "Rnn: weight-penalty coefficient (search: 1/2 sum w^4 over "
    "the selected cell matrices; final: sum w^2 over every weight).",
    "learning_rate": "Rnn: SGD learning rate, scaled per step by T / bptt.",
    "bptt": "Rnn: mean BPTT window length (and the validation window).",
    "random_bptt": "Rnn: random window lengths around --bptt (the GPU recipe); "
    "--norandom_bptt: fixed windows (the TPU recipe).",
    "max_steps_per_epoch": "Rnn: at most this many training windows per epoch, "
    "continuing from where the last epoch stopped (0: one whole pass over the "
    "training text, the original; a small value makes quick runs).",
    "reward_constant": "Rnn: the reward is reward_constant / validation "
    "perplexity (REWARD_CONSTANT 80).",
    "average": "Rnn: cell output, the mean of all nodes (search, GPU recipe) or "
    "of the loose ends (TPU recipe).",
    "average_after": "Rnn: start iterate averaging once the validation "
    "perplexity is worse than the best of all but the last N epochs (the "
    "NT-ASGD trigger; 0: never).",
}


@dataclasses.dataclass(frozen=True)
class LmSpaceConfig:
    """The searched space (section `space` of `LmSearchConfig`): "rnn" (flat
    name and flag: `space`) with `num_nodes` searched nodes L."""

    FLAT_NAMES: ClassVar[dict[str, str]] = {"name": "space"}

    name: str = "rnn"
    num_nodes: int = 9


@dataclasses.dataclass(frozen=True)
class LmSupernetConfig:
    """The shared language model (section `supernet` of `LmSearchConfig`):
    `hidden_size`, `init_range`, the dropouts `drop_e` .. `drop_o`, and the
    regularisers `alpha` (AR), `beta` (TAR) and `weight_decay` (the search's
    `1/2 sum w^4` over the selected cell matrices, spec sec. 2.4)."""

    hidden_size: int = 200
    init_range: float = 0.04
    drop_e: float = 0.1
    drop_i: float = 0.2
    drop_x: float = 0.75
    drop_l: float = 0.25
    drop_o: float = 0.75
    alpha: float = 0.0
    beta: float = 1.0
    weight_decay: float = 8e-7


@dataclasses.dataclass(frozen=True)
class LmOptimizerConfig:
    """Plain SGD of the shared weights (section `optimizer`): the learning
    rate (scaled per step by T / bptt) and the global-norm clip."""

    learning_rate: float = 20.0
    grad_bound: float = 0.1


@dataclasses.dataclass(frozen=True)
class LmSearchConfig(Nested):
    """Settings of an enas_lm search (defaults: ENAS_LM_REFERENCE sec. 7.1).

    Sections as in `SearchConfig` (`enas_tf.configs.nested`): `space`
    (`LmSpaceConfig`), `supernet` (`LmSupernetConfig`), `optimizer`
    (`LmOptimizerConfig`) and `strategy` (the settings of `algorithm`, with
    the strategy's "lm" defaults: enas_lm's controller for reinforce).

    Attributes:
      algorithm: the search strategy, as in `SearchConfig`.
      epochs: search epochs (a child phase, then a controller phase, each).
      batch_size: child batch size, also of the reward windows.
      bptt: mean training window, and the reward window length.
      max_steps_per_epoch: cap on the child steps of an epoch (0: a pass).
      eval_batch_size: batch size when scoring candidates on the whole
        validation split (state carried across windows).
      controller_steps, num_aggregate: as in `SearchConfig`.
      reward_constant: the reward is `reward_constant / perplexity`.
      log_arcs, derive_samples, seed, max_nonfinite: as in `SearchConfig`.
    """

    KIND: ClassVar[str] = "lm"

    space: LmSpaceConfig = dataclasses.field(default_factory=LmSpaceConfig)
    supernet: LmSupernetConfig = dataclasses.field(default_factory=LmSupernetConfig)
    optimizer: LmOptimizerConfig = dataclasses.field(default_factory=LmOptimizerConfig)
    algorithm: str = "reinforce"
    strategy: Any = None
    epochs: int = 600
    batch_size: int = 128
    bptt: int = 35
    max_steps_per_epoch: int = 0
    eval_batch_size: int = 64
    controller_steps: int = 25
    num_aggregate: int = 10
    reward_constant: float = 80.0
    log_arcs: int = 10
    derive_samples: int = 100
    seed: int = 0
    max_nonfinite: int = 10

    def check(self) -> None:
        """Raises UserError for out-of-range or contradictory settings."""
        if self.space.name != "rnn":
            raise UserError(
                f"The language-model search space is rnn; received {self.space.name!r}."
            )
        check_strategy(self, "rnn")
        leaves = types.SimpleNamespace(**self.flat())
        check_positive(
            leaves,
            (
                "num_nodes",
                "hidden_size",
                "epochs",
                "batch_size",
                "bptt",
                "eval_batch_size",
                "controller_steps",
                "num_aggregate",
                "derive_samples",
            ),
        )
        _check_model(leaves)
        if not self.reward_constant > 0:
            raise UserError(f"reward_constant must be > 0; received {self.reward_constant}.")
        if self.log_arcs < 0:
            raise UserError(f"log_arcs must be >= 0; received {self.log_arcs}.")

    def search_space(self) -> RnnSpace:
        """The space searched."""
        return RnnSpace(num_nodes=self.space.num_nodes)

    def model_kwargs(self) -> dict:
        """`SharedRnnLM` arguments besides the vocabulary size."""
        return _model_kwargs(self.supernet, num_nodes=self.space.num_nodes, seed=self.seed)


@dataclasses.dataclass(frozen=True)
class LmTrainConfig:
    """Final training of a fixed enas_lm cell (defaults: the GPU recipe).

    ENAS_LM_REFERENCE sec. 5.1 / 7.2 (`fixed_lib.py`). The TPU recipe behind
    the README's 56.1 (sec. 5.2) is `hidden_size=850, average="loose_ends",
    init_range=0.04, drop_e=0.15, drop_i=0.2, drop_x=0.75, drop_l=0.25,
    alpha=0, random_bptt=False`, averaging from step 2000 (not offered: use
    `average_after`).

    Attributes:
      hidden_size, average, init_range, drop_e .. drop_o: the model.
      alpha, beta, weight_decay: AR, TAR and `weight_decay * sum w^2` over
        every weight.
      learning_rate, grad_bound: plain SGD (scaled by T / bptt), clip.
      epochs: passes over the training text (or `max_steps_per_epoch`
        chunks), each followed by validation.
      batch_size, bptt, random_bptt, max_steps_per_epoch: training windows.
      eval_batch_size: validation batch (64; windows of `bptt`, state
        carried). The test split is scored at batch 1 (spec sec. 5.3).
      average_after: the NT-ASGD-style averaging trigger (sec. 5.1; 0: off).
      seed: seed of initialisation, dropout and window lengths (2126).
      max_nonfinite: steps in a row with a NaN or Inf loss or gradient
        (each skipped) that stop the run with an error (0: never).
    """

    hidden_size: int = 800
    average: str = "all"
    init_range: float = 0.05
    drop_e: float = 0.125
    drop_i: float = 0.175
    drop_x: float = 0.725
    drop_l: float = 0.225
    drop_o: float = 0.75
    alpha: float = 0.7
    beta: float = 0.0
    weight_decay: float = 8e-7
    learning_rate: float = 20.0
    grad_bound: float = 0.25
    epochs: int = 3000
    batch_size: int = 64
    bptt: int = 35
    random_bptt: bool = True
    max_steps_per_epoch: int = 0
    eval_batch_size: int = 64
    average_after: int = 10
    seed: int = 2126
    max_nonfinite: int = 10

    def check(self) -> None:
        """Raises UserError for out-of-range settings."""
        check_positive(self, ("hidden_size", "epochs", "batch_size", "bptt", "eval_batch_size"))
        _check_model(self)
        if self.average not in AVERAGES:
            raise UserError(f"average must be all or loose_ends; received {self.average!r}.")
        if self.average_after < 0:
            raise UserError(f"average_after must be >= 0; received {self.average_after}.")

    def model_kwargs(self) -> dict:
        """`FixedRnnLM` arguments besides the arc and vocabulary size."""
        return _model_kwargs(self, average=self.average, seed=self.seed)


def _model_kwargs(config, **extra) -> dict:
    kwargs = {"hidden_size": config.hidden_size, "init_range": config.init_range}
    kwargs.update({name: getattr(config, name) for name in DROPOUTS})
    return {**kwargs, **extra}


def _check_model(config) -> None:
    for name in DROPOUTS:
        value = getattr(config, name)
        if not 0 <= value < 1:
            raise UserError(f"{name} must be in [0, 1); received {value}.")
    if not config.init_range > 0 or not config.learning_rate > 0:
        raise UserError("init_range and learning_rate must be > 0.")
    for name in (
        "alpha",
        "beta",
        "weight_decay",
        "grad_bound",
        "max_steps_per_epoch",
        "max_nonfinite",
    ):
        if getattr(config, name) < 0:
            raise UserError(f"{name} must be >= 0; received {getattr(config, name)}.")
