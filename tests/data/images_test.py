"""Tests for enas_tf.data.images: dataset names, the validation and training
splits and their statistics, and the bundled digits. The readers of the
official files are tested in image_files_test.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from enas_tf.data.images import IMAGE_DATASETS, load_images
from enas_tf.errors import DataError

REPO = Path(__file__).resolve().parents[2]
DIGITS_TRAIN = 1437  # digits' training set before the validation split


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scaled = x.astype(np.float64) / 255.0
    return scaled.mean(axis=(0, 1, 2)), scaled.std(axis=(0, 1, 2))


class TestSplits:
    @pytest.mark.parametrize("valid_size", [DIGITS_TRAIN, 5000, -1])
    def test_bad_valid_size(self, valid_size):
        with pytest.raises(DataError, match="valid_size"):
            load_images("digits", valid_size=valid_size)

    def test_valid_size_message_names_range(self):
        with pytest.raises(DataError, match=f"0 to {DIGITS_TRAIN - 1}"):
            load_images("digits", valid_size=DIGITS_TRAIN)

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


def test_numpy_modules_do_not_import_tensorflow():
    code = (
        "import sys, enas_tf.data, enas_tf.data.images, enas_tf.data.ptb; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
