"""Configuration of CNN searches, child networks and their final training
(no TensorFlow).

Frozen dataclasses that the tools fill from flags and check before anything
heavy is imported or written; `check` raises `UserError` with the fix.
`SearchConfig` is made of sections (`enas_tf.configs.nested`).
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, ClassVar

from enas_tf import strategies
from enas_tf.configs.nested import Nested
from enas_tf.errors import UserError
from enas_tf.runtime.precision import check_precision
from enas_tf.spaces import MacroSpace, MicroSpace, SearchSpace

# How a micro cell's output is formed (`enas_tf.child.micro`).
CELL_OUTPUTS = ("loose_ends", "all")
# How batch norm normalises when a search scores an architecture.
REWARD_BN = ("batch", "recalibrate", "moving")


@dataclasses.dataclass(frozen=True)
class ChildConfig:
    """How to build a child network (everything but the architecture).

    Attributes:
      out_filters: channels of the first stage (C for macro, C0 for micro).
      num_layers: micro only: normal cells L (the net has L + 2 cells).
      keep_prob: keep probability of the dropout before the classifier.
      drop_path_keep_prob: micro only: final drop-path keep probability of
        the last cell (1 disables drop path).
      aux_weight: micro only: weight of the auxiliary head's loss (0: no
        auxiliary head).
      separable: macro only: separable convs for ops 1 and 3 (the paper)
        instead of regular ones (the original final code).
      layer_base: micro only: the original's extra 1x1 conv on input 1.
      cell_output: micro only: "loose_ends" (the paper's cell output: the
        nodes no other node reads, concatenated) or "all" (every computed
        node concatenated: what the searching supernet computes by default,
        so weights inherited from a search need it).
      l2: L2 weight on every trainable variable.
      bn_momentum: batch-norm moving-average decay.
      bn_epsilon: batch-norm epsilon.
    """

    out_filters: int = 36
    num_layers: int = 15
    keep_prob: float = 1.0
    drop_path_keep_prob: float = 1.0
    aux_weight: float = 0.0
    separable: bool = True
    layer_base: bool = False
    cell_output: str = "loose_ends"
    l2: float = 0.0
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    def check(self, space: SearchSpace) -> None:
        """Raises UserError for settings that do not fit `space`."""
        if not isinstance(space, (MacroSpace, MicroSpace)):
            raise UserError(
                f"Child networks are CNNs; the {space.name} space is a "
                f"recurrent cell (train it with the language-model tools)."
            )
        if self.out_filters < 2 or self.out_filters % 2:
            raise UserError(
                f"out_filters must be an even number >= 2 (factorized "
                f"reductions split channels in two); received {self.out_filters}."
            )
        for key in ("keep_prob", "drop_path_keep_prob"):
            value = getattr(self, key)
            if not 0.0 < value <= 1.0:
                raise UserError(f"{key} must be in (0, 1]; received {value}.")
        if self.aux_weight < 0 or self.l2 < 0:
            raise UserError("aux_weight and l2 must be >= 0.")
        if self.cell_output not in CELL_OUTPUTS:
            raise UserError(
                f"cell_output must be one of {', '.join(CELL_OUTPUTS)}; received "
                f"{self.cell_output!r}."
            )
        if isinstance(space, MacroSpace):
            if self.aux_weight > 0 or self.drop_path_keep_prob < 1.0:
                raise UserError(
                    "The macro network has no auxiliary head and no drop path "
                    "(they belong to the micro network); set aux_weight=0 and "
                    "drop_path_keep_prob=1."
                )
            if self.cell_output != "loose_ends":
                raise UserError(
                    "cell_output applies to micro cells; the macro network has no "
                    "cells (drop --cell_output)."
                )
        elif self.num_layers < 3:
            raise UserError(
                f"A micro network needs num_layers >= 3 (its reduction cells "
                f"sit at L//3 and 2*(L//3)+1); received {self.num_layers}."
            )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of final training.

    Attributes:
      epochs: training epochs.
      batch_size: training batch size.
      eval_batch_size: batch size of evaluation.
      lr_max, lr_min: range of the cosine learning rate.
      lr_t0: epochs of the first cosine cycle.
      lr_t_mul: factor by which each cycle is longer than the previous one.
      momentum: SGD momentum (Nesterov).
      grad_bound: global-norm gradient clipping (0 disables it).
      label_smoothing: label smoothing of the cross-entropy.
      cutout_size: side of the cutout square (0 disables it).
      pad: pixels of zero padding before the random crop (0: no crop).
      flip: random horizontal flips.
      seed: seed of initialisation, shuffling and augmentation.
      jit_compile: compile the training step with XLA.
      max_nonfinite: steps in a row with a NaN or Inf loss or gradient
        (each skipped) that stop the run with an error (0: never).
      precision: "float32", "mixed_bfloat16" or "mixed_float16" (with
        dynamic loss scaling; its overflow steps are skipped but not counted
        by max_nonfinite): the network computes in 16 bits, variables,
        logits and loss stay float32 (`enas_tf.runtime.precision`).
    """

    epochs: int = 630
    batch_size: int = 144
    eval_batch_size: int = 100
    lr_max: float = 0.05
    lr_min: float = 1e-4
    lr_t0: int = 10
    lr_t_mul: float = 2.0
    momentum: float = 0.9
    grad_bound: float = 5.0
    label_smoothing: float = 0.0
    cutout_size: int = 0
    pad: int = 4
    flip: bool = True
    seed: int = 0
    jit_compile: bool = False
    max_nonfinite: int = 10
    precision: str = "float32"

    def check(self) -> None:
        """Raises UserError for out-of-range settings."""
        check_precision(self.precision)
        check_positive(self, ("epochs", "batch_size", "eval_batch_size", "lr_t0"))
        _check_lr_range(self)
        if self.lr_t_mul < 1:
            raise UserError(f"lr_t_mul must be >= 1; received {self.lr_t_mul}.")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"label_smoothing must be in [0, 1); received {self.label_smoothing}.")
        if self.grad_bound < 0 or self.cutout_size < 0 or self.pad < 0:
            raise UserError("grad_bound, cutout_size and pad must be >= 0.")
        _check_max_nonfinite(self)


@dataclasses.dataclass(frozen=True)
class SpaceConfig:
    """The searched space (section `space` of `SearchConfig`).

    Attributes:
      name: "micro" or "macro" (flat name and flag: `space`).
      num_nodes: micro: computed nodes per cell (B).
      num_layers: micro: normal cells L of the supernet (not part of the
        arc); macro: layers.
      num_ops: candidate ops (5 micro, 6 macro).
    """

    FLAT_NAMES: ClassVar[dict[str, str]] = {"name": "space"}

    name: str = "micro"
    num_nodes: int = 5
    num_layers: int = 6
    num_ops: int = 5

    def build(self) -> SearchSpace:
        """The space searched."""
        if self.name == "micro":
            return MicroSpace(num_nodes=self.num_nodes, num_ops=self.num_ops)
        return MacroSpace(num_layers=self.num_layers, num_ops=self.num_ops)


@dataclasses.dataclass(frozen=True)
class SupernetConfig:
    """The shared-weight network (section `supernet` of `SearchConfig`).

    Attributes:
      out_filters: C0 (micro) or C (macro).
      keep_prob: dropout keep probability before the classifier.
      cell_output: micro: how the cells form their output: "all" (every
        computed node concatenated, a fixed width; the default, as in NNI's
        and DARTS's one-shot supernets: the shared weights learn far better,
        see `enas_tf.supernet.micro`) or "loose_ends" (the paper's final
        cell, the supernet then computing exactly the published networks).
    """

    out_filters: int = 20
    keep_prob: float = 0.9
    cell_output: str = "all"


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """SGD of the shared weights (section `optimizer` of `SearchConfig`):
    Nesterov momentum, cosine learning rate with warm restarts (`lr_max`,
    `lr_min`, `lr_t0` epochs, cycles `lr_t_mul` times longer), L2 weight
    `l2` and global-norm clipping `grad_bound` (0: none), as in final
    training."""

    lr_max: float = 0.05
    lr_min: float = 5e-4
    lr_t0: int = 10
    lr_t_mul: float = 2.0
    momentum: float = 0.9
    l2: float = 1e-4
    grad_bound: float = 5.0


@dataclasses.dataclass(frozen=True)
class SearchConfig(Nested):
    """Settings of a CNN search (defaults: the micro search script).

    Sections (`enas_tf.configs.nested`: every leaf also has a flat name, the
    `enas-search` flag; `SearchConfig.from_flat(space="macro", ...)`):
    `space` (`SpaceConfig`), `supernet` (`SupernetConfig`), `optimizer`
    (`OptimizerConfig`) and `strategy`, the settings of the strategy
    `algorithm` (its `Config` in `enas_tf.strategies`; None: its defaults).

    Attributes:
      algorithm: the search strategy, a name in `enas_tf.strategies`:
        "reinforce" (ENAS: the LSTM controller trained with REINFORCE) or
        "random" (uniform sampling with the same loop: Random-WS). Run
        directories written before the name changed recorded it as
        `controller` (`nested.RENAMED`).
      epochs: search epochs (a child phase, then a controller phase, each).
      batch_size: child batch size (also the reward minibatch size).
      eval_batch_size: batch size when scoring on the whole validation split.
      controller_steps: strategy updates per epoch.
      num_aggregate: sampled arcs whose rewards one update takes.
      reward_bn: how batch norm scores rewards and candidates: "batch"
        (the batch's statistics, as the original search; the default),
        "recalibrate" (the architecture's moving statistics re-estimated
        on `recalibrate_batches` training batches first, as single-path
        and once-for-all searches do) or "moving" (the shared moving
        averages, which mix many architectures).
      recalibrate_batches: training batches that re-estimate the statistics
        with reward_bn=recalibrate.
      log_arcs: architectures sampled and shown per epoch.
      derive_samples: architectures sampled and scored at the end.
      flip, pad, cutout_size: training augmentation.
      seed: seed of everything random.
      max_nonfinite: child steps in a row with a NaN or Inf loss or
        gradient (each skipped) that stop the search with an error (0: never).
      precision: "float32", "mixed_bfloat16" or "mixed_float16" (with
        dynamic loss scaling) for the supernet; the controller always
        computes in float32 (`enas_tf.runtime.precision`).
    """

    KIND: ClassVar[str] = "image"

    space: SpaceConfig = dataclasses.field(default_factory=SpaceConfig)
    supernet: SupernetConfig = dataclasses.field(default_factory=SupernetConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    algorithm: str = "reinforce"
    strategy: Any = None
    epochs: int = 150
    batch_size: int = 160
    eval_batch_size: int = 100
    controller_steps: int = 30
    num_aggregate: int = 10
    reward_bn: str = "batch"
    recalibrate_batches: int = 4
    log_arcs: int = 10
    derive_samples: int = 100
    flip: bool = True
    pad: int = 4
    cutout_size: int = 0
    seed: int = 0
    max_nonfinite: int = 10
    precision: str = "float32"

    def check(self) -> None:
        """Raises UserError for out-of-range or contradictory settings."""
        if self.space.name not in ("micro", "macro"):
            raise UserError(f"space must be micro or macro; received {self.space.name!r}.")
        check_precision(self.precision)
        check_strategy(self, self.space.name)
        if self.reward_bn not in REWARD_BN:
            raise UserError(
                f"reward_bn must be one of {', '.join(REWARD_BN)}; received {self.reward_bn!r}."
            )
        if self.supernet.cell_output not in CELL_OUTPUTS:
            raise UserError(
                f"cell_output must be one of {', '.join(CELL_OUTPUTS)}; received "
                f"{self.supernet.cell_output!r}."
            )
        leaves = types.SimpleNamespace(**self.flat())
        check_positive(
            leaves,
            (
                "epochs",
                "batch_size",
                "eval_batch_size",
                "lr_t0",
                "controller_steps",
                "num_aggregate",
                "derive_samples",
                "recalibrate_batches",
            ),
        )
        _check_lr_range(self.optimizer)
        if not 0 < self.supernet.keep_prob <= 1:
            raise UserError(f"keep_prob must be in (0, 1]; received {self.supernet.keep_prob}.")
        if self.log_arcs < 0 or self.optimizer.l2 < 0 or self.optimizer.grad_bound < 0:
            raise UserError("log_arcs, l2 and grad_bound must be >= 0.")
        if self.cutout_size < 0 or self.pad < 0:
            raise UserError("cutout_size and pad must be >= 0.")
        _check_max_nonfinite(self)
        # The supernet's own checks (sizes, out_filters), before anything is
        # loaded or written.
        self.child_config().check(self.search_space())

    def search_space(self) -> SearchSpace:
        """The space searched."""
        return self.space.build()

    def child_config(self) -> ChildConfig:
        """The fixed networks the supernet computes (search sizes)."""
        return ChildConfig(
            out_filters=self.supernet.out_filters,
            num_layers=self.space.num_layers,
            keep_prob=self.supernet.keep_prob,
            cell_output=self.supernet.cell_output if self.space.name == "micro" else "loose_ends",
        )


def check_positive(config, keys) -> None:
    """Raises UserError unless every named setting of `config` is >= 1."""
    for key in keys:
        if getattr(config, key) < 1:
            raise UserError(f"{key} must be >= 1; received {getattr(config, key)}.")


def _check_max_nonfinite(config) -> None:
    if config.max_nonfinite < 0:
        raise UserError(
            f"max_nonfinite must be >= 0 (0: never stop); received {config.max_nonfinite}."
        )


def _check_lr_range(config) -> None:
    if not 0 <= config.lr_min <= config.lr_max:
        raise UserError(
            f"Need 0 <= lr_min <= lr_max; received lr_min={config.lr_min}, lr_max={config.lr_max}."
        )


def check_strategy(config: Nested, space: str) -> None:
    """Checks a search config's `algorithm` and its strategy's settings for
    the space named `space`; raises UserError."""
    strategies.check_name(config.algorithm)
    expected = strategies.config_class(config.algorithm)
    if not isinstance(config.strategy, expected):
        raise UserError(
            f"The settings of algorithm {config.algorithm} are a "
            f"{expected.__module__}.{expected.__name__}; received {config.strategy!r}."
        )
    config.strategy.check(space)
