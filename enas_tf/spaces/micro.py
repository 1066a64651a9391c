"""The ENAS micro (cell) space: a normal cell and a reduction cell.

A cell has two input nodes (0 = the cell two positions back, 1 = the previous
cell) and B computed nodes numbered 2 .. B+1. Computed node n reads two earlier
nodes and applies one op to each: node_n = op_a(node[input_a]) +
op_b(node[input_b]). Arc layout (ENAS_REFERENCE sec. 2.1 and 7): the normal
cell's `(input_a, op_a, input_b, op_b)` for each node, then the reduction
cell's, 8B integers in all (40 for B = 5).

Size of one cell: prod over n = 2 .. B+1 of (5n)^2; for B = 5 that is about
5.1e12, and the pair of cells about 2.6e25. The paper quotes 1.3e11 per cell
for "B = 7" (counting the two input nodes): its formula (5 * (B-2)!)^4 is a
rough approximation that undercounts the ordered choices counted here.
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

MICRO_OPS = (
    "sep_conv_3x3",
    "sep_conv_5x5",
    "avg_pool_3x3",
    "max_pool_3x3",
    "identity",
)

CELL_TYPES = ("normal", "reduce")


def reduction_positions(num_layers: int) -> tuple[int, int]:
    """Cell positions of the two reduction cells: (L//3, 2*(L//3) + 1)."""
    third = num_layers // 3
    return third, 2 * third + 1


def cell_edges(num_nodes: int) -> tuple[tuple[int, int], ...]:
    """The edges `(from node j, to node n)` of a fully connected cell of
    `num_nodes` computed nodes (DARTS's relaxed cell), node by node
    (n = 2 .. B+1), each from j = 0 .. n-1: B(B+3)/2 edges."""
    return tuple((j, n) for n in range(2, num_nodes + 2) for j in range(n))


def relaxed_ops(ops: tuple[str, ...], none_op: bool = True) -> tuple[str, ...]:
    """The ops a relaxed (DARTS) edge mixes: `ops` (a space's), then
    `NONE_OP` if `none_op`; an arc's op index is the same in both."""
    return (*ops, NONE_OP) if none_op else tuple(ops)


@dataclasses.dataclass(frozen=True)
class MicroNode:
    """A computed node: `op_a(node[input_a]) + op_b(node[input_b])`."""

    input_a: int
    op_a: int
    input_b: int
    op_b: int


@dataclasses.dataclass(frozen=True)
class MicroCell:
    """A cell: the computed nodes 2 .. B+1 in order."""

    nodes: tuple[MicroNode, ...]

    @property
    def loose_ends(self) -> tuple[int, ...]:
        """Nodes (inputs included) that no computed node reads.

        Their concatenation is the cell's output.
        """
        used = [i for node in self.nodes for i in (node.input_a, node.input_b)]
        return loose_ends(len(self.nodes) + 2, used)


@dataclasses.dataclass(frozen=True)
class MicroArch:
    """A decoded micro architecture."""

    normal: MicroCell
    reduce: MicroCell


@dataclasses.dataclass(frozen=True)
class MicroSpace(SearchSpace):
    """Micro CNN space (ENAS sec. 2.3).

    Attributes:
      num_nodes: B, computed nodes per cell (`child_num_cells`, 5).
      num_ops: how many of `MICRO_OPS` the arc may use (5).
    """

    num_nodes: int = 5
    num_ops: int = 5

    name: ClassVar[str] = "micro"
    layout: ClassVar[str] = (
        "normal cell then reduction cell, (input_a, op_a, input_b, op_b) per node"
    )

    def _check_sizes(self) -> None:
        check_positive(self.name, num_nodes=self.num_nodes, num_ops=self.num_ops)
        check_at_most(self.name, "num_ops", self.num_ops, len(MICRO_OPS))
        check_at_most(self.name, "num_nodes", self.num_nodes, MAX_NODES)

    @property
    def ops(self) -> tuple[str, ...]:
        return MICRO_OPS[: self.num_ops]

    @property
    def choices_per_decision(self) -> tuple[int, ...]:
        per_cell: list[int] = []
        for node in range(2, self.num_nodes + 2):
            per_cell.extend([node, self.num_ops, node, self.num_ops])
        return tuple(per_cell * 2)

    @property
    def decision_names(self) -> tuple[str, ...]:
        names = []
        for cell in CELL_TYPES:
            for node in range(2, self.num_nodes + 2):
                for slot in ("input_a", "op_a", "input_b", "op_b"):
                    names.append(f"{cell}/node{node}/{slot}")
        return tuple(names)

    @classmethod
    def config_for_length(cls, length: int) -> dict[str, int] | None:
        if length > 0 and length % 8 == 0:
            return {"num_nodes": length // 8}
        return None

    def decode(self, arc: Iterable[Any]) -> MicroArch:
        values = self.validate(arc)
        cells = []
        for c in range(2):
            offset = 4 * self.num_nodes * c
            nodes = tuple(
                MicroNode(*values[offset + 4 * i : offset + 4 * i + 4])
                for i in range(self.num_nodes)
            )
            cells.append(MicroCell(nodes))
        return MicroArch(normal=cells[0], reduce=cells[1])

    def encode(self, arch: MicroArch) -> Arc:
        values: list[int] = []
        for cell in (arch.normal, arch.reduce):
            if len(cell.nodes) != self.num_nodes:
                raise ArcError(
                    f"{self.describe()}: expected {self.num_nodes} nodes per "
                    f"cell; received {len(cell.nodes)}."
                )
            for node in cell.nodes:
                values.extend([node.input_a, node.op_a, node.input_b, node.op_b])
        return self.validate(values)

    def render(self, arc: Iterable[Any]) -> str:
        arch = self.decode(arc)
        lines = []
        for title, cell in (("normal cell", arch.normal), ("reduction cell", arch.reduce)):
            lines.append(f"{title}:")
            for n, node in enumerate(cell.nodes, start=2):
                lines.append(
                    f"  node{n} = {MICRO_OPS[node.op_a]}(node{node.input_a})"
                    f" + {MICRO_OPS[node.op_b]}(node{node.input_b})"
                )
            ends = ", ".join(f"node{i}" for i in cell.loose_ends)
            lines.append(f"  output = concat({ends})")
        return "\n".join(lines)
