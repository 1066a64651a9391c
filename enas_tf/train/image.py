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
import json
import math
import os
import signal
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
from enas_tf.runtime import distribute, nonfinite, precision, rundir
from enas_tf.runtime.checkpoints import Stopped, StopRequest, restore_newest
from enas_tf.spaces import Arc, SearchSpace
from enas_tf.supernet.transfer import Inheritance, load_inherited, weights_from_search

# Outputs of a run directory, removed by `overwrite`.
RUN_FILES = ("checkpoints", "logs", "history.csv", "model.keras", "summary.json", "inherited.json")
# Settings that may change when a run is resumed.
SAFE_KEYS = ("train.epochs", "train.eval_batch_size", "data.data_dir", "verbose")


@keras.saving.register_keras_serializable(package="enas_tf")
class EpochCosineRestarts(keras.optimizers.schedules.LearningRateSchedule):
    """SGDR cosine restarts evaluated per epoch, as the original does.

    For epoch e in a cycle that started at epoch r with length T_i:
    lr = lr_min + (lr_max - lr_min) * (1 + cos(pi * (e - r) / T_i)) / 2,
    T_0 = `t0` epochs, T_{i+1} = t_mul * T_i. The rate is constant within an
    epoch. Keras' `CosineDecayRestarts` computes the curve; this wrapper
    feeds it whole epochs.
    """

    def __init__(self, lr_max, lr_min, t0, t_mul, steps_per_epoch):
        self.lr_max = float(lr_max)
        self.lr_min = float(lr_min)
        self.t0 = int(t0)
        self.t_mul = float(t_mul)
        self.steps_per_epoch = int(steps_per_epoch)
        self._cosine = keras.optimizers.schedules.CosineDecayRestarts(
            self.lr_max,
            self.t0,
            t_mul=self.t_mul,
            m_mul=1.0,
            alpha=self.lr_min / self.lr_max if self.lr_max > 0 else 0.0,
        )

    def __call__(self, step):
        epoch = keras.ops.floor_divide(keras.ops.cast(step, "float32"), float(self.steps_per_epoch))
        return self._cosine(epoch)

    def get_config(self):
        return {
            "lr_max": self.lr_max,
            "lr_min": self.lr_min,
            "t0": self.t0,
            "t_mul": self.t_mul,
            "steps_per_epoch": self.steps_per_epoch,
        }


class DropPathSchedule(keras.callbacks.Callback):
    """Raises every `DropPath` layer's progress linearly to 1 over the run.

    progress = min(1, (step + 1) / total_steps), read from the optimizer's
    step counter, so it is right after a resume too (ENAS_REFERENCE sec. 0.6).
    """

    def __init__(self, total_steps: int):
        super().__init__()
        self.total_steps = total_steps
        self._layers: list[DropPath] = []

    def on_train_begin(self, logs=None):
        self._layers = [layer for layer in self.model.layers if isinstance(layer, DropPath)]

    def on_train_batch_begin(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        progress = min(1.0, (step + 1) / self.total_steps)
        for layer in self._layers:
            layer.progress.assign(progress)


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


class _Progbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, numbering epochs out of the whole run (`fit`
    runs one epoch at a time)."""

    def __init__(self, epochs: int):
        super().__init__()
        self._total = epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self._total


class EpochCheckpoints(keras.callbacks.Callback):
    """Checkpoints after every epoch, and on SIGINT/SIGTERM after the step.

    The checkpoint (`tf.train.CheckpointManager`, written atomically, last 3
    kept; `enas_tf.runtime.checkpoints`) holds every variable of the model including
    the dropout seed states, the optimizer's variables (its step counter
    drives the learning rate and drop path), the finished epochs and the
    batches done in the current one. With the epoch's batches a function of
    (seed, epoch) (`train_child`), a resumed run computes what an
    uninterrupted one does.

    Args:
      model: the compiled training model (optimizer built).
      directory: the checkpoint directory.
      stop: the run's `StopRequest`.
      workers: the run's `enas_tf.runtime.distribute.Workers`: in a multi-worker run
        every worker restores from `directory` and saves (the chief there,
        the others to a private directory), and all stop after the same
        step when any of them receives a signal.
    """

    def __init__(
        self,
        model: keras.Model,
        directory: str,
        stop: StopRequest,
        workers: distribute.Workers | None = None,
    ):
        super().__init__()
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.done = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(
            model=[v.value for v in model.variables],
            optimizer=[v.value for v in model.optimizer.variables],
            epoch=self.epoch,
            done=self.done,
        )
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=3)
        self.workers = workers or distribute.Workers(tf.distribute.get_strategy())
        self.saver = self.manager
        if not self.workers.is_chief:
            self.saver = tf.train.CheckpointManager(
                self.checkpoint, self.workers.checkpoint_dir(directory), max_to_keep=1
            )
        self.stop, self.stopped, self._batches = stop, None, 0

    def restore(self) -> None:
        """Restores the newest readable checkpoint, if any."""
        restore_newest(self.checkpoint, self.manager)
        self.workers.check_same(
            "the restored position (epoch, batches done)", [self.epoch.numpy(), self.done.numpy()]
        )

    def on_epoch_begin(self, epoch, logs=None):
        self._batches = int(self.done.numpy())

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self.workers.any_stop(self.stop.requested is not None):
            self.model.stop_training = True
            self.stop.requested = self.stop.requested or signal.SIGTERM

    def on_epoch_end(self, epoch, logs=None):
        if self.model.stop_training and self.stop.requested is not None:
            self.done.assign(self._batches)  # stopped inside the epoch
            path = self.saver.save()
            self.stopped = Stopped(
                self.stop.requested, path if self.workers.is_chief else self.manager.directory
            )
            return
        self.epoch.assign(epoch + 1)
        self.done.assign(0)
        self.saver.save()


def _build_compiled(model: keras.Model, dataset: tf.data.Dataset) -> None:
    """Makes Keras 3's `fit` work under `MultiWorkerMirroredStrategy`.

    Two steps of Keras' TensorFlow trainer fail there: the first `fit`
    reduces a distributed batch across replicas to build the compiled loss
    and metrics ("unsupported type PerReplica"), and each step reduces the
    scalar metrics with `axis=0` ("Invalid reduction dimension 0"). The
    first is done here from one undistributed batch (under the strategy's
    scope); the second reduces per-replica values over the replicas
    (`axis=None`), as Keras does for one machine's replicas.
    """
    model._symbolic_build(data_batch=next(iter(dataset)))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    from keras.src.backend.tensorflow import trainer  # noqa: PLC0415

    if getattr(trainer.reduce_per_replica, "enas_tf_fixed", False):
        return
    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and reduction in (
            "auto",
            "mean",
        ):

            def mean(v):
                if isinstance(v, tf.distribute.DistributedValues):
                    return strategy.reduce("MEAN", v, axis=None)
                return v

            return tf.nest.map_structure(mean, values)
        return original(values, strategy, reduction)

    reduce_per_replica.enas_tf_fixed = True
    trainer.reduce_per_replica = reduce_per_replica


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
    inherited = None
    if init_from_search and not started():
        inherited = shared_weights()
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
        steps_per_epoch = math.ceil(len(splits.train_images) / train.batch_size)
        loss = sparse_cross_entropy(train.label_smoothing, splits.num_classes)
        aux = len(model.outputs) == 2
        model.compile(
            # Steps with a NaN or Inf gradient are skipped (NonFiniteCallback).
            # float16: loss scaling, whose overflow steps are skipped but
            # not counted as non-finite (`nonfinite.guard`).
            optimizer=nonfinite.guard(
                precision.loss_scaled(
                    train.precision,
                    keras.optimizers.SGD(
                        learning_rate=EpochCosineRestarts(
                            train.lr_max, train.lr_min, train.lr_t0, train.lr_t_mul, steps_per_epoch
                        ),
                        momentum=train.momentum,
                        nesterov=True,
                        global_clipnorm=train.grad_bound or None,
                    ),
                )
            ),
            loss=[loss, loss] if aux else loss,
            loss_weights=[1.0, child.aux_weight] if aux else None,
            metrics=[["accuracy"], []] if aux else ["accuracy"],
            jit_compile=train.jit_compile,
        )
        model.optimizer.build(model.trainable_variables)

        def epoch_data(epoch: int, skip: int) -> tf.data.Dataset:
            """The batches of `epoch`: a function of (seed, epoch) only."""
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

        valid_data = None
        if len(splits.valid_images):
            valid_data = distribute.shard_by_data(
                eval_dataset(
                    splits.valid_images, splits.valid_labels, splits, train.eval_batch_size
                )
            )
            if aux:
                valid_data = valid_data.map(lambda x, y: (x, (y, y)))
        history_path = os.path.join(output_dir, "history.csv")
        stop = StopRequest()
        checkpoints = EpochCheckpoints(model, checkpoint_dir, stop, workers)
        checkpoints.restore()
        if workers.multi:
            _build_compiled(model, epoch_data(0, 0))
    callbacks = [checkpoints]
    if workers.is_chief:  # the only writer of a multi-worker run
        callbacks += [
            keras.callbacks.CSVLogger(history_path, append=True),
            keras.callbacks.TensorBoard(os.path.join(output_dir, "logs"), write_graph=False),
        ]
    callbacks += [
        _Progbar(train.epochs),
        skipped := nonfinite.NonFiniteCallback(model.optimizer, train.max_nonfinite),
    ]
    if any(isinstance(layer, DropPath) for layer in model.layers):
        callbacks.append(DropPathSchedule(train.epochs * steps_per_epoch))
    start = time.time()
    with stop:
        # One `fit` per epoch, each on that epoch's batches (skipping those a
        # stopped run trained on), so that a resumed run sees what an
        # uninterrupted one does.
        while (epoch := int(checkpoints.epoch.numpy())) < train.epochs:
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
    wall_time = time.time() - start
    if not workers.is_chief:
        twin = inference_model(space, arc, child, model)
        test_data = eval_dataset(
            splits.test_images, splits.test_labels, splits, train.eval_batch_size
        )
        return {
            "chief": False,
            "epochs": int(checkpoints.epoch.numpy()),
            "test_accuracy": _accuracy(twin, test_data),
        }

    twin = inference_model(space, arc, child, model)
    model_path = os.path.join(output_dir, "model.keras")
    tmp_path = os.path.join(output_dir, ".tmp-model.keras")
    twin.save(tmp_path)
    os.replace(tmp_path, model_path)
    test_data = eval_dataset(splits.test_images, splits.test_labels, splits, train.eval_batch_size)
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
        "mean": [float(v) for v in splits.mean],
        "std": [float(v) for v in splits.std],
        "epochs": len(history),
        "final_train_accuracy": history[-1].get(train_key) if history else None,
        "best_valid_accuracy": max(valid_curve) if valid_curve else None,
        "final_valid_accuracy": valid_curve[-1] if valid_curve else None,
        "test_accuracy": _accuracy(twin, test_data),
        "wall_time_s": round(wall_time, 2),
        "nonfinite_steps": skipped.total,  # skipped by this process
        "resumed": resumed,
        "inherited": _read_json(os.path.join(output_dir, "inherited.json")),
        "config": config,
    }
    rundir.write_json_atomic(os.path.join(output_dir, "summary.json"), summary)
    return summary


def _read_json(path: str) -> Any:
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_summary(output_dir: str) -> dict[str, Any]:
    """Reads a finished run's summary.json."""
    with open(os.path.join(output_dir, "summary.json"), encoding="utf-8") as f:
        return json.load(f)
