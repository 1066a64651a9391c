"""Shared-weight macro supernet: every macro architecture in one Keras model.

`MacroSupernet(...)(images, arc=arc)` runs the fixed macro network of `arc`
(`enas_tf.child.macro`, same sizes) on weights shared by all architectures.
The arc is an int32 tensor, so one traced graph serves every architecture:
each layer runs only its chosen op (`tf.switch_case` on the op id), and the
skip projection gathers the weight blocks of the chosen inputs (`tf.where` on
the skip bits) for one convolution on the dynamically concatenated inputs.

Sharing: a weight belongs to one (layer, op), or to one layer's skip block,
or to one (pooling layer, list entry) reduction; layers share nothing, as in
the original (ENAS_REFERENCE sec. 1.2). Each op's ReLU -> 1x1 conv -> BN has
the same shapes for every op, so it is stored stacked on an op axis and the
chosen slice is gathered before the switch; only the k x k part branches.

Unlike the original macro *search* model, the supernet computes exactly the
final network (the paper retrains the searched child; ENAS_REFERENCE sec. 10),
so `child_weights` copies the selected weights into `build_child` and gives
the same outputs:
- bug 1: the original search model always ran the max-pool branch (a
  late-binding closure in its switch-case, sec. 1.5); here the sampled op runs
  and gets the gradients;
- bug 4: the original search model summed the selected skips and applied BN,
  keeping C channels throughout; here the skips are concatenated with the op
  output and projected by ReLU -> 1x1 conv ((k + 1) C -> C) -> BN (sec. 1.3),
  channels double at each reduction (sec. 1.2), and ops are pre-activation
  like the final model (bug 2);
- as in the fixed child, ops 1 and 3 are separable unless `separable=False`,
  and the pooling ops are built (bug 3);
- batch norm uses moving statistics at inference (validation and rewards)
  unless the caller passes `training=True` (or `batch_stats=True`: batch
  statistics without updates, as the original evaluated rewards).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from enas_tf.configs.image import ChildConfig
from enas_tf.ops import shared as ops
from enas_tf.ops import table
from enas_tf.spaces.macro import MACRO_OPS, MacroArch, MacroSpace, pool_layers

# Keras' he_normal draws a truncated normal whose std is this fraction of the
# requested one; dividing by it gives std sqrt(2 / fan_in) (sec. 0.3).
_TRUNCATED_STD = 0.87962566


def _he_normal(fan_in: int) -> keras.initializers.Initializer:
    return keras.initializers.TruncatedNormal(stddev=float(np.sqrt(2.0 / fan_in)) / _TRUNCATED_STD)


def reduced_entries(arch: MacroArch) -> set[tuple[int, int]]:
    """The factorized reductions the fixed child of `arch` builds.

    The child reduces every entry of `prev` after each pooling layer, but
    Keras keeps only layers that feed the output: reduction `(p, t)` of entry
    `t` (0 = stem, t = layer t - 1) at pooling layer `p` exists when a later
    layer reads entry `t`, as its main input or as a skip.

    Args:
      arch: a decoded macro architecture.

    Returns:
      The set of `(pooling layer, entry)` pairs.
    """
    reads = [{m, *layer.skip_sources} for m, layer in enumerate(arch.layers)]
    num_layers = len(arch.layers)
    return {
        (p, t)
        for p in pool_layers(num_layers)
        for t in range(p + 2)
        if any(t in reads[m] for m in range(p + 1, num_layers))
    }


@keras.saving.register_keras_serializable(package="enas_tf")
class MacroSupernet(keras.Model):
    """All macro architectures of a given size, with shared weights.

    Args:
      num_layers: L, the number of searched layers.
      num_ops: candidate ops (the first `num_ops` of `MACRO_OPS`).
      out_filters: C, the channels of the first stage (doubles at each
        reduction).
      num_classes: number of classes.
      image_shape: `(height, width, channels)` of the input images.
      keep_prob: dropout keep probability before the classifier.
      separable: ops 1 and 3 are depthwise-separable (the paper) rather than
        regular convs (the original final code).
      bn_momentum: batch-norm moving-average decay.
      bn_epsilon: batch-norm epsilon.
      **kwargs: `keras.Model` arguments (`name`, ...).

    Raises:
      UserError: for sizes the fixed child cannot have (odd `out_filters`, a
        `keep_prob` outside (0, 1], too many ops).

    Call arguments:
      images: float32 `[batch, height, width, channels]`, normalised.
      arc: int32 `[L * (L + 1) / 2]`, an arc of `MacroSpace(L, num_ops)`.
      training: Python bool: batch statistics (and their moving-average
        update) and dropout when True.
      batch_stats: with `training=False`, normalise with the batch's
        statistics instead of the moving averages, updating nothing and
        without dropout (the original search's reward evaluation).
    """

    def __init__(
        self,
        num_layers: int = 12,
        num_ops: int = 6,
        out_filters: int = 36,
        num_classes: int = 10,
        image_shape: tuple[int, int, int] = (32, 32, 3),
        keep_prob: float = 1.0,
        separable: bool = True,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.space = MacroSpace(num_layers=num_layers, num_ops=num_ops)
        self.num_layers, self.num_ops = num_layers, num_ops
        self.out_filters, self.num_classes = out_filters, num_classes
        self.image_shape = tuple(image_shape)
        self.keep_prob, self.separable = keep_prob, bool(separable)
        self.bn_momentum, self.bn_epsilon = bn_momentum, bn_epsilon
        self.child_config().check(self.space)
        self.pools = pool_layers(num_layers)
        self.shared: dict[str, keras.Variable] = {}
        self.bns: dict[str, ops.SharedBN] = {}
        self._create_weights()

    # ----- weights -----------------------------------------------------------

    def _weight(self, name, shape, fan_in):
        var = self.add_weight(name=name, shape=shape, initializer=_he_normal(fan_in))
        self.shared[name] = var
        return var

    def _bn(self, name, rows, channels):
        def make(kind, init, trainable):
            if trainable:
                var = self.add_weight(
                    name=f"{name}.{kind}", shape=(rows, channels), initializer=init
                )
            else:
                var = ops.moving_statistic(self, f"{name}.{kind}", (rows, channels), init)
            self.shared[f"{name}.{kind}"] = var
            return var

        self.bns[name] = ops.SharedBN(
            make("gamma", "ones", True),
            make("beta", "zeros", True),
            make("mean", "zeros", False),
            make("var", "ones", False),
            self.bn_momentum,
            self.bn_epsilon,
        )

    def _is_sep(self, op: str) -> bool:
        return table.op(op).kind == "sep_conv" and self.separable

    def _create_weights(self):
        c, channels_in = self.out_filters, self.image_shape[2]
        self._weight("stem.conv", (3, 3, channels_in, c), 9 * channels_in)
        self._bn("stem.bn", 1, c)
        for layer in range(self.num_layers):
            name = f"layer{layer}"
            # Fan-in of one op's slice, as the child's 1x1 Conv2D has.
            self._weight(f"{name}.op.in.conv", (self.num_ops, c, c), c)
            self._bn(f"{name}.op.in.bn", self.num_ops, c)
            for op in self.space.ops:
                if not table.op(op).has_weights:
                    continue
                k, base = table.op(op).kernel, f"{name}.op.{op}"
                if self._is_sep(op):
                    # Keras' fan-in of a depthwise [k, k, C, 1] kernel is k*k*C.
                    self._weight(f"{base}.dw", (k, k, c, 1), k * k * c)
                    self._weight(f"{base}.pw", (1, 1, c, c), c)
                else:
                    self._weight(f"{base}.conv", (k, k, c, c), k * k * c)
                self._bn(f"{base}.bn", 1, c)
            if layer > 0:
                # One C x C block per skip candidate j < layer, then the op
                # output's block (row `layer`). The child's fan-in (k + 1) C
                # depends on the arc; a BN follows, so use one block's.
                self._weight(f"{name}.skip.conv", (layer + 1, c, c), c)
                self._bn(f"{name}.skip.bn", 1, c)
            if layer in self.pools:
                for j in range(layer + 2):
                    base = f"{name}.reduce{j}"
                    self._weight(f"{base}.path1", (1, 1, c, c), c)
                    self._weight(f"{base}.path2", (1, 1, c, c), c)
                    self._bn(f"{base}.bn", 1, 2 * c)
                c *= 2
        self._weight("logits.fc", (c, self.num_classes), c)

    # ----- forward -----------------------------------------------------------

    def _op(self, x, op_id, layer, training):
        """ReLU -> 1x1 conv -> BN of op `op_id`, then its k x k part."""
        name = f"layer{layer}.op"
        w = tf.gather(self.shared[f"{name}.in.conv"].value, op_id)[None, None]
        x = self.bns[f"{name}.in.bn"](ops.conv(tf.nn.relu(x), w), op_id, training)

        def branch(op):
            if table.op(op).kind == "pool":
                # The child pools the BN output directly (no ReLU).
                return lambda: ops.pool(x, table.op(op).pool, 1)
            base = f"{name}.{op}"

            def run():
                y = tf.nn.relu(x)
                if self._is_sep(op):
                    dw, pw = self.shared[f"{base}.dw"], self.shared[f"{base}.pw"]
                    y = ops.sep_conv(y, dw.value, pw.value)
                else:
                    y = ops.conv(y, self.shared[f"{base}.conv"].value)
                return self.bns[f"{base}.bn"](y, 0, training)

            return run

        # Only the chosen branch runs, so only its BN statistics update.
        return tf.switch_case(op_id, [branch(op) for op in self.space.ops])

    def _skip(self, prev, out, bits, layer, training):
        """ReLU -> 1x1 conv -> BN on concat(selected skips, op output).

        `prev[:layer]` are the skip candidates (sec. 1.3); the child
        concatenates the selected ones in increasing j, then the op output, so
        gathering the same rows of inputs and weight blocks gives its kernel.
        """
        rows = tf.concat([tf.where(bits > 0)[:, 0], tf.constant([layer], tf.int64)], axis=0)
        inputs = tf.gather(tf.stack(prev[:layer] + [out]), rows)  # [k+1, N, H, W, C]
        shape = tf.shape(inputs)
        x = tf.transpose(inputs, [1, 2, 3, 0, 4])
        x = tf.reshape(x, [shape[1], shape[2], shape[3], shape[0] * shape[4]])
        w = tf.gather(self.shared[f"layer{layer}.skip.conv"].value, rows)
        x = ops.conv(tf.nn.relu(x), tf.reshape(w, [1, 1, -1, w.shape[-1]]))
        return self.bns[f"layer{layer}.skip.bn"](x, 0, training)

    def _reduce(self, x, name, training):
        """Factorized reduction (sec. 0.4): two stride-2 1x1 paths, concat, BN."""
        w1, w2 = self.shared[f"{name}.path1"], self.shared[f"{name}.path2"]
        x = ops.factorized_reduction(x, w1.value[0, 0], w2.value[0, 0])
        return self.bns[f"{name}.bn"](x, 0, training)

    def forward(self, images, arc, training: bool = False, dropout_seed=None):
        """Logits of `arc` on `images`.

        Args:
          images: float32 `[batch, height, width, channels]`.
          arc: int32 `[num_decisions]` tensor or sequence.
          training: a batch-norm mode, `shared_ops.bn_mode`.
          dropout_seed: int `[2]` seed of the classifier dropout (stateless;
            None: TensorFlow's stateful dropout).

        Returns:
          float32 logits `[batch, num_classes]`.

        Raises:
          ValueError: when `arc` is not a vector of `num_decisions` integers.
        """
        arc = tf.convert_to_tensor(arc, tf.int32)
        if arc.shape.rank != 1 or arc.shape[0] not in (None, self.space.num_decisions):
            raise ValueError(
                f"{self.space.describe()}: expected an arc of "
                f"{self.space.num_decisions} integers; received shape {arc.shape}."
            )
        # Under a mixed-precision policy the computation is 16-bit: the
        # layer's autocast scope casts the weights read with `.value`.
        x = ops.conv(tf.cast(images, self.compute_dtype), self.shared["stem.conv"].value)
        prev = [self.bns["stem.bn"](x, 0, training)]
        start = 0
        for layer in range(self.num_layers):
            op_id, bits = arc[start], arc[start + 1 : start + 1 + layer]
            start += 1 + layer
            out = self._op(prev[-1], op_id, layer, training)
            if layer > 0:
                out = self._skip(prev, out, bits, layer, training)
            prev.append(out)
            if layer in self.pools:
                # Every entry is reduced, read later or not: which ones are
                # read depends on the arc, and a cond per entry costs more
                # than these 1x1 convs. Unread ones get zero gradients.
                prev = [
                    self._reduce(t, f"layer{layer}.reduce{j}", training) for j, t in enumerate(prev)
                ]
        features = tf.reduce_mean(prev[-1], axis=[1, 2])
        if training is True and self.keep_prob < 1.0:
            features = ops.dropout(features, 1.0 - self.keep_prob, dropout_seed)
        # float32 logits, whatever the compute dtype.
        return tf.cast(tf.matmul(features, self.shared["logits.fc"].value), tf.float32)

    def call(self, images, arc=None, training=False, batch_stats=False, dropout_seed=None):
        if arc is None:
            raise ValueError("MacroSupernet needs the architecture: call(images, arc=...).")
        return self.forward(
            images, arc, training=ops.bn_mode(training, batch_stats), dropout_seed=dropout_seed
        )

    def get_config(self):
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "num_ops": self.num_ops,
            "out_filters": self.out_filters,
            "num_classes": self.num_classes,
            "image_shape": list(self.image_shape),
            "keep_prob": self.keep_prob,
            "separable": self.separable,
            "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon,
        }

    # ----- weight inheritance ------------------------------------------------

    def child_config(self) -> ChildConfig:
        """The `ChildConfig` of the fixed networks this supernet computes."""
        return ChildConfig(
            out_filters=self.out_filters,
            keep_prob=self.keep_prob,
            separable=self.separable,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
        )

    def child_weights(self, arc) -> dict[str, list[np.ndarray]]:
        """The selected weights of `arc`, keyed by the fixed child's layer names.

        `build_child(space, arc, supernet.child_config(), ...)` has exactly
        these layers with weights (reductions nothing reads are pruned, see
        `reduced_entries`); `enas_tf.supernet.micro_child.load_child_weights` sets them.

        Args:
          arc: an arc of `self.space` (validated).

        Returns:
          Layer name -> the list of arrays `layer.set_weights` takes.

        Raises:
          ArcError: for an arc outside the space.
        """
        arch = self.space.decode(arc)

        def value(name):
            return self.shared[name].numpy()

        weights = {
            "stem.conv": [value("stem.conv")],
            "stem.bn": self.bns["stem.bn"].slice(0),
        }
        reduced = reduced_entries(arch)
        for layer, choice in enumerate(arch.layers):
            name, op = f"layer{layer}", MACRO_OPS[choice.op]
            weights[f"{name}.op.in.conv"] = [value(f"{name}.op.in.conv")[choice.op][None, None]]
            weights[f"{name}.op.in.bn"] = self.bns[f"{name}.op.in.bn"].slice(choice.op)
            base = f"{name}.op.{op}"
            if self._is_sep(op):
                weights[f"{name}.op.sep"] = [value(f"{base}.dw"), value(f"{base}.pw")]
            elif table.op(op).has_weights:
                weights[f"{name}.op.conv"] = [value(f"{base}.conv")]
            if table.op(op).has_weights:
                weights[f"{name}.op.bn"] = self.bns[f"{base}.bn"].slice(0)
            if layer > 0:
                blocks = value(f"{name}.skip.conv")[[*choice.skip_sources, layer]]
                weights[f"{name}.skip.conv"] = [blocks.reshape(1, 1, -1, blocks.shape[-1])]
                weights[f"{name}.skip.bn"] = self.bns[f"{name}.skip.bn"].slice(0)
            for j in range(layer + 2):
                if (layer, j) in reduced:
                    base = f"{name}.reduce{j}"
                    for path in ("path1", "path2"):
                        weights[f"{base}.{path}"] = [value(f"{base}.{path}")]
                    weights[f"{base}.bn"] = self.bns[f"{base}.bn"].slice(0)
        weights["logits.fc"] = [value("logits.fc")]
        return weights
