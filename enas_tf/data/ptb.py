"""Penn Treebank (Mikolov's language-modelling split), tokenised as ENAS does.

Tokenisation rule. The original ENAS preprocessing reads a whole file, strips
leading/trailing whitespace, replaces every "\\n" by "<eos>", splits on single
spaces and appends one final "<eos>". In the PTB files every line starts and
ends with one space (" w1 w2 ... wn \\n"), so a line break becomes
"wn <eos> w1" and no empty strings arise. `tokenize` implements the same
result in a form that does not depend on that spacing: strip the whole text,
cut it into lines at "\\n", split each line on whitespace and end each line
with "<eos>". On the PTB files both rules give identical token streams
(train 929,589 / valid 73,760 / test 82,430 tokens: the whitespace words plus
one "<eos>" per line; the empty last line is removed by the strip).

The vocabulary is the sorted (Python `str` order) set of training tokens, so
ids are reproducible: "#" = 0, "<eos>" = 43, "<unk>" = 44, "N" = 45; 10,000
words in all. Valid/test tokens must occur in the training vocabulary.

Batching follows ENAS/Zaremba: `batchify` cuts the id stream into `batch_size`
contiguous rows, and `windows` walks them in `bptt`-long windows, the targets
being the inputs shifted by one token.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from enas_tf.errors import DataError

if TYPE_CHECKING:
    import tensorflow as tf

EOS = "<eos>"
PTB_FILES = ("train.txt", "valid.txt", "test.txt")
_FORMAT = (
    "the directory must hold train.txt, valid.txt and test.txt in the standard "
    "Penn Treebank (Mikolov) format: one sentence per line, words separated by "
    "spaces, rare words replaced by <unk>"
)


@dataclasses.dataclass(frozen=True, eq=False)
class PtbCorpus:
    """The three PTB splits as int32 id streams.

    Attributes:
      train: int32 [N_train] token ids.
      valid: int32 [N_valid] token ids.
      test: int32 [N_test] token ids.
      vocab: id -> word, sorted.
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    vocab: tuple[str, ...]

    @functools.cached_property
    def word_to_id(self) -> Mapping[str, int]:
        """Read-only word -> id mapping."""
        return types.MappingProxyType({w: i for i, w in enumerate(self.vocab)})

    @property
    def vocab_size(self) -> int:
        """Number of distinct words, including "<eos>"."""
        return len(self.vocab)

    def summary(self) -> str:
        """Returns a one-line description with the split sizes."""
        return (
            f"ptb: {len(self.train)} train, {len(self.valid)} valid, "
            f"{len(self.test)} test tokens; vocabulary {self.vocab_size}"
        )


def tokenize(text: str) -> list[str]:
    """Splits PTB text into words, ending each line with "<eos>".

    Args:
      text: the whole file.

    Returns:
      The tokens: for each line of `text.strip()`, its whitespace-separated
      words followed by "<eos>". Empty text gives an empty list.
    """
    return [token for _, tokens in _lines(text) for token in tokens]


def load_ptb(data_dir: str | Path) -> PtbCorpus:
    """Reads train.txt, valid.txt and test.txt from `data_dir`.

    Args:
      data_dir: the directory holding the three files.

    Returns:
      The `PtbCorpus`.

    Raises:
      DataError: a missing directory or file, an empty or non-text file, or a
        valid/test token missing from the training vocabulary.
    """
    if data_dir is None:
        raise DataError(f"No Penn Treebank directory was given; {_FORMAT}.")
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"Penn Treebank directory {root} does not exist; {_FORMAT}.")
    texts = {name: _read_text(root / name) for name in PTB_FILES}
    train_tokens = tokenize(texts["train.txt"])
    vocab = tuple(sorted(set(train_tokens)))
    word_to_id = {w: i for i, w in enumerate(vocab)}
    streams = {"train.txt": np.array([word_to_id[w] for w in train_tokens], np.int32)}
    for name in PTB_FILES[1:]:
        ids = []
        for line_no, tokens in _lines(texts[name]):
            for token in tokens:
                index = word_to_id.get(token)
                if index is None:
                    raise DataError(
                        f"{root / name}, line {line_no}: the word {token!r} does not "
                        "occur in train.txt, so it has no id. In the standard PTB "
                        "files every rare word is already <unk>; use the matching "
                        f"train/valid/test files ({_FORMAT})."
                    )
                ids.append(index)
        streams[name] = np.array(ids, np.int32)
    return PtbCorpus(
        train=streams["train.txt"],
        valid=streams["valid.txt"],
        test=streams["test.txt"],
        vocab=vocab,
    )


def batchify(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """Cuts a token stream into `batch_size` contiguous rows.

    Args:
      ids: int [N] token ids.
      batch_size: number of rows.

    Returns:
      int32 [batch_size, N // batch_size]: row r is the contiguous stream
      `ids[r * L : (r + 1) * L]`; the last `N % batch_size` ids are dropped.

    Raises:
      DataError: a batch size < 1 or larger than the stream.
    """
    ids = np.asarray(ids).reshape(-1)
    _check_positive("batch_size", batch_size)
    length = len(ids) // batch_size
    if length == 0:
        raise DataError(
            f"batch_size={batch_size} is larger than the token stream "
            f"({len(ids)} tokens); use a batch size of at most {len(ids)}."
        )
    return ids[: batch_size * length].reshape(batch_size, length).astype(np.int32)


def num_windows(ids_or_batched: np.ndarray, batch_size: int, bptt: int) -> int:
    """Number of full `bptt` windows: `((N // batch_size) - 1) // bptt`.

    Args:
      ids_or_batched: the flat stream [N] or its `batchify` output.
      batch_size: rows per batch (must match a batched input).
      bptt: window length.

    Returns:
      The number of windows (0 when a row is shorter than bptt + 1).

    Raises:
      DataError: a bad batch size or bptt < 1.
    """
    _check_positive("batch_size", batch_size)
    _check_positive("bptt", bptt)
    shape = np.shape(ids_or_batched)
    if len(shape) == 2:
        if shape[0] != batch_size:
            raise DataError(
                f"The batched stream has {shape[0]} rows but batch_size is {batch_size}."
            )
        length = shape[1]
    else:
        length = int(np.prod(shape)) // batch_size
    return max(length - 1, 0) // bptt


def windows(batched: np.ndarray, bptt: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Iterates over the `bptt` windows of a batched stream, in order.

    Args:
      batched: int [batch, L], from `batchify`.
      bptt: window length.

    Yields:
      `(x, y)`, both int32 [batch, bptt]: for window k, x holds columns
      [bptt * k, bptt * k + bptt) and y the same columns shifted by one.

    Raises:
      DataError: bptt < 1, or rows too short for a single window.
    """
    batched = np.asarray(batched, np.int32)
    if batched.ndim != 2:
        raise DataError(f"windows needs a [batch, L] array, got {batched.shape}.")
    count = _window_count(batched, bptt)
    for k in range(count):
        start = bptt * k
        yield (
            batched[:, start : start + bptt],
            batched[:, start + 1 : start + bptt + 1],
        )


def window_dataset(ids: np.ndarray, batch_size: int, bptt: int) -> tf.data.Dataset:
    """The windows of `batchify(ids, batch_size)` as a `tf.data.Dataset`.

    Args:
      ids: int [N] token ids.
      batch_size: rows per batch.
      bptt: window length.

    Returns:
      A `tf.data.Dataset` of `(x, y)` int32 [batch_size, bptt], in order.

    Raises:
      DataError: a bad batch size, bptt < 1, or a stream too short for one
        window.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    batched = batchify(ids, batch_size)
    count = _window_count(batched, bptt)
    span = count * bptt

    def stack(offset: int) -> np.ndarray:
        cols = batched[:, offset : offset + span]
        return np.ascontiguousarray(cols.reshape(batch_size, count, bptt).transpose(1, 0, 2))

    return tf.data.Dataset.from_tensor_slices((stack(0), stack(1)))


def _window_count(batched: np.ndarray, bptt: int) -> int:
    """`num_windows` for a batched array; raises when there is none."""
    count = num_windows(batched, batched.shape[0], bptt)
    if count == 0:
        raise DataError(
            f"The token stream is too short: each of the {batched.shape[0]} rows "
            f"has {batched.shape[1]} tokens, but one window of bptt={bptt} needs "
            f"{bptt + 1}. Use a smaller batch size or bptt."
        )
    return count


def _check_positive(name: str, value: int) -> None:
    """Raises DataError unless `value` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataError(f"{name} must be an integer, got {value!r}.")
    if value < 1:
        raise DataError(f"{name} must be at least 1, got {value}.")


def _lines(text: str) -> Iterator[tuple[int, list[str]]]:
    """Yields (1-based line number in `text`, tokens ending in "<eos>")."""
    stripped = text.strip()
    if not stripped:
        return
    first = text[: len(text) - len(text.lstrip())].count("\n") + 1
    for offset, line in enumerate(stripped.split("\n")):
        yield first + offset, line.split() + [EOS]


def _read_text(path: Path) -> str:
    """Reads a UTF-8 text file that must contain at least one word."""
    if not path.is_file():
        raise DataError(f"Penn Treebank file {path} is missing; {_FORMAT}.")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"Cannot read {path}: {e.strerror or e}.") from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path} is not UTF-8 text (undecodable byte at offset {e.start}); {_FORMAT}."
        ) from e
    if "\x00" in text:
        raise DataError(f"{path} contains NUL bytes, so it is not text; {_FORMAT}.")
    if not text.strip():
        raise DataError(f"{path} is empty; {_FORMAT}.")
    return text
