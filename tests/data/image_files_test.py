"""Tests for enas_tf.data.image_files: the readers of the official image files
(IDX, CIFAR python batches, plain, gzipped or archived), their errors, and the
tensorflow-datasets fallback. Most go through `load_images`, as users do."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest
from absl import logging

from enas_tf.data import image_files
from enas_tf.data.images import load_images
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

    def test_train_and_test_images_must_have_one_shape(self, tmp_path):
        _make_idx_dir(tmp_path, gz=False)
        small = np.zeros((N_TEST, 14, 14), np.uint8)
        (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(small, 2051))
        with pytest.raises(DataError, match=r"\(28, 28\) images but .* has \(14, 14\) images"):
            load_images("mnist", data_dir=tmp_path)

    @pytest.mark.parametrize("sub", ["fashion_mnist", "fashion-mnist"])
    def test_search_order_and_searched_folders(self, tmp_path, sub):
        arrays = _make_idx_dir(tmp_path / sub, gz=False)
        searched = []
        train_x, train_y, test_x, test_y = image_files.load_idx_local(
            "fashion_mnist", tmp_path, searched
        )
        # data_dir itself first, then its subfolder; the search stops there.
        assert (
            searched
            == [tmp_path, tmp_path / "fashion_mnist", tmp_path / "fashion-mnist"][
                : 2 if sub == "fashion_mnist" else 3
            ]
        )
        np.testing.assert_array_equal(train_x, arrays["train-images-idx3-ubyte"][..., None])
        np.testing.assert_array_equal(test_y, arrays["t10k-labels-idx1-ubyte"])
        assert train_x.dtype == test_x.dtype == np.uint8 and train_y.shape == (N_TRAIN,)
        # Files in data_dir itself win over those in a subfolder.
        top = _make_idx_dir(tmp_path, gz=True, seed=1)
        train_x = image_files.load_idx_local("fashion_mnist", tmp_path, [])[0]
        np.testing.assert_array_equal(train_x, top["train-images-idx3-ubyte"][..., None])

    def test_without_data_dir_only_fashion_mnist_has_a_system_folder(self, tmp_path, monkeypatch):
        searched = []
        assert image_files.load_idx_local("mnist", None, searched) is None
        assert searched == []
        arrays = _make_idx_dir(tmp_path / "system", gz=True)
        monkeypatch.setattr(image_files, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "system")
        splits = load_images("fashion_mnist", valid_size=2)
        np.testing.assert_array_equal(
            splits.test_images, arrays["t10k-images-idx3-ubyte"][..., None]
        )
        # A folder holding none of the files is passed over: nothing found.
        searched = []
        assert image_files.load_idx_local("mnist", tmp_path, searched) is None
        assert searched == [tmp_path, tmp_path / "mnist"]


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

    def _rewrite(self, root: Path, member: str, obj) -> None:
        (root / "cifar-10-batches-py" / member).write_bytes(pickle.dumps(obj, protocol=2))

    def test_labels_out_of_range(self, tmp_path):
        files = _make_cifar(tmp_path, "cifar10", "subfolder")
        self._rewrite(tmp_path, "data_batch_4", {**files["data_batch_4"], b"labels": [0, 10, 3]})
        with pytest.raises(
            DataError, match=r"data_batch_4 holds labels outside 0\.\.9 \(found 0\.\.10\)"
        ):
            load_images("cifar10", data_dir=tmp_path)

    def test_label_count_mismatch(self, tmp_path):
        files = _make_cifar(tmp_path, "cifar10", "subfolder")
        self._rewrite(tmp_path, "data_batch_2", {**files["data_batch_2"], b"labels": [1, 2]})
        with pytest.raises(DataError, match="data_batch_2 has 3 images but 2 labels"):
            load_images("cifar10", data_dir=tmp_path)

    def test_malformed_labels(self, tmp_path):
        files = _make_cifar(tmp_path, "cifar10", "subfolder")
        self._rewrite(tmp_path, "test_batch", {**files["test_batch"], b"labels": ["a", "b"]})
        with pytest.raises(DataError, match="test_batch holds malformed data or labels"):
            load_images("cifar10", data_dir=tmp_path)

    def test_not_a_dict(self, tmp_path):
        _make_cifar(tmp_path, "cifar10", "subfolder")
        self._rewrite(tmp_path, "data_batch_1", [1, 2, 3])
        with pytest.raises(DataError, match="data_batch_1 does not hold a dict"):
            load_images("cifar10", data_dir=tmp_path)

    def test_text_keys_are_read_too(self, tmp_path):
        files = _make_cifar(tmp_path, "cifar10", "subfolder")
        batch = files["test_batch"]
        self._rewrite(tmp_path, "test_batch", {"data": batch[b"data"], "labels": [7, 8]})
        splits = load_images("cifar10", data_dir=tmp_path, valid_size=0)
        np.testing.assert_array_equal(splits.test_labels, [7, 8])
        np.testing.assert_array_equal(splits.test_images, _nhwc(batch[b"data"]))

    def test_only_latin1_text_encoding_is_allowed(self, tmp_path):
        class Encode:  # pickles as a call of _codecs.encode("x", "utf-8")
            def __reduce__(self):
                import _codecs

                return (_codecs.encode, ("x", "utf-8"))

        _make_cifar(tmp_path, "cifar10", "subfolder")
        self._rewrite(tmp_path, "data_batch_5", {b"data": Encode()})
        with pytest.raises(DataError, match="refusing _codecs.encode with 'utf-8'"):
            load_images("cifar10", data_dir=tmp_path)
        assert image_files._latin1_encode("\xe9", "latin1") == b"\xe9"

    def test_archive_without_a_member(self, tmp_path):
        _, _, files = _cifar_files("cifar10")
        with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
            for member, batch in files.items():
                if member != "data_batch_3":
                    blob = pickle.dumps(batch, protocol=2)
                    info = tarfile.TarInfo(f"cifar-10-batches-py/{member}")
                    info.size = len(blob)
                    tar.addfile(info, io.BytesIO(blob))
        with pytest.raises(
            DataError, match="no member cifar-10-batches-py/data_batch_3; it is not"
        ):
            load_images("cifar10", data_dir=tmp_path)

    def test_extracted_folder_wins_over_the_archive(self, tmp_path):
        files = _make_cifar(tmp_path, "cifar10", "subfolder")
        (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not an archive")
        splits = load_images("cifar10", data_dir=tmp_path, valid_size=0)
        np.testing.assert_array_equal(splits.test_labels, files["test_batch"][b"labels"])
        # Without data_dir nothing local is looked for.
        searched = []
        assert image_files.load_cifar_local("cifar10", None, searched) is None
        assert searched == []


# ---------------------------------------------------------------------------
# Missing data and the tensorflow-datasets fallback.


def _fake_tfds(monkeypatch, tmp_path, load=None) -> types.ModuleType:
    """A stand-in tensorflow_datasets module (no TensorFlow, no network)."""
    fake = types.ModuleType("tensorflow_datasets")
    fake.core = types.SimpleNamespace(
        constants=types.SimpleNamespace(DATA_DIR=str(tmp_path / "default"))
    )
    fake.as_numpy = lambda tree: tree
    fake.load = load
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    return fake


class TestTfdsFallback:
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

    def test_data_dir_that_looks_like_tfds_is_the_tfds_dir(self, tmp_path, monkeypatch):
        _fake_tfds(monkeypatch, tmp_path)
        (tmp_path / "data" / "mnist").mkdir(parents=True)
        with pytest.raises(DataError, match="not available offline") as info:
            load_images("mnist", data_dir=tmp_path / "data")
        assert f"a prepared TFDS copy in {tmp_path / 'data'}. " in str(info.value)

    def test_without_data_dir_the_default_tfds_dir(self, tmp_path, monkeypatch):
        _fake_tfds(monkeypatch, tmp_path)
        with pytest.raises(DataError) as info:
            load_images("cifar100")
        message = str(info.value)
        assert message.startswith(
            "Dataset 'cifar100' is not available offline. No data_dir was given, so no local "
            f"copy was searched for; looked for a prepared TFDS copy in {tmp_path}/default."
        )
        assert "cifar-100-python/ (or cifar-100-python.tar.gz)" in message

    def test_a_prepared_copy_is_loaded(self, tmp_path, monkeypatch):
        calls = []
        rng = np.random.default_rng(0)
        train = (rng.integers(0, 256, (6, 28, 28, 1)), np.arange(6) % 10)
        test = (rng.integers(0, 256, (2, 28, 28, 1)), np.array([3, 4]))
        verbosity = logging.get_verbosity()

        def load(name, **kwargs):
            calls.append((name, kwargs, logging.get_verbosity()))
            return train, test

        _fake_tfds(monkeypatch, tmp_path, load)
        (tmp_path / "tfds" / "mnist" / "3.0.1").mkdir(parents=True)
        (tmp_path / "tfds" / "mnist" / "3.0.1" / "dataset_info.json").write_text("{}")
        splits = load_images("mnist", tfds_data_dir=tmp_path / "tfds", valid_size=1)
        np.testing.assert_array_equal(splits.train_images, train[0][:5].astype(np.uint8))
        np.testing.assert_array_equal(splits.test_labels, [3, 4])
        assert splits.train_images.dtype == np.uint8
        ((name, kwargs, inside),) = calls
        assert name == "mnist"
        assert kwargs == dict(split=["train", "test"], data_dir=str(tmp_path / "tfds"),
                              download=False, as_supervised=True, batch_size=-1)  # fmt: skip
        # TFDS's logging is quieted during the load, then restored.
        assert inside == logging.ERROR and logging.get_verbosity() == verbosity

    def test_failed_download_names_the_reason(self, tmp_path, monkeypatch):
        def load(name, **kwargs):
            raise RuntimeError("Failed to reach the host\nlong traceback text")

        _fake_tfds(monkeypatch, tmp_path, load)
        with pytest.raises(DataError) as info:
            load_images("mnist", data_dir=tmp_path / "none", download=True)
        message = str(info.value)
        assert message.startswith("Dataset 'mnist' could not be loaded (Failed to reach the host).")
        assert "check the network connection and retry with --download" in message
        assert "long traceback" not in message and "\n" not in message

    def test_a_dataset_with_no_official_files_is_asked_for_in_tfds_only(self, tmp_path):
        # `tfds:NAME` datasets (`load_images("tfds:svhn_cropped")`) have no
        # official files, so the message asks for a TFDS copy only.
        with pytest.raises(DataError) as info:
            image_files.load_tfds("svhn_cropped", None, tmp_path / "tfds", False, [])
        assert str(info.value) == (
            "Dataset 'svhn_cropped' is not available offline. Looked for a prepared TFDS "
            f"copy in {tmp_path}/tfds. Provide it with --data_dir=DIR, a tensorflow-datasets "
            "data directory holding svhn_cropped/, or pass --download (download=True) to let "
            "tensorflow-datasets fetch it."
        )

    def test_tfds_not_installed(self, tmp_path, monkeypatch):
        monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
        with pytest.raises(DataError) as info:
            load_images("mnist", data_dir=tmp_path)
        message = str(info.value)
        assert message.startswith(
            "Dataset 'mnist' could not be loaded (tensorflow-datasets cannot be imported"
        )
        assert f"Looked for the IDX files in {tmp_path}, {tmp_path / 'mnist'}" in message
        assert "pass --download (download=True)" in message


# ---------------------------------------------------------------------------
# The system copy of Fashion-MNIST; imports.


@pytest.mark.skipif(
    not image_files.FASHION_MNIST_SYSTEM_DIR.is_dir(), reason="no system Fashion-MNIST"
)
def test_system_fashion_mnist():
    splits = load_images("fashion_mnist")
    assert splits.train_images.shape == (55000, 28, 28, 1)
    assert splits.valid_images.shape == (5000, 28, 28, 1)
    assert splits.test_images.shape == (10000, 28, 28, 1)
    assert splits.train_labels.max() == 9


def test_imports_neither_tensorflow_nor_tfds():
    code = (
        "import sys, enas_tf.data.image_files; "
        "assert not {'tensorflow', 'tensorflow_datasets'} & set(sys.modules), 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
