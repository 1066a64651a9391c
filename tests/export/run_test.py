"""Tests of the run-directory steps of an export (`enas_tf.export.run`).

`export_run` itself, end to end on a trained stand-in run, is tested in
tests/export/image_test.py; these are its parts, on hand-made directories.
"""

import json
import os
import re

import keras
import numpy as np
import pytest

from enas_tf.errors import UserError
from enas_tf.export import run as export_run

SUMMARY = {
    "dataset": "digits",
    "image_shape": [8, 8, 1],
    "num_classes": 3,
    "mean": [0.5],
    "std": [0.25],
}


def write_summary(run_dir, summary):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


# ----- check_export_dir -------------------------------------------------------


def test_check_export_dir_accepts_new_and_empty_directories(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    export_run.check_export_dir(run, tmp_path / "new" / "export", overwrite=False)
    (tmp_path / "empty").mkdir()
    export_run.check_export_dir(run, tmp_path / "empty", overwrite=False)
    export_run.check_export_dir(run, run / "export", overwrite=False)


def test_check_export_dir_refuses_a_file(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(UserError, match=r"out is a file; choose another --export_dir"):
        export_run.check_export_dir(tmp_path / "run", tmp_path / "out", overwrite=True)


@pytest.mark.parametrize("target", ["run", "parent", "dotted"])
def test_check_export_dir_refuses_the_run_and_its_parents(tmp_path, target):
    run = tmp_path / "a" / "run"
    run.mkdir(parents=True)
    out = {"run": run, "parent": tmp_path / "a", "dotted": run / ".." / "run"}[target]
    with pytest.raises(UserError, match="would replace the run directory"):
        export_run.check_export_dir(run, out, overwrite=True)


def test_check_export_dir_needs_overwrite_for_an_old_export(tmp_path):
    out = tmp_path / "export"
    (out / "saved_model").mkdir(parents=True)
    (out / "export_report.json").write_text("{}")
    (out / "model_float32.tflite").write_bytes(b"")
    (out / "model_dynamic_range.tflite").write_bytes(b"")
    with pytest.raises(UserError, match="not empty; pass --overwrite"):
        export_run.check_export_dir(tmp_path / "run", out, overwrite=False)
    export_run.check_export_dir(tmp_path / "run", out, overwrite=True)


def test_check_export_dir_never_replaces_foreign_files(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "export_report.json").write_text("{}")
    for i in range(7):
        (out / f"mine{i}.txt").write_text("keep")
    with pytest.raises(UserError) as error:
        export_run.check_export_dir(tmp_path / "run", out, overwrite=True)
    message = str(error.value)
    assert "mine0.txt, mine1.txt, mine2.txt, mine3.txt, mine4.txt, which" in message
    assert "mine5.txt" not in message and "export_report.json" not in message
    assert "not replaced even with --overwrite" in message


# ----- read_summary_json / read_summary ---------------------------------------


def test_read_summary_json_returns_the_object(tmp_path):
    write_summary(tmp_path, {"task": "lm", "vocab_size": 3})
    assert export_run.read_summary_json(tmp_path) == {"task": "lm", "vocab_size": 3}
    assert export_run.read_summary_json(str(tmp_path)) == {"task": "lm", "vocab_size": 3}


def test_read_summary_json_missing_run_or_file(tmp_path):
    with pytest.raises(UserError, match=r"Run directory .*nowhere does not exist; train first"):
        export_run.read_summary_json(tmp_path / "nowhere")
    (tmp_path / "afile").write_text("{}")
    with pytest.raises(UserError, match="is a file, not a run directory"):
        export_run.read_summary_json(tmp_path / "afile")
    with pytest.raises(UserError, match=r"summary.json is missing \(an unfinished run\?\)"):
        export_run.read_summary_json(tmp_path)


def test_read_summary_json_recognises_a_search_run(tmp_path):
    (tmp_path / "best_arc.json").write_text("{}")
    with pytest.raises(UserError) as error:
        export_run.read_summary_json(tmp_path)
    message = str(error.value)
    assert "is a search run (enas-search)" in message
    assert f"--arc={tmp_path / 'best_arc.json'}" in message


@pytest.mark.parametrize(
    "text, line",
    [('{"dataset": "dig', 1), ('{\n"a": 1,\n}', 3), ("", 1), ('{"a": 1}\n\n{"b": 2}', 3)],
)
def test_read_summary_json_garbled(tmp_path, text, line):
    (tmp_path / "summary.json").write_text(text)
    with pytest.raises(UserError) as error:
        export_run.read_summary_json(tmp_path)
    # The decoder's own words vary with the Python version; the line does not.
    assert re.search(rf"summary.json is not valid JSON \(.+ at line {line}\)", str(error.value))
    assert "corrupt or truncated" in str(error.value)


def test_read_summary_json_unreadable(tmp_path):
    (tmp_path / "summary.json").write_bytes(b'{"dataset": "\xff\xfe"}')
    with pytest.raises(UserError, match="Cannot read .*summary.json"):
        export_run.read_summary_json(tmp_path)
    other = tmp_path / "other"
    (other / "summary.json").mkdir(parents=True)  # a directory: not readable as a file
    with pytest.raises(UserError, match="Cannot read .*summary.json"):
        export_run.read_summary_json(other)


@pytest.mark.parametrize("value", [[1, 2], "text", 3, None])
def test_non_object_summary_is_refused(tmp_path, value):
    write_summary(tmp_path, value)
    for read in (export_run.read_summary_json, export_run.read_summary):
        with pytest.raises(UserError, match=r"is not a run summary \(a JSON object\)"):
            read(tmp_path)


def test_read_summary_makes_the_shape_a_tuple(tmp_path):
    summary = export_run.read_summary(write_summary(tmp_path, {**SUMMARY, "extra": 1}))
    assert summary == {**SUMMARY, "image_shape": (8, 8, 1), "extra": 1}


@pytest.mark.parametrize(
    "change",
    [
        {"image_shape": [8, 8]},
        {"image_shape": [8, 0, 1]},
        {"image_shape": "8x8x1"},
        {"dataset": 3},
        {"num_classes": 3.0},
        {"num_classes": True},
        {"num_classes": 0},
        {"mean": [0.5, 0.5]},
        {"std": [float("nan")]},
        {"mean": "half"},
    ],
)
def test_read_summary_refuses_malformed_values(tmp_path, change):
    write_summary(tmp_path, {**SUMMARY, **change})
    with pytest.raises(UserError, match=r"summary.json is malformed: it needs dataset"):
        export_run.read_summary(tmp_path)


# ----- load_run_model ---------------------------------------------------------


def test_load_run_model_checks_shapes_against_the_summary(tmp_path):
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(inputs))
    keras.Model(inputs, outputs).save(tmp_path / "model.keras")
    summary = export_run.read_summary(write_summary(tmp_path, SUMMARY))
    model = export_run.load_run_model(tmp_path, summary)
    assert tuple(model.outputs[0].shape) == (None, 3)
    for change in ({"num_classes": 10}, {"image_shape": (8, 8, 3)}):
        with pytest.raises(UserError, match="the two files are from different runs"):
            export_run.load_run_model(tmp_path, {**summary, **change})


# ----- staged_export, _install, _size -----------------------------------------


def listing(path):
    return sorted(p.name for p in path.iterdir())


def test_staged_export_creates_the_directory(tmp_path):
    out = tmp_path / "deep" / "export"
    with export_run.staged_export(out) as tmp:
        assert tmp.is_dir() and tmp.parent == out.parent and tmp != out
        assert not out.exists()  # nothing visible until the block ends
        (tmp / "export_report.json").write_text("new")
    assert listing(out) == ["export_report.json"]
    assert listing(out.parent) == ["export"]  # no temporary left


def test_staged_export_replaces_an_old_export_whole(tmp_path):
    out = tmp_path / "export"
    (out / "saved_model").mkdir(parents=True)
    (out / "saved_model" / "old.pb").write_text("old")
    (out / "model_float32.tflite").write_text("old")
    with export_run.staged_export(out) as tmp:
        (tmp / "model_float32.tflite").write_text("new")
    assert listing(out) == ["model_float32.tflite"]
    assert (out / "model_float32.tflite").read_text() == "new"
    assert listing(tmp_path) == ["export"]


@pytest.mark.parametrize("error", [RuntimeError("converter crashed"), KeyboardInterrupt()])
def test_staged_export_keeps_the_old_export_when_the_block_raises(tmp_path, error):
    out = tmp_path / "export"
    out.mkdir()
    (out / "export_report.json").write_text("old")
    with pytest.raises(type(error)):
        with export_run.staged_export(out) as tmp:
            (tmp / "export_report.json").write_text("half")
            raise error
    assert listing(tmp_path) == ["export"]
    assert listing(out) == ["export_report.json"]
    assert (out / "export_report.json").read_text() == "old"


def test_staged_export_without_a_writable_parent(tmp_path):
    (tmp_path / "blocker").write_text("a file where the parent should be")
    with pytest.raises(UserError, match=r"Cannot write .*blocker.*export"):
        with export_run.staged_export(tmp_path / "blocker" / "export"):
            pytest.fail("the block must not run")
    assert listing(tmp_path) == ["blocker"]


def test_install_puts_the_old_export_back_when_the_move_fails(tmp_path, monkeypatch):
    out = tmp_path / "export"
    out.mkdir()
    (out / "export_report.json").write_text("old")
    rename = os.rename

    def failing(src, dst):
        if str(src).endswith("new"):
            raise OSError("disk gone")
        rename(src, dst)

    new = tmp_path / "new"
    new.mkdir()
    monkeypatch.setattr(export_run.os, "rename", failing)
    with pytest.raises(OSError, match="disk gone"):
        export_run._install(new, out)
    monkeypatch.undo()
    assert listing(tmp_path) == ["export", "new"]
    assert (out / "export_report.json").read_text() == "old"


def test_size_of_files_and_directories(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"x" * 10)
    nested = tmp_path / "saved_model" / "variables"
    nested.mkdir(parents=True)
    (nested / "v.data").write_bytes(b"y" * 300)
    (tmp_path / "saved_model" / "saved_model.pb").write_bytes(b"z" * 7)
    (tmp_path / "empty").mkdir()
    assert export_run._size(tmp_path / "a.bin") == 10
    assert export_run._size(tmp_path / "saved_model") == 307
    assert export_run._size(tmp_path / "empty") == 0
    assert export_run._size(tmp_path) == 317


# ----- _check_images ----------------------------------------------------------


def test_check_images():
    images = np.zeros((2, 8, 8, 1), np.uint8)
    assert export_run._check_images(images, (8, 8, 1)) is images
    with pytest.raises(UserError, match="are int64, not uint8 pixels"):
        export_run._check_images(images.astype(np.int64), (8, 8, 1))
    for bad in (np.zeros((0, 8, 8, 1), np.uint8), np.zeros((8, 8, 1), np.uint8)):
        with pytest.raises(UserError, match=r"takes \[N, 8, 8, 1\] images \(N >= 1\)"):
            export_run._check_images(bad, (8, 8, 1))
