"""DARTS: a softmax mixture of every op on every edge, its weights learned by gradient descent.

Liu et al. (2019), "DARTS: Differentiable architecture search"
(`enas-search --algorithm=darts`). The cell's discrete choices are relaxed:
every edge (j, n) of a cell runs every candidate op, mixed with the softmax
of architecture parameters alpha (`enas_tf.supernet.relaxed`). The search
(`enas_tf.search.darts.DartsSearch`, picked by `make_search`) alternates,
batch by batch, an alpha step on a validation batch (Adam) and a weight
step on a training batch (SGD), the bilevel problem of sec. 2.3:
- `order=1`: alpha's gradient is that of the validation loss at the
  current weights (first-order DARTS);
- `order=2`: the gradient of the validation loss after one virtual SGD step
  of the weights, `w' = w - xi * grad_w L_train(w, alpha)` with xi the
  weights' learning rate (eq. 7; DARTS's code adds the momentum and weight
  decay of the optimizer to that virtual step, the paper does not, and we
  follow the paper), the second-order term by finite differences (eq. 8,
  epsilon = 0.01 / ||grad_w' L_val||).
Derive (sec. 2.4): per computed node the two strongest incoming edges, an
edge's strength being its strongest op other than "none", each with that
op: an architecture of the micro space (`ArchitectureParameters.derive`).

Recurrent cells (`--space=rnn`, `enas_tf.search.lm_darts.LmDartsSearch`):
every node mixes all its predecessors and the four activations with one
matrix per node (`enas_tf.lm.relaxed`); each training window is preceded
by an alpha step on the next validation window (first order by default, as
DARTS's PTB search script; second order unrolls one step of the weights on
that training window, its carried states held constant as DARTS's code
does); the derived cell keeps, per node, the strongest edge and its
activation: an enas_lm arc (`DEFAULTS["lm"]`: Adam 3e-3, betas
0.9/0.999).

Macro network (`--space=macro`; not in the DARTS paper, which searches
cells: the same relaxation where the ENAS macro space is well defined):
each layer mixes its op like an edge (softmax, "none" optional), and each
skip input is scaled by a gate, the sigmoid of its own parameter (a skip is
a yes/no choice, a relaxed Bernoulli); derive: per layer the strongest op
other than "none" and the skips whose gate is above 1/2
(`enas_tf.supernet.relaxed.build_relaxed_macro`). Second order and the
early stop work as for cells (the macro space has no identity op, so
`early_stop_skips` never fires there; the derived skip rate is logged).

Collapse. DARTS's cells tend to fill with parameter-free ops (skip
connections) as the search goes on (Zela et al. 2020; Liang et al. 2019,
DARTS+; Chen et al. 2019, P-DARTS). The share of parameter-free ops in the
derived cells is logged every epoch (`controller/parameter_free_share`;
for a recurrent cell, the share of identity activations),
and `early_stop_skips` offers DARTS+'s remedy, the early stop that the
later work adopted most widely: the search stops (and derives) once the
derived normal cell holds that many identity (skip) ops (DARTS+ uses 2).

This module imports no TensorFlow; `build` imports `alphas.py`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from enas_tf.errors import UserError
from enas_tf.spaces.base import SearchSpace

ORDERS = (1, 2)


def _setting(default: Any, help_text: str, **extra: Any) -> Any:
    return dataclasses.field(default=default, metadata={"help": help_text, **extra})


@dataclasses.dataclass(frozen=True)
class Config:
    """DARTS's settings (each field is an `enas-search` flag); defaults are
    the paper's CIFAR-10 search (sec. 3.1.1).

    Attributes:
      darts_order: 1 (first-order) or 2 (second-order, unrolled) gradients
        of the architecture parameters.
      arch_lr: Adam learning rate of alpha.
      arch_beta1, arch_beta2: Adam's betas.
      arch_weight_decay: L2 weight decay of alpha (added to its gradient, as
        DARTS's optimiser does).
      alpha_init_scale: alpha starts as this times a standard normal draw.
      none_op: mix DARTS's "none" (zero) op into every edge.
      affine_bn: learnable scale and offset in the cells' batch norms
        (DARTS's search: none).
      pool_bn: a batch norm after each pooling op (DARTS's search: yes).
      early_stop_skips: stop the search once the derived normal cell has
        this many identity ops (0: never; DARTS+ uses 2).
    """

    darts_order: int = _setting(2, "DARTS: 1 (first-order) or 2 (second-order) gradients.")
    arch_lr: float = _setting(3e-4, "DARTS: Adam learning rate of the architecture parameters.")
    arch_beta1: float = _setting(0.5, "DARTS: Adam beta_1 of the architecture parameters.")
    arch_beta2: float = _setting(0.999, "DARTS: Adam beta_2 of the architecture parameters.")
    arch_weight_decay: float = _setting(1e-3, "DARTS: weight decay of the architecture parameters.")
    alpha_init_scale: float = _setting(
        1e-3, "DARTS: the architecture parameters start as this times a normal draw."
    )
    none_op: bool = _setting(
        True, "DARTS: mix the 'none' (zero) op into every edge (macro: every layer)."
    )
    affine_bn: bool = _setting(
        False, "DARTS: learnable scale and offset in the cells' (macro: layers') batch norms."
    )
    pool_bn: bool = _setting(True, "DARTS: a batch norm after each pooling op.")
    early_stop_skips: int = _setting(
        0,
        "DARTS: stop once the derived normal cell has this many identity ops "
        "(0: never; DARTS+ uses 2; rnn: identity activations; macro: never fires).",
    )

    @property
    def gradient_based(self) -> bool:
        """The search is DARTS's (`enas_tf.search.darts.DartsSearch`)."""
        return True

    def check(self, space: str) -> None:
        """Raises UserError for settings out of range or a space DARTS does
        not search here."""
        if space not in ("micro", "macro", "rnn"):
            raise UserError(
                f"DARTS searches the micro, macro and rnn spaces; received space {space!r}."
            )
        if self.darts_order not in ORDERS:
            raise UserError(f"darts_order must be 1 or 2; received {self.darts_order}.")
        if not self.arch_lr > 0 or not self.alpha_init_scale >= 0:
            raise UserError("arch_lr must be > 0 and alpha_init_scale >= 0.")
        if not (0 <= self.arch_beta1 < 1 and 0 <= self.arch_beta2 < 1):
            raise UserError(
                f"arch_beta1 and arch_beta2 must be in [0, 1); received "
                f"{self.arch_beta1}, {self.arch_beta2}."
            )
        if self.arch_weight_decay < 0 or self.early_stop_skips < 0:
            raise UserError("arch_weight_decay and early_stop_skips must be >= 0.")


# The recurrent search (DARTS sec. 3.1.2, its PTB search script): first
# order by default (--darts_order=2 unrolls), Adam 3e-3 with torch's default
# betas, weight decay 1e-3.
DEFAULTS = {"lm": Config(darts_order=1, arch_lr=3e-3, arch_beta1=0.9, arch_beta2=0.999)}


def build(config: Config, space: SearchSpace, *, seed: int | None, num_aggregate: int) -> Any:
    """DARTS's architecture parameters over `space` (`ArchitectureParameters`)."""
    from enas_tf.strategies.darts.alphas import ArchitectureParameters

    return ArchitectureParameters(
        space,
        none_op=config.none_op,
        seed=seed,
        init_scale=config.alpha_init_scale,
        learning_rate=config.arch_lr,
        beta_1=config.arch_beta1,
        beta_2=config.arch_beta2,
        weight_decay=config.arch_weight_decay,
        num_aggregate=num_aggregate,
    )


def __getattr__(name: str) -> Any:
    """`ArchitectureParameters` from `alphas.py`, imported on first use."""
    if name == "ArchitectureParameters":
        from enas_tf.strategies.darts.alphas import ArchitectureParameters

        return ArchitectureParameters
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
