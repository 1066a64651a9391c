"""A Keras-style entry point: search your images, inspect, build, train.

    import enas_tf
    search = enas_tf.ArchitectureSearch(
        space="micro", directory="runs/mine", num_nodes=3, num_layers=3, out_filters=8
    )
    search.search(x_train, y_train, test_data=(x_test, y_test), epochs=10)
    search.results_summary()             # the derived candidates, best first
    arc = search.best_architecture()     # "0 2 0 0 ..."
    model = search.build_model()         # a compiled keras.Model, fresh weights
    model, summary = search.train_best(epochs=20)   # trained from scratch

`ArchitectureSearch` wraps what the tools do (`enas_tf.search.image.Search`,
`enas_tf.train.image.train_child`) for data held in Python: numpy arrays or
`tf.data` datasets of (image, label) pairs (`enas_tf.data.from_arrays`).
Settings are the `enas-search` flags' names (`SearchConfig.from_flat`), e.g.
`controller_steps=10` or `algorithm="random"`; `train_best` takes the
`enas-train` settings (`ChildConfig` and `TrainConfig` fields). The search
runs in `directory/search` and resumes there; final training in
`directory/train`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import keras

from enas_tf.configs.image import ChildConfig, SearchConfig, TrainConfig
from enas_tf.data.images import ImageSplits, from_arrays
from enas_tf.errors import UserError
from enas_tf.search.image import make_search
from enas_tf.train.image import compile_child, train_child


class ArchitectureSearch:
    """An ENAS (or other strategy's) search over your images (module docstring).

    Args:
      space: "micro" (cells) or "macro" (whole networks).
      directory: where the search (`search/`) and final training (`train/`)
        run directories go; an earlier search there resumes.
      algorithm: the search strategy (`enas_tf.strategies`).
      overwrite: replace an incompatible earlier run in `directory`.
      **settings: more search settings by their flag names (`num_nodes`,
        `out_filters`, `controller_steps`, `batch_size`, ...).

    Raises:
      UserError: for unknown or out-of-range settings.
    """

    def __init__(
        self,
        space: str = "micro",
        directory: str = "enas_search",
        algorithm: str = "reinforce",
        overwrite: bool = False,
        **settings: Any,
    ) -> None:
        self.directory = directory
        self.overwrite = overwrite
        self._settings = {"space": space, "algorithm": algorithm, **settings}
        self.config = self._config(self._settings)
        self.splits: ImageSplits | None = None
        self.result: dict[str, Any] | None = None

    @staticmethod
    def _config(values: dict[str, Any]) -> SearchConfig:
        try:
            config = SearchConfig.from_flat(values)
        except TypeError as e:
            raise UserError(f"{e} See `enas-search --help` for the settings.") from None
        config.check()
        return config

    @property
    def search_dir(self) -> str:
        return os.path.join(self.directory, "search")

    def search(
        self,
        x: Any,
        y: Any = None,
        validation_data: Any = None,
        test_data: Any = None,
        epochs: int | None = None,
        verbose: int = 1,
        callbacks: Sequence[keras.callbacks.Callback] = (),
    ) -> dict[str, Any]:
        """Searches: trains the shared weights and the strategy for `epochs`
        epochs, then derives the best architecture.

        Args:
          x, y: training images and labels (numpy); or `x` a `tf.data`
            dataset of (image, label) pairs and `y` None.
          validation_data: (images, labels) or a dataset scoring the
            architectures; None: a tenth of `x`.
          test_data: (images, labels) or a dataset for final training's test
            accuracy; None: every fifth image of each class of `x`.
          epochs: search epochs (default: the `epochs` setting, 150).
          verbose: 1 for progress bars, 0 for none.
          callbacks: Keras callbacks: `on_epoch_end(epoch, logs)` gets each
            search epoch's metrics, `on_train_end(logs)` the best.

        Returns:
          The derived best: `best_arc`, its validation score, `candidates`.
        """
        train = x if y is None else (x, y)
        self.splits = from_arrays(train, test=test_data, valid=validation_data, name="arrays")
        if epochs is not None:
            self._settings["epochs"] = epochs
            self.config = self._config(self._settings)
        search = make_search(
            self.config,
            self.splits,
            self.search_dir,
            overwrite=self.overwrite,
            verbose=verbose,
            data={
                "dataset": self.splits.name,
                "valid_size": len(self.splits.valid_images),
                "image_shape": list(self.splits.image_shape),
                "num_classes": self.splits.num_classes,
            },
        )
        search.callbacks.extend(callbacks)
        self.result = search.run()
        return self.result

    def _candidates(self) -> dict[str, Any]:
        path = os.path.join(self.search_dir, "candidates.json")
        if not os.path.isfile(path):
            raise UserError(f"No search has finished in {self.search_dir}; call search() first.")
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def best_architecture(self) -> str:
        """The derived best architecture (an arc string of the space)."""
        return self._candidates()["candidates"][0]["arc"]

    def results_summary(self, num_candidates: int = 10, print_fn=print) -> list[dict[str, Any]]:
        """Prints (and returns) the best derived candidates with their
        shared-weight validation scores, best first."""
        candidates = self._candidates()["candidates"][:num_candidates]
        space = self.config.search_space()
        print_fn(f"Results in {self.search_dir} ({space.describe()}):")
        for rank, candidate in enumerate(candidates, 1):
            score = next(v for k, v in candidate.items() if k != "arc")
            print_fn(f"{rank:3d}  {score:.4f}  {candidate['arc']}")
        return candidates

    def _child(self, settings: dict[str, Any]) -> ChildConfig:
        """The child of the search's sizes (out_filters, layers) unless
        `settings` says otherwise."""
        base = {
            "out_filters": self.config.supernet.out_filters,
            "num_layers": self.config.space.num_layers,
            "keep_prob": self.config.supernet.keep_prob,
        }
        fields = {f.name for f in dataclasses.fields(ChildConfig)}
        child = ChildConfig(**{**base, **{k: v for k, v in settings.items() if k in fields}})
        child.check(self.config.search_space())
        return child

    def build_model(self, arc: str | None = None, **settings: Any) -> keras.Model:
        """The child network of `arc` (default: the best), compiled with the
        ENAS recipe (SGD with Nesterov momentum and cosine restarts), fresh
        weights; `settings`: `ChildConfig` and `TrainConfig` fields."""
        if self.splits is None:
            raise UserError("build_model needs the data's shape: call search() first.")
        space = self.config.search_space()
        arc_values = space.parse(arc or self.best_architecture())
        child = self._child(settings)
        train = self._train_config({**settings, "epochs": settings.get("epochs", 1)})
        from enas_tf.child.build import build_child  # pylint: disable=import-outside-toplevel

        model = build_child(
            space,
            arc_values,
            child,
            image_shape=self.splits.image_shape,
            num_classes=self.splits.num_classes,
        )
        steps = -(-len(self.splits.train_images) // train.batch_size)
        compile_child(model, child, train, self.splits.num_classes, steps, len(model.outputs) == 2)
        return model

    def _train_config(self, settings: dict[str, Any]) -> TrainConfig:
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = set(settings) - fields - {f.name for f in dataclasses.fields(ChildConfig)}
        if unknown:
            raise UserError(
                f"Unknown training settings {', '.join(sorted(unknown))}; see `enas-train --help`."
            )
        train = TrainConfig(**{k: v for k, v in settings.items() if k in fields})
        train.check()
        return train

    def train_best(
        self, arc: str | None = None, verbose: int = 1, **settings: Any
    ) -> tuple[keras.Model, dict[str, Any]]:
        """Trains `arc` (default: the best) from scratch on the search's data
        in `directory/train` (resumed there), with the ENAS recipe.

        Args:
          arc: an arc string of the space, or None for the best.
          verbose: Keras verbosity.
          **settings: `TrainConfig` fields (epochs, batch_size, lr_max, ...)
            and `ChildConfig` fields (out_filters, num_layers, aux_weight...).

        Returns:
          The trained inference network (compiled: `evaluate` reports the
          loss and accuracy) and the run's summary (test accuracy...).
        """
        if self.splits is None:
            raise UserError("train_best needs the data: call search() first.")
        space = self.config.search_space()
        arc_values = space.parse(arc or self.best_architecture())
        child = self._child(settings)
        train = self._train_config(settings)
        out = os.path.join(self.directory, "train")
        summary = train_child(
            space, arc_values, child, train, self.splits, out, verbose=verbose,
            overwrite=self.overwrite,
        )  # fmt: skip
        model = keras.models.load_model(os.path.join(out, "model.keras"))
        model.compile(
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return model, summary


__all__ = ["ArchitectureSearch"]
