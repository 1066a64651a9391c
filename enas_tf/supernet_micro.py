"""Shared-weight micro supernet: every cell architecture in one Keras model.

`MicroSupernet(...)(images, arc=arc)` runs the fixed micro network of `arc`
(`enas_tf.child_micro`, same sizes) on weights shared by all architectures.
The arc is an int32 tensor, so one traced graph serves every architecture;
only the chosen ops run (`tf.switch_case` on the op id, `tf.cond` on whether
a reduction-cell input is strided), and their weights are picked with
`tf.gather` from stacks indexed by the chosen input node.

Sharing follows the original (ENAS_REFERENCE sec. 2.6): a weight belongs to
one (cell position, node, slot, op, input node); positions share nothing.
Unlike the original search model, the supernet computes exactly the final
network (paper: the searched child *is* the network that gets retrained),
so `child_weights` can copy the selected weights into `build_child` and get
the same outputs. In particular (sec. 10):
- bug 7: reduction cells are strided and read [prev-prev, prev] like the
  final model, instead of running stride 1 on pre-reduced copies;
- bug 9: batch norm uses moving statistics at inference (validation and
  rewards) unless the caller passes `training=True`;
- the cell output concatenates its loose ends (k * C channels) and every
  consumer (the next cells' calibration, the classifier) reads that concat
  through weights stored per node block and gathered for the loose ends.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from enas_tf import shared_ops as ops
from enas_tf.child_micro import reduction_positions
from enas_tf.config import ChildConfig
from enas_tf.spaces.micro import MICRO_OPS, MicroSpace


@dataclasses.dataclass
class _Out:
    """A cell output: its nodes (same shape) and the loose-end indices."""

    nodes: list
    ends: tf.Tensor  # int64 [k], increasing


@keras.saving.register_keras_serializable(package="enas_tf")
class MicroSupernet(keras.Model):
    """All micro architectures of a given size, with shared weights.

    Args:
      num_nodes: B, computed nodes per cell.
      num_ops: candidate ops (first `num_ops` of `MICRO_OPS`).
      num_layers: L normal cells (L + 2 positions, as `build_child`).
      out_filters: C0.
      num_classes: classes.
      image_shape: `(height, width, channels)`.
      keep_prob: dropout keep probability before the classifier.
      bn_momentum, bn_epsilon: batch-norm settings.

    Call arguments:
      images: float32 `[batch, height, width, channels]`, normalised.
      arc: int32 `[8 * num_nodes]`, an arc of `MicroSpace(num_nodes, num_ops)`.
      training: Python bool: batch statistics (and their moving-average
        update) and dropout when True.
    """

    def __init__(
        self,
        num_nodes: int = 5,
        num_ops: int = 5,
        num_layers: int = 6,
        out_filters: int = 20,
        num_classes: int = 10,
        image_shape=(32, 32, 3),
        keep_prob: float = 1.0,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.space = MicroSpace(num_nodes=num_nodes, num_ops=num_ops)
        ChildConfig(out_filters=out_filters, num_layers=num_layers).check(self.space)
        self.num_nodes, self.num_ops = num_nodes, num_ops
        self.num_layers, self.out_filters = num_layers, out_filters
        self.num_classes, self.image_shape = num_classes, tuple(image_shape)
        self.keep_prob = keep_prob
        self.bn_momentum, self.bn_epsilon = bn_momentum, bn_epsilon
        self.reductions = reduction_positions(num_layers)
        self.shared: dict[str, keras.Variable] = {}
        self.bns: dict[str, ops.SharedBN] = {}
        self._create_weights()

    # ----- weights -----------------------------------------------------------

    def _weight(self, name, shape, init="he_normal", trainable=True):
        # He-normal on the per-candidate slice, as the child's layers do.
        if init == "he_normal":
            fan_in = int(np.prod(shape[1:-1])) if len(shape) > 2 else shape[-2]
            if len(shape) == 5:  # depthwise [n, k, k, C, 1]: fan-in k*k
                fan_in = shape[1] * shape[2]
            init = keras.initializers.TruncatedNormal(stddev=np.sqrt(2.0 / fan_in) / 0.87962566)
        var = self.add_weight(name=name, shape=shape, initializer=init, trainable=trainable)
        self.shared[name] = var
        return var

    def _bn(self, name, rows, channels):
        make = lambda kind, init, t: self._weight(f"{name}.{kind}", (rows, channels), init, t)
        self.bns[name] = ops.SharedBN(
            make("gamma", "ones", True), make("beta", "zeros", True),
            make("mean", "zeros", False), make("var", "ones", False),
            self.bn_momentum, self.bn_epsilon,
        )

    def _conv_bn_weights(self, name, rows, c_in, c_out):
        self._weight(f"{name}.conv", (rows, c_in, c_out))
        self._bn(f"{name}.bn", 1, c_out)

    def _fr_weights(self, name, rows, c_in, c_out, bn_rows=1):
        self._weight(f"{name}.path1", (rows, c_in, c_out // 2))
        self._weight(f"{name}.path2", (rows, c_in, c_out // 2))
        self._bn(f"{name}.bn", bn_rows, c_out)

    def _create_weights(self):
        c0, b = self.out_filters, self.num_nodes
        channels = 3 * c0
        self._weight("stem.conv", (3, 3, self.image_shape[2], channels))
        self._bn("stem.bn", 1, channels)
        # (rows, channels per row, resolution level) of the two inputs.
        prev_prev = prev = (1, channels, 0)
        c = c0
        for p in range(self.num_layers + 2):
            reduction = p in self.reductions
            c = 2 * c if reduction else c
            name = f"cell{p}"
            if prev_prev[2] < prev[2]:
                self._fr_weights(f"{name}.in.x", prev_prev[0], prev_prev[1], c)
            else:
                self._conv_bn_weights(f"{name}.in.x", prev_prev[0], prev_prev[1], c)
            self._conv_bn_weights(f"{name}.in.y", prev[0], prev[1], c)
            for n in range(2, b + 2):
                for slot in ("a", "b"):
                    base = f"{name}.node{n}.{slot}"
                    for op in self.space.ops:
                        if not op.startswith("sep_conv"):
                            continue
                        k = int(op[-1])
                        for unit in (1, 2):
                            unit_name = f"{base}.{op}.sep{unit}"
                            self._weight(f"{unit_name}.dw", (n, k, k, c, 1))
                            self._weight(f"{unit_name}.pw", (n, 1, 1, c, c))
                            self._bn(f"{unit_name}.bn", n, c)
                    if reduction and "identity" in self.space.ops:
                        self._fr_weights(f"{base}.reduce", 2, c, c, bn_rows=2)
            if reduction:
                for i in (0, 1):
                    self._fr_weights(f"{name}.end{i}", 1, c, c)
            level = prev[2] + (1 if reduction else 0)
            prev_prev, prev = prev, (b + 2, c, level)
        self._weight("logits.fc", (prev[0], prev[1], self.num_classes))

    # ----- forward -----------------------------------------------------------

    def _concat(self, source):
        """The concatenated loose ends of a cell output (or the stem)."""
        if isinstance(source, tf.Tensor):
            return source, tf.zeros([1], tf.int64)
        selected = tf.gather(tf.stack(source.nodes), source.ends)  # [k, N, H, W, C]
        shape = tf.shape(selected)
        merged = tf.transpose(selected, [1, 2, 3, 0, 4])
        x = tf.reshape(merged, [shape[1], shape[2], shape[3], shape[0] * shape[4]])
        return x, source.ends

    def _rows(self, name, rows):
        """Gathers per-node weight blocks into a `[1, 1, k * C_in, C_out]` kernel."""
        w = tf.gather(self.shared[name].value, rows)
        return tf.reshape(w, [1, 1, -1, w.shape[-1]])

    def _linear_in(self, source, name, training, reduce=False):
        """ReLU -> 1x1 conv -> BN, or ReLU -> factorized reduction, on a source."""
        x, rows = self._concat(source)
        x = tf.nn.relu(x)
        if reduce:
            x = tf.concat(
                [ops.conv(x, self._rows(f"{name}.path1", rows), 2),
                 ops.conv(ops.shift(x), self._rows(f"{name}.path2", rows), 2)], -1)
        else:
            x = ops.conv(x, self._rows(f"{name}.conv", rows))
        return self.bns[f"{name}.bn"](x, 0, training)

    def _fr(self, x, name, index, training):
        """Factorized reduction of a plain tensor with weights row `index`."""
        w1 = tf.gather(self.shared[f"{name}.path1"].value, index)[None, None]
        w2 = tf.gather(self.shared[f"{name}.path2"].value, index)[None, None]
        x = tf.concat([ops.conv(x, w1, 2), ops.conv(ops.shift(x), w2, 2)], -1)
        return self.bns[f"{name}.bn"](x, index, training)

    def _op(self, x, op_id, index, base, strided, training):
        strides = 2 if strided else 1

        def sep(op):
            def run():
                y = x
                for unit in (1, 2):
                    unit_name = f"{base}.{op}.sep{unit}"
                    dw = tf.gather(self.shared[f"{unit_name}.dw"].value, index)
                    pw = tf.gather(self.shared[f"{unit_name}.pw"].value, index)
                    y = ops.sep_conv(tf.nn.relu(y), dw, pw, strides if unit == 1 else 1)
                    y = self.bns[f"{unit_name}.bn"](y, index, training)
                return y
            return run

        branches = []
        for op in self.space.ops:
            if op.startswith("sep_conv"):
                branches.append(sep(op))
            elif op.endswith("pool_3x3"):
                branches.append(lambda kind=op[:3]: ops.pool(x, kind, strides))
            elif strided:
                branches.append(lambda: self._fr(x, f"{base}.reduce", index, training))
            else:
                branches.append(lambda: tf.identity(x))
        return tf.switch_case(op_id, branches)

    def _cell(self, p, cell_arc, x, y, reduction, training):
        nodes = [x, y]
        for n in range(2, self.num_nodes + 2):
            outs = []
            for s, slot in enumerate(("a", "b")):
                index = cell_arc[4 * (n - 2) + 2 * s]
                op_id = cell_arc[4 * (n - 2) + 2 * s + 1]
                base = f"cell{p}.node{n}.{slot}"

                def run(candidates, offset, strided, index=index, op_id=op_id, base=base):
                    def branch():
                        inp = ops.select(candidates, index - offset)
                        return self._op(inp, op_id, index, base, strided, training)
                    return branch

                if reduction and n > 2:
                    # Inputs 0 and 1 are still large: their ops are strided.
                    out = tf.cond(index < 2, run(nodes[:2], 0, True),
                                  run(nodes[2:], 2, False))
                elif reduction:
                    out = run(nodes[:2], 0, True)()
                else:
                    out = run(nodes, 0, False)()
                outs.append(out)
            nodes.append(outs[0] + outs[1])
        inputs = tf.stack([cell_arc[4 * i + j] for i in range(self.num_nodes) for j in (0, 2)])
        used = tf.reduce_any(
            tf.equal(tf.range(self.num_nodes + 2)[:, None], inputs[None, :]), axis=1)
        if reduction:
            for i in (0, 1):
                reduced_shape = tf.shape(nodes[2])
                nodes[i] = tf.cond(
                    used[i],
                    lambda: tf.zeros(reduced_shape, nodes[2].dtype),
                    lambda i=i: self._fr(nodes[i], f"cell{p}.end{i}", 0, training))
        return _Out(nodes, tf.where(~used)[:, 0])

    def forward(self, images, arc, training=False):
        """Logits `[batch, num_classes]` (float32) of `arc` on `images`."""
        arc = tf.convert_to_tensor(arc, tf.int32)
        if arc.shape.rank != 1 or arc.shape[0] not in (None, self.space.num_decisions):
            raise ValueError(
                f"{self.space.describe()}: expected an arc of "
                f"{self.space.num_decisions} integers; received shape {arc.shape}."
            )
        half = 4 * self.num_nodes
        x = ops.conv(tf.cast(images, tf.float32), self.shared["stem.conv"].value)
        stem = self.bns["stem.bn"](x, 0, training)
        prev_prev = prev = stem
        for p in range(self.num_layers + 2):
            reduction = p in self.reductions
            larger = p - 1 in self.reductions
            x = self._linear_in(prev_prev, f"cell{p}.in.x", training, reduce=larger)
            y = self._linear_in(prev, f"cell{p}.in.y", training)
            cell_arc = arc[half:] if reduction else arc[:half]
            out = self._cell(p, cell_arc, x, y, reduction, training)
            prev_prev, prev = prev, out
        features, rows = self._concat(prev)
        features = tf.reduce_mean(tf.nn.relu(features), axis=[1, 2])
        if training and self.keep_prob < 1.0:
            features = tf.nn.dropout(features, rate=1.0 - self.keep_prob)
        fc = tf.reshape(tf.gather(self.shared["logits.fc"].value, rows), [-1, self.num_classes])
        return tf.matmul(features, fc)

    def call(self, images, arc=None, training=False):
        if arc is None:
            raise ValueError("MicroSupernet needs the architecture: call(images, arc=...).")
        return self.forward(images, arc, training=bool(training))

    def get_config(self):
        return {
            **super().get_config(),
            "num_nodes": self.num_nodes, "num_ops": self.num_ops,
            "num_layers": self.num_layers, "out_filters": self.out_filters,
            "num_classes": self.num_classes, "image_shape": list(self.image_shape),
            "keep_prob": self.keep_prob, "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon,
        }

    # ----- weight inheritance ------------------------------------------------

    def child_config(self) -> ChildConfig:
        """The `ChildConfig` of the fixed networks this supernet computes."""
        return ChildConfig(
            out_filters=self.out_filters, num_layers=self.num_layers,
            keep_prob=self.keep_prob, bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
        )

    def child_weights(self, arc) -> dict[str, list[np.ndarray]]:
        """The selected weights of `arc`, keyed by the fixed child's layer names.

        `build_child(space, arc, supernet.child_config(), ...)` has exactly
        these layers; `load_child_weights` sets them.
        """
        arch = self.space.decode(arc)
        value = lambda name: self.shared[name].numpy()
        weights = {
            "stem.conv": [value("stem.conv")],
            "stem.bn": self.bns["stem.bn"].slice(0),
        }
        prev_prev_ends = prev_ends = [0]
        for p in range(self.num_layers + 2):
            reduction = p in self.reductions
            cell = arch.reduce if reduction else arch.normal
            name = f"cell{p}"

            def blocks(key, rows):
                w = value(key)[rows]
                return w.reshape(1, 1, -1, w.shape[-1])

            if p - 1 in self.reductions:
                for path in ("path1", "path2"):
                    weights[f"{name}.in.x.{path}"] = [blocks(f"{name}.in.x.{path}", prev_prev_ends)]
            else:
                weights[f"{name}.in.x.conv"] = [blocks(f"{name}.in.x.conv", prev_prev_ends)]
            weights[f"{name}.in.x.bn"] = self.bns[f"{name}.in.x.bn"].slice(0)
            weights[f"{name}.in.y.conv"] = [blocks(f"{name}.in.y.conv", prev_ends)]
            weights[f"{name}.in.y.bn"] = self.bns[f"{name}.in.y.bn"].slice(0)
            for n, node in enumerate(cell.nodes, start=2):
                for slot, index, op_id in (("a", node.input_a, node.op_a),
                                           ("b", node.input_b, node.op_b)):
                    op = MICRO_OPS[op_id]
                    base = f"{name}.node{n}.{slot}"
                    if op.startswith("sep_conv"):
                        for unit in (1, 2):
                            src = f"{base}.{op}.sep{unit}"
                            weights[f"{base}.sep{unit}.conv"] = [
                                value(f"{src}.dw")[index], value(f"{src}.pw")[index]]
                            weights[f"{base}.sep{unit}.bn"] = self.bns[f"{src}.bn"].slice(index)
                    elif op == "identity" and reduction and index < 2:
                        for path in ("path1", "path2"):
                            weights[f"{base}.reduce.{path}"] = [
                                value(f"{base}.reduce.{path}")[index][None, None]]
                        weights[f"{base}.reduce.bn"] = self.bns[f"{base}.reduce.bn"].slice(index)
            ends = list(cell.loose_ends)
            if reduction:
                for i in (0, 1):
                    if i in ends:
                        for path in ("path1", "path2"):
                            weights[f"{name}.end{i}.{path}"] = [value(f"{name}.end{i}.{path}")[0][None, None]]
                        weights[f"{name}.end{i}.bn"] = self.bns[f"{name}.end{i}.bn"].slice(0)
            prev_prev_ends, prev_ends = prev_ends, ends
        fc = value("logits.fc")[prev_ends]
        weights["logits.fc"] = [fc.reshape(-1, self.num_classes)]
        return weights


def load_child_weights(child: keras.Model, weights: dict[str, list[np.ndarray]]) -> None:
    """Sets a fixed child's layers from `MicroSupernet.child_weights`.

    Raises:
      ValueError: when a child layer with weights has no entry, or shapes
        differ (the child was built with other sizes).
    """
    for layer in child.layers:
        if not layer.weights:
            continue
        if layer.name not in weights:
            raise ValueError(f"No shared weights for child layer {layer.name!r}.")
        layer.set_weights(weights[layer.name])
