"""The op table: what each candidate op of the search spaces is.

The spaces name their ops (`enas_tf.spaces.MACRO_OPS`, `MICRO_OPS`); the
supernets and the child networks build them from this table instead of
parsing the names, so a new op is one row here plus its builders:

  kind "conv":     ReLU -> k x k convolution -> batch norm (macro);
  kind "sep_conv": ReLU -> depthwise k x k -> pointwise -> batch norm, once in
                   the macro space, twice in a micro cell (ENAS sec. 3);
  kind "pool":     3 x 3 average or max pooling, SAME padding;
  kind "identity": the input (a factorized reduction when a micro reduction
                   cell's node reads a full-size input);
  kind "zero":     DARTS's "none" op, the zero map (an edge that is not
                   there). No space's arc chooses it; DARTS's relaxed cells
                   (`enas_tf.supernet.relaxed`) mix it in.
"""

from __future__ import annotations

import dataclasses

KINDS = ("conv", "sep_conv", "pool", "identity", "zero")


@dataclasses.dataclass(frozen=True)
class Op:
    """One candidate op.

    Attributes:
      name: the spaces' name, e.g. "sep_conv_5x5".
      kind: one of `KINDS`.
      kernel: spatial size of the convolution or pooling window (1 for the
        identity).
      pool: "avg" or "max" for pooling ops, else None.
    """

    name: str
    kind: str
    kernel: int = 1
    pool: str | None = None

    @property
    def parameter_free(self) -> bool:
        """True for the ops without weights a cell can keep (pooling and
        the identity): what a collapsing DARTS search chooses."""
        return self.kind in ("pool", "identity")

    @property
    def has_weights(self) -> bool:
        """True for the convolutions (the ops whose weights are searched)."""
        return self.kind in ("conv", "sep_conv")


OPS = {
    op.name: op
    for op in (
        Op("conv_3x3", "conv", 3),
        Op("conv_5x5", "conv", 5),
        Op("sep_conv_3x3", "sep_conv", 3),
        Op("sep_conv_5x5", "sep_conv", 5),
        Op("avg_pool_3x3", "pool", 3, "avg"),
        Op("max_pool_3x3", "pool", 3, "max"),
        Op("identity", "identity"),
        Op("none", "zero"),
    )
}


def op(name: str) -> Op:
    """The table's row of op `name`.

    Raises:
      ValueError: for a name the table does not have.
    """
    try:
        return OPS[name]
    except KeyError:
        raise ValueError(f"Unknown op {name!r}; the op table has {', '.join(OPS)}.") from None
