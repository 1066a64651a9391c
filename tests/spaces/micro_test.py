"""Tests of the micro (cell) space encoding."""

import math

from enas_tf import spaces


def test_published_cells_decode_as_the_spec_says():
    space, arc = spaces.load_arc("enas_micro_final")
    arch = space.decode(arc)
    n = spaces.MicroNode
    assert arch.normal.nodes == (
        n(0, 2, 0, 0),
        n(0, 4, 0, 1),
        n(0, 4, 1, 1),
        n(1, 0, 0, 1),
        n(0, 2, 1, 1),
    )
    assert arch.reduce.nodes[1] == n(0, 3, 0, 2)  # max-pool, avg-pool of node 0
    assert arch.normal.loose_ends == (2, 3, 4, 5, 6)
    assert arch.reduce.loose_ends == (2, 4, 5, 6)


def test_layout_and_size():
    space = spaces.MicroSpace(num_nodes=2)
    assert space.choices_per_decision == (2, 5, 2, 5, 3, 5, 3, 5) * 2
    assert space.decision_names[4] == "normal/node3/input_a"
    assert space.decision_names[8] == "reduce/node2/input_a"
    per_cell = math.prod((5 * n) ** 2 for n in range(2, 7))
    assert spaces.MicroSpace(num_nodes=5).size() == per_cell**2
    assert f"{per_cell:.2e}" == "5.06e+12"


def test_loose_ends_include_unused_inputs():
    cell = spaces.MicroCell((spaces.MicroNode(1, 0, 1, 4),))
    assert cell.loose_ends == (0, 2)


def test_render():
    space, arc = spaces.load_arc("enas_micro_final")
    text = space.render(arc)
    assert "node2 = avg_pool_3x3(node0) + sep_conv_3x3(node0)" in text
    assert "output = concat(node2, node4, node5, node6)" in text
    assert len(text.splitlines()) == 2 * (5 + 2)
