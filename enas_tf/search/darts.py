"""The DARTS search over the micro cell space (and the macro space).

`DartsSearch` is `enas_tf.search.loop.SearchBase` on DARTS's relaxed network
(`enas_tf.supernet.relaxed`) with the architecture parameters of the
strategy `darts` (`enas_tf.strategies.darts`), picked by
`enas_tf.search.image.make_search`. Per epoch (DARTS sec. 2.3, Algorithm 1):

1. child phase: one pass over the training split; for every training batch,
   first an architecture step on the next validation batch (first or second
   order; the validation batches of an epoch are a seeded shuffle of the
   validation split, the search's "half of the training data"), then a
   weight step on the training batch (SGD with momentum, one cosine
   schedule, L2, clipping: `enas_tf.search.darts_steps`);
2. no controller phase: the strategy's `end_epoch` logs the mixing weights
   (heat maps), the derived cells, their share of parameter-free ops and the
   softmax entropy under `controller/`; the relaxed network's validation
   accuracy (whole split) is `darts/valid_accuracy`; `log_arcs` > 0 shows the
   derived architecture with its one-hot accuracy on a validation batch;
3. `early_stop_skips` (DARTS+) ends the search early once the derived normal
   cell has that many identity ops (checked after every epoch, so a resumed
   run stops where it would have);
4. derive: the derived architecture (DARTS sec. 2.4), scored by the relaxed
   network with its one-hot weights on the validation split
   (`valid_accuracy` in candidates.json: the shared weights with the other
   ops turned off, DARTS's "discretization gap"; the cell is meant to be
   retrained, `enas-train`).

Batch norm uses the batch's statistics throughout (DARTS keeps its search
network in training mode). The checkpoint holds the relaxed network's
variables, its optimizer, alpha and Adam's slots, and the position in the
epoch; a stopped run resumes at the next step, exactly.

Differences from the shared-weight ENAS search: the network has no dropout
(`--keep_prob` must be 1), outputs every node (`--cell_output=all`) and
scores with batch statistics (`--reward_bn=batch`); one device only, float32
or mixed_bfloat16 (no loss scaling for float16).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from enas_tf.configs.image import SearchConfig
from enas_tf.data.images import ImageSplits
from enas_tf.data.pipeline import eval_dataset, normalize, train_dataset
from enas_tf.errors import UserError
from enas_tf.ops.blocks import Blocks
from enas_tf.runtime import nonfinite, precision
from enas_tf.search import image
from enas_tf.search.darts_steps import make_darts_steps
from enas_tf.search.loop import SearchBase
from enas_tf.spaces.macro import MacroSpace
from enas_tf.strategies.darts.alphas import one_hot_mix
from enas_tf.supernet.relaxed import build_relaxed_macro, build_relaxed_micro
from enas_tf.train.schedules import EpochCosineRestarts


def collapsed(architecture, settings, epoch: int, verbose: int) -> bool:
    """DARTS+'s early stop (`early_stop_skips`): after at least one epoch,
    whether the derived (normal) cell has that many identity ops."""
    threshold = settings.early_stop_skips
    if threshold <= 0 or epoch == 0:
        return False
    _, identities = architecture.parameter_free(architecture.derive())
    if identities >= threshold and verbose:
        print(
            f"Early stop (DARTS+): the derived cell has {identities} identity ops "
            f"(--early_stop_skips={threshold})."
        )
    return identities >= threshold


def _check(config: SearchConfig, strategy: tf.distribute.Strategy) -> None:
    """Raises UserError for settings a DARTS search does not take."""
    supernet = config.supernet
    if config.space.name not in ("micro", "macro"):
        raise UserError(
            f"DARTS over images searches the micro or macro space; received "
            f"--space={config.space.name}."
        )
    if supernet.keep_prob != 1.0:
        raise UserError(
            f"DARTS's search network has no dropout; give --keep_prob=1 "
            f"(received {supernet.keep_prob})."
        )
    if config.space.name == "micro" and supernet.cell_output != "all":
        raise UserError(
            "DARTS's cells output every node; give --cell_output=all "
            f"(received {supernet.cell_output!r})."
        )
    if config.reward_bn != "batch":
        raise UserError(
            "DARTS scores with the batch's statistics; give --reward_bn=batch "
            f"(received {config.reward_bn!r})."
        )
    if precision.uses_loss_scale(config.precision):
        raise UserError(
            "DARTS runs in float32 or mixed_bfloat16 here (no loss scaling); "
            f"received --precision={config.precision}."
        )
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    if strategy.num_replicas_in_sync > 1 or multi_worker:
        raise UserError("DARTS runs on one device here; drop --strategy/--devices.")


class DartsSearch(SearchBase):
    """One DARTS search run in a run directory (module docstring).

    Args:
      config: the search settings; `config.algorithm` is "darts".
      splits: the dataset: the weights train on its training split, alpha
        on its validation split.
      output_dir: run directory; a compatible earlier run there is resumed.
      data: dataset settings recorded in config.json.
      overwrite: replace an incompatible earlier run.
      verbose: 1 for a progress bar per epoch, 0 for none.
      strategy: a one-device strategy (or None).
    """

    SAFE_KEYS = image.SAFE_KEYS
    SCORE_KEY = "valid_accuracy"
    HIGHER_IS_BETTER = True
    TRACE_NOTE = "The first steps trace the relaxed network (every op of every edge)."

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
        if not getattr(config.strategy, "gradient_based", False):
            raise UserError(
                f"Algorithm {config.algorithm} is not DARTS; run it with "
                f"enas_tf.search.image.make_search."
            )
        run = image.run_record(config, splits, data)
        strategy = strategy or tf.distribute.get_strategy()
        _check(config, strategy)
        self.splits = splits
        self.settings = config.strategy
        self._valid = tf.data.Dataset.from_tensor_slices(
            (normalize(splits.valid_images, splits.mean, splits.std), splits.valid_labels)
        )
        super().__init__(
            config, output_dir, run, overwrite=overwrite, verbose=verbose, strategy=strategy
        )

    # ----- SearchBase ---------------------------------------------------------

    def _build_model(self) -> None:
        config, splits, settings = self.config, self.splits, self.config.strategy
        self.steps_per_epoch = max(1, math.ceil(len(splits.train_images) / config.batch_size))
        options = dict(
            image_shape=splits.image_shape,
            num_classes=splits.num_classes,
            out_filters=config.supernet.out_filters,
            none_op=settings.none_op,
            affine=settings.affine_bn,
            pool_bn=settings.pool_bn,
            blocks=Blocks(),
        )
        with precision.policy(config.precision):
            if isinstance(self.space, MacroSpace):
                self.net = build_relaxed_macro(self.space, **options)  # separable, as ENAS's
            else:
                self.net = build_relaxed_micro(
                    self.space, num_layers=config.space.num_layers, **options
                )
        sgd = config.optimizer
        # DARTS: plain momentum (not Nesterov), one cosine cycle when
        # lr_t0 = epochs (flags/cifar10_darts_search.flags).
        self.optimizer = keras.optimizers.SGD(
            EpochCosineRestarts(
                sgd.lr_max, sgd.lr_min, sgd.lr_t0, sgd.lr_t_mul, self.steps_per_epoch
            ),
            momentum=sgd.momentum,
        )
        self.optimizer.build(self.net.trainable_variables)
        self.arch_sums = tf.Variable(tf.zeros([2], tf.float64), trainable=False)

    def _checkpointed(self) -> dict:
        return {
            "relaxed": [v.value for v in self.net.variables],
            "optimizer": self.optimizer,
            "arch_sums": self.arch_sums,
        }

    def _build_steps(self) -> None:
        config = self.config
        spec = self._epoch_batches(0).element_spec[0]
        self.steps = make_darts_steps(
            self.net,
            self.optimizer,
            self.sampler,
            spec,
            order=self.settings.darts_order,
            l2=config.optimizer.l2,
            grad_bound=config.optimizer.grad_bound,
        )
        self.nonfinite = nonfinite.NonFiniteCounter(config.max_nonfinite, "DARTS search")

    def _epoch_batches(self, epoch: int) -> tf.data.Dataset:
        """(training batch, validation batch) pairs of `epoch`, a function
        of (seed, epoch) only."""
        config, splits = self.config, self.splits
        seed = config.seed + epoch
        train = train_dataset(
            splits,
            config.batch_size,
            cutout_size=config.cutout_size,
            flip=config.flip,
            pad=config.pad,
            seed=seed,
        )
        valid = (
            self._valid.shuffle(len(splits.valid_images), seed=seed, reshuffle_each_iteration=True)
            .repeat()
            .batch(config.batch_size, drop_remainder=True)
        )
        return tf.data.Dataset.zip((train, valid))

    def _child_phase(self) -> dict[str, float]:
        done = int(self.child_done.numpy())
        data = self._epoch_batches(int(self.epoch.numpy())).skip(done)
        bar = keras.utils.Progbar(
            self.steps_per_epoch, verbose=self.verbose, stateful_metrics=["loss", "accuracy"]
        )
        for step, (train, valid) in enumerate(data, start=done):
            valid_loss = float(self.steps.architecture(train, valid))
            loss, acc, finite = self.steps.weights(train)
            finite = self.nonfinite.update(finite, step)  # raises after too many
            loss, acc = (float(loss), float(acc)) if finite else (0.0, 0.0)
            self.child_sums.assign_add([loss, acc, 1.0, 0.0] if finite else [0.0] * 3 + [1.0])
            if math.isfinite(valid_loss):
                self.arch_sums.assign_add([valid_loss, 1.0])
            self.child_done.assign_add(1)
            bar.update(step + 1, [("loss", loss), ("accuracy", acc)])
            self._stop_if_requested()
        loss_sum, acc_sum, steps, skipped = self.child_sums.numpy()
        valid_sum, valid_steps = self.arch_sums.numpy()
        self.arch_sums.assign(tf.zeros_like(self.arch_sums))
        return {
            "child/loss": float(loss_sum / max(steps, 1)),
            "child/accuracy": float(acc_sum / max(steps, 1)),
            "child/learning_rate": float(self.optimizer.learning_rate.numpy()),
            "child/nonfinite_steps": float(skipped),
            "darts/valid_loss": float(valid_sum / max(valid_steps, 1)),
            "darts/valid_accuracy": self._accuracy(self.sampler.mix()),
        }

    def _controller_phase(self) -> dict[str, float]:
        return {}  # alpha learns in the child phase

    def _stop_early(self) -> bool:
        return collapsed(self.sampler, self.settings, int(self.epoch.numpy()), self.verbose)

    def _log_arcs(self) -> list[tuple[str, float]]:
        if not self.config.log_arcs:
            return []
        arc = self.sampler.derive()
        return [(self.space.format(arc), self._reward(arc))]

    def _reward(self, arc) -> float:
        batch = next(iter(self._valid.batch(self.config.batch_size)))
        correct, count = self.steps.evaluate(batch, self.one_hot(arc))
        return float(correct / count)

    def _reward_text(self, reward: float) -> str:
        return f"one-hot valid minibatch accuracy {reward:.3f}"

    def one_hot(self, arc) -> tf.Tensor:
        """The mixing weights of `arc` (`alphas.one_hot_mix`)."""
        return tf.constant(one_hot_mix(self.space, self.sampler.ops, arc))

    def _accuracy(self, mix) -> float:
        data = eval_dataset(
            self.splits.valid_images,
            self.splits.valid_labels,
            self.splits,
            self.config.eval_batch_size,
        )
        correct = sum(float(self.steps.evaluate(batch, mix)[0]) for batch in data)
        return correct / len(self.splits.valid_images)

    def derive(self) -> dict:
        """`SearchBase.derive` of the derived architecture; the result
        says how it was scored (`evaluation`: "one_hot")."""
        return {**super().derive(), "evaluation": "one_hot"}

    def score(self, arc) -> float:
        """Accuracy on the whole validation split of the relaxed network
        with `arc`'s one-hot weights (batch statistics)."""
        return self._accuracy(self.one_hot(arc))
