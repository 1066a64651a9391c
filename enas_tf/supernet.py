"""Building a search's supernet and saving its weights.

`build_supernet(config, ...)` is the one place that turns a `SearchConfig`
into a `MicroSupernet` or `MacroSupernet`; the search (`enas_tf.search`) and
weight inheritance (`enas_tf.inherit`) both use it, so a checkpoint written
by one is read by the other.

`weights_checkpoint(net)` is what a checkpoint saves of a supernet: every
shared variable (trainable weights and batch-norm moving statistics) under
its name. Keras 3 does not track variables kept in a dict (the supernets'
`shared`), so `tf.train.Checkpoint(supernet=net)` alone would save nothing.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from enas_tf.config import SearchConfig


def build_supernet(config: SearchConfig, image_shape, num_classes) -> keras.Model:
    """The supernet of `config.space` at the search sizes."""
    if config.space == "micro":
        from enas_tf.supernet_micro import MicroSupernet

        return MicroSupernet(
            num_nodes=config.num_nodes, num_ops=config.num_ops,
            num_layers=config.num_layers, out_filters=config.out_filters,
            num_classes=num_classes, image_shape=image_shape,
            keep_prob=config.keep_prob,
        )
    from enas_tf.supernet_macro import MacroSupernet

    return MacroSupernet(
        num_layers=config.num_layers, num_ops=config.num_ops,
        out_filters=config.out_filters, num_classes=num_classes,
        image_shape=image_shape, keep_prob=config.keep_prob,
    )


def weights_checkpoint(net: keras.Model) -> tf.train.Checkpoint:
    """Every shared variable of `net`, keyed by name, for a checkpoint."""
    return tf.train.Checkpoint(**{name: v.value for name, v in net.shared.items()})
