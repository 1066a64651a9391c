"""tf.data pipelines for image datasets loaded by `enas_tf.data.images`.

Both pipelines yield `(images, labels)` batches: float32 [batch, H, W, C]
channels-last images normalised per channel with the TRAIN split's mean and
std, and int32 [batch] labels.

Training augmentation follows ENAS: after normalising, zero-pad `pad` pixels on
each side (zero is the channel mean in normalised space), randomly crop back to
H x W and randomly flip left-right; optionally apply cutout (DeVries & Taylor,
2017): a `cutout_size` square, centred uniformly anywhere in the image and
clipped at its borders, is set to zero. Callers training on digits or letters
(digits, mnist, fashion_mnist) may want `flip=False`.

Randomness is reproducible: with `seed`, the shuffle order and every
augmentation draw depend only on the seed (and the global TF seed, if one is
set), so two pipelines built with the same seed yield identical batches. The
augmentation uses stateless ops whose per-example seeds come from
`tf.data.Dataset.random`, so parallel `map` calls cannot change the result.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from enas_tf.data.images import ImageSplits

_ArrayLike = np.ndarray | tf.Tensor | Sequence[float]


def normalize(images_uint8: _ArrayLike, mean: _ArrayLike, std: _ArrayLike) -> tf.Tensor:
    """Scales uint8 images to [0, 1] and normalises them per channel.

    Args:
      images_uint8: uint8 images, channels-last (any leading shape).
      mean: per-channel mean of the train images scaled to [0, 1], shape [C].
      std: per-channel standard deviation, shape [C]; a zero std (a constant
        channel) is treated as 1.

    Returns:
      float32 tensor `(images / 255 - mean) / std`, same shape as the input.
    """
    x = tf.cast(images_uint8, tf.float32) / 255.0
    mean = tf.convert_to_tensor(mean, tf.float32)
    std = tf.convert_to_tensor(std, tf.float32)
    std = tf.where(std > 0, std, tf.ones_like(std))
    return (x - mean) / std


def train_dataset(
    splits: ImageSplits,
    batch_size: int,
    *,
    augment: bool = True,
    cutout_size: int = 0,
    flip: bool = True,
    pad: int = 4,
    shuffle: bool = True,
    seed: int | None = None,
    repeat: bool = False,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Builds the training pipeline over `splits.train_images`.

    Args:
      splits: the dataset; its train split and train mean/std are used.
      batch_size: examples per batch.
      augment: pad-and-crop (when `pad` > 0) and flip (when `flip`).
      cutout_size: side of the cutout square; 0 disables cutout. Cutout is
        applied whenever it is > 0, independently of `augment`.
      flip: random horizontal flips (only when `augment`).
      pad: zero padding on each side before the random crop (only when
        `augment`); 0 disables pad-and-crop.
      shuffle: reshuffle the whole split every epoch (buffer = split size).
      seed: makes the shuffle order and the augmentation reproducible;
        without `repeat`, every iterator of the dataset then yields the same
        batches (a new epoch needs a new seed).
      repeat: repeat forever (each repetition is a new epoch).
      drop_remainder: drop the last, smaller batch of each pass.

    Returns:
      A dataset of `(float32 [batch, H, W, C], int32 [batch])`.

    Raises:
      ValueError: for a non-positive batch size, a negative `pad` or
        `cutout_size`, or malformed arrays.
    """
    images, labels = _check_arrays(splits.train_images, splits.train_labels)
    _check_batch_size(batch_size)
    if pad < 0 or cutout_size < 0:
        raise ValueError(
            f"pad and cutout_size must be >= 0, got pad={pad}, cutout_size={cutout_size}."
        )
    height, width, channels = images.shape[1:]
    mean = np.asarray(splits.mean, np.float32)
    std = np.asarray(splits.std, np.float32)
    crop = augment and pad > 0
    do_flip = augment and flip
    shuffle_seed, augment_seed = (None, None)
    if seed is not None:
        shuffle_seed, augment_seed = (
            int(s) for s in np.random.SeedSequence(seed).generate_state(2)
        )

    def transform(
        example: tuple[tf.Tensor, tf.Tensor], op_seed: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Normalises and augments one example with its own stateless seed."""
        image, label = example
        x = normalize(image, mean, std)
        crop_seed, flip_seed, cutout_seed = tf.unstack(tf.random.split(op_seed, 3))
        if crop:
            x = tf.pad(x, [[pad, pad], [pad, pad], [0, 0]])
            x = tf.image.stateless_random_crop(x, [height, width, channels], seed=crop_seed)
        if do_flip:
            x = tf.image.stateless_random_flip_left_right(x, seed=flip_seed)
        if cutout_size > 0:
            x = _cutout(x, cutout_size, cutout_seed)
        return x, tf.cast(label, tf.int32)

    # With a seed and no repeat, every iterator of the dataset yields the
    # same batches: `tf.distribute` and Keras may open more than one (the
    # order must not depend on that); a new seed gives a new epoch.
    fresh = seed is None or repeat
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        ds = ds.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=fresh)
    if repeat:
        ds = ds.repeat()
    if crop or do_flip or cutout_size > 0:
        op_seeds = tf.data.Dataset.random(
            seed=augment_seed, rerandomize_each_iteration=fresh
        ).batch(2)
        ds = tf.data.Dataset.zip((ds, op_seeds)).map(transform, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(
            lambda x, y: (normalize(x, mean, std), tf.cast(y, tf.int32)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    splits_or_mean_std: ImageSplits | tuple[_ArrayLike, _ArrayLike],
    batch_size: int,
) -> tf.data.Dataset:
    """Builds an evaluation pipeline: normalised, in order, no augmentation.

    Args:
      images: uint8 [N, H, W, C] (e.g. `splits.valid_images`).
      labels: integer [N].
      splits_or_mean_std: the `ImageSplits` whose train mean/std to use, or a
        `(mean, std)` pair.
      batch_size: examples per batch; the last batch may be smaller.

    Returns:
      A dataset of `(float32 [batch, H, W, C], int32 [batch])`, in order.

    Raises:
      ValueError: for a non-positive batch size or malformed arrays.
    """
    images, labels = _check_arrays(images, labels)
    _check_batch_size(batch_size)
    if isinstance(splits_or_mean_std, ImageSplits):
        mean, std = splits_or_mean_std.mean, splits_or_mean_std.std
    else:
        mean, std = splits_or_mean_std
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)
    ds = ds.map(
        lambda x, y: (normalize(x, mean, std), tf.cast(y, tf.int32)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return ds.prefetch(tf.data.AUTOTUNE)


def _cutout(image: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
    """Zeroes a `size` x `size` square centred anywhere, clipped at borders."""
    height, width = image.shape[0], image.shape[1]
    y_seed, x_seed = tf.unstack(tf.random.split(seed, 2))
    centre_y = tf.random.stateless_uniform([], y_seed, minval=0, maxval=height, dtype=tf.int32)
    centre_x = tf.random.stateless_uniform([], x_seed, minval=0, maxval=width, dtype=tf.int32)
    top, left = centre_y - size // 2, centre_x - size // 2
    rows = tf.range(height)
    cols = tf.range(width)
    in_rows = (rows >= top) & (rows < top + size)
    in_cols = (cols >= left) & (cols < left + size)
    mask = in_rows[:, None] & in_cols[None, :]
    return tf.where(mask[:, :, None], tf.zeros_like(image), image)


def _check_arrays(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Checks for uint8 [N, H, W, C] images and [N] integer labels."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(
            f"images must be uint8 [N, H, W, C] (channels-last), got "
            f"{images.dtype} {list(images.shape)}."
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"labels must have shape [{len(images)}], got {list(labels.shape)}.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {labels.dtype}.")
    return images, labels


def _check_batch_size(batch_size: int) -> None:
    """Raises ValueError unless `batch_size` is a positive integer."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"batch_size must be an integer, got {batch_size!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
