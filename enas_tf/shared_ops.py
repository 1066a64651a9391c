"""Raw TensorFlow ops on shared (stacked) weights, for the supernets.

A shared weight is stored once per candidate with a leading "candidate" axis
(e.g. one depthwise kernel per possible input node); the architecture picks a
slice with `tf.gather` at run time, so one traced graph serves every
architecture. Batch norm here keeps per-candidate moving statistics and
updates only the selected slice, only on the branch that runs.

Every op computes exactly what the stock Keras layer of the fixed child
computes (same TensorFlow kernels, same padding), so weights copied from a
supernet into a child give the same outputs.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf


@dataclasses.dataclass
class SharedBN:
    """Stacked batch-norm parameters: `[candidates, channels]` each."""

    gamma: keras.Variable
    beta: keras.Variable
    mean: keras.Variable
    var: keras.Variable
    momentum: float
    epsilon: float

    def __call__(self, x, index, training: bool):
        """Normalises `x` with candidate `index`'s parameters.

        In training, batch statistics normalise `x` and update the moving
        averages of slice `index` only; at inference the moving averages of
        slice `index` normalise.
        """
        gamma = tf.gather(self.gamma.value, index)
        beta = tf.gather(self.beta.value, index)
        mean = tf.gather(self.mean.value, index)
        var = tf.gather(self.var.value, index)
        if not training:
            # The formula of Keras' BatchNormalization at inference, so a
            # child with copied weights computes the same numbers.
            return tf.nn.batch_normalization(x, mean, var, beta, gamma, self.epsilon)
        # One fused kernel normalises with batch statistics and computes the
        # new moving averages (m * momentum + batch * (1 - momentum); the
        # variance average uses the unbiased batch variance, as TensorFlow's
        # fused kernel does).
        y, new_mean, new_var = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, mean, var, epsilon=self.epsilon, is_training=True,
            exponential_avg_factor=1.0 - self.momentum,
        )[:3]
        rows = tf.reshape(tf.convert_to_tensor(index), [1])
        for stat, new in ((self.mean, new_mean), (self.var, new_var)):
            stat.value.scatter_update(tf.IndexedSlices(new[None], rows))
        return y

    def slice(self, index: int) -> list:
        """Keras BatchNormalization weights of one candidate."""
        return [v.numpy()[index] for v in (self.gamma, self.beta, self.mean, self.var)]


def conv(x, kernel, strides=1):
    """SAME convolution with a `[kh, kw, in, out]` kernel (Keras Conv2D)."""
    return tf.nn.conv2d(x, kernel, strides=strides, padding="SAME")


def sep_conv(x, depthwise, pointwise, strides=1):
    """Depthwise then pointwise convolution (Keras SeparableConv2D)."""
    return tf.nn.separable_conv2d(
        x, depthwise, pointwise, strides=[1, strides, strides, 1], padding="SAME"
    )


def pool(x, kind: str, strides: int):
    """3x3 SAME pooling (Keras AveragePooling2D / MaxPooling2D)."""
    op = tf.nn.avg_pool2d if kind == "avg" else tf.nn.max_pool2d
    return op(x, 3, strides, "SAME")


def shift(x):
    """The second path of a factorized reduction: drop the first row and
    column, pad one zero row and column at the bottom and right."""
    return tf.pad(x[:, 1:, 1:, :], [[0, 0], [0, 1], [0, 1], [0, 0]])


def select(candidates, index):
    """`candidates[index]` for a scalar int tensor, without stacking them."""
    if len(candidates) == 1:
        return candidates[0]
    return tf.switch_case(index, [lambda c=c: c for c in candidates])
