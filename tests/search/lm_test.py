"""Tests of the language-model search on tiny generated text (and PTB)."""

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from enas_tf import data, spaces
from enas_tf.configs.lm import LmSearchConfig
from enas_tf.errors import UserError
from enas_tf.lm import steps as lm_training
from enas_tf.search.lm import LmSearch
from enas_tf.testing import shared_ptb_dir, write_tiny_ptb

PTB_DIR = shared_ptb_dir()
# Shared weights that learn in 80 steps: light dropout and a learning rate
# that stays stable (the search's 20 diverges at this size).
TINY = LmSearchConfig.from_flat(
    num_nodes=3,
    hidden_size=8,
    drop_e=0.05,
    drop_i=0.1,
    drop_x=0.3,
    drop_l=0.1,
    drop_o=0.3,
    learning_rate=5.0,
    grad_bound=1.0,
    batch_size=4,
    bptt=5,
    epochs=1,
    max_steps_per_epoch=80,
    eval_batch_size=2,
    controller_steps=2,
    num_aggregate=2,
    log_arcs=2,
    derive_samples=3,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return data.load_ptb(write_tiny_ptb(str(tmp_path_factory.mktemp("tiny"))))


def test_search_derives_and_resumes(corpus, tmp_path):
    out = tmp_path / "run"
    search = LmSearch(TINY, corpus, str(out), verbose=0)
    result = search.run()
    space = spaces.RnnSpace(num_nodes=3)
    best = (out / "best_arc.txt").read_text().strip()
    assert best == result["best_arc"] and len(best.split()) == 6
    assert spaces.load_arc(str(out / "best_arc.json")) == (space, space.parse(best))
    candidates = json.loads((out / "candidates.json").read_text())
    scores = [c["valid_perplexity"] for c in candidates["candidates"]]
    assert scores == sorted(scores) and 1 <= len(scores) <= 3
    assert scores[0] == result["valid_perplexity"]
    # The shared weights learned: uniform is the vocabulary size, 31 (and
    # untrained shared weights score 31); the best of 3 reaches 17-19 (seeds
    # 0-2), about the unigram perplexity (19.9).
    assert 1.0 < scores[0] < 0.75 * corpus.vocab_size
    assert (out / "best_arc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # One trace of each step for every sampled architecture and window size.
    assert search.train_step.experimental_get_tracing_count() == 1
    assert search.eval_step.experimental_get_tracing_count() == 1
    log = [json.loads(line) for line in (out / "search_log.jsonl").open()]
    assert [row["epoch"] for row in log] == [1]
    assert log[0]["child/steps"] == 80 and math.isfinite(log[0]["child/perplexity"])
    assert "controller/baseline" in log[0] and len(log[0]["arcs"]) == 2
    assert "valid/sampled_arcs_perplexity" in log[0]
    assert int(search.position.numpy()) > 0  # 80 windows into the text

    # Resume: one more epoch continues from the checkpoint and the pointer.
    more = LmSearch(TINY.replace(epochs=2), corpus, str(out), verbose=0)
    assert more.resumed and int(more.epoch.numpy()) == 1
    assert int(more.position.numpy()) == int(search.position.numpy())
    for a, b in zip(search.model.weights, more.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(
        search.sampler.controller.weights[0].numpy(), more.sampler.controller.weights[0].numpy()
    )
    more.run()
    log = [json.loads(line) for line in (out / "search_log.jsonl").open()]
    assert [row["epoch"] for row in log] == [1, 2]


def test_reward_is_the_constant_over_minibatch_perplexity(corpus, tmp_path):
    search = LmSearch(TINY, corpus, str(tmp_path / "r"), verbose=0)
    arc = tf.constant(search.space.random_arc(0), tf.int32)
    x, y = search.reward_windows[0]
    nll, count, _ = lm_training.evaluation_loss(search.model, x, y, arc=arc)
    expected = 80.0 / math.exp(float(nll) / float(count))
    assert search._reward(arc) == pytest.approx(expected, rel=1e-5)
    assert int(search.reward_index.numpy()) == 1  # cyclic over the windows
    # Adam with the TF defaults (spec sec. 3.3), not the CNN scripts'.
    assert search.sampler.optimizer.beta_1 == 0.9
    assert search.sampler.optimizer.epsilon == 1e-8


def test_random_search_and_refusals(corpus, tmp_path):
    random = TINY.replace(algorithm="random")
    search = LmSearch(random, corpus, str(tmp_path / "r"), verbose=0)
    result = search.run()
    # The best is a valid arc of the space, the best-scored of the sampled
    # candidates, and scores what was recorded.
    space = spaces.RnnSpace(num_nodes=3)
    arc = space.parse(result["best_arc"])
    assert space.format(space.validate(list(arc))) == result["best_arc"]
    assert (tmp_path / "r" / "best_arc.txt").read_text().strip() == result["best_arc"]
    candidates = json.loads((tmp_path / "r" / "candidates.json").read_text())["candidates"]
    best = min(candidates, key=lambda c: c["valid_perplexity"])
    assert best == {"arc": result["best_arc"], "valid_perplexity": result["valid_perplexity"]}
    assert search.score(arc) == pytest.approx(result["valid_perplexity"], rel=1e-6)
    assert 1.0 < result["valid_perplexity"] < 0.75 * corpus.vocab_size
    with pytest.raises(UserError, match="search.algorithm: 'random' -> 'reinforce'"):
        LmSearch(TINY, corpus, str(tmp_path / "r"), verbose=0)
    # Splits too short for the sizes: refused before anything is written.
    with pytest.raises(UserError, match="--eval_batch_size=200"):
        LmSearch(TINY.replace(eval_batch_size=200), corpus, str(tmp_path / "short"))
    with pytest.raises(UserError, match="--batch_size=1000"):
        LmSearch(TINY.replace(batch_size=1000), corpus, str(tmp_path / "short"))
    assert not (tmp_path / "short").exists()


@pytest.mark.skipif(not PTB_DIR.is_dir(), reason="no PTB copy in ../shared/data/ptb")
def test_search_on_real_ptb(tmp_path):
    ptb = data.load_ptb(PTB_DIR)
    config = TINY.replace(
        hidden_size=16,
        batch_size=32,
        bptt=35,
        max_steps_per_epoch=2,
        controller_steps=1,
        eval_batch_size=64,
        derive_samples=1,
        log_arcs=1,
    )
    search = LmSearch(config, ptb, str(tmp_path / "ptb"), verbose=0)
    result = search.run()
    assert search.model.vocab_size == 10000
    # Two steps from a uniform-ish start: about the vocabulary size.
    assert 1000 < result["valid_perplexity"] < 20000
