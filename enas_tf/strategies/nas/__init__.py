"""NAS without weight sharing: the controller rewarded by children trained from scratch.

Zoph & Le (2017), "Neural architecture search with reinforcement learning",
the baseline ENAS is 1000x cheaper than (`enas-search --algorithm=nas`):
the same LSTM controller and REINFORCE trainer as `reinforce` (its settings
are this strategy's too), but every sampled architecture is built as a fixed
network, trained from a fresh initialisation for `child_epochs` and rewarded
with the best validation accuracy of its last `reward_epochs` epochs, cubed
(`enas_tf.strategies.scratch`). There are no shared weights: the search is
`enas_tf.search.scratch.ScratchSearch`, which trains `parallel_children`
children at once, records every child and its curve (children.jsonl) and
resumes without retraining the children it finished.

Departures from the paper, at the scale of this package: the children use
the search's sizes and optimiser (SGD with Nesterov momentum and a cosine
schedule over the child's epochs, not 50 epochs of momentum SGD on 45,000
images), and the controller is ENAS's (Adam, a moving-average baseline,
`num_aggregate` children per update) where the paper ran 800 GPUs with
asynchronous parameter servers.

This module imports no TensorFlow (the tools read `Config` before their slow
imports); `build` imports the trainer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from enas_tf.spaces.base import SearchSpace
from enas_tf.strategies import reinforce
from enas_tf.strategies.scratch import ScratchSettings


@dataclasses.dataclass(frozen=True)
class Config(ScratchSettings, reinforce.Config):
    """The controller's settings (`reinforce.Config`) and how children
    train from scratch (`ScratchSettings`); each field is an `enas-search`
    flag."""

    def check(self, space: str) -> None:
        """Raises UserError for settings out of range for the space named
        `space`, or for the rnn space (image spaces only)."""
        self.check_scratch(space)
        reinforce.Config.check(self, space)


# The controller's defaults per kind of search are reinforce's (only image
# searches run; the tools show the settings' defaults per kind).
DEFAULTS = {
    kind: Config(**dataclasses.asdict(settings)) for kind, settings in reinforce.DEFAULTS.items()
}


def build(config: Config, space: SearchSpace, *, seed: int | None, num_aggregate: int) -> Any:
    """The controller of `space` and its REINFORCE trainer (`reinforce.build`)."""
    return reinforce.build(config, space, seed=seed, num_aggregate=num_aggregate)
