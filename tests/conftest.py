"""Test settings: CPU only, quiet TensorFlow logs, two logical CPU devices.

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

import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2,
)
