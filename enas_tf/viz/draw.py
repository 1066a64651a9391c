"""Architecture drawings: an arc as a PNG graph, without graphviz.

Drawn with Pillow and its built-in font, laid out by `graph_layout`:

- micro: the normal cell above the reduction cell. Inputs c_{k-2} and
  c_{k-1} on top, each computed node as a sum box below its two op boxes,
  and the cell output c_k concatenating the loose ends (ENAS sec. 2.3).
- macro: the layers in a column from the stem down, each box naming its op;
  skip connections as arcs on the right, coloured by their source layer, and
  a dashed line where the network reduces (factorized reduction).
- rnn (enas_lm): x_t and h_{t-1} into node 0 (tanh), each node boxed with its
  activation under the node it reads; h_t averages nodes 1 .. L.
- rnn_legacy: the same, with node 0's activation searched and h_t averaging
  the loose ends.

The same arc always gives the same bytes (for one Pillow version). Image
sizes follow the labels and the number of nodes. TensorFlow is not imported:
to log a drawing, pass `draw_arc_array(space, arc)[None]` to
`tf.summary.image`.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from enas_tf.errors import ArcError
from enas_tf.runtime import rundir
from enas_tf.spaces import (
    LEGACY_RNN_ACTIVATIONS,
    MACRO_OPS,
    MICRO_OPS,
    RNN_ACTIVATIONS,
    LegacyRnnSpace,
    MacroSpace,
    MicroCell,
    MicroSpace,
    RnnNode,
    RnnSpace,
    SearchSpace,
)
from enas_tf.spaces.macro import pool_layers
from enas_tf.viz.layout import Point, layered_layout

RGB = tuple[int, int, int]

FONT_SIZE = 13
_MARGIN = 16
_PAD = (9, 5)  # inside a box: horizontal, vertical
_ARROW = 7

_BACKGROUND: RGB = (255, 255, 255)
_INK: RGB = (33, 33, 33)
_EDGE: RGB = (90, 90, 90)
_MUTED: RGB = (120, 120, 120)
_INPUT: RGB = (220, 220, 220)
_SUM: RGB = (255, 244, 200)
_OUTPUT: RGB = (250, 210, 205)
# Op and activation colours: convolutions blue, separable green, pools
# orange, identity grey.
_FILL: dict[str, RGB] = {
    "conv_3x3": (190, 215, 245),
    "conv_5x5": (160, 195, 240),
    "sep_conv_3x3": (200, 235, 200),
    "sep_conv_5x5": (170, 220, 170),
    "avg_pool_3x3": (255, 225, 180),
    "max_pool_3x3": (250, 200, 150),
    "identity": (235, 235, 235),
    "tanh": (190, 215, 245),
    "relu": (200, 235, 200),
    "sigmoid": (255, 225, 180),
}
# Skip arcs take their source's colour, cycling through these.
_PALETTE: tuple[RGB, ...] = (
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (148, 103, 189),
    (255, 127, 14),
    (23, 190, 207),
    (140, 86, 75),
    (227, 119, 194),
)


def draw_arc(space: SearchSpace, arc: Iterable[Any]) -> bytes:
    """Draws an architecture as a PNG image.

    Args:
      space: the arc's search space (macro, micro, rnn or rnn_legacy).
      arc: the arc, a sequence of integers.

    Returns:
      The PNG file's bytes, RGB; the same arc always gives the same bytes.

    Raises:
      ArcError: when the arc does not fit the space, or the space has no
        drawing.
    """
    buffer = io.BytesIO()
    _image(space, arc).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def draw_arc_array(space: SearchSpace, arc: Iterable[Any]) -> np.ndarray:
    """Draws an architecture as an RGB array.

    Returns:
      uint8 `[height, width, 3]`; add a batch axis for `tf.summary.image`.

    Raises:
      ArcError: as `draw_arc`.
    """
    return np.asarray(_image(space, arc), dtype=np.uint8)


def write_drawing(
    path: str,
    space: SearchSpace,
    arc: Iterable[Any],
    *,
    overwrite: bool = False,
) -> None:
    """Writes the PNG drawing of `arc` to `path`, atomically.

    Raises:
      ArcError: as `draw_arc`.
      UserError: when `path` exists and `overwrite` is False, or cannot be
        written.
    """
    data = draw_arc(space, arc)  # before touching the file system
    rundir.write_bytes_atomic(path, data, overwrite=overwrite)


# ----- graphs ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Node:
    label: str
    fill: RGB
    pull: bool = False  # sit just above the node it feeds


@dataclasses.dataclass(frozen=True)
class _Graph:
    title: str
    nodes: tuple[_Node, ...]
    edges: tuple[tuple[int, int], ...]


def _op_label(name: str) -> str:
    return name.replace("_", " ")


def _micro_graph(title: str, cell: MicroCell) -> _Graph:
    nodes = [_Node("c_{k-2}", _INPUT), _Node("c_{k-1}", _INPUT)]
    edges = []
    index = {0: 0, 1: 1}  # cell node id -> graph node
    for n, node in enumerate(cell.nodes, start=2):
        ops = []
        for source, op in (
            (node.input_a, node.op_a),
            (node.input_b, node.op_b),
        ):
            nodes.append(_Node(_op_label(MICRO_OPS[op]), _FILL[MICRO_OPS[op]], pull=True))
            edges.append((index[source], len(nodes) - 1))
            ops.append(len(nodes) - 1)
        nodes.append(_Node(f"node {n} (+)", _SUM))
        index[n] = len(nodes) - 1
        edges += [(op, index[n]) for op in ops]
    nodes.append(_Node("c_k = concat", _OUTPUT))
    edges += [(index[i], len(nodes) - 1) for i in cell.loose_ends]
    return _Graph(title, tuple(nodes), tuple(edges))


def _rnn_graph(
    base: str,
    cell: Sequence[RnnNode],
    names: Sequence[str],
    output: str,
    averaged: Sequence[int],
) -> _Graph:
    # ENAS sec. 2.1: node 0 reads [x_t, h_{t-1}]; node k reads one earlier node.
    nodes = [
        _Node("x_t", _INPUT),
        _Node("h_{t-1}", _INPUT),
        _Node(f"node 0  {base}", _FILL[base]),
    ]
    edges = [(0, 2), (1, 2)]
    for k, node in enumerate(cell, start=1):
        name = names[node.activation]
        nodes.append(_Node(f"node {k}  {name}", _FILL[name]))
        edges.append((node.input + 2, k + 2))
    nodes.append(_Node(output, _OUTPUT))
    edges += [(k + 2, len(nodes) - 1) for k in averaged]
    return _Graph("", tuple(nodes), tuple(edges))


def _graphs(space: SearchSpace, arc: Iterable[Any]) -> tuple[str, list[_Graph]]:
    if isinstance(space, MicroSpace):
        arch = space.decode(arc)
        return space.describe(), [
            _micro_graph("normal cell", arch.normal),
            _micro_graph("reduction cell", arch.reduce),
        ]
    if isinstance(space, RnnSpace):
        arch = space.decode(arc)
        every = range(1, len(arch.nodes) + 1)
        output = f"h_t = mean(node 1 .. {len(arch.nodes)})"
        return space.describe(), [_rnn_graph("tanh", arch.nodes, RNN_ACTIVATIONS, output, every)]
    if isinstance(space, LegacyRnnSpace):
        arch = space.decode(arc)
        base = LEGACY_RNN_ACTIVATIONS[arch.base_activation]
        graph = _rnn_graph(
            base,
            arch.nodes,
            LEGACY_RNN_ACTIVATIONS,
            "h_t = mean(loose ends)",
            arch.loose_ends,
        )
        return space.describe(), [graph]
    raise ArcError(
        f"No drawing for the {getattr(space, 'name', type(space).__name__)} "
        f"space; drawings exist for macro, micro, rnn and rnn_legacy."
    )


# ----- rendering -------------------------------------------------------------


class _Pen:
    """Measures and writes text in the built-in font."""

    def __init__(self) -> None:
        try:  # Pillow >= 10.1 scales its built-in font
            self.font = ImageFont.load_default(size=FONT_SIZE)
        except TypeError:  # older Pillow: the fixed bitmap font
            self.font = ImageFont.load_default()
        self.line = self.font.getbbox("Ag_{}()|")[3] + 2

    def width(self, text: str) -> float:
        left, _, right, _ = self.font.getbbox(text)
        return right - left

    def box_size(self, text: str, min_width: float = 0.0) -> tuple[float, float]:
        width = max(self.width(text) + 2 * _PAD[0], min_width)
        return math.ceil(width), self.line + 2 * _PAD[1]

    def text(self, draw: ImageDraw.ImageDraw, xy: Point, text: str, fill: RGB = _INK) -> None:
        """Writes `text` with its top-left corner at `xy`."""
        left = self.font.getbbox(text)[0]
        draw.text((round(xy[0] - left), round(xy[1])), text, font=self.font, fill=fill)

    def centred(self, draw: ImageDraw.ImageDraw, box: Sequence[float], text: str) -> None:
        x0, y0, x1, y1 = box
        self.text(
            draw,
            ((x0 + x1 - self.width(text)) / 2, (y0 + y1 - self.line) / 2 + 1),
            text,
        )


def _arrow(
    draw: ImageDraw.ImageDraw,
    points: Sequence[Point],
    fill: RGB,
    width: int = 1,
) -> None:
    """A polyline ending in an arrowhead at its last point."""
    (xa, ya), (xb, yb) = points[-2], points[-1]
    length = math.hypot(xb - xa, yb - ya) or 1.0
    ux, uy = (xb - xa) / length, (yb - ya) / length
    base = (xb - ux * _ARROW, yb - uy * _ARROW)
    draw.line([*points[:-1], base], fill=fill, width=width, joint="curve")
    half = _ARROW * 0.45
    head = [
        (xb, yb),
        (base[0] - uy * half, base[1] + ux * half),
        (base[0] + uy * half, base[1] - ux * half),
    ]
    draw.polygon(head, fill=fill)


def _box(draw: ImageDraw.ImageDraw, pen: _Pen, box: Sequence[float], node: _Node) -> None:
    draw.rounded_rectangle([round(v) for v in box], radius=4, fill=node.fill, outline=_INK)
    pen.centred(draw, box, node.label)


def _image(space: SearchSpace, arc: Iterable[Any]) -> Image.Image:
    pen = _Pen()
    if isinstance(space, MacroSpace):
        return _macro_image(space, arc, pen)
    title, graphs = _graphs(space, arc)
    layouts = []
    for graph in graphs:
        # Wide enough to keep the ends of the incoming edges apart.
        fan_in = [sum(v == i for _, v in graph.edges) for i in range(len(graph.nodes))]
        sizes = [pen.box_size(n.label, 14.0 * (f + 1)) for n, f in zip(graph.nodes, fan_in)]
        pull = [n.pull for n in graph.nodes]
        layouts.append(layered_layout(sizes, graph.edges, pull=pull))
    # Panels (the two cells) stacked: cells are wide and shallow.
    subtitle = pen.line + 10 if any(g.title for g in graphs) else 0
    panel_widths = [max(lay.width, pen.width(g.title)) for g, lay in zip(graphs, layouts)]
    width = max(pen.width(title), *panel_widths) + 2 * _MARGIN
    top = _MARGIN + pen.line + 10
    height = top + sum(subtitle + lay.height + 2 * _MARGIN for lay in layouts) - _MARGIN
    image = Image.new("RGB", (math.ceil(width), math.ceil(height)), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    pen.text(draw, (_MARGIN, _MARGIN), title)
    for graph, layout in zip(graphs, layouts):
        if graph.title:
            pen.text(draw, (_MARGIN, top), graph.title)
        top += subtitle
        dx = (width - layout.width) / 2
        for line in layout.edges:
            _arrow(draw, [(x + dx, y + top) for x, y in line], _EDGE)
        for node, (x0, y0, x1, y1) in zip(graph.nodes, layout.boxes):
            _box(draw, pen, (x0 + dx, y0 + top, x1 + dx, y1 + top), node)
        top += layout.height + 2 * _MARGIN
    return image


def _macro_image(space: MacroSpace, arc: Iterable[Any], pen: _Pen) -> Image.Image:
    arch = space.decode(arc)
    nodes = [_Node("stem", _INPUT)] + [
        _Node(f"layer {i}  {_op_label(MACRO_OPS[layer.op])}", _FILL[MACRO_OPS[layer.op]])
        for i, layer in enumerate(arch.layers)
    ]
    box_w, box_h = pen.box_size(max((n.label for n in nodes), key=pen.width))
    pools = set(pool_layers(space.num_layers))
    reduction, gap = "factorized reduction", 18
    # Rows: the stem, then layer i in row i + 1, with a band after each
    # layer where the network reduces.
    tops, y = [], _MARGIN + pen.line + 14
    for row in range(len(nodes)):
        tops.append(y)
        y += box_h + (2 * gap if row - 1 in pools else gap)
    x0 = _MARGIN + pen.width(reduction) + 12
    x1 = x0 + box_w
    # A skip from row j to row i bulges right in proportion to i - j, so
    # arcs cross only where their spans interleave (an arc diagram).
    step = max(6.0, min(14.0, 320.0 / space.num_layers))
    title = f"{space.describe()}, skip rate {arch.skip_rate:.3f}"
    width = max(x1 + 12 + step * (len(nodes) + 1), pen.width(title)) + _MARGIN
    size = (math.ceil(width), math.ceil(y - gap + _MARGIN))
    image = Image.new("RGB", size, _BACKGROUND)
    draw = ImageDraw.Draw(image)
    pen.text(draw, (_MARGIN, _MARGIN), title)
    mid = (x0 + x1) / 2
    for row in range(1, len(nodes)):
        _arrow(draw, [(mid, tops[row - 1] + box_h), (mid, tops[row])], _EDGE)
        if row - 2 in pools:  # row - 1 holds layer row - 2
            line_y = tops[row] - gap
            for x in range(_MARGIN, math.ceil(width - _MARGIN), 8):
                draw.line([(x, line_y), (x + 4, line_y)], fill=_MUTED)
            pen.text(draw, (_MARGIN, line_y - pen.line), reduction, fill=_MUTED)
    for i, layer in enumerate(arch.layers):
        for j in layer.skip_sources:  # prev[j] is in row j
            ys, yt = tops[j] + 0.7 * box_h, tops[i + 1] + 0.3 * box_h
            reach = 12 + step * (i + 1 - j) * 4 / 3  # a cubic bulges 3/4 of it
            controls = ((x1, ys), (x1 + reach, ys), (x1 + reach, yt), (x1, yt))
            curve = [_bezier(controls, t / 24) for t in range(25)]
            _arrow(draw, curve, _PALETTE[j % len(_PALETTE)])
    for node, top in zip(nodes, tops):
        _box(draw, pen, (x0, top, x1, top + box_h), node)
    return image


def _bezier(controls: Sequence[Point], t: float) -> Point:
    """The point at `t` on the cubic Bezier curve with these 4 controls."""
    weights = ((1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t * t, t**3)
    return (
        sum(w * p[0] for w, p in zip(weights, controls)),
        sum(w * p[1] for w, p in zip(weights, controls)),
    )
