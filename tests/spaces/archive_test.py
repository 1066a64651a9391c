"""Every published architecture parses unchanged and formats back."""

import json

import pytest

from enas_tf import spaces
from enas_tf.errors import ArcError
from enas_tf.spaces import archive


@pytest.mark.parametrize("name", sorted(archive.PUBLISHED))
def test_published_round_trips(name):
    entry = archive.get(name)
    space = spaces.get_space(entry.space, **entry.config)
    arc = space.parse(entry.arc)
    assert space.format(arc) == entry.arc
    assert space.encode(space.decode(arc)) == arc
    again = spaces.from_json(json.loads(spaces.json_text(space, arc, name=name)))
    assert again == (space, arc)


def test_expected_lengths():
    lengths = {n: len(archive.get(n).arc.split()) for n in archive.PUBLISHED}
    assert lengths == {
        "enas_macro_final": 300,
        "enas_micro_final": 40,
        "enas_lm_ptb": 16,
        "darts_rnn_ptb": 16,
        "enas_ptb_legacy": 23,
    }


def test_unknown_name():
    with pytest.raises(
        ArcError, match="Unknown published architecture 'nope'; known: darts_rnn_ptb"
    ):
        archive.get("nope")
