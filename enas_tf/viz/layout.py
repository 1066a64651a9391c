"""Layered layout of small directed acyclic graphs, top to bottom.

A few dozen nodes at most (an ENAS cell), so simple and exact steps suffice,
in the manner of Sugiyama et al. (1981) and graphviz's `dot`:

1. Ranks: longest path from the sources; nodes marked `pull` then move down
   to just above their nearest successor (an op box sits above its sum).
2. Edges spanning several ranks get a thin dummy node in each rank they
   cross, so that no edge runs through a box.
3. Crossings: barycentre sweeps down and up, keeping the order with the
   fewest crossings. The order of rank 0 (the inputs) is kept as given.
4. x: each node moves towards the mean of its neighbours' centres, subject
   to minimum gaps (isotonic regression by pool-adjacent-violators).

Pure Python and deterministic: ties are broken by node index.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

Point = tuple[float, float]

_SWEEPS = 8


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where to draw a graph.

    Attributes:
      width: width of the drawing, in pixels.
      height: height of the drawing, in pixels.
      boxes: `(x0, y0, x1, y1)` of each node, in node order.
      edges: the polyline of each edge, in edge order, from the bottom of the
        source box to the top of the target box.
    """

    width: float
    height: float
    boxes: tuple[tuple[float, float, float, float], ...]
    edges: tuple[tuple[Point, ...], ...]


def layered_layout(
    sizes: Sequence[tuple[float, float]],
    edges: Sequence[tuple[int, int]],
    *,
    pull: Sequence[bool] = (),
    rank_gap: float = 34.0,
    node_gap: float = 22.0,
    dummy_gap: float = 10.0,
) -> Layout:
    """Lays out a DAG whose edges go from lower to higher node indices.

    Args:
      sizes: `(width, height)` of each node's box.
      edges: `(source, target)` pairs with `source < target`.
      pull: per node, whether to place it on the rank just above its
        nearest successor instead of just below its lowest predecessor.
      rank_gap: vertical space between ranks.
      node_gap: horizontal space between boxes.
      dummy_gap: horizontal space between two edges passing a rank.

    Returns:
      The layout, with the top-left corner of the drawing at (0, 0).

    Raises:
      ValueError: for an edge that does not go from a lower to a higher index.
    """
    n = len(sizes)
    for u, v in edges:
        if not 0 <= u < v < n:
            raise ValueError(f"Expected edges (u, v) with 0 <= u < v < {n}; received ({u}, {v}).")
    rank = _ranks(n, edges, list(pull) + [False] * (n - len(pull)))

    # Dummy nodes: each edge becomes a chain of nodes on consecutive ranks.
    widths = [float(w) for w, _ in sizes]
    ranks = list(rank)
    chains = []
    for u, v in edges:
        chain = [u]
        for r in range(rank[u] + 1, rank[v]):
            ranks.append(r)
            widths.append(0.0)
            chain.append(len(ranks) - 1)
        chains.append(chain + [v])
    total = len(ranks)
    up: list[list[int]] = [[] for _ in range(total)]
    down: list[list[int]] = [[] for _ in range(total)]
    for chain in chains:
        for a, b in itertools.pairwise(chain):
            down[a].append(b)
            up[b].append(a)

    layers: list[list[int]] = [[] for _ in range(max(ranks) + 1)]
    for node, r in enumerate(ranks):
        layers[r].append(node)
    layers = _order(layers, up, down)

    def gap(a: int, b: int) -> float:
        both_dummies = a >= n and b >= n
        return (widths[a] + widths[b]) / 2 + (dummy_gap if both_dummies else node_gap)

    x = _place(layers, up, down, gap)
    left = min(x[v] - widths[v] / 2 for v in range(total))
    x = [c - left for c in x]
    width = max(x[v] + widths[v] / 2 for v in range(total))

    heights = [max((sizes[v][1] for v in layer if v < n), default=0.0) for layer in layers]
    tops = [0.0]
    for h in heights:
        tops.append(tops[-1] + h + rank_gap)
    boxes = []
    for v in range(n):
        w, h = sizes[v]
        y0 = tops[rank[v]] + (heights[rank[v]] - h) / 2
        boxes.append((x[v] - w / 2, y0, x[v] + w / 2, y0 + h))

    # Spread the ends of the edges along each box side, ordered by where
    # the other end lies, so that parallel edges stay apart.
    out_port, in_port = {}, {}
    for v in range(n):
        outs = sorted((x[chains[e][1]], e) for e, (a, _) in enumerate(edges) if a == v)
        ins = sorted((x[chains[e][-2]], e) for e, (_, b) in enumerate(edges) if b == v)
        x0, _, x1, _ = boxes[v]
        for ports, items in ((out_port, outs), (in_port, ins)):
            for i, (_, e) in enumerate(items):
                ports[e] = x0 + (x1 - x0) * (i + 1) / (len(items) + 1)
    polylines = []
    for e, chain in enumerate(chains):
        points = [(out_port[e], boxes[chain[0]][3])]
        for d in chain[1:-1]:
            points += [
                (x[d], tops[ranks[d]]),
                (x[d], tops[ranks[d]] + heights[ranks[d]]),
            ]
        points.append((in_port[e], boxes[chain[-1]][1]))
        polylines.append(tuple(points))
    return Layout(width, tops[-1] - rank_gap, tuple(boxes), tuple(polylines))


def _ranks(n: int, edges: Sequence[tuple[int, int]], pull: list[bool]) -> list[int]:
    preds: list[list[int]] = [[] for _ in range(n)]
    succs: list[list[int]] = [[] for _ in range(n)]
    for u, v in edges:
        preds[v].append(u)
        succs[u].append(v)
    rank = [0] * n
    for v in range(n):  # indices are a topological order
        rank[v] = max((rank[u] + 1 for u in preds[v]), default=0)
    for v in reversed(range(n)):
        if pull[v] and succs[v]:
            rank[v] = min(rank[s] for s in succs[v]) - 1
    return rank


def _crossings(layers: list[list[int]], down: list[list[int]]) -> int:
    position = {v: i for layer in layers for i, v in enumerate(layer)}
    count = 0
    for layer in layers[:-1]:
        pairs = [(position[a], position[b]) for a in layer for b in down[a]]
        for i, (a1, b1) in enumerate(pairs):
            for a2, b2 in pairs[i + 1 :]:
                count += (a1 - a2) * (b1 - b2) < 0
    return count


def _order(layers: list[list[int]], up: list[list[int]], down: list[list[int]]) -> list[list[int]]:
    """Barycentre sweeps; rank 0 keeps its order."""
    layers = [list(layer) for layer in layers]
    best, best_count = [list(layer) for layer in layers], _crossings(layers, down)
    for sweep in range(_SWEEPS):
        downward = sweep % 2 == 0
        indices = range(1, len(layers)) if downward else range(len(layers) - 2, 0, -1)
        for r in indices:
            other = layers[r - 1 if downward else r + 1]
            layers[r] = _by_barycentre(layers[r], other, up if downward else down)
        count = _crossings(layers, down)
        if count < best_count:
            best, best_count = [list(layer) for layer in layers], count
    return best


def _by_barycentre(layer: list[int], other: list[int], neighbours: list[list[int]]) -> list[int]:
    """`layer` sorted by the mean position of each node's neighbours in
    `other`; nodes without any keep their place, ties keep their order."""
    position = {v: i for i, v in enumerate(other)}
    keys = {}
    for i, v in enumerate(layer):
        near = [position[u] for u in neighbours[v]]
        keys[v] = (sum(near) / len(near) if near else i, i)
    return sorted(layer, key=keys.__getitem__)


def _place(layers, up, down, gap) -> list[float]:
    """x centre of every node."""
    total = sum(len(layer) for layer in layers)
    x = [0.0] * total
    for layer in layers:
        offset = 0.0
        for i, v in enumerate(layer):
            offset += gap(layer[i - 1], v) if i else 0.0
            x[v] = offset
        for v in layer:
            x[v] -= offset / 2  # centre each rank on 0
    for sweep in range(_SWEEPS):
        downward = sweep % 2 == 0
        order = layers if downward else layers[::-1]
        for layer in order:
            desired = []
            for v in layer:
                near = up[v] if downward else down[v]
                if sweep >= _SWEEPS - 2:  # settle between both sides
                    near = up[v] + down[v]
                desired.append(sum(x[u] for u in near) / len(near) if near else x[v])
            for v, c in zip(
                layer,
                _spaced(desired, [gap(a, b) for a, b in itertools.pairwise(layer)]),
            ):
                x[v] = c
    return x


def _spaced(desired: list[float], gaps: list[float]) -> list[float]:
    """Closest positions (least squares) to `desired` that keep the gaps.

    With offsets o_i = sum of the gaps before i, y_i = x_i - o_i must be
    non-decreasing: an isotonic regression, solved by pool-adjacent-violators.
    """
    offsets = [0.0]
    for g in gaps:
        offsets.append(offsets[-1] + g)
    blocks: list[list[float]] = []  # [sum of targets, count]
    for d, o in zip(desired, offsets):
        blocks.append([d - o, 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
    result = []
    for s, c in blocks:
        result += [s / c] * int(c)
    return [y + o for y, o in zip(result, offsets)]
