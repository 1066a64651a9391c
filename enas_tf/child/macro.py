"""Fixed (final) macro network from a macro architecture.

Structure (ENAS_REFERENCE sec. 1.2, 1.3 and 7.1):
- stem: 3x3 conv to C, BN (no ReLU);
- layer l applies its op to layer l-1's output (the stem for l = 0), then,
  for l >= 1, concatenates the selected skip inputs (in increasing order) with
  the op output and projects back to C: ReLU -> 1x1 conv -> BN;
- after the layers in `pool_layers(L)` every earlier tensor (stem included)
  is reduced with a factorized reduction to twice the channels, so skips
  always meet at one resolution;
- head: global average pool -> dropout -> linear (no bias).

Ops (pre-activation, as the original final model orders them):
`conv_kxk` = ReLU -> 1x1 conv -> BN -> ReLU -> kxk conv -> BN;
`sep_conv_kxk` = the same with a depthwise-separable kxk conv;
`avg_pool_3x3` / `max_pool_3x3` = ReLU -> 1x1 conv -> BN -> 3x3 pool.

Departures from the original final code, following the paper (sec. 10):
- bug 2: the original builds ops 1 and 3 as regular convs. Here they are
  separable unless `separable=False`, which reproduces the original (both are
  reasonable, so it is a flag).
- bug 3: the original cannot build the pooling ops; here they are built like
  the other ops, pre-activation, with no extra weights beyond the 1x1 conv.
Only the reductions that feed a later layer are built: the original also made
weights for reductions nothing reads, which never train.
"""

from __future__ import annotations

import keras

from enas_tf.ops.blocks import (
    Blocks,
    classifier_head,
    conv_bn,
    macro_op,
    reduce_all,
)
from enas_tf.spaces.macro import MACRO_OPS, MacroArch, pool_layers


def build_macro_child(
    arch: MacroArch,
    *,
    image_shape: tuple[int, int, int],
    num_classes: int,
    out_filters: int = 36,
    keep_prob: float = 1.0,
    separable: bool = True,
    blocks: Blocks = Blocks(),
    name: str = "macro_child",
) -> keras.Model:
    """Builds the fixed macro network of `arch`.

    Args:
      arch: a decoded macro architecture (`MacroSpace.decode`).
      image_shape: `(height, width, channels)` of the input images.
      num_classes: number of output classes.
      out_filters: C, the channels of the first stage (doubles at each
        reduction).
      keep_prob: keep probability of the dropout before the classifier.
      separable: build ops 1 and 3 as depthwise-separable convs (the paper)
        rather than regular convs (the original final code).
      blocks: L2 and batch-norm settings.
      name: model name.

    Returns:
      A Keras model from float32 images `[batch, H, W, C]` (normalised) to
      float32 logits `[batch, num_classes]`.
    """
    images = keras.Input(shape=image_shape, name="images")
    filters = out_filters
    stem = conv_bn(blocks, images, filters, 3, "stem")
    prev = [stem]
    pools = pool_layers(len(arch.layers))
    for index, layer in enumerate(arch.layers):
        prefix = f"layer{index}"
        out = macro_op(blocks, prev[-1], MACRO_OPS[layer.op], filters, separable, f"{prefix}.op")
        if index > 0:
            inputs = [prev[j] for j in layer.skip_sources] + [out]
            if len(inputs) > 1:
                out = keras.layers.Concatenate(name=f"{prefix}.concat")(inputs)
            out = conv_bn(blocks, out, filters, 1, f"{prefix}.skip", pre_relu=True)
        prev.append(out)
        if index in pools:
            filters *= 2
            prev = reduce_all(blocks, prev, filters, f"{prefix}.reduce")
    logits = classifier_head(blocks, prev[-1], num_classes, keep_prob, "logits", pre_relu=False)
    return keras.Model(images, logits, name=name)
