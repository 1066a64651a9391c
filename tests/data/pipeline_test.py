"""Tests for enas_tf.data.pipeline: normalisation, augmentation, determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from enas_tf.data.images import ImageSplits, load_images
from enas_tf.data.pipeline import eval_dataset, normalize, train_dataset


def _splits(n: int = 10, shape=(6, 5, 3), seed: int = 0, const=None) -> ImageSplits:
    """A tiny ImageSplits with random (or constant) images."""
    rng = np.random.default_rng(seed)
    if const is None:
        images = rng.integers(0, 256, (n, *shape), np.uint8)
    else:
        images = np.full((n, *shape), const, np.uint8)
    labels = (np.arange(n) % 3).astype(np.int32)
    empty = images[:0]
    channels = shape[-1]
    return ImageSplits(
        name="tiny",
        train_images=images,
        train_labels=labels,
        valid_images=empty,
        valid_labels=labels[:0],
        test_images=images[:2],
        test_labels=labels[:2],
        num_classes=3,
        mean=np.linspace(0.2, 0.6, channels).astype(np.float32),
        std=np.linspace(0.5, 0.3, channels).astype(np.float32),
    )


def _collect(ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def _expected(splits: ImageSplits, images: np.ndarray) -> np.ndarray:
    return (images.astype(np.float64) / 255.0 - splits.mean) / splits.std


def test_normalize_math():
    images = np.array([[[[0, 51]], [[255, 102]]]], np.uint8)  # [1, 2, 1, 2]
    out = normalize(images, [0.2, 0.4], [0.5, 0.0]).numpy()
    assert out.dtype == np.float32 and out.shape == (1, 2, 1, 2)
    expected = np.array([[[[-0.4, -0.2]], [[1.6, 0.0]]]])  # std 0 -> 1
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_shapes_and_dtypes():
    splits = _splits(n=10)
    batches = list(train_dataset(splits, 4, seed=0, cutout_size=2))
    assert [x.shape[0] for x, _ in batches] == [4, 4, 2]
    for x, y in batches:
        assert x.dtype == tf.float32 and x.shape[1:] == (6, 5, 3)
        assert y.dtype == tf.int32
    dropped = list(train_dataset(splits, 4, seed=0, drop_remainder=True))
    assert len(dropped) == 2
    repeated = list(train_dataset(splits, 4, seed=0, repeat=True).take(7))
    assert all(x.shape[0] == 4 for x, _ in repeated)


@pytest.mark.parametrize("shape", [(8, 8, 1), (28, 28, 1), (32, 32, 3)])
def test_any_image_shape(shape):
    splits = _splits(n=3, shape=shape)
    x, y = next(iter(train_dataset(splits, 3, seed=1, cutout_size=3)))
    assert x.shape == (3, *shape) and y.shape == (3,)


def test_eval_is_in_order_and_normalised():
    splits = _splits(n=10)
    x, y = _collect(eval_dataset(splits.train_images, splits.train_labels, splits, 3))
    np.testing.assert_allclose(x, _expected(splits, splits.train_images), atol=1e-5)
    np.testing.assert_array_equal(y, splits.train_labels)
    assert y.dtype == np.int32
    pair = (splits.mean, splits.std)
    x2, _ = _collect(eval_dataset(splits.train_images, splits.train_labels, pair, 4))
    np.testing.assert_array_equal(x, x2)


@pytest.mark.parametrize("augment", [True, False])
def test_no_randomness_equals_eval(augment):
    splits = _splits(n=7)
    train = train_dataset(splits, 3, augment=augment, flip=False, pad=0, shuffle=False)
    evaluation = eval_dataset(splits.train_images, splits.train_labels, splits, 3)
    tx, ty = _collect(train)
    ex, ey = _collect(evaluation)
    np.testing.assert_allclose(tx, ex, atol=1e-6)
    np.testing.assert_array_equal(ty, ey)


def test_pad_crop_flip_is_a_shifted_window():
    pad = 2
    splits = _splits(n=12)
    x, y = _collect(train_dataset(splits, 4, pad=pad, shuffle=False, seed=3))
    np.testing.assert_array_equal(y, splits.train_labels)
    normalised = _expected(splits, splits.train_images)
    padded = np.pad(normalised, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    offsets_seen, flips_seen = set(), set()
    for i in range(len(x)):
        matches = [
            (dy, dx, flip)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            for flip in (False, True)
            if _is_window(x[i], padded[i], dy, dx, flip)
        ]
        assert matches, f"example {i} is not a padded crop (or its flip)"
        offsets_seen.add(matches[0][:2])
        flips_seen.add(matches[0][2])
    assert len(offsets_seen) > 1 and flips_seen == {False, True}


def _unit_stats(splits: ImageSplits) -> ImageSplits:
    """Sets mean 0 and std 1 so that 255 normalises to exactly 1."""
    channels = splits.image_shape[-1]
    return dataclasses.replace(
        splits,
        mean=np.zeros(channels, np.float32),
        std=np.ones(channels, np.float32),
    )


def _is_window(image, padded, dy, dx, flip) -> bool:
    height, width = image.shape[:2]
    window = padded[dy : dy + height, dx : dx + width]
    return np.allclose(image, window[:, ::-1] if flip else window, atol=1e-5)


@pytest.mark.parametrize("size", [2, 3])
def test_cutout_zeroes_a_clipped_square(size):
    # Constant images with mean 0 / std 1: every pixel normalises to 1.0.
    splits = _unit_stats(_splits(n=60, shape=(6, 6, 2), const=255))
    x, _ = _collect(train_dataset(splits, 16, augment=False, cutout_size=size, seed=5))
    full_squares = 0
    for image in x:
        zero = np.all(image == 0.0, axis=-1)
        assert np.all((image == 0.0) | (image == 1.0))
        assert np.array_equal(zero, np.all(image == 0.0, axis=-1))
        rows = np.flatnonzero(zero.any(axis=1))
        cols = np.flatnonzero(zero.any(axis=0))
        assert 1 <= len(rows) <= size and 1 <= len(cols) <= size
        assert np.array_equal(rows, np.arange(rows[0], rows[-1] + 1))
        assert np.array_equal(cols, np.arange(cols[0], cols[-1] + 1))
        assert zero.sum() == len(rows) * len(cols)  # a rectangle
        full_squares += len(rows) == size and len(cols) == size
    assert 0 < full_squares < len(x)  # some squares were clipped at a border


def test_same_seed_same_batches():
    splits = _splits(n=20)

    def run(seed):
        ds = train_dataset(splits, 8, seed=seed, cutout_size=2)
        return _collect(ds)

    a, b, c = run(7), run(7), run(8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    # Every iterator of a seeded dataset yields the same batches (tf.distribute
    # and Keras may open several); unseeded, each pass is a new order.
    ds = train_dataset(splits, 20, seed=7, cutout_size=2)
    first, second = [next(iter(ds)) for _ in range(2)]
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    ds = train_dataset(splits, 20)
    orders = [next(iter(ds))[1].numpy() for _ in range(3)]
    assert all(sorted(o) == sorted(splits.train_labels) for o in orders)
    assert any(not np.array_equal(orders[0], o) for o in orders[1:])


def test_digits_end_to_end():
    splits = load_images("digits")
    x, y = next(iter(train_dataset(splits, 32, flip=False, seed=0)))
    assert x.shape == (32, 8, 8, 1) and y.shape == (32,)
    valid = eval_dataset(splits.valid_images, splits.valid_labels, splits, 128)
    ex, _ = _collect(valid)
    assert ex.shape == (360, 8, 8, 1)


def test_bad_arguments():
    splits = _splits()
    with pytest.raises(ValueError, match="batch_size"):
        train_dataset(splits, 0)
    with pytest.raises(ValueError, match="pad"):
        train_dataset(splits, 2, pad=-1)
    with pytest.raises(ValueError, match="uint8"):
        eval_dataset(splits.train_images.astype(np.float32), splits.train_labels,
                     splits, 2)  # fmt: skip
