"""Tests for enas_tf.data.images: official file formats, splits and errors."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from enas_tf.data import image_files
from enas_tf.data.images import IMAGE_DATASETS, load_images
from enas_tf.errors import DataError

REPO = Path(__file__).resolve().parents[2]
N_TRAIN, N_TEST = 12, 4
ROWS_PER_BATCH = 3


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scaled = x.astype(np.float64) / 255.0
    return scaled.mean(axis=(0, 1, 2)), scaled.std(axis=(0, 1, 2))


# ---------------------------------------------------------------------------
# IDX helpers.


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write(path: Path, data: bytes, gz: bool) -> Path:
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def _make_idx_dir(folder: Path, gz: bool, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28), np.uint8),
        "train-labels-idx1-ubyte": (np.arange(N_TRAIN) * 7 % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(N_TEST) % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        magic = 2051 if array.ndim == 3 else 2049
        _write(folder / name, _idx_bytes(array, magic), gz)
    return arrays


class TestIdx:
    @pytest.mark.parametrize("gz", [False, True])
    def test_loads_plain_and_gzip(self, tmp_path, gz):
        arrays = _make_idx_dir(tmp_path, gz)
        splits = load_images("mnist", data_dir=tmp_path, valid_size=3)
        train_x = arrays["train-images-idx3-ubyte"][..., None]
        train_y = arrays["train-labels-idx1-ubyte"]
        assert splits.train_images.shape == (9, 28, 28, 1)
        assert splits.valid_images.shape == (3, 28, 28, 1)
        assert splits.test_images.shape == (N_TEST, 28, 28, 1)
        assert splits.train_images.dtype == np.uint8
        assert splits.train_labels.dtype == np.int32
        assert splits.num_classes == 10 and splits.image_shape == (28, 28, 1)
        np.testing.assert_array_equal(splits.train_images, train_x[:9])
        np.testing.assert_array_equal(splits.valid_images, train_x[9:])
        np.testing.assert_array_equal(splits.valid_labels, train_y[9:])
        np.testing.assert_array_equal(
            splits.test_images, arrays["t10k-images-idx3-ubyte"][..., None]
        )
        np.testing.assert_array_equal(splits.test_labels, arrays["t10k-labels-idx1-ubyte"])
        mean, std = _stats(train_x[:9])
        np.testing.assert_allclose(splits.mean, mean, rtol=1e-5)
        np.testing.assert_allclose(splits.std, std, rtol=1e-5)
        assert splits.mean.dtype == np.float32 and splits.mean.shape == (1,)
        assert "9 train, 3 valid, 4 test" in splits.summary()

    def test_fashion_subfolder_and_no_valid(self, tmp_path):
        arrays = _make_idx_dir(tmp_path / "fashion-mnist", gz=True)
        splits = load_images("fashion_mnist", data_dir=tmp_path, valid_size=0)
        assert splits.train_images.shape == (N_TRAIN, 28, 28, 1)
        assert splits.valid_images.shape == (0, 28, 28, 1)
        assert splits.valid_labels.shape == (0,)
        mean, _ = _stats(arrays["train-images-idx3-ubyte"][..., None])
        np.testing.assert_allclose(splits.mean, mean, rtol=1e-5)

    @pytest.mark.parametrize("valid_size", [N_TRAIN, 100, -1])
    def test_bad_valid_size(self, tmp_path, valid_size):
        _make_idx_dir(tmp_path, gz=False)
        with pytest.raises(DataError, match="valid_size"):
            load_images("mnist", data_dir=tmp_path, valid_size=valid_size)

    def test_valid_size_message_names_range(self, tmp_path):
        _make_idx_dir(tmp_path, gz=False)
        with pytest.raises(DataError, match=f"0 to {N_TRAIN - 1}"):
            load_images("mnist", data_dir=tmp_path, valid_size=N_TRAIN)

    @pytest.mark.parametrize("gz", [False, True])
    def test_truncated(self, tmp_path, gz):
        arrays = _make_idx_dir(tmp_path, gz=gz)
        raw = _idx_bytes(arrays["train-images-idx3-ubyte"], 2051)
        path = _write(tmp_path / "train-images-idx3-ubyte", raw[:-100], gz)
        with pytest.raises(DataError, match="truncated") as info:
            load_images("mnist", data_dir=tmp_path)
        assert str(path) in str(info.value)

    def test_truncated_header(self, tmp_path):
        _make_idx_dir(tmp_path, gz=False)
        (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00")
        with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*truncated"):
            load_images("mnist", data_dir=tmp_path)

    def test_wrong_magic(self, tmp_path):
        arrays = _make_idx_dir(tmp_path, gz=False)
        labels = arrays["train-labels-idx1-ubyte"]
        (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(labels, 2049))
        with pytest.raises(DataError, match="magic number is 2049, expected 2051"):
            load_images("mnist", data_dir=tmp_path)

    def test_label_count_mismatch(self, tmp_path):
        arrays = _make_idx_dir(tmp_path, gz=False)
        labels = arrays["train-labels-idx1-ubyte"][:-1]
        (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(labels, 2049))
        with pytest.raises(DataError, match="12 images but .* has 11 labels"):
            load_images("mnist", data_dir=tmp_path)

    def test_label_out_of_range(self, tmp_path):
        _make_idx_dir(tmp_path, gz=False)
        labels = np.full(N_TEST, 10, np.uint8)
        (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(labels, 2049))
        with pytest.raises(DataError, match="label 10"):
            load_images("mnist", data_dir=tmp_path)

    @pytest.mark.parametrize("garbage", ["not gzip", "truncated gzip"])
    def test_corrupt_gzip(self, tmp_path, garbage):
        _make_idx_dir(tmp_path, gz=True)
        path = tmp_path / "train-labels-idx1-ubyte.gz"
        raw = path.read_bytes()
        path.write_bytes(b"hello world" if garbage == "not gzip" else raw[:-10])
        with pytest.raises(DataError, match="gzip") as info:
            load_images("mnist", data_dir=tmp_path)
        assert str(path) in str(info.value)

    def test_partial_files(self, tmp_path):
        _make_idx_dir(tmp_path, gz=False)
        (tmp_path / "t10k-images-idx3-ubyte").unlink()
        with pytest.raises(DataError, match="missing t10k-images-idx3-ubyte"):
            load_images("mnist", data_dir=tmp_path)


# ---------------------------------------------------------------------------
# CIFAR helpers.


def _cifar_batch(rows: int, label_key: bytes, classes: int, start: int) -> dict:
    rng = np.random.default_rng(start)
    batch = {
        b"batch_label": b"training batch",
        b"data": rng.integers(0, 256, (rows, 3072), np.uint8),
        label_key: [int(x) for x in (np.arange(rows) + start) % classes],
        b"filenames": [b"img%d.png" % i for i in range(rows)],
    }
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [0] * rows
    return batch


def _cifar_files(name: str) -> tuple[str, str, dict[str, dict]]:
    if name == "cifar10":
        files = {
            f"data_batch_{i}": _cifar_batch(ROWS_PER_BATCH, b"labels", 10, i * 10)
            for i in range(1, 6)
        }
        files["test_batch"] = _cifar_batch(2, b"labels", 10, 99)
        return "cifar-10-batches-py", "cifar-10-python.tar.gz", files
    files = {
        "train": _cifar_batch(7, b"fine_labels", 100, 95),
        "test": _cifar_batch(2, b"fine_labels", 100, 50),
    }
    return "cifar-100-python", "cifar-100-python.tar.gz", files


def _make_cifar(root: Path, name: str, layout: str) -> dict[str, dict]:
    folder, archive, files = _cifar_files(name)
    blobs = {m: pickle.dumps(b, protocol=2) for m, b in files.items()}
    root.mkdir(parents=True, exist_ok=True)
    if layout == "archive":
        with tarfile.open(root / archive, "w:gz") as tar:
            for member, blob in blobs.items():
                info = tarfile.TarInfo(f"{folder}/{member}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    else:
        target = root / folder if layout == "subfolder" else root
        target.mkdir(exist_ok=True)
        for member, blob in blobs.items():
            (target / member).write_bytes(blob)
    return files


def _nhwc(data: np.ndarray) -> np.ndarray:
    out = np.zeros((len(data), 32, 32, 3), np.uint8)
    for ch in range(3):
        out[..., ch] = data[:, ch * 1024 : (ch + 1) * 1024].reshape(-1, 32, 32)
    return out


class TestCifar:
    @pytest.mark.parametrize("layout", ["subfolder", "flat", "archive"])
    def test_cifar10_layouts(self, tmp_path, layout):
        files = _make_cifar(tmp_path, "cifar10", layout)
        splits = load_images("cifar10", data_dir=tmp_path, valid_size=2)
        batches = [files[f"data_batch_{i}"] for i in range(1, 6)]
        data = np.concatenate([batch[b"data"] for batch in batches])
        labels = np.concatenate([batch[b"labels"] for batch in batches])
        assert splits.train_images.shape == (13, 32, 32, 3)
        assert splits.valid_images.shape == (2, 32, 32, 3)
        assert splits.test_images.shape == (2, 32, 32, 3)
        assert splits.num_classes == 10
        # A known pixel: row 4, channel 1 (G), y=5, x=7.
        assert splits.train_images[4, 5, 7, 1] == data[4, 1024 + 5 * 32 + 7]
        np.testing.assert_array_equal(splits.train_images, _nhwc(data)[:13])
        np.testing.assert_array_equal(splits.train_labels, labels[:13])
        # The validation split is the tail of data_batch_5.
        tail = files["data_batch_5"]
        np.testing.assert_array_equal(splits.valid_images, _nhwc(tail[b"data"])[-2:])
        np.testing.assert_array_equal(splits.valid_labels, tail[b"labels"][-2:])
        np.testing.assert_array_equal(splits.test_images, _nhwc(files["test_batch"][b"data"]))
        mean, std = _stats(_nhwc(data)[:13])
        np.testing.assert_allclose(splits.mean, mean, rtol=1e-5)
        np.testing.assert_allclose(splits.std, std, rtol=1e-5)
        assert splits.mean.shape == (3,)

    @pytest.mark.parametrize("layout", ["subfolder", "archive"])
    def test_cifar100(self, tmp_path, layout):
        files = _make_cifar(tmp_path, "cifar100", layout)
        splits = load_images("cifar100", data_dir=tmp_path, valid_size=0)
        assert splits.num_classes == 100
        assert splits.train_images.shape == (7, 32, 32, 3)
        fine = files["train"][b"fine_labels"]
        np.testing.assert_array_equal(splits.train_labels, fine)
        assert splits.train_labels.max() == 99
        np.testing.assert_array_equal(splits.test_images, _nhwc(files["test"][b"data"]))

    def test_numpy_pickle_protocol5(self, tmp_path):
        folder = tmp_path / "cifar-100-python"
        folder.mkdir()
        for member, rows in (("train", 4), ("test", 2)):
            batch = _cifar_batch(rows, b"fine_labels", 100, 0)
            (folder / member).write_bytes(pickle.dumps(batch, protocol=5))
        splits = load_images("cifar100", data_dir=tmp_path, valid_size=1)
        assert splits.train_images.shape == (3, 32, 32, 3)

    def test_truncated_pickle(self, tmp_path):
        _make_cifar(tmp_path, "cifar10", "subfolder")
        path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
        path.write_bytes(path.read_bytes()[:500])
        with pytest.raises(DataError, match="data_batch_3.*not a readable"):
            load_images("cifar10", data_dir=tmp_path)

    def test_forbidden_global_is_refused(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)

        class Evil:
            def __reduce__(self):
                return (os.system, ("echo should-not-run > evil.txt",))

        _make_cifar(tmp_path, "cifar10", "subfolder")
        path = tmp_path / "cifar-10-batches-py" / "test_batch"
        path.write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
        with pytest.raises(DataError, match="refusing") as info:
            load_images("cifar10", data_dir=tmp_path)
        assert "test_batch" in str(info.value) and "system" in str(info.value)
        assert not Path("evil.txt").exists()

    def test_missing_key(self, tmp_path):
        files = _make_cifar(tmp_path, "cifar10", "subfolder")
        batch = dict(files["data_batch_1"])
        del batch[b"labels"]
        path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
        path.write_bytes(pickle.dumps(batch, protocol=2))
        with pytest.raises(DataError, match="data_batch_1 has no 'labels' entry"):
            load_images("cifar10", data_dir=tmp_path)

    def test_wrong_row_size(self, tmp_path):
        files = _make_cifar(tmp_path, "cifar10", "subfolder")
        batch = {**files["test_batch"], b"data": np.zeros((2, 100), np.uint8)}
        path = tmp_path / "cifar-10-batches-py" / "test_batch"
        path.write_bytes(pickle.dumps(batch, protocol=2))
        with pytest.raises(DataError, match="test_batch.*3072"):
            load_images("cifar10", data_dir=tmp_path)

    def test_missing_batch_in_folder(self, tmp_path):
        _make_cifar(tmp_path, "cifar10", "subfolder")
        (tmp_path / "cifar-10-batches-py" / "data_batch_2").unlink()
        with pytest.raises(DataError, match="lacks data_batch_2"):
            load_images("cifar10", data_dir=tmp_path)

    def test_corrupt_archive(self, tmp_path):
        _make_cifar(tmp_path, "cifar10", "archive")
        path = tmp_path / "cifar-10-python.tar.gz"
        path.write_bytes(path.read_bytes()[:200])
        with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
            load_images("cifar10", data_dir=tmp_path)


# ---------------------------------------------------------------------------
# Missing data, TFDS fallback, names.


class TestMissing:
    @pytest.mark.parametrize(
        "name,hint",
        [("cifar10", "cifar-10-batches-py/"), ("mnist", "train-images-idx3-ubyte")],
    )
    def test_not_available_offline(self, tmp_path, name, hint):
        data_dir = tmp_path / "data"
        tfds_dir = tmp_path / "tfds"
        data_dir.mkdir()
        tfds_dir.mkdir()
        with pytest.raises(DataError) as info:
            load_images(name, data_dir=data_dir, tfds_data_dir=tfds_dir, download=False)
        message = str(info.value)
        assert f"Dataset '{name}' is not available offline" in message
        assert str(data_dir) in message and str(tfds_dir) in message
        assert hint in message and "--download" in message
        assert "\n" not in message

    def test_unknown_name(self):
        with pytest.raises(DataError, match="Unknown image dataset 'svhn'") as info:
            load_images("svhn")
        assert all(name in str(info.value) for name in IMAGE_DATASETS)


class TestDigits:
    def test_splits(self):
        from sklearn.datasets import load_digits

        splits = load_images("digits")
        assert splits.train_images.shape == (1077, 8, 8, 1)
        assert splits.valid_images.shape == (360, 8, 8, 1)
        assert splits.test_images.shape == (360, 8, 8, 1)
        assert splits.num_classes == 10
        assert splits.train_images.dtype == np.uint8
        assert splits.train_images.max() == 255 and splits.train_images.min() == 0
        assert set(np.unique(splits.train_labels)) == set(range(10))
        raw = load_digits()
        expected = np.round(raw.images[::5] * 255 / 16).astype(np.uint8)[..., None]
        np.testing.assert_array_equal(splits.test_images, expected)
        np.testing.assert_array_equal(splits.test_labels, raw.target[::5])
        rest = np.delete(np.arange(len(raw.target)), np.arange(0, 1797, 5))
        np.testing.assert_array_equal(splits.valid_labels, raw.target[rest][-360:])
        mean, std = _stats(splits.train_images)
        np.testing.assert_allclose(splits.mean, mean, rtol=1e-5)
        np.testing.assert_allclose(splits.std, std, rtol=1e-5)

    def test_deterministic(self):
        a = load_images("digits", valid_size=100)
        b = load_images("digits", valid_size=100)
        assert a.train_images.shape == (1337, 8, 8, 1)
        np.testing.assert_array_equal(a.train_images, b.train_images)
        np.testing.assert_array_equal(a.valid_labels, b.valid_labels)

    def test_train_size_keeps_a_fixed_subset(self):
        full = load_images("digits", valid_size=100)
        a = load_images("digits", valid_size=100, train_size=300)
        b = load_images("digits", valid_size=100, train_size=300)
        assert a.train_images.shape == (300, 8, 8, 1)
        np.testing.assert_array_equal(a.train_images, b.train_images)
        np.testing.assert_array_equal(a.valid_labels, full.valid_labels)
        # A subset of the full training split, drawn over all of it (not
        # its head), with every class and statistics of its own.
        rows = {image.tobytes() for image in full.train_images}
        assert all(image.tobytes() in rows for image in a.train_images)
        assert not np.array_equal(a.train_images, full.train_images[:300])
        assert set(a.train_labels) == set(range(10))
        np.testing.assert_allclose(a.mean, a.train_images.mean() / 255, rtol=1e-5)
        assert len(load_images("digits", valid_size=100, train_size=0).train_images) == 1337
        with pytest.raises(DataError, match="train_size=1338 .* from 1 to 1337"):
            load_images("digits", valid_size=100, train_size=1338)


@pytest.mark.skipif(
    not image_files.FASHION_MNIST_SYSTEM_DIR.is_dir(), reason="no system Fashion-MNIST"
)
def test_system_fashion_mnist():
    splits = load_images("fashion_mnist")
    assert splits.train_images.shape == (55000, 28, 28, 1)
    assert splits.valid_images.shape == (5000, 28, 28, 1)
    assert splits.test_images.shape == (10000, 28, 28, 1)
    assert splits.train_labels.max() == 9


def test_numpy_modules_do_not_import_tensorflow():
    code = (
        "import sys, enas_tf.data, enas_tf.data.images, enas_tf.data.ptb; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
