"""Tests of the run schedules: cosine restarts per epoch, drop-path ramp."""

import math

import keras
import pytest

from enas_tf.ops.blocks import DropPath
from enas_tf.train.schedules import DropPathSchedule, EpochCosineRestarts


def sgdr(epoch, lr_max=0.05, lr_min=5e-4, t0=10, t_mul=2):
    start, length = 0, t0
    while epoch >= start + length:
        start, length = start + length, length * t_mul
    return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * (epoch - start) / length))


def test_cosine_restarts_per_epoch():
    schedule = EpochCosineRestarts(0.05, 5e-4, 10, 2, steps_per_epoch=7)
    for epoch in [0, 1, 5, 9, 10, 11, 29, 30, 69, 70, 149, 150, 309, 310]:
        for step in (7 * epoch, 7 * epoch + 6):  # constant within the epoch
            assert float(schedule(step)) == pytest.approx(sgdr(epoch), rel=1e-5, abs=1e-7)
    # Restarts at 10, 30, 70, 150, 310: lr_max there, near lr_min just before.
    assert float(schedule(7 * 30)) == pytest.approx(0.05)
    assert float(schedule(7 * 29)) < 0.001
    again = EpochCosineRestarts.from_config(schedule.get_config())
    assert float(again(100)) == float(schedule(100))


def test_drop_path_schedule_ramps_from_the_optimizer_step():
    x = keras.Input((2, 2, 1))
    y = DropPath(0.5, name="dp")(x)
    model = keras.Model(x, y)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    callback = DropPathSchedule(total_steps=10)
    callback.set_model(model)
    callback.on_train_begin()
    model.optimizer.iterations.assign(3)
    callback.on_train_batch_begin(0)
    assert float(model.get_layer("dp").progress.numpy()) == pytest.approx(0.4)
    model.optimizer.iterations.assign(50)
    callback.on_train_batch_begin(0)
    assert float(model.get_layer("dp").progress.numpy()) == 1.0
