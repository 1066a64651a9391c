"""The derive step's outputs: the best of the sampled candidates, written.

After the search, the strategy proposes `derive_samples` architectures; the
search scores each on the whole validation split with the shared weights
(`SearchBase.derive`); this module ranks them and writes `best_arc.txt` (the
original string form), `best_arc.json`, `best_arc.png` (a drawing, also in
TensorBoard) and `candidates.json` into the run directory. Neither original
has a derive step; this is the paper's procedure (sec. 5, "Final
architecture selection"), scored on the whole split rather than one
minibatch.
"""

from __future__ import annotations

import math
import os
from typing import Any

import tensorflow as tf

from enas_tf import spaces
from enas_tf.runtime import rundir
from enas_tf.viz import draw

OUTPUT_FILES = ("best_arc.txt", "best_arc.json", "best_arc.png", "candidates.json")


def rank(candidates: list[dict[str, Any]], key: str, higher_is_better: bool) -> list[dict]:
    """Candidates `{"arc": text, key: score}`, best first; NaN scores last
    (a NaN compares false with everything and would break the sort)."""
    sign = -1.0 if higher_is_better else 1.0
    return sorted(candidates, key=lambda c: (math.isnan(c[key]), sign * c[key]))


def write_outputs(
    output_dir: str,
    space: spaces.SearchSpace,
    ranked: list[dict[str, Any]],
    key: str,
    meta: dict[str, Any],
    samples: int,
    run_config: dict[str, Any],
    writer,
) -> None:
    """Writes the derive outputs of `ranked` (best first) and logs them.

    Args:
      output_dir: the run directory.
      space: the searched space.
      ranked: the scored candidates, best first (`rank`).
      key: the score's key in each candidate (e.g. "valid_accuracy").
      meta: recorded with the best architecture: its score, the epoch and
        the seed.
      samples: how many architectures were sampled.
      run_config: the run's config.json, recorded in candidates.json.
      writer: the run's TensorBoard summary writer.
    """
    best = ranked[0]
    arc = space.parse(best["arc"])
    path = lambda name: os.path.join(output_dir, name)
    rundir.write_text_atomic(path("best_arc.txt"), best["arc"] + "\n")
    rundir.write_text_atomic(path("best_arc.json"), spaces.json_text(space, arc, **meta))
    rundir.write_json_atomic(
        path("candidates.json"),
        {
            "space": space.name,
            "config": space.config(),
            "epoch": meta["epoch"],
            "seed": meta["seed"],
            "samples": samples,
            "candidates": ranked,
            "flags": run_config,
        },
    )
    draw.write_drawing(path("best_arc.png"), space, arc, overwrite=True)
    label = key.replace("_", " ")
    with writer.as_default(step=meta["epoch"]):
        tf.summary.text(
            "derived_candidates",
            "\n\n".join(f"`{c['arc']}` {label} {c[key]:.4f}" for c in ranked[:20]),
        )
        tf.summary.image("derived_architecture", draw.draw_arc_array(space, arc)[None])
    writer.flush()
