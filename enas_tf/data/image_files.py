"""Readers of the official image dataset files, and the TFDS fallback.

Used by `enas_tf.data.images.load_images`; no TensorFlow needed (the
tensorflow-datasets fallback imports it lazily). Every missing, truncated or
malformed file raises `DataError` naming the file.
"""

from __future__ import annotations

import codecs
import gzip
import io
import pickle
import struct
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from enas_tf.errors import DataError

NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100}
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")  # fmt: skip
# name -> (folder, archive, train members in order, test member, label key)
CIFAR = {
    "cifar10": ("cifar-10-batches-py", "cifar-10-python.tar.gz",
                tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                "labels"),
    "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz", ("train",), "test",
                 "fine_labels"),
}  # fmt: skip
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

# ----------------------------------------------------------------------------
# MNIST and Fashion-MNIST: IDX files.


def load_idx_local(name: str, data_dir: str | Path | None, searched: list[Path]) -> Arrays | None:
    """Reads the four IDX files from the first directory holding them."""
    if data_dir is not None:
        root = Path(data_dir)
        dirs = [root] + [root / sub for sub in (name, name.replace("_", "-"))]
    elif name == "fashion_mnist":
        dirs = [FASHION_MNIST_SYSTEM_DIR]
    else:
        dirs = []
    for folder in dict.fromkeys(dirs):
        searched.append(folder)
        if not folder.is_dir():
            continue
        paths = [_idx_path(folder, base) for base in IDX_FILES]
        if all(p is None for p in paths):
            continue
        missing = [b for b, p in zip(IDX_FILES, paths) if p is None]
        if missing:
            raise DataError(
                f"Dataset {name!r}: {folder} holds only part of the IDX files; "
                f"missing {', '.join(missing)} (plain or .gz). Put all four of "
                f"{', '.join(IDX_FILES)} there."
            )
        train_x = _read_idx(paths[0], images=True)
        train_y = _read_idx(paths[1], images=False)
        test_x = _read_idx(paths[2], images=True)
        test_y = _read_idx(paths[3], images=False)
        for xs, ys, px, py in ((train_x, train_y, *paths[:2]), (test_x, test_y, *paths[2:])):
            if len(xs) != len(ys):
                raise DataError(
                    f"Dataset {name!r}: {px} has {len(xs)} images but {py} has "
                    f"{len(ys)} labels; the two files must come from the same "
                    "release."
                )
            if len(ys) and ys.max() >= 10:
                raise DataError(
                    f"Dataset {name!r}: {py} holds label {int(ys.max())}, but labels must be 0..9."
                )
        if train_x.shape[1:] != test_x.shape[1:]:
            raise DataError(
                f"Dataset {name!r}: {paths[0]} has {train_x.shape[1:]} images "
                f"but {paths[2]} has {test_x.shape[1:]} images."
            )
        return train_x[..., None], train_y, test_x[..., None], test_y
    return None


def _idx_path(folder: Path, base: str) -> Path | None:
    """Returns `folder/base` or `folder/base.gz`, whichever exists."""
    for candidate in (folder / base, folder / f"{base}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    """Reads a file, gunzipping it when its name ends in `.gz`."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"Cannot read {path}: {e.strerror or e}.") from e
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"{path} is not a valid gzip file ({e}); it is corrupt or truncated. "
            "Download it again, or put the uncompressed file there instead."
        ) from e


def _read_idx(path: Path, images: bool) -> np.ndarray:
    """Parses an IDX file of unsigned bytes: images [N, R, C] or labels [N]."""
    raw = _read_bytes(path)
    kind, magic, ndim = ("image", 2051, 3) if images else ("label", 2049, 1)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"{path} is truncated: it has {len(raw)} bytes, fewer than the "
            f"{header}-byte header of an IDX {kind} file."
        )
    (got,) = struct.unpack(">I", raw[:4])
    if got != magic:
        raise DataError(
            f"{path} is not an IDX {kind} file: its magic number is {got}, "
            f"expected {magic}. Check that the file names were not swapped."
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header < size:
        raise DataError(
            f"{path} is truncated: its header promises {' x '.join(map(str, dims))}"
            f" = {size} bytes of data but only {len(raw) - header} follow. "
            "Download it again."
        )
    return np.frombuffer(raw, np.uint8, count=size, offset=header).reshape(dims)


# ----------------------------------------------------------------------------
# CIFAR-10 and CIFAR-100: pickled python batches.


def _latin1_encode(obj: str, encoding: str = "utf-8") -> bytes:
    """`_codecs.encode`, restricted to the latin-1 use of numpy pickles."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with {encoding!r}")
    return codecs.encode(obj, encoding)


_SAMPLE = np.zeros(1, np.uint8)
_RECONSTRUCT = _SAMPLE.__reduce__()[0]
_FROMBUFFER = _SAMPLE.__reduce_ex__(5)[0]
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that can only build numpy arrays and plain containers."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"it references {module}.{name}, which a CIFAR batch never "
                "contains; refusing to load it"
            ) from None


def _unpickle_batch(
    raw: bytes, where: str, label_key: str, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Decodes one CIFAR batch into uint8 NHWC images and int64 labels."""
    try:
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # pylint: disable=broad-except
        raise DataError(
            f"{where} is not a readable CIFAR python batch ({type(e).__name__}: "
            f"{e}); it is truncated, corrupt or not from the official python "
            "version. Download it again."
        ) from e
    if not isinstance(batch, dict):
        raise DataError(f"{where} does not hold a dict, so it is not a CIFAR batch.")
    values = {}
    for key in ("data", label_key):
        value = batch.get(key.encode(), batch.get(key))
        if value is None:
            keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in batch)
            raise DataError(
                f"{where} has no {key!r} entry (it has {keys}); it is not a batch "
                "of this CIFAR dataset."
            )
        values[key] = value
    try:
        data = np.asarray(values["data"])
        labels = np.asarray(values[label_key], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where} holds malformed data or labels ({e}).") from e
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(
            f"{where}: 'data' is {data.dtype} {list(data.shape)}, expected uint8 "
            "[rows, 3072] (32x32 pixels x 3 channels)."
        )
    if len(labels) != len(data):
        raise DataError(f"{where} has {len(data)} images but {len(labels)} labels.")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{where} holds labels outside 0..{num_classes - 1} (found "
            f"{int(labels.min())}..{int(labels.max())})."
        )
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def load_cifar_local(name: str, data_dir: str | Path | None, searched: list[Path]) -> Arrays | None:
    """Reads the CIFAR python batches from a folder or the official archive."""
    if data_dir is None:
        return None
    folder_name, archive_name, train_members, test_member, label_key = CIFAR[name]
    members = (*train_members, test_member)
    root = Path(data_dir)
    reader = None
    for folder in (root / folder_name, root):
        searched.append(folder)
        if folder.is_dir() and any((folder / m).is_file() for m in members):
            missing = [m for m in members if not (folder / m).is_file()]
            if missing:
                raise DataError(
                    f"Dataset {name!r}: {folder} lacks {', '.join(missing)}; it "
                    f"must hold all of {', '.join(members)} from {archive_name}."
                )
            reader = _folder_reader(folder)
            break
    archive = root / archive_name
    searched.append(archive)
    if reader is None and archive.is_file():
        reader = _archive_reader(name, archive, folder_name, members)
    if reader is None:
        return None
    parts = []
    for member in members:
        raw, where = reader(member)
        parts.append(_unpickle_batch(raw, where, label_key, NUM_CLASSES[name]))
    train = parts[:-1]
    train_x = np.concatenate([x for x, _ in train])
    train_y = np.concatenate([y for _, y in train])
    return train_x, train_y, parts[-1][0], parts[-1][1]


def _folder_reader(folder: Path) -> Callable[[str], tuple[bytes, str]]:
    """Returns a function reading one batch file from an extracted folder."""
    return lambda member: (_read_bytes(folder / member), str(folder / member))


def _archive_reader(
    name: str, archive: Path, folder_name: str, members: tuple[str, ...]
) -> Callable[[str], tuple[bytes, str]]:
    """Reads all members from the official tar.gz; returns a lookup function."""
    contents = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in members:
                path = f"{folder_name}/{member}"
                try:
                    info = tar.getmember(path)
                except KeyError:
                    raise DataError(
                        f"Dataset {name!r}: archive {archive} has no member "
                        f"{path}; it is not the official {archive.name}."
                    ) from None
                handle = tar.extractfile(info)
                if handle is None:
                    raise DataError(f"{archive}: member {path} is not a file.")
                contents[member] = handle.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(
            f"{archive} is not a readable .tar.gz archive ({e}); it is corrupt "
            "or truncated. Download it again."
        ) from e
    return lambda m: (contents[m], f"{archive}:{folder_name}/{m}")


# ----------------------------------------------------------------------------
# tensorflow-datasets fallback.


def load_tfds(
    name: str,
    data_dir: str | Path | None,
    tfds_data_dir: str | Path | None,
    download: bool,
    searched: list[Path],
) -> Arrays:
    """Loads a prepared (or, with `download`, downloaded) TFDS copy."""
    if tfds_data_dir is None and data_dir is not None:
        if (Path(data_dir) / name).is_dir():  # looks like a TFDS data_dir
            tfds_data_dir = data_dir
    tfds_dir = str(tfds_data_dir) if tfds_data_dir is not None else None
    try:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        reason = f"tensorflow-datasets cannot be imported: {e}"
        raise DataError(_unavailable(name, searched, None, False, reason)) from e
    if tfds_dir is None:
        default = getattr(tfds.core.constants, "DATA_DIR", "~/tensorflow_datasets")
        tfds_dir = str(default)
    prepared = Path(tfds_dir).expanduser() / name
    if not download and not any(prepared.rglob("dataset_info.json")):
        # Checked here rather than left to tfds.load, which would log and
        # leave empty folders behind in the TFDS directory.
        raise DataError(_unavailable(name, searched, tfds_dir, download, None))
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)  # TFDS logs every file it opens
    try:
        train, test = tfds.as_numpy(
            tfds.load(
                name,
                split=["train", "test"],
                data_dir=tfds_dir,
                download=download,
                as_supervised=True,
                batch_size=-1,
            )
        )
    except Exception as e:  # pylint: disable=broad-except
        text = str(e).strip()
        reason = text.splitlines()[0][:200] if text else type(e).__name__
        message = _unavailable(name, searched, tfds_dir, download,
                               reason if download else None)  # fmt: skip
        raise DataError(message) from e
    finally:
        logging.set_verbosity(verbosity)
    return (
        np.asarray(train[0], np.uint8),
        np.asarray(train[1], np.int64),
        np.asarray(test[0], np.uint8),
        np.asarray(test[1], np.int64),
    )


def _unavailable(
    name: str,
    searched: list[Path],
    tfds_dir: str | None,
    download: bool,
    reason: str | None = None,
) -> str:
    """The one-paragraph message for a dataset found neither locally nor in TFDS."""
    head = f"Dataset {name!r} is not available offline."
    if reason is not None:
        head = f"Dataset {name!r} could not be loaded ({reason})."
    fetch = (
        "check the network connection and retry with --download"
        if download
        else "pass --download (download=True) to let tensorflow-datasets fetch it"
    )
    if name not in NUM_CLASSES:  # any other TFDS dataset (`tfds:NAME`): no official files
        return (
            f"{head} Looked for a prepared TFDS copy in "
            f"{tfds_dir or 'the default TFDS directory'}. Provide it with --data_dir=DIR, "
            f"a tensorflow-datasets data directory holding {name}/, or {fetch}."
        )
    if name in CIFAR:
        folder, archive = CIFAR[name][:2]
        what = "the official python batches"
        how = f"{folder}/ (or {archive}) from the official site"
    else:
        what = "the IDX files"
        how = f"{', '.join(IDX_FILES)} (each plain or .gz)"
    where = ", ".join(str(p) for p in searched)
    looked = (
        f"Looked for {what} in {where} and"
        if where
        else ("No data_dir was given, so no local copy was searched for; looked")
    )
    return (
        f"{head} {looked} for a prepared TFDS copy in "
        f"{tfds_dir or 'the default TFDS directory'}. Provide it with "
        f"--data_dir=DIR holding {how}, or {fetch}."
    )
