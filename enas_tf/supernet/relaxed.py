"""DARTS's relaxed networks: every op on every edge, mixed by weights.

Micro (`build_relaxed_micro`):

Liu et al. (2019), "DARTS: Differentiable architecture search", sec. 2.1-2.2:
in a cell of B computed nodes, node n (2 .. B+1) is the sum over all earlier
nodes j of a *mixed op* on edge (j, n), `sum_k w[j, n, k] * op_k(node_j)`,
where the weights `w` are the softmax over the ops of the architecture
parameters alpha (`enas_tf.strategies.darts`). The cell outputs its
computed nodes concatenated (`cell_output="all"`, as the fixed child with
that setting).

The ops are the micro space's (`MICRO_OPS[:num_ops]`, built by the fixed
child's builders, `enas_tf.ops.blocks.op_branch`: one op table, no second
copy) plus, optionally, DARTS's "none" (the zero map, `enas_tf.ops.table`),
which lets an edge fade out. Everything else is the fixed micro network at
the same sizes: stem, input calibration, reduction cells at positions
L//3 and 2*(L//3)+1 whose edges from the cell inputs are strided, the
classifier. So with one-hot weights (one op on each of two distinct input
edges of a node, "none" elsewhere) the relaxed network computes exactly the
fixed child of that architecture (tests/supernet/relaxed_test.py), and a
derived cell is an arc of the micro space (`enas-train` takes it as is).

DARTS's search-time choices (sec. 3.1.1 and its code), as options:
- `affine=False`: batch norm inside the cells has no learnable scale and
  offset, "to avoid rescaling the outputs of the candidate operations";
- `pool_bn=True`: a batch norm (without affine parameters) after each
  pooling op, so parameter-free ops are on the scale of the convolutions.
With `affine=True, pool_bn=False` the cells are the fixed child's.
Not followed: DARTS's dilated convolutions, which our micro space does not
have (its derived cells would not be architectures of the space).

Macro (`build_relaxed_macro`), the relaxation of the ENAS macro space
(DARTS searches cells only; this follows the same idea where the macro
space is well defined): layer l mixes its op over the space's ops (+ "none")
with softmax weights, as one edge of a cell; each of its l skip inputs is
scaled by a gate in [0, 1] (a sigmoid of its own architecture parameter,
`enas_tf.strategies.darts`: a skip is a yes/no choice, so it is relaxed as a
Bernoulli, not as a softmax over alternatives) before the skip projection
(ReLU -> 1x1 conv -> BN over the concatenation of every earlier tensor and
the op's output). A gate of 0 removes its input exactly (ReLU(0 x) = 0, the
1x1 conv has no bias), so one-hot op weights with 0/1 gates compute the
fixed macro child of that architecture, its projection's kernel being the
rows of the selected inputs (tests/supernet/relaxed_test.py).
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from enas_tf.ops import table
from enas_tf.ops.blocks import (
    Blocks,
    calibrate_inputs,
    classifier_head,
    conv_bn,
    macro_op,
    op_branch,
    reduce_all,
)
from enas_tf.spaces.macro import MacroSpace, pool_layers
from enas_tf.spaces.micro import MicroSpace, cell_edges, reduction_positions, relaxed_ops


@keras.saving.register_keras_serializable(package="enas_tf")
class EdgeMix(keras.layers.Layer):
    """The mixed op of one edge: `sum_k mix[cell, edge, ops[k]] * branch_k`.

    Args:
      cell: 0 (normal) or 1 (reduction), the row of `mix`.
      edge: the edge's index (`enas_tf.spaces.micro.cell_edges` order).
      ops: indices (into the mix's op axis) of the branches given, in their
        order; ops not given (the "none" op) contribute zero.

    Call arguments:
      inputs: the branches `[batch, height, width, channels]` (one per op of
        `ops`), then the mixing weights, float32 `[2, edges, ops]`.
    """

    def __init__(self, cell: int, edge: int, ops: list[int], **kwargs):
        super().__init__(**kwargs)
        self.cell, self.edge, self.ops = int(cell), int(edge), [int(k) for k in ops]

    def call(self, inputs):
        *branches, mix = inputs
        weights = tf.gather(mix[self.cell, self.edge], self.ops)
        weights = tf.cast(weights, branches[0].dtype)
        return tf.add_n([weights[k] * branch for k, branch in enumerate(branches)])

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "cell": self.cell, "edge": self.edge, "ops": self.ops}


@keras.saving.register_keras_serializable(package="enas_tf")
class SkipGate(keras.layers.Layer):
    """A relaxed macro skip: `mix[0, layer, column] * x`.

    Call arguments:
      inputs: `[x, mix]`, x `[batch, height, width, channels]`, mix the
        relaxed macro network's float32 `[1, layers, ops + layers]`.
    """

    def __init__(self, layer: int, column: int, **kwargs):
        super().__init__(**kwargs)
        self.layer, self.column = int(layer), int(column)

    def call(self, inputs):
        x, mix = inputs
        return tf.cast(mix[0, self.layer, self.column], x.dtype) * x

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "layer": self.layer, "column": self.column}


def _mixed(branches, present, cell, edge, mix, name):
    return EdgeMix(cell, edge, present, name=f"{name}.mix")([*branches, mix])


def mixed_edge(blocks, x, ops, filters, strides, cell, edge, mix, name, pool_bn):
    """DARTS's mixed op on `x`: every op of `ops` but "none" built by
    `op_branch` (named `{name}.{op}`; a batch norm after pools if
    `pool_bn`), summed with the weights `mix[cell, edge]` (`EdgeMix`)."""
    branches, present = [], []
    for k, op in enumerate(ops):
        spec = table.op(op)
        if spec.kind == "zero":
            continue
        out = op_branch(blocks, x, op, filters, strides, f"{name}.{op}")
        if pool_bn and spec.kind == "pool":
            out = blocks.bn(f"{name}.{op}.bn")(out)
        branches.append(out)
        present.append(k)
    return _mixed(branches, present, cell, edge, mix, name)


def _relaxed_cell(blocks, inputs, ops, num_nodes, filters, reduction, mix, name, pool_bn):
    cell = int(reduction)
    nodes = list(inputs)
    index = {e: i for i, e in enumerate(cell_edges(num_nodes))}
    for n in range(2, num_nodes + 2):
        mixed = []
        for j in range(n):
            strides = 2 if reduction and j < 2 else 1
            edge_name = f"{name}.node{n}.from{j}"
            mixed.append(
                mixed_edge(
                    blocks,
                    nodes[j],
                    ops,
                    filters,
                    strides,
                    cell,
                    index[(j, n)],
                    mix,
                    edge_name,
                    pool_bn,
                )  # fmt: skip
            )
        nodes.append(keras.layers.Add(name=f"{name}.node{n}")(mixed))
    return keras.layers.Concatenate(name=f"{name}.out")(nodes[2:])


def build_relaxed_micro(
    space: MicroSpace,
    *,
    image_shape: tuple[int, int, int],
    num_classes: int,
    num_layers: int = 6,
    out_filters: int = 16,
    none_op: bool = True,
    affine: bool = False,
    pool_bn: bool = True,
    blocks: Blocks = Blocks(),
    name: str = "relaxed_micro",
) -> keras.Model:
    """Builds DARTS's relaxed network over the micro space `space`.

    Args:
      space: the micro space (its `num_nodes` and `ops`).
      image_shape: `(height, width, channels)` of the input images.
      num_classes: number of output classes.
      num_layers: L, normal cells; the network has L + 2 cells (DARTS's
        search network of 8 cells is L = 6).
      out_filters: C0, the channels of the first stage's cells (DARTS: 16).
      none_op: mix in DARTS's "none" (zero) op on every edge.
      affine: learnable scale and offset in the cells' batch norms.
      pool_bn: a batch norm after each pooling op.
      blocks: L2 and batch-norm settings (its `affine` is replaced by
        `affine` inside the cells; the stem's batch norm keeps its own).
      name: model name.

    Returns:
      A Keras model from `[images, mix]` to float32 logits
      `[batch, num_classes]`: images float `[batch, H, W, C]` (normalised),
      mix float32 `[2, edges, len(relaxed_ops(space.ops, none_op))]`, the
      weights of the normal (row 0) and reduction (row 1) cells' ops.
    """
    ops = relaxed_ops(space.ops, none_op)
    num_edges = len(cell_edges(space.num_nodes))
    images = keras.Input(shape=image_shape, name="images")
    mix = keras.Input(batch_shape=(2, num_edges, len(ops)), name="mix")
    cells = dataclasses.replace(blocks, affine=affine)
    stem = conv_bn(blocks, images, 3 * out_filters, 3, "stem")
    reductions = reduction_positions(num_layers)
    filters = out_filters
    prev_prev, prev = stem, stem
    for position in range(num_layers + 2):
        reduction = position in reductions
        if reduction:
            filters *= 2
        cell_name = f"cell{position}"
        x, y = calibrate_inputs(cells, prev_prev, prev, filters, False, f"{cell_name}.in")
        out = _relaxed_cell(
            cells, [x, y], ops, space.num_nodes, filters, reduction, mix, cell_name, pool_bn
        )
        prev_prev, prev = prev, out
    logits = classifier_head(blocks, prev, num_classes, 1.0, "logits", pre_relu=True)
    return keras.Model([images, mix], logits, name=name)


def build_relaxed_macro(
    space: MacroSpace,
    *,
    image_shape: tuple[int, int, int],
    num_classes: int,
    out_filters: int = 36,
    separable: bool = True,
    none_op: bool = True,
    affine: bool = False,
    pool_bn: bool = True,
    blocks: Blocks = Blocks(),
    name: str = "relaxed_macro",
) -> keras.Model:
    """Builds the relaxed network over the macro space `space` (module
    docstring).

    Args:
      space: the macro space (its `num_layers` and `ops`).
      image_shape: `(height, width, channels)` of the input images.
      num_classes: number of output classes.
      out_filters: C, the channels of the first stage.
      separable: ops 1 and 3 as depthwise-separable convs (the fixed child's
        `separable`).
      none_op: mix in DARTS's "none" (zero) op in every layer.
      affine: learnable scale and offset in the layers' batch norms (ops,
        skip projections, reductions; the stem's keeps its own).
      pool_bn: a batch norm after each pooling op.
      blocks: L2 and batch-norm settings.
      name: model name.

    Returns:
      A Keras model from `[images, mix]` to float32 logits: mix float32
      `[1, L, K + L]` with K = `len(relaxed_ops(space.ops, none_op))`; row l
      holds layer l's op weights (columns 0 .. K-1) and its skip gates
      (column K + j for the skip from `prev[j]`, j < l; the other columns
      are not read).
    """
    ops = relaxed_ops(space.ops, none_op)
    num_layers, num_ops = space.num_layers, len(ops)
    images = keras.Input(shape=image_shape, name="images")
    mix = keras.Input(batch_shape=(1, num_layers, num_ops + num_layers), name="mix")
    layers = dataclasses.replace(blocks, affine=affine)
    filters = out_filters
    prev = [conv_bn(blocks, images, filters, 3, "stem")]
    pools = pool_layers(num_layers)
    for index in range(num_layers):
        prefix = f"layer{index}"
        branches, present = [], []
        for k, op in enumerate(ops):
            if table.op(op).kind == "zero":
                continue
            out = macro_op(layers, prev[-1], op, filters, separable, f"{prefix}.op.{op}")
            if pool_bn and table.op(op).kind == "pool":
                out = layers.bn(f"{prefix}.op.{op}.bn")(out)
            branches.append(out)
            present.append(k)
        out = _mixed(branches, present, 0, index, mix, f"{prefix}.op")
        if index > 0:
            gated = [
                SkipGate(index, num_ops + j, name=f"{prefix}.gate{j}")([prev[j], mix])
                for j in range(index)
            ]
            out = keras.layers.Concatenate(name=f"{prefix}.concat")([*gated, out])
            out = conv_bn(layers, out, filters, 1, f"{prefix}.skip", pre_relu=True)
        prev.append(out)
        if index in pools:
            filters *= 2
            prev = reduce_all(layers, prev, filters, f"{prefix}.reduce")
    logits = classifier_head(blocks, prev[-1], num_classes, 1.0, "logits", pre_relu=False)
    return keras.Model([images, mix], logits, name=name)
