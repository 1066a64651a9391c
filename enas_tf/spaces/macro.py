"""The ENAS macro space: one op per layer plus skip connections.

Arc layout (ENAS_REFERENCE sec. 7): for layer l = 0 .. L-1, the op id, then l
skip bits. Bit j of layer l refers to `prev[j]`, where `prev[0]` is the stem and
`prev[j]` (j >= 1) is the output of layer j - 1. The immediate predecessor
(layer l - 1) is always the op's main input and is never a skip candidate. This
is how the original code reads the bits (its README says "bit j = layer j", off
by one); the published architecture only reproduces the published network when
read this way, so we keep it.

Size: 6^L * 2^(L(L-1)/2). For L = 12 that is 1.6e29, the paper's figure; for
the final script's L = 24 it is about 5.8e101 (3.4e97 with 4 ops).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any, ClassVar

from enas_tf.errors import ArcError
from enas_tf.spaces.base import (
    MAX_LAYERS,
    Arc,
    SearchSpace,
    check_at_most,
    check_positive,
)

# Op ids of the macro space, in the original order.
MACRO_OPS = (
    "conv_3x3",
    "sep_conv_3x3",
    "conv_5x5",
    "sep_conv_5x5",
    "avg_pool_3x3",
    "max_pool_3x3",
)


def skip_source_name(j: int) -> str:
    """Name of the tensor that skip bit j refers to: `stem` or `layer{j-1}`."""
    return "stem" if j == 0 else f"layer{j - 1}"


def pool_layers(num_layers: int) -> tuple[int, ...]:
    """Layers after which the network reduces (factorized reduction).

    `{L//3 - 1, 2*(L//3) - 1}`: layers 3 and 7 for L = 12, 7 and 15 for L = 24.
    Empty when L < 3.
    """
    third = num_layers // 3
    if third == 0:
        return ()
    return tuple(sorted({third - 1, 2 * third - 1}))


@dataclasses.dataclass(frozen=True)
class MacroLayer:
    """One layer of a macro architecture.

    Attributes:
      op: op id, an index into `MACRO_OPS`.
      skip_bits: one bit per earlier tensor; bit j selects `prev[j]`
        (`skip_source_name(j)`).
    """

    op: int
    skip_bits: tuple[int, ...]

    @property
    def skip_sources(self) -> tuple[int, ...]:
        """Indices j into `prev` of the selected skip inputs."""
        return tuple(j for j, bit in enumerate(self.skip_bits) if bit)


@dataclasses.dataclass(frozen=True)
class MacroArch:
    """A decoded macro architecture: one `MacroLayer` per layer."""

    layers: tuple[MacroLayer, ...]

    @property
    def skip_rate(self) -> float:
        """Fraction of the L(L-1)/2 possible skips that are set."""
        bits = [b for layer in self.layers for b in layer.skip_bits]
        return sum(bits) / len(bits) if bits else 0.0


@dataclasses.dataclass(frozen=True)
class MacroSpace(SearchSpace):
    """Macro ("general") CNN space, whole-channel mode.

    Attributes:
      num_layers: L, the number of searched layers (12 in search, 24 final).
      num_ops: how many of `MACRO_OPS` the arc may use (6 in search; the
        final script passes 4, which the published arc satisfies).
    """

    num_layers: int = 12
    num_ops: int = 6

    name: ClassVar[str] = "macro"
    layout: ClassVar[str] = "for each layer l: op, then l skip bits"

    def _check_sizes(self) -> None:
        check_positive(self.name, num_layers=self.num_layers, num_ops=self.num_ops)
        check_at_most(self.name, "num_ops", self.num_ops, len(MACRO_OPS))
        # An arc has L(L+1)/2 integers: a larger L would exhaust memory.
        check_at_most(self.name, "num_layers", self.num_layers, MAX_LAYERS)

    @property
    def ops(self) -> tuple[str, ...]:
        return MACRO_OPS[: self.num_ops]

    @property
    def choices_per_decision(self) -> tuple[int, ...]:
        choices: list[int] = []
        for layer in range(self.num_layers):
            choices.append(self.num_ops)
            choices.extend([2] * layer)
        return tuple(choices)

    @property
    def decision_names(self) -> tuple[str, ...]:
        names: list[str] = []
        for layer in range(self.num_layers):
            names.append(f"layer{layer}/op")
            names.extend(f"layer{layer}/skip_{skip_source_name(j)}" for j in range(layer))
        return tuple(names)

    @property
    def skip_positions(self) -> tuple[int, ...]:
        """Arc positions of the skip bits: all but each layer's first."""
        ops = {layer * (layer + 1) // 2 for layer in range(self.num_layers)}
        return tuple(i for i in range(self.num_decisions) if i not in ops)

    @classmethod
    def config_for_length(cls, length: int) -> dict[str, int] | None:
        # L(L+1)/2 = length.
        layers = (math.isqrt(8 * length + 1) - 1) // 2
        if layers >= 1 and layers * (layers + 1) // 2 == length:
            return {"num_layers": layers}
        return None

    def decode(self, arc: Iterable[Any]) -> MacroArch:
        values = self.validate(arc)
        layers, start = [], 0
        for layer in range(self.num_layers):
            layers.append(
                MacroLayer(op=values[start], skip_bits=values[start + 1 : start + 1 + layer])
            )
            start += 1 + layer
        return MacroArch(tuple(layers))

    def encode(self, arch: MacroArch) -> Arc:
        if len(arch.layers) != self.num_layers:
            raise ArcError(
                f"{self.describe()}: expected {self.num_layers} layers; "
                f"received {len(arch.layers)}."
            )
        values: list[int] = []
        for layer in arch.layers:
            values.append(layer.op)
            values.extend(layer.skip_bits)
        return self.validate(values)

    def render(self, arc: Iterable[Any]) -> str:
        arch = self.decode(arc)
        pools = set(pool_layers(self.num_layers))
        width = max(len(op) for op in self.ops)
        lines = []
        for index, layer in enumerate(arch.layers):
            main = "stem" if index == 0 else f"layer{index - 1}"
            line = f"layer{index:<3d} {MACRO_OPS[layer.op]:<{width}}  input {main}"
            if layer.skip_sources:
                skips = ", ".join(skip_source_name(j) for j in layer.skip_sources)
                line += f"; skips {skips}"
            if index in pools:
                line += "  -> factorized reduction (stride 2)"
            lines.append(line)
        lines.append(f"skip rate {arch.skip_rate:.3f}")
        return "\n".join(lines)
