"""Test settings: CPU only, quiet TensorFlow logs, two logical CPU devices.

The second logical CPU device lets tests run `tf.distribute.MirroredStrategy`
over two replicas; it must be set before TensorFlow initialises its devices.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2,
)
