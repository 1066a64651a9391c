"""Drives `tools/arc.py` the way a user does, in a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MICRO = "0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1"


def run_arc(*args, cwd=None):
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "arc.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=60,
    )


def assert_user_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr  # one paragraph
    for fragment in fragments:
        assert fragment in result.stderr


def test_show_published_by_name():
    result = run_arc("show", "enas_micro_final")
    assert result.returncode == 0, result.stderr
    assert f"# arc: {MICRO}" in result.stdout
    assert "node3 = max_pool_3x3(node0) + avg_pool_3x3(node0)" in result.stdout


def test_size_is_inferred_from_a_plain_string():
    result = run_arc("validate", "--space=micro", "0 1 1 4 0 0 0 3")
    assert result.returncode == 0, result.stderr
    assert "valid micro(num_nodes=1, num_ops=5)" in result.stdout


def test_convert_string_json_string(tmp_path):
    out = tmp_path / "arc.json"
    result = run_arc("convert", "--space=micro", MICRO, "--to=json", f"--output={out}")
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["space"] == "micro" and data["config"]["num_nodes"] == 5
    back = run_arc("convert", str(out), "--to=string")
    assert back.stdout.strip() == MICRO


def test_output_is_never_overwritten_without_asking(tmp_path):
    out = tmp_path / "arc.txt"
    out.write_text("keep me")
    result = run_arc("random", "--space=rnn", f"--output={out}")
    assert_user_error(result, "already exists", "--overwrite")
    assert out.read_text() == "keep me"
    result = run_arc("random", "--space=rnn", "--seed=1", f"--output={out}", "--overwrite")
    assert result.returncode == 0
    assert len(out.read_text().split()) == 18
    assert [p.name for p in tmp_path.iterdir()] == ["arc.txt"]  # no temp files


def test_draw_writes_a_png(tmp_path):
    out = tmp_path / "micro.png"
    result = run_arc("draw", "enas_micro_final", f"--output={out}")
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    result = run_arc("draw", "--space=rnn", "0 1 1 3", f"--output={out}", "--overwrite")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert [p.name for p in tmp_path.iterdir()] == ["micro.png"]  # no temp files


def test_draw_needs_a_png_output():
    assert_user_error(run_arc("draw", "enas_lm_ptb"), "--output=FILE.png")
    assert_user_error(run_arc("draw", "enas_lm_ptb", "--output=cell.jpg"), ".png")
    assert_user_error(run_arc("draw", "--output=cell.png"), "needs an architecture")


def test_draw_never_overwrites_without_asking(tmp_path):
    out = tmp_path / "cell.png"
    out.write_bytes(b"keep me")
    result = run_arc("draw", "enas_lm_ptb", f"--output={out}")
    assert_user_error(result, "already exists", "--overwrite")
    assert out.read_bytes() == b"keep me"


def test_random_is_seeded():
    a = run_arc("random", "--space=macro", "--num_layers=5", "--seed=4").stdout
    b = run_arc("random", "--space=macro", "--num_layers=5", "--seed=4").stdout
    assert a == b and len(a.split()) == 15


def test_info_and_list():
    info = run_arc("info", "--space=rnn_legacy", "--num_nodes=12")
    assert "size       669692775628800 (~6.7e+14)" in info.stdout  # 4^12 * 11!
    listing = run_arc("list")
    assert "enas_lm_ptb" in listing.stdout and "rnn_legacy" in listing.stdout


@pytest.mark.parametrize(
    "args, fragments",
    [
        (
            ["show", "--space=micro", "--num_nodes=5", "0 1 2"],
            ["expected 40 integers", "received 3"],
        ),
        (
            ["show", "--space=micro", MICRO.replace("4 0 3 1 1", "4 0 3 1 9")],
            ["position 39", "[0, 4]", "received: 9"],
        ),
        (["show", "--space=micro", "0 1 x 4 0 0 0 3"], ["position 2", "'x'"]),
        (["show", "0 1 1 4"], ["needs its space (--space="]),
        (
            ["show", "--space=rnn_legacy", "enas_lm_ptb"],
            ["for the rnn space, not the rnn_legacy space"],
        ),
        (["show"], ["needs an architecture"]),
        (["frobnicate"], ["Give a command"]),
        (["--space=cnn", "list"], ["--space=cnn", "macro|micro|rnn|rnn_legacy"]),
        (["--num_nodes=0", "list"], ["num_nodes"]),
        (["show", "no_such_file.json"], ["'no_such_file.json' is not an existing file"]),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(args, fragments):
    assert_user_error(run_arc(*args), *fragments)


def test_bad_json_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"space": "micro", "arc": [1, 2')
    assert_user_error(run_arc("show", str(bad)), "not valid JSON")


def test_runs_as_module():
    """`python -m tools.arc` is the same tool: the same output as the
    script, and the same one-line errors."""

    def as_module(*args):
        return subprocess.run(
            [sys.executable, "-m", "tools.arc", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    result = as_module("validate", "enas_lm_ptb")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "valid rnn(num_nodes=8, num_funcs=4) architecture\n"
    result = as_module("show", "enas_micro_final")
    assert result.returncode == 0, result.stderr
    assert result.stdout == run_arc("show", "enas_micro_final").stdout
    assert f"# arc: {MICRO}" in result.stdout
    result = as_module("validate", "--space=rnn", "0 2 1 9")
    assert_user_error(result, "position 3 (node2/activation)", "received: 9")
    assert result.stderr.startswith("arc.py: error: ")
