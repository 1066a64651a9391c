"""Tests of DARTS's architecture parameters (`enas_tf.strategies.darts`)."""

import numpy as np
import pytest
import tensorflow as tf

from enas_tf import strategies
from enas_tf.errors import UserError
from enas_tf.spaces.macro import MacroSpace
from enas_tf.spaces.micro import MicroSpace, cell_edges, relaxed_ops
from enas_tf.spaces.rnn import RnnSpace
from enas_tf.strategies.darts import Config
from enas_tf.strategies.darts.alphas import (
    ArchitectureParameters,
    derive_cell,
    derive_macro,
    derive_rnn,
    one_hot_mix,
)

SPACE = MicroSpace(num_nodes=2)
OPS = relaxed_ops(SPACE.ops)  # sep3, sep5, avg, max, identity, none


def weights_of(strengths):
    """Edge weights [5, 6]: edge e's op `strengths[e][0]` at weight
    `strengths[e][1]`, the rest shared out evenly."""
    w = np.zeros((len(cell_edges(2)), len(OPS)))
    for e, (op, value) in enumerate(strengths):
        w[e] = (1 - value) / (len(OPS) - 1)
        w[e, op] = value
    return w


def test_derive_cell_keeps_the_two_strongest_edges_by_their_strongest_real_op():
    # Edges: (0,2) (1,2) (0,3) (1,3) (2,3).
    w = weights_of([(2, 0.5), (0, 0.3), (5, 0.9), (4, 0.4), (1, 0.6)])
    # Node 2: both inputs (stronger first). Node 3: edge (0,3) is mostly
    # "none", its best real op is tiny: (2,3) sep5 and (1,3) identity win.
    assert derive_cell(w, 2, OPS) == [0, 2, 1, 0, 2, 1, 1, 4]
    # Ties go to the earlier node.
    even = np.full((5, 6), 1 / 6)
    assert derive_cell(even, 2, OPS) == [0, 0, 1, 0, 0, 0, 1, 0]
    # Without "none", every column is an op that can win.
    real = w[:, :5].copy()
    real[2, 4] = 0.9
    assert derive_cell(real, 2, OPS[:5])[4:6] == [0, 4]


def test_derived_arc_is_in_the_space_and_proposed():
    arch = ArchitectureParameters(MicroSpace(num_nodes=4), seed=0, init_scale=1.0)
    arc = arch.derive()
    MicroSpace(num_nodes=4).validate(arc)
    assert arch.sample(3).arc.shape == (3, 32) and np.all(arch.sample(3).arc.numpy() == arc)
    assert np.array_equal(arch.candidates(10), arc[None])
    with pytest.raises(NotImplementedError, match="gradient"):
        arch.update(arch.sample(1).arc, [0.5])


def test_apply_gradient_is_adam_with_l2_decay():
    arch = ArchitectureParameters(
        SPACE, seed=1, init_scale=1.0, learning_rate=0.1, weight_decay=0.5
    )
    before = arch.alpha.numpy()
    arch.apply_gradient(tf.zeros_like(arch.alpha))
    # Adam's first step moves each entry by ~lr against sign(grad) = sign(alpha).
    step = arch.alpha.numpy() - before
    np.testing.assert_allclose(step, -0.1 * np.sign(before), rtol=1e-3)
    np.testing.assert_allclose(tf.reduce_sum(arch.mix(), -1).numpy(), 1.0, rtol=1e-6)


def test_end_epoch_images_and_collapse_metrics():
    arch = ArchitectureParameters(SPACE, seed=0)
    alpha = np.zeros(arch.alpha.shape, np.float32)
    alpha[..., 4] = 3.0  # identity everywhere: a collapsed search
    arch.alpha.assign(alpha)
    out = arch.end_epoch(1)
    assert out["parameter_free_share"] == 1.0 and out["identity_ops_normal"] == 4.0
    for key in ("alphas", "derived_cells"):
        image = out[key]
        assert image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3
        assert 0.0 <= image.min() and image.max() <= 1.0
    assert out["alpha_entropy"] < np.log(6)
    arch.alpha.assign(np.zeros_like(alpha))
    assert arch.end_epoch(2)["alpha_entropy"] == pytest.approx(np.log(6), rel=1e-5)


def test_config_defaults_and_checks():
    config = strategies.default_config("darts")
    assert config == Config() and config.gradient_based
    assert (config.darts_order, config.arch_lr, config.arch_beta1) == (2, 3e-4, 0.5)
    assert (config.arch_weight_decay, config.none_op, config.affine_bn) == (1e-3, True, False)
    config.check("micro")
    config.check("macro")
    with pytest.raises(UserError, match="micro, macro and rnn spaces; received space 'x'"):
        config.check("x")
    config.check("rnn")  # second order too
    lm = strategies.default_config("darts", "lm")
    lm.check("rnn")
    assert (lm.darts_order, lm.arch_lr, lm.arch_beta1) == (1, 3e-3, 0.9)
    with pytest.raises(UserError, match="darts_order must be 1 or 2"):
        Config(darts_order=3).check("micro")
    with pytest.raises(UserError, match="arch_beta1"):
        Config(arch_beta1=1.0).check("micro")
    with pytest.raises(UserError, match="early_stop_skips"):
        Config(early_stop_skips=-1).check("micro")


def test_recurrent_cells_derive_enas_lm_arcs():
    space = RnnSpace(num_nodes=3)
    arch = ArchitectureParameters(space, seed=0)
    assert arch.alpha.shape == (1, 6, 5) and arch.ops[-1] == "none"
    alpha = np.zeros((1, 6, 5), np.float32)
    alpha[0, 0, 1] = 2.0  # node 1: relu of node 0
    alpha[0, 2, 3] = 2.0  # node 2: identity of node 1
    alpha[0, 5, 2] = 2.0  # node 3: sigmoid of node 2
    arch.alpha.assign(alpha)
    assert arch.derive().tolist() == [0, 1, 1, 3, 2, 2]
    out = arch.end_epoch(1)
    assert out["identity_ops_normal"] == 1.0 and out["parameter_free_share"] == pytest.approx(1 / 3)
    assert out["alphas"].shape[2] == 3


def test_derive_rnn_keeps_the_strongest_edge_per_node():
    ops = ("tanh", "relu", "sigmoid", "identity", "none")
    w = np.full((6, 5), 0.1)
    w[0, 4] = 0.9  # node 1's only edge is mostly "none": its best real op wins
    w[0, 2] = 0.3
    w[2, 3] = 0.5  # node 2 from node 1, identity
    w[3, 1] = 0.4  # node 3 from node 0, relu
    w[5, 1] = 0.4  # edge (2, 3) ties with (0, 3): the earlier node wins
    assert derive_rnn(w, 3, ops) == [0, 2, 1, 3, 0, 1]


def test_macro_mix_is_op_softmax_and_masked_skip_gates():
    space = MacroSpace(num_layers=3, num_ops=4)
    arch = ArchitectureParameters(space, seed=2, init_scale=1.0)
    assert arch.alpha.shape == (1, 3, 5 + 3) and arch.columns[5:] == (
        "skip stem",
        "skip layer0",
        "skip layer1",
    )
    alpha = arch.alpha.numpy()
    mix = arch.mix().numpy()
    ops = np.exp(alpha[0, :, :5]) / np.exp(alpha[0, :, :5]).sum(-1, keepdims=True)
    np.testing.assert_allclose(mix[0, :, :5], ops, rtol=1e-5)
    gates = 1 / (1 + np.exp(-alpha[0, :, 5:]))
    # Layer l has skips from prev[0 .. l-1] only.
    np.testing.assert_allclose(mix[0, :, 5:], np.tril(gates, k=-1), rtol=1e-5)
    assert mix[0, 0, 5:].tolist() == [0, 0, 0] and mix[0, 1, 7] == 0


def test_derive_macro_on_hand_set_weights():
    ops = relaxed_ops(MacroSpace(num_layers=3).ops)  # 6 ops + none
    w = np.zeros((3, 7 + 3))
    w[0, [6, 2]] = 0.6, 0.3  # "none" strongest: the best real op wins
    w[1, [1, 7]] = 0.5, 0.51
    w[2, [5, 7, 8]] = 0.4, 0.49, 0.9
    assert derive_macro(w, 3, ops) == [2, 1, 1, 5, 0, 1]


def test_one_hot_mix_derives_back_to_its_arc():
    macro = MacroSpace(num_layers=5)
    arch = ArchitectureParameters(macro, seed=0, init_scale=1.0)
    for seed in range(5):
        arc = [int(v) for v in macro.random_arc(seed)]
        mix = one_hot_mix(macro, arch.ops, arc)
        assert mix.shape == tuple(arch.alpha.shape)
        assert derive_macro(mix[0], 5, arch.ops) == list(arc)
    micro = ArchitectureParameters(SPACE, seed=0)
    arc = [0, 0, 1, 4, 0, 1, 2, 2, 0, 4, 1, 3, 1, 2, 2, 0]  # inputs in increasing order
    mix = one_hot_mix(SPACE, micro.ops, arc)
    assert mix.shape == tuple(micro.alpha.shape) and mix.sum() == 8
    assert derive_cell(mix[0], 2, micro.ops) + derive_cell(mix[1], 2, micro.ops) == arc


def test_macro_end_epoch_logs_skip_rate_and_pool_share():
    space = MacroSpace(num_layers=3)
    arch = ArchitectureParameters(space, seed=0)
    alpha = np.zeros(arch.alpha.shape, np.float32)
    alpha[0, :, 4] = 3.0  # avg pool everywhere
    alpha[0, 2, 7 + 1] = 3.0  # one skip of three: layer2 <- layer0
    arch.alpha.assign(alpha)
    assert arch.derive().tolist() == [4, 4, 0, 4, 0, 1]
    logs = arch.end_epoch(0)
    assert logs["parameter_free_share"] == 1.0 and logs["skip_rate"] == pytest.approx(1 / 3)
    assert "identity_ops_normal" not in logs
    assert logs["alphas"].ndim == 3 and logs["derived_cells"].ndim == 3
