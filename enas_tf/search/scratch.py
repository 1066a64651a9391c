"""Searches that train every proposed architecture from scratch.

`ScratchSearch` is `enas_tf.search.loop.SearchBase` without shared weights,
for the strategies whose settings say so (`from_scratch`: `nas`, Zoph & Le
2017; `evolution` with `evaluation="scratch"`, Real et al. 2019;
`enas_tf.strategies.scratch`). Per epoch there is no child phase; each of the
`controller_steps` strategy updates takes `num_aggregate` proposals, trains
each as a fixed network from a fresh initialisation for `child_epochs`
(`enas_tf.search.children`, `parallel_children` at once, each in a worker
process) and rewards it with `score ** reward_power`, the score being the
best validation accuracy of its last `reward_epochs` epochs. The children are
the search's networks (`SearchConfig.child_config()`: the supernet's sizes)
trained with its optimiser settings (SGD with Nesterov momentum, one cosine
cycle over the child's epochs, L2, clipping) and augmentation.

Every trained child is a line of `children.jsonl`: where it was proposed
(`epoch`, `update`, `child`, 1-based), its architecture, seed, score,
reward, validation and training curves, parameters and seconds. A child's
seed is a function of the search seed and that position.

Resuming: a checkpoint is saved before every update samples; a run killed
or stopped while children train resumes there, its strategy proposes the
same architectures again, and the children children.jsonl already holds
for those positions and architectures are not retrained. SIGINT/SIGTERM stop
the workers at once (the children in training are lost; the finished ones
are recorded).

Derive: the best architectures among every trained child of the run
(mean score over its trainings, when trained more than once), as NAS and
evolution report the best model found; `candidates.json` ranks them all.
Multi-device and multi-worker strategies are refused: each child trains on
one device of its own worker.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import numpy as np
import tensorflow as tf

from enas_tf.configs.image import ChildConfig, SearchConfig, TrainConfig
from enas_tf.data.images import ImageSplits
from enas_tf.errors import UserError
from enas_tf.runtime import rundir, summaries
from enas_tf.runtime.checkpoints import Stopped, determinism_enabled
from enas_tf.search import derive, image
from enas_tf.search.children import ChildJob, ChildPool
from enas_tf.search.loop import RUN_FILES, SearchBase

CHILDREN_FILE = "children.jsonl"


def _read_children(path: str) -> dict[tuple[int, int, int], dict[str, Any]]:
    """children.jsonl's records by (epoch, update, child), the last of each
    kept. A line cut short by a kill is dropped from the file, so the next
    record starts on a line of its own."""
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        text = f.read()
    records, kept = {}, []
    for line in text.splitlines():
        try:
            record = json.loads(line)
            key = (int(record["epoch"]), int(record["update"]), int(record["child"]))
        except (ValueError, KeyError, TypeError):
            continue
        records[key] = record
        kept.append(line)
    if text and (not text.endswith("\n") or len(kept) != len(text.splitlines())):
        rundir.write_text_atomic(path, "".join(f"{line}\n" for line in kept))
    return records


class ScratchSearch(SearchBase):
    """One search whose proposals train from scratch (module docstring).

    Args:
      config: the search settings; `config.strategy.from_scratch` is true.
      splits: the dataset; children are scored on its validation split.
      output_dir: run directory; a compatible earlier run there is resumed.
      data: dataset settings recorded in config.json.
      overwrite: replace an incompatible earlier run.
      verbose: 1 for a line per trained child, 0 for none.
      strategy: must be a one-device strategy (or None).
    """

    SAFE_KEYS = (*image.SAFE_KEYS, "search.strategy.parallel_children")
    RUN_FILES = (*RUN_FILES, CHILDREN_FILE)
    SCORE_KEY = "valid_accuracy"
    HIGHER_IS_BETTER = True
    LOG_SKIP_RATE = True

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
        if not getattr(config.strategy, "from_scratch", False):
            raise UserError(
                f"Algorithm {config.algorithm} scores architectures with shared weights; "
                f"run it with enas_tf.search.image.Search."
            )
        run = image.run_record(config, splits, data)
        strategy = strategy or tf.distribute.get_strategy()
        multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        if strategy.num_replicas_in_sync > 1 or multi_worker:
            raise UserError(
                f"Algorithm {config.algorithm} trains each child on one device of its own "
                f"process (--parallel_children at once); drop --strategy/--devices."
            )
        self.splits = splits
        self.settings = config.strategy
        super().__init__(
            config, output_dir, run, overwrite=overwrite, verbose=verbose, strategy=strategy
        )
        self.children_path = os.path.join(output_dir, CHILDREN_FILE)
        self.children = _read_children(self.children_path)
        self._pool: ChildPool | None = None
        self._trained = 0  # children this process trained

    # ----- SearchBase ---------------------------------------------------------

    def _build_model(self) -> None:
        """No shared weights: only what every child is trained with."""
        config = self.config
        sgd, epochs = config.optimizer, self.settings.child_epochs
        self.job = ChildJob(
            space=self.space,
            child=_with_l2(config.child_config(), sgd.l2),
            train=TrainConfig(
                epochs=epochs,
                batch_size=config.batch_size,
                eval_batch_size=config.eval_batch_size,
                lr_max=sgd.lr_max,
                lr_min=sgd.lr_min,
                lr_t0=epochs,  # one cosine cycle over the child's training
                lr_t_mul=1.0,
                momentum=sgd.momentum,
                grad_bound=sgd.grad_bound,
                cutout_size=config.cutout_size,
                pad=config.pad,
                flip=config.flip,
                seed=config.seed,
                max_nonfinite=config.max_nonfinite,
                precision=config.precision,
            ),
            splits=self.splits,
            deterministic=determinism_enabled(),
        )

    def _checkpointed(self) -> dict[str, Any]:
        return {}

    def _build_steps(self) -> None:
        pass

    def _child_phase(self) -> dict[str, float]:
        return {}

    def _before_update(self) -> None:
        """Saves the position before the strategy samples (the end of an
        epoch saved it already), so a run killed while children train
        resumes by proposing them again."""
        if int(self.controller_done.numpy()) > 0 or self.manager.latest_checkpoint is None:
            self.saver.save()

    def _reward(self, arc) -> float:
        return float(self._rewards(np.asarray(arc)[None])[0])

    def _rewards(self, arcs) -> np.ndarray:
        """Trains the update's children (those not recorded yet) and returns
        their rewards (NaN for a child whose training failed)."""
        arcs = np.asarray(arcs, np.int32)
        epoch, update = int(self.epoch.numpy()) + 1, int(self.controller_done.numpy()) + 1
        records: dict[int, dict[str, Any]] = {}
        pending = {}
        for i, arc in enumerate(arcs):
            text = self.space.format(arc)
            done = self.children.get((epoch, update, i + 1))
            if done is not None and done["arc"] == text:
                records[i] = done
                continue
            seed = _child_seed(self.config.seed, epoch, update, i + 1)
            pending[i] = (text, seed, self._children_pool().submit(arc, seed))
        while pending:
            for i, (text, seed, result) in list(pending.items()):
                if result.ready():
                    records[i] = self._record(epoch, update, i + 1, text, seed, result.get())
                    del pending[i]
            if pending and self._stop.requested is not None:
                self._close_pool(terminate=True)
                raise Stopped(self._stop.requested, self.saver.latest_checkpoint)
            if pending:
                time.sleep(0.1)
        return np.array([records[i]["reward"] for i in range(len(arcs))], np.float32)

    def _record(self, epoch, update, child, text, seed, result) -> dict[str, Any]:
        """Scores a finished child, appends it to children.jsonl, prints it."""
        settings = self.settings
        curve = result.get("valid_curve", [])
        score = settings.score(curve) if "error" not in result else float("nan")
        record = {
            "epoch": epoch,
            "update": update,
            "child": child,
            "arc": text,
            "seed": seed,
            "valid_accuracy": score,
            "reward": settings.reward(score),
            **{k: v for k, v in result.items() if k != "traceback"},
        }
        if self.workers.is_chief:
            with open(self.children_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        self.children[(epoch, update, child)] = record
        self._trained += 1
        if self.verbose:
            where = f"epoch {epoch} update {update} child {child}"
            if "error" in result:
                print(f"  {where}: training failed ({result['error']}); reward skipped")
            else:
                print(
                    f"  {where}: valid accuracy {score:.4f} after {len(curve)} epochs "
                    f"({result['seconds']:.1f} s)  {text}"
                )
        return record

    def _epoch_children(self) -> list[dict[str, Any]]:
        epoch = int(self.epoch.numpy()) + 1
        return [r for key, r in sorted(self.children.items()) if key[0] == epoch]

    def _epoch_metrics(self) -> dict[str, float]:
        children = self._epoch_children()
        scores = [r["valid_accuracy"] for r in children if np.isfinite(r["valid_accuracy"])]
        best = self._ranked(int(self.epoch.numpy()) + 1)
        return {
            "children/trained": float(len(children)),
            "children/mean_valid_accuracy": float(np.mean(scores)) if scores else float("nan"),
            "children/best_valid_accuracy": float(best[0][self.SCORE_KEY])
            if best
            else float("nan"),
        }

    def _log_arcs(self) -> list[tuple[str, float]]:
        """The epoch's best `log_arcs` children with their scores (no new
        training)."""
        ranked = derive.rank(
            [{"arc": r["arc"], "score": r["valid_accuracy"]} for r in self._epoch_children()],
            "score",
            True,
        )
        return [(r["arc"], float(r["score"])) for r in ranked[: self.config.log_arcs]]

    def _reward_text(self, reward: float) -> str:
        return f"valid accuracy {reward:.3f} (trained from scratch)"

    def score(self, arc) -> float:
        """The mean score of `arc`'s trained children (NaN if none)."""
        text = self.space.format(np.asarray(arc))
        scores = [r["valid_accuracy"] for r in self.children.values() if r["arc"] == text]
        finite = [s for s in scores if np.isfinite(s)]
        return float(np.mean(finite)) if finite else float("nan")

    def _ranked(self, last_epoch: int) -> list[dict[str, Any]]:
        """Every architecture trained in epochs 1..`last_epoch`, with its
        mean finite score and its number of trainings, best first."""
        scores: dict[str, list[float]] = {}
        for (epoch, _, _), record in sorted(self.children.items()):
            if epoch <= last_epoch:
                scores.setdefault(record["arc"], []).append(float(record["valid_accuracy"]))
        candidates = []
        for arc, values in scores.items():
            finite = [v for v in values if np.isfinite(v)]
            mean = float(np.mean(finite)) if finite else float("nan")
            candidates.append({"arc": arc, self.SCORE_KEY: mean, "trainings": len(values)})
        return derive.rank(candidates, self.SCORE_KEY, self.HIGHER_IS_BETTER)

    def derive(self) -> dict[str, Any]:
        """The best trained child (module docstring); writes the derive
        outputs, candidates.json holding the `derive_samples` best."""
        self._close_pool()
        epoch = int(self.epoch.numpy())
        ranked = self._ranked(epoch)
        if not ranked:
            raise UserError("No child was trained; give --epochs >= 1.")
        key, best = self.SCORE_KEY, ranked[0]
        meta = {key: best[key], "epoch": epoch, "seed": self.config.seed}
        result = {
            "best_arc": best["arc"],
            **meta,
            "candidates": len(ranked),
            "children": sum(1 for e, _, _ in self.children if e <= epoch),
            "evaluation": "scratch",
        }
        derive.write_outputs(
            self.output_dir,
            self.space,
            ranked[: self.config.derive_samples],
            key,
            meta,
            len(ranked),
            self.run_config,
            self.writer,
        )
        summaries.write_final(self.writer, {key: best[key], "candidates": len(ranked)}, epoch)
        return result

    # ----- the worker processes ----------------------------------------------

    def _children_pool(self) -> ChildPool:
        if self._pool is None:
            self._pool = ChildPool(self.job, self.settings.parallel_children)
        return self._pool

    def _close_pool(self, terminate: bool = False) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.terminate() if terminate else pool.close()

    def run(self) -> dict[str, Any]:
        """Searches the remaining epochs, then derives (`SearchBase.run`);
        the worker processes end with it."""
        try:
            return super().run()
        finally:
            self._close_pool(terminate=True)


def _child_seed(seed: int, epoch: int, update: int, child: int) -> int:
    """The seed of the child proposed at (epoch, update, child)."""
    state = np.random.SeedSequence([seed, epoch, update, child]).generate_state(1)[0]
    return int(state) % 2**31


def _with_l2(child: ChildConfig, l2: float) -> ChildConfig:
    """`child` with the search's L2 weight."""
    return dataclasses.replace(child, l2=l2)
