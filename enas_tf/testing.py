"""Test helpers: small search run directories made without training, and a
tiny text corpus in the Penn Treebank format.

Training a supernet step traces slowly (about a minute), so tests of what
comes after a search (weight inheritance, `enas-train --init_from_search`)
get a run directory written by the search's own code, minus the training.
Language-model tests read `write_tiny_ptb`'s text instead of PTB. Export
tests use `make_standin_run` (a small trained Keras model in a final-training
run directory) and compare exports with the Keras model computed by hand
(`keras_probs`, `tflite_probs`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import warnings
import zlib
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from enas_tf import spaces
from enas_tf.configs.image import SearchConfig
from enas_tf.data import load_images
from enas_tf.data.images import ImageSplits
from enas_tf.runtime import rundir
from enas_tf.search.image import Search


def search_run(
    output_dir: str, config: SearchConfig, splits: ImageSplits, *, seed: int = 0
) -> Search:
    """A search run directory as one epoch of `Search` leaves it, untrained.

    `Search` writes config.json and saves its checkpoint (epoch 1); the
    shared weights and moving statistics are first scaled by random factors
    in [0.5, 1.5] and shifted by noise of std 0.05, so that inherited
    weights differ from a fresh initialisation. A random architecture stands in for
    the derived best_arc.json.

    Args:
      output_dir: the run directory to create.
      config: the search settings.
      splits: the dataset (needs a validation split).
      seed: seed of the weight changes and the architecture.

    Returns:
      The `Search`; its `net` holds the saved weights.
    """
    search = Search(config, splits, output_dir, verbose=0)
    rng = np.random.default_rng(seed)
    for v in search.net.variables:
        scale = rng.uniform(0.5, 1.5, v.shape)
        v.assign((v.numpy() * scale + rng.normal(0, 0.05, v.shape)).astype(v.dtype))
    search.epoch.assign(1)
    search.manager.save()
    space = search.space
    rundir.write_text_atomic(
        os.path.join(output_dir, "best_arc.json"),
        spaces.json_text(
            space, space.random_arc(seed), valid_accuracy=0.0, epoch=1, seed=config.seed
        ),
    )
    search.writer.close()
    return search


def write_tiny_ptb(
    directory: str,
    seed: int = 0,
    vocab_size: int = 30,
    tokens: tuple[int, int, int] = (2000, 400, 400),
) -> str:
    """Writes a tiny corpus in the Penn Treebank format, for fast LM tests.

    Sentences of 3-9 words "w0" .. "w{vocab_size - 1}", one per line with
    PTB's spacing; each next word is `(3 w + 1) mod V` with probability 0.8
    (something to learn), else random. The first training line holds every
    word, so valid and test have no unknown words.

    Args:
      directory: where to write train.txt, valid.txt and test.txt (created).
      seed: seed of the text.
      vocab_size: words in the vocabulary (plus "<eos>").
      tokens: about how many tokens each split gets (train, valid, test).

    Returns:
      `directory`.
    """
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(vocab_size)]

    def text(count: int) -> list[str]:
        lines, total = [], 0
        while total < count:
            w, line = int(rng.integers(vocab_size)), []
            for _ in range(int(rng.integers(3, 10))):
                line.append(words[w])
                follow = rng.random() < 0.8
                w = (3 * w + 1) % vocab_size if follow else int(rng.integers(vocab_size))
            lines.append(" " + " ".join(line) + " ")
            total += len(line) + 1
        return lines

    os.makedirs(directory, exist_ok=True)
    splits = {
        "train.txt": [" " + " ".join(words) + " ", *text(tokens[0])],
        "valid.txt": text(tokens[1]),
        "test.txt": text(tokens[2]),
    }
    for name, lines in splits.items():
        with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    return directory


def run_at_once(commands: dict, timeout: float = 600) -> dict:
    """Runs commands as subprocesses all at once and waits for every one.

    Tests of the tools start many short processes (bad input) or a few that
    each build a large network; those are mostly single-threaded, so started
    together they overlap on the cores.

    Args:
      commands: key -> (argv, cwd).
      timeout: seconds to wait for each.

    Returns:
      key -> `subprocess.CompletedProcess`, with text stdout and stderr.
    """
    procs = {}
    try:
        for key, (argv, cwd) in commands.items():
            procs[key] = subprocess.Popen(
                argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        results = {}
        for key, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=timeout)
            results[key] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        return results
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


# Lock files of the ports `free_ports` handed out, kept open (locked) until
# this process exits.
_PORT_LOCKS: list = []


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for port 0 and outgoing connections."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(v) for v in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _port_candidates() -> list[int]:
    """Ports outside the kernel's ephemeral range, in the order
    `free_ports` tries them: from an offset keyed on the process id (and
    the pytest-xdist worker), so concurrent test processes start apart."""
    low, high = _ephemeral_range()
    ports = [p for p in range(20000, 65536) if not low <= p <= high]
    if len(ports) < 1000:  # the kernel owns nearly everything: share it
        ports = list(range(20000, 65536))
    key = f"{os.getpid()}:{os.environ.get('PYTEST_XDIST_WORKER', '')}"
    start = zlib.crc32(key.encode()) % len(ports)
    return ports[start:] + ports[:start]


def _bindable(port: int) -> bool:
    """Whether nothing holds `port` on any address (without SO_REUSEADDR,
    so a connection in TIME_WAIT counts too)."""
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def port_lock_path(port: int) -> Path:
    """The file whose lock (`fcntl.flock`) reserves `port` (`free_ports`)."""
    return Path(tempfile.gettempdir()) / f"enas_tf_ports_{os.getuid()}" / f"{port}.lock"


def _reserve(port: int) -> bool:
    """Locks `port`'s lock file until this process exits and checks that
    the port is free; False if another process (or an earlier call) has
    the lock, or the port is taken."""
    try:
        import fcntl  # noqa: PLC0415 (POSIX only)
    except ImportError:  # no locks: the range and the check only
        return _bindable(port)
    path = port_lock_path(port)
    path.parent.mkdir(exist_ok=True)
    lock = open(path, "a")  # noqa: SIM115 (held open)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return False
    if not _bindable(port):
        lock.close()  # unlocks
        return False
    _PORT_LOCKS.append(lock)
    return True


def free_ports(count: int = 2) -> list[int]:
    """`count` distinct TCP ports for the `TF_CONFIG` of a local
    multi-worker run, which no other socket takes before its workers bind
    them.

    Ports found free by binding port 0 and released (what this did before)
    go back to the kernel's ephemeral range, where any socket's port 0 or
    outgoing connection (another test's, a worker's) may get one before the
    workers bind it. These come from outside that range, so the kernel never
    hands them out; a lock file per port, held until this process exits,
    keeps them from other processes using `free_ports` (pytest-xdist
    workers, parallel CI runs) and from later calls; and each is checked
    free by binding it.
    """
    ports = []
    for port in _port_candidates():
        if _reserve(port):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError(f"No {count} free TCP ports outside the kernel's ephemeral range.")


def make_standin_run(run_dir: Path, epochs: int = 2) -> None:
    """Writes model.keras and summary.json like a final-training run."""
    splits = load_images("digits")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.ReLU()(x)
    # Pointwise kernels of >= 1024 weights, so dynamic range really quantizes.
    x = keras.layers.SeparableConv2D(64, 3, padding="same")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.SeparableConv2D(64, 3, padding="same", activation="relu")(x)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(10, use_bias=False)(x)
    model = keras.Model(inputs, logits)
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    train = (splits.train_images / 255.0 - splits.mean) / splits.std
    model.fit(train.astype("float32"), splits.train_labels, epochs=epochs,
              batch_size=32, verbose=0)  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "model.keras")
    summary = {
        "dataset": "digits",
        "image_shape": [8, 8, 1],
        "num_classes": 10,
        "mean": splits.mean.tolist(),
        "std": splits.std.tolist(),
        "arc": "stand-in",
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))


def keras_probs(run_dir: Path, images: np.ndarray) -> np.ndarray:
    """The run's model on uint8 images, normalised and soft-maxed by hand."""
    summary = json.loads((run_dir / "summary.json").read_text())
    model = keras.models.load_model(run_dir / "model.keras")
    x = (images.astype(np.float64) / 255.0 - summary["mean"]) / summary["std"]
    logits = model(x.astype(np.float32), training=False).numpy().astype(np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def tflite_interpreter(path: Path) -> tf.lite.Interpreter:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated in favour of LiteRT
        return tf.lite.Interpreter(model_path=str(path))


def tflite_probs(interpreter: tf.lite.Interpreter, images: np.ndarray) -> np.ndarray:
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.resize_tensor_input(inp["index"], images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], images)
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])


def read_events(log_dir: str | Path) -> dict:
    """The summaries of the events files directly in `log_dir`: tag ->
    [(step, value)], values as numpy scalars or arrays (HParams plugin
    summaries: their serialized plugin content, bytes), and "files" -> the
    events files' count."""
    from tensorboard.compat.proto import event_pb2

    found: dict = {"files": 0}
    for path in sorted(Path(log_dir).glob("events.out.tfevents.*")):
        found["files"] += 1
        for record in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    item = value.metadata.plugin_data.content
                else:
                    item = tf.make_ndarray(value.tensor)
                found.setdefault(value.tag, []).append((event.step, item))
    return found


def shared_ptb_dir() -> Path:
    """The Penn Treebank copy of the tests: $ENAS_TF_PTB_DIR (tests/conftest.py
    sets it to the project's copy when it finds one); when unset, a path that
    does not exist, so the tests that need the corpus skip."""
    return Path(os.environ.get("ENAS_TF_PTB_DIR") or "ENAS_TF_PTB_DIR-is-not-set")


def assert_one_trace_serves_every_architecture(
    net, step, images, labels, losses, seeds=(19, 18, 17)
):
    """Checks a supernet's traced training `step(images, labels, arc)`
    against eager forward passes (batch statistics) of the arcs of `seeds`
    (`net.space.random_arc(seed)`), the last ones it trained: each loss is
    its own arc's, lower than `losses[seed]` (its loss at its own step) by
    over 5%, the arcs compute different functions, and `step` traced once."""
    import numpy as np
    import tensorflow as tf

    now = []
    for seed in seeds:
        arc = np.asarray(net.space.random_arc(seed), np.int32)
        logits = net(images, arc=arc, batch_stats=True)
        now.append(
            float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)))
        )
        np.testing.assert_allclose(float(step(images, labels, arc)), now[-1], rtol=1e-5)
        assert now[-1] < 0.95 * losses[seed], (seed, now[-1], losses[seed])
    assert len(set(now)) == len(seeds)  # the arcs compute different functions
    assert step.experimental_get_tracing_count() == 1
