"""Tests of the language-model export (SavedModel scoring token ids)."""

import json

import numpy as np
import pytest
import tensorflow as tf

from enas_tf import data
from enas_tf.configs.lm import LmTrainConfig
from enas_tf.errors import UserError
from enas_tf.export import lm as export_lm
from enas_tf.spaces import RnnSpace
from enas_tf.testing import write_tiny_ptb
from enas_tf.train.lm import train_lm

SPACE = RnnSpace(num_nodes=3)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained language-model run and its corpus."""
    root = tmp_path_factory.mktemp("lm")
    corpus = data.load_ptb(write_tiny_ptb(str(root / "text")))
    config = LmTrainConfig(
        hidden_size=8, batch_size=4, bptt=5, epochs=1, max_steps_per_epoch=3, eval_batch_size=2
    )
    train_lm(SPACE, SPACE.parse("0 2 1 0 1 3"), config, corpus, str(root / "run"), verbose=0)
    return root / "run", corpus


def test_export_matches_the_keras_model(run, tmp_path):
    run_dir, corpus = run
    tokens = export_lm.sample_sequences(corpus.test, 4, length=21)
    out = tmp_path / "export"
    report = export_lm.export_lm_run(run_dir, out, tokens)
    assert report["passed"], report
    assert report["artifacts"]["saved_model"]["max_abs_diff"] < 1e-5
    assert report["artifacts"]["pieces"]["passed"]
    tflite = report["artifacts"]["tflite_float32"]
    # TF 2.21 lowers the batch-1 recurrence to builtin ops, and it matches.
    assert tflite["passed"] and tflite["ops"] == "builtins"
    assert json.loads((out / "export_report.json").read_text()) == report

    # The signatures, reloaded: log-probabilities of the next tokens, and a
    # state that continues the text.
    loaded = tf.saved_model.load(str(out / "saved_model"))
    model = export_lm.load_lm_model(run_dir, export_lm.read_lm_summary(run_dir))
    whole = loaded.signatures["serving_default"](tokens=tf.constant(tokens))
    assert whole["log_probs"].shape == (4, 20) and whole["perplexity"].shape == (4,)
    logits = model(tokens[:, :-1]).logits.numpy()
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = np.take_along_axis(log_softmax, tokens[:, 1:, None], -1)[..., 0]
    np.testing.assert_allclose(whole["log_probs"], expected, atol=1e-5)
    np.testing.assert_allclose(whole["perplexity"], np.exp(-expected.mean(axis=1)), rtol=1e-5)
    first = loaded.signatures["serving_default"](tokens=tf.constant(tokens[:, :8]))
    rest = loaded.signatures["score_with_state"](
        tokens=tf.constant(tokens[:, 7:]), state=first["state"]
    )
    np.testing.assert_allclose(
        np.concatenate([first["log_probs"], rest["log_probs"]], 1), expected, atol=1e-5
    )


def test_refusals(run, tmp_path):
    run_dir, corpus = run
    tokens = export_lm.sample_sequences(corpus.test, 2, length=10)
    with pytest.raises(UserError, match="not the summary of a language-model run"):
        (tmp_path / "cnn").mkdir()
        (tmp_path / "cnn" / "summary.json").write_text('{"dataset": "digits"}')
        export_lm.export_lm_run(tmp_path / "cnn", tmp_path / "e", tokens)
    with pytest.raises(UserError, match=r"expected \[N, time >= 3\]"):
        export_lm.export_lm_run(run_dir, tmp_path / "e", tokens[:, :2])
    with pytest.raises(UserError, match="needs at least 65"):
        export_lm.sample_sequences(corpus.test[:10], 4)
    assert not (tmp_path / "e").exists()
