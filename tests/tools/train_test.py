"""Drives `tools/train.py` (enas-train) in a subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from enas_tf import data
from enas_tf.configs.image import SearchConfig
from enas_tf.testing import run_at_once, search_run

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--dataset=digits",
    "--valid_size=100",
    "--num_layers=3",
    "--out_filters=4",
    "--epochs=1",
    "--batch_size=256",
    "--pad=1",
    "--verbose=0",
]


def run_train(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "train.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def assert_user_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: error: "), result.stderr
    for fragment in fragments:
        assert fragment in last, last


def test_trains_a_published_cell_and_prints_where_things_are(tmp_path):
    out = tmp_path / "run"
    result = run_train("--arc=enas_micro_final", f"--output_dir={out}", *TINY)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["arc"].startswith("0 2 0 0 0 4") and summary["epochs"] == 1
    assert summary["config"]["child"]["num_layers"] == 3
    assert f"model:       {out / 'model.keras'}" in result.stdout
    assert "test accuracy" in result.stdout
    # Same directory, different architecture: refused, run left as it was.
    before = (out / "summary.json").read_text()
    again = run_train("--space=micro", "--arc=0 1 1 4 0 0 0 3", f"--output_dir={out}", *TINY)
    assert_user_error(again, "holds a different run", "--overwrite")
    assert (out / "summary.json").read_text() == before


BAD_INPUT = [
    (["--output_dir=x"], ["--arc"]),
    (["--arc=enas_micro_final"], ["--output_dir"]),
    (["--arc=0 1 2", "--output_dir=x"], ["needs its space"]),
    (["--space=micro", "--arc=0 1 2", "--output_dir=x"], ["expected 40 integers", "received 3"]),
    (
        ["--space=micro", "--arc=0 9 1 4 0 0 0 3", "--output_dir=x"],
        ["position 1", "[0, 4]", "received: 9"],
    ),
    (["--arc=enas_lm_ptb", "--dataset=digits", "--output_dir=x"], ["rnn cell", "--dataset=ptb"]),
    (["--arc=enas_ptb_legacy", "--output_dir=x"], ["rnn_legacy"]),
    (["--arc=enas_macro_final", "--aux_weight=0.4", "--output_dir=x"], ["no auxiliary head"]),
    (["--arc=enas_micro_final", "--out_filters=7", "--output_dir=x"], ["even number"]),
    (["--arc=enas_micro_final", "--lr_min=1", "--output_dir=x"], ["lr_min <= lr_max"]),
    (
        [
            "--arc=enas_micro_final",
            "--dataset=cifar10",
            "--data_dir=/nonexistent",
            "--output_dir=x",
        ],
        ["cifar10", "not available offline", "--download"],
    ),
    (["--arc=enas_micro_final", "--keep_prob=1.5", "--output_dir=x"], ["keep_prob"]),
    (["--init_from_search=no_search", "--output_dir=x"], ["no_search does not exist"]),
]


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory):
    """Every BAD_INPUT run, all at once, each in an empty directory of its own."""
    commands = {}
    for args, _ in BAD_INPUT:
        cwd = tmp_path_factory.mktemp("bad_input")
        commands[tuple(args)] = ([sys.executable, str(ROOT / "tools" / "train.py"), *args], cwd)
    return commands, run_at_once(commands, timeout=300)


@pytest.mark.parametrize("args, fragments", BAD_INPUT)
def test_bad_input_exits_2_and_writes_nothing(bad_input_runs, args, fragments):
    commands, results = bad_input_runs
    assert_user_error(results[tuple(args)], *fragments)
    assert list(commands[tuple(args)][1].iterdir()) == []


def test_foreign_output_dir_is_refused(tmp_path):
    (tmp_path / "data.csv").write_text("keep")
    result = run_train("--arc=enas_micro_final", f"--output_dir={tmp_path}", *TINY)
    assert_user_error(result, "not a run directory")
    assert [p.name for p in tmp_path.iterdir()] == ["data.csv"]


FLAG_FILES = {
    "flags/cifar10_macro_final.flags": "params 30,947,424 ",
    "flags/cifar10_micro_final.flags": "params 3,729,420 (training model 4,224,268)",
    "flags/cifar10_micro_final_cutout.flags": "params 3,729,420 ",
    "flags/digits_quick.flags": "params 244,176 ",
}


@pytest.fixture(scope="module")
def dry_runs():
    """The flag files' dry runs, all at once: each builds a large network."""
    return run_at_once(
        {
            flagfile: (
                [
                    sys.executable,
                    str(ROOT / "tools" / "train.py"),
                    f"--flagfile={flagfile}",
                    "--dry_run",
                ],
                ROOT,
            )
            for flagfile in FLAG_FILES
        },
        timeout=300,
    )


@pytest.mark.parametrize("flagfile", FLAG_FILES)
def test_flag_files_build_the_published_networks(dry_runs, flagfile):
    assert dry_runs[flagfile].returncode == 0, dry_runs[flagfile].stderr
    assert FLAG_FILES[flagfile] in dry_runs[flagfile].stdout


@pytest.fixture(scope="module")
def search_dir(tmp_path_factory):
    """A micro search run (2 nodes, 3 cells, 4 filters) on digits."""
    out = tmp_path_factory.mktemp("search") / "run"
    config = SearchConfig.from_flat(num_nodes=2, num_layers=3, out_filters=4, flip=False, pad=1)
    search_run(str(out), config, data.load_images("digits", valid_size=100))
    return out


def _files(directory):
    return {p: p.stat().st_mtime_ns for p in directory.rglob("*")}


def test_starts_from_a_search_and_resumes_from_its_own_backup(search_dir, tmp_path):
    out = tmp_path / "run"
    before = _files(search_dir)
    result = run_train(f"--init_from_search={search_dir}", f"--output_dir={out}", *TINY)
    assert result.returncode == 0, result.stderr
    assert "started from: " in result.stdout
    inherited = json.loads((out / "inherited.json").read_text())
    assert inherited["checkpoint"] == str(search_dir / "checkpoints" / "ckpt-1")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inherited"] == inherited and summary["epochs"] == 1
    best = json.loads((search_dir / "best_arc.json").read_text())
    assert summary["arc"] == " ".join(map(str, best["arc"]))  # the default --arc
    assert summary["config"]["init_from_search"] == str(search_dir)
    # Rerun: the run resumes from its backup; the search is not read again.
    stamp = (out / "inherited.json").stat().st_mtime_ns
    again = run_train(f"--init_from_search={search_dir}", f"--output_dir={out}", *TINY)
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "summary.json").read_text())["resumed"]
    assert (out / "inherited.json").stat().st_mtime_ns == stamp
    assert _files(search_dir) == before


def test_a_search_of_other_sizes_is_refused(search_dir, tmp_path):
    out = tmp_path / "run"
    result = run_train(
        f"--init_from_search={search_dir}",
        f"--output_dir={out}",
        *TINY,
        "--out_filters=8",
    )
    assert_user_error(
        result,
        "out_filters is 8 here but 4 in the search",
        "--out_filters=4",
        "drop --init_from_search",
    )
    assert not out.exists()
