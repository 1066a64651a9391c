"""Tests of run directories: atomic writes and resuming (`enas_tf.runtime.rundir`)."""

import json
import os

import pytest

from enas_tf.errors import UserError
from enas_tf.runtime import rundir

CONFIG = {"space": "micro", "epochs": 10, "child": {"out_filters": 4, "num_layers": 3}}


def _leftovers(directory):
    return [p.name for p in directory.iterdir() if p.name.startswith(".tmp-")]


def _config(directory):
    return json.loads((directory / rundir.CONFIG_FILE).read_text())


def test_write_text_and_bytes_atomic(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    rundir.write_text_atomic(str(path), "héllo\n")
    assert path.read_bytes() == "héllo\n".encode()
    rundir.write_bytes_atomic(str(path), b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    # Not the private mode of the temporary file.
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert not _leftovers(tmp_path / "sub")


def test_write_json_atomic(tmp_path):
    path = tmp_path / "c.json"
    rundir.write_json_atomic(str(path), {"b": 1, "a": [1, 2]})
    text = path.read_text()
    assert json.loads(text) == {"b": 1, "a": [1, 2]}
    assert text.endswith("\n") and text.index('"b"') < text.index('"a"')
    assert not _leftovers(tmp_path)


def test_overwrite_false_refuses_an_existing_file(tmp_path):
    path = tmp_path / "a.txt"
    rundir.write_text_atomic(str(path), "old", overwrite=False)
    with pytest.raises(UserError, match="already exists"):
        rundir.write_text_atomic(str(path), "new", overwrite=False)
    with pytest.raises(UserError, match="already exists"):
        rundir.write_bytes_atomic(str(path), b"new", overwrite=False)
    assert path.read_text() == "old"
    assert not _leftovers(tmp_path)


def test_a_directory_path_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(UserError, match="is a directory"):
        rundir.write_bytes_atomic(str(tmp_path / "d"), b"x")
    assert list((tmp_path / "d").iterdir()) == []
    assert not _leftovers(tmp_path)


def test_a_path_under_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="is a file, not a directory"):
        rundir.write_text_atomic(str(tmp_path / "f" / "a.txt"), "y")
    assert (tmp_path / "f").read_text() == "x"


def test_differences():
    old = {"a": 1, "n": {"b": 2, "c": 3}, "gone": 0}
    new = {"a": 1, "n": {"b": 5, "c": 3}, "added": True}
    assert rundir.differences(old, new) == {
        "added": (None, True),
        "gone": (0, None),
        "n.b": (2, 5),
    }
    assert rundir.differences(CONFIG, json.loads(json.dumps(CONFIG))) == {}


def test_check_output_dir(tmp_path):
    rundir.check_output_dir(str(tmp_path / "new" / "run"))  # does not exist yet
    (tmp_path / "empty").mkdir()
    rundir.check_output_dir(str(tmp_path / "empty"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="holds no config.json"):
        rundir.check_output_dir(str(tmp_path / "other"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file, not a directory"):
        rundir.check_output_dir(str(tmp_path / "file" / "run"))
    # A run directory passes; nothing was written by the checks.
    rundir.prepare(str(tmp_path / "run"), CONFIG, overwrite=False)
    rundir.check_output_dir(str(tmp_path / "run"))
    assert not (tmp_path / "new").exists()
    assert list((tmp_path / "empty").iterdir()) == []


def test_new_run_then_resume(tmp_path):
    out = tmp_path / "run"
    assert rundir.prepare(str(out), CONFIG, overwrite=False) is False
    assert _config(out) == CONFIG
    assert rundir.prepare(str(out), CONFIG, overwrite=False) is True
    assert _config(out) == CONFIG
    assert not _leftovers(out)


def test_a_safe_change_resumes_with_the_new_value(tmp_path):
    out = tmp_path / "run"
    rundir.prepare(str(out), CONFIG, overwrite=False)
    more = {**CONFIG, "epochs": 20}
    assert rundir.prepare(str(out), more, overwrite=False, safe_keys=["epochs"]) is True
    assert _config(out)["epochs"] == 20


def test_an_unsafe_change_is_refused_naming_the_key(tmp_path):
    out = tmp_path / "run"
    rundir.prepare(str(out), CONFIG, overwrite=False)
    before = (out / rundir.CONFIG_FILE).read_bytes()
    changed = {**CONFIG, "epochs": 20, "child": {"out_filters": 8, "num_layers": 3}}
    with pytest.raises(UserError, match=r"child\.out_filters: 4 -> 8") as error:
        rundir.prepare(str(out), changed, overwrite=False, safe_keys=["epochs"])
    assert "epochs" not in str(error.value)  # safe: not listed
    assert "--overwrite" in str(error.value)
    assert (out / rundir.CONFIG_FILE).read_bytes() == before


def test_overwrite_removes_only_the_run_files(tmp_path):
    out = tmp_path / "run"
    rundir.prepare(str(out), CONFIG, overwrite=False)
    (out / "log.jsonl").write_text("old log")
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "ckpt-1.index").write_text("x")
    (out / "notes.txt").write_text("mine")
    changed = {**CONFIG, "space": "macro"}
    resumed = rundir.prepare(
        str(out), changed, overwrite=True, run_files=["log.jsonl", "checkpoints", "missing"]
    )
    assert resumed is False
    assert sorted(p.name for p in out.iterdir()) == [rundir.CONFIG_FILE, "notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"
    assert _config(out) == changed


def test_overwrite_does_not_clear_a_compatible_run(tmp_path):
    out = tmp_path / "run"
    rundir.prepare(str(out), CONFIG, overwrite=False)
    (out / "log.jsonl").write_text("log")
    assert rundir.prepare(str(out), CONFIG, overwrite=True, run_files=["log.jsonl"]) is True
    assert (out / "log.jsonl").read_text() == "log"


def test_prepare_refuses_a_directory_of_something_else(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "data.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="not a run directory"):
        rundir.prepare(str(out), CONFIG, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["data.bin"]


def test_an_upgraded_older_run_resumes(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    old = {"search": {"controller": "reinforce", "epochs": 3}}
    (out / rundir.CONFIG_FILE).write_text(json.dumps(old))
    new = {"search": {"algorithm": "reinforce", "epochs": 3}}

    def renamed(config):
        search = dict(config["search"])
        if "controller" in search:
            search["algorithm"] = search.pop("controller")
        return {**config, "search": search}

    # Without the upgrade the two keys differ.
    with pytest.raises(UserError, match="search.controller"):
        rundir.prepare(str(out), new, overwrite=False)
    assert rundir.prepare(str(out), new, overwrite=False, upgrade=renamed) is True
    written = _config(out)
    assert written == new and "controller" not in json.dumps(written)
    # A different value under the new name is still a different run.
    with pytest.raises(UserError, match="search.algorithm: 'reinforce' -> 'random'"):
        rundir.prepare(
            str(out),
            {"search": {"algorithm": "random", "epochs": 3}},
            overwrite=False,
            upgrade=renamed,
        )
