"""`SearchSpace`: the decisions of a space and the flat integer arc.

An architecture ("arc") is a flat vector of integers, one per decision, in the
order the original ENAS code writes it. Decision `i` takes values in
`[0, choices_per_decision[i])`. That is the only form in which an architecture
enters a TensorFlow graph (as an int32 tensor); the decoded dataclasses
(`MacroArch`, `MicroArch`, ...) are for Python code and people.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np

from enas_tf.errors import ArcError

Arc = tuple[int, ...]

_SEPARATORS = re.compile(r"[\s,|]+")
# Size limits far beyond any real network; they keep a mistyped size from
# building an arc layout that exhausts memory (macro arcs have L(L+1)/2 integers).
MAX_LAYERS = 1000
# DARTS's "none" op (the zero map): relaxed cells (`enas_tf.supernet.relaxed`,
# `enas_tf.lm.relaxed`) mix it into every edge so that an edge can fade
# out; no arc chooses it.
NONE_OP = "none"

MAX_NODES = 1000


@dataclasses.dataclass(frozen=True)
class SearchSpace(abc.ABC):
    """Base class of the search spaces.

    Subclasses are frozen dataclasses whose fields are the size parameters
    (number of layers, nodes, ops). They define `choices_per_decision`,
    `decision_names`, `decode`, `encode` and `render`; this class derives the
    rest (validation, exact size, sampling, string and JSON forms).
    """

    name: ClassVar[str]
    # One line on how the arc is laid out, used in length errors.
    layout: ClassVar[str]

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ArcError(
                    f"{self.name} space: {field.name} must be an integer; received: {value!r}."
                )
        self._check_sizes()

    @abc.abstractmethod
    def _check_sizes(self) -> None:
        """Raises ArcError when the size parameters are out of range."""

    # ----- decisions ---------------------------------------------------------

    @property
    @abc.abstractmethod
    def choices_per_decision(self) -> tuple[int, ...]:
        """Number of choices of each decision, in arc order."""

    @property
    @abc.abstractmethod
    def decision_names(self) -> tuple[str, ...]:
        """A name per decision (`normal/node2/input_a`), in arc order."""

    @property
    def num_decisions(self) -> int:
        """Length of an arc of this space."""
        return len(self.choices_per_decision)

    @property
    def skip_positions(self) -> tuple[int, ...]:
        """Arc positions of skip-connection bits (macro space; none here)."""
        return ()

    def config(self) -> dict[str, int]:
        """The size parameters, as keyword arguments of the constructor."""
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """A short description: `micro(num_nodes=5, num_ops=5)`."""
        args = ", ".join(f"{k}={v}" for k, v in self.config().items())
        return f"{self.name}({args})"

    @classmethod
    def config_for_length(cls, length: int) -> dict[str, int] | None:
        """The size parameters whose arcs have `length` integers, if any."""
        del length
        return None

    # ----- validation and size -----------------------------------------------

    def validate(self, arc: Iterable[Any]) -> Arc:
        """Checks an arc and returns it as a tuple of Python ints.

        Args:
          arc: a sequence of integers (list, tuple, numpy vector).

        Returns:
          The arc as a tuple of ints.

        Raises:
          ArcError: naming the position, the value and the allowed range, or
            the expected length for this space's size.
        """
        if isinstance(arc, (str, bytes)):
            raise ArcError(
                f"{self.describe()}: expected a sequence of integers, received "
                f"a string; use parse() for the text form."
            )
        if isinstance(arc, np.ndarray) and arc.ndim != 1:
            raise ArcError(
                f"{self.describe()}: expected a flat vector of integers; "
                f"received an array of shape {arc.shape}."
            )
        values = list(arc)
        if len(values) != self.num_decisions:
            raise ArcError(self._length_message(len(values)))
        result = []
        choices = self.choices_per_decision
        names = self.decision_names
        for position, value in enumerate(values):
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise ArcError(
                    f"{self.describe()}: position {position} "
                    f"({names[position]}) must be an integer; received: "
                    f"{value!r}."
                )
            if not 0 <= value < choices[position]:
                raise ArcError(
                    f"{self.describe()}: position {position} "
                    f"({names[position]}) must be in [0, "
                    f"{choices[position] - 1}]; received: {int(value)}."
                )
            result.append(int(value))
        return tuple(result)

    def _length_message(self, length: int) -> str:
        message = (
            f"{self.describe()}: expected {self.num_decisions} integers "
            f"({self.layout}); received {length}."
        )
        if length == 0:
            return message[:-1] + " (the architecture is empty)."
        fits = self.config_for_length(length)
        if fits is not None:
            args = ", ".join(f"{k}={v}" for k, v in fits.items())
            message += f" {length} integers fit a {self.name} space with {args}."
        return message

    def size(self) -> int:
        """Exact number of distinct arcs in the space, as a Python int."""
        return math.prod(self.choices_per_decision)

    def random_arc(self, seed: int | np.random.Generator | None = None) -> Arc:
        """Samples an arc uniformly at random from the space.

        Decisions are independent, so sampling each one uniformly samples the
        space uniformly.

        Args:
          seed: an int seed, a numpy Generator, or None for fresh entropy.
        """
        rng = np.random.default_rng(seed)
        return tuple(int(rng.integers(n)) for n in self.choices_per_decision)

    # ----- decoded form ------------------------------------------------------

    @abc.abstractmethod
    def decode(self, arc: Iterable[Any]) -> Any:
        """Validates an arc and returns its decoded dataclass."""

    @abc.abstractmethod
    def encode(self, arch: Any) -> Arc:
        """Returns the arc of a decoded architecture (inverse of `decode`)."""

    @abc.abstractmethod
    def render(self, arc: Iterable[Any]) -> str:
        """A readable rendering, one line per layer or node."""

    # ----- text and JSON -----------------------------------------------------

    def format(self, arc: Iterable[Any]) -> str:
        """The original string form: integers separated by single spaces."""
        return " ".join(str(v) for v in self.validate(arc))

    def parse(self, text: str) -> Arc:
        """Parses the string form and validates it.

        Integers may be separated by spaces, newlines, commas or `|` (the spec
        writes `0 2 0 0 | 0 4 0 1` for readability).

        Raises:
          ArcError: for a token that is not an integer, or an invalid arc.
        """
        tokens = [t for t in _SEPARATORS.split(text.strip()) if t]
        values = []
        for position, token in enumerate(tokens):
            if not re.fullmatch(r"[+-]?\d+", token):
                raise ArcError(
                    f"{self.describe()}: position {position} must be an "
                    f"integer; received: {token!r}."
                )
            values.append(int(token))
        return self.validate(values)

    def to_json(self, arc: Iterable[Any], **metadata: Any) -> dict[str, Any]:
        """A JSON-ready dict: space name, size parameters, arc, metadata."""
        return {
            "space": self.name,
            "config": self.config(),
            "arc": list(self.validate(arc)),
            **metadata,
        }


def check_positive(space: str, **values: int) -> None:
    """Raises ArcError unless every value is at least 1."""
    for key, value in values.items():
        if value < 1:
            raise ArcError(f"{space} space: {key} must be >= 1; received: {value}.")


def check_at_most(space: str, key: str, value: int, limit: int) -> None:
    """Raises ArcError when `value` exceeds `limit`."""
    if value > limit:
        raise ArcError(f"{space} space: {key} must be at most {limit}; received: {value}.")


def loose_ends(num_nodes: int, used: Sequence[int]) -> tuple[int, ...]:
    """Node ids in `[0, num_nodes)` that no node reads, in increasing order."""
    used_set = set(used)
    return tuple(n for n in range(num_nodes) if n not in used_set)
