"""The ENAS search loop shared by the CNN and the language-model searches.

`SearchBase` runs what every ENAS search does, whatever the child network
(ENAS sec. 2.2, ENAS_REFERENCE sec. 5, ENAS_LM_REFERENCE sec. 4). Per epoch:

1. child phase (subclass): trains the shared weights, a new architecture
   proposed by the search strategy (`enas_tf.strategies`: the ENAS
   controller, or another method) for every step;
2. controller phase: `controller_steps` strategy updates, each on the
   rewards of `num_aggregate` proposed architectures, computed by the
   subclass's `_reward(arc)` on a validation minibatch (for ENAS: REINFORCE
   gradients averaged into one controller step, `enas_tf.strategies.reinforce`),
   then the strategy's `end_epoch` (the controller's memory and
   diagnostics: scalars and images under `controller/`);
3. `log_arcs` sampled architectures are shown with their minibatch reward;
   metrics go to TensorBoard and `search_log.jsonl` (one JSON line per
   epoch), and a checkpoint is saved (the last 3 kept).

At the end the derive step takes `derive_samples` architectures from the
strategy (samples, or its own candidates, e.g. evolution's best), scores
each with the subclass's `score(arc)` on the whole validation split with the
shared weights, and writes the best (`enas_tf.search.derive`: best_arc.txt,
best_arc.json, best_arc.png, candidates.json).

Run directory: config.json, checkpoints/, logs/ (TensorBoard),
search_log.jsonl and the derive outputs. Rerunning with the same directory
resumes from the newest readable checkpoint (`enas_tf.runtime.checkpoints`): after
the last finished epoch, or after SIGINT/SIGTERM at the step where the run
stopped (the checkpoint holds the steps done in the child and controller
phases; `STOP_INSIDE_EPOCH`). search_log.jsonl lines of epochs after the
checkpoint are dropped, so a killed epoch is logged once. With
`--deterministic` a resumed run computes exactly what an uninterrupted one
does (tests/resume_test.py); the controller metrics of an epoch stopped
midway average the updates after the resume.

Multi-worker runs (`enas_tf.runtime.distribute.Workers`): every worker runs this
loop in step (the child and eval steps, checkpoint saves and the checks
below are collective operations); only the chief writes the run directory,
the others save to a private directory and restore from the chief's
checkpoints. The restored position and, every epoch, the controller's state
must be the same on every worker; a SIGINT/SIGTERM on any worker stops all
of them after the same step.

A subclass sets the class attributes (`SAFE_KEYS`, `SCORE_KEY`, ...) and
implements `_build_model()` (under the strategy's scope), `_checkpointed()`,
`_build_steps()`, `_child_phase()`, `_reward(arc)`, `score(arc)` and
`_reward_text(reward)`; `_epoch_metrics()` may add metrics after the
controller phase, `_rewards(arcs)` reward an update's architectures
together, `_before_update()` act before each update samples and
`_stop_early()` end the search before its last epoch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from enas_tf import strategies
from enas_tf.runtime import rundir, summaries
from enas_tf.runtime.checkpoints import Stopped, StopRequest, restore_newest
from enas_tf.runtime.distribute import Workers
from enas_tf.search import derive
from enas_tf.strategies import base as strategy_base
from enas_tf.strategies.base import Strategy

RUN_FILES = ("checkpoints", "logs", "search_log.jsonl", *derive.OUTPUT_FILES)


def _keep_epochs(path: str, epochs: int) -> None:
    """Drops search_log.jsonl lines of epochs after `epochs` (a run killed
    after logging an epoch but before its checkpoint redoes that epoch)."""
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    kept = []
    for line in lines:
        try:
            if json.loads(line)["epoch"] <= epochs:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill
    if kept != lines:
        rundir.write_text_atomic(path, "".join(f"{line}\n" for line in kept))


class SearchBase:
    """One search run in a run directory (see the module docstring).

    Subclasses check their data, set what `_build_model` needs, then call
    this constructor.

    Args:
      config: the search settings (checked; has `search_space()`, `seed`,
        `epochs`, `controller_steps`, `num_aggregate`, `log_arcs`,
        `derive_samples`).
      output_dir: run directory; a compatible earlier run there is resumed.
      run: the JSON-ready configuration recorded in config.json.
      overwrite: replace an incompatible earlier run.
      verbose: 1 for progress output, 0 for none.
      strategy: the `tf.distribute.Strategy` of the shared-weight training
        and the rewards (default: the current one, normally one device).
    """

    # Dotted config.json keys that may change when a run is resumed.
    SAFE_KEYS: tuple[str, ...] = ()
    # The run directory's outputs (removed by `overwrite`).
    RUN_FILES: tuple[str, ...] = RUN_FILES
    # The derive step's score: candidates.json key, and whether higher wins.
    SCORE_KEY = "valid_score"
    HIGHER_IS_BETTER = True
    # Log the controller's skip rate (macro spaces have skip decisions).
    LOG_SKIP_RATE = False
    TRACE_NOTE = ""
    # SIGINT / SIGTERM stop after the current step (True) or at the end of
    # the epoch (False: the child phase cannot resume midway).
    STOP_INSIDE_EPOCH = True

    def __init__(
        self,
        config: Any,
        output_dir: str,
        run: dict[str, Any],
        *,
        overwrite: bool = False,
        verbose: int = 1,
        strategy: tf.distribute.Strategy | None = None,
    ):
        self.config, self.output_dir, self.verbose = config, output_dir, verbose
        # Keras callbacks: on_train_begin, on_epoch_end(epoch, logs=the
        # epoch's metrics), on_train_end(logs=the derived best).
        self.callbacks: list[keras.callbacks.Callback] = []
        self.space = config.search_space()
        self.strategy = strategy or tf.distribute.get_strategy()
        # Multi-worker: the chief writes the run directory, the others wait.
        self.workers = Workers(self.strategy)
        checkpoints = os.path.join(output_dir, "checkpoints")
        if self.workers.is_chief:
            self.resumed = rundir.prepare(
                output_dir,
                run,
                overwrite=overwrite,
                safe_keys=self.SAFE_KEYS,
                run_files=self.RUN_FILES,
                upgrade=self._upgrade_recorded,
            )
        self.workers.barrier()
        if not self.workers.is_chief:
            self.resumed = tf.train.latest_checkpoint(checkpoints) is not None
        self.run_config = run
        self.replicas = self.strategy.num_replicas_in_sync
        self._check_replicas()
        keras.utils.set_random_seed(config.seed)
        with self.strategy.scope():
            self._build_model()
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        # Where a run stopped inside an epoch (`_stop_if_requested`): steps
        # done in the child and controller phases, and the child phase's
        # running sums (the subclass's).
        self.child_done = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.controller_done = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.child_sums = tf.Variable(tf.zeros([4], tf.float64), trainable=False)
        self.sampler = self._build_sampler()
        self.checkpoint = tf.train.Checkpoint(
            **self._checkpointed(),
            sampler=self.sampler,
            epoch=self.epoch,
            child_done=self.child_done,
            controller_done=self.controller_done,
            child_sums=self.child_sums,
        )
        # Every worker restores the chief's checkpoints (`manager`) and saves
        # (`saver`: the chief's directory, or a private one; `Workers`).
        self.manager = tf.train.CheckpointManager(self.checkpoint, checkpoints, max_to_keep=3)
        self.saver = self.manager
        if not self.workers.is_chief:
            self.saver = tf.train.CheckpointManager(
                self.checkpoint, self.workers.checkpoint_dir(checkpoints), max_to_keep=1
            )
        restore_newest(self.checkpoint, self.manager)
        self.workers.check_same(
            "the restored position (epoch, child steps, controller steps)",
            [self.epoch.numpy(), self.child_done.numpy(), self.controller_done.numpy()],
        )
        self._stop = StopRequest()
        self._build_steps()
        self.writer = (
            tf.summary.create_file_writer(os.path.join(output_dir, "logs"))
            if self.workers.is_chief
            else tf.summary.create_noop_writer()
        )
        if self.workers.is_chief and not self.resumed:
            summaries.write_hparams(self.writer, run)

    def _upgrade_recorded(self, recorded: dict[str, Any]) -> dict[str, Any]:
        """An older run's config.json in today's form (`rundir.prepare`):
        runs written before the search configs nested recorded a flat
        `search` section (`enas_tf.configs.nested`); settings a strategy
        gained since the run was written (e.g. the controller's `memory`)
        take their defaults, which keep the behaviour the run had."""
        search = recorded.get("search")
        if isinstance(search, dict) and not isinstance(search.get("space"), dict):
            return {**recorded, "search": self.config.upgrade_flat(search)}
        algorithm = self.config.algorithm
        if isinstance(search, dict) and isinstance(search.get("strategy"), dict):
            if search.get("algorithm") == algorithm:
                defaults = strategies.default_config(algorithm, self.config.KIND)
                defaults = dataclasses.asdict(defaults)
                if not defaults.keys() <= search["strategy"].keys():
                    strategy = {**defaults, **search["strategy"]}
                    return {**recorded, "search": {**search, "strategy": strategy}}
        return recorded

    # ----- what a subclass provides -----------------------------------------

    def _check_replicas(self) -> None:
        """Raises UserError when the strategy does not fit the search."""

    def _build_model(self) -> None:
        raise NotImplementedError

    def _build_sampler(self) -> Strategy:
        """The search strategy (by default `_strategy_from_config`)."""
        return self._strategy_from_config()

    def _strategy_from_config(self) -> Strategy:
        """The strategy `config.algorithm` with the settings `config.strategy`
        (`enas_tf.strategies.build`)."""
        config = self.config
        return strategies.build(
            config.algorithm,
            config.strategy,
            self.space,
            seed=config.seed,
            num_aggregate=config.num_aggregate,
        )

    def _checkpointed(self) -> dict[str, Any]:
        """Objects the checkpoint saves besides the sampler and the epoch."""
        raise NotImplementedError

    def _build_steps(self) -> None:
        raise NotImplementedError

    def _child_phase(self) -> dict[str, float]:
        raise NotImplementedError

    def _reward(self, arc) -> float:
        raise NotImplementedError

    def _rewards(self, arcs: tf.Tensor) -> np.ndarray:
        """float32 `[n]` rewards of the int32 `[n, D]` `arcs` of one
        strategy update (by default `_reward` of each, in turn)."""
        return np.array([self._reward(arc) for arc in arcs], np.float32)

    def _before_update(self) -> None:
        """Called before each strategy update samples (nothing by default)."""

    def score(self, arc) -> float:
        """The derive step's score of `arc` on the whole validation split."""
        raise NotImplementedError

    def _reward_text(self, reward: float) -> str:
        """How a logged architecture's minibatch reward reads."""
        return f"reward {reward:.3f}"

    def _epoch_metrics(self) -> dict[str, float]:
        """Metrics computed after the controller phase (none by default)."""
        return {}

    def _stop_early(self) -> bool:
        """Before each epoch: end the search now and derive (never by
        default). A function of the checkpointed state, so a resumed run
        stops where the uninterrupted one did."""
        return False

    # ----- phases -------------------------------------------------------------

    def _stop_if_requested(self, inside_epoch: bool = True) -> None:
        """After a step: on SIGINT / SIGTERM, saves a checkpoint and stops.

        The checkpoint holds the position inside the epoch, so the resumed
        run continues with the next step (`Stopped` carries the path).
        Searches whose child phase cannot resume midway
        (`STOP_INSIDE_EPOCH` False) stop at the end of the epoch.
        """
        if inside_epoch and not self.STOP_INSIDE_EPOCH:
            return
        # Multi-worker: every worker stops after the same step.
        if self.workers.any_stop(self._stop.requested is not None):
            path = self.saver.save() if inside_epoch else self.saver.latest_checkpoint
            if not self.workers.is_chief:
                path = self.manager.directory  # the chief's copy
            raise Stopped(self._stop.requested or signal.SIGTERM, path)

    def _controller_phase(self) -> dict[str, float]:
        """Controller updates (from `controller_done` on, after a stop).

        The metrics average the updates this process ran.
        """
        totals: dict[str, list[float]] = {}
        while int(self.controller_done.numpy()) < self.config.controller_steps:
            self._before_update()
            sample = self.sampler.sample(self.config.num_aggregate)
            rewards = self._rewards(sample.arc)
            metrics = self.sampler.update(sample.arc, rewards)
            if self.LOG_SKIP_RATE:
                metrics["skip_rate"] = float(np.mean(sample.skip_rate))
            for key, value in metrics.items():
                totals.setdefault(key, []).append(float(value))
            self.controller_done.assign_add(1)
            self._stop_if_requested()
        return {f"controller/{k}": float(np.mean(v)) for k, v in totals.items()}

    def _log_arcs(self) -> list[tuple[str, float]]:
        if not self.config.log_arcs:
            return []
        sample = self.sampler.sample(self.config.log_arcs)
        return [(self.space.format(arc.numpy()), self._reward(arc)) for arc in sample.arc]

    # ----- the run ------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Searches the remaining epochs, then derives; returns the best.

        SIGINT / SIGTERM stop the run cleanly after the current step
        (`enas_tf.runtime.checkpoints.Stopped`); rerunning resumes it.
        """
        with self._stop:
            return self._run()

    def _run(self) -> dict[str, Any]:
        log_path = os.path.join(self.output_dir, "search_log.jsonl")
        chief = self.workers.is_chief
        if chief:
            _keep_epochs(log_path, int(self.epoch.numpy()))
        if self.verbose and self.TRACE_NOTE and int(self.epoch.numpy()) < self.config.epochs:
            print(self.TRACE_NOTE)
        for callback in self.callbacks:
            callback.on_train_begin()
        while int(self.epoch.numpy()) < self.config.epochs and not self._stop_early():
            epoch = int(self.epoch.numpy())
            start = time.time()
            if self.verbose:
                print(f"Epoch {epoch + 1}/{self.config.epochs}")
            metrics = self._child_phase()
            metrics.update(self._controller_phase())
            images = {}
            for key, value in strategy_base.end_epoch(self.sampler, epoch + 1).items():
                if isinstance(value, np.ndarray):
                    images[f"controller/{key}"] = value
                else:
                    metrics[f"controller/{key}"] = float(value)
            metrics.update(self._epoch_metrics())
            arcs = self._log_arcs()
            metrics["epoch_seconds"] = round(time.time() - start, 2)
            with self.writer.as_default(step=epoch + 1):
                for key, value in metrics.items():
                    tf.summary.scalar(key, value)
                for key, image in images.items():
                    tf.summary.image(key, image[None])
                if arcs:
                    tf.summary.text(
                        "sampled_architectures",
                        "\n\n".join(f"`{a}` {self._reward_text(r)}" for a, r in arcs),
                    )
            if self.verbose:
                shown = ", ".join(
                    f"{k.split('/')[-1]} {v:.4g}"
                    for k, v in metrics.items()
                    if k.startswith("controller/")
                )
                print(f"  controller: {shown}")
                for arc, reward in arcs:
                    print(f"  {reward:.3f}  {arc}")
            if chief:
                with open(log_path, "a", encoding="utf-8") as f:
                    f.write(
                        json.dumps(
                            {
                                "epoch": epoch + 1,
                                **metrics,
                                "arcs": [{"arc": a, "reward": r} for a, r in arcs],
                            }
                        )
                        + "\n"
                    )
            # Multi-worker: the controllers must still sample alike.
            self.workers.check_same(
                "the controller's state",
                [float(np.sum(v.numpy(), dtype=np.float64)) for v in self.sampler.variables],
            )
            self.epoch.assign_add(1)
            self.child_done.assign(0)
            self.controller_done.assign(0)
            self.child_sums.assign(tf.zeros_like(self.child_sums))
            self.saver.save()
            for callback in self.callbacks:
                callback.on_epoch_end(epoch, logs=dict(metrics))
            self._stop_if_requested(inside_epoch=False)
        result = self.derive()
        for callback in self.callbacks:
            callback.on_train_end(logs=dict(result))
        return result

    def derive(self) -> dict[str, Any]:
        """Scores the strategy's `derive_samples` candidates (its samples, or
        its `candidates`: `strategies.base.candidates`), writes the best
        (`enas_tf.search.derive`)."""
        key = self.SCORE_KEY
        arcs = strategy_base.candidates(self.sampler, self.config.derive_samples)
        unique = list(dict.fromkeys(tuple(int(v) for v in arc) for arc in arcs))
        ranked = derive.rank(
            [{"arc": self.space.format(arc), key: self.score(arc)} for arc in unique],
            key,
            self.HIGHER_IS_BETTER,
        )
        best = ranked[0]
        meta = {key: best[key], "epoch": int(self.epoch.numpy()), "seed": self.config.seed}
        result = {"best_arc": best["arc"], **meta, "candidates": len(ranked)}
        if not self.workers.is_chief:
            return {**result, "chief": False}  # the chief writes the outputs
        derive.write_outputs(
            self.output_dir,
            self.space,
            ranked,
            key,
            meta,
            self.config.derive_samples,
            self.run_config,
            self.writer,
        )
        summaries.write_final(
            self.writer, {key: best[key], "candidates": len(ranked)}, meta["epoch"]
        )
        return result
