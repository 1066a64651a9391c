"""Building a search's supernet and saving its weights.

`build_supernet(config, ...)` is the one place that turns a `SearchConfig`
into a `MicroSupernet` or `MacroSupernet`; the search (`enas_tf.search.image`) and
weight inheritance (`enas_tf.supernet.transfer`) both use it, so a checkpoint written
by one is read by the other.

`recalibrated(net, ...)` re-estimates an architecture's batch-norm moving
statistics before it is scored (`--reward_bn=recalibrate`).

`weights_checkpoint(net)` is what a checkpoint saves of a supernet: every
shared variable (trainable weights and batch-norm moving statistics) under
its name. Keras 3 does not track variables kept in a dict (the supernets'
`shared`), so `tf.train.Checkpoint(supernet=net)` alone would save nothing.
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from enas_tf.configs.image import SearchConfig


def build_supernet(config: SearchConfig, image_shape, num_classes) -> keras.Model:
    """The supernet of `config.space` at the search sizes."""
    space, supernet = config.space, config.supernet
    if space.name == "micro":
        from enas_tf.supernet.micro import MicroSupernet

        return MicroSupernet(
            num_nodes=space.num_nodes,
            num_ops=space.num_ops,
            num_layers=space.num_layers,
            out_filters=supernet.out_filters,
            num_classes=num_classes,
            image_shape=image_shape,
            keep_prob=supernet.keep_prob,
            cell_output=supernet.cell_output,
        )
    from enas_tf.supernet.macro import MacroSupernet

    return MacroSupernet(
        num_layers=space.num_layers,
        num_ops=space.num_ops,
        out_filters=supernet.out_filters,
        num_classes=num_classes,
        image_shape=image_shape,
        keep_prob=supernet.keep_prob,
    )


def weights_checkpoint(net: keras.Model) -> tf.train.Checkpoint:
    """Every shared variable of `net`, keyed by name, for a checkpoint."""
    return tf.train.Checkpoint(**{name: v.value for name, v in net.shared.items()})


@contextlib.contextmanager
def recalibrated(net: keras.Model, update, batches):
    """A context in which `net`'s batch-norm moving statistics are
    re-estimated by `update(batch)` for each of `batches`; restored after.

    `update` runs the network in training mode on one batch (one
    moving-average update of the statistics it uses, e.g. one
    architecture's). The statistics are first reset (mean 0, variance 1),
    then updated once per batch with the supernet's momentum m, then
    debiased: after K updates `(mean / (1 - m^K), (var - m^K) / (1 - m^K))`
    is exactly the m-weighted average of the K batches' statistics, as if
    the estimate had started from them (single-path and once-for-all
    searches recalibrate batch norm this way before scoring a sub-network).
    Statistics the updates did not touch come out unchanged (0 and 1).
    """
    from enas_tf.ops.shared import tf_variable

    stats = [(tf_variable(bn.mean), tf_variable(bn.var)) for bn in net.bns.values()]
    saved = [(m.read_value(), v.read_value()) for m, v in stats]
    count = 0
    try:
        for (m, v), (old_m, old_v) in zip(stats, saved):
            m.assign(tf.zeros_like(old_m))
            v.assign(tf.ones_like(old_v))
        for batch in batches:
            update(batch)
            count += 1
        kept = net.bn_momentum**count
        if count:
            for m, v in stats:
                m.assign(m.read_value() / (1.0 - kept))
                v.assign((v.read_value() - kept) / (1.0 - kept))
        yield
    finally:
        for (m, v), (old_m, old_v) in zip(stats, saved):
            m.assign(old_m)
            v.assign(old_v)
