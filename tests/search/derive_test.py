"""Tests of the derive step's outputs (`enas_tf.search.derive`)."""

import json

import tensorflow as tf

from enas_tf import spaces
from enas_tf.search import derive


def test_rank_orders_by_score():
    scored = [{"arc": "a", "s": 0.2}, {"arc": "b", "s": 0.9}, {"arc": "c", "s": 0.5}]
    assert [c["arc"] for c in derive.rank(scored, "s", True)] == ["b", "c", "a"]
    assert [c["arc"] for c in derive.rank(scored, "s", False)] == ["a", "c", "b"]


def test_write_outputs(tmp_path):
    space = spaces.MicroSpace(num_nodes=3)
    arcs = [space.format(space.random_arc(seed)) for seed in range(3)]
    ranked = derive.rank(
        [{"arc": a, "valid_accuracy": v} for a, v in zip(arcs, (0.3, 0.7, 0.5))],
        "valid_accuracy",
        True,
    )
    meta = {"valid_accuracy": 0.7, "epoch": 4, "seed": 1}
    writer = tf.summary.create_file_writer(str(tmp_path / "logs"))
    derive.write_outputs(str(tmp_path), space, ranked, "valid_accuracy", meta, 3, {"x": 1}, writer)
    assert (tmp_path / "best_arc.txt").read_text() == arcs[1] + "\n"
    best = spaces.load_arc(str(tmp_path / "best_arc.json"))
    assert space.format(best[1]) == arcs[1]
    candidates = json.loads((tmp_path / "candidates.json").read_text())
    assert [c["arc"] for c in candidates["candidates"]] == [arcs[1], arcs[2], arcs[0]]
    assert (
        candidates["epoch"] == 4 and candidates["samples"] == 3 and candidates["flags"] == {"x": 1}
    )
    assert (tmp_path / "best_arc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*derive.OUTPUT_FILES, "logs"])


def test_nan_scores_rank_last():
    scored = [
        {"arc": "a", "ppl": 118.0},
        {"arc": "b", "ppl": float("nan")},
        {"arc": "c", "ppl": 31.4},
    ]
    assert [c["arc"] for c in derive.rank(scored, "ppl", False)] == ["c", "a", "b"]
    assert [c["arc"] for c in derive.rank(scored, "ppl", True)] == ["a", "c", "b"]
