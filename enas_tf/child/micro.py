"""Fixed (final) micro network: stacked normal and reduction cells.

Structure (ENAS_REFERENCE sec. 2.1-2.4 and 7.2):
- stem: 3x3 conv to 3*C0, BN; the first cell reads [stem, stem];
- L + 2 cell positions; positions L//3 and 2*(L//3)+1 are reduction cells,
  where C doubles; each cell reads [output two cells back, previous output];
- each cell first calibrates its inputs to C channels at its resolution:
  the older input, when twice as large, gets ReLU -> factorized reduction,
  otherwise (and the newer input always) ReLU -> 1x1 conv -> BN;
- node n = op_a(node[input_a]) + op_b(node[input_b]); in a reduction cell
  ops reading node 0 or 1 have stride 2 (identity becomes a factorized
  reduction);
- the cell output concatenates its loose ends (a still-large input of a
  reduction cell is reduced first), so it has k*C channels; with
  `cell_output="all"` it concatenates every computed node instead (B*C
  channels, what the searching supernet computes by default: see
  `enas_tf.supernet.micro`), so a child can inherit a search's weights;
- head: ReLU -> global average pool -> dropout -> linear (no bias);
- optional auxiliary head after the cell following the second reduction.

Ops: `sep_conv_kxk` = (ReLU -> depthwise kxk -> pointwise 1x1 -> BN) twice,
the first depthwise strided in reductions; 3x3 pools (SAME); identity.
Drop path (`DropPath`) follows every op except identity, with the keep
probability of cell position l: 1 - (l+1)/(L+2) * (1 - drop_path_keep_prob).

Departures from the original final code (sec. 10):
- bug 6: the auxiliary head is trained like the rest of the network (the
  original left it at its random initialisation).
- bug 8: the original passes input 1 through a second ReLU -> 1x1 conv -> BN
  ("layer base") after calibration, even when calibration already applied
  one. The paper describes no such layer; it is off unless `layer_base=True`.
"""

from __future__ import annotations

import keras

from enas_tf.ops.blocks import (
    Blocks,
    DropPath,
    calibrate_inputs,
    classifier_head,
    conv_bn,
    factorized_reduction,
    op_branch,
    relu,
)
from enas_tf.spaces.micro import MICRO_OPS, MicroArch, MicroCell, reduction_positions


def _spatial(x) -> int:
    return x.shape[1]


def _cell(
    blocks, cell: MicroCell, inputs, filters, reduction, drop_keep, name, cell_output="loose_ends"
):
    nodes = list(inputs)
    for n, node in enumerate(cell.nodes, start=2):
        branches = []
        for slot, index, op_id in (("a", node.input_a, node.op_a), ("b", node.input_b, node.op_b)):
            op = MICRO_OPS[op_id]
            strides = 2 if reduction and index < 2 else 1
            branch_name = f"{name}.node{n}.{slot}"
            out = op_branch(blocks, nodes[index], op, filters, strides, branch_name)
            if drop_keep < 1.0 and op != "identity":
                out = DropPath(drop_keep, name=f"{branch_name}.drop")(out)
            branches.append(out)
        nodes.append(keras.layers.Add(name=f"{name}.node{n}")(branches))
    if cell_output == "all":
        return keras.layers.Concatenate(name=f"{name}.out")(nodes[2:])
    ends = []
    for index in cell.loose_ends:
        end = nodes[index]
        if reduction and index < 2:
            end = factorized_reduction(blocks, end, filters, f"{name}.end{index}")
        ends.append(end)
    if len(ends) == 1:
        return ends[0]
    return keras.layers.Concatenate(name=f"{name}.out")(ends)


def _aux_head(blocks, x, num_classes, name="aux"):
    # Original: ReLU -> avg-pool 5x5 stride 3 VALID (8x8 -> 2x2) -> 1x1 conv
    # 128 -> BN -> ReLU -> 2x2 conv 768 -> BN -> ReLU -> GAP -> linear. Maps
    # smaller than 5x5 (small images) are pooled whole instead.
    size = _spatial(x)
    pool, stride = (5, 3) if size >= 5 else (size, 1)
    x = relu(x, f"{name}.relu")
    x = keras.layers.AveragePooling2D(pool, strides=stride, padding="valid", name=f"{name}.pool")(x)
    x = conv_bn(blocks, x, 128, 1, f"{name}.proj")
    x = relu(x, f"{name}.proj.relu")
    x = conv_bn(blocks, x, 768, min(2, _spatial(x)), f"{name}.conv")
    return classifier_head(blocks, x, num_classes, 1.0, "aux_logits", pre_relu=True)


def build_micro_child(
    arch: MicroArch,
    *,
    image_shape: tuple[int, int, int],
    num_classes: int,
    num_layers: int = 15,
    out_filters: int = 36,
    keep_prob: float = 1.0,
    drop_path_keep_prob: float = 1.0,
    aux_head: bool = False,
    layer_base: bool = False,
    cell_output: str = "loose_ends",
    blocks: Blocks = Blocks(),
    name: str = "micro_child",
) -> keras.Model:
    """Builds the fixed micro network of `arch`.

    Args:
      arch: a decoded micro architecture (`MicroSpace.decode`).
      image_shape: `(height, width, channels)` of the input images.
      num_classes: number of output classes.
      num_layers: L, the normal cells (`child_num_layers`); the network has
        L + 2 cell positions.
      out_filters: C0, the channels of the first stage's cells.
      keep_prob: keep probability of the dropout before the classifier.
      drop_path_keep_prob: final keep probability of drop path in the last
        cell (1 disables drop path and builds no `DropPath` layers).
      aux_head: add the auxiliary classifier; the model then returns
        `[logits, aux_logits]`.
      layer_base: reproduce the original's extra 1x1 conv on input 1.
      cell_output: "loose_ends" (the paper's cell: its unused nodes
        concatenated) or "all" (every computed node concatenated, as the
        searching supernet computes by default).
      blocks: L2 and batch-norm settings.
      name: model name.

    Returns:
      A Keras model from float32 images `[batch, H, W, C]` (normalised) to
      float32 logits `[batch, num_classes]` (and aux logits if `aux_head`).
    """
    images = keras.Input(shape=image_shape, name="images")
    stem = conv_bn(blocks, images, 3 * out_filters, 3, "stem")
    reductions = reduction_positions(num_layers)
    positions = num_layers + 2
    filters = out_filters
    prev_prev, prev = stem, stem
    aux_logits = None
    for position in range(positions):
        reduction = position in reductions
        if reduction:
            filters *= 2
        cell_name = f"cell{position}"
        x, y = calibrate_inputs(blocks, prev_prev, prev, filters, layer_base, f"{cell_name}.in")
        drop_keep = 1.0 - (position + 1) / positions * (1.0 - drop_path_keep_prob)
        cell = arch.reduce if reduction else arch.normal
        out = _cell(blocks, cell, [x, y], filters, reduction, drop_keep, cell_name, cell_output)
        prev_prev, prev = prev, out
        if aux_head and position == reductions[1] + 1:
            aux_logits = _aux_head(blocks, out, num_classes)
    logits = classifier_head(blocks, prev, num_classes, keep_prob, "logits", pre_relu=True)
    outputs = [logits, aux_logits] if aux_logits is not None else logits
    return keras.Model(images, outputs, name=name)
