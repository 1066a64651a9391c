"""Tests of final training: resume, refusals, run directory, learning."""

import dataclasses
import json
import shutil

import keras
import pytest

from enas_tf import data, spaces
from enas_tf.configs.image import ChildConfig, TrainConfig
from enas_tf.errors import UserError
from enas_tf.testing import read_events
from enas_tf.train.image import train_child


@pytest.fixture(scope="module")
def digits():
    return data.load_images("digits", valid_size=100)


SPACE = spaces.MicroSpace(num_nodes=1)
ARC = (1, 4, 0, 2, 0, 0, 1, 3)
CHILD = ChildConfig(out_filters=4, num_layers=3, drop_path_keep_prob=0.8, aux_weight=0.4)
TRAIN = TrainConfig(epochs=1, batch_size=128, lr_t0=1, lr_t_mul=1, flip=False, pad=1)


@pytest.fixture(scope="module")
def one_epoch(digits, tmp_path_factory):
    """A run of one epoch of ARC, and its summary; tests work on copies."""
    out = tmp_path_factory.mktemp("one_epoch") / "run"
    return out, train_child(SPACE, ARC, CHILD, TRAIN, digits, str(out), verbose=0)


def copy_of(one_epoch, tmp_path):
    shutil.copytree(one_epoch[0], tmp_path / "run")
    return str(tmp_path / "run")


def test_train_resume_and_refusals(digits, one_epoch, tmp_path):
    out = copy_of(one_epoch, tmp_path)
    first = one_epoch[1]
    assert first["epochs"] == 1 and not first["resumed"]
    assert 0.0 <= first["test_accuracy"] <= 1.0
    assert first["final_valid_accuracy"] is not None
    assert first["arc"] == "1 4 0 2 0 0 1 3" and first["params"] > 0
    for name in (
        "model.keras",
        "summary.json",
        "history.csv",
        "config.json",
        "checkpoints",
        "logs",
    ):
        assert (tmp_path / "run" / name).exists(), name
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert model.output_shape == (None, 10)

    # More epochs is a safe change: the run resumes at epoch 2.
    more = dataclasses.replace(TRAIN, epochs=2)
    second = train_child(SPACE, ARC, CHILD, more, digits, out, verbose=0)
    assert second["resumed"] and second["epochs"] == 2
    rows = (tmp_path / "run" / "history.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1"]
    # TensorBoard: the settings once (an HParams session), the epochs' scalars
    # through one events file per writer per run, the final metrics per run.
    logs = tmp_path / "run" / "logs"
    root, train = read_events(logs), read_events(logs / "train")
    assert root["files"] == 2 and len(root["_hparams_/session_start_info"]) == 1
    assert [v for _, v in root["final/test_accuracy"]] == pytest.approx(
        [first["test_accuracy"], second["test_accuracy"]]
    )
    assert train["files"] == 2 and [step for step, _ in train["epoch_loss"]] == [0, 1]
    assert read_events(logs / "validation")["files"] == 2

    # A different architecture or learning rate is refused; nothing changes.
    before = (tmp_path / "run" / "summary.json").read_text()
    with pytest.raises(UserError, match=r"holds a different run \(arc: '1 4 0 2 0 0 1 3' -> "):
        train_child(SPACE, (1, 4, 0, 2, 0, 0, 1, 2), CHILD, more, digits, out, verbose=0)
    with pytest.raises(UserError, match="train.lr_max: 0.05 -> 0.1"):
        train_child(
            SPACE, ARC, CHILD, dataclasses.replace(more, lr_max=0.1), digits, out, verbose=0
        )
    assert (tmp_path / "run" / "summary.json").read_text() == before

    # --overwrite starts afresh.
    fresh = train_child(
        SPACE, (1, 4, 0, 2, 0, 0, 1, 2), CHILD, TRAIN, digits, out, overwrite=True, verbose=0
    )
    assert fresh["epochs"] == 1 and not fresh["resumed"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["arc"] == "1 4 0 2 0 0 1 2"


def test_output_dir_with_foreign_files_is_refused(digits, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="holds no config.json"):
        train_child(SPACE, ARC, CHILD, TRAIN, digits, str(tmp_path), overwrite=True, verbose=0)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_training_learns(digits, tmp_path):
    config = dataclasses.replace(TRAIN, epochs=4, lr_t0=4)
    macro = spaces.MacroSpace(num_layers=3)
    summary = train_child(
        macro,
        (0, 1, 0, 2, 1, 1),
        ChildConfig(out_filters=8, l2=1e-4),
        config,
        digits,
        str(tmp_path),
        verbose=0,
    )
    assert summary["test_accuracy"] > 0.5  # chance is 0.1


def test_bad_train_configs(digits, tmp_path):
    for bad, match in [
        (TrainConfig(lr_min=0.1, lr_max=0.05), "lr_min <= lr_max"),
        (TrainConfig(epochs=0), "epochs must be >= 1"),
        (TrainConfig(cutout_size=9), "cutout_size 9 is larger than the 8x8"),
        (TrainConfig(label_smoothing=1.0), "label_smoothing"),
    ]:
        with pytest.raises(UserError, match=match):
            train_child(SPACE, ARC, CHILD, bad, digits, str(tmp_path / "x"), verbose=0)
    assert not (tmp_path / "x").exists()  # refused before writing anything


def _newest_data(run):
    ckpt = run / "checkpoints"
    newest = (ckpt / "checkpoint").read_text().split('"')[1]
    return next(ckpt.glob(f"{newest}.data-*"))


def test_corrupt_checkpoint(digits, one_epoch, tmp_path, capfd):
    out = copy_of(one_epoch, tmp_path)
    # After one epoch there is no earlier checkpoint: a damaged one stops the
    # resume with a clear error and nothing is removed.
    latest = _newest_data(tmp_path / "run")
    good = latest.read_bytes()
    latest.write_bytes(good[:100])
    with pytest.raises(UserError, match="No checkpoint .* is readable"):
        train_child(SPACE, ARC, CHILD, dataclasses.replace(TRAIN, epochs=2), digits, out, verbose=0)
    assert latest.read_bytes() == good[:100]
    assert (tmp_path / "run" / "summary.json").exists()
    # With an earlier checkpoint (after two epochs), the run falls back to it
    # and says so.
    latest.write_bytes(good)
    train_child(SPACE, ARC, CHILD, dataclasses.replace(TRAIN, epochs=2), digits, out, verbose=0)
    newest = _newest_data(tmp_path / "run")
    newest.write_bytes(newest.read_bytes()[:100])
    capfd.readouterr()
    summary = train_child(
        SPACE, ARC, CHILD, dataclasses.replace(TRAIN, epochs=3), digits, out, verbose=0
    )
    assert "corrupt or truncated" in capfd.readouterr().err
    assert summary["epochs"] == 3
