"""Published architectures, by name.

Each entry is the arc string exactly as its source writes it (the original
scripts or READMEs, as reproduced in ENAS_REFERENCE.md sec. 7 and
ENAS_LM_REFERENCE.md sec. 5), with the space and size it belongs to. The arcs
are plain data: look them up with `get`, never evaluate them.
"""

from __future__ import annotations

import dataclasses

from enas_tf.errors import ArcError


@dataclasses.dataclass(frozen=True)
class Published:
    """A published architecture.

    Attributes:
      space: space name (`macro`, `micro`, `rnn`, `rnn_legacy`).
      config: the space's size parameters.
      arc: the arc string as published.
      source: where it comes from.
    """

    space: str
    config: dict
    arc: str
    source: str


PUBLISHED: dict[str, Published] = {
    "enas_macro_final": Published(
        space="macro",
        config={"num_layers": 24, "num_ops": 4},
        arc=(
            "0 3 0 0 1 0 2 0 0 1 2 0 0 0 0 3 1 1 0 1 0 2 0 0 0 0 0 1 2 0 1 1 0 1 1 1 "
            "1 0 1 1 1 0 1 0 1 0 0 0 0 0 0 0 0 0 0 2 0 0 0 0 0 1 0 0 0 0 0 1 0 0 1 1 "
            "0 0 0 0 1 1 2 0 1 0 0 0 0 0 1 0 1 1 0 1 0 0 1 0 0 0 1 1 1 0 1 0 1 0 1 1 "
            "0 1 0 1 0 0 0 0 0 1 0 0 2 0 0 1 0 0 0 0 0 0 0 1 0 1 0 1 2 0 1 0 0 0 1 0 "
            "0 1 1 1 1 0 0 1 0 2 0 0 0 0 1 0 1 0 1 0 0 1 0 1 0 0 1 3 0 1 1 0 1 0 0 0 "
            "0 0 1 0 1 0 1 0 0 0 3 0 1 1 0 0 0 0 0 0 0 0 0 1 1 0 0 0 0 1 0 1 0 0 1 0 "
            "1 1 0 0 0 1 0 0 0 0 0 1 1 0 0 3 0 1 0 1 1 0 0 1 0 1 1 0 1 1 0 1 0 0 1 0 "
            "0 0 1 0 1 0 1 0 0 0 0 0 0 0 0 1 0 1 0 0 1 0 0 0 0 1 1 0 0 0 1 1 1 0 1 0 "
            "0 0 1 0 1 0 0 1 1 0 0 0"
        ),
        source="melodyguan/enas scripts/cifar10_macro_final.sh (24 layers, "
        "96 filters; ops 0-3 only)",
    ),
    "enas_micro_final": Published(
        space="micro",
        config={"num_nodes": 5, "num_ops": 5},
        arc=("0 2 0 0 0 4 0 1 0 4 1 1 1 0 0 1 0 2 1 1 1 0 1 0 0 3 0 2 1 1 3 1 1 0 0 4 0 3 1 1"),
        source="melodyguan/enas scripts/cifar10_micro_final.sh (normal cell, then reduction cell)",
    ),
    "enas_lm_ptb": Published(
        space="rnn",
        config={"num_nodes": 8, "num_funcs": 4},
        arc="0 2 1 0 2 1 2 2 4 0 5 0 3 2 6 2",
        source="google-research enas_lm README (test perplexity 57.3 GPU, 56.1 TPU)",
    ),
    "darts_rnn_ptb": Published(
        space="rnn",
        config={"num_nodes": 8, "num_funcs": 4},
        arc="0 2 1 1 1 1 1 3 2 0 5 2 3 0 5 1",
        source="google-research enas_lm README: the DARTS recurrent cell "
        "written in enas_lm's format (58.1 with its fixed.py)",
    ),
    "enas_ptb_legacy": Published(
        space="rnn_legacy",
        config={"num_nodes": 12, "num_funcs": 4},
        arc="0 0 0 1 1 2 1 2 0 2 0 5 1 1 0 6 1 8 1 8 1 8 1",
        source="melodyguan/enas scripts/ptb_final.sh (the paper's example cell, old format)",
    ),
}


def get(name: str) -> Published:
    """Returns the published architecture `name`.

    Raises:
      ArcError: for an unknown name, listing the known ones.
    """
    try:
        return PUBLISHED[name]
    except KeyError:
        known = ", ".join(sorted(PUBLISHED))
        raise ArcError(f"Unknown published architecture {name!r}; known: {known}.") from None
