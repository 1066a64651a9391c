"""Parameter and FLOP counts of a Keras network.

FLOPs are counted as multiply-adds per image of the convolutions and dense
layers, the convention of the NAS literature (NASNet, DARTS, ENAS tables);
batch norm, activations, pooling, additions and concatenations are not
counted. Parameters are the trainable ones (batch-norm scale and offset
included, moving statistics excluded), as in the original ENAS count.
"""

from __future__ import annotations

import math

import keras


def count_params(model: keras.Model) -> int:
    """Number of trainable parameters."""
    return sum(math.prod(w.shape) for w in model.trainable_weights)


def _layer_macs(layer) -> int:
    if not isinstance(
        layer,
        (
            keras.layers.Conv2D,
            keras.layers.DepthwiseConv2D,
            keras.layers.SeparableConv2D,
            keras.layers.Dense,
        ),
    ):
        return 0
    in_channels = layer.input.shape[-1]
    out_shape = layer.output.shape
    if isinstance(layer, keras.layers.Dense):
        return in_channels * out_shape[-1]
    positions = out_shape[1] * out_shape[2]
    kernel = math.prod(layer.kernel_size)
    if isinstance(layer, keras.layers.SeparableConv2D):
        depthwise = positions * kernel * in_channels * layer.depth_multiplier
        pointwise = positions * in_channels * layer.depth_multiplier * out_shape[-1]
        return depthwise + pointwise
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return positions * kernel * in_channels * layer.depth_multiplier
    return positions * kernel * in_channels * out_shape[-1] // layer.groups


def count_flops(model: keras.Model) -> int:
    """Multiply-adds per image of the convolutions and dense layers."""
    return sum(_layer_macs(layer) for layer in model.layers)
