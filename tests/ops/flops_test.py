"""Parameter and multiply-add counts on a model small enough to count by hand."""

import keras

from enas_tf.ops.flops import count_flops, count_params


def test_counts_by_hand():
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(x)  # 8*8*9*3*4
    y = keras.layers.BatchNormalization()(y)  # 8 params, no MACs
    y = keras.layers.SeparableConv2D(6, 3, strides=2, padding="same", use_bias=False)(y)
    # depthwise 4*4*9*4, pointwise 4*4*4*6
    y = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(y)  # 4*4*9*6
    y = keras.layers.GlobalAveragePooling2D()(y)
    y = keras.layers.Dense(10, use_bias=False)(y)  # 6*10
    model = keras.Model(x, y)
    assert count_flops(model) == 6912 + 576 + 384 + 864 + 60
    assert count_params(model) == 108 + 8 + (36 + 24) + 54 + 60
