"""Search strategies and their registry.

A strategy proposes architectures and learns from their rewards; the search
loop (`enas_tf.search.loop`) trains the shared weights on what it proposes
and asks it, per controller step:

    sample = strategy.sample(strategy.num_aggregate)
    rewards = [evaluate(arc) for arc in sample.arc.numpy()]
    metrics = strategy.update(sample.arc, rewards)

The protocol is `enas_tf.strategies.base.Strategy`. Every module or package
of this package (in any folder of its `__path__`) other than `base` and
`scratch` (settings shared by strategies that train from scratch) is a
strategy, named after it (the `enas-search --algorithm` value). Its top
level (the module, or the package's `__init__.py`) defines

    @dataclasses.dataclass(frozen=True)
    class Config:              # its own settings, each an enas-search flag
        population: int = dataclasses.field(default=20, metadata={"help": "..."})
        def check(self, space: str) -> None: ...   # raises UserError
    DEFAULTS = {"lm": Config(...)}    # optional: defaults per kind of search
    def build(config, space, *, seed, num_aggregate):
        ...  # -> a Strategy

`Config` may be left out (no settings). The search configs hold the chosen
strategy's `Config` as their `strategy` section (`enas_tf.configs`); the
first line of the module's docstring is its `--algorithm` help. Adding a
strategy is adding such a module or package (and its test); nothing else
names the strategies.

This module imports no TensorFlow, nor should a strategy's top level (the
tools read the settings before their slow imports): the built-in
strategies keep their TensorFlow code in a submodule that `build` imports.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import os
import pkgutil
from types import ModuleType
from typing import Any

from enas_tf.errors import UserError

_NOT_STRATEGIES = ("base", "scratch")


def _modules() -> dict[str, str]:
    """Strategy name -> its top-level source file (the module, or the
    package's `__init__.py`), for the modules and packages of this package
    (every folder of its `__path__`), without importing them."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in _NOT_STRATEGIES:
            continue
        top = os.path.join(info.name, "__init__.py") if info.ispkg else f"{info.name}.py"
        found.setdefault(info.name, os.path.join(info.module_finder.path, top))
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


@dataclasses.dataclass(frozen=True)
class NoSettings:
    """The settings of a strategy that defines no `Config`."""

    def check(self, space: str) -> None:
        del space


def _module(name: str) -> ModuleType:
    check_name(name)
    return importlib.import_module(f"{__name__}.{name}")


def config_class(name: str) -> type:
    """The settings dataclass of strategy `name` (`NoSettings` if none).

    Raises:
      UserError: for an unknown name.
    """
    return getattr(_module(name), "Config", NoSettings)


def default_config(name: str, kind: str = "image") -> Any:
    """Strategy `name`'s default settings for a `kind` of search ("image"
    or "lm"): its `DEFAULTS[kind]`, else `Config()`.

    Raises:
      UserError: for an unknown name.
    """
    defaults = getattr(_module(name), "DEFAULTS", {})
    return defaults[kind] if kind in defaults else config_class(name)()


def build(
    name: str,
    config: Any,
    space: Any,
    *,
    seed: int | None = None,
    num_aggregate: int = 1,
) -> Any:
    """The strategy `name` with settings `config` (its `Config`; None: its
    image defaults) for `space` (module docstring).

    Raises:
      UserError: for an unknown name.
    """
    module = _module(name)
    if config is None:
        config = default_config(name)
    return module.build(config, space, seed=seed, num_aggregate=num_aggregate)
