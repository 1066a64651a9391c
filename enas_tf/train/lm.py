"""Final training of a fixed enas_lm cell on a word-level corpus (PTB).

The recipe (defaults: the GPU path of enas_lm, ENAS_LM_REFERENCE sec. 5.1):
`FixedRnnLM` (H 800, tied softmax, U(-0.05, 0.05) init, dropouts e .125,
i .175, x .725, l .225, o .75); plain SGD at 20 scaled per step by `T / 35`
with random window lengths; global-norm clip 0.25; `8e-7 sum w^2` over every
weight and AR `0.7 mean(h^2)`; batch 64 (`lm_loop.train_epoch`).

Iterate averaging (sec. 5.1): after each epoch the validation perplexity is
compared with the history; once it is worse than the best of all but the
last `average_after` (10) epochs, `IterateAverage` keeps the uniform
average of the weights after every later step (SGD itself runs on, at the
same learning rate). Validation, test and the saved model use the average.

Evaluation (sec. 5.3): validation at batch 64 in 35-token windows, the state
zeroed once and carried, the tail dropped; test at batch 1 with the state
carried over the whole test text, every target scored. The original feeds
the test text one token per step (82,429 steps on PTB); we feed 1,000
tokens per call (`lm_loop.evaluate_stream`), which computes the same
recurrence, and the same perplexity, in far fewer calls.

Run directory:
  config.json   what was asked for (checked on resume)
  checkpoints/  after every epoch: weights, averages, optimizer, dropout
                RNG, data pointer, validation history (the last 2 kept)
  logs/         TensorBoard (perplexities, losses, averaging)
  history.csv   one row per epoch
  model.keras   the evaluated `FixedRnnLM` (averaged weights once averaging
                started)
  summary.json  arc, parameters, perplexities, timing, configuration
Rerunning with the same directory resumes after the last finished epoch.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import os
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from enas_tf.configs.lm import PTB_VOCAB_SIZE, LmTrainConfig
from enas_tf.data.ptb import PtbCorpus
from enas_tf.errors import UserError
from enas_tf.lm import loop as lm_loop
from enas_tf.lm import steps as lm_training
from enas_tf.lm.model import FixedRnnLM
from enas_tf.runtime import nonfinite, rundir, summaries
from enas_tf.runtime.checkpoints import Stopped, StopRequest, restore_newest
from enas_tf.spaces import Arc, RnnSpace

RUN_FILES = ("checkpoints", "logs", "history.csv", "model.keras", "summary.json")
SAFE_KEYS = ("train.epochs", "data.data_dir", "verbose")
HISTORY_FIELDS = (
    "epoch",
    "steps",
    "train_perplexity",
    "valid_perplexity",
    "averaging",
    "grad_norm",
    "seconds",
    "nonfinite_steps",
)


class IterateAverage(tf.Module):
    """The uniform average of the weights after every step since `start()`.

    `avg <- avg + (w - avg) / k`, k counting the updates since the start
    (spec sec. 5.1; the counter starts at 0, sec. 9 item 7).

    Args:
      variables: the Keras weights to average.
    """

    def __init__(self, variables: list[Any]) -> None:
        super().__init__(name="iterate_average")
        self._live = [v.value for v in variables]
        self.averages = [
            tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False) for v in self._live
        ]
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.active = tf.Variable(False, trainable=False)
        self._update = tf.function(self._update_fn, autograph=False)

    @property
    def is_active(self) -> bool:
        return bool(self.active.numpy())

    def start(self) -> None:
        """Starts averaging: the next `update` sets the average to the weights."""
        self.active.assign(True)
        self.count.assign(0)

    def update(self) -> None:
        """Folds the current weights into the average."""
        self._update()

    def _update_fn(self) -> None:
        self.count.assign_add(1)
        k = tf.cast(self.count, tf.float32)
        for avg, live in zip(self.averages, self._live):
            avg.assign_add((live - avg) / tf.cast(k, avg.dtype))

    @contextlib.contextmanager
    def applied(self):
        """Within the block the weights are the average (if active)."""
        if not self.is_active:
            yield
            return
        saved = [v.numpy() for v in self._live]
        for live, avg in zip(self._live, self.averages):
            live.assign(avg)
        try:
            yield
        finally:
            for live, value in zip(self._live, saved):
                live.assign(value)


def averaging_due(earlier: list[float], current: float, patience: int) -> bool:
    """The NT-ASGD-style trigger of spec sec. 5.1.

    True when more than `patience` earlier validation perplexities exist and
    `current` is worse than the best of them excluding the last `patience`
    (`patience` 0: never).
    """
    return bool(patience) and len(earlier) > patience and current > min(earlier[:-patience])


def build_model(arc: Arc, config: LmTrainConfig, vocab_size: int) -> FixedRnnLM:
    """The `FixedRnnLM` of `arc` at the configured sizes."""
    return FixedRnnLM(list(arc), vocab_size=vocab_size, **config.model_kwargs())


def count_params(model: keras.Model) -> int:
    """Number of weights (`V H + 4 H^2 + 2 L H^2`, spec sec. 1.4)."""
    return int(sum(np.prod(v.shape) for v in model.weights))


def describe(
    space: RnnSpace, arc: Arc, config: LmTrainConfig, vocab_size: int = PTB_VOCAB_SIZE
) -> str:
    """What `enas-train --dry_run` prints: the cell and the model's size."""
    model = build_model(arc, config, vocab_size)
    return "\n".join(
        [
            f"{space.describe()}: {space.format(arc)}",
            space.render(arc),
            f"vocabulary {vocab_size}, hidden {config.hidden_size}, cell output {config.average}",
            f"params {count_params(model):,}",
        ]
    )


def _history(path: str, upto: int) -> list[dict[str, str]]:
    """history.csv rows of epochs <= `upto` (later ones were not saved)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.DictReader(f) if int(row["epoch"]) <= upto]
    for row in rows:  # written before the column existed
        if row.get("nonfinite_steps") is None:
            row["nonfinite_steps"] = 0
    return rows


def _write_history(path: str, rows: list[dict[str, Any]]) -> None:
    lines = [",".join(HISTORY_FIELDS)]
    lines += [",".join(str(row[k]) for k in HISTORY_FIELDS) for row in rows]
    rundir.write_text_atomic(path, "\n".join(lines) + "\n")


def train_lm(
    space: RnnSpace,
    arc: Arc,
    config: LmTrainConfig,
    corpus: PtbCorpus,
    output_dir: str,
    *,
    data: dict[str, Any] | None = None,
    overwrite: bool = False,
    verbose: int = 1,
) -> dict[str, Any]:
    """Trains `arc` from scratch, evaluates it, writes the run directory.

    Args:
      space: the arc's `RnnSpace`.
      arc: the architecture.
      config: the recipe (checked).
      corpus: the token streams (train, valid, test).
      output_dir: run directory; an earlier compatible run there is resumed.
      data: dataset settings recorded in config.json.
      overwrite: replace an incompatible earlier run in `output_dir`.
      verbose: 1 for a progress bar per epoch and a line per epoch.

    Returns:
      The summary written to summary.json.

    Raises:
      UserError: for bad settings, splits too short for the batch sizes, an
        incompatible `output_dir` or an unreadable checkpoint.
    """
    config.check()
    arc = space.validate(arc)
    rows = lm_loop.train_rows(corpus.train, config.batch_size)
    lm_loop.split_windows(
        corpus.valid, config.eval_batch_size, config.bptt, "valid", "--eval_batch_size"
    )
    if len(corpus.test) < 2:
        raise UserError("The test split needs at least 2 tokens.")
    run = {
        "tool": "enas-train",
        "task": "lm",
        "space": space.name,
        "space_config": space.config(),
        "arc": space.format(arc),
        "train": dataclasses.asdict(config),
        "data": data or {"dataset": "ptb", "vocab_size": corpus.vocab_size},
    }
    resumed = rundir.prepare(
        output_dir, run, overwrite=overwrite, safe_keys=SAFE_KEYS, run_files=RUN_FILES
    )
    keras.utils.set_random_seed(config.seed)
    model = build_model(arc, config, corpus.vocab_size)
    optimizer = keras.optimizers.SGD(config.learning_rate)
    optimizer.build(model.trainable_variables)
    averager = IterateAverage(model.trainable_variables)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    position = tf.Variable(0, dtype=tf.int64, trainable=False)
    valid_history = tf.Variable(
        tf.zeros([0], tf.float64), shape=tf.TensorShape([None]), trainable=False
    )
    checkpoint = tf.train.Checkpoint(
        model=lm_loop.variables_checkpoint(model),
        optimizer=optimizer,
        averager=averager,
        epoch=epoch,
        position=position,
        valid_history=valid_history,
        dropout_rng=model.dropout_generator,
    )
    manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(output_dir, "checkpoints"), max_to_keep=2
    )
    restore_newest(checkpoint, manager)
    regularizers = lm_training.Regularizers(
        alpha=config.alpha, beta=config.beta, weight_decay=config.weight_decay, weight_penalty="l2"
    )
    train_step = lm_training.make_train_step(
        model, optimizer, regularizers, config.grad_bound or None
    )
    eval_step = lm_training.make_eval_step(model)
    skipped = nonfinite.NonFiniteCounter(config.max_nonfinite, "language-model training")

    def validate() -> float:
        with averager.applied():
            return lm_training.evaluate(
                model, corpus.valid, config.eval_batch_size, config.bptt, eval_step=eval_step
            )

    history_path = os.path.join(output_dir, "history.csv")
    history = _history(history_path, int(epoch.numpy()))
    writer = tf.summary.create_file_writer(os.path.join(output_dir, "logs"))
    if not resumed:
        summaries.write_hparams(writer, run)
    start = time.time()
    # SIGINT / SIGTERM stop at the end of the epoch (the hidden state carried
    # through an epoch is not checkpointed).
    with StopRequest() as stop:
        while int(epoch.numpy()) < config.epochs:
            e = int(epoch.numpy())
            row, result = _train_epoch(
                model, optimizer, train_step, rows, config, e, position, averager, validate,
                valid_history, verbose, skipped,
            )  # fmt: skip
            # history.csv first: a resumed run drops rows of epochs after its
            # checkpoint, so a kill between the two loses nothing.
            history.append(row)
            _write_history(history_path, history)
            epoch.assign_add(1)
            manager.save()
            with writer.as_default(step=e + 1):
                for key in ("train_perplexity", "valid_perplexity", "averaging"):
                    tf.summary.scalar(key, row[key])
                for key, value in result.metrics.items():
                    tf.summary.scalar(f"train/{key}", value)
            if verbose:
                print(
                    f"epoch {e + 1}/{config.epochs}: {result.steps} steps, train ppl "
                    f"{row['train_perplexity']:.2f}, valid ppl {row['valid_perplexity']:.2f}"
                    f"{' (averaged weights)' if averager.is_active else ''}"
                )
            if stop.requested is not None:  # saved above: stop cleanly
                raise Stopped(stop.requested, manager.latest_checkpoint)
    writer.flush()
    wall_time = time.time() - start
    with averager.applied():
        valid_ppl = lm_training.evaluate(
            model, corpus.valid, config.eval_batch_size, config.bptt, eval_step=eval_step
        )
        test_ppl, test_targets = lm_loop.evaluate_stream(
            eval_step, corpus.test, model.initial_state(1)
        )
        model_path = os.path.join(output_dir, "model.keras")
        tmp_path = os.path.join(output_dir, ".tmp-model.keras")
        model.save(tmp_path)
        os.replace(tmp_path, model_path)
    averaged = [int(r["epoch"]) for r in history if int(r["averaging"])]
    summary = {
        "task": "lm",
        "space": space.name,
        "space_config": space.config(),
        "arc": space.format(arc),
        "dataset": "ptb",
        "vocab_size": corpus.vocab_size,
        "hidden_size": config.hidden_size,
        "params": count_params(model),
        "epochs": len(history),
        "steps": int(optimizer.iterations.numpy()),
        "valid_perplexity": valid_ppl,
        "best_valid_perplexity": min([float(r["valid_perplexity"]) for r in history], default=None),
        "test_perplexity": test_ppl,
        "test_targets": test_targets,
        "averaging_from_epoch": averaged[0] if averaged else None,
        "nonfinite_steps": sum(int(r["nonfinite_steps"]) for r in history),
        "evaluation": {
            "valid": f"batch {config.eval_batch_size}, {config.bptt}-token windows in "
            "order, state carried, tail dropped",
            "test": f"batch 1, state carried over the whole split, "
            f"{lm_loop.TEST_WINDOW} tokens per call",
            "weights": "averaged" if averager.is_active else "last",
        },
        "wall_time_s": round(wall_time, 2),
        "resumed": resumed,
        "config": run,
    }
    rundir.write_json_atomic(os.path.join(output_dir, "summary.json"), summary)
    final = ("valid_perplexity", "best_valid_perplexity", "test_perplexity", "params")
    summaries.write_final(writer, {k: summary[k] for k in final}, step=summary["epochs"])
    writer.close()
    return summary


def _train_epoch(
    model, optimizer, train_step, rows, config, e, position, averager, validate, valid_history,
    verbose, skipped,
):  # fmt: skip
    """Trains epoch `e` from `position`, validates, starts iterate averaging
    when due (`averaging_due`).

    Returns:
      (the epoch's history row, `lm_loop.train_epoch`'s result).
    """
    began = time.time()
    result = lm_loop.train_epoch(
        train_step,
        rows,
        model.initial_state(config.batch_size),
        np.random.default_rng([config.seed, e]),
        start=int(position.numpy()),
        bptt=config.bptt,
        random_bptt=config.random_bptt,
        max_steps=config.max_steps_per_epoch,
        after_step=averager.update if averager.is_active else None,
        verbose=verbose,
        nonfinite=skipped,
    )
    position.assign(result.position)
    valid_ppl = validate()
    earlier = [float(v) for v in valid_history.numpy()]
    if not averager.is_active and averaging_due(earlier, valid_ppl, config.average_after):
        averager.start()
    valid_history.assign(np.asarray(earlier + [valid_ppl], np.float64))
    row = {
        "epoch": e + 1,
        "steps": int(optimizer.iterations.numpy()),
        "train_perplexity": round(result.metrics["perplexity"], 4),
        "valid_perplexity": round(valid_ppl, 4),
        "averaging": int(averager.is_active),
        "grad_norm": round(result.metrics["grad_norm"], 5),
        "seconds": round(time.time() - began, 2),
        "nonfinite_steps": int(result.metrics["nonfinite_steps"]),
    }
    return row, result


__all__ = [
    "HISTORY_FIELDS",
    "RUN_FILES",
    "SAFE_KEYS",
    "IterateAverage",
    "averaging_due",
    "build_model",
    "count_params",
    "describe",
    "train_lm",
]
