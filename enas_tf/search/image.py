"""The ENAS search over CNN spaces (micro cells, macro networks).

`Search` is `enas_tf.search.loop.SearchBase` with a shared-weight supernet
(ENAS_REFERENCE sec. 5):
1. child phase: one pass over the training split; every step samples a new
   architecture from the controller and trains the supernet on it (SGD with
   Nesterov momentum, cosine restarts, L2, gradient clipping);
2. controller phase (`SearchBase`): rewards are accuracies on a random
   validation minibatch;
3. derive (`SearchBase`): candidates are scored by their accuracy on the
   whole validation split (`valid_accuracy` in candidates.json).

The checkpoint holds the supernet (every shared variable, moving statistics
included), the controller and its trainer, both optimizers, the baseline,
the sampler RNG and the epoch. The language-model search is
`enas_tf.search.lm.LmSearch`; strategies that train every proposal from
scratch run `enas_tf.search.scratch.ScratchSearch`, DARTS
`enas_tf.search.darts.DartsSearch` (`make_search` picks).
"""

from __future__ import annotations

import contextlib
import math

import keras
import numpy as np
import tensorflow as tf

from enas_tf.configs.image import SearchConfig
from enas_tf.data.images import ImageSplits
from enas_tf.data.pipeline import eval_dataset, normalize, train_dataset
from enas_tf.errors import UserError
from enas_tf.ops import shared as shared_ops
from enas_tf.runtime import distribute, nonfinite, precision
from enas_tf.search import steps
from enas_tf.search.loop import SearchBase
from enas_tf.strategies import base as strategy_base
from enas_tf.supernet.build import build_supernet, recalibrated, weights_checkpoint
from enas_tf.train.schedules import EpochCosineRestarts

SAFE_KEYS = (
    "search.epochs",
    "search.derive_samples",
    "search.log_arcs",
    "search.eval_batch_size",
    "data.data_dir",
)


def run_record(config: SearchConfig, splits: ImageSplits, data: dict | None) -> dict:
    """Checks an image search's settings and data; returns what config.json
    records (the tool, the settings, the dataset: `data`, or the splits').

    Raises:
      UserError: for bad settings or an empty validation split.
    """
    config.check()
    if len(splits.valid_images) == 0:
        raise UserError(
            "The search scores architectures on a validation split; give --valid_size > 0."
        )
    return {
        "tool": "enas-search",
        "search": config.to_json(),
        "data": data or {"dataset": splits.name, "valid_size": len(splits.valid_images)},
    }


def make_search(config: SearchConfig, splits: ImageSplits, output_dir: str, **kwargs) -> SearchBase:
    """The search `config` asks for: `Search` (shared weights), or
    `enas_tf.search.scratch.ScratchSearch` when its strategy trains every
    proposal from scratch (`nas`; `evolution` with evaluation=scratch), or
    `enas_tf.search.darts.DartsSearch` for a gradient-based strategy
    (`darts`). `kwargs` are the searches' keyword arguments."""
    if getattr(config.strategy, "gradient_based", False):
        from enas_tf.search.darts import DartsSearch  # noqa: PLC0415

        return DartsSearch(config, splits, output_dir, **kwargs)
    if getattr(config.strategy, "from_scratch", False):
        from enas_tf.search.scratch import ScratchSearch  # noqa: PLC0415

        return ScratchSearch(config, splits, output_dir, **kwargs)
    return Search(config, splits, output_dir, **kwargs)


class Search(SearchBase):
    """One CNN search run in a run directory (see the module docstring).

    Args:
      config: the search settings (checked).
      splits: the dataset; rewards and scores use its validation split.
      output_dir: run directory; a compatible earlier run there is resumed.
      data: dataset settings recorded in config.json.
      overwrite: replace an incompatible earlier run.
      verbose: 1 for a progress bar per child phase, 0 for none.
      strategy: the `tf.distribute.Strategy` of the child phase and the
        rewards (default: the current one, normally one device). Each step's
        batch is split over the replicas, which all run the same sampled
        architecture; the controller stays outside it (one copy, float32).
    """

    SAFE_KEYS = SAFE_KEYS
    SCORE_KEY = "valid_accuracy"
    HIGHER_IS_BETTER = True
    LOG_SKIP_RATE = True
    TRACE_NOTE = (
        "The first step traces the supernet's graph once for every architecture; it takes a while."
    )

    def __init__(
        self,
        config: SearchConfig,
        splits: ImageSplits,
        output_dir: str,
        *,
        data: dict | None = None,
        overwrite: bool = False,
        verbose: int = 1,
        strategy: tf.distribute.Strategy | None = None,
    ):
        if getattr(config.strategy, "from_scratch", False) or getattr(
            config.strategy, "gradient_based", False
        ):
            raise UserError(
                f"Algorithm {config.algorithm} with these settings does not train a "
                f"shared-weight supernet on sampled architectures; run it with "
                f"enas_tf.search.image.make_search."
            )
        run = run_record(config, splits, data)
        self.splits = splits
        super().__init__(
            config, output_dir, run, overwrite=overwrite, verbose=verbose, strategy=strategy
        )
        self._valid = tf.data.Dataset.from_tensor_slices(
            (normalize(splits.valid_images, splits.mean, splits.std), splits.valid_labels)
        )
        self._reward_batches, self._reward_next = None, -1
        self._calibration = None  # training batches of reward_bn=recalibrate

    def _check_replicas(self) -> None:
        if self.config.batch_size < self.replicas:
            raise UserError(
                f"batch_size {self.config.batch_size} is smaller than the "
                f"{self.replicas} replicas it is split over; give a larger "
                f"--batch_size."
            )

    def _build_model(self) -> None:
        config, splits = self.config, self.splits
        # With several replicas the last, smaller batch of each pass is
        # dropped, so no replica ever gets an empty share.
        rounding = math.ceil if self.replicas == 1 else math.floor
        self.steps_per_epoch = max(1, rounding(len(splits.train_images) / config.batch_size))
        # The supernet computes in `config.precision`; the policy is not
        # left set, so the controller (built later) stays float32.
        with precision.policy(config.precision):
            self.net = build_supernet(config, splits.image_shape, splits.num_classes)
        # float16: dynamic loss scaling in the child step (`_build_steps`).
        self.loss_scale = (
            precision.LossScale() if precision.uses_loss_scale(config.precision) else None
        )
        # Clipping is done on the all-reduced gradient (`_build_steps`).
        sgd = config.optimizer
        self.optimizer = keras.optimizers.SGD(
            EpochCosineRestarts(
                sgd.lr_max, sgd.lr_min, sgd.lr_t0, sgd.lr_t_mul, self.steps_per_epoch
            ),
            momentum=sgd.momentum,
            nesterov=True,
        )
        self.optimizer.build(self.net.trainable_variables)
        # Reward minibatches drawn so far (`_reward_batch`).
        self.reward_index = tf.Variable(0, dtype=tf.int64, trainable=False)

    def _checkpointed(self) -> dict:
        saved = {
            "supernet": weights_checkpoint(self.net),
            "optimizer": self.optimizer,
            "reward_index": self.reward_index,
        }
        if self.loss_scale is not None:
            saved["loss_scale"] = self.loss_scale.checkpoint()
        return saved

    def _distribute(self, dataset: tf.data.Dataset):
        """`dataset`'s batches split over the replicas (as is on one device).

        Each global batch is split in order: replica r of the run (worker by
        worker) gets its r-th share, whatever the number of processes.
        """
        return self.strategy.experimental_distribute_dataset(distribute.shard_by_data(dataset))

    def _build_steps(self) -> None:
        """The child training, evaluation and calibration steps
        (`enas_tf.search.steps`)."""
        config = self.config
        # The batch spec: per-replica specs under a multi-device strategy.
        batch = self._distribute(
            eval_dataset(self.splits.valid_images[:2], self.splits.valid_labels[:2], self.splits, 2)
        ).element_spec
        settings = steps.StepSettings(
            l2=config.optimizer.l2,
            grad_bound=config.optimizer.grad_bound,
            seed=config.seed,
            batch_stats=config.reward_bn == "batch",
            replicas=self.replicas,
            multi_worker=self.workers.multi,
        )
        made = steps.make_steps(
            self.net,
            self.optimizer,
            self.strategy,
            batch,
            self.space.num_decisions,
            settings,
            loss_scale=self.loss_scale,
        )
        self.child_step, self.eval_step, self.calibrate_step = (
            made.train,
            made.evaluate,
            made.calibrate,
        )
        # Skipped (non-finite) child steps; too many in a row stop the run.
        self.nonfinite = nonfinite.NonFiniteCounter(config.max_nonfinite, "CNN search, child phase")

    # ----- phases -------------------------------------------------------------

    def _child_phase(self) -> dict[str, float]:
        config = self.config
        epoch = int(self.epoch.numpy())
        # The batches of an epoch depend only on (seed, epoch); a run stopped
        # inside the phase skips the `child_done` batches it trained on.
        done = int(self.child_done.numpy())
        data = self._distribute(
            train_dataset(
                self.splits,
                config.batch_size,
                cutout_size=config.cutout_size,
                flip=config.flip,
                pad=config.pad,
                seed=config.seed + epoch,
                drop_remainder=self.replicas > 1,
            ).skip(done)
        )
        bar = keras.utils.Progbar(
            self.steps_per_epoch, verbose=self.verbose, stateful_metrics=["loss", "accuracy"]
        )
        for step, batch in enumerate(data, start=done):
            arc = strategy_base.train_sample(self.sampler, 1).arc[0]
            loss, acc, finite = self.child_step(batch, arc)
            finite = self.nonfinite.update(finite, step)  # raises after too many
            loss, acc = (float(loss), float(acc)) if finite else (0.0, 0.0)
            self.child_sums.assign_add([loss, acc, 1.0, 0.0] if finite else [0.0] * 3 + [1.0])
            self.child_done.assign_add(1)
            bar.update(step + 1, [("loss", loss), ("accuracy", acc)])
            self._stop_if_requested()
        # Each replica kept moving statistics of its part of the batches;
        # rewards and scores use their mean.
        shared_ops.sync_statistics(self.net)
        loss_sum, acc_sum, steps, _ = self.child_sums.numpy()
        return {
            "child/loss": float(loss_sum / max(steps, 1)),
            "child/accuracy": float(acc_sum / max(steps, 1)),
            "child/learning_rate": float(self.optimizer.learning_rate.numpy()),
            **(
                {"child/loss_scale": float(self.loss_scale.scale.numpy())}
                if self.loss_scale is not None
                else {}
            ),
        }

    def _epoch_metrics(self) -> dict[str, float]:
        # child_sums[3]: the epoch's skipped (non-finite) child steps.
        return {"child/nonfinite_steps": float(self.child_sums.numpy()[3])}

    def _reward(self, arc) -> float:
        with self._statistics_for(arc):
            correct, count = self.eval_step(self._reward_batch(), arc)
        return float(correct / count)

    @contextlib.contextmanager
    def _statistics_for(self, arc):
        """With reward_bn=recalibrate: `arc`'s batch-norm moving statistics
        re-estimated on `recalibrate_batches` training batches (the same
        ones for every architecture, without augmentation), restored after
        (`enas_tf.supernet.build.recalibrated`). Other modes do nothing here.
        """
        if self.config.reward_bn != "recalibrate":
            yield
            return
        if self._calibration is None:
            splits, size = self.splits, self.config.batch_size
            count = min(len(splits.train_images), self.config.recalibrate_batches * size)
            order = np.random.default_rng(self.config.seed).permutation(len(splits.train_images))[
                :count
            ]
            self._calibration = list(
                self._distribute(
                    eval_dataset(
                        splits.train_images[order], splits.train_labels[order], splits, size
                    )
                )
            )
        arc = tf.constant(np.asarray(arc), tf.int32)
        with recalibrated(
            self.net, lambda batch: self.calibrate_step(batch, arc), self._calibration
        ):
            yield

    def _reward_batch(self):
        """The next validation minibatch for a reward.

        Minibatch i is batch `i % P` of pass `i // P` (P = whole batches in
        the validation split), each pass in an order drawn from
        (seed, pass): the sequence depends on nothing but the counter, which
        the checkpoint holds, so a resumed run draws what it would have.
        """
        index = int(self.reward_index.numpy())
        per_pass = max(1, len(self.splits.valid_images) // self.config.batch_size)
        passes, position = divmod(index, per_pass)
        if index != self._reward_next:  # a new pass, or the first reward
            seed = int(np.random.SeedSequence([self.config.seed, passes]).generate_state(1)[0])
            self._reward_batches = iter(
                self._distribute(
                    self._valid.shuffle(
                        len(self.splits.valid_images), seed=seed, reshuffle_each_iteration=False
                    )
                    .repeat()
                    .batch(self.config.batch_size, drop_remainder=True)
                    .take(per_pass)
                    .skip(position)
                )
            )
        self.reward_index.assign_add(1)
        self._reward_next = index + 1 if position + 1 < per_pass else -1
        return next(self._reward_batches)

    def _reward_text(self, reward: float) -> str:
        return f"valid minibatch accuracy {reward:.3f}"

    def score(self, arc) -> float:
        """Accuracy of `arc` on the whole validation split, shared weights."""
        data = self._distribute(
            eval_dataset(
                self.splits.valid_images,
                self.splits.valid_labels,
                self.splits,
                self.config.eval_batch_size,
            )
        )
        arc = tf.constant(arc, tf.int32)
        correct = 0.0
        with self._statistics_for(arc):
            for batch in data:
                correct += float(self.eval_step(batch, arc)[0])
        return correct / len(self.splits.valid_images)
