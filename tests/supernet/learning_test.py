"""The micro supernet's shared weights learn on random architectures.

Random-WS in miniature: a new uniformly random architecture every step, as
ENAS's child phase does before the controller has learned anything. The
supernet of issue 14 (loose-end cell outputs, He-normal initialisation)
stayed at chance here (training accuracy 0.09-0.13 over these steps); see
`enas_tf.supernet.micro`, "Learning".
"""

import keras
import numpy as np
import tensorflow as tf

from enas_tf.data.images import load_images
from enas_tf.data.pipeline import normalize, train_dataset
from enas_tf.supernet.build import recalibrated
from enas_tf.supernet.micro import MicroSupernet

EPOCHS = 8


def test_shared_weights_learn_on_random_architectures():
    keras.utils.set_random_seed(0)
    splits = load_images("digits", valid_size=360)
    net = MicroSupernet(
        num_nodes=3, num_layers=3, out_filters=8, num_classes=10, image_shape=splits.image_shape
    )
    space = net.space
    steps = EPOCHS * int(np.ceil(len(splits.train_images) / 64))
    optimizer = keras.optimizers.SGD(
        keras.optimizers.schedules.CosineDecay(0.05, steps, alpha=0.01), momentum=0.9, nesterov=True
    )
    optimizer.build(net.trainable_variables)
    traces = []

    signature = [
        tf.TensorSpec([None, *splits.image_shape], tf.float32),
        tf.TensorSpec([None], tf.int32),
        tf.TensorSpec([space.num_decisions], tf.int32),
    ]

    @tf.function(input_signature=signature, autograph=False)
    def step(images, labels, arc):
        traces.append(1)
        with tf.GradientTape() as tape:
            logits = net(images, arc=arc, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        variables = net.trainable_variables
        grads, _ = tf.clip_by_global_norm(tape.gradient(loss, variables), 5.0)
        optimizer.apply(grads, variables)
        return tf.reduce_mean(
            tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
        )

    @tf.function(autograph=False)
    def valid_accuracy(images, labels, arc):
        logits = net(images, arc=arc, batch_stats=True)
        return tf.reduce_mean(
            tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
        )

    rng = np.random.default_rng(1)
    accuracy = []
    for epoch in range(EPOCHS):
        data = train_dataset(splits, 64, pad=0, flip=False, seed=epoch)
        for images, labels in data:
            arc = tf.constant(space.random_arc(rng), tf.int32)
            accuracy.append(float(step(images, labels, arc)))
    last_epochs = np.mean(accuracy[-2 * len(accuracy) // EPOCHS :])
    images = normalize(splits.valid_images, splits.mean, splits.std)
    unseen = [
        float(
            valid_accuracy(
                images, splits.valid_labels, tf.constant(space.random_arc(rng), tf.int32)
            )
        )
        for _ in range(5)
    ]
    # Chance is 0.1.
    assert last_epochs > 0.35, (last_epochs, accuracy[::17])
    assert np.mean(unseen) > 0.35, unseen
    assert len(traces) == 1


def test_recalibrated_statistics_are_those_of_the_batches_and_restored():
    keras.utils.set_random_seed(2)
    net = MicroSupernet(
        num_nodes=2, num_layers=3, out_filters=4, num_classes=5, image_shape=(8, 8, 3)
    )
    arc = tf.constant(net.space.random_arc(3), tf.int32)
    rng = np.random.default_rng(0)
    batches = [tf.constant(rng.normal(size=(4, 8, 8, 3)) * (k + 1), tf.float32) for k in range(3)]
    net(batches[0], arc=arc, training=True)  # moving statistics away from 0 / 1
    before = {name: v.numpy() for name, v in net.shared.items() if name.endswith((".mean", ".var"))}

    @tf.function(autograph=False)
    def update(images):
        net(images, arc=arc, training=True)

    # The stem's batch norm sees the stem convolution of every batch.
    stem = [tf.nn.conv2d(b, net.shared["stem.conv"].value, 1, "SAME").numpy() for b in batches]
    m, k = net.bn_momentum, len(batches)
    weights = np.array([(1 - m) * m ** (k - 1 - i) for i in range(k)]) / (1 - m**k)
    mean = sum(w * s.mean(axis=(0, 1, 2)) for w, s in zip(weights, stem))
    var = sum(w * s.reshape(-1, s.shape[-1]).var(axis=0, ddof=1) for w, s in zip(weights, stem))
    with recalibrated(net, update, batches):
        np.testing.assert_allclose(
            net.shared["stem.bn.mean"].numpy()[0], mean, rtol=1e-4, atol=1e-5
        )
        np.testing.assert_allclose(net.shared["stem.bn.var"].numpy()[0], var, rtol=1e-4, atol=1e-5)
        # Rows the architecture does not run are left at the neutral 0 / 1.
        rows = net.shared["cell0.sep_conv_3x3.sep1.bn.var"].numpy()
        assert np.isclose(rows, 1.0, atol=1e-6).all(axis=1).any()
    for name, value in before.items():
        np.testing.assert_array_equal(net.shared[name].numpy(), value, err_msg=name)
