"""Layered layout: ranks, no overlapping boxes, edges from box to box."""

import numpy as np
import pytest

from enas_tf.viz.layout import _spaced, layered_layout

# A micro-like cell: inputs 0, 1; ops 2, 3 into sum 4; ops 5, 6 into sum 7
# (op 5 reads input 0, so its edge spans ranks); output 8.
SIZES = [
    (60, 20),
    (60, 20),
    (80, 20),
    (80, 20),
    (50, 20),
    (80, 20),
    (80, 20),
    (50, 20),
    (70, 30),
]
EDGES = [
    (0, 2),
    (1, 3),
    (2, 4),
    (3, 4),
    (4, 5),
    (0, 6),
    (5, 7),
    (6, 7),
    (1, 8),
    (7, 8),
]
PULL = [False, False, True, True, False, True, True, False, False]


def _overlap(a, b, gap=0.0):
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] and b[1] < a[3]


def test_ranks_and_pull():
    layout = layered_layout(SIZES, EDGES, pull=PULL)
    top = [box[1] for box in layout.boxes]
    assert top[0] == top[1] == 0.0
    assert top[2] == top[3] < top[4]
    assert top[5] == top[6] > top[4]  # op 6 reads input 0 but sits above 7
    assert top[8] > top[7]
    assert layout.boxes[8][3] == pytest.approx(layout.height)


def test_boxes_do_not_overlap_and_fit():
    layout = layered_layout(SIZES, EDGES, pull=PULL, node_gap=20)
    for i, a in enumerate(layout.boxes):
        assert a[0] >= -1e-6 and a[2] <= layout.width + 1e-6
        for b in layout.boxes[i + 1 :]:
            assert not _overlap(a, b, gap=19.9)


def test_edges_run_from_bottom_to_top_and_avoid_boxes():
    layout = layered_layout(SIZES, EDGES, pull=PULL)
    for (u, v), line in zip(EDGES, layout.edges):
        (x0, y0), (x1, y1) = line[0], line[-1]
        assert y0 == layout.boxes[u][3] and layout.boxes[u][0] < x0 < layout.boxes[u][2]
        assert y1 == layout.boxes[v][1] and layout.boxes[v][0] < x1 < layout.boxes[v][2]
    # The long edge 0 -> 6 passes ranks 1 and 2 beside their boxes.
    long_edge = layout.edges[EDGES.index((0, 6))]
    assert len(long_edge) == 6
    for (x, top), (x_end, bottom) in zip(long_edge[1:-1:2], long_edge[2:-1:2]):
        assert x == x_end
        for box in layout.boxes:
            assert not (box[0] <= x <= box[2] and box[1] < bottom and top < box[3])


def test_deterministic_ties_broken_by_node_index():
    """Node 0 feeds nodes 1 and 2: a tie (both barycentres 0), so the lower
    index goes left. By hand, with node_gap 22 and rank_gap 34: rank 1 is
    centred at x = 0 with centres -+(40 + 22) / 2 = -+31, node 0 above
    their mean at 0; shifted right by 51 (the left edge of node 1). Node 0's
    two out-ports split its bottom side in thirds, in the order of their
    targets; each in-port is its box's middle."""
    for _ in range(2):  # no state carried from one call (or from the big graph) to the next
        layout = layered_layout([(40, 20)] * 3, [(0, 1), (0, 2)])
        assert (layout.width, layout.height) == (102.0, 74.0)
        assert layout.boxes == (
            (31.0, 0.0, 71.0, 20.0),
            (0.0, 54.0, 40.0, 74.0),
            (62.0, 54.0, 102.0, 74.0),
        )
        np.testing.assert_allclose(
            layout.edges,
            [((31 + 40 / 3, 20.0), (20.0, 54.0)), ((31 + 80 / 3, 20.0), (82.0, 54.0))],
            rtol=1e-12,
        )
        layered_layout(SIZES, EDGES, pull=PULL)
    # Widths differ: still by index (node 1, the wide one, on the left).
    layout = layered_layout([(40, 20), (80, 20), (40, 20)], [(0, 1), (0, 2)])
    assert layout.boxes[1][2] + 22 == layout.boxes[2][0]


def test_rejects_backward_edges():
    with pytest.raises(ValueError, match=r"received \(2, 1\)"):
        layered_layout([(10, 10)] * 3, [(2, 1)])


def test_spaced_is_the_closest_feasible_placement():
    assert _spaced([0.0, 0.0, 10.0], [4.0, 4.0]) == pytest.approx([-2.0, 2.0, 10.0])
    assert _spaced([5.0, 1.0], [2.0]) == pytest.approx([2.0, 4.0])
