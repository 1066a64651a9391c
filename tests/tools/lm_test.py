"""Drives the tools on language models (tiny generated text) in subprocesses:
enas-search --space=rnn, enas-train on an rnn cell, enas-export."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from enas_tf.testing import run_at_once, write_tiny_ptb

ROOT = Path(__file__).resolve().parents[2]
SEARCH = [
    "--space=rnn",
    "--num_nodes=3",
    "--hidden_size=8",
    "--batch_size=4",
    "--bptt=5",
    "--epochs=1",
    "--max_steps_per_epoch=4",
    "--eval_batch_size=2",
    "--controller_steps=1",
    "--num_aggregate=2",
    "--log_arcs=1",
    "--derive_samples=2",
    "--verbose=0",
]
# Settings that learn in 50 steps whatever the searched cell: light
# dropout, a stable learning rate and a larger initialisation (from the
# default 0.05, cells without a sigmoid sit near h = 0 with tiny gradients
# for a hundred steps).
TRAIN = [
    "--hidden_size=8",
    "--batch_size=4",
    "--bptt=5",
    "--epochs=1",
    "--max_steps_per_epoch=50",
    "--eval_batch_size=2",
    "--init_range=0.5",
    "--learning_rate=5",
    "--grad_bound=1",
    "--drop_e=0.05",
    "--drop_i=0.1",
    "--drop_x=0.3",
    "--drop_l=0.1",
    "--drop_o=0.3",
    "--verbose=0",
]


def run_tool(tool, *args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / f"{tool}.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def assert_user_error(result, tool, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{tool}.py: error: "), result.stderr
    for fragment in fragments:
        assert fragment in last, last


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    return write_tiny_ptb(str(tmp_path_factory.mktemp("tiny")))


def test_darts_search_derives_an_enas_lm_arc(text, tmp_path):
    out = tmp_path / "darts"
    args = [a for a in SEARCH if not a.startswith(("--controller_steps", "--num_aggregate"))]
    result = run_tool(
        "search", *args, "--algorithm=darts", f"--data_dir={text}", f"--output_dir={out}"
    )
    assert result.returncode == 0, result.stderr
    assert "one-hot (DARTS: retrain it)" in result.stdout
    best = json.loads((out / "best_arc.json").read_text())
    assert best["space"] == "rnn" and len(best["arc"]) == 6
    config = json.loads((out / "config.json").read_text())["search"]
    assert config["strategy"]["darts_order"] == 1 and config["strategy"]["arch_lr"] == 3e-3


def test_search_train_export(text, tmp_path):
    search_dir, train_dir = tmp_path / "search", tmp_path / "train"
    result = run_tool("search", *SEARCH, f"--data_dir={text}", f"--output_dir={search_dir}")
    assert result.returncode == 0, result.stderr
    assert "best architecture (valid perplexity" in result.stdout
    best = json.loads((search_dir / "best_arc.json").read_text())
    assert best["space"] == "rnn" and len(best["arc"]) == 6

    args = [
        f"--arc={search_dir / 'best_arc.json'}",
        f"--data_dir={text}",
        f"--output_dir={train_dir}",
        *TRAIN,
    ]
    result = run_tool("train", *args)
    assert result.returncode == 0, result.stderr
    assert "test perplexity" in result.stdout
    summary = json.loads((train_dir / "summary.json").read_text())
    assert summary["arc"] == " ".join(map(str, best["arc"]))
    assert summary["epochs"] == 1 and summary["steps"] == 50
    # Learned: uniform (and untrained) is the vocabulary size, 31; 50 steps
    # reach 15-18 on 8 random cells, about the unigram perplexity (19.9).
    assert summary["vocab_size"] == 31
    assert 1.0 < summary["test_perplexity"] < 0.75 * summary["vocab_size"]
    # Rerun with one more epoch: resumes.
    result = run_tool("train", *args, "--epochs=2")
    assert result.returncode == 0, result.stderr
    summary = json.loads((train_dir / "summary.json").read_text())
    assert summary["resumed"] and summary["epochs"] == 2

    result = run_tool("export", f"--run_dir={train_dir}", "--num_samples=3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "saved_model" in result.stdout and "exported to" in result.stdout
    report = json.loads((train_dir / "export" / "export_report.json").read_text())
    assert report["passed"] and report["num_sequences"] == 3


BAD_INPUT = [
    ("search", ["--space=rnn", "--dataset=digits"], ["--space=rnn", "--dataset=ptb"]),
    ("search", ["--dataset=ptb"], ["search it with --space=rnn"]),
    ("search", ["--hidden_size=8"], ["--hidden_size applies only to language-model"]),
    (
        "search",
        ["--space=rnn", "--data_dir=.", "--out_filters=8"],
        ["--out_filters applies only to image searches"],
    ),
    (
        "search",
        ["--space=rnn", "--data_dir=/nonexistent"],
        ["/nonexistent does not exist", "train.txt"],
    ),
    ("search", ["--space=rnn", "--data_dir=.", "--drop_x=1.5"], ["drop_x"]),
    (
        "search",
        ["--space=rnn", "--data_dir=.", "--strategy=mirrored"],
        ["--strategy applies only to image searches"],
    ),
    ("train", ["--arc=enas_lm_ptb", "--dataset=digits"], ["rnn cell", "--dataset=ptb"]),
    ("train", ["--arc=enas_micro_final", "--dataset=ptb"], ["trains language models", "micro"]),
    ("train", ["--arc=enas_lm_ptb"], ["--dataset=ptb needs --data_dir"]),
    ("train", ["--arc=enas_lm_ptb", "--data_dir=."], ["train.txt is missing"]),
    (
        "train",
        ["--arc=enas_lm_ptb", "--data_dir=.", "--l2=0.1"],
        ["--l2 applies only to image networks"],
    ),
    (
        "train",
        ["--arc=enas_micro_final", "--hidden_size=8"],
        ["--hidden_size applies only to language models"],
    ),
    ("train", ["--space=rnn", "--arc=0 2 5 0", "--data_dir=."], ["position 2"]),
]


def tool_command(tool, *args):
    return [sys.executable, str(ROOT / "tools" / f"{tool}.py"), *args]


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """The runs that only parse, build or check, all at once: the published
    cell's dry run, the flag files without --data_dir (in one empty
    directory) and BAD_INPUT (each in an empty directory of its own)."""
    commands = {
        "final": (tool_command("train", "--flagfile=flags/ptb_final.flags", "--dry_run"), ROOT)
    }
    flags = tmp_path_factory.mktemp("flags")
    # Without --data_dir both stop at the same one-line message, after
    # parsing every flag of the file (search-only ones are --undefok).
    for tool in ("search", "train"):
        extra = ["--arc=enas_lm_ptb"] if tool == "train" else []
        commands[("quick", tool)] = (
            tool_command(
                tool,
                f"--flagfile={ROOT / 'flags/ptb_quick.flags'}",
                *extra,
                f"--output_dir={flags / 'x'}",
            ),
            flags,
        )
    for name in ("search", "darts_search"):
        commands[f"{name}_flags"] = (
            tool_command(
                "search",
                f"--flagfile={ROOT / f'flags/ptb_{name}.flags'}",
                f"--output_dir={flags / 'x'}",
            ),
            flags,
        )
    for tool, args, _ in BAD_INPUT:
        cwd = tmp_path_factory.mktemp("bad_input")
        commands[(tool, *args)] = (tool_command(tool, *args, "--output_dir=out"), cwd)
    return commands, run_at_once(commands)


def test_final_flag_file_builds_the_published_cell(quick_runs):
    result = quick_runs[1]["final"]
    assert result.returncode == 0, result.stderr
    assert "params 20,800,000" in result.stdout  # spec sec. 5.4, H = 800


def test_quick_flag_file_parses_for_both_tools(quick_runs):
    commands, results = quick_runs
    for tool in ("search", "train"):
        assert_user_error(results[("quick", tool)], tool, "--dataset=ptb needs --data_dir")
    for name in ("search_flags", "darts_search_flags"):
        assert_user_error(results[name], "search", "--dataset=ptb needs --data_dir")
    assert list(commands["search_flags"][1].iterdir()) == []


@pytest.mark.parametrize("tool, args, fragments", BAD_INPUT)
def test_bad_input_exits_2_and_writes_nothing(quick_runs, tool, args, fragments):
    commands, results = quick_runs
    assert_user_error(results[(tool, *args)], tool, *fragments)
    assert list(commands[(tool, *args)][1].iterdir()) == []
