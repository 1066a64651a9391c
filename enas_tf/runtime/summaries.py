"""TensorBoard HParams of a run: its settings and its final metrics.

Searches and final trainings write, into their `logs/` writer, the settings
that define the run (`write_hparams`, once, when a run starts afresh) and, at
its end, the final metrics as scalars under `final/` (`write_final`), so the
HParams dashboard of `tensorboard --logdir runs/` lists runs side by side
with their settings and results (`logs/` of each run is one session; its
scalars and those of its `train/`, `validation/` subfolders are the metrics).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp


def hparam_values(
    values: Mapping[str, Any], prefix: str = ""
) -> dict[str, bool | int | float | str]:
    """`values` as HParams accepts them: nested mappings flattened to dotted
    names, bools, numbers and strings kept, lists joined with commas, None
    and anything else left out."""
    found = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            found.update(hparam_values(value, f"{prefix}{key}."))
        elif isinstance(value, (bool, int, float, str)):
            found[f"{prefix}{key}"] = value
        elif isinstance(value, (list, tuple)):
            found[f"{prefix}{key}"] = ",".join(str(v) for v in value)
    return found


def write_hparams(writer: tf.summary.SummaryWriter, values: Mapping[str, Any]) -> None:
    """Writes the run's settings (`values`, nested or flat) as an HParams
    session into `writer`. Runs with the same settings (repeats) form one
    session group, as the dashboard expects (the group is named after a
    hash of the settings)."""
    with writer.as_default():
        hp.hparams(hparam_values(values))
    writer.flush()


def write_final(
    writer: tf.summary.SummaryWriter, metrics: Mapping[str, Any], step: int
) -> dict[str, float]:
    """Writes the numeric `metrics` as scalars `final/NAME` at `step`;
    returns what was written."""
    written = {
        f"final/{key}": float(value)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    with writer.as_default(step=step):
        for tag, value in written.items():
            tf.summary.scalar(tag, value)
    writer.flush()
    return written


__all__ = ["hparam_values", "write_final", "write_hparams"]
