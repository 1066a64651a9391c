"""Search configs made of sections, addressed by flat names (no TensorFlow).

A search config (`configs.image.SearchConfig`, `configs.lm.LmSearchConfig`)
is a frozen dataclass holding sections, each a frozen dataclass: the space,
the supernet, the optimiser of the shared weights, and `strategy`, the chosen
algorithm's own settings (its `Config`, `enas_tf.strategies`); the loop's
settings sit at the top. Every leaf has a flat name, unique in the tree: its
field name, or the name its section's `FLAT_NAMES` gives it (the space's
`name` is `space`). Flags and flag files set leaves by flat name, and so can
Python:

    config = SearchConfig.from_flat(space="macro", num_layers=12, controller_lr=1e-3)
    config.space.num_layers, config.strategy.controller_lr   # 12, 0.001
    config.replace(epochs=2).flat()["epochs"]                # 2

config.json records the nested form (`to_json`); `from_json` reads it back,
and also the flat form that runs recorded before configs nested
(`upgrade_flat`), so older run directories resume.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from enas_tf import strategies

# Flat names older run directories used, old -> new.
RENAMED = {"controller": "algorithm"}


def _flat_names(section: type) -> dict[str, str]:
    """Field name -> flat name for the fields of a section class."""
    names = getattr(section, "FLAT_NAMES", {})
    return {f.name: names.get(f.name, f.name) for f in dataclasses.fields(section)}


def _strategy_leaves() -> dict[str, set[str]]:
    """Algorithm -> the flat names of its settings, for every strategy."""
    return {name: set(_flat_names(strategies.config_class(name))) for name in strategies.names()}


class Nested:
    """What a search config made of sections shares (module docstring).

    A subclass is a frozen dataclass with a `KIND` ("image" or "lm", the
    strategies' defaults it takes), fields `algorithm` and `strategy`
    (None: the algorithm's defaults), section fields (a dataclass
    `default_factory`) and plain fields.
    """

    KIND: ClassVar[str] = "image"

    def __post_init__(self) -> None:
        if self.strategy is None and self.algorithm in strategies.names():
            default = strategies.default_config(self.algorithm, self.KIND)
            object.__setattr__(self, "strategy", default)

    @classmethod
    def _sections(cls) -> dict[str, type | None]:
        """Section field -> its class (None for `strategy`, whose class
        depends on the algorithm)."""
        found = {}
        for f in dataclasses.fields(cls):
            if f.name == "strategy":
                found[f.name] = None
            elif f.default_factory is not dataclasses.MISSING:
                found[f.name] = f.default_factory
        return found

    def paths(self) -> dict[str, tuple[str, ...]]:
        """Flat name -> the field path of every leaf (e.g. "controller_lr"
        -> ("strategy", "controller_lr"))."""
        sections = self._sections()
        paths = {}
        for f in dataclasses.fields(self):
            if f.name not in sections:
                paths[f.name] = (f.name,)
                continue
            value = getattr(self, f.name)
            if value is not None:
                for field, flat in _flat_names(type(value)).items():
                    paths[flat] = (f.name, field)
        return paths

    def flat(self) -> dict[str, Any]:
        """Every leaf's value by flat name."""
        values = {}
        for flat, path in self.paths().items():
            value = self
            for name in path:
                value = getattr(value, name)
            values[flat] = value
        return values

    @classmethod
    def from_flat(cls, values: Mapping[str, Any] | None = None, /, **more: Any) -> Any:
        """The config with the given leaves (flat names) and defaults for the
        others; the strategy's defaults are those of the algorithm given.

        Raises:
          UserError: for an unknown algorithm.
          TypeError: for a name that is no leaf of this config.
        """
        values = {**(values or {}), **more}
        algorithm = values.get("algorithm", cls.__dataclass_fields__["algorithm"].default)
        kwargs = {}
        for name, section in cls._sections().items():
            if section is None:
                section = strategies.config_class(algorithm)
                base = strategies.default_config(algorithm, cls.KIND)
            else:
                base = section()
            changes = {
                field: values.pop(flat)
                for field, flat in _flat_names(section).items()
                if flat in values
            }
            kwargs[name] = dataclasses.replace(base, **changes)
        for f in dataclasses.fields(cls):
            if f.name not in kwargs and f.name in values:
                kwargs[f.name] = values.pop(f.name)
        if values:
            raise TypeError(
                f"{cls.__name__} with algorithm {algorithm!r} has no setting "
                f"{', '.join(sorted(values))}."
            )
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Any:
        """A copy with the given leaves (flat names) changed. A new
        `algorithm` starts from its strategy's defaults."""
        values = self.flat()
        if changes.get("algorithm", self.algorithm) != self.algorithm:
            for name in _flat_names(type(self.strategy)).values():
                del values[name]
        return self.from_flat({**values, **changes})

    def to_json(self) -> dict[str, Any]:
        """The nested form recorded in config.json."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, ignore_unknown: bool = False) -> Any:
        """The config recorded as `data`: the nested form of `to_json`, or
        the flat form of runs written before configs nested. With
        `ignore_unknown`, settings this config does not have are left out
        (a run written by an older or newer version).

        Raises:
          UserError: for an unknown algorithm.
          TypeError: for settings this config does not have.
        """
        sections = cls._sections()
        values = {}
        for key, value in data.items():
            if key in sections and isinstance(value, Mapping):
                section = sections[key]
                names = _flat_names(section) if section else {}
                values.update({names.get(k, k): v for k, v in value.items()})
            else:
                values[RENAMED.get(key, key)] = value
        algorithm = values.get("algorithm", cls.__dataclass_fields__["algorithm"].default)
        # Flat runs recorded every strategy's settings, whatever the algorithm.
        for name, leaves in _strategy_leaves().items():
            if name != algorithm:
                for leaf in leaves - set(_flat_names(strategies.config_class(algorithm))):
                    values.pop(leaf, None)
        if ignore_unknown:
            known = cls.from_flat(algorithm=algorithm).flat()
            values = {k: v for k, v in values.items() if k in known}
        return cls.from_flat(values)

    def upgrade_flat(self, recorded: Mapping[str, Any]) -> dict[str, Any]:
        """A flat config.json section (runs written before configs nested) in
        this config's nested form, for comparing with `to_json()` on resume.

        Old names are renamed; settings of strategies other than the
        recorded one are dropped (flat runs recorded them all); this
        strategy's settings the old form did not have take this config's
        values (they did not exist then); anything else not a leaf here
        stays at the top, to show as a difference.
        """
        values = {RENAMED.get(k, k): v for k, v in recorded.items()}
        algorithm = values.get("algorithm")
        own = set(_flat_names(type(self.strategy))) if self.strategy is not None else set()
        for name, leaves in _strategy_leaves().items():
            if name != algorithm:
                for leaf in leaves - own:
                    values.pop(leaf, None)
        current = self.flat()
        if algorithm == self.algorithm:
            for leaf in own:
                values.setdefault(leaf, current[leaf])
        nested: dict[str, Any] = {}
        paths = self.paths()
        for flat, value in values.items():
            path = paths.get(flat, (flat,))
            if len(path) == 1:
                nested[path[0]] = value
            else:
                nested.setdefault(path[0], {})[path[1]] = value
        return nested


__all__ = ["RENAMED", "Nested"]
