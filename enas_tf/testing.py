"""Test helpers: small search run directories made without training.

Training a supernet step traces slowly (about a minute), so tests of what
comes after a search (weight inheritance, `enas-train --init_from_search`)
get a run directory written by the search's own code, minus the training.
"""

from __future__ import annotations

import os

import numpy as np

from enas_tf import rundir, spaces
from enas_tf.config import SearchConfig
from enas_tf.data.images import ImageSplits
from enas_tf.search import Search


def search_run(
    output_dir: str, config: SearchConfig, splits: ImageSplits, *, seed: int = 0
) -> Search:
    """A search run directory as one epoch of `Search` leaves it, untrained.

    `Search` writes config.json and saves its checkpoint (epoch 1); the
    shared weights and moving statistics are first scaled by random factors
    in [0.5, 1.5] and shifted by noise of std 0.05, so that inherited
    weights differ from a fresh initialisation. A random architecture stands in for
    the derived best_arc.json.

    Args:
      output_dir: the run directory to create.
      config: the search settings.
      splits: the dataset (needs a validation split).
      seed: seed of the weight changes and the architecture.

    Returns:
      The `Search`; its `net` holds the saved weights.
    """
    search = Search(config, splits, output_dir, verbose=0)
    rng = np.random.default_rng(seed)
    for v in search.net.variables:
        scale = rng.uniform(0.5, 1.5, v.shape)
        v.assign((v.numpy() * scale + rng.normal(0, 0.05, v.shape)).astype(v.dtype))
    search.epoch.assign(1)
    search.manager.save()
    space = search.space
    rundir.write_text_atomic(
        os.path.join(output_dir, "best_arc.json"),
        spaces.json_text(space, space.random_arc(seed), valid_accuracy=0.0, epoch=1,
                         seed=config.seed),
    )
    search.writer.close()
    return search
