"""Tests of TensorBoard HParams and final metrics (`enas_tf.runtime.summaries`)."""

import tensorflow as tf
from tensorboard.plugins.hparams import plugin_data_pb2

from enas_tf.runtime import summaries
from enas_tf.testing import read_events


def test_hparam_values_flatten_and_keep_what_hparams_accepts():
    values = {
        "tool": "enas-train",
        "train": {"epochs": 3, "lr_max": 0.05, "flip": True, "mean": [0.5, 0.25]},
        "data": {"data_dir": None},
    }
    assert summaries.hparam_values(values) == {
        "tool": "enas-train",
        "train.epochs": 3,
        "train.lr_max": 0.05,
        "train.flip": True,
        "train.mean": "0.5,0.25",
    }


def test_a_session_with_its_settings_and_final_metrics(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    summaries.write_hparams(writer, {"search": {"space": {"name": "micro"}, "epochs": 3}})
    written = summaries.write_final(
        writer, {"test_accuracy": 0.75, "params": 1200, "resumed": False, "arc": "0 1"}, step=3
    )
    writer.close()
    assert written == {"final/test_accuracy": 0.75, "final/params": 1200.0}
    events = read_events(tmp_path)
    assert events["files"] == 1
    (_, content), *_ = events["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert start.hparams["search.space.name"].string_value == "micro"
    assert start.hparams["search.epochs"].number_value == 3
    assert events["final/test_accuracy"] == [(3, 0.75)]
    assert events["final/params"] == [(3, 1200.0)]
    assert "final/resumed" not in events and "final/arc" not in events
