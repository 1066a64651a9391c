"""Two-process MultiWorkerMirroredStrategy runs on 127.0.0.1 (issue 7).

Each worker is a subprocess of `tools/search.py` or `tools/train.py` with
`--strategy=multi_worker` and its own `TF_CONFIG` (one CPU replica each);
the reference is one process running `--strategy=mirrored` over two logical
CPUs: the same two replicas, each with the same share of every global batch.
The runs must agree exactly (same sampled architectures, rewards, child
losses, candidates; same training history and test accuracy). Killing one
worker makes the other exit with a clear message; restarting both resumes
from the chief's last checkpoint and ends where the uninterrupted run does.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from enas_tf import testing
from enas_tf.testing import free_ports

ROOT = Path(__file__).resolve().parents[1]
SEARCH = [
    "--dataset=digits",
    "--valid_size=100",
    "--space=macro",
    "--num_layers=2",
    "--out_filters=4",
    "--epochs=2",
    "--batch_size=64",
    "--controller_steps=2",
    "--num_aggregate=2",
    "--log_arcs=2",
    "--derive_samples=4",
    "--noflip",
    "--pad=1",
    "--verbose=0",
]
TRAIN = [
    "--space=micro",
    "--arc=0 1 1 4 0 0 0 3",
    "--dataset=digits",
    "--valid_size=100",
    "--num_layers=3",
    "--out_filters=4",
    "--epochs=2",
    "--batch_size=64",
    "--pad=1",
    "--keep_prob=1.0",
    "--verbose=0",
]
TIMEOUT = 600
# One process, two logical CPUs: the mirrored reference.
TWO_CPUS = (
    "import runpy, sys, tensorflow as tf; "
    "tf.config.set_logical_device_configuration(tf.config.list_physical_devices('CPU')[0], "
    "[tf.config.LogicalDeviceConfiguration()] * 2); "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def _env(**extra):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)  # only the one given
    env.update(extra)
    return env


def _start_workers(tool, out, flags):
    ports = free_ports()
    procs = []
    for index in range(2):
        config = {
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "tools" / f"{tool}.py"),
                    *flags,
                    "--strategy=multi_worker",
                    f"--output_dir={out}",
                ],
                env=_env(TF_CONFIG=json.dumps(config)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def _finish(procs, timeout=TIMEOUT):
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        results.append((proc.returncode, out, err))
    return results


def _two_workers(tool, out, flags):
    results = _finish(_start_workers(tool, out, flags))
    for code, _, err in results:
        assert code == 0, err[-3000:]
    return results


def _mirrored(tool, out, flags):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            TWO_CPUS,
            str(ROOT / "tools" / f"{tool}.py"),
            *flags,
            "--strategy=mirrored",
            "--devices=/cpu:0,/cpu:1",
            f"--output_dir={out}",
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _search_outputs(run):
    log = [json.loads(line) for line in (run / "search_log.jsonl").open()]
    for row in log:
        row.pop("epoch_seconds")
    candidates = json.loads((run / "candidates.json").read_text())
    candidates.pop("flags")
    return log, candidates, (run / "best_arc.txt").read_text()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The mirrored one-process search (two logical CPUs)."""
    out = tmp_path_factory.mktemp("reference") / "search"
    _mirrored("search", out, SEARCH)
    return _search_outputs(out)


def test_search_on_two_workers_matches_one_process(reference, tmp_path):
    out = tmp_path / "search"
    chief, other = _two_workers("search", out, SEARCH)
    assert _search_outputs(out) == reference
    # Only the chief writes the run directory.
    assert "best architecture" in chief[1] and "the chief wrote" in other[1]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "config.json",
            "checkpoints",
            "logs",
            "search_log.jsonl",
            "best_arc.txt",
            "best_arc.json",
            "best_arc.png",
            "candidates.json",
        ]
    )


def test_killed_worker_then_restart_resumes(reference, tmp_path):
    out = tmp_path / "search"
    procs = _start_workers("search", out, SEARCH)
    index = out / "checkpoints" / "checkpoint"
    deadline = time.time() + TIMEOUT
    while not index.exists():  # the chief's checkpoint after epoch 1
        assert time.time() < deadline and all(p.poll() is None for p in procs), [
            p.communicate() for p in procs if p.poll() is not None
        ]
        time.sleep(0.2)
    time.sleep(1.0)  # into epoch 2
    procs[1].send_signal(signal.SIGKILL)
    (code, _, err), (killed, _, _) = _finish(procs)
    assert killed == -signal.SIGKILL
    # The survivor does not hang: it stops and says what to do.
    assert code == 1, err[-3000:]
    assert "another worker of this multi-worker run stopped" in err
    assert "Restart every worker" in err and "Traceback" not in err
    log = [json.loads(line) for line in (out / "search_log.jsonl").open()]
    assert [row["epoch"] for row in log] == [1]
    # Restarted, the run resumes from the chief's checkpoint of epoch 1.
    _two_workers("search", out, SEARCH)
    assert _search_outputs(out) == reference


def test_training_on_two_workers_matches_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _mirrored("train", one, TRAIN)
    results = _two_workers("train", two, TRAIN)
    assert (one / "history.csv").read_text() == (two / "history.csv").read_text()
    a, b = (json.loads((run / "summary.json").read_text()) for run in (one, two))
    assert a["test_accuracy"] == b["test_accuracy"]
    assert a["final_valid_accuracy"] == b["final_valid_accuracy"] is not None
    assert "the chief wrote" in results[1][1]
    assert (two / "model.keras").exists()


# Another process reserving ports as `free_ports` does (locks on the first
# ports this process would try) and listening on the next one.
_OTHER_PROCESS = """
import fcntl, socket, sys
ports = [int(p) for p in sys.argv[1:]]
locks = [open(path, "a") for path in sys.stdin.readline().split()]
for lock in locks:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
listener = socket.socket()
listener.bind(("127.0.0.1", ports[-1]))
listener.listen()
print("ready", flush=True)
sys.stdin.readline()
"""


def test_worker_ports_are_reserved_until_the_workers_bind():
    """`free_ports` takes no port the kernel may give another socket (port 0,
    outgoing connections) before the workers bind it, never hands a port out
    twice, and skips ports another process reserved or listens on."""
    low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    first = free_ports(3)
    assert len(set(first)) == 3 and not any(low <= port <= high for port in first)
    # The ports this process would try next (it tries them in order):
    # another process takes them.
    candidates = testing._port_candidates()
    after = candidates.index(first[-1]) + 1
    taken = candidates[after : after + 6]
    for port in taken[:5]:
        testing.port_lock_path(port).parent.mkdir(exist_ok=True)
    other = subprocess.Popen(
        [sys.executable, "-c", _OTHER_PROCESS, *map(str, taken)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        other.stdin.write(" ".join(str(testing.port_lock_path(p)) for p in taken[:5]) + "\n")
        other.stdin.flush()
        assert other.stdout.readline() == "ready\n"
        second = free_ports(3)
    finally:
        other.communicate("\n", timeout=10)
    assert not set(second) & set(first + taken), (first, taken, second)
    assert not any(low <= port <= high for port in second)


def test_bad_tf_config_is_a_user_error(tmp_path):
    for value, problem in [
        ("", "needs the TF_CONFIG"),
        ("{", "not valid JSON"),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}',
            "is not in the cluster",
        ),
    ]:
        proc = subprocess.run(
            [
                sys.executable,
                str(ROOT / "tools" / "train.py"),
                *TRAIN,
                "--strategy=multi_worker",
                f"--output_dir={tmp_path / 'run'}",
            ],
            env=_env(TF_CONFIG=value),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert problem in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / "run").exists()
