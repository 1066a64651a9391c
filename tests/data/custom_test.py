"""Tests of users' own image data (`enas_tf.data.custom`, and `from_arrays`
and the `folder` / `tfds:NAME` datasets of `enas_tf.data.images`)."""

import numpy as np
import pytest
from PIL import Image

from enas_tf.data import custom, from_arrays, load_images
from enas_tf.data.images import check_dataset_name
from enas_tf.errors import DataError


def write_images(folder, count, size=(6, 5), mode="L", seed=0):
    """`count` random images of `size` (H, W) in `folder`, named 000.png..."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    shape = size if mode == "L" else (*size, 3)
    arrays = []
    for i in range(count):
        array = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(array, mode).save(folder / f"{i:03d}.png")
        arrays.append(array)
    return arrays


def test_a_folder_of_class_subfolders(tmp_path):
    cats = write_images(tmp_path / "cats", 10, seed=1)
    write_images(tmp_path / "dogs", 6, seed=2)
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    (train_x, train_y, test_x, test_y), classes = custom.read_folder(tmp_path)
    assert classes == ["cats", "dogs"]
    # Every fifth image of each class (file-name order) is the test split.
    assert list(test_y) == [0, 0, 1, 1] and len(train_y) == 12
    np.testing.assert_array_equal(test_x[0, ..., 0], cats[0])
    np.testing.assert_array_equal(test_x[1, ..., 0], cats[5])
    assert train_x.shape == (12, 6, 5, 1) and train_x.dtype == np.uint8


def test_train_and_test_folders_and_colour(tmp_path):
    write_images(tmp_path / "train" / "a", 4, mode="RGB")
    write_images(tmp_path / "train" / "b", 4)  # grayscale among colour: RGB
    write_images(tmp_path / "test" / "a", 2, mode="RGB")
    write_images(tmp_path / "test" / "b", 1)
    (train_x, train_y, test_x, test_y), classes = custom.read_folder(tmp_path)
    assert train_x.shape == (8, 6, 5, 3) and test_x.shape == (3, 6, 5, 3)
    assert list(test_y) == [0, 0, 1]
    gray = train_x[train_y == 1]
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])  # repeated channels


def test_load_images_from_a_folder(tmp_path):
    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        write_images(tmp_path / name, 20, seed=seed)
    splits = load_images("folder", data_dir=str(tmp_path))
    assert splits.image_shape == (6, 5, 1) and splits.num_classes == 3
    assert splits.class_names == ("a", "b", "c")
    # A tenth of the 48 training images validate; shuffled (seed 0), so the
    # tail holds more than the last class.
    assert len(splits.valid_images) == 4 and len(splits.train_images) == 44
    assert len(set(splits.valid_labels)) > 1
    again = load_images("folder", data_dir=str(tmp_path), valid_size=10)
    assert len(again.valid_images) == 10
    # The order is fixed: the same split every run.
    np.testing.assert_array_equal(
        load_images("folder", data_dir=str(tmp_path)).valid_labels, splits.valid_labels
    )


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: write_images(root / "only", 5), "has 1 class subfolder"),
        (lambda root: (root / "a").mkdir() or write_images(root / "b", 3), "holds no images"),
        (
            lambda root: write_images(root / "a", 3) and write_images(root / "b", 3, size=(7, 5)),
            "different sizes",
        ),
        (
            lambda root: (
                write_images(root / "a", 3)
                and write_images(root / "b", 3)
                and (root / "b" / "bad.png").write_bytes(b"not a png")
            ),
            "Cannot read the image .*bad.png",
        ),
    ],
)
def test_folder_errors_name_the_problem(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(DataError, match=message):
        load_images("folder", data_dir=str(tmp_path))


def test_a_missing_folder_or_data_dir(tmp_path):
    with pytest.raises(DataError, match="needs --data_dir"):
        load_images("folder")
    with pytest.raises(DataError, match="does not exist"):
        load_images("folder", data_dir=str(tmp_path / "nowhere"))


def test_from_numpy_arrays():
    rng = np.random.default_rng(0)
    x = rng.random((50, 4, 4, 3))  # floats in [0, 1]
    y = np.eye(5)[np.arange(50) % 5]  # one-hot
    splits = from_arrays((x, y), valid_size=5, name="mine")
    assert splits.name == "mine" and splits.num_classes == 5
    assert splits.image_shape == (4, 4, 3) and len(splits.test_images) == 10
    assert len(splits.train_images) + len(splits.valid_images) == 40
    every = np.concatenate([splits.train_images, splits.valid_images, splits.test_images])
    assert sorted(every.reshape(50, -1)[:, 0]) == sorted(np.round(x * 255).reshape(50, -1)[:, 0])


def test_from_tf_data_datasets():
    import tensorflow as tf

    x = np.arange(30 * 9, dtype=np.uint8).reshape(30, 3, 3)
    y = np.arange(30) % 3
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(7)
    test = tf.data.Dataset.from_tensor_slices((x[:6], y[:6]))  # unbatched
    splits = from_arrays(train, test, valid_size=3)
    assert splits.image_shape == (3, 3, 1) and len(splits.test_images) == 6
    np.testing.assert_array_equal(splits.test_images[..., 0], x[:6])
    assert len(splits.train_images) == 27


@pytest.mark.parametrize(
    "x, y, message",
    [
        (np.zeros((4, 3)), np.zeros(4), r"shape \[N, H, W\]"),
        (np.linspace(0, 300, 36).reshape(4, 3, 3), np.arange(4) % 2, "from 0 to 300"),
        (np.zeros((4, 3, 3), np.uint8), np.zeros(3), "4 class labels"),
        (np.zeros((4, 3, 3), np.uint8), np.full(4, 0.5), "integer class labels"),
        (np.zeros((10, 3, 3), np.uint8), np.zeros(10), "hold 1 class"),
    ],
)
def test_bad_arrays_are_refused(x, y, message):
    with pytest.raises(DataError, match=message):
        from_arrays((x, y), valid_size=1)


@pytest.mark.parametrize("name", ["folder", "tfds:svhn_cropped", "tfds:cifar10/corrupted:3.0.0"])
def test_dataset_names(name):
    check_dataset_name(name)


@pytest.mark.parametrize("name", ["cifar11", "tfds:", "tfds:Bad Name", "folders"])
def test_unknown_dataset_names_list_the_choices(name):
    with pytest.raises(DataError, match="folder .* or tfds:NAME"):
        check_dataset_name(name)


def test_a_tfds_dataset_without_a_prepared_copy(tmp_path):
    with pytest.raises(DataError, match="no_such_dataset"):
        load_images("tfds:no_such_dataset", data_dir=str(tmp_path))


def test_a_given_validation_split_is_used_as_is():
    x = np.arange(40 * 4, dtype=np.uint8).reshape(40, 2, 2)
    y = np.arange(40) % 4
    valid = (np.full((6, 2, 2), 7, np.uint8), np.arange(6) % 4)
    splits = from_arrays((x, y), test=(x[:4], y[:4]), valid=valid)
    assert len(splits.train_images) == 40
    np.testing.assert_array_equal(splits.valid_images[..., 0], valid[0])
    np.testing.assert_array_equal(splits.valid_labels, valid[1])
    with pytest.raises(DataError, match=r"validation images are \(3, 3, 1\)"):
        from_arrays((x, y), valid=(np.zeros((2, 3, 3), np.uint8), [0, 1]))
