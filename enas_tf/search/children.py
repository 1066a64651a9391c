"""Training child networks from scratch in worker processes.

`ChildPool` trains fixed networks (`enas_tf.child.build.build_child`, the
final-training recipe of `enas_tf.train.image.compile_child`) from a fresh
initialisation, for the searches that score proposals that way
(`enas_tf.search.scratch`). Each child trains in one of `processes` worker
processes (started with "spawn", TensorFlow imported once per worker):

- children train side by side on a machine with cores or devices to spare,
  and the search process (its controller, its checkpoints) keeps no state of
  theirs: the Keras session is cleared between children;
- a search stopped on SIGINT/SIGTERM terminates its workers at once (they
  ignore SIGINT, which a terminal sends to the whole process group: the
  search decides); on Linux a worker also dies with the search process
  (`PR_SET_PDEATHSIG`), so a killed search leaves no orphan training.

A child's training is a function of its architecture, its seed and the job
(`ChildJob`): its batches and augmentation are seeded by (seed, epoch), its
initialisation by the seed. With `deterministic` (the search's
`--deterministic`) a worker also makes TensorFlow's ops deterministic, so a
child trained again computes the same curve. On GPUs every worker lets its
device memory grow rather than taking all of it, so several share a GPU.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import signal
import time
import traceback
from typing import Any

import numpy as np

from enas_tf.configs.image import ChildConfig, TrainConfig
from enas_tf.data.images import ImageSplits
from enas_tf.spaces.base import SearchSpace


@dataclasses.dataclass(frozen=True)
class ChildJob:
    """What every child of a search shares.

    Attributes:
      space: the searched space.
      child: how to build the networks (the search's sizes).
      train: how to train them (`epochs` = the child's epochs; `seed` is
        replaced per child).
      splits: the data; the curve is the accuracy on its validation split.
      deterministic: make TensorFlow's ops deterministic in the workers.
    """

    space: SearchSpace
    child: ChildConfig
    train: TrainConfig
    splits: ImageSplits
    deterministic: bool = False


_JOB: ChildJob | None = None  # a worker's job (`_start_worker`)


def _start_worker(job: ChildJob) -> None:
    """A worker's set-up: the job, signals, GPU memory growth. (Its stderr
    is the search's: a tool's filter of TensorFlow's start-up chatter,
    `enas_tf.runtime.quiet`, covers the workers too.)"""
    global _JOB
    _JOB = job
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the search decides
    try:  # die with the search process (Linux)
        import ctypes  # noqa: PLC0415

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    import tensorflow as tf  # noqa: PLC0415

    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)
    if job.deterministic:
        tf.config.experimental.enable_op_determinism()


def train_child(job: ChildJob, arc: list[int], seed: int) -> dict[str, Any]:
    """Trains `arc` from scratch for `job.train.epochs` epochs.

    Returns:
      `valid_curve` and `train_curve` (accuracy per epoch), `params`,
      `seconds`; or `error` (the message) when training failed (e.g. too
      many non-finite steps in a row).
    """
    import keras  # noqa: PLC0415

    from enas_tf.child.build import build_child  # noqa: PLC0415
    from enas_tf.data.pipeline import eval_dataset, train_dataset  # noqa: PLC0415
    from enas_tf.ops.flops import count_params  # noqa: PLC0415
    from enas_tf.runtime import nonfinite  # noqa: PLC0415
    from enas_tf.train.image import compile_child  # noqa: PLC0415

    start = time.time()
    splits, train = job.splits, dataclasses.replace(job.train, seed=seed)
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    try:
        model = build_child(
            job.space,
            np.asarray(arc, np.int32),
            job.child,
            image_shape=splits.image_shape,
            num_classes=splits.num_classes,
        )
        steps = math.ceil(len(splits.train_images) / train.batch_size)
        compile_child(model, job.child, train, splits.num_classes, steps, aux=False)
        valid = eval_dataset(
            splits.valid_images, splits.valid_labels, splits, train.eval_batch_size
        )
        skipped = nonfinite.NonFiniteCallback(model.optimizer, train.max_nonfinite)
        valid_curve, train_curve = [], []
        for epoch in range(train.epochs):
            data = train_dataset(
                splits,
                train.batch_size,
                cutout_size=train.cutout_size,
                flip=train.flip,
                pad=train.pad,
                seed=seed + epoch,
            )
            history = model.fit(
                data,
                initial_epoch=epoch,
                epochs=epoch + 1,
                validation_data=valid,
                callbacks=[skipped],
                shuffle=False,
                verbose=0,
            ).history
            valid_curve.append(float(history["val_accuracy"][-1]))
            train_curve.append(float(history["accuracy"][-1]))
        return {
            "valid_curve": valid_curve,
            "train_curve": train_curve,
            "params": count_params(model),
            "nonfinite_steps": skipped.total,
            "seconds": round(time.time() - start, 2),
        }
    except Exception as error:  # noqa: BLE001 - reported as the child's result
        return {
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(limit=5),
            "seconds": round(time.time() - start, 2),
        }


def _train_in_worker(arc: list[int], seed: int) -> dict[str, Any]:
    assert _JOB is not None, "not a ChildPool worker"
    return train_child(_JOB, arc, seed)


class ChildPool:
    """`processes` worker processes training children of `job` (module
    docstring). Use as a context manager, or call `close` / `terminate`."""

    def __init__(self, job: ChildJob, processes: int):
        context = multiprocessing.get_context("spawn")
        self._pool = context.Pool(processes, initializer=_start_worker, initargs=(job,))

    def submit(self, arc, seed: int) -> multiprocessing.pool.AsyncResult:
        """Starts training `arc` with `seed`; `.ready()`, `.get()` give the
        result of `train_child`."""
        return self._pool.apply_async(_train_in_worker, ([int(v) for v in arc], int(seed)))

    def close(self) -> None:
        """Lets the workers finish, then waits for them."""
        self._pool.close()
        self._pool.join()

    def terminate(self) -> None:
        """Stops the workers at once (children in training are lost)."""
        self._pool.terminate()
        self._pool.join()

    def __enter__(self) -> ChildPool:
        return self

    def __exit__(self, *exc) -> None:
        self.terminate()
