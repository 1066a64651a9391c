"""Random search with weight sharing: uniform samples, nothing learned.

The baseline of Li & Talwalkar (2019), "Random search and reproducibility for
NAS": the same loop and supernet as ENAS, architectures drawn uniformly
(`enas-search --algorithm=random`, Random-WS) by `RandomSearch`
(`sampler.py`). It has no settings of its own (`Config` is empty): the loop's
`--seed` seeds the samples.

This module imports no TensorFlow; `build` imports the sampler.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from enas_tf.spaces.base import SearchSpace


@dataclasses.dataclass(frozen=True)
class Config:
    """Random search has no settings besides the loop's."""

    def check(self, space: str) -> None:
        """Nothing to check, whatever the space."""
        del space


def build(config: Config, space: SearchSpace, *, seed: int | None, num_aggregate: int) -> Any:
    """Uniform sampling of `space`, seeded with `seed`."""
    del config
    from enas_tf.strategies.random.sampler import RandomSearch

    return RandomSearch(space, seed=seed, num_aggregate=num_aggregate)


def __getattr__(name: str) -> Any:
    """`RandomSearch` from `sampler.py`, imported on first use."""
    if name == "RandomSearch":
        from enas_tf.strategies.random.sampler import RandomSearch

        return RandomSearch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
