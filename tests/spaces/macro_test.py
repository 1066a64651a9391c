"""Tests of the macro space encoding."""

from enas_tf import spaces
from enas_tf.spaces import macro

# ENAS_REFERENCE.md sec. 7.1: op id and skip inputs of each layer of the
# published 24-layer network, as listed there.
PUBLISHED_LAYERS = [
    (0, []),
    (3, []),
    (0, ["stem"]),
    (2, ["L1"]),
    (2, []),
    (3, ["stem", "L0", "L2"]),
    (2, ["L4"]),
    (2, ["L0", "L1", "L3", "L4", "L5"]),
    (1, ["L0", "L1", "L2", "L4", "L6"]),
    (0, []),
    (2, ["L4"]),
    (0, ["stem", "L2", "L3", "L8", "L9"]),
    (2, ["L0", "L6", "L8", "L9"]),
    (1, ["L1", "L5", "L6", "L7", "L9", "L11"]),
    (0, ["stem", "L0", "L2", "L4", "L10"]),
    (2, ["L1", "L9", "L11", "L13"]),
    (2, ["L0", "L4", "L7", "L8", "L9", "L10", "L13"]),
    (2, ["L3", "L5", "L7", "L10", "L12", "L15"]),
    (3, ["L0", "L1", "L3", "L9", "L11", "L13"]),
    (3, ["L0", "L1", "L11", "L12", "L17"]),
    (0, ["stem", "L2", "L4", "L5", "L9", "L15", "L16"]),
    (3, ["L0", "L2", "L3", "L6", "L8", "L9", "L11", "L12", "L14", "L17"]),
    (0, ["stem", "L1", "L3", "L12", "L14", "L17"]),
    (0, ["stem", "L0", "L4", "L5", "L6", "L8", "L12", "L14", "L17", "L18"]),
]


def _source(j):
    return "stem" if j == 0 else f"L{j - 1}"


def test_published_arc_decodes_to_the_spec_table():
    space, arc = spaces.load_arc("enas_macro_final")
    assert space == spaces.MacroSpace(num_layers=24, num_ops=4)
    assert len(arc) == 300
    arch = space.decode(arc)
    decoded = [(layer.op, [_source(j) for j in layer.skip_sources]) for layer in arch.layers]
    assert decoded == PUBLISHED_LAYERS
    # 98 of 276 possible skips (spec sec. 7.1).
    assert sum(len(s) for _, s in decoded) == 98
    assert abs(arch.skip_rate - 98 / 276) < 1e-12


def test_layout_and_sizes():
    space = spaces.MacroSpace(num_layers=4)
    assert space.choices_per_decision == (6, 6, 2, 6, 2, 2, 6, 2, 2, 2)
    assert space.decision_names[:3] == ("layer0/op", "layer1/op", "layer1/skip_stem")
    assert space.decision_names[-1] == "layer3/skip_layer1"
    assert space.size() == 6**4 * 2**6
    # The paper's 1.6e29 for 12 layers.
    assert f"{spaces.MacroSpace(num_layers=12).size():.1e}" == "1.6e+29"
    assert spaces.MacroSpace.config_for_length(300) == {"num_layers": 24}
    assert spaces.MacroSpace.config_for_length(301) is None


def test_pool_layers():
    assert macro.pool_layers(12) == (3, 7)
    assert macro.pool_layers(24) == (7, 15)
    assert macro.pool_layers(2) == ()


def test_render_has_one_line_per_layer():
    space = spaces.MacroSpace(num_layers=12)
    lines = space.render(space.random_arc(0)).splitlines()
    assert len(lines) == 13
    assert lines[3].endswith("-> factorized reduction (stride 2)")
    assert "input layer2" in lines[3]
