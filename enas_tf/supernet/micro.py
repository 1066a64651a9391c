"""Shared-weight micro supernet: every cell architecture in one Keras model.

`MicroSupernet(...)(images, arc=arc)` runs the fixed micro network of `arc`
(`enas_tf.child.micro`, same sizes) on weights shared by all architectures.
The arc is an int32 tensor, so one traced graph serves every architecture;
only the chosen ops run: each slot (node input) is one `tf.switch_case`
over its candidate ops (in a reduction cell, over op x {strided on input 0
or 1, plain on a later node}), applied to the input node picked by another
switch (`shared_ops.select`) with the weights of that input gathered from
stacks.

Sharing follows the original (ENAS_REFERENCE sec. 2.6): a weight belongs to
one (cell position, node, slot, op, input node); positions share nothing.
A cell's op weights are stored as one stack per weight with a row per
(node, slot, input node) (`slot_rows`). Unlike the original search model,
the supernet computes exactly the final network (paper: the searched child
*is* the network that gets retrained), so `child_weights` can copy the
selected weights into `build_child` and get the same outputs. In
particular (sec. 10):
- bug 7: reduction cells are strided and read [prev-prev, prev] like the
  final model, instead of running stride 1 on pre-reduced copies;
- bug 9: batch norm uses moving statistics at inference (validation and
  rewards) unless the caller passes `training=True` (or `batch_stats=True`,
  batch statistics without updates, as the original evaluated rewards);
- the cell output concatenates every computed node (B * C channels;
  `cell_output="all"`, the default, see "Learning") or its loose ends
  (k * C channels), and every consumer (the next cells' calibration, the
  classifier) reads that concat through weights stored per node block and
  gathered for the blocks present.

Learning (issue 14). Trained on a new random architecture every step, the
supernet as first built (the paper's loose-end cell outputs, He-normal
initialisation) stayed near chance on digits (child training accuracy
0.12 after 10 epochs, 0.16 after 30) where a fixed architecture in the same
supernet reached 0.96. Experiments (digits, B=5, 5 cells, C0=8, 10 epochs,
Random-WS; training accuracy): fixing the normal cell and drawing only the
reduction cell at random: 0.94; the other way round: 0.45; normal cells of
random pooling/identity ops only: 0.53, of random sep convs only: 0.17. So
what stops learning is the sep convs of the normal cells: each weight row
(cell position, node, slot, op, input) runs in a few percent of the steps,
and while barely trained it adds a full-scale (batch-normalised) random
feature map to its node, every step a different one. Three changes, each
an initialisation or a search-time choice, make the shared weights learn
(10 epochs: 0.12 -> 0.48; 30 epochs, `bench/supernet_learning.py`:
training accuracy 0.17 -> 0.64-0.66 and validation accuracy of unseen
random architectures with batch statistics 0.16 -> 0.77-0.78 (two runs);
0.79 and 0.81 without
augmentation, where the peer of issue 14, NNI's ENAS cell space, reached
0.81 and 0.74):
- `zero_last_bn`: each sep conv's second batch norm starts with scale 0,
  so an untrained conv adds nothing and grows in as it learns (the
  "zero-init the last BN of a residual branch" practice, Goyal et al.
  2017); alone it is not enough (0.16);
- `initializer="uniform"`: weights uniform in +-1/sqrt(fan-in) (PyTorch's
  default, which NNI's and DARTS's supernets use) instead of He-normal:
  every conv here is followed by batch norm, so 2.4x smaller weights are a
  6x larger effective learning rate for rows that are rarely trained, and
  the classifier's first logits are small (first-epoch loss 2.7, not 4.5);
  without it 0.20;
- `cell_output="all"`: a cell outputs every computed node concatenated (a
  fixed width and a fixed block per node for the consumers' weights), as
  NNI's and DARTS's one-shot supernets do, instead of its loose ends: 0.48
  vs 0.29 with loose ends (the paper's cell, still available). The derived
  architecture is then trained with the paper's loose-end output by default
  (`enas-train`), or with `--cell_output=all` to start from the search's
  weights (`--init_from_search`, which takes it from the search).
Not the cause: sharing op weights across input choices (NNI's
granularity; 0.52 vs 0.48 with the changes above), the optimiser's
momentum on unused rows, L2, clipping, the learning rate (0.01 or 0.2: no
better). The initialisation changes do not change the fixed child or its
parameter counts; published networks keep the paper's cell output.

Tracing: building switches and their gradients is what makes a step slow to
trace, so the slot switch and the input switch are `shared_ops.shared_trace`
functions of tensors and variables: every slot of every cell with the same
shapes (all slots of the cells of a stage, as a cell's stacks have the same
shapes whatever the node) calls one trace, whose gradient is built once.

Speed (issue 15). A cell's trainable stacks are read once per step as one
flat `[rows, width]` stack per row group (`flat_weights`), a slot gathers its
row of it outside the shared slot function and splits it inside
(`unflatten`): each slot's weight gradient is then a single one-row
`IndexedSlices`, densified once per cell, where gathering each stack inside
the slot function densified every stack's gradient once per slot (1,413
scatters of whole stacks per step at the issue's size; the step graph had
16,500 ops, now 14,500, and traced in 23 s, now 17.5). With the max pool of
`shared_ops.max_pool`, a search step takes 0.85x the time it took
(`bench/peer_child_phase.py`, README).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from enas_tf.configs.image import CELL_OUTPUTS, ChildConfig
from enas_tf.ops import shared as ops
from enas_tf.ops import table
from enas_tf.spaces.micro import MicroSpace, reduction_positions
from enas_tf.supernet import micro_child
from enas_tf.supernet.slots import flat_weights, slot_rows, switch_slot

INITIALIZERS = ("uniform", "he_normal")


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
      cell_output: "all" (every computed node of a cell concatenated; the
        default) or "loose_ends" (the paper's final cell); see "Learning".
      initializer: "uniform" (fan-in uniform, the default) or "he_normal"
        (the fixed child's initialiser); see "Learning".
      zero_last_bn: start the scale (gamma) of each sep conv's second batch
        norm at 0 (the default); see "Learning".

    Call arguments:
      images: float32 `[batch, height, width, channels]`, normalised.
      arc: int32 `[8 * num_nodes]`, an arc of `MicroSpace(num_nodes, num_ops)`.
      training: Python bool: batch statistics (and their moving-average
        update) and dropout when True.
      batch_stats: with `training=False`, normalise with the batch's
        statistics instead of the moving averages, updating nothing and
        without dropout (the original search's reward evaluation).
    """

    # How a slot picks its input and computes its output; the benchmark
    # `bench/sharing_overhead.py` swaps in "compute every op, then pick".
    pick_input = staticmethod(ops.select_shared)
    slot_function = staticmethod(switch_slot)

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
        cell_output: str = "all",
        initializer: str = "uniform",
        zero_last_bn: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if cell_output not in CELL_OUTPUTS or initializer not in INITIALIZERS:
            raise ValueError(
                f"cell_output must be one of {CELL_OUTPUTS} and initializer one of "
                f"{INITIALIZERS}; received {cell_output!r}, {initializer!r}."
            )
        self.cell_output, self.initializer = cell_output, initializer
        self.zero_last_bn = zero_last_bn
        # One traced slot per supernet: a trace holds on to the variables it
        # first saw, so sharing it across supernets fails once one is deleted.
        self._run_slot = ops.shared_trace(self.slot_function)
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

    def _weight(self, name, shape, init="fan_in", trainable=True):
        # `initializer` on the per-candidate slice (a block of a per-node
        # stack counts as one candidate).
        if init == "fan_in":
            if name == "stem.conv" and self.initializer == "uniform":  # [k, k, in, out]
                # (He-normal keeps the fan-in it always had here, k * in.)
                fan_in = int(np.prod(shape[:-1]))
            elif len(shape) == 5 and shape[-1] == 1:  # depthwise [n, k, k, C, 1]
                fan_in = shape[1] * shape[2]
            else:  # [n, ..., in, out]
                fan_in = int(np.prod(shape[1:-1]))
            if self.initializer == "uniform":
                limit = 1.0 / np.sqrt(fan_in)
                init = keras.initializers.RandomUniform(-limit, limit)
            else:
                init = keras.initializers.TruncatedNormal(stddev=np.sqrt(2.0 / fan_in) / 0.87962566)
        if trainable:
            var = self.add_weight(name=name, shape=shape, initializer=init)
        else:
            var = ops.moving_statistic(self, name, shape, init)
        self.shared[name] = var
        return var

    def _bn(self, name, rows, channels):
        def make(kind, init, trainable):
            return self._weight(f"{name}.{kind}", (rows, channels), init, trainable)

        last = self.zero_last_bn and name.endswith(".sep2.bn")
        self.bns[name] = ops.SharedBN(
            make("gamma", "zeros" if last else "ones", True),
            make("beta", "zeros", True),
            make("mean", "zeros", False),
            make("var", "ones", False),
            self.bn_momentum,
            self.bn_epsilon,
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
            # One stack per op weight for the whole cell, a row per (node,
            # slot, input node): few variables keep the optimizer's graph
            # small, and every cell of a stage has the same shapes, so the
            # traced slot function is shared (`slot_rows` gives the rows).
            rows = b * (b + 3)
            for op in self.space.ops:
                if table.op(op).kind == "sep_conv":
                    k = table.op(op).kernel
                    for unit in (1, 2):
                        self._weight(f"{name}.{op}.sep{unit}.dw", (rows, k, k, c, 1))
                        self._weight(f"{name}.{op}.sep{unit}.pw", (rows, 1, 1, c, c))
                        self._bn(f"{name}.{op}.sep{unit}.bn", rows, c)
            if reduction and "identity" in self.space.ops:
                # Identity on a strided input: one row per (node, slot, input 0/1).
                self._fr_weights(f"{name}.reduce", 4 * b, c, c, bn_rows=4 * b)
            all_nodes = self.cell_output == "all"
            if reduction and not all_nodes:
                for i in (0, 1):
                    self._fr_weights(f"{name}.end{i}", 1, c, c)
            level = prev[2] + (1 if reduction else 0)
            # Consumers hold a weight block per node the output may hold.
            prev_prev, prev = prev, (b if all_nodes else b + 2, c, level)
        self._weight("logits.fc", (prev[0], prev[1], self.num_classes))

    # ----- forward -----------------------------------------------------------

    def _concat(self, nodes, ends):
        """A cell's output: its loose ends `ends` (int64 `[k]`, increasing)
        concatenated on channels, and `ends` (rows of the consumers' weights)."""
        selected = tf.gather(tf.stack(nodes), ends)  # [k, N, H, W, C]
        shape = tf.shape(selected)
        merged = tf.transpose(selected, [1, 2, 3, 0, 4])
        x = tf.reshape(merged, [shape[1], shape[2], shape[3], shape[0] * shape[4]])
        return x, ends

    def _rows(self, name, rows):
        """Gathers per-node weight blocks into a `[k * C_in, C_out]` kernel."""
        w = tf.gather(self.shared[name].value, rows)
        return tf.reshape(w, [-1, w.shape[-1]])

    def _linear_in(self, source, name, training, reduce=False):
        """1x1 conv -> BN, or factorized reduction, of a cell output (or the
        stem) after its ReLU: `source = (relu(x), rows)`. The ReLU is taken
        once per output (`forward`), though two cells read it."""
        x, rows = source
        if reduce:
            x = ops.factorized_reduction(
                x, self._rows(f"{name}.path1", rows), self._rows(f"{name}.path2", rows)
            )
        else:
            x = ops.conv(x, self._rows(f"{name}.conv", rows)[None, None])
        return self.bns[f"{name}.bn"](x, 0, training)

    def _fr(self, x, name, index, training):
        """Factorized reduction of a plain tensor with weights row `index`."""
        paths = (
            tf.gather(self.shared[f"{name}.{path}"].value, index) for path in ("path1", "path2")
        )
        x = ops.factorized_reduction(x, *paths)
        return self.bns[f"{name}.bn"](x, index, training)

    def _cell_weights(self, p):
        """Cell `p`'s op weights for its slots: `(flat, layout, stats)`.

        `flat` and `layout` are the trainable stacks as flat stacks (see
        `flat_weights`); `stats` the moving statistics `{op: [(mean, var)]
        * units}` as `tf.Variable`s.
        """
        stacks, stats = {}, {}
        bn = lambda name: tuple(v.value for v in self.bns[name].variables)
        for op in self.space.ops:
            if table.op(op).kind == "sep_conv":
                for u in (1, 2):
                    unit = (
                        *(self.shared[f"cell{p}.{op}.sep{u}.{w}"].value for w in ("dw", "pw")),
                        *bn(f"cell{p}.{op}.sep{u}.bn"),
                    )
                    stacks.setdefault("sep", []).append((op, u, unit[:4]))
                    stats.setdefault(op, []).append(unit[4:])
        if f"cell{p}.reduce.bn" in self.bns:
            unit = (
                self.shared[f"cell{p}.reduce.path1"].value,
                self.shared[f"cell{p}.reduce.path2"].value,
                *bn(f"cell{p}.reduce.bn"),
            )
            stacks["reduce"] = [("identity", 1, unit[:4])]
            stats["identity"] = [unit[4:]]
        flat, layout = flat_weights(stacks)
        return flat, layout, stats

    def _slot_output(self, nodes, n, s, index, op_id, weights, reduction, settings):
        """Slot `s` (0 = a, 1 = b) of node `n`: op `op_id` on node `index`.

        The slot's rows of the cell's flat stacks are gathered here, outside
        the shared slot function: a slot's weight gradient is then one row
        per flat stack (an `IndexedSlices`), and the stacks' gradients are
        densified once per cell and step instead of once per slot and
        weight (issue 15: 1,413 dense scatters per step before).
        """
        row, reduce_row = slot_rows(n, s)
        rows = tf.stack([row + index, reduce_row + tf.minimum(index, 1)])
        flat, layout, stats = weights
        flat_rows = {
            group: tf.gather(stack, rows[1] if group == "reduce" else rows[0])
            for group, stack in flat.items()
        }
        if reduction and n > 2:
            # Inputs 0 and 1 are still large: ops on them are strided.
            inputs = (
                self.pick_input(nodes[:2], tf.minimum(index, 1)),
                self.pick_input(nodes[2:], tf.maximum(index - 2, 0)),
            )
            strides = (2, 1)
            branch = op_id + self.num_ops * tf.cast(index >= 2, tf.int32)
        else:
            inputs, strides = (self.pick_input(nodes, index),), (2 if reduction else 1,)
            branch = op_id
        return self._run_slot(inputs, strides, branch, rows, flat_rows, layout, stats, **settings)

    def _cell(self, p, cell_arc, x, y, reduction, training):
        """Cell `p` on calibrated inputs `x`, `y`: `(output, loose ends)`."""
        nodes = [x, y]
        weights = self._cell_weights(p)
        settings = {
            "num_ops": self.num_ops,
            "momentum": self.bn_momentum,
            "epsilon": self.bn_epsilon,
            "training": training,
        }
        for n in range(2, self.num_nodes + 2):
            a, b = (
                self._slot_output(
                    nodes,
                    n,
                    s,
                    cell_arc[4 * (n - 2) + 2 * s],
                    cell_arc[4 * (n - 2) + 2 * s + 1],
                    weights,
                    reduction,
                    settings,
                )
                for s in (0, 1)
            )
            nodes.append(a + b)
        if self.cell_output == "all":
            return tf.concat(nodes[2:], -1), tf.range(self.num_nodes, dtype=tf.int64)
        inputs = tf.stack([cell_arc[4 * i + j] for i in range(self.num_nodes) for j in (0, 2)])
        used = tf.reduce_any(
            tf.equal(tf.range(self.num_nodes + 2)[:, None], inputs[None, :]), axis=1
        )
        if reduction:
            reduced_shape = tf.shape(nodes[2])
            for i in (0, 1):
                nodes[i] = tf.cond(
                    used[i],
                    lambda: tf.zeros(reduced_shape, nodes[2].dtype),
                    lambda i=i: self._fr(nodes[i], f"cell{p}.end{i}", 0, training),
                )
        return self._concat(nodes, tf.where(~used)[:, 0])

    def forward(self, images, arc, training=False, dropout_seed=None):
        """Logits `[batch, num_classes]` (float32) of `arc` on `images`."""
        arc = tf.convert_to_tensor(arc, tf.int32)
        if arc.shape.rank != 1 or arc.shape[0] not in (None, self.space.num_decisions):
            raise ValueError(
                f"{self.space.describe()}: expected an arc of "
                f"{self.space.num_decisions} integers; received shape {arc.shape}."
            )
        half = 4 * self.num_nodes
        # Under a mixed-precision policy the computation is 16-bit: the
        # layer's autocast scope casts the weights read with `.value`.
        x = ops.conv(tf.cast(images, self.compute_dtype), self.shared["stem.conv"].value)
        stem = self.bns["stem.bn"](x, 0, training)
        prev_prev = prev = (tf.nn.relu(stem), tf.zeros([1], tf.int64))
        for p in range(self.num_layers + 2):
            reduction = p in self.reductions
            larger = p - 1 in self.reductions
            x = self._linear_in(prev_prev, f"cell{p}.in.x", training, reduce=larger)
            y = self._linear_in(prev, f"cell{p}.in.y", training)
            cell_arc = arc[half:] if reduction else arc[:half]
            out, rows = self._cell(p, cell_arc, x, y, reduction, training)
            prev_prev, prev = prev, (tf.nn.relu(out), rows)
        features, rows = prev
        features = tf.reduce_mean(features, axis=[1, 2])
        if training is True and self.keep_prob < 1.0:
            features = ops.dropout(features, 1.0 - self.keep_prob, dropout_seed)
        fc = tf.gather(self.shared["logits.fc"].value, rows)
        fc = tf.reshape(fc, [-1, self.num_classes])
        return tf.cast(tf.matmul(features, fc), tf.float32)  # float32 logits

    def call(self, images, arc=None, training=False, batch_stats=False, dropout_seed=None):
        if arc is None:
            raise ValueError("MicroSupernet needs the architecture: call(images, arc=...).")
        return self.forward(
            images, arc, training=ops.bn_mode(training, batch_stats), dropout_seed=dropout_seed
        )

    def get_config(self):
        return {
            **super().get_config(),
            "num_nodes": self.num_nodes,
            "num_ops": self.num_ops,
            "num_layers": self.num_layers,
            "out_filters": self.out_filters,
            "num_classes": self.num_classes,
            "image_shape": list(self.image_shape),
            "keep_prob": self.keep_prob,
            "bn_momentum": self.bn_momentum,
            "bn_epsilon": self.bn_epsilon,
            "cell_output": self.cell_output,
            "initializer": self.initializer,
            "zero_last_bn": self.zero_last_bn,
        }

    # ----- weight inheritance ------------------------------------------------

    def child_config(self) -> ChildConfig:
        """The `ChildConfig` of the fixed networks this supernet computes."""
        return ChildConfig(
            out_filters=self.out_filters,
            num_layers=self.num_layers,
            keep_prob=self.keep_prob,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            cell_output=self.cell_output,
        )

    def child_weights(self, arc) -> dict[str, list[np.ndarray]]:
        """The selected weights of `arc`, keyed by the fixed child's layer names
        (`enas_tf.supernet.micro_child.child_weights`)."""
        return micro_child.child_weights(self, arc)
