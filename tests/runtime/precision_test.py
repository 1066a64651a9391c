"""Tests of mixed precision and XLA: supernet, search child step, final
training, export (tiny shapes; the loss scaling is forced to overflow)."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from enas_tf import data, spaces
from enas_tf.configs.image import ChildConfig, SearchConfig, TrainConfig
from enas_tf.errors import UserError
from enas_tf.export.run import export_run
from enas_tf.runtime import nonfinite, precision
from enas_tf.runtime.distribute import mirrored_strategy
from enas_tf.search.image import Search
from enas_tf.supernet.build import build_supernet
from enas_tf.train.image import train_child

# Tiny searches without dropout (losses are compared): a micro one, and a
# macro one, whose child step traces several times faster.
TINY = SearchConfig.from_flat(
    num_nodes=1,
    num_layers=3,
    out_filters=4,
    epochs=1,
    batch_size=64,
    controller_steps=1,
    num_aggregate=2,
    log_arcs=0,
    derive_samples=2,
    flip=False,
    pad=1,
    lr_t0=1,
    keep_prob=1.0,
    l2=0.0,
)
TINY_MACRO = TINY.replace(space="macro", num_layers=2, num_ops=6)
MIXED = ("mixed_float16", "mixed_bfloat16")
# Relative loss tolerance of 16-bit compute against float32 (bfloat16 has a
# 8-bit mantissa: ~0.4% per rounding, a few roundings deep).
LOSS_RTOL = {"mixed_float16": 0.01, "mixed_bfloat16": 0.05}


@pytest.fixture(scope="module")
def digits():
    return data.load_images("digits", valid_size=100)


def _batch(splits, size=64):
    images = (splits.train_images[:size] / 255.0 - splits.mean) / splits.std
    return tf.constant(images, tf.float32), tf.constant(splits.train_labels[:size])


def _loss(logits, labels):
    return float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)))


def test_check_precision_and_policy_scope():
    for name in precision.PRECISIONS:
        precision.check_precision(name)
    with pytest.raises(UserError, match="mixed_bfloat16.*received 'float16'"):
        precision.check_precision("float16")
    with pytest.raises(UserError, match="precision must be one of"):
        TrainConfig(precision="half").check()
    with pytest.raises(UserError, match="precision must be one of"):
        TINY.replace(precision="bfloat16").check()
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(RuntimeError):
        with precision.policy("mixed_bfloat16"):
            assert keras.config.dtype_policy().name == "mixed_bfloat16"
            raise RuntimeError  # restored on the way out too
    assert keras.config.dtype_policy().name == "float32"


def test_loss_scale_rules():
    scale = precision.LossScale(initial_scale=8.0, growth_steps=2)
    failed, overflow = scale.classify(tf.constant(0.0), tf.constant(1.0))
    assert not failed and overflow  # gradients alone: an overflow
    failed, overflow = scale.classify(tf.constant(2.0), tf.constant(1.0))
    assert failed and not overflow  # the loss itself: a failure
    scale.update(True, False)
    assert float(scale.scale.numpy()) == 4.0
    scale.update(False, True)
    scale.update(False, True)  # 2 good steps in a row: doubled
    assert float(scale.scale.numpy()) == 8.0 and int(scale.good_steps.numpy()) == 0
    scale.scale.assign(1.0)
    failed, overflow = scale.classify(tf.constant(0.0), tf.constant(1.0))
    assert failed and not overflow  # at scale 1 the gradient is not finite
    scale.update(True, False)
    assert float(scale.scale.numpy()) == 1.0  # never below 1
    grads = scale.unscale([tf.constant([2.0]), None])
    assert grads[1] is None and float(grads[0][0]) == 2.0


def test_fit_overflow_is_not_a_nonfinite_step():
    """Final training's optimizer (`train_child`): under mixed_float16 an
    overflow (a huge scale) is skipped and halves the scale, uncounted; a
    NaN batch at scale 1 is counted and stops the run."""
    keras.utils.set_random_seed(0)
    with precision.policy("mixed_float16"):
        model = keras.Sequential(
            [
                keras.Input((3,)),
                keras.layers.Dense(2),
                keras.layers.Activation("linear", dtype="float32"),
            ]
        )
    optimizer = nonfinite.guard(
        precision.loss_scaled("mixed_float16", keras.optimizers.SGD(0.1), initial_scale=2.0**100)
    )
    model.compile(optimizer=optimizer, loss="mse")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    x, y = np.ones((4, 3), np.float32), np.ones((4, 2), np.float32)
    before = model.get_weights()
    callback = nonfinite.NonFiniteCallback(model.optimizer, max_nonfinite=1)
    model.fit(x, y, batch_size=4, verbose=0, callbacks=[callback])
    assert callback.total == 0
    assert float(model.optimizer.dynamic_scale.numpy()) == 2.0**99
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.optimizer.dynamic_scale.assign(1.0)
    x[:] = np.nan
    with pytest.raises(UserError, match="1 training steps in a row"):
        model.fit(x, y, batch_size=4, verbose=0, callbacks=[callback])
    assert float(model.optimizer.dynamic_scale.numpy()) == 1.0


def test_supernet_loss_agrees_with_float32(digits):
    """Same weights and batch: 16-bit supernets give float32 logits whose
    loss is within tolerance of float32's (micro; the search test below
    checks macro supernets)."""
    images, labels = _batch(digits, 32)
    for config in (TINY,):
        arc = tf.constant(config.search_space().random_arc(3), tf.int32)
        keras.utils.set_random_seed(0)
        reference = build_supernet(config, digits.image_shape, 10)
        initial = [v.numpy() for v in reference.variables]
        statistics = [v.numpy() for v in reference.non_trainable_variables]
        expected = _loss(reference(images, arc=arc, training=True), labels)
        # The forward pass's update of each moving statistic (0 in the rows
        # of ops the arc does not use).
        updates = [v.numpy() - s for v, s in zip(reference.non_trainable_variables, statistics)]
        assert sum(bool(u.any()) for u in updates) > len(updates) // 3
        for name in MIXED:
            with precision.policy(name):
                net = build_supernet(config, digits.image_shape, 10)
            for value, target in zip(initial, net.variables):
                target.assign(value)
            assert all(v.dtype == "float32" for v in net.variables)
            logits = net(images, arc=arc, training=True)
            assert logits.dtype == tf.float32
            assert _loss(logits, labels) == pytest.approx(expected, rel=LOSS_RTOL[name])
            # The moving statistics were updated alike: every update within
            # LOSS_RTOL of its size (the largest in each variable); measured
            # 0.2% (float16) and 0.9% (bfloat16) off, from the 16-bit
            # activations. A skipped update is 100% off, a momentum of 0.91
            # instead of 0.9 10%, the update of a wrong row 100%, and batch
            # statistics accumulated one by one in float16 over the 2,048
            # values of a stem channel over 100% (numpy: the running sum of
            # squares loses the low bits of each term).
            # Statistics stored in float16 are caught by the dtype check
            # above (their rounding, 0.3%, is within the tolerance).
            for v, before, update in zip(net.non_trainable_variables, statistics, updates):
                np.testing.assert_allclose(
                    v.numpy() - before,
                    update,
                    rtol=0,
                    atol=LOSS_RTOL[name] * np.abs(update).max(),
                    err_msg=v.name,
                )


@pytest.mark.parametrize(
    "name,strategy",
    [("mixed_float16", None), ("mixed_bfloat16", None), ("mixed_float16", "mirrored")],
)
def test_search_child_step(digits, tmp_path, name, strategy):
    """The child step in 16 bits: its loss is float32's on the same weights
    and batch; the controller stays float32; one trace for every arc; with
    float16 an overflow (forced by a huge scale) skips the update, halves
    the scale and is not a non-finite step; the scale is checkpointed. Under
    MirroredStrategy the two replicas decide alike."""
    config = TINY_MACRO.replace(precision=name, l2=1e-4)
    kwargs = {}
    if strategy:
        kwargs["strategy"] = mirrored_strategy(["/cpu:0", "/cpu:1"])
    search = Search(config, digits, str(tmp_path / "run"), verbose=0, **kwargs)
    assert keras.config.dtype_policy().name == "float32"  # not leaked
    controller_vars = search.sampler.controller.variables
    assert controller_vars and all(v.dtype == tf.float32 for v in controller_vars)
    assert search.net.dtype_policy.name == name
    images, labels = _batch(digits)
    batch = next(
        iter(
            search.strategy.experimental_distribute_dataset(
                tf.data.Dataset.from_tensor_slices((images, labels)).batch(64)
            )
        )
    )
    arcs = [tf.constant(config.search_space().random_arc(s), tf.int32) for s in range(3)]
    # float32 reference on the same weights (one device: whole-batch BN).
    keras.utils.set_random_seed(0)
    reference = build_supernet(config, digits.image_shape, 10)
    for source, target in zip(search.net.variables, reference.variables):
        target.assign(source.value.read_value())
    before = [v.numpy() for v in search.net.trainable_variables]
    scale = search.loss_scale
    if name == "mixed_float16":
        scale.scale.assign(2.0**100)  # scaled float16 gradients overflow
        loss, _, finite = search.child_step(batch, arcs[0])
        assert bool(finite)  # an overflow is not a non-finite step
        assert np.isfinite(float(loss))
        assert float(scale.scale.numpy()) == 2.0**99
        for a, b in zip(before, search.net.trainable_variables):
            np.testing.assert_array_equal(a, b.numpy())  # skipped
        assert int(search.optimizer.iterations.numpy()) == 0
        # The forward pass's moving-statistics update was undone too.
        for a, b in zip(reference.non_trainable_variables, search.net.non_trainable_variables):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        scale.scale.assign(2.0**10)
    else:
        assert scale is None
    loss, _, finite = search.child_step(batch, arcs[0])
    assert bool(finite) and int(search.optimizer.iterations.numpy()) == 1
    if strategy is None:  # replicas normalise their halves on their own
        expected = _loss(reference(images, arc=arcs[0], training=True), labels)
        assert float(loss) == pytest.approx(expected, rel=LOSS_RTOL[name])
        assert float(loss) != expected  # 16-bit arithmetic
    changed = [
        not np.array_equal(a, b.numpy()) for a, b in zip(before, search.net.trainable_variables)
    ]
    assert any(changed)
    for arc in arcs[1:]:
        search.child_step(batch, arc)
    assert search.child_step.experimental_get_tracing_count() == 1
    if name == "mixed_float16":
        assert float(scale.scale.numpy()) == 2.0**10
        assert int(scale.good_steps.numpy()) == 3
        if strategy:  # every replica's copy of the state is the same
            for var in (scale.scale, scale.good_steps):
                values = [v.numpy() for v in kwargs["strategy"].experimental_local_results(var)]
                assert values[0] == values[1]
        path = search.manager.save()
        restored = precision.LossScale(initial_scale=1.0)
        tf.train.Checkpoint(loss_scale=restored.checkpoint()).restore(path).expect_partial()
        assert float(restored.scale.numpy()) == 2.0**10


def test_search_refuses_jit_compile():
    with pytest.raises(UserError, match="Dynamic output feature dim"):
        precision.refuse_search_jit_compile()


SPACE = spaces.MacroSpace(num_layers=2)
ARC = (1, 3, 0)
CHILD = ChildConfig(out_filters=4, num_layers=2)
TRAIN = TrainConfig(epochs=1, batch_size=64, lr_t0=1, lr_t_mul=1, flip=False, pad=0, lr_max=0.01)


@pytest.fixture(scope="module")
def small(digits):
    """256 training images (4 steps of 64), 32 validation images."""
    return dataclasses.replace(
        digits,
        train_images=digits.train_images[:256],
        train_labels=digits.train_labels[:256],
        valid_images=digits.valid_images[:32],
        valid_labels=digits.valid_labels[:32],
        test_images=digits.test_images[:64],
        test_labels=digits.test_labels[:64],
    )


@pytest.fixture(scope="module")
def float32_loss(small, tmp_path_factory):
    """The last training loss of a float32 run."""
    out = tmp_path_factory.mktemp("float32")
    train_child(SPACE, ARC, CHILD, TRAIN, small, str(out), verbose=0)
    return _train_loss(out)


def _train_loss(out):
    rows = (out / "history.csv").read_text().splitlines()
    header, last = rows[0].split(","), rows[-1].split(",")
    return float(last[header.index("loss")])


@pytest.mark.parametrize(
    "name,jit", [("mixed_float16", False), ("mixed_bfloat16", False), ("float32", True)]
)
def test_final_training_agrees_with_float32(small, float32_loss, tmp_path, name, jit):
    """One epoch (4 steps) from the same initialisation and batches: the
    loss is float32's within tolerance (XLA: to rounding); model.keras is a
    float32 network and exports (float16 run)."""
    train = dataclasses.replace(TRAIN, precision=name, jit_compile=jit)
    summary = train_child(SPACE, ARC, CHILD, train, small, str(tmp_path), verbose=0)
    assert summary["config"]["train"]["precision"] == name
    assert summary["nonfinite_steps"] == 0
    rtol = 1e-4 if jit else LOSS_RTOL[name]
    loss = _train_loss(tmp_path)
    assert loss == pytest.approx(float32_loss, rel=rtol)
    if name != "float32":
        assert loss != float32_loss  # it did compute in 16 bits
    model = keras.saving.load_model(tmp_path / "model.keras")
    assert all(layer.dtype_policy.name == "float32" for layer in model.layers)
    assert all(v.dtype == "float32" for v in model.variables)
    if name == "mixed_float16":
        report = export_run(tmp_path, tmp_path / "export", small.test_images[:16])
        assert report["passed"], report
