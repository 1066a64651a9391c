"""Tests of the strategy registry (`enas_tf.strategies`)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from enas_tf import strategies
from enas_tf.configs.image import SearchConfig
from enas_tf.configs.lm import LmSearchConfig
from enas_tf.errors import UserError
from enas_tf.spaces import MacroSpace, MicroSpace, RnnSpace
from enas_tf.strategies.base import Strategy

# A strategy written as a user would add one: a module and nothing else (its
# TensorFlow imported inside `build`, so the tools' flags stay fast).
FIRST_CHOICE = '''
"""Always the first choice of every decision: a strategy in one module."""

import dataclasses

from enas_tf.errors import UserError


@dataclasses.dataclass(frozen=True)
class Config:
    choice: int = dataclasses.field(default=0, metadata={"help": "The choice."})

    def check(self, space):
        if self.choice != 0:
            raise UserError("only choice 0")


def build(config, space, *, seed, num_aggregate):
    import tensorflow as tf

    from enas_tf.controllers.build import Sample

    class FirstChoice(tf.Module):
        def __init__(self):
            super().__init__()
            self.space, self.num_aggregate = space, num_aggregate
            self.updates = tf.Variable(0, trainable=False)

        def sample(self, batch_size=1):
            zero = tf.zeros([batch_size])
            arc = tf.zeros([batch_size, self.space.num_decisions], tf.int32)
            return Sample(arc, zero, zero, zero, zero)

        def update(self, arcs, rewards):
            self.updates.assign_add(1)
            return {"reward": float(tf.reduce_mean(rewards)), "skipped": 0.0}

    return FirstChoice()
'''


@pytest.fixture
def first_choice(tmp_path, monkeypatch):
    """The FIRST_CHOICE module registered as strategy "first_choice" (its
    folder added to the package's path), removed after the test."""
    (tmp_path / "first_choice.py").write_text(textwrap.dedent(FIRST_CHOICE))
    monkeypatch.setattr(strategies, "__path__", [*strategies.__path__, str(tmp_path)])
    yield "first_choice"
    sys.modules.pop("enas_tf.strategies.first_choice", None)


def test_the_strategies_settings_load_without_tensorflow():
    """The tools read every strategy's `Config` before importing TensorFlow."""
    code = (
        "import sys\n"
        "from enas_tf import strategies\n"
        "for name in strategies.names():\n"
        "    strategies.default_config(name, 'lm')\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_strategy_without_settings(tmp_path, monkeypatch):
    (tmp_path / "nothing.py").write_text(
        '"""No settings."""\n\n\ndef build(config, space, *, seed, num_aggregate):\n'
        "    return config\n"
    )
    monkeypatch.setattr(strategies, "__path__", [*strategies.__path__, str(tmp_path)])
    try:
        assert strategies.config_class("nothing") is strategies.NoSettings
        config = SearchConfig.from_flat(algorithm="nothing")
        config.check()
        assert config.to_json()["strategy"] == {}
        assert strategies.build("nothing", config.strategy, MicroSpace()) == config.strategy
    finally:
        sys.modules.pop("enas_tf.strategies.nothing", None)


def test_names_and_descriptions():
    assert strategies.names() == ("darts", "evolution", "nas", "random", "reinforce")
    described = strategies.describe()
    assert list(described) == ["darts", "evolution", "nas", "random", "reinforce"]
    assert "softmax mixture" in described["darts"]
    assert "REINFORCE" in described["reinforce"]
    assert "evolution" in described["evolution"]
    assert "uniform" in described["random"]
    assert "without weight sharing" in described["nas"]
    # `scratch` holds settings the from-scratch strategies share; not one.
    assert "scratch" not in strategies.names()


def test_unknown_names_are_refused_with_the_choices():
    known = "one of darts, evolution, nas, random, reinforce; received 'annealing'"
    with pytest.raises(UserError, match=known):
        strategies.check_name("annealing")
    with pytest.raises(UserError, match="algorithm must be one of"):
        SearchConfig.from_flat(algorithm="annealing").check()
    with pytest.raises(UserError, match="algorithm must be one of"):
        LmSearchConfig.from_flat(algorithm="annealing").check()
    with pytest.raises(UserError, match="received 'annealing'"):
        strategies.build("annealing", SearchConfig(), MicroSpace())


@pytest.mark.parametrize("name", ["evolution", "nas", "random", "reinforce"])
@pytest.mark.parametrize(
    "space,kind",
    [(MicroSpace(num_nodes=2), "image"), (MacroSpace(num_layers=3), "image"), (RnnSpace(3), "lm")],
)
def test_every_strategy_follows_the_protocol(name, space, kind):
    config = strategies.default_config(name, kind)
    strategy = strategies.build(name, config, space, seed=1, num_aggregate=3)
    assert isinstance(strategy, Strategy)
    assert strategy.space == space and strategy.num_aggregate == 3
    sample = strategy.sample(3)
    arcs = sample.arc.numpy()
    assert arcs.shape == (3, space.num_decisions) and arcs.dtype == np.int32
    for arc in arcs:
        space.validate(list(arc))
    metrics = strategy.update(sample.arc, [0.5, np.nan, 0.7])
    assert metrics["reward"] == pytest.approx(0.6)
    assert metrics["skipped"] == 1.0


def test_a_new_module_is_a_new_strategy(first_choice):
    names = ("darts", "evolution", "first_choice", "nas", "random", "reinforce")
    assert strategies.names() == names
    assert strategies.describe()[first_choice].startswith("Always the first choice")
    config = SearchConfig.from_flat(algorithm=first_choice, choice=0)
    config.check()
    assert config.flat()["choice"] == 0 and config.to_json()["strategy"] == {"choice": 0}
    strategy = strategies.build(first_choice, config.strategy, MicroSpace(), num_aggregate=2)
    assert isinstance(strategy, Strategy)
    assert not strategy.sample(2).arc.numpy().any()


def test_a_new_strategy_runs_a_search(first_choice, tmp_path):
    from enas_tf import data
    from enas_tf.search.image import Search

    config = SearchConfig.from_flat(
        num_nodes=2,
        num_layers=3,
        out_filters=4,
        epochs=1,
        batch_size=256,
        controller_steps=2,
        num_aggregate=2,
        log_arcs=1,
        derive_samples=2,
        flip=False,
        pad=0,
        lr_t0=1,
        algorithm=first_choice,
    )
    search = Search(
        config, data.load_images("digits", valid_size=100), str(tmp_path / "run"), verbose=0
    )
    result = search.run()
    space = config.search_space()
    assert result["best_arc"] == space.format([0] * space.num_decisions)
    # Its state is checkpointed with the run: one update per controller step.
    assert int(search.sampler.updates.numpy()) == 2
    resumed = Search(
        config, data.load_images("digits", valid_size=100), str(tmp_path / "run"), verbose=0
    )
    assert resumed.resumed and int(resumed.sampler.updates.numpy()) == 2
