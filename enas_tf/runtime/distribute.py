"""Distribution strategies for the search and the final training.

`make_strategy(name, devices)` turns the `--strategy`/`--devices` flags into
a `tf.distribute.Strategy`:
  default:      the current strategy (one device);
  mirrored:     `tf.distribute.MirroredStrategy`, synchronous data
                parallelism over the devices of one machine;
  multi_worker: `tf.distribute.MultiWorkerMirroredStrategy`, the same over
                several processes or machines described by `TF_CONFIG`
                (`check_tf_config`), each worker using its local GPUs (or
                its CPU).

`Workers` is what a run needs to know about the other workers: which one is
the chief (the only one that writes the run directory), where this worker's
own checkpoint copies go, and cross-worker agreement (a barrier, a stop
request seen by any worker, a check that every worker holds the same
state). With one process it does nothing.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from enas_tf.errors import UserError

TF_CONFIG_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}\''
)

# Collective group keys of successive mirrored strategies are this far apart.
_KEY_SPACING = 100_000


def make_strategy(name: str = "default", devices: list[str] | None = None):
    """The `tf.distribute.Strategy` called `name`.

    Create it before any other TensorFlow work of the process
    (`MultiWorkerMirroredStrategy` must start the process's collective
    runtime first).

    Args:
      name: "default" (the current strategy: one device), "mirrored"
        (synchronous data parallelism on one machine) or "multi_worker"
        (the same across the workers of `TF_CONFIG`).
      devices: for "mirrored", the devices (default: every local GPU, or
        the CPU when there is none).

    Raises:
      UserError: for an unknown name or device, or a bad `TF_CONFIG`.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        if devices:
            raise UserError(
                "--devices applies to --strategy=mirrored; a multi_worker run "
                "uses every GPU of each worker (CUDA_VISIBLE_DEVICES limits them)."
            )
        return multi_worker_strategy()
    if name != "mirrored":
        raise UserError(f"Unknown strategy {name!r}; use default, mirrored or multi_worker.")

    def short(name):  # "/job:x/.../device:GPU:1", "/gpu:1" -> "gpu:1"
        return ":".join(name.lower().split(":")[-2:]).rsplit("/", 1)[-1]

    known = {short(d.name) for d in tf.config.list_logical_devices()}
    unknown = [d for d in devices or () if short(d) not in known]
    if unknown:
        raise UserError(
            f"Unknown device(s) {', '.join(unknown)} in --devices; this machine "
            f"has {', '.join('/' + d for d in sorted(known))}."
        )
    return mirrored_strategy(devices)


def mirrored_strategy(devices: list[str] | None = None):
    """A `tf.distribute.MirroredStrategy` with collective keys of its own.

    Every `MirroredStrategy` of a process numbers its collective ops from
    the same group and instance keys, and the runtime remembers an
    instance's tensor shape by those keys: the second strategy of a process
    (a notebook, a test session, a search followed by a training) fails
    with "Shape mismatch in the collective instance ...". Moving each new
    strategy's keys to a range of its own (what TensorFlow's own tests do)
    keeps them apart.

    Args:
      devices: the devices (default: every local GPU, or the CPU when there
        is none).
    """
    cls = tf.distribute.MirroredStrategy
    if hasattr(cls, "_collective_key_base"):
        cls._collective_key_base += _KEY_SPACING
    return cls(devices or None)


def check_tf_config() -> dict:
    """The parsed `TF_CONFIG` of a multi-worker run, checked.

    Raises:
      UserError: when it is missing, not JSON, or does not describe this
        worker's place in a cluster of workers (with an example).
    """
    raw = os.environ.get("TF_CONFIG", "").strip()
    fix = f"Set it on every worker, e.g. {TF_CONFIG_EXAMPLE} (index 1 on the second)."
    if not raw:
        raise UserError(
            f"--strategy=multi_worker needs the TF_CONFIG environment variable: "
            f"the cluster's workers and this worker's index. {fix}"
        )
    try:
        config = json.loads(raw)
    except ValueError as e:
        raise UserError(f"TF_CONFIG is not valid JSON ({e}). {fix}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise UserError(f'TF_CONFIG needs a "cluster" and a "task" object. {fix}')
    unknown = sorted(set(cluster) - {"worker", "chief", "evaluator"})
    jobs = {k: v for k, v in cluster.items() if k in ("worker", "chief")}
    if unknown or not jobs.get("worker") and not jobs.get("chief"):
        raise UserError(
            f'TF_CONFIG\'s cluster must list "worker" (and optionally one '
            f'"chief") addresses{"; unknown jobs: " + ", ".join(unknown) if unknown else ""}. '
            f"{fix}"
        )
    for job, addresses in jobs.items():
        if (
            not isinstance(addresses, list)
            or not addresses
            or not all(isinstance(a, str) and ":" in a for a in addresses)
        ):
            raise UserError(
                f'TF_CONFIG\'s cluster "{job}" must be a list of "host:port" '
                f"addresses; received {addresses!r}. {fix}"
            )
    if len(jobs.get("chief", [])) > 1:
        raise UserError("TF_CONFIG's cluster can have one chief only.")
    kind, index = task.get("type"), task.get("index")
    if kind not in jobs or not isinstance(index, int) or not 0 <= index < len(jobs[kind]):
        raise UserError(
            f'TF_CONFIG\'s task {task!r} is not in the cluster: "type" must be '
            f'one of {", ".join(sorted(jobs))} and "index" an integer from 0 '
            f"to the number of its addresses - 1. {fix}"
        )
    return config


def multi_worker_strategy():
    """A `tf.distribute.MultiWorkerMirroredStrategy` for `TF_CONFIG`.

    Starting it connects to every worker of the cluster: it waits until
    they have all started. A worker that dies later makes the others'
    collective operations fail (`peer_failure`).
    """
    check_tf_config()
    return tf.distribute.MultiWorkerMirroredStrategy()


def peer_failure(error: BaseException) -> bool:
    """True when `error` is a collective operation failing because another
    worker of a multi-worker run stopped (killed, crashed, preempted)."""
    return bool(_ACTIVE) and isinstance(
        error,
        (
            tf.errors.UnavailableError,
            tf.errors.CancelledError,
            tf.errors.AbortedError,
            tf.errors.DeadlineExceededError,
            tf.errors.InternalError,
            tf.errors.FailedPreconditionError,
        ),
    )


_ACTIVE: list[bool] = []  # a multi-worker `Workers` exists in this process


def _is_multi_worker(strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


class Workers:
    """This process's place among the workers of `strategy`.

    With one process (any strategy but multi-worker) it is the chief and
    the agreements return at once. In a multi-worker run the chief
    (`TF_CONFIG`'s chief, or worker 0 when there is none) writes the run
    directory; every worker saves checkpoints (saving reads variables
    through collectives), the others to a private temporary directory
    removed at exit, as TensorFlow's multi-worker guide does. All workers
    read the chief's checkpoints, so `--output_dir` must be on a filesystem
    every worker sees.

    Every method that agrees across workers is a collective operation:
    every worker must call it at the same point.

    Args:
      strategy: the run's `tf.distribute.Strategy`.
    """

    def __init__(self, strategy):
        self.strategy = strategy
        self.multi = _is_multi_worker(strategy)
        self.task_type, self.task_id, self.count = None, 0, 1
        if self.multi:
            resolver = strategy.cluster_resolver
            self.task_type, self.task_id = resolver.task_type, int(resolver.task_id)
            jobs = resolver.cluster_spec().as_dict()
            self.count = len(jobs.get("worker", [])) + len(jobs.get("chief", []))
            _ACTIVE.append(True)
        has_chief = self.multi and "chief" in strategy.cluster_resolver.cluster_spec().as_dict()
        self.is_chief = (
            not self.multi
            or self.task_type == "chief"
            or (self.task_type == "worker" and self.task_id == 0 and not has_chief)
        )
        self._reduce = None

    @property
    def name(self) -> str:
        return f"{self.task_type} {self.task_id}" if self.multi else "the only worker"

    def checkpoint_dir(self, directory: str) -> str:
        """Where this worker writes checkpoints: `directory` for the chief,
        a temporary directory (removed at exit) for the others."""
        if self.is_chief:
            return directory
        private = tempfile.mkdtemp(prefix=f"enas-{self.task_type}{self.task_id}-")
        atexit.register(shutil.rmtree, private, ignore_errors=True)
        return private

    def _sum(self, values: np.ndarray, chief_only: bool = False) -> np.ndarray:
        """`values` summed over the workers (each worker's, or the chief's)."""
        if self._reduce is None:
            strategy = self.strategy
            local = len(strategy.extended.worker_devices)

            @tf.function(autograph=False)
            def reduce(values, weight):
                def each():
                    ctx = tf.distribute.get_replica_context()
                    return ctx.all_reduce("sum", values * weight / local)

                result = strategy.run(each)
                return strategy.experimental_local_results(result)[0]

            self._reduce = reduce
        weight = 0.0 if chief_only and not self.is_chief else 1.0
        return self._reduce(
            tf.constant(values, tf.float64), tf.constant(weight, tf.float64)
        ).numpy()

    def barrier(self) -> None:
        """Returns when every worker has called it."""
        if self.multi:
            self._sum(np.zeros([1]))

    def any_stop(self, requested: bool) -> bool:
        """Whether any worker has a stop request (SIGINT / SIGTERM), so that
        every worker stops after the same step."""
        if not self.multi:
            return requested
        return bool(self._sum(np.array([float(requested)]))[0] > 0)

    def check_same(self, what: str, values) -> None:
        """Raises UserError unless every worker holds the same `values`
        (numbers: a run position, a controller state digest)."""
        if not self.multi:
            return
        mine = np.asarray(values, np.float64).reshape([-1])
        chief = self._sum(mine, chief_only=True)
        differs = float(not np.allclose(mine, chief, rtol=1e-6, atol=1e-9))
        if self._sum(np.array([differs]))[0] > 0:
            raise UserError(
                f"The workers of this multi-worker run disagree on {what} "
                f"({self.name}: {mine.tolist()}, chief: {chief.tolist()}). Every "
                f"worker must run the same command with the same flags, and "
                f"--output_dir must be on a filesystem all of them see (they "
                f"resume from the chief's checkpoints)."
            )


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` with tf.distribute sharding by data (each worker its share of
    every batch); datasets from arrays have no files to shard by."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def fix_keras_fit(model, dataset: tf.data.Dataset) -> None:
    """Makes Keras 3's `fit` work under `MultiWorkerMirroredStrategy`.

    Two steps of Keras' TensorFlow trainer fail there: the first `fit`
    reduces a distributed batch across replicas to build the compiled loss
    and metrics ("unsupported type PerReplica"), and each step reduces the
    scalar metrics with `axis=0` ("Invalid reduction dimension 0"). The
    first is done here from one undistributed batch (under the strategy's
    scope); the second reduces per-replica values over the replicas
    (`axis=None`), as Keras does for one machine's replicas.
    """
    model._symbolic_build(data_batch=next(iter(dataset)))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    from keras.src.backend.tensorflow import trainer  # noqa: PLC0415

    if getattr(trainer.reduce_per_replica, "enas_tf_fixed", False):
        return
    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and reduction in (
            "auto",
            "mean",
        ):

            def mean(v):
                if isinstance(v, tf.distribute.DistributedValues):
                    return strategy.reduce("MEAN", v, axis=None)
                return v

            return tf.nest.map_structure(mean, values)
        return original(values, strategy, reduction)

    reduce_per_replica.enas_tf_fixed = True
    trainer.reduce_per_replica = reduce_per_replica
