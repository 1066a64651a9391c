"""What a controller has learned: Adam & Lorraine (2019), sec. 4.

Every epoch, `controller_diagnostics` samples `DIAGNOSTIC_ARCS` (100)
architectures and takes the controller's embedding of each (its last LSTM
output, `Sample.embedding`):

- `hidden_states`: the embeddings as an image, one row per architecture
  (values in (-1, 1) shown from black to white), for TensorBoard;
- `embedding_spearman_connections` and `embedding_spearman_ops`: the
  Spearman rank correlation, over every pair of the architectures, between
  the distance of their embeddings and the number of connection decisions
  (inputs, skips) or op decisions (ops, activations) they share. A
  controller whose embedding encodes the architecture gives clearly
  negative values (similar architectures lie close); the paper found the
  ENAS controller's near 0.

The draws use the controller's own sampler with its random state put back
afterwards, so the search samples what it would without the diagnostics.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from enas_tf.spaces.base import SearchSpace

DIAGNOSTIC_ARCS = 100
# Last part of a decision's name for op decisions; the others are connections.
_OP_DECISIONS = ("op", "op_a", "op_b", "activation")


def op_decisions(space: SearchSpace) -> np.ndarray:
    """bool `[D]`: which decisions of `space` choose an op (the others
    choose connections)."""
    return np.array([name.rsplit("/", 1)[-1] in _OP_DECISIONS for name in space.decision_names])


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 0 of a 1-D array, ties sharing their average rank."""
    order = np.argsort(values, kind="stable")
    ranked = np.empty(len(values), np.float64)
    ranked[order] = np.arange(len(values), dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranked)
    return (sums / counts)[inverse]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (NaN when either side is constant)."""
    rx, ry = ranks(np.asarray(x, np.float64)), ranks(np.asarray(y, np.float64))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


def embedding_correlations(
    space: SearchSpace, arcs: np.ndarray, embeddings: np.ndarray
) -> dict[str, float]:
    """Spearman correlations between pairwise embedding distances and the
    connection and op decisions shared (module docstring)."""
    arcs, embeddings = np.asarray(arcs), np.asarray(embeddings, np.float64)
    upper = np.triu_indices(len(arcs), k=1)
    distance = np.linalg.norm(embeddings[:, None, :] - embeddings[None, :, :], axis=-1)[upper]
    same = (arcs[:, None, :] == arcs[None, :, :])[upper]  # [pairs, D]
    ops = op_decisions(space)
    return {
        "embedding_spearman_connections": spearman(distance, same[:, ~ops].sum(-1)),
        "embedding_spearman_ops": spearman(distance, same[:, ops].sum(-1)),
    }


def controller_diagnostics(controller, n: int = DIAGNOSTIC_ARCS) -> dict[str, object]:
    """The epoch's diagnostics of `controller` (module docstring): the two
    correlations (floats) and `hidden_states`, a float32 `[n, S, 1]` image
    in [0, 1]."""
    generator = controller._generator  # noqa: SLF001 - put back below
    state = tf.identity(generator.state)
    sample = controller.sample(n)
    generator.state.assign(state)
    embeddings = sample.embedding.numpy()
    return {
        **embedding_correlations(controller.space, sample.arc.numpy(), embeddings),
        "hidden_states": ((embeddings + 1.0) / 2.0)[:, :, None].astype(np.float32),
    }
