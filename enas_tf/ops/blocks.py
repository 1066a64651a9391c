"""Building blocks of the fixed child networks, made of stock Keras layers.

Every block takes a `Blocks` settings object (L2 weight, BN constants) and a
name prefix, so that layer names are stable (`cell3.node2.a.sep1.dw`) and
weights can be matched by name, e.g. when copying shared weights from a
supernet or from a training model into its inference twin.

Conventions from the original code (ENAS_REFERENCE sec. 0):
- channels-last; convolutions have no bias (a BN follows each);
- He-normal initialisation (fan-in, truncated normal, std sqrt(2 / fan_in));
- BN momentum 0.9, epsilon 1e-5, scale and offset trainable;
- L2 of weight `l2` on every trainable variable, BN scale and offset included,
  as `l2 * sum(w ** 2)` (no 1/2), which is what `keras.regularizers.L2` adds.
"""

from __future__ import annotations

import dataclasses

import keras

from enas_tf.errors import UserError
from enas_tf.ops import table


@dataclasses.dataclass(frozen=True)
class Blocks:
    """Settings shared by every block of one network.

    Attributes:
      l2: L2 weight on every trainable variable (0 disables it).
      bn_momentum: moving-average decay of batch norm.
      bn_epsilon: batch-norm epsilon.
      affine: batch norm learns a scale and an offset (DARTS's search
        turns them off so that the mixing weights alone scale an op).
      synchronized_bn: under a multi-replica `tf.distribute` strategy, batch
        norm computes its statistics over the global batch (all-reduced
        across replicas), so N replicas train what one device does on the
        same global batch; no effect on one device.
    """

    l2: float = 0.0
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    synchronized_bn: bool = False
    affine: bool = True

    def regularizer(self):
        return keras.regularizers.L2(self.l2) if self.l2 > 0 else None

    def conv(self, filters, kernel, name, strides=1):
        """A k x k convolution, no bias, He-normal."""
        return keras.layers.Conv2D(
            filters,
            kernel,
            strides=strides,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            kernel_regularizer=self.regularizer(),
            name=name,
        )

    def sep_conv(self, filters, kernel, name, strides=1):
        """Depthwise k x k (multiplier 1) then pointwise 1x1, no bias."""
        return keras.layers.SeparableConv2D(
            filters,
            kernel,
            strides=strides,
            padding="same",
            use_bias=False,
            depthwise_initializer="he_normal",
            pointwise_initializer="he_normal",
            depthwise_regularizer=self.regularizer(),
            pointwise_regularizer=self.regularizer(),
            name=name,
        )

    def bn(self, name):
        return keras.layers.BatchNormalization(
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            center=self.affine,
            scale=self.affine,
            beta_regularizer=self.regularizer(),
            gamma_regularizer=self.regularizer(),
            synchronized=self.synchronized_bn,
            name=name,
        )

    def dense(self, units, name):
        """The classifier: linear, no bias (as in the original heads)."""
        return keras.layers.Dense(
            units,
            use_bias=False,
            kernel_initializer="he_normal",
            kernel_regularizer=self.regularizer(),
            name=name,
        )


def relu(x, name):
    return keras.layers.ReLU(name=name)(x)


def conv_bn(blocks: Blocks, x, filters, kernel, name, strides=1, pre_relu=False):
    """[ReLU ->] conv -> BN."""
    if pre_relu:
        x = relu(x, f"{name}.relu")
    x = blocks.conv(filters, kernel, f"{name}.conv", strides)(x)
    return blocks.bn(f"{name}.bn")(x)


def factorized_reduction(blocks: Blocks, x, filters, name):
    """FR(x, C_out): halves height and width, sets channels to `filters`.

    Two paths of 1x1 stride-2 convolutions to C_out/2 each, one on the input
    and one on the input shifted by one pixel up and left, concatenated and
    batch-normalised (ENAS_REFERENCE sec. 0.4). No ReLU inside.

    Raises:
      UserError: when `filters` is odd.
    """
    if filters % 2:
        raise UserError(
            f"Factorized reduction needs an even channel count; received "
            f"{filters}. Use an even --out_filters."
        )
    path1 = blocks.conv(filters // 2, 1, f"{name}.path1", strides=2)(x)
    shifted = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}.pad")(x)
    shifted = keras.layers.Cropping2D(((1, 0), (1, 0)), name=f"{name}.shift")(shifted)
    path2 = blocks.conv(filters // 2, 1, f"{name}.path2", strides=2)(shifted)
    x = keras.layers.Concatenate(name=f"{name}.concat")([path1, path2])
    return blocks.bn(f"{name}.bn")(x)


def reduce_all(blocks: Blocks, tensors, filters, name) -> list:
    """Each of `tensors` through its own factorized reduction to `filters`
    channels (named `{name}{j}`): the macro network's reduction, after which
    every earlier tensor meets the next layers at the new resolution."""
    return [factorized_reduction(blocks, t, filters, f"{name}{j}") for j, t in enumerate(tensors)]


def op_branch(blocks: Blocks, x, op: str, filters: int, strides: int, name: str):
    """Op `op` (a name of the op table) of a micro cell applied to `x`, with
    `strides` 2 where a reduction cell's node reads a cell input. The fixed
    child (`enas_tf.child.micro`) and DARTS's relaxed cells
    (`enas_tf.supernet.relaxed`) build their ops with it.

    sep_conv: (ReLU -> depthwise -> pointwise -> BN) twice, the first
    depthwise strided; pool: SAME pooling; identity: the input, or a
    factorized reduction when strided.
    """
    spec = table.op(op)
    if spec.kind == "sep_conv":
        for unit in (1, 2):
            x = relu(x, f"{name}.sep{unit}.relu")
            stride = strides if unit == 1 else 1
            x = blocks.sep_conv(filters, spec.kernel, f"{name}.sep{unit}.conv", stride)(x)
            x = blocks.bn(f"{name}.sep{unit}.bn")(x)
        return x
    if spec.kind == "pool":
        pool = keras.layers.AveragePooling2D if spec.pool == "avg" else keras.layers.MaxPooling2D
        return pool(spec.kernel, strides=strides, padding="same", name=f"{name}.pool")(x)
    if spec.kind != "identity":
        raise ValueError(f"A micro cell has no op {op!r} (kind {spec.kind}).")
    if strides == 2:  # identity in a reduction cell
        return factorized_reduction(blocks, x, filters, f"{name}.reduce")
    return x


def macro_op(blocks: Blocks, x, op: str, filters: int, separable: bool, name: str):
    """Op `op` of a macro layer applied to `x`, pre-activation (as the
    original final model orders them). The fixed macro child
    (`enas_tf.child.macro`) and DARTS's relaxed macro network
    (`enas_tf.supernet.relaxed`) build their ops with it.

    conv_kxk: ReLU -> 1x1 conv -> BN -> ReLU -> kxk conv -> BN;
    sep_conv_kxk: the same with a depthwise-separable kxk conv (a regular
    one if not `separable`: the original's bug 2); pool: ReLU -> 1x1 conv ->
    BN -> SAME 3x3 pooling.
    """
    x = conv_bn(blocks, x, filters, 1, f"{name}.in", pre_relu=True)
    spec = table.op(op)
    if spec.kind == "pool":
        pool = keras.layers.AveragePooling2D if spec.pool == "avg" else keras.layers.MaxPooling2D
        return pool(spec.kernel, strides=1, padding="same", name=f"{name}.pool")(x)
    if spec.kind not in ("conv", "sep_conv"):
        raise ValueError(f"A macro layer has no op {op!r} (kind {spec.kind}).")
    x = relu(x, f"{name}.relu")
    if spec.kind == "sep_conv" and separable:
        x = blocks.sep_conv(filters, spec.kernel, f"{name}.sep")(x)
    else:
        x = blocks.conv(filters, spec.kernel, f"{name}.conv")(x)
    return blocks.bn(f"{name}.bn")(x)


def calibrate_inputs(blocks: Blocks, x, y, filters: int, layer_base: bool, name: str):
    """A micro cell's inputs (older `x`, newer `y`) at `filters` channels
    and `y`'s resolution: `x` through ReLU -> factorized reduction when twice
    as large, else (and `y` always) ReLU -> 1x1 conv -> BN; `layer_base`
    adds the original's extra 1x1 conv on `y`."""
    # Always calibrated: the original skips the 1x1 conv when an input
    # already has C channels, which happens only when a cell has a single
    # loose end. Calibrating every input keeps the network a fixed function
    # of the shared weights for every architecture (weight inheritance).
    if x.shape[1] == 2 * y.shape[1]:
        x = factorized_reduction(blocks, relu(x, f"{name}.x.relu"), filters, f"{name}.x")
    else:
        x = conv_bn(blocks, x, filters, 1, f"{name}.x", pre_relu=True)
    y = conv_bn(blocks, y, filters, 1, f"{name}.y", pre_relu=True)
    if layer_base:
        y = conv_bn(blocks, y, filters, 1, f"{name}.base", pre_relu=True)
    return x, y


def classifier_head(blocks: Blocks, x, num_classes, keep_prob, name, pre_relu):
    """[ReLU ->] global average pool -> dropout -> linear (no bias).

    Logits are float32 even under a mixed-precision policy (float64 under
    a float64 one).
    """
    if pre_relu:
        x = relu(x, f"{name}.relu")
    x = keras.layers.GlobalAveragePooling2D(name=f"{name}.pool")(x)
    if keep_prob < 1.0:
        x = keras.layers.Dropout(1.0 - keep_prob, name=f"{name}.dropout")(x)
    x = blocks.dense(num_classes, f"{name}.fc")(x)
    # At least float32 (float64 networks keep float64: gradient checks).
    wide = "float64" if keras.config.dtype_policy().compute_dtype == "float64" else "float32"
    return keras.layers.Activation("linear", dtype=wide, name=name)(x)


@keras.saving.register_keras_serializable(package="enas_tf")
class DropPath(keras.layers.Layer):
    """Drops a whole branch for some examples (NASNet/ENAS drop path).

    In training, each example's branch output is zeroed with probability
    `1 - keep` and otherwise scaled by `1 / keep`, where
    `keep = 1 - progress * (1 - final_keep_prob)`. `progress` is a
    non-trainable scalar in [0, 1] that the training loop raises from 0 to 1
    over the run (`DropPathSchedule`), so drop path fades in linearly
    (ENAS_REFERENCE sec. 0.6). At inference it is the identity.

    Args:
      final_keep_prob: keep probability reached at the end of training.
      seed: optional seed of the dropout masks.

    Call arguments:
      inputs: `[batch, height, width, channels]`.
      training: Python bool or boolean tensor.
    """

    def __init__(self, final_keep_prob: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < final_keep_prob <= 1.0:
            raise ValueError(f"final_keep_prob must be in (0, 1]; received {final_keep_prob}.")
        self.final_keep_prob = float(final_keep_prob)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        self.progress = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="progress"
        )

    def call(self, inputs, training=False):
        if not training:
            return inputs
        keep = 1.0 - keras.ops.cast(self.progress, "float32") * (1.0 - self.final_keep_prob)
        batch = keras.ops.shape(inputs)[0]
        noise = keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator, dtype="float32")
        mask = keras.ops.floor(keep + noise) / keep
        return inputs * keras.ops.cast(mask, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "final_keep_prob": self.final_keep_prob,
            "seed": self.seed,
        }
