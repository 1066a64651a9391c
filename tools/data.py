r"""enas-data: load a dataset, check it, and time its input pipeline.

Loads the dataset exactly as the search and training tools do, prints its
splits and statistics, then runs the training pipeline (augmentation
included) for the given number of passes and reports its throughput. Use it
to check that a dataset is where enas-tf expects it before a long run.

Examples:
  enas-data --dataset=digits
  enas-data --dataset=fashion_mnist --data_dir=/usr/share/datasets/fashion-mnist
  enas-data --dataset=cifar10 --data_dir=~/data --cutout_size=16
  enas-data --dataset=ptb --data_dir=path/to/ptb --batch_size=64 --bptt=35
"""

import os
import sys
import time

if __package__ in (None, ""):  # `python tools/data.py` from a clone
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags

from enas_tf import data
from enas_tf.errors import DataError
from enas_tf.runtime import cli

# Digit and letter images must not be mirrored.
NO_FLIP = ("digits", "mnist", "fashion_mnist")

cli.define_dataset_flag("Dataset to load.")
flags.DEFINE_string(
    "data_dir",
    None,
    "Directory holding the official files (IDX for MNIST, python batches or "
    "their .tar.gz for CIFAR, train/valid/test.txt for PTB). Without it, "
    "a prepared tensorflow-datasets copy is used.",
)
flags.DEFINE_bool("download", False, "Let tensorflow-datasets download a missing dataset.")
flags.DEFINE_integer(
    "valid_size",
    None,
    "Images carved off the end of the training set for validation "
    "(default: 5000, or 360 for digits; 0 for none).",
    lower_bound=0,
)
flags.DEFINE_integer("batch_size", 128, "Batch size of the pipeline.", lower_bound=1)
flags.DEFINE_integer("cutout_size", 0, "Cutout square size (0: off).", lower_bound=0)
flags.DEFINE_bool("flip", None, "Random horizontal flips (default: on, off for digit datasets).")
flags.DEFINE_integer("passes", 1, "Passes over the training pipeline to time.", lower_bound=0)
flags.DEFINE_integer("bptt", 35, "PTB: tokens per window.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of shuffling and augmentation.")

FLAGS = flags.FLAGS


def _images() -> None:
    splits = data.load_images(
        FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        valid_size=FLAGS.valid_size,
        download=FLAGS.download,
    )
    print(splits.summary())
    flip = FLAGS.flip if FLAGS.flip is not None else FLAGS.dataset not in NO_FLIP
    if FLAGS.cutout_size > min(splits.image_shape[:2]):
        raise DataError(
            f"--cutout_size={FLAGS.cutout_size} is larger than the "
            f"{splits.image_shape[0]}x{splits.image_shape[1]} images."
        )
    dataset = data.train_dataset(
        splits,
        FLAGS.batch_size,
        cutout_size=FLAGS.cutout_size,
        flip=flip,
        seed=FLAGS.seed,
    )
    augment = f"pad 4 + crop{' + flip' if flip else ''}"
    if FLAGS.cutout_size:
        augment += f" + cutout {FLAGS.cutout_size}"
    print(f"train pipeline: batch {FLAGS.batch_size}, {augment}")
    images = 0
    start = time.perf_counter()
    for _ in range(FLAGS.passes):
        for _, labels in dataset:
            images += int(labels.shape[0])
    seconds = time.perf_counter() - start
    if images:
        print(
            f"{FLAGS.passes} pass(es): {images} images in {seconds:.2f} s "
            f"({images / seconds:,.0f} images/s)"
        )


def _ptb() -> None:
    if FLAGS.data_dir is None:
        raise DataError(
            "PTB needs --data_dir: a directory with train.txt, valid.txt and "
            "test.txt in the standard Penn Treebank format."
        )
    corpus = data.load_ptb(FLAGS.data_dir)
    print(corpus.summary())
    for split in ("train", "valid", "test"):
        ids = getattr(corpus, split)
        count = data.num_windows(ids, FLAGS.batch_size, FLAGS.bptt)
        print(f"{split}: {count} windows of [{FLAGS.batch_size}, {FLAGS.bptt}] tokens")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}.")
    if FLAGS.dataset == "ptb":
        _ptb()
    else:
        _images()


def run() -> None:
    """Console-script entry point (`enas-data`)."""
    cli.run(main)


if __name__ == "__main__":
    run()
