"""Raw TensorFlow ops on shared (stacked) weights, for the supernets.

A shared weight is stored once per candidate with a leading "candidate" axis
(e.g. one depthwise kernel per possible input node); the architecture picks a
slice with `tf.gather` at run time, so one traced graph serves every
architecture. Batch norm here keeps per-candidate moving statistics and
updates only the selected slice, only on the branch that runs.

Every op computes exactly what the stock Keras layer of the fixed child
computes (same TensorFlow kernels, same padding), so weights copied from a
supernet into a child give the same outputs.

Tracing cost: building a `tf.switch_case` and, above all, its gradient
takes Python time proportional to the ops in its branches and their inputs,
so a supernet with one switch per decision traces slowly. `shared_trace`
makes a piece built once per input signature and called from every place
with that signature (`select_shared` is `select` so wrapped).
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

    def __call__(self, x, index, training):
        """Normalises `x` with candidate `index`'s parameters.

        `training` is a batch-norm mode (`bn_mode`): True normalises with
        batch statistics and updates the moving averages of slice `index`
        only; `BATCH_STATS` normalises with batch statistics and updates
        nothing; False normalises with the moving averages of slice `index`.
        """
        params = [tf.gather(_tf_variable(v), index) for v in self.variables]
        y, stats = batch_norm(x, *params, self.momentum, self.epsilon, training)
        if training is True:
            update_rows(self.mean, self.var, index, stats)
        return y

    @property
    def variables(self) -> tuple:
        """`(gamma, beta, mean, var)`."""
        return (self.gamma, self.beta, self.mean, self.var)

    def slice(self, index: int) -> list:
        """Keras BatchNormalization weights of one candidate."""
        return [v.numpy()[index] for v in self.variables]


def moving_statistic(layer: keras.layers.Layer, name: str, shape, initializer):
    """A batch-norm moving-statistics variable of `layer`, tracked by it.

    Synchronised on read, averaged: under a `tf.distribute` strategy each
    replica updates its own copy from its part of the batch, without a
    synchronisation point (which a `tf.switch_case` branch or a nested
    `tf.function` cannot hold), and reading it across replicas (checkpoints,
    `sync_statistics`) gives their mean. On one device it is a plain variable.
    Never autocast: under a mixed-precision policy the statistics stay
    float32 variables (read and assigned as such), as in Keras' BatchNorm.
    """
    var = keras.Variable(
        initializer,
        shape=shape,
        trainable=False,
        name=name,
        synchronization="on_read",
        aggregation="mean",
        autocast=False,
    )
    layer._track_variable(var)
    return var


def sync_statistics(layer: keras.layers.Layer) -> None:
    """Sets every replica's copy of `layer`'s moving statistics to their mean.

    Call in the cross-replica context (outside `strategy.run`); a no-op on
    one device.
    """
    for var in layer.non_trainable_variables:
        var.assign(var.value.read_value())


# Batch-norm mode of a forward pass that normalises with batch statistics
# but is not training: nothing updates, no dropout (`bn_mode`).
BATCH_STATS = "batch_stats"


def bn_mode(training, batch_stats: bool = False):
    """The mode a supernet passes down as `training`: True (training: batch
    statistics, moving averages updated, dropout), `BATCH_STATS` (batch
    statistics only) or False (inference: moving averages)."""
    if training:
        return True
    return BATCH_STATS if batch_stats else False


def dropout(x, rate: float, seed=None):
    """Dropout of `x` at `rate`; stateless when `seed` (int `[2]`) is given.

    A search passes a seed made of its seed and the optimizer's step, so the
    masks are a function of the checkpointed state and a resumed run draws
    the ones an uninterrupted run would (`enas_tf.search.image`).
    """
    if seed is None:
        return tf.nn.dropout(x, rate=rate)
    return tf.nn.experimental.stateless_dropout(x, rate=rate, seed=seed)


def batch_norm(x, gamma, beta, mean, var, momentum, epsilon, training):
    """Batch norm of `x` with given (not stacked) `[channels]` parameters.

    Args:
      x: `[batch, height, width, channels]`.
      gamma, beta, mean, var: `[channels]` tensors.
      momentum, epsilon: Keras BatchNormalization settings.
      training: a mode (`bn_mode`); True and `BATCH_STATS` use batch
        statistics.

    Returns:
      `(y, stats)`: with batch statistics, `y` is normalised with them
      and `stats` is `(new_mean, new_var)`, the updated moving averages
      (m * momentum + batch * (1 - momentum); the variance average uses the
      unbiased batch variance, as TensorFlow's fused kernel does); at
      inference `y` uses `mean` and `var`, and `stats` is None.

    With a float16 or bfloat16 `x` (mixed precision) the parameters and
    statistics are float32 and so is the arithmetic; `y` has `x`'s dtype.
    """
    gamma, beta, mean, var = (tf.cast(t, tf.float32) for t in (gamma, beta, mean, var))
    if not training:
        # The formula of Keras' BatchNormalization at inference, so a child
        # with copied weights computes the same numbers.
        y = tf.nn.batch_normalization(tf.cast(x, tf.float32), mean, var, beta, gamma, epsilon)
        return tf.cast(y, x.dtype), None
    # One fused kernel normalises and computes the new moving averages
    # (16-bit `x` with float32 parameters is a fused-kernel signature).
    y, new_mean, new_var = tf.compat.v1.nn.fused_batch_norm(
        x,
        gamma,
        beta,
        mean,
        var,
        epsilon=epsilon,
        is_training=True,
        exponential_avg_factor=1.0 - momentum,
    )[:3]
    return y, (new_mean, new_var)


def update_rows(mean, var, index, stats):
    """Writes `stats = (new_mean, new_var)` into row `index` of the stacks.

    The whole stack is assigned (a few KB), which every kind of variable
    supports (`moving_statistic`).
    """
    rows = tf.reshape(tf.convert_to_tensor(index), [1, 1])
    for stat, new in zip((mean, var), stats):
        stat = _tf_variable(stat)
        stat.assign(tf.tensor_scatter_nd_update(stat, rows, new[None]))


def tf_variable(variable):
    """The `tf.Variable` of a Keras variable (a plain one as it is)."""
    # Inside a `tf.function` that takes variables as arguments they are
    # plain `tf.Variable`s; elsewhere Keras variables wrap one.
    return variable.value if isinstance(variable, keras.Variable) else variable


_tf_variable = tf_variable


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
    if kind == "avg":
        return tf.nn.avg_pool2d(x, 3, strides, "SAME")
    return max_pool(x, strides)


def max_pool(x, strides: int):
    """3x3 SAME max pooling whose gradient recomputes the forward pool.

    Same values and gradient as `tf.nn.max_pool2d`. The point is speed on
    CPU inside a `tf.switch_case` branch: oneDNN's max-pool gradient needs
    the forward op's workspace in the same graph, and a branch's gradient
    is another function, so TensorFlow fell back to its own MaxPoolGrad,
    ~6x slower (56 vs 9 ms forward + backward for 64x32x32x20; 8.6% of a
    micro search step, issue 15). Recomputing the pool in the gradient
    function puts the pair back together for ~1.5 ms.
    """
    window = [1, 3, 3, 1]
    step = [1, strides, strides, 1]

    @tf.custom_gradient
    def pool_fn(x):
        def grad(dy):
            y = tf.nn.max_pool2d(x, window, step, "SAME")
            return tf.raw_ops.MaxPoolGrad(
                orig_input=x, orig_output=y, grad=dy, ksize=window, strides=step, padding="SAME"
            )

        return tf.nn.max_pool2d(x, window, step, "SAME"), grad

    # The identity puts the input in the graph being built: a tensor captured
    # from an enclosing graph (a switch branch's input) cannot be closed over
    # by the gradient function.
    return pool_fn(tf.identity(x))


def shift(x):
    """The second path of a factorized reduction: drop the first row and
    column, pad one zero row and column at the bottom and right."""
    return tf.pad(x[:, 1:, 1:, :], [[0, 0], [0, 1], [0, 1], [0, 0]])


def select(candidates, index):
    """`candidates[index]` for a scalar int tensor, without stacking them."""
    if len(candidates) == 1:
        return candidates[0]
    return tf.switch_case(index, [lambda c=c: c for c in candidates])


def shared_trace(fn):
    """`fn` as a `tf.function` whose trace every call site shares.

    Each distinct input signature (shapes, dtypes, Python values) is traced
    once, its gradient built once, and called, not copied, by every call
    site. Pass variables as arguments, not captures: a `tf.Variable`
    argument is traced by shape, so variables of equal shapes share the
    trace.
    """
    # Not inlined into the caller: otherwise the runtime graph holds a copy
    # per call site, and optimising it on the first call takes as long as
    # the trace saved (measured: 2x less first-call time for a micro step).
    # No `reduce_retracing`: TF 2.21 then lets a trace made for variables of
    # one shape serve variables of another, with wrong gradient shapes.
    return tf.function(fn, autograph=False, experimental_attributes={"_noinline": True})


_select_traced = shared_trace(select)


def select_shared(candidates, index):
    """`select`, traced once per candidate count and shapes (`shared_trace`)."""
    return candidates[0] if len(candidates) == 1 else _select_traced(candidates, index)


def factorized_reduction(x, path1, path2):
    """The two paths of a factorized reduction, concatenated (before BN).

    Computes `concat([conv(x, path1, stride 2), conv(shift(x), path2,
    stride 2)])`, what the child's two 1x1 convolutions compute, as one
    2x2 stride-2 VALID convolution whose kernel holds `path1` at tap (0, 0)
    and `path2` at tap (1, 1) (zeros elsewhere; an odd height or width is
    first padded by one zero row or column at the bottom or right, as
    `shift` pads). Same numbers up to rounding, but no strided slice: on
    CPU the gradient of the shifted slice (StridedSliceGrad) took ~35 ms
    for a 64x32x32x100 input, 6% of a micro search step (issue 15's
    profile), where this convolution's gradient takes a few.

    Args:
      x: `[batch, height, width, channels]`.
      path1, path2: `[channels, out_channels // 2]` 1x1 kernels.
    """
    zero = tf.zeros_like(path1)
    first = tf.concat([path1, zero], -1)  # tap (0, 0): path1's half
    last = tf.concat([zero, path2], -1)  # tap (1, 1): path2's half
    empty = tf.zeros_like(first)
    kernel = tf.reshape(tf.stack([first, empty, empty, last]), [2, 2, -1, 2 * _width(path1, 1)])
    pad = [_odd(x, 1), _odd(x, 2)]
    if not (isinstance(pad[0], int) and isinstance(pad[1], int) and pad == [0, 0]):
        x = tf.pad(x, [[0, 0], [0, pad[0]], [0, pad[1]], [0, 0]])
    return tf.nn.conv2d(x, kernel, strides=2, padding="VALID")


def _width(t, axis):
    """`t.shape[axis]` when static, else a scalar tensor."""
    return t.shape[axis] if t.shape[axis] is not None else tf.shape(t)[axis]


def _odd(x, axis):
    """1 if `x`'s size along `axis` is odd else 0 (an int when static)."""
    return _width(x, axis) % 2
