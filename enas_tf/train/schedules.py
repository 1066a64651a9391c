"""Schedules of the ENAS training recipe, over a whole run.

`EpochCosineRestarts`: the learning rate, SGDR cosine restarts held constant
within an epoch (a Keras schedule, used by final training and the search's
child phase). `DropPathSchedule`: drop path fading in linearly over the run
(a Keras callback driving `enas_tf.ops.blocks.DropPath`).
"""

from __future__ import annotations

import keras

from enas_tf.ops.blocks import DropPath


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
