"""Test settings: CPU only, quiet TensorFlow logs, two logical CPU devices,
and graph settings that suit the tests' tiny shapes.

The second logical CPU device lets tests run `tf.distribute.MirroredStrategy`
over two replicas; it must be set before TensorFlow initialises its devices.
"""

import os
from pathlib import Path


def _find_shared_ptb() -> str | None:
    """The project's Penn Treebank copy: the first `shared/data/ptb` beside
    the repository or one of its parent folders (tests only; the package
    never reads it)."""
    root = Path(__file__).resolve().parents[1]
    for parent in root.parents:
        if (parent / "shared" / "data" / "ptb").is_dir():
            return str(parent / "shared" / "data" / "ptb")
    return None


if not os.environ.get("ENAS_TF_PTB_DIR") and _find_shared_ptb():
    os.environ["ENAS_TF_PTB_DIR"] = _find_shared_ptb()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# oneDNN's CPU kernels pay a set-up cost per op that the tests' tiny shapes
# never earn back: without them a one-epoch micro search of the tests
# (build, traces, first calls, 7 steps) took 28 s instead of 38. Set in the
# environment, so the tools the tests start as subprocesses run without
# them too (tests/runtime/quiet_test.py runs a tool with the user's default).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# One thread per op: pytest runs two workers on the machine's two cores and
# some tests start several tool processes at once, so TensorFlow's default
# (a thread pool per process as wide as the machine) oversubscribes the
# cores, and its spinning threads burn CPU the tests need. The inter-op pool
# keeps its default (the two-replica MirroredStrategy tests need two).
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2,
)
# Grappler's graph rewrites (fusions, layout, constant folding) speed up long
# runs of large graphs; the tests run small graphs a few steps, where the
# rewriting on each function's first call costs more than it saves (the same
# search: 28 s -> 19 s without it). Numbers and code paths are unchanged:
# the rewrites are meant to preserve results, and the tools the tests start
# as subprocesses keep them.
tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
