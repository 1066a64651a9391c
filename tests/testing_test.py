"""Tests of enas_tf.testing: the helpers other tests build on (a search run
directory without training, a tiny PTB corpus, subprocesses run together,
free ports, a stand-in trained model and its probabilities)."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas_tf import data, spaces, testing
from enas_tf.configs.image import SearchConfig
from enas_tf.search.image import Search
from enas_tf.testing import (
    free_ports,
    keras_probs,
    make_standin_run,
    read_events,
    run_at_once,
    search_run,
    shared_ptb_dir,
    tflite_interpreter,
    tflite_probs,
    write_tiny_ptb,
)

# ----- write_tiny_ptb -----------------------------------------------------------


def lines_of(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_tiny_ptb_is_a_corpus_in_the_ptb_format(tmp_path):
    root = tmp_path / "ptb"
    assert write_tiny_ptb(str(root), vocab_size=12, tokens=(600, 150, 100)) == str(root)
    words = [f"w{i}" for i in range(12)]
    splits = {name: lines_of(root / f"{name}.txt") for name in ("train", "valid", "test")}
    # PTB's spacing: a space before and after every sentence.
    assert all(line.startswith(" ") and line.endswith(" ") for ls in splits.values() for line in ls)
    assert splits["train"][0].split() == words  # every word, so nothing is unknown
    for name, wanted in (("train", 600), ("valid", 150), ("test", 100)):
        sentences = [line.split() for line in splits[name]]
        body = sentences[1:] if name == "train" else sentences
        assert all(3 <= len(s) <= 9 and set(s) <= set(words) for s in body)
        count = sum(len(s) + 1 for s in body)  # words and <eos>
        assert wanted <= count < wanted + 10
    corpus = data.load_ptb(str(root))
    assert corpus.vocab_size == 13 and "<eos>" in corpus.vocab
    assert len(corpus.valid) == sum(len(line.split()) + 1 for line in splits["valid"])


def test_tiny_ptb_has_something_to_learn_and_follows_its_seed(tmp_path):
    vocab = 30
    paths = {seed: tmp_path / str(seed) for seed in (0, 0.5, 1)}
    write_tiny_ptb(str(paths[0]), seed=0)
    write_tiny_ptb(str(paths[0.5]), seed=0)
    write_tiny_ptb(str(paths[1]), seed=1)
    for name in ("train.txt", "valid.txt", "test.txt"):
        assert (paths[0] / name).read_bytes() == (paths[0.5] / name).read_bytes()
        assert (paths[0] / name).read_bytes() != (paths[1] / name).read_bytes()
    # Inside a sentence the next word is (3 w + 1) mod V with probability
    # 0.8, else uniform (which may also pick it): 0.8 + 0.2 / V.
    pairs = follows = 0
    for line in lines_of(paths[0] / "train.txt")[1:]:
        ids = [int(w[1:]) for w in line.split()]
        pairs += len(ids) - 1
        follows += sum(b == (3 * a + 1) % vocab for a, b in zip(ids, ids[1:]))
    assert pairs > 1000
    assert follows / pairs == pytest.approx(0.8 + 0.2 / vocab, abs=0.04)


def test_shared_ptb_dir_is_the_environments(monkeypatch, tmp_path):
    monkeypatch.setenv("ENAS_TF_PTB_DIR", str(tmp_path / "ptb"))
    assert shared_ptb_dir() == tmp_path / "ptb"
    monkeypatch.setenv("ENAS_TF_PTB_DIR", "")  # empty: not set
    assert not shared_ptb_dir().exists()


def test_conftest_points_at_the_nearest_shared_copy():
    """tests/conftest.py sets $ENAS_TF_PTB_DIR to the nearest `shared/data/ptb`
    beside the repository or a parent folder, when one exists."""
    repo = Path(testing.__file__).resolve().parents[1]
    copies = [p / "shared" / "data" / "ptb" for p in repo.parents]
    existing = [c for c in copies if c.is_dir()]
    if existing:
        assert os.environ["ENAS_TF_PTB_DIR"] == str(existing[0])
        assert shared_ptb_dir() == existing[0]


# ----- read_events ----------------------------------------------------------------


def test_read_events_reads_every_events_file_of_a_folder(tmp_path):
    for name, values in (("a", (0.5, 0.25)), ("b", (2.0,))):
        writer = tf.summary.create_file_writer(str(tmp_path), filename_suffix=name)
        with writer.as_default():
            for step, v in enumerate(values, start=1):
                tf.summary.scalar("loss", v, step=step)
            tf.summary.text("note", f"from {name}", step=7)
        writer.close()
    nested = tf.summary.create_file_writer(str(tmp_path / "sub"))  # not read
    with nested.as_default():
        tf.summary.scalar("loss", 9.0, step=1)
    nested.close()
    events = read_events(tmp_path)
    assert events["files"] == 2
    assert sorted((s, float(v)) for s, v in events["loss"]) == [(1, 0.5), (1, 2.0), (2, 0.25)]
    notes = sorted(v.item() for _, v in events["note"])
    assert notes == [b"from a", b"from b"] and {s for s, _ in events["note"]} == {7}
    assert read_events(tmp_path / "none") == {"files": 0}


# ----- run_at_once, free_ports --------------------------------------------------

# Touches its own file, then waits (up to 20 s) for the other's: both finish
# only if they run at the same time.
RENDEZVOUS = """
import pathlib, sys, time
mine, theirs = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
mine.touch()
deadline = time.time() + 20
while not theirs.exists():
    if time.time() > deadline:
        sys.exit("alone")
    time.sleep(0.01)
print("met in", pathlib.Path.cwd().name)
print("to stderr", file=sys.stderr)
sys.exit(int(sys.argv[3]))
"""


def test_run_at_once_runs_commands_together(tmp_path):
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    results = run_at_once(
        {
            "first": ([sys.executable, "-c", RENDEZVOUS, a, b, "0"], str(tmp_path / "one")),
            "second": ([sys.executable, "-c", RENDEZVOUS, b, a, "3"], str(tmp_path / "two")),
        },
        timeout=60,
    )
    assert list(results) == ["first", "second"]
    first, second = results["first"], results["second"]
    assert isinstance(first, subprocess.CompletedProcess)
    assert (first.returncode, second.returncode) == (0, 3)
    assert first.stdout == "met in one\n" and second.stdout == "met in two\n"
    assert first.stderr == second.stderr == "to stderr\n"
    assert first.args[:2] == [sys.executable, "-c"]


def test_run_at_once_kills_what_outlives_the_timeout(tmp_path):
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_at_once({"slow": ([sys.executable, "-c", code], str(tmp_path))}, timeout=2)
    assert time.monotonic() - start < 30  # not left to sleep its 60 s
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(pid, 0)


def test_free_ports_are_distinct_and_free():
    ports = free_ports(3)
    assert len(ports) == len(set(ports)) == 3
    assert all(1024 <= port <= 65535 for port in ports)
    sockets = [socket.socket() for _ in ports]
    try:
        for sock, port in zip(sockets, ports):
            sock.bind(("127.0.0.1", port))
    finally:
        for sock in sockets:
            sock.close()
    assert len(free_ports()) == 2


# ----- search_run ---------------------------------------------------------------

TINY = SearchConfig.from_flat(num_nodes=2, num_layers=3, out_filters=4, batch_size=256)


def test_search_run_is_a_resumable_search_with_changed_weights(tmp_path):
    digits = data.load_images("digits", valid_size=100)
    made = search_run(str(tmp_path / "run"), TINY, digits, seed=2)
    assert isinstance(made, Search)
    # best_arc.json: the seed's random architecture, at epoch 1.
    space = TINY.search_space()
    record = json.loads((tmp_path / "run" / "best_arc.json").read_text())
    assert record["arc"] == list(space.random_arc(2))
    assert record["epoch"] == 1 and record["valid_accuracy"] == 0.0
    assert spaces.load_arc(str(tmp_path / "run" / "best_arc.json")) == (space, space.random_arc(2))
    # A search opened there resumes after epoch 1 with the saved weights...
    reopened = Search(TINY, digits, str(tmp_path / "run"), verbose=0)
    assert reopened.resumed and int(reopened.epoch.numpy()) == 1
    for a, b in zip(made.net.variables, reopened.net.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # ... which differ from a fresh initialisation, every one of them.
    fresh = Search(TINY, digits, str(tmp_path / "fresh"), verbose=0)
    assert not fresh.resumed
    for a, b in zip(made.net.variables, fresh.net.variables):
        assert not np.allclose(a.numpy(), b.numpy()), a.name


# ----- make_standin_run, keras_probs, tflite helpers ----------------------------


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("standin")
    make_standin_run(run_dir, epochs=1)
    return run_dir


def test_standin_run_looks_like_a_final_training_run(standin):
    assert sorted(p.name for p in standin.iterdir()) == ["model.keras", "summary.json"]
    summary = json.loads((standin / "summary.json").read_text())
    digits = data.load_images("digits")
    assert summary["dataset"] == "digits" and summary["arc"] == "stand-in"
    assert summary["image_shape"] == [8, 8, 1] and summary["num_classes"] == 10
    np.testing.assert_allclose(summary["mean"], digits.mean)
    np.testing.assert_allclose(summary["std"], digits.std)
    model = keras.models.load_model(standin / "model.keras")
    assert model.input_shape == (None, 8, 8, 1) and model.output_shape == (None, 10)
    # keras_probs: the model's softmax on images normalised by the summary.
    images = digits.test_images[:50]
    probs = keras_probs(standin, images)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-9)
    x = ((images / 255.0 - digits.mean) / digits.std).astype("float32")
    expected = keras.ops.softmax(model(x, training=False)).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    # Trained, if for one epoch only: well above chance (10 classes; 0.40 seen).
    accuracy = (keras_probs(standin, digits.test_images).argmax(1) == digits.test_labels).mean()
    assert accuracy > 0.25


def test_tflite_probs_runs_any_batch_size(standin, tmp_path):
    model = keras.models.load_model(standin / "model.keras")
    path = tmp_path / "model.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    interpreter = tflite_interpreter(path)
    assert isinstance(interpreter, tf.lite.Interpreter)
    x = np.random.default_rng(0).normal(size=(5, 8, 8, 1)).astype("float32")
    for batch in (5, 2, 5):
        out = tflite_probs(interpreter, x[:batch])
        assert out.shape == (batch, 10)
        np.testing.assert_allclose(out, model(x[:batch], training=False), atol=1e-4)
