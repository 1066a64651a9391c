"""Tests for enas_tf.data.ptb: tokenisation, vocabulary, batching, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from enas_tf.data import ptb
from enas_tf.errors import DataError
from enas_tf.testing import shared_ptb_dir

REAL_PTB = shared_ptb_dir()


def _enas_rule(text: str) -> list[str]:
    """The original ENAS preprocessing, literally."""
    return text.strip().replace("\n", "<eos>").split(" ") + ["<eos>"]


def _write_corpus(root: Path, train: str, valid: str, test: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        (root / f"{name}.txt").write_text(text)
    return root


class TestTokenize:
    def test_eos_placement(self):
        text = " the cat sat \n a dog \n\n"
        tokens = ptb.tokenize(text)
        assert tokens == ["the", "cat", "sat", "<eos>", "a", "dog", "<eos>"]
        assert tokens == _enas_rule(text)
        assert tokens.count("<eos>") == 2

    def test_spacing_does_not_matter(self):
        assert ptb.tokenize("a  b\nc\t d") == ["a", "b", "<eos>", "c", "d", "<eos>"]

    def test_empty(self):
        assert ptb.tokenize("  \n\n ") == []


class TestLoad:
    def test_vocab_and_ids(self, tmp_path):
        root = _write_corpus(tmp_path, " b a N \n c <unk> \n\n", " a c \n", " N \n")
        corpus = ptb.load_ptb(root)
        assert corpus.vocab == ("<eos>", "<unk>", "N", "a", "b", "c")
        assert corpus.vocab_size == 6
        assert corpus.word_to_id["a"] == 3
        np.testing.assert_array_equal(corpus.train, [4, 3, 2, 0, 5, 1, 0])
        np.testing.assert_array_equal(corpus.valid, [3, 5, 0])
        np.testing.assert_array_equal(corpus.test, [2, 0])
        assert corpus.train.dtype == np.int32
        assert "7 train, 3 valid, 2 test tokens" in corpus.summary()

    def test_oov_names_file_token_and_line(self, tmp_path):
        root = _write_corpus(tmp_path, " a b \n", " a \n b zebra \n", " a \n")
        with pytest.raises(DataError, match=r"valid\.txt, line 2: the word 'zebra'"):
            ptb.load_ptb(root)

    def test_oov_line_counts_leading_blank_lines(self, tmp_path):
        root = _write_corpus(tmp_path, " a \n", " a \n", "\n\n a \n x \n")
        with pytest.raises(DataError, match=r"test\.txt, line 4: the word 'x'"):
            ptb.load_ptb(root)

    def test_missing_directory_and_file(self, tmp_path):
        with pytest.raises(DataError, match="does not exist.*train.txt, valid.txt"):
            ptb.load_ptb(tmp_path / "nope")
        root = _write_corpus(tmp_path, " a \n", " a \n", " a \n")
        (root / "test.txt").unlink()
        with pytest.raises(DataError, match=r"test\.txt is missing.*Mikolov"):
            ptb.load_ptb(root)

    def test_empty_file(self, tmp_path):
        root = _write_corpus(tmp_path, " a \n", "\n\n", " a \n")
        with pytest.raises(DataError, match=r"valid\.txt is empty"):
            ptb.load_ptb(root)

    def test_binary_file(self, tmp_path):
        root = _write_corpus(tmp_path, " a \n", " a \n", " a \n")
        (root / "train.txt").write_bytes(b"\x1f\x8b\x08\x00\xff\xfe")
        with pytest.raises(DataError, match=r"train\.txt is not UTF-8 text"):
            ptb.load_ptb(root)
        (root / "train.txt").write_bytes(b"a\x00b\n")
        with pytest.raises(DataError, match="NUL"):
            ptb.load_ptb(root)


class TestBatching:
    def test_batchify(self):
        batched = ptb.batchify(np.arange(20), 3)
        np.testing.assert_array_equal(batched, np.arange(18).reshape(3, 6))
        assert batched.dtype == np.int32

    def test_windows(self):
        batched = ptb.batchify(np.arange(20), 3)
        assert ptb.num_windows(np.arange(20), 3, 2) == 2
        assert ptb.num_windows(batched, 3, 2) == 2
        got = list(ptb.windows(batched, 2))
        assert len(got) == 2
        np.testing.assert_array_equal(got[0][0], [[0, 1], [6, 7], [12, 13]])
        np.testing.assert_array_equal(got[0][1], [[1, 2], [7, 8], [13, 14]])
        np.testing.assert_array_equal(got[1][0], [[2, 3], [8, 9], [14, 15]])
        np.testing.assert_array_equal(got[1][1], [[3, 4], [9, 10], [15, 16]])

    def test_window_dataset_matches_windows(self):
        ids = np.arange(101)
        expected = list(ptb.windows(ptb.batchify(ids, 4), 3))
        got = [(x.numpy(), y.numpy()) for x, y in ptb.window_dataset(ids, 4, 3)]
        assert len(got) == len(expected) == ptb.num_windows(ids, 4, 3) == 8
        for (gx, gy), (ex, ey) in zip(got, expected):
            assert gx.dtype == np.int32 and gx.shape == (4, 3)
            np.testing.assert_array_equal(gx, ex)
            np.testing.assert_array_equal(gy, ey)

    def test_errors(self):
        with pytest.raises(DataError, match="larger than the token stream"):
            ptb.batchify(np.arange(5), 6)
        with pytest.raises(DataError, match="bptt must be at least 1"):
            ptb.num_windows(np.arange(50), 2, 0)
        with pytest.raises(DataError, match="batch_size must be at least 1"):
            ptb.batchify(np.arange(5), 0)
        with pytest.raises(DataError, match="too short"):
            list(ptb.windows(ptb.batchify(np.arange(10), 2), 5))
        with pytest.raises(DataError, match="rows"):
            ptb.num_windows(np.zeros((3, 4)), 2, 1)


@pytest.mark.skipif(not REAL_PTB.is_dir(), reason=f"{REAL_PTB} not present")
def test_real_ptb():
    corpus = ptb.load_ptb(REAL_PTB)
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (
        929_589,
        73_760,
        82_430,
    )
    assert corpus.vocab_size == 10_000
    ids = corpus.word_to_id
    assert (ids["<eos>"], ids["<unk>"], ids["N"], ids["#"]) == (43, 44, 45, 0)
    streams = {"train": corpus.train, "valid": corpus.valid, "test": corpus.test}
    for name, stream in streams.items():
        words = _enas_rule((REAL_PTB / f"{name}.txt").read_text())
        np.testing.assert_array_equal(stream, [ids[w] for w in words])
    assert ptb.num_windows(corpus.train, 64, 35) == 414
    assert ptb.num_windows(corpus.valid, 64, 35) == 32
    assert ptb.num_windows(corpus.train, 128, 35) == 207
