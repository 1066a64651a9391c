"""Tests of the two recurrent-cell arc formats."""

import math

import pytest

from enas_tf import spaces
from enas_tf.errors import ArcError


def test_enas_lm_cell_decodes_as_the_spec_says():
    space, arc = spaces.load_arc("enas_lm_ptb")
    arch = space.decode(arc)
    assert [(n.input, spaces.RNN_ACTIVATIONS[n.activation]) for n in arch.nodes] == [
        (0, "sigmoid"),
        (1, "tanh"),
        (2, "relu"),
        (2, "sigmoid"),
        (4, "tanh"),
        (5, "tanh"),
        (3, "sigmoid"),
        (6, "sigmoid"),
    ]
    assert arch.loose_ends == (7, 8)


def test_darts_cell_uses_the_enas_lm_id_order():
    space, arc = spaces.load_arc("darts_rnn_ptb")
    arch = space.decode(arc)
    names = [spaces.RNN_ACTIVATIONS[n.activation] for n in arch.nodes]
    # The published DARTS genotype: sigmoid, relu, relu, identity, tanh,
    # sigmoid, tanh, relu.
    assert names == ["sigmoid", "relu", "relu", "identity", "tanh", "sigmoid", "tanh", "relu"]
    assert arch.loose_ends == (4, 6, 7, 8)


def test_legacy_cell_decodes_with_its_own_id_order():
    space, arc = spaces.load_arc("enas_ptb_legacy")
    assert space.num_decisions == 23
    arch = space.decode(arc)
    assert arch.base_activation == 0
    assert [n.input for n in arch.nodes] == [0, 1, 2, 2, 2, 5, 1, 6, 8, 8, 8]
    assert {spaces.LEGACY_RNN_ACTIVATIONS[n.activation] for n in arch.nodes} == {"tanh", "relu"}
    assert arch.loose_ends == (3, 4, 7, 9, 10, 11)
    assert spaces.LEGACY_RNN_ACTIVATIONS[2] == "identity"
    assert spaces.RNN_ACTIVATIONS[2] == "sigmoid"


def test_sizes():
    assert spaces.RnnSpace(num_nodes=9).size() == math.factorial(9) * 4**9
    assert f"{spaces.RnnSpace(num_nodes=9).size():.1e}" == "9.5e+10"
    assert spaces.LegacyRnnSpace(num_nodes=12).size() == 4**12 * math.factorial(11)
    assert spaces.RnnSpace.config_for_length(16) == {"num_nodes": 8}
    assert spaces.LegacyRnnSpace.config_for_length(23) == {"num_nodes": 12}


def test_first_node_must_read_node_zero():
    space = spaces.RnnSpace(num_nodes=2)
    with pytest.raises(ArcError, match=r"position 0 \(node1/input\) must be in \[0, 0\]"):
        space.validate([1, 0, 0, 0])
    legacy = spaces.LegacyRnnSpace(num_nodes=3)
    with pytest.raises(ArcError, match=r"position 3 \(node2/input\) must be in \[0, 1\]"):
        legacy.validate([0, 0, 0, 2, 0])


def test_render():
    space, arc = spaces.load_arc("enas_lm_ptb")
    lines = space.render(arc).splitlines()
    assert lines[0] == "node0 = highway(tanh, [x_t, h_{t-1}])"
    assert lines[1] == "node1 = highway(sigmoid, node0)"
    assert lines[-1] == "output = mean(node1 .. node8); loose ends: node7, node8"
