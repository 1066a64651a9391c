"""REINFORCE: the ENAS controller trained on the rewards of its samples.

ENAS's strategy (`enas-search --algorithm=reinforce`, the default): the
space's LSTM controller (`enas_tf.controllers.build.controller_for`) samples
architectures and `Reinforce` (`trainer.py`, spec sec. 4) trains it on their
rewards. `Config` holds its settings (defaults: the micro CNN search script;
`DEFAULTS["lm"]`: enas_lm's search, ENAS_LM_REFERENCE sec. 7.1); the Adam
constants follow the space (beta_1 = 0, epsilon = 1e-3 in the CNN scripts; the
TF defaults in enas_lm, spec sec. 10 and ENAS_LM_REFERENCE sec. 3.3).

This module imports no TensorFlow (the tools read `Config` before their slow
imports); `build` imports the trainer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from enas_tf.errors import UserError
from enas_tf.spaces.base import SearchSpace


def _setting(default: float, help_text: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class Config:
    """The controller and its trainer (each field is an `enas-search` flag).

    Attributes:
      controller_lr: Adam learning rate of the controller.
      entropy_weight: entropy bonus added to the reward.
      baseline_decay: decay of the moving-average reward baseline.
      tanh_constant, op_tanh_reduce, temperature: logit shaping
        (`c * tanh(logits / T)`; 0: none; op_tanh_reduce: micro only).
      skip_target, skip_weight: macro only: the skip penalty.
      memory: a controller that remembers (Adam & Lorraine 2019): a buffer
        of sampled architectures that joins from `memory_start_epoch`
        (`memory_size // 10` per epoch, then `memory_size // 100` replaced),
        and from `memory_loss_epoch` on a supervised loss, weighted
        `memory_weight`, reproducing 100 of them (`memory.py`).
      controller_diagnostics: log, per epoch, the controller's embeddings
        of 100 sampled architectures (a TensorBoard image) and their
        Spearman correlations with shared connections and ops
        (`diagnostics.py`).
    """

    controller_lr: float = _setting(3.5e-3, "Controller Adam learning rate.")
    entropy_weight: float = _setting(1e-4, "Entropy bonus added to the reward.")
    baseline_decay: float = _setting(0.99, "Decay of the reward baseline's moving average.")
    tanh_constant: float = _setting(
        1.10, "Controller logits are c * tanh(logits / T) (0: no tanh)."
    )
    op_tanh_reduce: float = _setting(2.5, "Micro: op logits use c / op_tanh_reduce.")
    temperature: float = _setting(0.0, "Controller temperature T (0: none).")
    skip_target: float = _setting(0.4, "Macro: target skip probability of the skip penalty.")
    skip_weight: float = _setting(0.8, "Macro: weight of the skip penalty.")
    memory: bool = _setting(
        False, "A controller that remembers (Adam & Lorraine 2019): memory buffer + loss."
    )
    memory_size: int = _setting(10_000, "Memory: architectures kept (>= 100).")
    memory_start_epoch: int = _setting(5, "Memory: first epoch whose samples join.")
    memory_loss_epoch: int = _setting(10, "Memory: first epoch whose updates use its loss.")
    memory_weight: float = _setting(1.0, "Memory: weight of its supervised loss.")
    controller_diagnostics: bool = _setting(
        True, "Log the controller's architecture embeddings per epoch (image, correlations)."
    )

    def check(self, space: str) -> None:
        """Raises UserError for settings out of range for the space named
        `space` ("micro", "macro" or "rnn"), before anything is written."""
        if not self.controller_lr > 0:
            raise UserError(f"controller_lr must be > 0; received {self.controller_lr}.")
        if not 0 <= self.baseline_decay < 1:
            raise UserError(f"baseline_decay must be in [0, 1); received {self.baseline_decay}.")
        if self.tanh_constant < 0 or self.temperature < 0 or self.skip_weight < 0:
            raise UserError(
                "tanh_constant, temperature and skip_weight must be >= 0 (0: none); received "
                f"{self.tanh_constant}, {self.temperature}, {self.skip_weight}."
            )
        if not self.op_tanh_reduce > 0:
            raise UserError(f"op_tanh_reduce must be > 0; received {self.op_tanh_reduce}.")
        if space == "macro" and not 0 < self.skip_target < 1:
            raise UserError(f"skip_target must be in (0, 1); received {self.skip_target}.")
        if self.memory:
            if self.memory_size < 100:
                raise UserError(f"memory_size must be >= 100; received {self.memory_size}.")
            if self.memory_start_epoch < 1 or self.memory_loss_epoch < 1:
                raise UserError(
                    "memory_start_epoch and memory_loss_epoch must be >= 1; received "
                    f"{self.memory_start_epoch}, {self.memory_loss_epoch}."
                )
            if not self.memory_weight > 0:
                raise UserError(f"memory_weight must be > 0; received {self.memory_weight}.")


# Defaults per kind of search besides `Config()` (the image searches').
DEFAULTS = {
    "lm": Config(
        controller_lr=5e-5,
        entropy_weight=1e-5,
        baseline_decay=0.999,
        tanh_constant=2.25,
        temperature=5.0,
    )
}


def build(config: Config, space: SearchSpace, *, seed: int | None, num_aggregate: int) -> Any:
    """The controller of `space` and its REINFORCE trainer (`Reinforce`).

    Args:
      config: the strategy's settings.
      space: the searched space (macro, micro or rnn).
      seed: seed of the controller's initialisation and sampling.
      num_aggregate: samples averaged per update.
    """
    from enas_tf.controllers.build import controller_for
    from enas_tf.spaces import MacroSpace, MicroSpace, RnnSpace
    from enas_tf.strategies.reinforce.trainer import Reinforce

    shaping = {
        "tanh_constant": config.tanh_constant or None,
        "temperature": config.temperature or None,
    }
    if isinstance(space, MicroSpace):
        shaping["op_tanh_reduce"] = config.op_tanh_reduce
    elif isinstance(space, MacroSpace):
        shaping["skip_target"] = config.skip_target
    # Adam as in the original scripts: the CNN ones' beta_1 = 0, epsilon =
    # 1e-3 (Reinforce's defaults); enas_lm's TF defaults.
    adam = {"beta_1": 0.9, "epsilon": 1e-8} if isinstance(space, RnnSpace) else {}
    memory = None
    if config.memory:
        from enas_tf.strategies.reinforce.memory import ArchitectureMemory

        memory = ArchitectureMemory(
            space.num_decisions,
            size=config.memory_size,
            start_epoch=config.memory_start_epoch,
            loss_epoch=config.memory_loss_epoch,
            seed=None if seed is None else seed + 1,
        )
    return Reinforce(
        controller_for(space, seed=seed, **shaping),
        learning_rate=config.controller_lr,
        entropy_weight=config.entropy_weight,
        baseline_decay=config.baseline_decay,
        skip_weight=config.skip_weight,
        num_aggregate=num_aggregate,
        memory=memory,
        memory_weight=config.memory_weight,
        diagnostics=config.controller_diagnostics,
        **adam,
    )


def __getattr__(name: str) -> Any:
    """`Reinforce` from `trainer.py`, imported on first use."""
    if name == "Reinforce":
        from enas_tf.strategies.reinforce.trainer import Reinforce

        return Reinforce
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
