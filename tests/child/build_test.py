"""Tests of enas_tf.child.build: one entry point for both spaces, the inference
twin, and the settings it refuses."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas_tf import spaces
from enas_tf.child.build import build_child, inference_model
from enas_tf.configs.image import ChildConfig
from enas_tf.errors import UserError
from enas_tf.ops.blocks import DropPath

TINY = [
    (spaces.MicroSpace(num_nodes=2), ChildConfig(out_filters=4, num_layers=3)),
    (spaces.MacroSpace(num_layers=4), ChildConfig(out_filters=4)),
]


@pytest.mark.parametrize("space, config", TINY, ids=["micro", "macro"])
def test_every_op_builds_and_eager_equals_graph(space, config):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    for seed in range(4):
        arc = space.random_arc(seed)
        model = build_child(space, arc, config, image_shape=(8, 8, 3), num_classes=5)
        eager = model(images, training=False)
        graph = tf.function(lambda x, m=model: m(x, training=False))(images)
        np.testing.assert_allclose(eager, graph, rtol=1e-5, atol=1e-5)
        assert eager.shape == (2, 5) and eager.dtype == tf.float32


def test_inference_twin_matches_and_reloads_without_enas_tf(tmp_path):
    space = spaces.MicroSpace(num_nodes=2)
    arc = space.random_arc(5)
    config = ChildConfig(out_filters=4, num_layers=3, drop_path_keep_prob=0.5, aux_weight=0.4)
    model = build_child(space, arc, config, image_shape=(8, 8, 1), num_classes=4)
    assert any(isinstance(layer, DropPath) for layer in model.layers)
    twin = inference_model(space, arc, config, model)
    assert not any(isinstance(layer, DropPath) for layer in twin.layers)
    images = np.random.default_rng(1).normal(size=(3, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(model(images, training=False)[0], twin(images), atol=1e-6)
    twin.save(tmp_path / "twin.keras")
    # The twin is stock Keras only: it loads with no custom objects at all.
    with keras.saving.custom_object_scope({}):
        loaded = keras.models.load_model(tmp_path / "twin.keras", compile=False)
    np.testing.assert_allclose(loaded(images), twin(images), atol=1e-6)
    # The training model (with DropPath) round-trips through .keras too.
    model.save(tmp_path / "train.keras")
    again = keras.models.load_model(tmp_path / "train.keras", compile=False)
    np.testing.assert_allclose(again(images)[0], model(images)[0], atol=1e-6)


def test_drop_path():
    layer = DropPath(0.25, seed=3)
    x = np.ones((4000, 1, 1, 2), "float32")
    np.testing.assert_array_equal(layer(x, training=False), x)
    layer.progress.assign(0.0)
    np.testing.assert_array_equal(layer(x, training=True), x)  # keep = 1
    layer.progress.assign(1.0)
    out = np.asarray(layer(x, training=True))
    assert set(np.unique(out)) == {0.0, 4.0}  # dropped, or scaled by 1/keep
    assert abs((out[:, 0, 0, 0] > 0).mean() - 0.25) < 0.03
    np.testing.assert_array_equal(out[..., 0], out[..., 1])  # whole example
    assert DropPath.from_config(layer.get_config()).final_keep_prob == 0.25


def test_bad_configs():
    micro, macro = spaces.MicroSpace(num_nodes=1), spaces.MacroSpace(num_layers=2)
    arc = micro.random_arc(0)
    shape = dict(image_shape=(8, 8, 3), num_classes=2)
    with pytest.raises(UserError, match="even number"):
        build_child(micro, arc, ChildConfig(out_filters=5), **shape)
    with pytest.raises(UserError, match="no auxiliary head and no drop path"):
        build_child(macro, macro.random_arc(0), ChildConfig(aux_weight=0.4), **shape)
    with pytest.raises(UserError, match="num_layers >= 3"):
        build_child(micro, arc, ChildConfig(num_layers=2), **shape)
    with pytest.raises(UserError, match="cell_output must be one of loose_ends, all"):
        build_child(micro, arc, ChildConfig(cell_output="every"), **shape)
    with pytest.raises(UserError, match="macro network has no cells"):
        build_child(macro, macro.random_arc(0), ChildConfig(cell_output="all"), **shape)
    with pytest.raises(UserError, match="recurrent cell"):
        build_child(spaces.RnnSpace(2), (0, 0, 0, 0), ChildConfig(), **shape)
    with pytest.raises(spaces.ArcError, match="expected 8 integers"):
        build_child(micro, arc[:-1], ChildConfig(), **shape)
