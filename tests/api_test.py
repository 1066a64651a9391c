"""Tests of the Keras-style API (`enas_tf.api.ArchitectureSearch`)."""

import json

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

import enas_tf
from enas_tf.errors import UserError

# A small macro space: the API is the same for micro cells, and the macro
# supernet traces in a fraction of the time.
SETTINGS = dict(
    num_layers=2,
    num_ops=6,
    out_filters=4,
    batch_size=128,
    controller_steps=2,
    num_aggregate=2,
    log_arcs=1,
    derive_samples=3,
    pad=0,
    flip=False,
    lr_t0=1,
)


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = (d.images * 255.0 / 16.0).astype(np.uint8)
    return x[:600], d.target[:600], x[600:900], d.target[600:900]


class EpochLog(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs, self.end = [], None

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append((epoch, dict(logs)))

    def on_train_end(self, logs=None):
        self.end = dict(logs)


@pytest.fixture(scope="module")
def searched(digits, tmp_path_factory):
    x, y, x_test, y_test = digits
    directory = tmp_path_factory.mktemp("api")
    search = enas_tf.ArchitectureSearch(space="macro", directory=str(directory), **SETTINGS)
    log = EpochLog()
    result = search.search(x, y, test_data=(x_test, y_test), epochs=1, verbose=0, callbacks=[log])
    return search, result, log, directory


def test_search_derives_and_reports(searched, capsys):
    search, result, log, directory = searched
    space = search.config.search_space()
    assert search.best_architecture() == result["best_arc"]
    space.parse(result["best_arc"])  # a valid arc of the space
    assert [epoch for epoch, _ in log.epochs] == [0]
    assert "child/loss" in log.epochs[0][1] and log.end["best_arc"] == result["best_arc"]
    # The data's shape and classes come from the arrays (8x8x1, 10 classes).
    assert search.splits.image_shape == (8, 8, 1) and search.splits.num_classes == 10
    assert len(search.splits.test_images) == 300 and len(search.splits.valid_images) == 60
    rows = search.results_summary(num_candidates=2)
    printed = capsys.readouterr().out.splitlines()
    assert len(rows) == len(printed) - 1 <= 2 and rows[0]["arc"] == result["best_arc"]
    assert printed[1].split()[-len(rows[0]["arc"].split()) :] == rows[0]["arc"].split()
    recorded = json.loads((directory / "search" / "config.json").read_text())
    assert recorded["data"]["image_shape"] == [8, 8, 1]


def test_build_model_is_compiled_with_fresh_weights(searched):
    search = searched[0]
    model = search.build_model()
    assert model.optimizer is not None and model.output_shape[-1] == 10
    x, y = search.splits.train_images[:32], search.splits.train_labels[:32]
    before = model.evaluate(x / 255.0, y, verbose=0, return_dict=True)
    model.fit(x / 255.0, y, epochs=2, verbose=0)
    after = model.evaluate(x / 255.0, y, verbose=0, return_dict=True)
    assert after["loss"] < before["loss"]


def test_train_best_returns_the_trained_compiled_network(searched):
    search = searched[0]
    model, summary = search.train_best(epochs=1, batch_size=64, verbose=0)
    assert summary["arc"] == search.best_architecture() and summary["epochs"] == 1
    splits = search.splits
    scaled = ((splits.test_images / 255.0) - splits.mean) / splits.std
    accuracy = model.evaluate(scaled, splits.test_labels, verbose=0, return_dict=True)
    assert accuracy["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)


def test_a_second_search_resumes_in_the_directory(searched, digits):
    _, _, _, directory = searched
    x, y, x_test, y_test = digits
    again = enas_tf.ArchitectureSearch(space="macro", directory=str(directory), **SETTINGS)
    result = again.search(x, y, test_data=(x_test, y_test), epochs=2, verbose=0)
    log = (directory / "search" / "search_log.jsonl").read_text().splitlines()
    assert len(log) == 2 and result["epoch"] == 2


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"hidden_size": 8}, "no setting hidden_size"),
        ({"space": "rnn"}, "space must be micro or macro"),
        ({"epochs": 0}, "epochs must be >= 1"),
    ],
)
def test_bad_settings_are_user_errors(settings, message, tmp_path):
    with pytest.raises(UserError, match=message):
        enas_tf.ArchitectureSearch(directory=str(tmp_path), **settings)


def test_results_before_a_search_are_a_clear_error(tmp_path):
    search = enas_tf.ArchitectureSearch(directory=str(tmp_path))
    with pytest.raises(UserError, match="call search"):
        search.best_architecture()
    with pytest.raises(UserError, match="call search"):
        search.build_model()
