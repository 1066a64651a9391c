"""Recurrent-cell spaces for language modelling: two arc formats.

`RnnSpace` is the corrected google-research `enas_lm` format
(ENAS_LM_REFERENCE sec. 1.1), the one this package searches and trains: the
base node 0 always applies tanh to `[x_t, h_{t-1}]`, and the arc is
`[p_1, f_1, ..., p_L, f_L]` (2L integers) where node k reads node p_k < k
through a highway update with activation f_k. Activation ids:
0 tanh, 1 ReLU, 2 sigmoid, 3 identity. Size: L! * 4^L (9.5e10 for the search
default L = 9; 8.0e15 for L = 12, the paper's "about 1e15").

`LegacyRnnSpace` is the older melodyguan/enas format (ENAS_REFERENCE sec. 3.1),
kept so that its published cell can be read: D nodes, the arc is
`[f_0, p_1, f_1, ..., p_{D-1}, f_{D-1}]` (2D - 1 integers), the base node's
activation is searched too, and the ids are ordered differently:
0 tanh, 1 ReLU, 2 identity, 3 sigmoid. Size: 4^D * (D-1)! (6.7e14 for
D = 12). The two formats are not interchangeable: besides the id order, the
old cell averages the loose ends while enas_lm averages all nodes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, ClassVar

from enas_tf.errors import ArcError
from enas_tf.spaces.base import (
    MAX_NODES,
    NONE_OP,
    Arc,
    SearchSpace,
    check_at_most,
    check_positive,
    loose_ends,
)

RNN_ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")
LEGACY_RNN_ACTIVATIONS = ("tanh", "relu", "identity", "sigmoid")


def rnn_edges(num_nodes: int) -> tuple[tuple[int, int], ...]:
    """The edges `(from node j, to node k)` of DARTS's relaxed recurrent
    cell: node by node (k = 1 .. L), each from j = 0 .. k-1: L(L+1)/2."""
    return tuple((j, k) for k in range(1, num_nodes + 1) for j in range(k))


def rnn_relaxed_ops(num_funcs: int, none_op: bool = True) -> tuple[str, ...]:
    """The activations a relaxed recurrent edge mixes (`RNN_ACTIVATIONS`
    order, so an arc's activation id is its index), then DARTS's "none" if
    `none_op`."""
    ops = tuple(RNN_ACTIVATIONS[:num_funcs])
    return (*ops, NONE_OP) if none_op else ops


@dataclasses.dataclass(frozen=True)
class RnnNode:
    """Node k = highway(activation, node[input])."""

    input: int
    activation: int


@dataclasses.dataclass(frozen=True)
class RnnArch:
    """A decoded enas_lm cell: searched nodes 1 .. L (node 0 is fixed tanh)."""

    nodes: tuple[RnnNode, ...]

    @property
    def loose_ends(self) -> tuple[int, ...]:
        """Nodes in 0 .. L that no node reads (node 0 never is one)."""
        return loose_ends(len(self.nodes) + 1, [n.input for n in self.nodes])


@dataclasses.dataclass(frozen=True)
class LegacyRnnArch:
    """A decoded melodyguan/enas cell: node 0's activation, then nodes 1 .. D-1."""

    base_activation: int
    nodes: tuple[RnnNode, ...]

    @property
    def loose_ends(self) -> tuple[int, ...]:
        return loose_ends(len(self.nodes) + 1, [n.input for n in self.nodes])


def _pointer_choices(num_nodes: int, num_funcs: int) -> list[int]:
    # Node k (1-based) picks its input among nodes 0 .. k-1.
    choices: list[int] = []
    for k in range(1, num_nodes + 1):
        choices.extend([k, num_funcs])
    return choices


def _pointer_names(num_nodes: int) -> list[str]:
    names: list[str] = []
    for k in range(1, num_nodes + 1):
        names.extend([f"node{k}/input", f"node{k}/activation"])
    return names


def _nodes(values: tuple[int, ...]) -> tuple[RnnNode, ...]:
    return tuple(RnnNode(values[i], values[i + 1]) for i in range(0, len(values), 2))


def _render_nodes(nodes: tuple[RnnNode, ...], names: tuple[str, ...]) -> list[str]:
    return [
        f"node{k} = highway({names[node.activation]}, node{node.input})"
        for k, node in enumerate(nodes, start=1)
    ]


@dataclasses.dataclass(frozen=True)
class RnnSpace(SearchSpace):
    """enas_lm recurrent cell space.

    Attributes:
      num_nodes: L, the searched nodes (9 in the enas_lm search, 8 in its
        published cell).
      num_funcs: how many of `RNN_ACTIVATIONS` the arc may use (4).
    """

    num_nodes: int = 9
    num_funcs: int = 4

    name: ClassVar[str] = "rnn"
    layout: ClassVar[str] = "(input, activation) for each searched node 1 .. L"

    def _check_sizes(self) -> None:
        check_positive(self.name, num_nodes=self.num_nodes, num_funcs=self.num_funcs)
        check_at_most(self.name, "num_funcs", self.num_funcs, len(RNN_ACTIVATIONS))
        check_at_most(self.name, "num_nodes", self.num_nodes, MAX_NODES)

    @property
    def activations(self) -> tuple[str, ...]:
        return RNN_ACTIVATIONS[: self.num_funcs]

    @property
    def choices_per_decision(self) -> tuple[int, ...]:
        return tuple(_pointer_choices(self.num_nodes, self.num_funcs))

    @property
    def decision_names(self) -> tuple[str, ...]:
        return tuple(_pointer_names(self.num_nodes))

    @classmethod
    def config_for_length(cls, length: int) -> dict[str, int] | None:
        if length > 0 and length % 2 == 0:
            return {"num_nodes": length // 2}
        return None

    def decode(self, arc: Iterable[Any]) -> RnnArch:
        return RnnArch(_nodes(self.validate(arc)))

    def encode(self, arch: RnnArch) -> Arc:
        if len(arch.nodes) != self.num_nodes:
            raise ArcError(
                f"{self.describe()}: expected {self.num_nodes} nodes; received {len(arch.nodes)}."
            )
        return self.validate([v for n in arch.nodes for v in (n.input, n.activation)])

    def render(self, arc: Iterable[Any]) -> str:
        arch = self.decode(arc)
        lines = ["node0 = highway(tanh, [x_t, h_{t-1}])"]
        lines += _render_nodes(arch.nodes, RNN_ACTIVATIONS)
        ends = ", ".join(f"node{i}" for i in arch.loose_ends)
        lines.append(f"output = mean(node1 .. node{self.num_nodes}); loose ends: {ends}")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class LegacyRnnSpace(SearchSpace):
    """melodyguan/enas recurrent cell format (read-only use: published cells).

    Attributes:
      num_nodes: D, nodes in the cell including the base node (12).
      num_funcs: how many of `LEGACY_RNN_ACTIVATIONS` the arc may use. The
        cell supports 4; the original controller only ever emitted 2 (spec
        sec. 10, bug 10).
    """

    num_nodes: int = 12
    num_funcs: int = 4

    name: ClassVar[str] = "rnn_legacy"
    layout: ClassVar[str] = "node 0's activation, then (input, activation) for nodes 1 .. D-1"

    def _check_sizes(self) -> None:
        check_positive(self.name, num_nodes=self.num_nodes, num_funcs=self.num_funcs)
        check_at_most(self.name, "num_funcs", self.num_funcs, len(LEGACY_RNN_ACTIVATIONS))
        check_at_most(self.name, "num_nodes", self.num_nodes, MAX_NODES)

    @property
    def activations(self) -> tuple[str, ...]:
        return LEGACY_RNN_ACTIVATIONS[: self.num_funcs]

    @property
    def choices_per_decision(self) -> tuple[int, ...]:
        return (self.num_funcs, *_pointer_choices(self.num_nodes - 1, self.num_funcs))

    @property
    def decision_names(self) -> tuple[str, ...]:
        return ("node0/activation", *_pointer_names(self.num_nodes - 1))

    @classmethod
    def config_for_length(cls, length: int) -> dict[str, int] | None:
        if length > 0 and length % 2 == 1:
            return {"num_nodes": (length + 1) // 2}
        return None

    def decode(self, arc: Iterable[Any]) -> LegacyRnnArch:
        values = self.validate(arc)
        return LegacyRnnArch(values[0], _nodes(values[1:]))

    def encode(self, arch: LegacyRnnArch) -> Arc:
        if len(arch.nodes) != self.num_nodes - 1:
            raise ArcError(
                f"{self.describe()}: expected {self.num_nodes - 1} nodes after "
                f"node 0; received {len(arch.nodes)}."
            )
        values = [arch.base_activation]
        values += [v for n in arch.nodes for v in (n.input, n.activation)]
        return self.validate(values)

    def render(self, arc: Iterable[Any]) -> str:
        arch = self.decode(arc)
        base = LEGACY_RNN_ACTIVATIONS[arch.base_activation]
        lines = [f"node0 = highway({base}, [x_t, h_{{t-1}}])"]
        lines += _render_nodes(arch.nodes, LEGACY_RNN_ACTIVATIONS)
        ends = ", ".join(f"node{i}" for i in arch.loose_ends)
        lines.append(f"output = mean({ends})  (the loose ends)")
        return "\n".join(lines)
