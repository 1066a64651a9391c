"""A micro architecture's weights taken out of the supernet, for its child.

`child_weights(supernet, arc)` selects the shared weights `arc` uses, keyed
by the layer names of `build_child(space, arc, supernet.child_config(),
...)`, which has exactly those layers (with `cell_output="all"` the child
drops inputs no node reads and cells nothing reads: `kept_inputs`);
`load_child_weights` sets them. The
fixed child then computes what the supernet computes for `arc` (weight
inheritance, `enas_tf.supernet.transfer`).
"""

from __future__ import annotations

import keras
import numpy as np

from enas_tf.ops import table
from enas_tf.spaces.micro import MICRO_OPS
from enas_tf.supernet.slots import slot_rows


def child_weights(net, arc) -> dict[str, list[np.ndarray]]:
    """The selected weights of `arc` in `net` (a `MicroSupernet`), keyed by
    the fixed child's layer names: the layers the child has, no others
    (`kept_inputs`)."""
    arch = net.space.decode(arc)
    kept = kept_inputs(net, arch)
    value = lambda name: net.shared[name].numpy()
    weights = {
        "stem.conv": [value("stem.conv")],
        "stem.bn": net.bns["stem.bn"].slice(0),
    }
    prev_prev_ends = prev_ends = [0]
    for p in range(net.num_layers + 2):
        reduction = p in net.reductions
        cell = arch.reduce if reduction else arch.normal
        name = f"cell{p}"
        found = {}

        def blocks(key, rows):
            w = value(key)[rows]
            return w.reshape(1, 1, -1, w.shape[-1])

        if p - 1 in net.reductions:
            for path in ("path1", "path2"):
                found[f"{name}.in.x.{path}"] = [blocks(f"{name}.in.x.{path}", prev_prev_ends)]
        else:
            found[f"{name}.in.x.conv"] = [blocks(f"{name}.in.x.conv", prev_prev_ends)]
        found[f"{name}.in.x.bn"] = net.bns[f"{name}.in.x.bn"].slice(0)
        found[f"{name}.in.y.conv"] = [blocks(f"{name}.in.y.conv", prev_ends)]
        found[f"{name}.in.y.bn"] = net.bns[f"{name}.in.y.bn"].slice(0)
        for n, node in enumerate(cell.nodes, start=2):
            for s, index, op_id in ((0, node.input_a, node.op_a), (1, node.input_b, node.op_b)):
                op, base = MICRO_OPS[op_id], f"{name}.node{n}.{'ab'[s]}"
                row, reduce_row = (r + index for r in slot_rows(n, s))
                if table.op(op).kind == "sep_conv":
                    for u in (1, 2):
                        src = f"{name}.{op}.sep{u}"
                        found[f"{base}.sep{u}.conv"] = [
                            value(f"{src}.dw")[row],
                            value(f"{src}.pw")[row],
                        ]
                        found[f"{base}.sep{u}.bn"] = net.bns[f"{src}.bn"].slice(row)
                elif op == "identity" and reduction and index < 2:
                    for path in ("path1", "path2"):
                        found[f"{base}.reduce.{path}"] = [
                            value(f"{name}.reduce.{path}")[reduce_row][None, None]
                        ]
                    found[f"{base}.reduce.bn"] = net.bns[f"{name}.reduce.bn"].slice(reduce_row)
        if net.cell_output == "all":  # rows of nodes 2 ... B + 1
            weights.update(_kept(found, name, kept[p]))
            prev_prev_ends, prev_ends = prev_ends, list(range(net.num_nodes))
            continue
        ends = list(cell.loose_ends)
        if reduction:
            for i in (0, 1):
                if i in ends:
                    for path in ("path1", "path2"):
                        found[f"{name}.end{i}.{path}"] = [
                            value(f"{name}.end{i}.{path}")[0][None, None]
                        ]
                    found[f"{name}.end{i}.bn"] = net.bns[f"{name}.end{i}.bn"].slice(0)
        weights.update(_kept(found, name, kept[p]))
        prev_prev_ends, prev_ends = prev_ends, ends
    fc = value("logits.fc")[prev_ends]
    weights["logits.fc"] = [fc.reshape(-1, net.num_classes)]
    return weights


def kept_inputs(net, arch) -> list[frozenset[int] | None]:
    """Per cell position, the cell inputs (0: x, the cell before the last; 1:
    y, the last) the fixed child keeps, or None for a cell it drops.

    With loose-end outputs every input is read or output, so the child keeps
    everything. With `cell_output="all"` a cell outputs its computed nodes
    only: an input no node reads is not in the child (Keras keeps the layers
    the output depends on), and neither is a cell whose output no kept cell
    reads; the supernet still has their weights.
    """
    positions = net.num_layers + 2
    cells = [arch.reduce if p in net.reductions else arch.normal for p in range(positions)]
    both = frozenset((0, 1))
    if net.cell_output != "all":
        return [both] * positions
    read = [frozenset(i for n in c.nodes for i in (n.input_a, n.input_b)) & both for c in cells]
    live = [False] * positions
    live[-1] = True  # the classifier reads the last cell
    for p in reversed(range(positions - 1)):
        by_next = live[p + 1] and 1 in read[p + 1]
        by_second = p + 2 < positions and live[p + 2] and 0 in read[p + 2]
        live[p] = by_next or by_second
    return [read[p] if live[p] else None for p in range(positions)]


def _kept(found, name, inputs):
    """A cell's entries without those of what the child drops (`kept_inputs`)."""
    if inputs is None:
        return {}
    dropped = [f"{name}.in.{'xy'[i]}." for i in (0, 1) if i not in inputs]
    return {k: v for k, v in found.items() if not any(k.startswith(d) for d in dropped)}


def load_child_weights(child: keras.Model, weights: dict[str, list[np.ndarray]]) -> None:
    """Sets a fixed child's layers from `child_weights`.

    Raises:
      ValueError: when a child layer with weights has no entry, or shapes
        differ (the child was built with other sizes).
    """
    for layer in child.layers:
        if not layer.weights:
            continue
        if layer.name not in weights:
            raise ValueError(f"No shared weights for child layer {layer.name!r}.")
        layer.set_weights(weights[layer.name])
