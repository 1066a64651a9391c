"""Search spaces, architecture encodings and published architectures.

Four spaces, by name:

| name         | arc layout                                   | default size |
|--------------|----------------------------------------------|--------------|
| `macro`      | per layer: op, then one skip bit per earlier | L = 12       |
| `micro`      | normal then reduction cell, 4 ints per node  | B = 5        |
| `rnn`        | enas_lm cell: (input, activation) per node   | L = 9        |
| `rnn_legacy` | old cell: f_0, then (input, activation)      | D = 12       |
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from enas_tf.errors import ArcError
from enas_tf.spaces import archive
from enas_tf.spaces.base import Arc, SearchSpace
from enas_tf.spaces.macro import MACRO_OPS, MacroArch, MacroLayer, MacroSpace
from enas_tf.spaces.micro import MICRO_OPS, MicroArch, MicroCell, MicroNode, MicroSpace
from enas_tf.spaces.rnn import (
    LEGACY_RNN_ACTIVATIONS,
    RNN_ACTIVATIONS,
    LegacyRnnArch,
    LegacyRnnSpace,
    RnnArch,
    RnnNode,
    RnnSpace,
)

SPACES: dict[str, type[SearchSpace]] = {
    cls.name: cls for cls in (MacroSpace, MicroSpace, RnnSpace, LegacyRnnSpace)
}


def get_space(name: str, **config: int) -> SearchSpace:
    """Builds the space `name` with the given size parameters.

    Raises:
      ArcError: for an unknown space or size parameter.
    """
    if name not in SPACES:
        raise ArcError(f"Unknown search space {name!r}; choose one of: {', '.join(SPACES)}.")
    cls = SPACES[name]
    fields = set(cls.__dataclass_fields__)
    unknown = sorted(set(config) - fields)
    if unknown:
        raise ArcError(
            f"The {name} space has no size parameter {', '.join(unknown)}; "
            f"its parameters are: {', '.join(sorted(fields))}."
        )
    return cls(**config)


def from_json(data: dict[str, Any] | str) -> tuple[SearchSpace, Arc]:
    """Reads `{"space": ..., "config": {...}, "arc": [...]}` (or its text).

    Other keys (scores, run metadata) are ignored.

    Returns:
      The space and the validated arc.

    Raises:
      ArcError: when the JSON is malformed or the arc does not fit the space.
    """
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as e:
            raise ArcError(f"Architecture JSON is not valid JSON: {e}.") from None
    if not isinstance(data, dict) or "space" not in data or "arc" not in data:
        raise ArcError(
            'Architecture JSON must be an object with "space", "config" and '
            '"arc" keys, as written by SearchSpace.to_json or enas-arc.'
        )
    config = data.get("config", {})
    if not isinstance(config, dict):
        raise ArcError('Architecture JSON: "config" must be an object.')
    space = get_space(data["space"], **config)
    arc = data["arc"]
    if isinstance(arc, str):
        return space, space.parse(arc)
    if not isinstance(arc, list):
        raise ArcError(
            f'Architecture JSON: "arc" must be a list of integers; received {type(arc).__name__}.'
        )
    return space, space.validate(arc)


def json_text(space: SearchSpace, arc: Arc, **metadata: Any) -> str:
    """The JSON form as text, with each integer list kept on one line."""
    text = json.dumps(space.to_json(arc, **metadata), indent=2)
    return re.sub(r"\[[-\d,\s]*\]", lambda m: json.dumps(json.loads(m.group(0))), text) + "\n"


def load_arc(value: str, space: SearchSpace | None = None) -> tuple[SearchSpace, Arc]:
    """Reads an architecture given as a string, a published name or a file.

    Args:
      value: an arc string (`"0 2 0 0 ..."`), the name of a published
        architecture (`enas_micro_final`), or the path of a file holding
        either an arc string or the JSON form.
      space: the space a plain arc string belongs to. Required for strings;
        for JSON and published names it is checked against theirs.

    Returns:
      (space, arc). The arc is validated.

    Raises:
      ArcError: naming what is wrong and how to give the architecture.
    """
    text, origin = value, "the architecture string"
    if value in archive.PUBLISHED:
        entry = archive.get(value)
        found = get_space(entry.space, **entry.config)
        return _check_same_space(found, found.parse(entry.arc), space, value)
    if os.path.isfile(value):
        origin = f"file {value}"
        try:
            with open(value, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise ArcError(f"Cannot read architecture file {value}: {e}.") from None
    if text.lstrip().startswith("{"):
        found, arc = from_json(text)
        return _check_same_space(found, arc, space, origin)
    if space is None:
        raise ArcError(
            f"Cannot tell which space {origin} belongs to: give the space "
            f"(e.g. --space=micro --num_nodes=5) or use the JSON form."
        )
    if not text.strip():
        raise ArcError(f"{origin} is empty; expected {space.num_decisions} integers.")
    return space, space.parse(text)


def resolve_arc(value: str, space_name: str | None = None, **sizes: int) -> tuple[SearchSpace, Arc]:
    """Reads an architecture the way the tools accept it.

    Like `load_arc`, but for a plain string the space is named by
    `space_name` and its size, unless given in `sizes`, is taken from the
    string's length (each space's length determines its layers or nodes).
    For JSON and published names, `space_name` and `sizes`, when given, must
    match theirs.

    Raises:
      ArcError: naming what is wrong and how to give the architecture.
    """
    if space_name is not None and space_name not in SPACES:
        get_space(space_name)  # raises the unknown-space error
    origin = "The architecture string"
    if value not in archive.PUBLISHED and os.path.isfile(value):
        origin = f"Architecture file {value}"
        try:
            with open(value, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise ArcError(f"Cannot read architecture file {value}: {e}.") from None
        if space_name is not None and not text.lstrip().startswith("{"):
            value = text  # a plain string in a file: sized from its length too
    is_json = value.lstrip().startswith("{")
    if value in archive.PUBLISHED or os.path.isfile(value) or is_json:
        expected = get_space(space_name, **sizes) if space_name and sizes else None
        space, arc = load_arc(value, expected)
        if space_name and space.name != space_name:
            raise ArcError(
                f"The architecture is for the {space.name} space, not the "
                f"{space_name} space that was asked for (--space)."
            )
        return space, arc
    tokens = [t for t in re.split(r"[\s,|]+", value.strip()) if t]
    if not tokens:
        raise ArcError(f"{origin} is empty; give the architecture's integers.")
    if len(tokens) == 1 and not re.fullmatch(r"[+-]?\d+", tokens[0]):
        if os.path.isdir(value):
            raise ArcError(
                f"Architecture {value!r} is a directory; give the file inside "
                f"it (e.g. {os.path.join(value, 'best_arc.json')})."
            )
        raise ArcError(
            f"Architecture {value!r} is not an existing file, a published "
            f"name (enas-arc list: {', '.join(archive.PUBLISHED)}) or a string "
            f"of integers; check the path or the name."
        )
    if space_name is None:
        raise ArcError(
            "A plain architecture string needs its space (--space=macro, micro, "
            "rnn or rnn_legacy in the tools); JSON files and published names "
            "carry their own."
        )
    config = dict(sizes)
    cls = SPACES[space_name]
    if not {"num_layers", "num_nodes"} & set(config):
        config.update(cls.config_for_length(len(tokens)) or {})
    space = get_space(space_name, **config)
    return space, space.parse(value)


def _check_same_space(
    found: SearchSpace, arc: Arc, expected: SearchSpace | None, origin: str
) -> tuple[SearchSpace, Arc]:
    if expected is not None and found != expected:
        raise ArcError(
            f"{origin} is an architecture of {found.describe()}, but "
            f"{expected.describe()} was asked for."
        )
    return found, arc


__all__ = [
    "Arc",
    "ArcError",
    "LEGACY_RNN_ACTIVATIONS",
    "LegacyRnnArch",
    "LegacyRnnSpace",
    "MACRO_OPS",
    "MICRO_OPS",
    "MacroArch",
    "MacroLayer",
    "MacroSpace",
    "MicroArch",
    "MicroCell",
    "MicroNode",
    "MicroSpace",
    "RNN_ACTIVATIONS",
    "RnnArch",
    "RnnNode",
    "RnnSpace",
    "SPACES",
    "SearchSpace",
    "archive",
    "from_json",
    "get_space",
    "json_text",
    "load_arc",
    "resolve_arc",
]
