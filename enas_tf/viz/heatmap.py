"""Heat maps of mixing weights (DARTS's softmax over the ops of each edge).

`draw_mix(mix, titles, rows, columns)` draws one labelled panel per cell
(rows: edges, columns: ops, darker = heavier, the value written in each
square), side by side, as a float32 RGB array in [0, 1] for
`tf.summary.image`. Drawn with Pillow's built-in font (`enas_tf.viz.draw`).
TensorFlow is not imported.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from enas_tf.viz.draw import _INK, _Pen

_SQUARE = (46, 20)  # width, height of one weight's square
_GAP = 24
_LOW = np.array([255.0, 255.0, 255.0])
_HIGH = np.array([31.0, 119.0, 180.0])


def _colour(value: float) -> tuple[int, int, int]:
    return tuple(int(c) for c in np.round(_LOW + (_HIGH - _LOW) * float(value)))


def draw_mix(
    mix: np.ndarray,
    titles: Sequence[str],
    rows: Sequence[str],
    columns: Sequence[str],
) -> np.ndarray:
    """Draws mixing weights as heat maps.

    Args:
      mix: float `[panels, len(rows), len(columns)]`, values in [0, 1].
      titles: one title per panel (e.g. "normal", "reduce").
      rows: the row labels (edges, "j->n").
      columns: the column labels (op names).

    Returns:
      float32 `[height, width, 3]` in [0, 1].

    Raises:
      ValueError: when the labels do not fit `mix`'s shape.
    """
    mix = np.asarray(mix, np.float64)
    if mix.shape != (len(titles), len(rows), len(columns)):
        raise ValueError(
            f"Expected mix of shape {(len(titles), len(rows), len(columns))}; "
            f"received: {mix.shape}."
        )
    pen = _Pen()
    label_width = int(max(pen.width(r) for r in rows)) + 8
    column_height = int(max(pen.width(c) for c in columns)) + 8
    panel_width = label_width + _SQUARE[0] * len(columns)
    width = _GAP + len(titles) * (panel_width + _GAP)
    top = _GAP + pen.line + 4 + column_height
    height = top + _SQUARE[1] * len(rows) + _GAP
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for p, title in enumerate(titles):
        left = _GAP + p * (panel_width + _GAP)
        pen.text(draw, (left, _GAP), title)
        grid = left + label_width
        for c, column in enumerate(columns):
            # Column labels are written upwards, bottom-aligned to the grid.
            label = Image.new("RGB", (int(pen.width(column)) + 4, pen.line), (255, 255, 255))
            pen.text(ImageDraw.Draw(label), (2, 0), column)
            label = label.rotate(90, expand=True)
            x = grid + c * _SQUARE[0] + (_SQUARE[0] - label.width) // 2
            image.paste(label, (x, top - 4 - label.height))
        for r, row in enumerate(rows):
            y = top + r * _SQUARE[1]
            pen.text(draw, (left, y + (_SQUARE[1] - pen.line) / 2), row)
            for c in range(len(columns)):
                value = mix[p, r, c]
                x = grid + c * _SQUARE[0]
                box = (x, y, x + _SQUARE[0] - 1, y + _SQUARE[1] - 1)
                draw.rectangle(box, fill=_colour(value), outline=(255, 255, 255))
                ink = (255, 255, 255) if value > 0.55 else _INK
                pen.text(draw, (x + 5, y + (_SQUARE[1] - pen.line) / 2), f"{value:.2f}", ink)
    return np.asarray(image, np.float32) / 255.0
