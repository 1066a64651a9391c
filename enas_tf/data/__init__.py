"""Datasets: image classification (numpy + tf.data) and Penn Treebank.

Importing this package does not import TensorFlow: the numpy loaders
(`images`, `ptb`) are re-exported directly, and the tf.data helpers of
`pipeline` (`train_dataset`, `eval_dataset`, `normalize`) are loaded on first
access.
"""

from __future__ import annotations

import importlib
from typing import Any

from enas_tf.data.images import (
    CUSTOM_DATASETS,
    DEFAULT_VALID_SIZE,
    IMAGE_DATASETS,
    ImageSplits,
    check_dataset_name,
    from_arrays,
    load_images,
)
from enas_tf.data.ptb import (
    PtbCorpus,
    batchify,
    load_ptb,
    num_windows,
    tokenize,
    window_dataset,
    windows,
)

_PIPELINE = ("train_dataset", "eval_dataset", "normalize")

__all__ = [
    "CUSTOM_DATASETS",
    "DEFAULT_VALID_SIZE",
    "IMAGE_DATASETS",
    "ImageSplits",
    "PtbCorpus",
    "batchify",
    "check_dataset_name",
    "eval_dataset",
    "from_arrays",
    "load_images",
    "load_ptb",
    "normalize",
    "num_windows",
    "tokenize",
    "train_dataset",
    "window_dataset",
    "windows",
]


def __getattr__(name: str) -> Any:
    """Loads the TensorFlow pipeline helpers on first use."""
    if name in _PIPELINE:
        return getattr(importlib.import_module("enas_tf.data.pipeline"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
