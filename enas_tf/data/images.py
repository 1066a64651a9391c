"""Image classification datasets as numpy arrays (no TensorFlow needed).

`load_images` returns an `ImageSplits`: uint8 NHWC train/valid/test images with
int32 labels and the per-channel mean/std of the train split. Following ENAS,
the validation split is the last `valid_size` images of the official training
set, in file order; the train split is the rest.

Where each dataset comes from:

- `digits`: scikit-learn's bundled 8x8 digits; always offline.
- `mnist`, `fashion_mnist`: the four official IDX files (plain or `.gz`) in
  `data_dir` (or `data_dir/<name>`); for `fashion_mnist` without `data_dir`,
  also the Debian package directory `/usr/share/datasets/fashion-mnist`.
- `cifar10`, `cifar100`: the official python version, extracted
  (`cifar-10-batches-py/`, `cifar-100-python/`, at `data_dir` or inside it) or
  as the official `.tar.gz` inside `data_dir`, read without extracting.

When no local copy is found, a prepared tensorflow-datasets copy is used, and
only with `download=True` may tensorflow-datasets fetch one from the network.
Every missing, truncated or malformed file raises `DataError` naming the file.

Users' own data (`enas_tf.data.custom`): `folder` (`data_dir` with one
subfolder of images per class, or train/ and test/ folders of them), any
tensorflow-datasets image classification dataset with a prepared copy as
`tfds:NAME` (its train and test splits), and in Python `from_arrays` (numpy
arrays or tf.data datasets). Their image shape and classes come from the
data; their validation split defaults to a tenth of the training images.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np

from enas_tf.data.custom import as_arrays, read_folder, to_labels, to_uint8
from enas_tf.data.image_files import (
    CIFAR,
    Arrays,
    load_cifar_local,
    load_idx_local,
    load_tfds,
)
from enas_tf.errors import DataError

IMAGE_DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100")
DEFAULT_VALID_SIZE = {"digits": 360, **dict.fromkeys(IMAGE_DATASETS[1:], 5000)}
IMAGE_SHAPES = {
    "digits": (8, 8, 1),
    "mnist": (28, 28, 1),
    "fashion_mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
    "cifar100": (32, 32, 3),
}
NUM_CLASSES = {**dict.fromkeys(IMAGE_DATASETS[:4], 10), "cifar100": 100}
# Users' own data: a folder of class subfolders, or a TFDS dataset by name.
CUSTOM_DATASETS = ("folder", "tfds:NAME")
_TFDS_NAME = re.compile(r"^tfds:([a-z0-9_]+(/[\w.-]+)?(:[\w.]+)?)$")


def check_dataset_name(name: str) -> None:
    """Raises DataError unless `name` is a standard dataset, `folder` or
    `tfds:NAME` (a tensorflow-datasets name, optionally `/config:version`)."""
    if name in IMAGE_DATASETS or name == "folder" or _TFDS_NAME.match(name):
        return
    raise DataError(
        f"Unknown image dataset {name!r}; choose one of: {', '.join(IMAGE_DATASETS)}, "
        f"folder (your images, one subfolder per class, in --data_dir) or tfds:NAME "
        f"(a prepared tensorflow-datasets copy, e.g. tfds:svhn_cropped)."
    )


@dataclasses.dataclass(frozen=True, eq=False)
class ImageSplits:
    """One image dataset split into train/valid/test.

    Attributes:
      name: dataset name, one of `IMAGE_DATASETS`.
      train_images: uint8 [N, H, W, C], channels-last.
      train_labels: int32 [N].
      valid_images: uint8 [V, H, W, C]; V may be 0.
      valid_labels: int32 [V].
      test_images: uint8 [T, H, W, C].
      test_labels: int32 [T].
      num_classes: number of classes.
      mean: float32 [C], per-channel mean of `train_images / 255`.
      std: float32 [C], per-channel standard deviation of `train_images / 255`.
      class_names: the classes' names where the data has them (a folder
        dataset's subfolders), else None.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    valid_images: np.ndarray
    valid_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    mean: np.ndarray
    std: np.ndarray
    class_names: tuple[str, ...] | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The (H, W, C) shape of one image."""
        return tuple(int(d) for d in self.train_images.shape[1:])

    def summary(self) -> str:
        """Returns a one-line description with the split sizes."""
        h, w, c = self.image_shape
        return (
            f"{self.name}: {len(self.train_images)} train, "
            f"{len(self.valid_images)} valid, {len(self.test_images)} test images "
            f"of {h}x{w}x{c}, {self.num_classes} classes; "
            f"mean {[round(float(m), 4) for m in self.mean]}, "
            f"std {[round(float(v), 4) for v in self.std]}"
        )


def load_images(
    name: str,
    data_dir: str | Path | None = None,
    valid_size: int | None = None,
    download: bool = False,
    tfds_data_dir: str | Path | None = None,
    train_size: int | None = None,
) -> ImageSplits:
    """Loads an image dataset and carves the validation split off its end.

    Args:
      name: one of `IMAGE_DATASETS`, "folder" or "tfds:NAME" (module docstring).
      data_dir: directory holding the official files (ignored for `digits`),
        or the folder of a "folder" dataset.
      valid_size: images taken from the end of the official training set for
        validation; 0 for none. Defaults to `DEFAULT_VALID_SIZE[name]` (a
        tenth of the training images for users' own data).
      download: allow tensorflow-datasets to download the dataset when no local
        copy exists.
      tfds_data_dir: tensorflow-datasets data directory; by default `data_dir`
        when it holds a `<name>/` TFDS folder, else the TFDS default.
      train_size: keep only this many of the training images left after the
        validation split: a fixed random subset (the same in every run, in
        the original order), for searches that must fit a time budget.
        None or 0: all of them.

    Returns:
      The `ImageSplits`.

    Raises:
      DataError: unknown dataset, bad `valid_size`, or data that is missing,
        truncated or malformed.
    """
    check_dataset_name(name)
    if name not in IMAGE_DATASETS:
        return _load_custom(name, data_dir, valid_size, download, tfds_data_dir, train_size)
    if valid_size is None:
        valid_size = DEFAULT_VALID_SIZE[name]
    _check_valid_size(name, valid_size)
    if name == "digits":
        arrays = _load_digits()
    else:
        searched: list[Path] = []
        local = load_cifar_local if name in CIFAR else load_idx_local
        try:
            arrays = local(name, data_dir, searched)
        except DataError as e:
            if str(e).startswith("Dataset "):
                raise
            raise DataError(f"Dataset {name!r}: {e}") from e
        if arrays is None:
            arrays = load_tfds(name, data_dir, tfds_data_dir, download, searched)
    return _make_splits(name, *arrays, valid_size=int(valid_size), train_size=int(train_size or 0))


def _check_valid_size(name: str, valid_size: Any) -> None:
    if isinstance(valid_size, bool) or not isinstance(valid_size, (int, np.integer)):
        raise DataError(f"valid_size must be an integer, got {valid_size!r}.")
    if valid_size < 0:
        raise DataError(
            f"valid_size for {name!r} must be at least 0 (0 = no validation "
            f"split), got {valid_size}."
        )


def _load_custom(name, data_dir, valid_size, download, tfds_data_dir, train_size) -> ImageSplits:
    """A folder or TFDS dataset (module docstring)."""
    class_names = None
    if name == "folder":
        arrays, class_names = read_folder(data_dir)
    else:
        tfds_name = name[len("tfds:") :]
        searched: list[Path] = []
        arrays = load_tfds(tfds_name, None, tfds_data_dir or data_dir, download, searched)
    return _custom_splits(name, *arrays, valid_size, train_size, class_names)


def from_arrays(
    train: Any,
    test: Any = None,
    valid: Any = None,
    valid_size: int | None = None,
    train_size: int | None = None,
    name: str = "arrays",
    class_names: list[str] | None = None,
) -> ImageSplits:
    """An `ImageSplits` of users' own images held in Python.

    Args:
      train: (images, labels) arrays or a `tf.data.Dataset` of (image,
        label) pairs (`enas_tf.data.custom`): the training images, whose
        (pseudo-randomly ordered) tail is the validation split.
      test: the same for the test split; None: every fifth training image
        of each class.
      valid: the same for the validation split; None: the tail of `train`.
      valid_size: validation images carved off `train` when `valid` is None
        (default: a tenth of the training ones).
      train_size: as in `load_images`.
      name: the dataset's name in summaries and run directories.
      class_names: the classes' names, if known.

    Raises:
      DataError: for arrays that are not images and labels, or one class.
    """
    x, y = _read_arrays(train, "training")
    if test is None:
        rank = np.zeros(len(y), np.int64)
        for label in np.unique(y):
            members = np.flatnonzero(y == label)
            rank[members] = np.arange(len(members))
        held = rank % 5 == 0
        arrays = (x[~held], y[~held], x[held], y[held])
    else:
        arrays = (x, y, *_read_arrays(test, "test", x.shape[1:]))
    if valid is not None:
        extra = _read_arrays(valid, "validation", x.shape[1:])
        return _custom_splits(name, *arrays, 0, train_size, class_names, extra=extra)
    return _custom_splits(name, *arrays, valid_size, train_size, class_names)


def _read_arrays(data: Any, split: str, shape=None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images and int32 labels of one split given in Python, checked
    (against the training images' `shape`)."""
    x, y = as_arrays(data, f"The {split} data")
    x = to_uint8(x, f"The {split} images")
    y = to_labels(y, len(x), f"The {split} labels")
    if shape is not None and x.shape[1:] != shape:
        raise DataError(
            f"The {split} images are {x.shape[1:]}, the training images {shape}; "
            f"give both one shape."
        )
    return x, y


def _custom_splits(
    name, train_x, train_y, test_x, test_y, valid_size, train_size, class_names, extra=None
) -> ImageSplits:
    """Users' data in a fixed pseudo-random order, then `_make_splits`;
    `extra`: a given validation split (images, labels), appended as the tail."""
    order = np.random.default_rng(0).permutation(len(train_x))
    train_x, train_y = train_x[order], np.asarray(train_y)[order]
    if extra is not None:
        train_x = np.concatenate([train_x, extra[0]])
        train_y = np.concatenate([train_y, extra[1]])
        valid_size = len(extra[0])
    labels = np.concatenate([np.asarray(train_y), np.asarray(test_y)])
    num_classes = len(class_names) if class_names else int(labels.max()) + 1 if labels.size else 0
    if len(np.unique(train_y)) < 2:
        raise DataError(
            f"The training images of {name!r} hold {len(np.unique(train_y))} class; "
            f"classification needs at least 2."
        )
    if valid_size is None:
        valid_size = max(1, len(train_x) // 10)
    _check_valid_size(name, valid_size)
    return _make_splits(
        name,
        train_x,
        train_y,
        test_x,
        test_y,
        valid_size=int(valid_size),
        train_size=int(train_size or 0),
        num_classes=num_classes,
        class_names=tuple(class_names) if class_names else None,
    )


def _make_splits(
    name: str,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    valid_size: int,
    train_size: int = 0,
    num_classes: int | None = None,
    class_names: tuple[str, ...] | None = None,
) -> ImageSplits:
    """Carves the validation tail off the training set, keeps `train_size`
    of the rest (0: all) and computes stats."""
    n = len(train_x)
    if n == 0:
        raise DataError(f"The training set of {name!r} is empty.")
    if valid_size >= n:
        raise DataError(
            f"valid_size={valid_size} is too large for {name!r}, whose training "
            f"set has {n} images; choose a value from 0 to {n - 1}."
        )
    cut = n - valid_size
    keep = np.arange(cut)
    if train_size:
        if not 0 < train_size <= cut:
            raise DataError(
                f"train_size={train_size} is out of range for {name!r}: "
                f"{cut} training images are left after the validation split; "
                f"choose a value from 1 to {cut}, or none to keep them all."
            )
        keep = np.sort(np.random.default_rng(0).permutation(cut)[:train_size])
    train_images = np.ascontiguousarray(train_x[keep])
    mean, std = _channel_stats(train_images)
    return ImageSplits(
        name=name,
        train_images=train_images,
        train_labels=train_y[keep].astype(np.int32),
        valid_images=np.ascontiguousarray(train_x[cut:]),
        valid_labels=train_y[cut:].astype(np.int32),
        test_images=np.ascontiguousarray(test_x),
        test_labels=test_y.astype(np.int32),
        num_classes=num_classes or NUM_CLASSES[name],
        mean=mean,
        std=std,
        class_names=class_names,
    )


def _channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of `images / 255`, accumulated in float64."""
    flat = images.reshape(-1, images.shape[-1])
    total = np.zeros(flat.shape[1], np.float64)
    squares = np.zeros(flat.shape[1], np.float64)
    step = 1 << 20
    for start in range(0, len(flat), step):
        chunk = flat[start : start + step].astype(np.float64) / 255.0
        total += chunk.sum(axis=0)
        squares += np.square(chunk).sum(axis=0)
    mean = total / len(flat)
    var = np.maximum(squares / len(flat) - np.square(mean), 0.0)
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def _load_digits() -> Arrays:
    """scikit-learn's 8x8 digits with the fixed split (test: index % 5 == 0)."""
    from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel

    digits = load_digits()
    images = np.round(digits.images * 255.0 / 16.0).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int32)
    test = np.arange(len(images)) % 5 == 0
    return images[~test], labels[~test], images[test], labels[test]
