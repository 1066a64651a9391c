"""Keras callbacks of final training: exact-resume checkpoints, the progress
bar and the TensorBoard scalars of a run that `fit`s one epoch at a time."""

from __future__ import annotations

import os
import signal

import keras
import tensorflow as tf

from enas_tf.runtime import distribute
from enas_tf.runtime.checkpoints import Stopped, StopRequest, restore_newest


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


class EpochSummaries(keras.callbacks.Callback):
    """Each epoch's metrics as TensorBoard scalars, laid out as
    `keras.callbacks.TensorBoard` lays them out (`log_dir/train` and
    `log_dir/validation`, tags `epoch_NAME`, the learning rate as
    `epoch_learning_rate`), through writers kept open for the whole run:
    one events file per writer per run, where Keras's callback opens new
    ones at every `fit` (every epoch here). `writer(".")` is `log_dir`'s
    own writer (HParams, final metrics); `close` closes them all."""

    def __init__(self, log_dir: str):
        super().__init__()
        self.log_dir = log_dir
        self._writers: dict[str, tf.summary.SummaryWriter] = {}

    def writer(self, name: str) -> tf.summary.SummaryWriter:
        """The writer of `log_dir/name`, opened on first use."""
        if name not in self._writers:
            path = os.path.normpath(os.path.join(self.log_dir, name))
            self._writers[name] = tf.summary.create_file_writer(path)
        return self._writers[name]

    def on_epoch_end(self, epoch, logs=None):
        scalars = {"train": {}, "validation": {}}
        for key, value in (logs or {}).items():
            if key.startswith("val_"):
                scalars["validation"][key[len("val_") :]] = value
            else:
                scalars["train"][key] = value
        rate = getattr(self.model.optimizer, "learning_rate", None)
        if rate is not None and "learning_rate" not in scalars["train"]:
            scalars["train"]["learning_rate"] = rate
        for name, values in scalars.items():
            if not values:
                continue
            writer = self.writer(name)
            with writer.as_default(step=epoch):
                for key, value in values.items():
                    tf.summary.scalar(f"epoch_{key}", float(value))
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


class EpochProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, numbering epochs out of the whole run (`fit`
    runs one epoch at a time)."""

    def __init__(self, epochs: int):
        super().__init__()
        self._total = epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self._total
