"""The micro supernet's shared weights learn on random architectures.

Random-WS in miniature: a new uniformly random architecture every step, as
ENAS's child phase does before the controller has learned anything. The
supernet of issue 14 (loose-end cell outputs, He-normal initialisation)
stayed at chance here (training accuracy 0.09-0.13 over these steps); see
`enas_tf.supernet_micro`, "Learning".
"""

import keras
import numpy as np
import tensorflow as tf

from enas_tf.data.images import load_images
from enas_tf.data.pipeline import normalize, train_dataset
from enas_tf.supernet_micro import MicroSupernet

EPOCHS = 8


def test_shared_weights_learn_on_random_architectures():
    keras.utils.set_random_seed(0)
    splits = load_images("digits", valid_size=360)
    net = MicroSupernet(num_nodes=3, num_layers=3, out_filters=8, num_classes=10,
                        image_shape=splits.image_shape)
    space = net.space
    steps = EPOCHS * int(np.ceil(len(splits.train_images) / 64))
    optimizer = keras.optimizers.SGD(
        keras.optimizers.schedules.CosineDecay(0.05, steps, alpha=0.01),
        momentum=0.9, nesterov=True)
    optimizer.build(net.trainable_variables)
    traces = []

    signature = [tf.TensorSpec([None, *splits.image_shape], tf.float32),
                 tf.TensorSpec([None], tf.int32),
                 tf.TensorSpec([space.num_decisions], tf.int32)]

    @tf.function(input_signature=signature, autograph=False)
    def step(images, labels, arc):
        traces.append(1)
        with tf.GradientTape() as tape:
            logits = net(images, arc=arc, training=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        variables = net.trainable_variables
        grads, _ = tf.clip_by_global_norm(tape.gradient(loss, variables), 5.0)
        optimizer.apply(grads, variables)
        return tf.reduce_mean(tf.cast(
            tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))

    @tf.function(autograph=False)
    def valid_accuracy(images, labels, arc):
        logits = net(images, arc=arc, batch_stats=True)
        return tf.reduce_mean(tf.cast(
            tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))

    rng = np.random.default_rng(1)
    accuracy = []
    for epoch in range(EPOCHS):
        data = train_dataset(splits, 64, pad=0, flip=False, seed=epoch)
        for images, labels in data:
            arc = tf.constant(space.random_arc(rng), tf.int32)
            accuracy.append(float(step(images, labels, arc)))
    last_epochs = np.mean(accuracy[-2 * len(accuracy) // EPOCHS:])
    images = normalize(splits.valid_images, splits.mean, splits.std)
    unseen = [float(valid_accuracy(images, splits.valid_labels,
                                   tf.constant(space.random_arc(rng), tf.int32)))
              for _ in range(5)]
    # Chance is 0.1.
    assert last_epochs > 0.35, (last_epochs, accuracy[::17])
    assert np.mean(unseen) > 0.35, unseen
    assert len(traces) == 1
