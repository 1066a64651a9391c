"""Tests of regularized evolution's population (`RegularizedEvolution`)."""

import numpy as np
import pytest
import tensorflow as tf

from enas_tf.spaces import MacroSpace, MicroSpace
from enas_tf.strategies.evolution.population import RegularizedEvolution


def filled(space, size=4, sample=2, **kwargs):
    """A full population whose member k has reward k (the oldest: 0)."""
    evo = RegularizedEvolution(space, population_size=size, sample_size=sample, seed=0, **kwargs)
    arcs = np.stack([space.random_arc(k) for k in range(size)]).astype(np.int32)
    evo.update(arcs, np.arange(size, dtype=np.float32))
    return evo, arcs


def test_random_proposals_until_full_then_mutants_of_members():
    space = MicroSpace(num_nodes=3)
    evo = RegularizedEvolution(space, population_size=4, sample_size=2, seed=0)
    first = evo.sample(3).arc.numpy()
    evo.update(first, [0.1, 0.2, 0.3])
    assert evo.size == 3 and evo.sample(1).arc.shape == (1, space.num_decisions)
    evo.update(evo.sample(1).arc, [0.4])
    # Full: every proposal is one decision away from a member.
    members, _ = evo.members()
    for child in evo.sample(50).arc.numpy():
        distances = (members != child).sum(axis=1)
        assert distances.min() == 1


def test_the_oldest_dies():
    space = MacroSpace(num_layers=3)
    evo, arcs = filled(space)
    newcomer = np.array([space.random_arc(99)], np.int32)
    metrics = evo.update(newcomer, [10.0])
    members, rewards = evo.members()  # oldest first
    np.testing.assert_array_equal(members, np.concatenate([arcs[1:], newcomer]))
    np.testing.assert_array_equal(rewards, [1, 2, 3, 10])
    assert metrics["population_size"] == 4 and metrics["population_best"] == 10.0
    assert metrics["population_mean"] == pytest.approx(4.0)
    # Five more: the ring turned over, the last four remain in order.
    more = np.stack([space.random_arc(k) for k in range(100, 105)]).astype(np.int32)
    evo.update(more, np.arange(5, dtype=np.float32))
    np.testing.assert_array_equal(evo.members()[0], more[1:])
    assert int(evo.admitted.numpy()) == 10


def test_non_finite_rewards_are_not_admitted():
    space = MacroSpace(num_layers=3)
    evo, _ = filled(space)
    before = evo.members()
    metrics = evo.update(np.array([space.random_arc(7)] * 2, np.int32), [np.nan, np.inf])
    assert metrics["skipped"] == 2.0 and metrics["reward"] == 0.0
    np.testing.assert_array_equal(evo.members()[0], before[0])


def test_tournament_picks_the_best_of_the_drawn():
    space = MicroSpace(num_nodes=2)
    # sample_size = population: always the best member.
    evo, arcs = filled(space, size=5, sample=5)
    np.testing.assert_array_equal(evo.tournament(20), np.repeat(arcs[4:], 20, axis=0))
    # sample_size 1: a uniform draw, every member wins sometimes.
    evo, arcs = filled(space, size=5, sample=1)
    winners = {tuple(a) for a in evo.tournament(400)}
    assert winners == {tuple(a) for a in arcs}
    # sample_size 2 of 5: member k wins when drawn with a worse one; the
    # worst never wins, the best wins 2/5 of the time (P(drawn)).
    evo, arcs = filled(space, size=5, sample=2)
    wins = evo.tournament(5000)
    counts = [int((wins == arc).all(axis=1).sum()) for arc in arcs]
    assert counts[0] == 0
    np.testing.assert_allclose(np.array(counts) / 5000, [0, 0.1, 0.2, 0.3, 0.4], atol=0.03)


@pytest.mark.parametrize(
    "space", [MicroSpace(num_nodes=3), MacroSpace(num_layers=4), MicroSpace(num_nodes=2, num_ops=1)]
)
def test_mutation_changes_one_decision_to_a_valid_value(space):
    evo = RegularizedEvolution(space, population_size=2, sample_size=1, seed=3)
    parents = np.stack([space.random_arc(k) for k in range(2000)]).astype(np.int32)
    children = evo.mutate(parents)
    changed = parents != children
    assert (changed.sum(axis=1) == 1).all()
    for child in children[:200]:
        space.validate(list(child))
    choices = np.array(space.choices_per_decision)
    assert (children < choices).all() and (children >= 0).all()
    # Every decision with a choice is mutated, none without.
    positions = np.flatnonzero(changed.any(axis=0))
    np.testing.assert_array_equal(positions, np.flatnonzero(choices > 1))
    # The new value is uniform over the other values: for a 5-way op, 4.
    column = int(np.argmax(choices))
    rows = changed[:, column]
    shifts = (children[rows, column] - parents[rows, column]) % choices[column]
    assert set(shifts.tolist()) == set(range(1, choices[column]))


def test_training_architectures_and_candidates():
    space = MicroSpace(num_nodes=2)
    evo, arcs = filled(space, size=5, sample=2, train_arcs="population")
    trained = {tuple(a) for a in evo.train_sample(100).arc.numpy()}
    assert trained == {tuple(a) for a in arcs}
    # Candidates: distinct members, best first.
    evo.update(arcs[4:], [2.5])  # a copy of the best, admitted again
    np.testing.assert_array_equal(evo.candidates(3), arcs[[4, 3, 2]])
    uniform, _ = filled(space, size=5, sample=2)
    drawn = {tuple(a) for a in uniform.train_sample(100).arc.numpy()}
    assert len(drawn - {tuple(a) for a in arcs}) > 90
    empty = RegularizedEvolution(space, population_size=3, seed=0, sample_size=2)
    assert empty.candidates(4).shape == (4, space.num_decisions)


def test_a_restored_population_proposes_the_same(tmp_path):
    space = MacroSpace(num_layers=4)
    evo, _ = filled(space, size=6, sample=3)
    evo.update(evo.sample(2).arc, [0.5, 0.6])
    path = tf.train.Checkpoint(evo=evo).save(str(tmp_path / "ckpt"))
    expected = evo.sample(4).arc.numpy()
    other = RegularizedEvolution(space, population_size=6, sample_size=3, seed=11)
    tf.train.Checkpoint(evo=other).restore(path).assert_consumed()
    np.testing.assert_array_equal(other.sample(4).arc.numpy(), expected)
    np.testing.assert_array_equal(other.members()[0], evo.members()[0])


def test_bad_settings():
    space = MicroSpace(num_nodes=2)
    with pytest.raises(ValueError, match="sample_size"):
        RegularizedEvolution(space, population_size=3, sample_size=4)
    with pytest.raises(ValueError, match="train_arcs"):
        RegularizedEvolution(space, train_arcs="best")
