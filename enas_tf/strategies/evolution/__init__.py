"""Regularized (aging) evolution, scored with shared weights or by training from scratch.

Real et al. (2019), "Regularized evolution for image classifier
architecture search" (AmoebaNet), on the supernet of the search
(`enas-search --algorithm=evolution`): a population of `population_size`
architectures, each with its reward; a proposal is a mutation of the best of
`sample_size` members drawn at random (a tournament); its reward (the
validation minibatch reward of the loop, with the shared weights) admits it
and the oldest member dies. Until the population is full, proposals are
uniform random architectures (the paper's random initial population). The
loop's controller phase is the evolution: `controller_steps` rounds of
`num_aggregate` proposals per epoch.

A mutation changes one decision of the parent to another of its values: a
node's input (AmoebaNet's hidden-state mutation), an op (its op mutation)
or, in the macro space, a skip bit; the decisions of our spaces are
independent, so every mutant is a valid architecture. Unlike the paper,
there is no identity mutation: a copy of the parent would only re-score it.

The child phase trains the shared weights on `train_arcs`: "uniform" (the
default) draws architectures uniformly, as Random-WS, so the supernet is
trained without the search's bias and its scores rank every region of the
space alike (the one-shot practice of Bender et al. 2018 and Guo et al.
2020); "population" trains on members of the current population (uniform
until the first member), sharpening the weights where the search looks.
The derive step scores the best distinct members of the final population on
the whole validation split.

With `evaluation="scratch"` there are no shared weights: every proposal is
trained from a fresh initialisation for `child_epochs` and its reward is the
best validation accuracy of its last `reward_epochs` epochs (to the power
`reward_power`, which leaves tournaments unchanged;
`enas_tf.strategies.scratch`), as the paper's evolution, which trained each
child for 25 epochs. The search is then `enas_tf.search.scratch.ScratchSearch`
(children.jsonl records every child; the derive step takes the best trained
child) and `train_arcs` does not apply.

Defaults: population 100, sample 25 (AmoebaNet on CIFAR-10; NNI's defaults).
This module imports no TensorFlow; `build` imports `population.py`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from enas_tf.errors import UserError
from enas_tf.spaces.base import SearchSpace
from enas_tf.strategies.scratch import ScratchSettings

TRAIN_ARCS = ("uniform", "population")
EVALUATIONS = ("shared", "scratch")


@dataclasses.dataclass(frozen=True)
class Config(ScratchSettings):
    """Regularized evolution's settings (each field is an `enas-search` flag).

    Attributes:
      population_size: members kept (the oldest dies when one is added).
      sample_size: members drawn for each tournament.
      train_arcs: what the child phase trains the shared weights on.
      evaluation: "shared" (rewards with the supernet's shared weights) or
        "scratch" (every proposal trained from scratch, `ScratchSettings`).
    """

    population_size: int = dataclasses.field(
        default=100, metadata={"help": "Evolution: architectures in the population."}
    )
    sample_size: int = dataclasses.field(
        default=25, metadata={"help": "Evolution: members drawn per tournament."}
    )
    train_arcs: str = dataclasses.field(
        default="uniform",
        metadata={
            "help": "Evolution: the shared weights train on uniform random "
            "architectures or on members of the population.",
            "choices": TRAIN_ARCS,
        },
    )

    evaluation: str = dataclasses.field(
        default="shared",
        metadata={
            "help": "Evolution: score proposals with the shared weights, or train "
            "each from scratch (the --child_epochs flags).",
            "choices": EVALUATIONS,
        },
    )

    @property
    def from_scratch(self) -> bool:
        """Whether the search trains every proposal from scratch."""
        return self.evaluation == "scratch"

    def check(self, space: str) -> None:
        """Raises UserError for settings out of range (for the space named
        `space` when proposals train from scratch)."""
        if self.evaluation not in EVALUATIONS:
            raise UserError(
                f"evaluation must be one of {', '.join(EVALUATIONS)}; received {self.evaluation!r}."
            )
        if self.from_scratch:
            self.check_scratch(space)
        if self.population_size < 2:
            raise UserError(f"population_size must be >= 2; received {self.population_size}.")
        if not 1 <= self.sample_size <= self.population_size:
            raise UserError(
                f"sample_size must be in [1, population_size={self.population_size}]; "
                f"received {self.sample_size}."
            )
        if self.train_arcs not in TRAIN_ARCS:
            raise UserError(
                f"train_arcs must be one of {', '.join(TRAIN_ARCS)}; received {self.train_arcs!r}."
            )


def build(config: Config, space: SearchSpace, *, seed: int | None, num_aggregate: int) -> Any:
    """Regularized evolution over `space` (`RegularizedEvolution`)."""
    from enas_tf.strategies.evolution.population import RegularizedEvolution

    return RegularizedEvolution(
        space,
        population_size=config.population_size,
        sample_size=config.sample_size,
        train_arcs=config.train_arcs,
        seed=seed,
        num_aggregate=num_aggregate,
    )


def __getattr__(name: str) -> Any:
    """`RegularizedEvolution` from `population.py`, imported on first use."""
    if name == "RegularizedEvolution":
        from enas_tf.strategies.evolution.population import RegularizedEvolution

        return RegularizedEvolution
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
