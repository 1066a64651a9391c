"""Fixed child networks from an architecture: one entry point for both spaces.

`build_child` builds the training model (with drop path and the auxiliary
head when asked); `inference_model` builds its twin without them, made only
of stock Keras layers, and copies the trained weights across by layer name.
The twin is what gets saved (`model.keras` loads without enas_tf) and
exported.
"""

from __future__ import annotations

import keras

from enas_tf.child.macro import build_macro_child
from enas_tf.child.micro import build_micro_child
from enas_tf.configs.image import ChildConfig
from enas_tf.ops.blocks import Blocks
from enas_tf.spaces import Arc, MacroSpace, SearchSpace


def build_child(
    space: SearchSpace,
    arc: Arc,
    config: ChildConfig,
    *,
    image_shape: tuple[int, int, int],
    num_classes: int,
    for_training: bool = True,
) -> keras.Model:
    """Builds the fixed network of `arc`.

    Args:
      space: a `MacroSpace` or `MicroSpace`.
      arc: an arc of `space` (validated here).
      config: everything else about the network.
      image_shape: `(height, width, channels)`.
      num_classes: number of classes.
      for_training: with drop path and the auxiliary head as configured,
        and batch norm synchronized across the replicas of a distribution
        strategy (global-batch statistics, as on one device); False builds
        the inference twin without them.

    Returns:
      A Keras model from normalised float32 images to float32 logits; the
      training model of a micro net with an auxiliary head returns
      `[logits, aux_logits]`.

    Raises:
      UserError: for an invalid arc or settings that do not fit the space.
    """
    config.check(space)
    arch = space.decode(arc)
    blocks = Blocks(config.l2, config.bn_momentum, config.bn_epsilon, synchronized_bn=for_training)
    common = dict(
        image_shape=tuple(image_shape),
        num_classes=num_classes,
        out_filters=config.out_filters,
        keep_prob=config.keep_prob,
        blocks=blocks,
    )
    if isinstance(space, MacroSpace):
        return build_macro_child(arch, separable=config.separable, **common)
    return build_micro_child(
        arch,
        num_layers=config.num_layers,
        drop_path_keep_prob=config.drop_path_keep_prob if for_training else 1.0,
        aux_head=for_training and config.aux_weight > 0,
        layer_base=config.layer_base,
        cell_output=config.cell_output,
        **common,
    )


def inference_model(
    space: SearchSpace,
    arc: Arc,
    config: ChildConfig,
    trained: keras.Model,
) -> keras.Model:
    """The inference twin of a trained child, sharing its trained values.

    Built without drop path or auxiliary head (stock Keras layers only); every
    layer's weights are copied from the layer of the same name in `trained`.
    """
    shape = tuple(trained.input_shape[1:])
    logits = trained.outputs[0]
    twin = build_child(
        space,
        arc,
        config,
        image_shape=shape,
        num_classes=logits.shape[-1],
        for_training=False,
    )
    for layer in twin.layers:
        if layer.weights:
            layer.set_weights(trained.get_layer(layer.name).get_weights())
    return twin
