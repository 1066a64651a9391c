"""Drives `tools/search.py` (enas-search) in a subprocess."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_search(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "search.py"), *args],
        capture_output=True, text=True, cwd=cwd, timeout=600,
    )


def assert_user_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("search.py: error: "), result.stderr
    for fragment in fragments:
        assert fragment in last, last


@pytest.mark.parametrize(
    "flagfile", ["flags/cifar10_micro_search.flags", "flags/cifar10_macro_search.flags"])
def test_cifar_flag_files_parse_and_need_the_data(flagfile, tmp_path):
    # The flags parse and pass the checks; the run stops at the missing data
    # with the one-line message, before writing anything.
    result = run_search(f"--flagfile={ROOT / flagfile}", f"--output_dir={tmp_path / 'x'}",
                        f"--data_dir={tmp_path}", cwd=tmp_path)
    assert_user_error(result, "cifar10", "not available offline")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "args, fragments",
    [
        ([], ["--output_dir"]),
        (["--output_dir=x", "--space=rnn"], ["--space=rnn"]),
        (["--output_dir=x", "--epochs=0"], ["epochs must be >= 1"]),
        (["--output_dir=x", "--lr_min=1"], ["lr_min <= lr_max"]),
        (["--output_dir=x", "--valid_size=2000"], ["valid_size=2000"]),
        (["--output_dir=x", "--controller=evolution"], ["--controller=evolution"]),
        (["--output_dir=x", "--devices=/cpu:0"], ["--devices needs --strategy=mirrored"]),
        (["--output_dir=x", "--strategy=mirrored", "--devices=/gpu:7"],
         ["Unknown device(s) /gpu:7", "/cpu:0"]),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, fragments):
    assert_user_error(run_search(*args, cwd=tmp_path), *fragments)
    assert list(tmp_path.iterdir()) == []
