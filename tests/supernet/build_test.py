"""Tests of building a search's supernet and saving its weights
(`enas_tf.supernet.build`)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas_tf.configs.image import SearchConfig
from enas_tf.supernet.build import build_supernet, recalibrated, weights_checkpoint
from enas_tf.supernet.macro import MacroSupernet
from enas_tf.supernet.micro import MicroSupernet

SHAPE = (8, 8, 3)
MICRO = SearchConfig.from_flat(num_nodes=2, num_layers=3, out_filters=4, keep_prob=0.8)
MACRO = SearchConfig.from_flat(space="macro", num_layers=2, num_ops=6, out_filters=4, keep_prob=0.7)


def test_micro_supernet_has_the_config_sizes():
    net = build_supernet(MICRO, SHAPE, 5)
    assert type(net) is MicroSupernet
    assert (net.num_nodes, net.num_ops, net.num_layers) == (2, 5, 3)
    assert (net.out_filters, net.keep_prob, net.num_classes) == (4, 0.8, 5)
    assert net.image_shape == SHAPE
    assert net.space == MICRO.search_space()
    assert net.cell_output == "all"
    # C0 = 4: the stem has 3 * C0 channels; cells 0 .. L + 1.
    assert net.shared["stem.conv"].shape == (3, 3, 3, 12)
    assert "cell4.in.y.conv" in net.shared and "cell5.in.y.conv" not in net.shared
    assert net.shared["logits.fc"].shape[-1] == 5


def test_the_search_cell_output_reaches_the_supernet():
    """`--cell_output=loose_ends` searches the paper's cells (the setting was
    recorded but not passed on before)."""
    net = build_supernet(MICRO.replace(cell_output="loose_ends"), SHAPE, 5)
    assert net.cell_output == "loose_ends"
    # Loose ends: the reduction cells calibrate their two inputs' ends.
    assert any(".end0" in k for k in net.shared)
    assert not any(".end0" in k for k in build_supernet(MICRO, SHAPE, 5).shared)


def test_macro_supernet_has_the_config_sizes():
    net = build_supernet(MACRO, SHAPE, 7)
    assert type(net) is MacroSupernet
    assert (net.num_layers, net.num_ops, net.out_filters) == (2, 6, 4)
    assert (net.keep_prob, net.num_classes, net.image_shape) == (0.7, 7, SHAPE)
    assert net.space == MACRO.search_space()
    assert net.shared["stem.conv"].shape == (3, 3, 3, 4)
    assert {name.split(".")[0] for name in net.shared if name.startswith("layer")} == {
        "layer0",
        "layer1",
    }
    arc = tf.constant(net.space.random_arc(0), tf.int32)
    logits = net(tf.zeros([2, *SHAPE]), arc=arc)
    assert logits.shape == (2, 7)


@pytest.mark.parametrize("config", [MICRO, MACRO], ids=["micro", "macro"])
def test_weights_checkpoint_holds_every_shared_variable(tmp_path, config):
    keras.utils.set_random_seed(0)
    net = build_supernet(config, SHAPE, 5)
    # The shared variables are all of the network's variables.
    assert {id(v) for v in net.variables} == {id(v) for v in net.shared.values()}
    # Moving statistics away from their initial 0 / 1, to see them restored.
    for name, v in net.shared.items():
        if name.endswith((".mean", ".var")):
            v.assign(np.full(v.shape, 0.5, np.float32))
    saved = {name: v.numpy() for name, v in net.shared.items()}
    path = weights_checkpoint(net).write(str(tmp_path / "weights"))
    keys = {key for key, _ in tf.train.list_variables(path)}
    # (object names escape "." as "..")
    assert keys - {"_CHECKPOINTABLE_OBJECT_GRAPH"} == {
        f"{name.replace('.', '..')}/.ATTRIBUTES/VARIABLE_VALUE" for name in net.shared
    }
    keras.utils.set_random_seed(1)
    other = build_supernet(config, SHAPE, 5)
    assert not np.array_equal(other.shared["stem.conv"].numpy(), saved["stem.conv"])
    weights_checkpoint(other).read(path).assert_consumed()
    for name, value in saved.items():
        np.testing.assert_array_equal(other.shared[name].numpy(), value, err_msg=name)


def _fake_update(net, values):
    """An `update` that moves the stem's statistics towards `values[batch]`,
    as a training step of the network does (momentum `net.bn_momentum`)."""
    bn, m = net.bns["stem.bn"], net.bn_momentum

    def update(batch):
        mean, var = values[batch]
        bn.mean.assign(m * bn.mean.numpy() + (1 - m) * mean)
        bn.var.assign(m * bn.var.numpy() + (1 - m) * var)

    return update


def test_recalibrated_statistics_are_the_batches_debiased_and_restored():
    net = build_supernet(MACRO, SHAPE, 5)
    for name, v in net.shared.items():
        if name.endswith((".mean", ".var")):
            v.assign(np.full(v.shape, 0.5, np.float32))
    before = {name: v.numpy() for name, v in net.shared.items()}
    values = {0: (2.0, 4.0), 1: (-1.0, 1.0), 2: (3.0, 2.0)}
    m = net.bn_momentum
    weights = np.array([(1 - m) * m ** (2 - i) for i in range(3)]) / (1 - m**3)
    with recalibrated(net, _fake_update(net, values), [0, 1, 2]):
        stem = net.bns["stem.bn"]
        expected_mean = sum(w * values[i][0] for i, w in enumerate(weights))
        expected_var = sum(w * values[i][1] for i, w in enumerate(weights))
        np.testing.assert_allclose(stem.mean.numpy(), expected_mean, rtol=1e-5)
        np.testing.assert_allclose(stem.var.numpy(), expected_var, rtol=1e-5)
        # Statistics the updates did not touch are neutral.
        np.testing.assert_allclose(net.shared["layer0.op.in.bn.mean"].numpy(), 0.0, atol=1e-6)
        np.testing.assert_allclose(net.shared["layer0.op.in.bn.var"].numpy(), 1.0, atol=1e-6)
    for name, value in before.items():
        np.testing.assert_array_equal(net.shared[name].numpy(), value, err_msg=name)


def test_recalibrated_with_one_batch_gives_its_statistics():
    net = build_supernet(MACRO, SHAPE, 5)
    with recalibrated(net, _fake_update(net, {"b": (0.25, 3.0)}), ["b"]):
        np.testing.assert_allclose(net.bns["stem.bn"].mean.numpy(), 0.25, rtol=1e-6)
        np.testing.assert_allclose(net.bns["stem.bn"].var.numpy(), 3.0, rtol=1e-6)


def test_recalibrated_without_batches_and_on_errors():
    net = build_supernet(MACRO, SHAPE, 5)
    net.bns["stem.bn"].mean.assign(np.full((1, 4), 0.5, np.float32))
    with recalibrated(net, _fake_update(net, {}), []):
        np.testing.assert_array_equal(net.bns["stem.bn"].mean.numpy(), 0.0)
        np.testing.assert_array_equal(net.bns["stem.bn"].var.numpy(), 1.0)
    np.testing.assert_array_equal(net.bns["stem.bn"].mean.numpy(), 0.5)
    # The statistics come back when the scoring inside fails.
    with pytest.raises(RuntimeError, match="scoring failed"):
        with recalibrated(net, _fake_update(net, {0: (9.0, 9.0)}), [0]):
            raise RuntimeError("scoring failed")
    np.testing.assert_array_equal(net.bns["stem.bn"].mean.numpy(), 0.5)
    np.testing.assert_array_equal(net.bns["stem.bn"].var.numpy(), 1.0)


def test_recalibrated_on_the_network():
    keras.utils.set_random_seed(3)
    net = build_supernet(MACRO, SHAPE, 5)
    arc = tf.constant(net.space.random_arc(1), tf.int32)
    images = tf.constant(np.random.default_rng(0).normal(size=(4, *SHAPE)) * 2, tf.float32)
    # One batch: the statistics are that batch's (the stem's: its convolution's).
    stem = tf.nn.conv2d(images, net.shared["stem.conv"].value, 1, "SAME").numpy()
    stem = stem.reshape(-1, stem.shape[-1])
    with recalibrated(net, lambda batch: net(batch, arc=arc, training=True), [images]):
        np.testing.assert_allclose(
            net.bns["stem.bn"].mean.numpy()[0], stem.mean(axis=0), rtol=1e-4, atol=1e-5
        )
        np.testing.assert_allclose(
            net.bns["stem.bn"].var.numpy()[0], stem.var(axis=0, ddof=1), rtol=1e-4, atol=1e-5
        )
    np.testing.assert_array_equal(net.bns["stem.bn"].mean.numpy(), 0.0)
    np.testing.assert_array_equal(net.bns["stem.bn"].var.numpy(), 1.0)
