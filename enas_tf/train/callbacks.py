"""Keras callbacks of final training: exact-resume checkpoints and the
progress bar of a run that `fit`s one epoch at a time."""

from __future__ import annotations

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


class EpochProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, numbering epochs out of the whole run (`fit`
    runs one epoch at a time)."""

    def __init__(self, epochs: int):
        super().__init__()
        self._total = epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self._total
