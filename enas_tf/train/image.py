"""Final training of a fixed child network with the ENAS recipe.

Keras `fit` does the work; this module supplies the ENAS pieces:
SGD with Nesterov momentum, cosine learning rate with warm restarts held
constant within an epoch, L2 (built into the layers), gradient clipping by
global norm, the auxiliary loss, drop path fading in over the run, optional
cutout and label smoothing. Resuming is exact (`EpochCheckpoints`: every
variable, the optimizer, the position in the epoch, each epoch's batches a
function of the seed and the epoch); SIGINT/SIGTERM stop after the current
step with a checkpoint (`enas_tf.runtime.checkpoints`). The run directory layout is:

  config.json     what was asked for (checked on resume)
  checkpoints/    after every epoch, and on SIGINT/SIGTERM after the current
                  step (`EpochCheckpoints`; last 3 kept)
  logs/           TensorBoard (loss, accuracy, learning rate)
  history.csv     one row per epoch, appended across resumes
  model.keras     the trained inference model (stock Keras layers only)
  summary.json    architecture, params, FLOPs, accuracies, timing, config
  inherited.json  with `init_from_search`: the search checkpoint the
                  network started from and the layers it initialised

With `init_from_search` the network starts from a search's shared weights
(`enas_tf.supernet.transfer`) instead of a fresh initialisation, when the run starts;
a resumed run continues from its own checkpoint.

Departure from the original (ENAS_REFERENCE sec. 10, bug 5): the gradient is
really clipped; the original computed a clipped gradient and applied the
unclipped one.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
import os
import time
from typing import Any

import keras
import tensorflow as tf

from enas_tf.child.build import build_child, inference_model
from enas_tf.configs.image import ChildConfig, TrainConfig
from enas_tf.data.images import ImageSplits
from enas_tf.data.pipeline import eval_dataset, train_dataset
from enas_tf.errors import UserError
from enas_tf.ops.blocks import DropPath
from enas_tf.ops.flops import count_flops, count_params
from enas_tf.runtime import distribute, nonfinite, precision, rundir, summaries
from enas_tf.runtime.checkpoints import Stopped, StopRequest
from enas_tf.spaces import Arc, SearchSpace
from enas_tf.supernet.transfer import Inheritance, load_inherited, weights_from_search
from enas_tf.train.callbacks import EpochCheckpoints, EpochProgbar, EpochSummaries
from enas_tf.train.schedules import DropPathSchedule, EpochCosineRestarts

# Outputs of a run directory, removed by `overwrite`.
RUN_FILES = ("checkpoints", "logs", "history.csv", "model.keras", "summary.json", "inherited.json")
# Settings that may change when a run is resumed.
SAFE_KEYS = ("train.epochs", "train.eval_batch_size", "data.data_dir", "verbose")


def sparse_cross_entropy(label_smoothing: float, num_classes: int):
    """Cross-entropy on integer labels and logits, with label smoothing."""

    def loss(labels, logits):
        labels = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), num_classes)
        return keras.losses.categorical_crossentropy(
            labels, logits, from_logits=True, label_smoothing=label_smoothing
        )

    return loss


def _accuracy(model: keras.Model, dataset: tf.data.Dataset) -> float:
    correct = total = 0
    for images, labels in dataset:
        logits = model(images, training=False)
        correct += int(
            tf.reduce_sum(tf.cast(tf.argmax(logits, -1, output_type=tf.int32) == labels, tf.int32))
        )
        total += int(labels.shape[0])
    return correct / max(total, 1)


def _history(path: str) -> list[dict[str, float]]:
    """Rows of history.csv, the last row of each epoch kept."""
    if not os.path.exists(path):
        return []
    rows: dict[int, dict[str, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            # Keras' CSVLogger writes NA for val_* columns without validation.
            rows[int(row["epoch"])] = {k: float(v) for k, v in row.items() if v and v != "NA"}
    return [rows[e] for e in sorted(rows)]


def run_config(
    space: SearchSpace,
    arc: Arc,
    child: ChildConfig,
    train: TrainConfig,
    data: dict[str, Any],
    init_from_search: str | None = None,
) -> dict[str, Any]:
    """The JSON-ready configuration recorded in config.json."""
    return {
        "tool": "enas-train",
        "space": space.name,
        "space_config": space.config(),
        "arc": space.format(arc),
        "child": dataclasses.asdict(child),
        "train": dataclasses.asdict(train),
        "data": data,
        "init_from_search": (os.path.abspath(init_from_search) if init_from_search else None),
    }


def _inherit(
    model: keras.Model,
    init_from_search: str,
    inherited: Inheritance,
    output_dir: str,
    verbose: int,
    write: bool = True,
) -> None:
    """Sets `model` from the search's shared weights; writes inherited.json
    (with `write`: the chief of a multi-worker run)."""
    fresh = load_inherited(model, inherited.weights)
    record = {
        "run_dir": os.path.abspath(init_from_search),
        "checkpoint": os.path.abspath(inherited.checkpoint),
        "search_epoch": inherited.epoch,
        "inherited_layers": len(inherited.weights),
        "fresh_layers": fresh,
    }
    if not write:
        return
    rundir.write_json_atomic(os.path.join(output_dir, "inherited.json"), record)
    if verbose:
        kept = f"; fresh: {', '.join(fresh)}" if fresh else ""
        print(
            f"Initialised {len(inherited.weights)} layers from the search "
            f"checkpoint {inherited.checkpoint} (epoch {inherited.epoch}){kept}."
        )


def train_child(
    space: SearchSpace,
    arc: Arc,
    child: ChildConfig,
    train: TrainConfig,
    splits: ImageSplits,
    output_dir: str,
    *,
    data: dict[str, Any] | None = None,
    overwrite: bool = False,
    verbose: int = 1,
    init_from_search: str | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> dict[str, Any]:
    """Trains `arc`, saves the inference model and a summary.

    The network starts from a fresh initialisation, or with
    `init_from_search` from the search's shared weights.

    Args:
      space: the architecture's space (macro or micro).
      arc: the architecture.
      child: how to build the network.
      train: optimisation settings.
      splits: the dataset (validation split may be empty).
      output_dir: run directory; an earlier compatible run there is resumed.
      data: dataset settings recorded in config.json (name, valid size...).
      overwrite: replace an incompatible earlier run in `output_dir`.
      verbose: Keras verbosity (1: progress bar per epoch).
      init_from_search: an enas-search run directory whose latest shared
        weights the network starts from (`enas_tf.supernet.transfer`); applied when
        the run starts, not when it resumes from its own checkpoint.
      strategy: the `tf.distribute.Strategy` of the training (default: the
        current one, normally one device); `train.batch_size` is the global
        batch, split over the replicas.

    Returns:
      The summary written to `summary.json`.

    Raises:
      UserError: for bad settings, an incompatible `output_dir`, or a
        search run the network cannot inherit from.
    """
    child.check(space)
    train.check()
    arc = space.validate(arc)
    if train.cutout_size > min(splits.image_shape[:2]):
        raise UserError(
            f"cutout_size {train.cutout_size} is larger than the "
            f"{splits.image_shape[0]}x{splits.image_shape[1]} images."
        )
    data = data or {"dataset": splits.name, "valid_size": len(splits.valid_images)}
    config = run_config(space, arc, child, train, data, init_from_search)
    checkpoint_dir = os.path.join(output_dir, "checkpoints")

    def started() -> bool:  # the run has a checkpoint of its own
        return tf.train.latest_checkpoint(checkpoint_dir) is not None

    def shared_weights():
        return weights_from_search(
            init_from_search, space, arc, child, splits.image_shape, splits.num_classes
        )

    # Read before anything is written, so an unusable search run leaves no
    # run directory behind; not read when the run resumes from its checkpoint.
    inherited = shared_weights() if init_from_search and not started() else None
    strategy = strategy or tf.distribute.get_strategy()
    # Multi-worker: the chief writes the run directory, the others wait.
    workers = distribute.Workers(strategy)
    if workers.is_chief:
        resumed = rundir.prepare(
            output_dir, config, overwrite=overwrite, safe_keys=SAFE_KEYS, run_files=RUN_FILES
        )
    workers.barrier()
    if not workers.is_chief:
        resumed = started()
    keras.utils.set_random_seed(train.seed)
    steps_per_epoch = math.ceil(len(splits.train_images) / train.batch_size)
    # Model, optimizer and checkpoint variables live on the strategy's devices.
    with strategy.scope():
        # In `train.precision` (logits float32); the inference twin saved
        # at the end is built outside the policy: float32.
        with precision.policy(train.precision):
            model = build_child(
                space, arc, child, image_shape=splits.image_shape, num_classes=splits.num_classes
            )
        if init_from_search and not started():
            # Once training has started, the run's own checkpoint wins.
            if inherited is None:  # --overwrite removed the earlier run's checkpoints
                inherited = shared_weights()
            _inherit(
                model, init_from_search, inherited, output_dir, verbose, write=workers.is_chief
            )
        aux = len(model.outputs) == 2
        compile_child(model, child, train, splits.num_classes, steps_per_epoch, aux)
        epoch_data = functools.partial(_epoch_data, splits, train, aux)
        valid_data = _valid_data(splits, train, aux)
        stop = StopRequest()
        checkpoints = EpochCheckpoints(model, checkpoint_dir, stop, workers)
        checkpoints.restore()
        if workers.multi:
            distribute.fix_keras_fit(model, epoch_data(0, 0))
    history_path = os.path.join(output_dir, "history.csv")
    callbacks = [checkpoints]
    tensorboard = EpochSummaries(os.path.join(output_dir, "logs"))
    if workers.is_chief:  # the only writer of a multi-worker run
        if not resumed:
            summaries.write_hparams(tensorboard.writer("."), config)
        callbacks += [keras.callbacks.CSVLogger(history_path, append=True), tensorboard]
    skipped = nonfinite.NonFiniteCallback(model.optimizer, train.max_nonfinite)
    callbacks += [EpochProgbar(train.epochs), skipped]
    if any(isinstance(layer, DropPath) for layer in model.layers):
        callbacks.append(DropPathSchedule(train.epochs * steps_per_epoch))
    start = time.time()
    _fit_epochs(model, checkpoints, stop, epoch_data, valid_data, callbacks, train.epochs, verbose)
    wall_time = time.time() - start
    twin = inference_model(space, arc, child, model)
    test_data = eval_dataset(splits.test_images, splits.test_labels, splits, train.eval_batch_size)
    if not workers.is_chief:
        return {
            "chief": False,
            "epochs": int(checkpoints.epoch.numpy()),
            "test_accuracy": _accuracy(twin, test_data),
        }
    model_path = os.path.join(output_dir, "model.keras")
    tmp_path = os.path.join(output_dir, ".tmp-model.keras")
    twin.save(tmp_path)
    os.replace(tmp_path, model_path)
    measured = {
        "test_accuracy": _accuracy(twin, test_data),
        "wall_time_s": round(wall_time, 2),
        "nonfinite_steps": skipped.total,  # skipped by this process
        "resumed": resumed,
    }
    summary = _summary(space, arc, splits, twin, output_dir, aux, measured, config)
    rundir.write_json_atomic(os.path.join(output_dir, "summary.json"), summary)
    final = ("test_accuracy", "best_valid_accuracy", "final_valid_accuracy", "params", "flops")
    summaries.write_final(
        tensorboard.writer("."), {k: summary[k] for k in final}, step=summary["epochs"]
    )
    tensorboard.close()
    return summary


def _summary(space, arc, splits, twin, output_dir, aux, measured, config) -> dict[str, Any]:
    """summary.json of a finished run; `measured` holds the test accuracy,
    wall time, skipped steps and whether the run resumed."""
    history_path = os.path.join(output_dir, "history.csv")
    history = _history(history_path)
    valid_key = "val_accuracy" if not aux else "val_logits_accuracy"
    train_key = "accuracy" if not aux else "logits_accuracy"
    valid_curve = [row[valid_key] for row in history if valid_key in row]
    summary = {
        "space": space.name,
        "space_config": space.config(),
        "arc": space.format(arc),
        "params": count_params(twin),
        "flops": count_flops(twin),
        "dataset": splits.name,
        "image_shape": list(splits.image_shape),
        "num_classes": splits.num_classes,
        **({"class_names": list(splits.class_names)} if splits.class_names else {}),
        "mean": [float(v) for v in splits.mean],
        "std": [float(v) for v in splits.std],
        "epochs": len(history),
        "final_train_accuracy": history[-1].get(train_key) if history else None,
        "best_valid_accuracy": max(valid_curve) if valid_curve else None,
        "final_valid_accuracy": valid_curve[-1] if valid_curve else None,
        **measured,
        "inherited": _read_json(os.path.join(output_dir, "inherited.json")),
        "config": config,
    }
    return summary


def compile_child(model, child: ChildConfig, train: TrainConfig, num_classes, steps_per_epoch, aux):
    """Compiles `model` with ENAS's optimiser and losses (under the
    strategy's scope when distributed): SGD with Nesterov momentum, cosine
    restarts per epoch of `steps_per_epoch`, the auxiliary head's weight."""
    loss = sparse_cross_entropy(train.label_smoothing, num_classes)
    schedule = EpochCosineRestarts(
        train.lr_max, train.lr_min, train.lr_t0, train.lr_t_mul, steps_per_epoch
    )
    sgd = keras.optimizers.SGD(
        learning_rate=schedule,
        momentum=train.momentum,
        nesterov=True,
        global_clipnorm=train.grad_bound or None,
    )
    model.compile(
        # Steps with a NaN or Inf gradient are skipped (NonFiniteCallback).
        # float16: loss scaling, whose overflow steps are skipped but not
        # counted as non-finite (`nonfinite.guard`).
        optimizer=nonfinite.guard(precision.loss_scaled(train.precision, sgd)),
        loss=[loss, loss] if aux else loss,
        loss_weights=[1.0, child.aux_weight] if aux else None,
        metrics=[["accuracy"], []] if aux else ["accuracy"],
        jit_compile=train.jit_compile,
    )
    model.optimizer.build(model.trainable_variables)


def _epoch_data(splits: ImageSplits, train: TrainConfig, aux: bool, epoch: int, skip: int):
    """The batches of `epoch` after the first `skip`: a function of (seed,
    epoch) only, so a resumed run sees what an uninterrupted one does."""
    data = train_dataset(
        splits,
        train.batch_size,
        cutout_size=train.cutout_size,
        pad=train.pad,
        flip=train.flip,
        seed=train.seed + epoch,
    ).skip(skip)
    data = distribute.shard_by_data(data)
    return data.map(lambda x, y: (x, (y, y))) if aux else data


def _valid_data(splits: ImageSplits, train: TrainConfig, aux: bool):
    if not len(splits.valid_images):
        return None
    data = distribute.shard_by_data(
        eval_dataset(splits.valid_images, splits.valid_labels, splits, train.eval_batch_size)
    )
    return data.map(lambda x, y: (x, (y, y))) if aux else data


def _fit_epochs(model, checkpoints, stop, epoch_data, valid_data, callbacks, epochs, verbose):
    """One `fit` per epoch, each on that epoch's batches (skipping those a
    stopped run trained on); raises `Stopped` on SIGINT/SIGTERM."""
    with stop:
        while (epoch := int(checkpoints.epoch.numpy())) < epochs:
            model.fit(
                epoch_data(epoch, int(checkpoints.done.numpy())),
                initial_epoch=epoch,
                epochs=epoch + 1,
                validation_data=valid_data,
                callbacks=callbacks,
                shuffle=False,  # the pipeline shuffles, seeded
                verbose=verbose,
            )
            if checkpoints.stopped is not None:
                raise checkpoints.stopped
            if stop.requested is not None:  # arrived after the last step
                raise Stopped(stop.requested, checkpoints.manager.latest_checkpoint)


def _read_json(path: str) -> Any:
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_summary(output_dir: str) -> dict[str, Any]:
    """Reads a finished run's summary.json."""
    with open(os.path.join(output_dir, "summary.json"), encoding="utf-8") as f:
        return json.load(f)
