"""Weight inheritance: final training that starts from a search's weights.

The paper retrains the derived architecture from scratch. Since the
supernets compute exactly the fixed child of every architecture (see
`enas_tf.supernet.micro`), the child can instead start from the shared
weights it was scored with (`enas-train --init_from_search=RUN`). That holds
only when the child has the search's structure: its space, cells/layers,
filters, the dataset's image shape and classes. `check_compatible` lists
every difference; layers the supernet does not have (the auxiliary head)
keep their fresh initialisation.

A search run directory is only read, never written.

The checkpoint holds the supernet as `enas_tf.supernet.build.weights_checkpoint`
saves it (every shared variable, moving statistics included).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
from typing import Any

import numpy as np
from absl import logging

from enas_tf import spaces
from enas_tf.configs.image import ChildConfig, SearchConfig
from enas_tf.data.images import IMAGE_SHAPES, NUM_CLASSES
from enas_tf.errors import UserError
from enas_tf.spaces import Arc, SearchSpace

SEARCH_TOOL = "enas-search"
BEST_ARC = "best_arc.json"
CHECKPOINTS = "checkpoints"
# ChildConfig fields that change the network the shared weights compute.
# keep_prob, drop path and the auxiliary head do not: dropout has no
# weights, and the auxiliary head starts fresh.
STRUCTURAL = {
    "micro": ("num_layers", "out_filters", "layer_base", "cell_output", "bn_epsilon"),
    "macro": ("out_filters", "separable", "bn_epsilon"),
}
# How to set each field from enas-train's flags.
_FIX = {
    "num_layers": "--num_layers={}",
    "out_filters": "--out_filters={}",
    "layer_base": lambda v: "--layer_base" if v else "--nolayer_base",
    "cell_output": "--cell_output={}",
    "separable": lambda v: "--separable" if v else "--noseparable",
    "bn_epsilon": "bn_epsilon={}",
}


@dataclasses.dataclass(frozen=True)
class SearchRun:
    """What a search run directory holds (read only).

    Attributes:
      run_dir: the run directory.
      config: the search settings from its config.json.
      dataset: the dataset it searched on.
      image_shape: `(height, width, channels)` of that dataset.
      num_classes: classes of that dataset.
      checkpoints: checkpoint prefixes in `run_dir/checkpoints`, newest
        first (may be empty).
    """

    run_dir: str
    config: SearchConfig
    dataset: str
    image_shape: tuple[int, int, int]
    num_classes: int
    checkpoints: tuple[str, ...]

    @property
    def space(self) -> SearchSpace:
        """The space the search searched."""
        return self.config.search_space()


@dataclasses.dataclass(frozen=True)
class Inheritance:
    """Shared weights selected for one architecture.

    Attributes:
      weights: child layer name -> the arrays `layer.set_weights` takes.
      checkpoint: the search checkpoint they were read from.
      epoch: search epochs finished when it was saved.
    """

    weights: dict[str, list[np.ndarray]]
    checkpoint: str
    epoch: int


def open_search_run(run_dir: str) -> SearchRun:
    """Reads a search run directory's config.json and lists its checkpoints.

    Args:
      run_dir: the `--output_dir` of an enas-search run.

    Returns:
      The run (its checkpoint list may be empty).

    Raises:
      UserError: when `run_dir` is missing or is not a search run directory.
    """
    if not os.path.isdir(run_dir):
        raise UserError(
            f"The search run directory {run_dir} does not exist; give "
            f"--init_from_search the --output_dir of an enas-search run."
        )
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise UserError(
            f"{run_dir} holds no config.json, so it is not an enas-search run "
            f"directory; give --init_from_search the --output_dir of a search."
        )
    try:
        with open(path, encoding="utf-8") as f:
            run = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"Cannot read {path} ({e}).") from None
    tool = run.get("tool") if isinstance(run, dict) else None
    if tool != SEARCH_TOOL:
        raise UserError(
            f"{run_dir} is a run directory of {tool or 'an unknown tool'}, not "
            f"of {SEARCH_TOOL}; --init_from_search takes a search run."
        )
    try:
        values = dict(run["search"])
        if not isinstance(values.get("space"), dict):
            # Runs written before cell_output existed searched loose-end cells
            # (and recorded a flat config, `enas_tf.configs.nested`).
            values.setdefault("cell_output", "loose_ends")
        config = SearchConfig.from_json(values, ignore_unknown=True)
        config.check()
        dataset = run["data"]["dataset"]
    except (KeyError, TypeError, AttributeError, UserError) as e:
        raise UserError(f"{path} does not hold valid search settings ({e}).") from None
    strategy = config.strategy
    if getattr(strategy, "from_scratch", False) or getattr(strategy, "gradient_based", False):
        raise UserError(
            f"The search in {run_dir} ran --algorithm={config.algorithm}, which trains no "
            f"shared-weight supernet, so it has no weights to inherit; train its "
            f"{BEST_ARC} from scratch (drop --init_from_search)."
        )
    # Users' own data: the run recorded its shape and classes.
    image_shape = IMAGE_SHAPES.get(dataset) or run["data"].get("image_shape")
    num_classes = NUM_CLASSES.get(dataset) or run["data"].get("num_classes")
    if not image_shape or not num_classes:
        raise UserError(
            f"The search in {run_dir} ran on dataset {dataset!r}, whose image "
            f"shape is unknown (its config.json records none); --init_from_search "
            f"needs one of {', '.join(IMAGE_SHAPES)} or a run that recorded it."
        )
    return SearchRun(
        run_dir=run_dir,
        config=config,
        dataset=dataset,
        image_shape=tuple(int(d) for d in image_shape),
        num_classes=int(num_classes),
        checkpoints=_checkpoints(os.path.join(run_dir, CHECKPOINTS)),
    )


def _checkpoints(directory: str) -> tuple[str, ...]:
    # Listed from the files rather than the `checkpoint` state file, so a
    # missing or stale state file does not hide them.
    def number(prefix):
        match = re.search(r"-(\d+)$", prefix)
        return int(match.group(1)) if match else -1

    indexes = glob.glob(os.path.join(directory, "*.index"))
    prefixes = [p[: -len(".index")] for p in indexes]
    return tuple(
        sorted(prefixes, key=lambda p: (number(p), os.path.getmtime(p + ".index")), reverse=True)
    )


def search_arc(run: SearchRun) -> tuple[SearchSpace, Arc]:
    """The architecture the search derived (its best_arc.json).

    Returns:
      (space, arc), validated.

    Raises:
      UserError: when the search has not derived one yet, or the file is
        malformed.
    """
    path = os.path.join(run.run_dir, BEST_ARC)
    if not os.path.isfile(path):
        raise UserError(
            f"{run.run_dir} has no {BEST_ARC}: the search has not derived its "
            f"architecture yet (it does after its last epoch). Wait for it to "
            f"finish, or give the architecture with --arc."
        )
    return spaces.load_arc(path)


def differences(
    run: SearchRun,
    space: SearchSpace,
    child: ChildConfig,
    image_shape: tuple[int, int, int],
    num_classes: int,
) -> list[tuple[str, Any, Any, str]]:
    """Settings in which the child differs from the search's supernet.

    Returns:
      `(setting, value in the child, value in the search, fix)` for each
      difference, where `fix` is how to give the search's value.
    """
    if space != run.space:
        return [
            (
                "space",
                space.describe(),
                run.space.describe(),
                f"an architecture of the search (its {BEST_ARC})",
            )
        ]
    found = []
    search_child = run.config.child_config()
    for key in STRUCTURAL[space.name]:
        mine, theirs = getattr(child, key), getattr(search_child, key)
        if mine != theirs:
            fix = _FIX[key]
            fix = fix(theirs) if callable(fix) else fix.format(theirs)
            found.append((key, mine, theirs, fix))
    fix = f"--dataset={run.dataset}"
    shape = tuple(image_shape)
    if shape != tuple(run.image_shape):
        found.append(
            ("image shape", "x".join(map(str, shape)), "x".join(map(str, run.image_shape)), fix)
        )
    if num_classes != run.num_classes:
        found.append(("classes", num_classes, run.num_classes, fix))
    return found


def check_compatible(
    run: SearchRun,
    space: SearchSpace,
    child: ChildConfig,
    image_shape: tuple[int, int, int],
    num_classes: int,
) -> None:
    """Raises UserError listing every setting that differs from the search's.

    The shared weights compute the child of an architecture only at the
    search's structure; settings without weights (dropout, drop path, the
    auxiliary head, optimisation) may differ.
    """
    if space != run.space:
        raise UserError(
            f"The architecture is one of {space.describe()}, but the search in "
            f"{run.run_dir} searched {run.space.describe()}, so its shared "
            f"weights do not fit it. Give an architecture of that search (its "
            f"{BEST_ARC} when --arc is not given), or drop --init_from_search."
        )
    found = differences(run, space, child, image_shape, num_classes)
    if not found:
        return
    listed = "; ".join(
        f"{key} is {mine} here but {theirs} in the search" for key, mine, theirs, _ in found
    )
    fixes = " ".join(dict.fromkeys(fix for *_, fix in found))
    raise UserError(
        f"The network does not match the supernet of the search in "
        f"{run.run_dir} ({run.dataset}), so it cannot start from its shared "
        f"weights: {listed}. Use the search's settings ({fixes}), or drop "
        f"--init_from_search to train from scratch."
    )


def weights_from_search(
    run_dir: str,
    space: SearchSpace,
    arc: Arc,
    child: ChildConfig,
    image_shape: tuple[int, int, int],
    num_classes: int,
) -> Inheritance:
    """The shared weights of `arc` from a search's latest readable checkpoint.

    Rebuilds the search's supernet (`build_supernet`), restores only its
    weights, and selects those of `arc` (`child_weights`). Nothing in
    `run_dir` is written.

    Args:
      run_dir: the search run directory.
      space: the architecture's space (must be the search's).
      arc: the architecture.
      child: how the child is built (its structure must be the search's).
      image_shape: `(height, width, channels)` of the training data.
      num_classes: classes of the training data.

    Returns:
      The weights keyed by child layer name, and where they came from.

    Raises:
      UserError: for a missing or incompatible search run, or one without a
        readable checkpoint.
    """
    run = open_search_run(run_dir)
    check_compatible(run, space, child, image_shape, num_classes)
    arc = space.validate(arc)
    if not run.checkpoints:
        raise UserError(
            f"{os.path.join(run_dir, CHECKPOINTS)} holds no checkpoint: the "
            f"search has not finished an epoch yet. Wait for one, or drop "
            f"--init_from_search."
        )
    # Imported only now: a bad search directory is reported without waiting
    # for TensorFlow.
    import tensorflow as tf

    from enas_tf.supernet.build import build_supernet, weights_checkpoint

    net = build_supernet(run.config, run.image_shape, run.num_classes)
    epoch = tf.Variable(0, dtype=tf.int64)
    # Only the weights and the epoch; the controller and optimizers are
    # left in the file (`expect_partial`).
    target = tf.train.Checkpoint(supernet=weights_checkpoint(net), epoch=epoch)
    errors = []
    for path in run.checkpoints:
        try:
            target.restore(path).expect_partial().assert_existing_objects_matched()
        except Exception as e:  # noqa: BLE001 - unreadable, truncated, or another net
            errors.append(f"{os.path.basename(path)}: {str(e).splitlines()[0]}")
            continue
        break
    else:
        raise UserError(
            f"No checkpoint in {os.path.join(run_dir, CHECKPOINTS)} can be read "
            f"into the supernet its config.json describes ({'; '.join(errors)}). "
            f"Drop --init_from_search, or give a search run with a readable "
            f"checkpoint."
        )
    if errors:
        logging.warning("Skipped unreadable search checkpoints: %s", "; ".join(errors))
    return Inheritance(
        weights=net.child_weights(arc),
        checkpoint=path,
        epoch=int(epoch.numpy()),
    )


def load_inherited(model, weights: dict[str, list[np.ndarray]]) -> list[str]:
    """Sets a child's layers from `Inheritance.weights`.

    Args:
      model: the child (`enas_tf.child.build.build_child`), possibly with an
        auxiliary head and drop path.
      weights: child layer name -> arrays.

    Returns:
      The names of the child's layers with trainable weights that the
      supernet does not have; they keep their initialisation.

    Raises:
      ValueError: when `weights` names a layer the child does not have, or
        shapes differ (the child was built with other sizes).
    """
    names = {layer.name for layer in model.layers}
    unknown = sorted(set(weights) - names)
    if unknown:
        raise ValueError(f"Shared weights for layers the child lacks: {unknown}.")
    fresh = []
    for layer in model.layers:
        if layer.name in weights:
            layer.set_weights(weights[layer.name])
        elif layer.trainable_weights:
            fresh.append(layer.name)
    return fresh
