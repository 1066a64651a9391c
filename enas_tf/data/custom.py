"""Users' own image data: a folder of class subfolders, numpy arrays, tf.data.

`load_images` (`enas_tf.data.images`) reads these besides the standard
datasets; each becomes the same `ImageSplits` (uint8 NHWC images, int32
labels), its image size, channels and classes taken from the data:

- `read_folder(data_dir)` (`--dataset=folder --data_dir=DIR`): `DIR/train/`
  and `DIR/test/`, each holding one subfolder per class, or `DIR/` holding
  the class subfolders (then every fifth image of each class, in file-name
  order, is the test split, as for digits). Images are PNG, JPEG, BMP or GIF
  files of one size; grayscale throughout gives one channel, else RGB
  (alpha dropped). Classes are the sorted subfolder names.
- `from_arrays(x, y)`: numpy images `[N, H, W]` or `[N, H, W, C]` (uint8, or
  floats in [0, 1] or [0, 255]) and integer labels; or a `tf.data.Dataset`
  of (image, label) pairs, batched or not (`as_arrays`).

The training images are put in a fixed pseudo-random order (seed 0) before
the validation tail is carved off, so the validation split holds every
class even when the files come sorted by class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from enas_tf.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def _read_split(
    root: Path, classes: list[str] | None
) -> tuple[list[np.ndarray], list[int], list[str]]:
    """Decoded images (as PIL modes L or RGB arrays) and labels of the class
    subfolders of `root`; `classes` fixes the class order (test split)."""
    from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel

    folders = _class_folders(root)
    names = [f.name for f in folders]
    if classes is None:
        if len(folders) < 2:
            raise DataError(
                f"{root} has {len(folders)} class subfolder(s) "
                f"({', '.join(names) or 'none'}); a classification dataset needs at "
                f"least 2: put each class's images in a subfolder named after it."
            )
        classes = names
    elif set(names) - set(classes):
        raise DataError(
            f"{root} has class subfolders the training split lacks: "
            f"{', '.join(sorted(set(names) - set(classes)))}; give both splits the same classes."
        )
    images, labels = [], []
    for folder in folders:
        files = _image_files(folder)
        if not files:
            raise DataError(
                f"The class folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)} files)."
            )
        for path in files:
            try:
                with Image.open(path) as image:
                    image.load()
                    mode = "L" if image.mode in ("1", "L", "I;16", "I", "F") else "RGB"
                    images.append(np.asarray(image.convert(mode)))
            except (OSError, UnidentifiedImageError, ValueError) as e:
                raise DataError(f"Cannot read the image {path} ({e}); fix or remove it.") from None
            labels.append(classes.index(folder.name))
    return images, labels, classes


def _stack(images: list[np.ndarray], files_root: Path) -> np.ndarray:
    sizes = {im.shape[:2] for im in images}
    if len(sizes) > 1:
        listed = ", ".join(f"{h}x{w}" for h, w in sorted(sizes)[:4])
        raise DataError(
            f"The images under {files_root} have different sizes ({listed}); the "
            f"networks take one size: resize them all to one (e.g. with PIL's "
            f"Image.resize) first."
        )
    color = any(im.ndim == 3 for im in images)
    arrays = [
        np.repeat(im[..., None], 3, axis=-1) if color and im.ndim == 2 else im for im in images
    ]
    stacked = np.stack(arrays).astype(np.uint8)
    return stacked if stacked.ndim == 4 else stacked[..., None]


def read_folder(data_dir: str | Path | None) -> tuple[tuple[np.ndarray, ...], list[str]]:
    """The train and test images and labels of a folder dataset (module
    docstring), and the class names.

    Raises:
      DataError: a missing folder, fewer than 2 classes, an empty class, an
        unreadable image or images of different sizes, naming the problem.
    """
    if data_dir is None:
        raise DataError(
            "--dataset=folder needs --data_dir: a folder with one subfolder of images "
            "per class (or train/ and test/ folders holding such subfolders)."
        )
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"The dataset folder {root} does not exist.")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_images, train_labels, classes = _read_split(root / "train", None)
        test_images, test_labels, _ = _read_split(root / "test", classes)
        x = _stack(train_images + test_images, root)
        n = len(train_images)
        arrays = (x[:n], np.array(train_labels), x[n:], np.array(test_labels))
    else:
        images, labels, classes = _read_split(root, None)
        x, y = _stack(images, root), np.array(labels)
        # Every fifth image of each class (in file-name order) is the test split.
        rank = np.zeros(len(y), np.int64)
        for label in range(len(classes)):
            members = np.flatnonzero(y == label)
            rank[members] = np.arange(len(members))
        test = rank % 5 == 0
        arrays = (x[~test], y[~test], x[test], y[test])
    return arrays, classes


def to_uint8(images: Any, what: str) -> np.ndarray:
    """Images `[N, H, W]` or `[N, H, W, C]` (C 1, 3 or 4) as uint8 NHWC:
    floats in [0, 1] are scaled by 255, floats in [0, 255] rounded.

    Raises:
      DataError: for another shape, channel count or value range.
    """
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4) or min(x.shape[1:3]) < 1:
        raise DataError(
            f"{what} must be images of shape [N, H, W] or [N, H, W, C] with C 1 or 3; "
            f"received shape {tuple(np.shape(images))}."
        )
    if x.shape[-1] == 4:
        x = x[..., :3]
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.number) or x.size == 0:
        raise DataError(f"{what} must be numbers; received dtype {x.dtype} ({x.size} values).")
    low, high = float(np.min(x)), float(np.max(x))
    if low < 0 or high > 255 or not np.all(np.isfinite([low, high])):
        raise DataError(
            f"{what} must be uint8, or floats in [0, 1] or [0, 255]; received values "
            f"from {low:g} to {high:g}."
        )
    scale = 255.0 if high <= 1.0 else 1.0
    return np.round(x.astype(np.float64) * scale).astype(np.uint8)


def to_labels(labels: Any, count: int, what: str) -> np.ndarray:
    """Integer class labels `[count]` (or one-hot `[count, K]`) as int32."""
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        y = np.argmax(y, axis=1)
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or len(y) != count:
        raise DataError(
            f"{what} must be {count} class labels (one per image); received shape "
            f"{tuple(np.shape(labels))}."
        )
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.mod(y, 1) == 0):
            raise DataError(f"{what} must be integer class labels; received {y.dtype} values.")
        y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise DataError(f"{what} must be class indices >= 0; received {int(y.min())}.")
    return y.astype(np.int32)


def as_arrays(data: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) from a tuple of two arrays or a `tf.data.Dataset` of
    (image, label) pairs, batched or not."""
    if hasattr(data, "as_numpy_iterator"):
        xs, ys = [], []
        for item in data.as_numpy_iterator():
            if not (isinstance(item, tuple) and len(item) == 2):
                raise DataError(f"{what} must yield (image, label) pairs.")
            x, y = item
            batched = np.ndim(x) == 4 or (np.ndim(x) == 3 and np.ndim(y) == 1)
            xs.append(x if batched else x[None])
            ys.append(np.reshape(y, [-1]) if batched else np.reshape(y, [1]))
        if not xs:
            raise DataError(f"{what} is empty.")
        return np.concatenate(xs), np.concatenate(ys)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    raise DataError(
        f"{what} must be a pair (images, labels) of arrays or a tf.data.Dataset of "
        f"(image, label) pairs; received {type(data).__name__}."
    )


__all__ = ["IMAGE_SUFFIXES", "as_arrays", "read_folder", "to_labels", "to_uint8"]
