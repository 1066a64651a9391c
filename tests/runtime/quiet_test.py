"""Tests of filtering TensorFlow's start-up chatter from stderr
(`enas_tf.runtime.quiet`)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from enas_tf.runtime import quiet

# Lines TF 2.21 prints on a CPU machine (as captured from a tool run).
NOISE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1796310764.693948   19482 port.cc:153] oneDNN custom operations are on. "
    b"You may see slightly different numerical results.",
    b"I0000 00:00:1796310764.694624   19482 cudart_stub.cc:31] Could not find cuda drivers "
    b"on your machine, GPU will not be used.",
    b"E0000 00:00:1796310767.886102   19482 cuda_platform.cc:52] failed call to cuInit: "
    b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    b"E0000 00:00:1796310818.460424   19482 util.cc:131] oneDNN supports DT_INT32 only on "
    b"platforms with AVX-512. Falling back to the default Eigen-based implementation.",
    b"I0000 00:00:1796310896.800898   20332 cpu_feature_guard.cc:227] This TensorFlow binary "
    b"is optimized to use available CPU instructions in performance-critical operations.",
    b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
    b"with the appropriate compiler flags.",
    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
]
KEPT = [
    b"Traceback (most recent call last):",
    b"WARNING:tensorflow:AutoGraph could not transform <function f> and will run it as-is.",
    b"E0000 00:00:1796310767.886102   19482 op_kernel.cc:1830] OP_REQUIRES failed: OOM",
    b"W0000 00:00:1796310767.886102   19482 cuda_platform.cc:52] GPU 0 has 2 GiB free",
    b"enas-search: error: give --output_dir.",
    b"WARNING: something else before absl::InitializeLog()",
]


@pytest.mark.parametrize("line", NOISE)
def test_known_chatter_is_noise(line):
    assert quiet.is_noise(line)


@pytest.mark.parametrize("line", KEPT)
def test_real_messages_are_kept(line):
    assert not quiet.is_noise(line)


CHILD = textwrap.dedent(
    """
    import os, sys
    from enas_tf.runtime import quiet
    started = quiet.filter_stderr()
    print("started" if started else "off", flush=True)
    for line in sys.argv[1:]:
        os.write(2, line.encode() + b"\\n")  # as C++ code writes, to fd 2
    print("python warning", file=sys.stderr)
    os.write(2, b"no newline at exit")
    """
)


def _child(env, lines):
    return subprocess.run(
        [sys.executable, "-c", CHILD, *lines],
        capture_output=True,
        env=env,
        timeout=60,
    )


def test_a_process_drops_the_chatter_and_keeps_the_rest_in_order():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    lines = [line.decode() for line in (NOISE[0], KEPT[0], NOISE[3], KEPT[2], NOISE[1])]
    result = _child(env, lines)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"started\n"
    expected = KEPT[0] + b"\n" + KEPT[2] + b"\npython warning\nno newline at exit"
    assert result.stderr == expected


def test_a_user_asking_for_tensorflow_logs_gets_them_all():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    result = _child(env, [NOISE[3].decode()])
    assert result.stdout == b"off\n"
    assert result.stderr == NOISE[3] + b"\npython warning\nno newline at exit"


def test_not_started_once_tensorflow_is_imported(monkeypatch):
    import tensorflow  # noqa: F401  (the test process has it)

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    assert quiet.filter_stderr() is None


def test_a_tool_run_on_cpu_prints_nothing_on_stderr():
    """enas-train --dry_run imports TensorFlow and builds a network: without
    the filter its stderr holds TensorFlow's CUDA probe and oneDNN notices."""
    root = Path(__file__).resolve().parents[2]
    # The user's default environment (the tests turn oneDNN off: conftest).
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")
    }
    command = [
        sys.executable,
        str(root / "tools" / "train.py"),
        "--flagfile=" + str(root / "flags" / "digits_quick.flags"),
        "--arc=enas_micro_final",
        "--num_layers=3",
        "--dry_run",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "params" in result.stdout
    assert result.stderr == ""
    # The same run asking for TensorFlow's logs gets them.
    loud = subprocess.run(
        command, capture_output=True, text=True, env={**env, "TF_CPP_MIN_LOG_LEVEL": "0"},
        timeout=300,
    )  # fmt: skip
    assert loud.returncode == 0 and any(
        quiet.is_noise(line.encode()) for line in loud.stderr.splitlines()
    )
