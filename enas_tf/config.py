"""Configuration of child networks and their final training (no TensorFlow).

Frozen dataclasses that the tools fill from flags and check before anything
heavy is imported or written; `check` raises `UserError` with the fix.
"""

from __future__ import annotations

import dataclasses

from enas_tf.errors import UserError
from enas_tf.spaces import MacroSpace, MicroSpace, SearchSpace


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
        if isinstance(space, MacroSpace):
            if self.aux_weight > 0 or self.drop_path_keep_prob < 1.0:
                raise UserError(
                    "The macro network has no auxiliary head and no drop path "
                    "(they belong to the micro network); set aux_weight=0 and "
                    "drop_path_keep_prob=1."
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

    def check(self) -> None:
        """Raises UserError for out-of-range settings."""
        for key in ("epochs", "batch_size", "eval_batch_size", "lr_t0"):
            if getattr(self, key) < 1:
                raise UserError(f"{key} must be >= 1; received {getattr(self, key)}.")
        if not 0 <= self.lr_min <= self.lr_max:
            raise UserError(
                f"Need 0 <= lr_min <= lr_max; received lr_min={self.lr_min}, "
                f"lr_max={self.lr_max}."
            )
        if self.lr_t_mul < 1:
            raise UserError(f"lr_t_mul must be >= 1; received {self.lr_t_mul}.")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(
                f"label_smoothing must be in [0, 1); received {self.label_smoothing}."
            )
        if self.grad_bound < 0 or self.cutout_size < 0 or self.pad < 0:
            raise UserError("grad_bound, cutout_size and pad must be >= 0.")
