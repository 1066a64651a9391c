"""Tests of the search loop on a tiny supernet (digits)."""

import json

import pytest

from enas_tf import data, spaces
from enas_tf.config import SearchConfig
from enas_tf.errors import UserError
from enas_tf.search import Search

TINY = SearchConfig(
    num_nodes=2, num_layers=3, out_filters=4, epochs=1, batch_size=256,
    controller_steps=2, num_aggregate=3, log_arcs=2, derive_samples=4,
    flip=False, pad=1, lr_t0=1,
)


@pytest.fixture(scope="module")
def digits():
    return data.load_images("digits", valid_size=100)


def test_search_derives_and_resumes(digits, tmp_path):
    out = str(tmp_path / "run")
    search = Search(TINY, digits, out, verbose=0)
    result = search.run()
    space = spaces.MicroSpace(num_nodes=2)
    best = (tmp_path / "run" / "best_arc.txt").read_text().strip()
    assert best == result["best_arc"]
    assert spaces.load_arc(str(tmp_path / "run" / "best_arc.json")) == (space, space.parse(best))
    candidates = json.loads((tmp_path / "run" / "candidates.json").read_text())
    scores = [c["valid_accuracy"] for c in candidates["candidates"]]
    assert scores == sorted(scores, reverse=True) and 1 <= len(scores) <= 4
    assert candidates["candidates"][0]["arc"] == best
    assert candidates["flags"]["search"]["num_nodes"] == 2
    # One trace of the child step for every sampled architecture.
    assert search.child_step.experimental_get_tracing_count() == 1
    log = [json.loads(line) for line in (tmp_path / "run" / "search_log.jsonl").open()]
    assert [row["epoch"] for row in log] == [1]
    assert "controller/baseline" in log[0] and len(log[0]["arcs"]) == 2

    # Resume: one more epoch continues from the checkpoint.
    more = Search(TINY.__class__(**{**TINY.__dict__, "epochs": 2}), digits, out, verbose=0)
    assert more.resumed and int(more.epoch.numpy()) == 1
    more.run()
    log = [json.loads(line) for line in (tmp_path / "run" / "search_log.jsonl").open()]
    assert [row["epoch"] for row in log] == [1, 2]


def test_random_search_and_refusals(digits, tmp_path):
    random = TINY.__class__(**{**TINY.__dict__, "controller": "random"})
    result = Search(random, digits, str(tmp_path / "r"), verbose=0).run()
    assert len(result["best_arc"].split()) == 16
    with pytest.raises(UserError, match="search.controller: 'random' -> 'reinforce'"):
        Search(TINY, digits, str(tmp_path / "r"), verbose=0)
    with pytest.raises(UserError, match="validation split"):
        Search(TINY, data.load_images("digits", valid_size=0), str(tmp_path / "v"))
