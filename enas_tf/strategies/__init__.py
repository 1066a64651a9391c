"""Search strategies and their registry.

A strategy proposes architectures and learns from their rewards; the search
loop (`enas_tf.search.loop`) trains the shared weights on what it proposes
and asks it, per controller step:

    sample = strategy.sample(strategy.num_aggregate)
    rewards = [evaluate(arc) for arc in sample.arc.numpy()]
    metrics = strategy.update(sample.arc, rewards)

The protocol is `enas_tf.strategies.base.Strategy`. Every module of this
package (in any folder of its `__path__`) other than `base` is a strategy,
named after its module (the `enas-search --algorithm` value), and defines

    def build(config, space, *, controller_kwargs, trainer_kwargs):
        ...  # -> a Strategy

with `config` the search settings (`SearchConfig` or `LmSearchConfig`),
`space` the searched `SearchSpace`, `controller_kwargs` the space's
controller logit shaping and `trainer_kwargs` the search's settings for a
controller trainer (e.g. the skip-penalty weight, Adam's constants).
Adding a strategy is adding such a module (and its test); nothing else
names the strategies.

This module imports no TensorFlow: tools list and check the names before
their slow imports; `build` imports the strategy's module.
"""

from __future__ import annotations

import ast
import importlib
import os
import pkgutil
from typing import Any

from enas_tf.errors import UserError

_NOT_STRATEGIES = ("base",)


def _modules() -> dict[str, str]:
    """Strategy name -> its source file, for the modules of this package
    (every folder of its `__path__`), without importing them."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if not info.ispkg and info.name not in _NOT_STRATEGIES:
            found.setdefault(info.name, os.path.join(info.module_finder.path, f"{info.name}.py"))
    return found


def names() -> tuple[str, ...]:
    """The registered strategies' names, sorted."""
    return tuple(sorted(_modules()))


def describe() -> dict[str, str]:
    """Name -> the first line of the strategy module's docstring (read from
    the source, without importing the module)."""
    lines = {}
    for name, path in sorted(_modules().items()):
        with open(path, encoding="utf-8") as f:
            doc = (ast.get_docstring(ast.parse(f.read())) or "").strip()
        lines[name] = doc.splitlines()[0].rstrip(".") if doc else name
    return lines


def check_name(name: str) -> None:
    """Raises `UserError` unless `name` is a registered strategy."""
    if name not in names():
        raise UserError(f"algorithm must be one of {', '.join(names())}; received {name!r}.")


def build(
    name: str,
    config: Any,
    space: Any,
    *,
    controller_kwargs: dict[str, Any] | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
) -> Any:
    """The strategy `name` for `config` and `space` (module docstring).

    Raises:
      UserError: for an unknown name.
    """
    check_name(name)
    module = importlib.import_module(f"{__name__}.{name}")
    return module.build(
        config,
        space,
        controller_kwargs=dict(controller_kwargs or {}),
        trainer_kwargs=dict(trainer_kwargs or {}),
    )
