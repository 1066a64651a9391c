"""Settings of strategies that score architectures by training each one
from scratch (no TensorFlow; a helper of the strategies, not one).

`ScratchSettings` is a base of the `Config` of such strategies (`nas`, and
`evolution` with `evaluation="scratch"`): each field is an `enas-search`
flag the strategies share. The search that runs them is
`enas_tf.search.scratch.ScratchSearch`.

Reward (Zoph & Le 2017, sec. 3 and 4.1; the seeds' "brute force" baseline):
a child trains for `child_epochs`, its score is the best validation accuracy
of its last `reward_epochs` epochs and its reward that score to the power
`reward_power` (3: "the cube of the maximum validation accuracy of the last
5 epochs", which sharpens the differences between good architectures).
"""

from __future__ import annotations

import dataclasses

from enas_tf.errors import UserError


def _setting(default, help_text: str):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class ScratchSettings:
    """How children are trained from scratch and rewarded.

    Attributes:
      child_epochs: epochs each sampled architecture trains, from a fresh
        initialisation, at the search's sizes and optimiser settings.
      reward_epochs: the score is the best validation accuracy of the last
        this many epochs (of all of them when there are fewer).
      reward_power: the reward is the score to this power.
      parallel_children: children training at once, each in its own
        process.
    """

    child_epochs: int = _setting(20, "From scratch: epochs each sampled architecture trains.")
    reward_epochs: int = _setting(
        5, "From scratch: score = best validation accuracy of the last this many epochs."
    )
    reward_power: float = _setting(3.0, "From scratch: reward = score ** reward_power.")
    parallel_children: int = _setting(
        1, "From scratch: children training at once, each in its own process."
    )

    @property
    def from_scratch(self) -> bool:
        """Whether the search trains every proposal from scratch."""
        return True

    def check_scratch(self, space: str) -> None:
        """Raises UserError for settings out of range, or for the `rnn`
        space (training language models from scratch per proposal is not
        implemented)."""
        if space == "rnn":
            raise UserError(
                "Training every proposal from scratch is implemented for the image "
                "spaces (micro, macro); for --space=rnn use a weight-sharing algorithm "
                "(reinforce, random, evolution with --evaluation=shared)."
            )
        for key in ("child_epochs", "reward_epochs", "parallel_children"):
            if getattr(self, key) < 1:
                raise UserError(f"{key} must be >= 1; received {getattr(self, key)}.")
        if not self.reward_power > 0:
            raise UserError(f"reward_power must be > 0; received {self.reward_power}.")

    def score(self, valid_curve: list[float]) -> float:
        """The best validation accuracy of the last `reward_epochs` epochs
        (NaN for an empty curve)."""
        last = valid_curve[-self.reward_epochs :]
        return max(last) if last else float("nan")

    def reward(self, score: float) -> float:
        """`score ** reward_power`."""
        return score**self.reward_power
