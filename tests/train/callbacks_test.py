"""Tests of the final-training callbacks (`enas_tf.train.callbacks`) on a tiny
Keras model fitted one epoch at a time, as `train_child` does."""

import signal

import keras
import numpy as np
import pytest

from enas_tf.runtime.checkpoints import Stopped, StopRequest
from enas_tf.testing import read_events
from enas_tf.train.callbacks import EpochCheckpoints, EpochProgbar, EpochSummaries

SAMPLES, BATCH = 12, 4  # 3 batches per epoch


def tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def data(skip_batches=0):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, 3)).astype("float32")
    y = rng.normal(size=(SAMPLES, 1)).astype("float32")
    return x[skip_batches * BATCH :], y[skip_batches * BATCH :]


def fit_epoch(model, epoch, callbacks, skip_batches=0, verbose=0):
    x, y = data(skip_batches)
    model.fit(
        x,
        y,
        batch_size=BATCH,
        initial_epoch=epoch,
        epochs=epoch + 1,
        shuffle=False,
        verbose=verbose,
        callbacks=callbacks,
    )


class StopAfter(keras.callbacks.Callback):
    """Sets `stop.requested` to SIGTERM at the end of batch `batch` (as the
    signal handler would), before `EpochCheckpoints` looks at it."""

    def __init__(self, stop, batch):
        super().__init__()
        self.stop, self.batch = stop, batch

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.batch:
            self.stop.requested = signal.SIGTERM


def position(checkpoints):
    return int(checkpoints.epoch.numpy()), int(checkpoints.done.numpy())


def weights(model):
    return [w.copy() for w in model.get_weights()]


def test_progbar_numbers_epochs_out_of_the_whole_run(capsys):
    model = tiny_model()
    fit_epoch(model, 2, [EpochProgbar(5)], verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 3/5" in out and "Epoch 3/3" not in out
    fit_epoch(model, 2, [], verbose=1)  # plain Keras counts this fit's epochs
    assert "Epoch 3/3" in capsys.readouterr().out
    progbar = EpochProgbar(7)
    progbar.set_params({"epochs": 1, "steps": 3, "verbose": 1})
    assert progbar.epochs == 7 and progbar.target == 3


def test_saves_after_each_epoch_and_restores(tmp_path):
    model = tiny_model()
    stop = StopRequest()
    checkpoints = EpochCheckpoints(model, str(tmp_path), stop)
    checkpoints.restore()  # nothing yet
    assert position(checkpoints) == (0, 0) and checkpoints.manager.latest_checkpoint is None
    fit_epoch(model, 0, [checkpoints])
    assert position(checkpoints) == (1, 0)
    assert checkpoints.stopped is None
    first = checkpoints.manager.latest_checkpoint
    assert first is not None
    trained, iterations = weights(model), int(model.optimizer.iterations.numpy())
    assert iterations == 3

    fresh = tiny_model(seed=1)
    assert not np.allclose(fresh.get_weights()[0], trained[0])
    again = EpochCheckpoints(fresh, str(tmp_path), StopRequest())
    again.restore()
    assert position(again) == (1, 0)
    for got, want in zip(fresh.get_weights(), trained):
        np.testing.assert_array_equal(got, want)
    assert int(fresh.optimizer.iterations.numpy()) == 3


def test_keeps_the_last_three_checkpoints(tmp_path):
    model = tiny_model()
    checkpoints = EpochCheckpoints(model, str(tmp_path), StopRequest())
    for epoch in range(4):
        fit_epoch(model, epoch, [checkpoints])
    assert position(checkpoints) == (4, 0)
    assert [p.rsplit("-", 1)[1] for p in checkpoints.manager.checkpoints] == ["2", "3", "4"]


def test_stop_request_saves_the_batches_done(tmp_path):
    model = tiny_model()
    stop = StopRequest()
    checkpoints = EpochCheckpoints(model, str(tmp_path), stop)
    fit_epoch(model, 0, [checkpoints])  # epoch 1 done
    fit_epoch(model, 1, [StopAfter(stop, 1), checkpoints])  # SIGTERM in batch 2 of epoch 2
    assert model.stop_training
    assert int(model.optimizer.iterations.numpy()) == 3 + 2  # no third batch
    assert position(checkpoints) == (1, 2)  # still in epoch 2, 2 batches done
    stopped = checkpoints.stopped
    assert isinstance(stopped, Stopped)
    assert stopped.signum == signal.SIGTERM and stopped.exit_code == 143
    assert stopped.checkpoint == checkpoints.manager.latest_checkpoint
    assert stopped.checkpoint.endswith("ckpt-2")
    assert stop.requested == signal.SIGTERM
    saved = weights(model)

    # Resume: the position and the weights after the 2 batches come back.
    resumed = tiny_model(seed=1)
    again = EpochCheckpoints(resumed, str(tmp_path), StopRequest())
    again.restore()
    assert position(again) == (1, 2)
    for got, want in zip(resumed.get_weights(), saved):
        np.testing.assert_array_equal(got, want)
    # The rest of epoch 2 (its last batch) finishes it.
    fit_epoch(resumed, 1, [again], skip_batches=2)
    assert position(again) == (2, 0) and again.stopped is None
    assert int(resumed.optimizer.iterations.numpy()) == 6


def test_a_stop_requested_before_the_first_batch_ends(tmp_path):
    model = tiny_model()
    stop = StopRequest()
    stop.requested = signal.SIGINT  # arrived before the first batch ended
    checkpoints = EpochCheckpoints(model, str(tmp_path), stop)
    fit_epoch(model, 0, [checkpoints])
    assert position(checkpoints) == (0, 1)
    assert checkpoints.stopped.exit_code == 130
    assert int(model.optimizer.iterations.numpy()) == 1


@pytest.mark.parametrize("batches", [0, 1])
def test_batches_count_from_the_restored_position(tmp_path, batches):
    model = tiny_model()
    stop = StopRequest()
    checkpoints = EpochCheckpoints(model, str(tmp_path), stop)
    checkpoints.done.assign(batches)  # as if restored inside epoch 1
    fit_epoch(model, 0, [StopAfter(stop, 0), checkpoints], skip_batches=batches)
    assert position(checkpoints) == (0, batches + 1)


def test_summaries_keep_one_events_file_per_writer_over_many_fits(tmp_path):
    model = tiny_model()
    x, y = data()
    tensorboard = EpochSummaries(str(tmp_path / "logs"))
    history = []
    for epoch in range(3):  # one `fit` per epoch, as train_child does
        fitted = model.fit(
            x, y, batch_size=BATCH, initial_epoch=epoch, epochs=epoch + 1,
            validation_data=(x, y), callbacks=[tensorboard], verbose=0,
        )  # fmt: skip
        history.append(fitted.history)
    tensorboard.close()
    train = read_events(tmp_path / "logs" / "train")
    valid = read_events(tmp_path / "logs" / "validation")
    assert train["files"] == 1 and valid["files"] == 1  # Keras's callback: 3 each
    assert [step for step, _ in train["epoch_loss"]] == [0, 1, 2]
    np.testing.assert_allclose(
        [value for _, value in train["epoch_loss"]], [h["loss"][0] for h in history], rtol=1e-6
    )
    np.testing.assert_allclose(
        [value for _, value in valid["epoch_loss"]], [h["val_loss"][0] for h in history], rtol=1e-6
    )
    assert [float(v) for _, v in train["epoch_learning_rate"]] == pytest.approx([0.1] * 3)
    assert "epoch_learning_rate" not in valid
