"""Tests of SearchSpace behaviour shared by every space."""

import itertools
import json

import numpy as np
import pytest

from enas_tf import spaces
from enas_tf.errors import ArcError

TOY_SPACES = [
    spaces.MacroSpace(num_layers=3, num_ops=2),
    spaces.MicroSpace(num_nodes=1, num_ops=2),
    spaces.RnnSpace(num_nodes=3, num_funcs=2),
    spaces.LegacyRnnSpace(num_nodes=3, num_funcs=2),
]
ALL_DEFAULTS = [cls() for cls in spaces.SPACES.values()]


@pytest.mark.parametrize("space", TOY_SPACES, ids=lambda s: s.describe())
def test_size_equals_brute_force_count(space):
    # Enumerate every vector in [0, max choice]^n; count the ones validate
    # accepts. This checks size() and validate() against each other.
    top = max(space.choices_per_decision)
    count = 0
    for values in itertools.product(range(top), repeat=space.num_decisions):
        try:
            space.validate(values)
        except ArcError:
            continue
        count += 1
    assert count == space.size()


@pytest.mark.parametrize("space", TOY_SPACES, ids=lambda s: s.describe())
def test_decoded_architectures_are_distinct(space):
    arcs = [space.random_arc(seed) for seed in range(200)]
    decoded = {space.decode(arc) for arc in arcs}
    assert len(decoded) == len(set(arcs))


@pytest.mark.parametrize("space", ALL_DEFAULTS, ids=lambda s: s.name)
def test_round_trips(space):
    for seed in range(20):
        arc = space.random_arc(seed)
        assert space.encode(space.decode(arc)) == arc
        assert space.parse(space.format(arc)) == arc
        back_space, back_arc = spaces.from_json(json.loads(spaces.json_text(space, arc)))
        assert (back_space, back_arc) == (space, arc)


@pytest.mark.parametrize("space", ALL_DEFAULTS, ids=lambda s: s.name)
def test_names_and_choices_line_up(space):
    assert len(space.decision_names) == len(space.choices_per_decision)
    assert len(set(space.decision_names)) == space.num_decisions
    assert all(n >= 1 for n in space.choices_per_decision)


def test_random_arc_is_seeded_and_uniform():
    space = spaces.MicroSpace(num_nodes=2, num_ops=5)
    assert space.random_arc(7) == space.random_arc(7)
    assert space.random_arc(7) != space.random_arc(8)
    rng = np.random.default_rng(0)
    samples = np.array([space.random_arc(rng) for _ in range(4000)])
    # Decision 4 (node3/input_a) has 3 choices: each near 1/3.
    counts = np.bincount(samples[:, 4], minlength=3) / len(samples)
    np.testing.assert_allclose(counts, [1 / 3] * 3, atol=0.03)


def test_value_error_names_position_value_and_range():
    space = spaces.MicroSpace()
    arc = list(space.random_arc(0))
    arc[9] = 6  # normal/node4/op_a has 5 choices
    with pytest.raises(
        ArcError, match=r"position 9 \(normal/node4/op_a\) must be in \[0, 4\]; received: 6"
    ):
        space.validate(arc)
    arc[9] = -1
    with pytest.raises(ArcError, match="received: -1"):
        space.validate(arc)


def test_length_error_gives_expected_length_and_a_fitting_size():
    space = spaces.MicroSpace(num_nodes=5)
    with pytest.raises(
        ArcError,
        match=r"expected 40 integers .* received 32\. 32 integers fit a micro space "
        r"with num_nodes=4",
    ):
        space.validate([0] * 32)
    with pytest.raises(ArcError, match="received 0 .*empty"):
        space.parse("   ")
    with pytest.raises(ArcError, match="expected 78 integers"):
        spaces.MacroSpace(num_layers=12).validate([0] * 77)


@pytest.mark.parametrize(
    "bad, message",
    [
        ([0.5] * 40, "must be an integer; received: 0.5"),
        ([True] * 40, "must be an integer; received: True"),
        (["0"] * 40, "must be an integer; received: '0'"),
        ("0 1", "received a string"),
        (np.zeros((5, 8), np.int32), r"shape \(5, 8\)"),
    ],
)
def test_non_integers_are_rejected(bad, message):
    with pytest.raises(ArcError, match=message):
        spaces.MicroSpace().validate(bad)


def test_numpy_integers_are_accepted():
    space = spaces.MicroSpace()
    arc = space.random_arc(1)
    assert space.validate(np.asarray(arc, np.int32)) == arc


def test_parse_accepts_separators_and_names_bad_token():
    space = spaces.MicroSpace(num_nodes=1)
    assert space.parse("0 1 1 2 | 1,0\n0 4") == (0, 1, 1, 2, 1, 0, 0, 4)
    with pytest.raises(ArcError, match=r"position 2 must be an integer; received: '1\.5'"):
        space.parse("0 1 1.5 2 1 0 0 4")


def test_bad_sizes_are_rejected():
    with pytest.raises(ArcError, match="num_ops must be at most 6"):
        spaces.MacroSpace(num_ops=7)
    with pytest.raises(ArcError, match="num_nodes must be >= 1"):
        spaces.MicroSpace(num_nodes=0)
    with pytest.raises(ArcError, match="must be an integer"):
        spaces.RnnSpace(num_nodes=2.0)
    with pytest.raises(ArcError, match="no size parameter num_layers"):
        spaces.get_space("micro", num_layers=3)
    with pytest.raises(ArcError, match="Unknown search space 'cnn'"):
        spaces.get_space("cnn")


def test_from_json_errors():
    with pytest.raises(ArcError, match="not valid JSON"):
        spaces.from_json("{nope")
    with pytest.raises(ArcError, match='"space", "config" and "arc"'):
        spaces.from_json({"arc": [1]})
    with pytest.raises(ArcError, match="must be a list of integers"):
        spaces.from_json({"space": "micro", "config": {}, "arc": 3})
    space, arc = spaces.from_json(
        {"space": "rnn", "config": {"num_nodes": 2}, "arc": "0 1 1 3", "score": 0.5}
    )
    assert space == spaces.RnnSpace(num_nodes=2) and arc == (0, 1, 1, 3)


def test_load_arc_from_string_file_and_name(tmp_path):
    space = spaces.MicroSpace(num_nodes=2)
    arc = space.random_arc(3)
    text_file = tmp_path / "arc.txt"
    text_file.write_text(space.format(arc) + "\n")
    json_file = tmp_path / "arc.json"
    json_file.write_text(spaces.json_text(space, arc))
    assert spaces.load_arc(space.format(arc), space) == (space, arc)
    assert spaces.load_arc(str(text_file), space) == (space, arc)
    assert spaces.load_arc(str(json_file)) == (space, arc)
    with pytest.raises(ArcError, match="Cannot tell which space"):
        spaces.load_arc(str(text_file))
    with pytest.raises(ArcError, match=r"micro\(num_nodes=2, num_ops=5\), but micro\(num_nodes=5"):
        spaces.load_arc(str(json_file), spaces.MicroSpace())
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(ArcError, match="is empty; expected 16 integers"):
        spaces.load_arc(str(empty), space)
