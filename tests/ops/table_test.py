"""Tests of the op table."""

import pytest

from enas_tf.ops import table
from enas_tf.spaces import MACRO_OPS, MICRO_OPS


@pytest.mark.parametrize("name", sorted(set(MACRO_OPS) | set(MICRO_OPS)))
def test_every_op_of_the_spaces_has_a_row(name):
    op = table.op(name)
    assert op.name == name and op.kind in table.KINDS
    if op.kind in ("conv", "sep_conv", "pool"):
        assert name.endswith(f"{op.kernel}x{op.kernel}")
    assert (op.pool is not None) == (op.kind == "pool")
    assert op.has_weights == (op.kind in ("conv", "sep_conv"))


def test_rows():
    assert table.op("sep_conv_5x5") == table.Op("sep_conv_5x5", "sep_conv", 5)
    assert table.op("max_pool_3x3").pool == "max"
    assert table.op("avg_pool_3x3").pool == "avg"
    assert table.op("identity").kernel == 1 and not table.op("identity").has_weights
    # DARTS's "none": in the table (relaxed cells mix it), in no space.
    none = table.op("none")
    assert none.kind == "zero" and not none.has_weights and not none.parameter_free
    assert "none" not in MICRO_OPS + MACRO_OPS
    free = [name for name in MICRO_OPS if table.op(name).parameter_free]
    assert free == ["avg_pool_3x3", "max_pool_3x3", "identity"]


def test_unknown_op():
    with pytest.raises(ValueError, match="Unknown op 'dil_conv_3x3'; the op table has conv_3x3"):
        table.op("dil_conv_3x3")
