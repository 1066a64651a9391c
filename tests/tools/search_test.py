"""Drives `tools/search.py` (enas-search) in a subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from enas_tf.data import load_images
from enas_tf.testing import (
    keras_probs,
    read_events,
    run_at_once,
    tflite_interpreter,
    tflite_probs,
)

ROOT = Path(__file__).resolve().parents[2]


def run_search(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "search.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def assert_user_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("search.py: error: "), result.stderr
    for fragment in fragments:
        assert fragment in last, last


CIFAR_FLAG_FILES = [
    "flags/cifar10_micro_search.flags",
    "flags/cifar10_macro_search.flags",
    "flags/cifar10_darts_search.flags",
]
EVOLUTION = "flags/digits_evolution.flags"
EVOLUTION_TINY = [
    "--num_layers=3",
    "--num_nodes=2",
    "--out_filters=4",
    "--epochs=1",
    "--batch_size=256",
    "--lr_t0=1",
    "--valid_size=100",
    "--controller_steps=2",
    "--num_aggregate=3",
    "--population_size=4",
    "--sample_size=2",
    "--log_arcs=1",
    "--derive_samples=3",
    "--verbose=0",
]
NAS = "flags/digits_nas.flags"
NAS_TINY = [
    "--space=macro",
    "--num_layers=2",
    "--out_filters=4",
    "--epochs=1",
    "--batch_size=128",
    "--valid_size=100",
    "--train_size=300",
    "--num_aggregate=2",
    "--child_epochs=2",
    "--log_arcs=1",
    "--derive_samples=2",
    "--verbose=0",
]
DARTS = "flags/digits_darts.flags"
MACRO_DARTS = "flags/digits_macro_darts.flags"
DARTS_TINY = [
    "--num_layers=3",
    "--num_nodes=1",
    "--out_filters=4",
    "--epochs=2",
    "--batch_size=128",
    "--valid_size=100",
    "--train_size=256",
    "--lr_t0=2",
    "--darts_order=2",
    "--verbose=0",
]
BAD_INPUT = [
    ([], ["--output_dir"]),
    (["--output_dir=x", "--space=rnn"], ["--dataset=ptb needs --data_dir"]),
    (["--output_dir=x", "--space=rnn", "--dataset=mnist"], ["--space=rnn", "--dataset=ptb"]),
    (["--output_dir=x", "--epochs=0"], ["epochs must be >= 1"]),
    (["--output_dir=x", "--lr_min=1"], ["lr_min <= lr_max"]),
    (["--output_dir=x", "--valid_size=2000"], ["valid_size=2000"]),
    (
        ["--output_dir=x", "--algorithm=annealing"],
        ["--algorithm=annealing", "darts|evolution|nas|random|reinforce"],
    ),
    # The flag's old name is an alias.
    (["--output_dir=x", "--controller=annealing"], ["--algorithm=annealing"]),
    (
        ["--output_dir=x", "--algorithm=evolution", "--sample_size=101"],
        ["sample_size must be in [1, population_size=100]"],
    ),
    (["--output_dir=x", "--algorithm=nas", "--child_epochs=0"], ["child_epochs must be >= 1"]),
    (
        ["--output_dir=x", "--algorithm=evolution", "--evaluation=scratch", "--reward_power=0"],
        ["reward_power must be > 0"],
    ),
    (
        ["--output_dir=x", "--algorithm=nas", "--strategy=mirrored"],
        ["trains each child on one device", "drop --strategy"],
    ),
    (["--output_dir=x", "--devices=/cpu:0"], ["--devices needs --strategy=mirrored"]),
    (["--output_dir=x", "--algorithm=darts", "--space=macro"], ["no dropout; give --keep_prob=1"]),
    (
        ["--output_dir=x", "--algorithm=darts", "--keep_prob=1", "--strategy=mirrored"],
        ["--algorithm=darts runs on one device"],
    ),
    (["--output_dir=x", "--algorithm=darts", "--darts_order=3"], ["darts_order must be 1 or 2"]),
    # Users' own data: a folder of class subfolders or a TFDS name.
    (["--output_dir=x", "--dataset=bogus"], ["Unknown image dataset 'bogus'", "tfds:NAME"]),
    (["--output_dir=x", "--dataset=folder"], ["--dataset=folder needs --data_dir"]),
    (["--output_dir=x", "--dataset=folder", "--data_dir=."], ["has 0 class subfolder"]),
    # A strategy's own setting is checked with the others.
    (["--output_dir=x", "--controller_lr=0"], ["controller_lr must be > 0"]),
    (
        ["--output_dir=x", "--strategy=mirrored", "--devices=/gpu:7"],
        ["Unknown device(s) /gpu:7", "/cpu:0"],
    ),
]


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """The runs that stop at a check, all at once, each in an empty directory
    of its own (the cifar flag files also with --data_dir there)."""
    commands = {}
    for flagfile in CIFAR_FLAG_FILES:
        cwd = tmp_path_factory.mktemp("cifar")
        commands[flagfile] = (
            [
                sys.executable,
                str(ROOT / "tools" / "search.py"),
                f"--flagfile={ROOT / flagfile}",
                f"--output_dir={cwd / 'x'}",
                f"--data_dir={cwd}",
            ],
            cwd,
        )
    # One flag file serves every algorithm: random search ignores the
    # controller's settings of the macro flag file.
    cwd = tmp_path_factory.mktemp("random")
    commands["random"] = (
        [*commands[CIFAR_FLAG_FILES[1]][0][:2], f"--flagfile={ROOT / CIFAR_FLAG_FILES[1]}"]
        + ["--algorithm=random", f"--output_dir={cwd / 'x'}", f"--data_dir={cwd}"],
        cwd,
    )
    # The evolution flag file, shrunk to seconds (the same flags as the
    # quickstart's with --algorithm=evolution and a population).
    cwd = tmp_path_factory.mktemp("evolution")
    commands["evolution"] = (
        [sys.executable, str(ROOT / "tools" / "search.py"), f"--flagfile={ROOT / EVOLUTION}"]
        + [*EVOLUTION_TINY, f"--output_dir={cwd / 'run'}"],
        cwd,
    )
    # NAS without weight sharing, shrunk to seconds.
    cwd = tmp_path_factory.mktemp("nas")
    commands["nas"] = (
        [sys.executable, str(ROOT / "tools" / "search.py"), f"--flagfile={ROOT / NAS}"]
        + [*NAS_TINY, f"--output_dir={cwd / 'run'}"],
        cwd,
    )
    # DARTS, second order, shrunk to seconds.
    cwd = tmp_path_factory.mktemp("darts")
    commands["darts"] = (
        [sys.executable, str(ROOT / "tools" / "search.py"), f"--flagfile={ROOT / DARTS}"]
        + [*DARTS_TINY, f"--output_dir={cwd / 'run'}"],
        cwd,
    )
    # The macro DARTS flag file passes the flag and config checks and stops
    # at the data (the search itself: tests/search/darts_test.py).
    cwd = tmp_path_factory.mktemp("macro_darts")
    commands[MACRO_DARTS] = (
        [sys.executable, str(ROOT / "tools" / "search.py"), f"--flagfile={ROOT / MACRO_DARTS}"]
        + ["--valid_size=2000", f"--output_dir={cwd / 'run'}"],
        cwd,
    )
    for args, _ in BAD_INPUT:
        cwd = tmp_path_factory.mktemp("bad_input")
        commands[tuple(args)] = ([sys.executable, str(ROOT / "tools" / "search.py"), *args], cwd)
    return commands, run_at_once(commands)


@pytest.mark.parametrize("flagfile", CIFAR_FLAG_FILES)
def test_cifar_flag_files_parse_and_need_the_data(quick_runs, flagfile):
    # The flags parse and pass the checks; the run stops at the missing data
    # with the one-line message, before writing anything.
    commands, results = quick_runs
    assert_user_error(results[flagfile], "cifar10", "not available offline")
    assert not (commands[flagfile][1] / "x").exists()


def test_other_strategies_flags_are_ignored_with_a_warning(quick_runs):
    commands, results = quick_runs
    result = results["random"]
    assert_user_error(result, "cifar10", "not available offline")
    warning = next(line for line in result.stderr.splitlines() if "ignored" in line)
    for name in ("controller_lr", "tanh_constant", "skip_weight", "baseline_decay"):
        assert f"--{name}" in warning
    assert "do not apply to --algorithm=random" in warning


def test_evolution_flag_file_searches(quick_runs):
    commands, results = quick_runs
    result = results["evolution"]
    assert result.returncode == 0, result.stderr
    run = commands["evolution"][1] / "run"
    config = json.loads((run / "config.json").read_text())["search"]
    assert config["algorithm"] == "evolution"
    assert config["strategy"] == {
        "population_size": 4,
        "sample_size": 2,
        "train_arcs": "uniform",
        "evaluation": "shared",
        # Settings of evaluation=scratch (unused here), at their defaults.
        "child_epochs": 20,
        "reward_epochs": 5,
        "reward_power": 3.0,
        "parallel_children": 1,
    }
    (log,) = [json.loads(line) for line in (run / "search_log.jsonl").open()]
    # The epoch's mean over its 2 updates of 3 proposals: 3, then 4 (full).
    assert log["controller/population_size"] == 3.5
    assert 0.0 <= log["controller/population_best"] <= 1.0
    candidates = json.loads((run / "candidates.json").read_text())["candidates"]
    assert candidates[0]["arc"] == (run / "best_arc.txt").read_text().strip()


def test_nas_flag_file_trains_children_from_scratch(quick_runs):
    commands, results = quick_runs
    result = results["nas"]
    assert result.returncode == 0, result.stderr
    run = commands["nas"][1] / "run"
    strategy = json.loads((run / "config.json").read_text())["search"]["strategy"]
    assert strategy["child_epochs"] == 2 and strategy["reward_power"] == 3.0
    assert strategy["parallel_children"] == 2 and strategy["controller_lr"] == 0.01
    children = [json.loads(line) for line in (run / "children.jsonl").open()]
    assert len(children) == 2 and all(len(c["valid_curve"]) == 2 for c in children)
    # The derived architecture is a child of the best score (ties: either).
    top = max(c["valid_accuracy"] for c in children)
    derived = (run / "best_arc.txt").read_text().strip()
    assert derived in [c["arc"] for c in children if c["valid_accuracy"] == top]
    assert f"valid accuracy {top:.4f} trained from scratch" in result.stdout
    assert "children.jsonl" in result.stdout
    # No shared weights: the checkpoint holds the controller, no supernet.
    names = [name for name, _ in tf.train.list_variables(str(run / "checkpoints"))]
    assert any(n.startswith("sampler/") for n in names)
    assert not any(n.startswith("supernet") for n in names)


def test_darts_flag_file_searches_and_derives_a_micro_arc(quick_runs):
    commands, results = quick_runs
    result = results["darts"]
    assert result.returncode == 0, result.stderr
    run = commands["darts"][1] / "run"
    config = json.loads((run / "config.json").read_text())["search"]
    assert config["algorithm"] == "darts" and config["strategy"]["darts_order"] == 2
    best = json.loads((run / "best_arc.json").read_text())
    assert best["space"] == "micro" and best["config"] == {"num_nodes": 1, "num_ops": 5}
    assert "one-hot (DARTS: retrain it)" in result.stdout
    log = [json.loads(line) for line in (run / "search_log.jsonl").open()]
    assert [row["epoch"] for row in log] == [1, 2]
    assert 0.0 <= log[-1]["controller/parameter_free_share"] <= 1.0
    events = read_events(run / "logs")
    assert len(events["controller/alphas"]) == 2
    # The checkpoint holds alpha and the relaxed network, no ENAS supernet.
    names = [name for name, _ in tf.train.list_variables(str(run / "checkpoints"))]
    assert any(n.startswith("sampler/alpha") for n in names)
    assert any(n.startswith("relaxed/") for n in names)


def test_macro_darts_flag_file_parses(quick_runs):
    commands, results = quick_runs
    assert_user_error(results[MACRO_DARTS], "valid_size=2000")
    assert list(commands[MACRO_DARTS][1].iterdir()) == []


@pytest.mark.parametrize("args, fragments", BAD_INPUT)
def test_bad_input_exits_2_and_writes_nothing(quick_runs, args, fragments):
    commands, results = quick_runs
    assert_user_error(results[tuple(args)], *fragments)
    assert list(commands[tuple(args)][1].iterdir()) == []


def test_macro_search_then_inherited_training_and_export(tmp_path):
    """The whole macro pipeline through the tools: search, derive, train the
    derived architecture from the shared weights, export."""
    search = tmp_path / "search"
    result = run_search(
        "--space=macro",
        "--num_layers=4",
        "--num_ops=6",
        "--out_filters=8",
        "--epochs=2",
        "--batch_size=128",
        "--controller_steps=3",
        "--num_aggregate=3",
        "--log_arcs=2",
        "--derive_samples=5",
        "--controller_lr=2e-3",
        # A controller that remembers, on a small schedule.
        "--memory",
        "--memory_size=100",
        "--memory_start_epoch=1",
        "--memory_loss_epoch=2",
        "--verbose=0",
        f"--output_dir={search}",
    )
    assert result.returncode == 0, result.stderr
    # config.json records the settings in sections, the strategy's its own.
    recorded = json.loads((search / "config.json").read_text())["search"]
    assert recorded["space"] == {"name": "macro", "num_nodes": 5, "num_layers": 4, "num_ops": 6}
    assert recorded["algorithm"] == "reinforce"
    assert recorded["strategy"]["controller_lr"] == 2e-3
    assert "best architecture" in result.stdout
    for name in ("best_arc.txt", "best_arc.json", "best_arc.png", "candidates.json"):
        assert (search / name).is_file(), name
    log = [json.loads(line) for line in (search / "search_log.jsonl").open()]
    assert len(log) == 2
    # 10 sampled architectures join the memory per epoch; its loss weighs in
    # the updates from epoch 2 on.
    assert [row["controller/memory_size"] for row in log] == [10.0, 20.0]
    assert [row["controller/memory_loss_weight"] for row in log] == [0.0, 1.0]
    assert all(row["controller/memory_loss"] > 0 for row in log)
    # The controller's diagnostics, per epoch (on by default).
    assert all(-1 <= row["controller/embedding_spearman_ops"] <= 1 for row in log)
    images = read_events(search / "logs")["controller/hidden_states"]
    assert [step for step, _ in images] == [1, 2]
    train = tmp_path / "train"
    trained = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "train.py"),
            "--dataset=digits",
            "--valid_size=360",
            "--out_filters=8",
            "--epochs=1",
            "--batch_size=128",
            "--pad=1",
            "--verbose=0",
            f"--init_from_search={search}",
            f"--output_dir={train}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert trained.returncode == 0, trained.stderr
    summary = json.loads((train / "summary.json").read_text())
    assert summary["arc"] == (search / "best_arc.txt").read_text().strip()
    exported = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "export.py"), f"--run_dir={train}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert exported.returncode == 0, exported.stderr
    # The export reloads with plain TensorFlow and computes the trained
    # network's probabilities (the Keras model, normalised by hand).
    out = train / "export"
    assert json.loads((out / "export_report.json").read_text())["passed"]
    images = load_images("digits").test_images[:100]
    expected = keras_probs(train, images)
    assert len(set(expected.argmax(1))) > 1  # not a constant network
    serve = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    probs = serve(images=tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    interpreter = tflite_interpreter(out / "model_float32.tflite")
    np.testing.assert_allclose(tflite_probs(interpreter, images), expected, atol=1e-5)
