"""Tests for ecg_transfer.models: benchmark architectures, registry, and the transfer-learning hooks."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from ecg_transfer.errors import ConfigError
from ecg_transfer.models import MODEL_NAMES, build, discriminative_lrs, freeze_to, layer_groups, replace_head
from ecg_transfer.models.heads import RnnConcatPool
from ecg_transfer.models.xresnet1d import XResBlock

XRESNETS = [n for n in MODEL_NAMES if n.startswith("xresnet1d")]
# Number of layer groups per model, as documented in transfer.layer_groups (benchmark splits).
N_GROUPS = {
    **{n: 3 for n in XRESNETS},
    "inception1d": 3,
    "resnet1d_wang": 2,
    "fcn_wang": 3,
    "lstm": 2,
    "lstm_bidir": 2,
    "s4": 6,
}  # s4: encoder, 4 blocks, head


def _xresnet_param_count(
    expansion: int,
    layers: list[int],
    c_in: int,
    n_classes: int,
    k: int = 5,
    stem: tuple[int, ...] = (32, 32, 64),
    width: int = 64,
    hidden: int = 128,
) -> int:
    """Parameter count from the benchmark's description of XResNet1d (REFERENCE.md), layer by layer.

    conv: in*out*k (no bias, BN follows); BN: 2*channels; linear: in*out + out.
    """

    def conv(i: int, o: int, kk: int) -> int:
        return i * o * kk

    def bn(c: int) -> int:
        return 2 * c

    total, prev = 0, c_in
    for w in stem:
        total += conv(prev, w, k) + bn(w)
        prev = w
    out = width * expansion
    for n_blocks in layers:
        for _ in range(n_blocks):
            if expansion == 1:
                total += conv(prev, width, k) + bn(width) + conv(width, out, k) + bn(out)
            else:
                total += (
                    conv(prev, width, 1) + bn(width) + conv(width, width, k) + bn(width) + conv(width, out, 1) + bn(out)
                )
            if prev != out:  # 1x1 conv-BN on the identity path when the channel count changes
                total += conv(prev, out, 1) + bn(out)
            prev = out
    feats = 2 * out  # concat(max, avg) pooling
    total += bn(feats) + feats * hidden + hidden + bn(hidden) + hidden * n_classes + n_classes
    return total


@functools.lru_cache(maxsize=None)
def _shared(name: str) -> nn.Module:
    """One eval-mode model per name (12 leads, 7 classes) for the tests that only read it."""
    torch.manual_seed(0)
    return build(name, in_channels=12, n_classes=7).eval()


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_xresnet1d101_parameter_count():
    expected = _xresnet_param_count(4, [3, 4, 23, 3], 12, 71)
    # By hand: stem 17,536 + 33 bottlenecks (32 x 54,016 + 58,624 for the first, which has the
    # 64->256 identity conv) + head 76,103 = 1,880,775 ("about 1.8 M" in the benchmark write-up).
    assert expected == 1_880_775
    assert _n_params(build("xresnet1d101", in_channels=12, n_classes=71)) == expected


@pytest.mark.parametrize("name,expansion,layers", [("xresnet1d18", 1, [2, 2, 2, 2]), ("xresnet1d50", 4, [3, 4, 6, 3])])
def test_other_xresnet_parameter_counts(name, expansion, layers):
    assert _n_params(build(name, in_channels=8, n_classes=5)) == _xresnet_param_count(expansion, layers, 8, 5)


@pytest.mark.parametrize("n_samples", [250, 1250])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_output_shape(name, n_samples):
    model = _shared(name)
    with torch.no_grad():
        y = model(torch.randn(2, 12, n_samples))
    assert y.shape == (2, 7)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()


def test_train_mode_backward_works_at_odd_length():
    # An odd crop exercises the ceil-mode average pool on the xresnet identity path.
    model = build("xresnet1d50", n_classes=3).train()
    y = model(torch.randn(2, 12, 251))
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", XRESNETS)
def test_last_bn_of_each_xresnet_block_is_zero(name):
    model = _shared(name)
    blocks = [m for m in model.modules() if isinstance(m, XResBlock)]
    expected_blocks = {"xresnet1d18": 8, "xresnet1d34": 16, "xresnet1d50": 16, "xresnet1d101": 33, "xresnet1d152": 50}[
        name
    ]
    assert len(blocks) == expected_blocks
    for block in blocks:
        residual_bns = [m for m in block.convs.modules() if isinstance(m, nn.BatchNorm1d)]
        assert torch.all(residual_bns[-1].weight == 0)
        assert all(torch.all(bn.weight == 1) for bn in residual_bns[:-1])
    stem_bns = [m for m in model.body.stem.modules() if isinstance(m, nn.BatchNorm1d)]
    assert all(torch.all(bn.weight == 1) for bn in stem_bns)
    # A zero-initialised block is the identity (+ReLU) on its shortcut path.
    block = blocks[1]  # stride 1, same channels: shortcut is the identity
    x = torch.randn(2, block.convs[0].conv.in_channels, 16).relu()
    assert not block.training
    with torch.no_grad():
        assert torch.allclose(block(x), x)


def test_zero_init_can_be_switched_off():
    model = build("xresnet1d18", zero_init_last_bn=False)
    assert all(torch.all(m.last_bn.weight == 1) for m in model.modules() if isinstance(m, XResBlock))


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("name", ["xresnet1d101", "inception1d", "lstm_bidir", "s4"])
def test_replace_head_keeps_body_and_hidden_head(name):
    torch.manual_seed(0)
    model = build(name, n_classes=71)
    body_before, head_before = _snapshot(model.body), _snapshot(model.head)
    body_obj = model.body
    old_out = model.head.out

    assert replace_head(model, 18) is model
    assert model.body is body_obj
    body_after = model.body.state_dict()
    assert body_after.keys() == body_before.keys()
    assert all(torch.equal(body_after[k], v) for k, v in body_before.items())
    head_after = model.head.state_dict()
    for k, v in head_before.items():
        if k.startswith("out."):
            continue
        assert torch.equal(head_after[k], v), k
    assert model.head.out is not old_out
    assert model.head.out.out_features == 18
    assert model.spec["n_classes"] == 18
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 12, 250)).shape == (2, 18)


def test_replace_head_whole_head():
    torch.manual_seed(0)
    model = build("resnet1d_wang", n_classes=71)
    body_before = _snapshot(model.body)
    old_head = model.head
    with torch.no_grad():
        old_head.fc0.weight.add_(1.0)  # make "fresh" distinguishable from "kept"
    replace_head(model, 5, keep_hidden=False)
    assert model.head is not old_head
    assert model.head.out.out_features == 5
    assert not torch.equal(model.head.fc0.weight, old_head.fc0.weight)
    assert all(torch.equal(model.body.state_dict()[k], v) for k, v in body_before.items())
    assert type(model.head.pool) is type(old_head.pool)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_layer_groups_cover_every_parameter_once_in_forward_order(name):
    model = _shared(name)
    groups = layer_groups(model)
    assert len(groups) == N_GROUPS[name]
    ids = [id(p) for g in groups for p in g]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    assert {id(p) for p in groups[-1]} == {id(p) for p in model.head.parameters()}
    assert all(groups), "no empty group"

    # Groups run from input to head: the order in which parameter-owning modules execute never
    # goes back to an earlier group.
    group_of = {id(p): i for i, g in enumerate(groups) for p in g}
    order: list[int] = []

    def record(mod, _inputs, _output):
        order.append(group_of[id(next(mod.parameters(recurse=False)))])

    hooks = [m.register_forward_hook(record) for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    with torch.no_grad():
        model(torch.randn(2, 12, 64))
    for h in hooks:
        h.remove()
    assert order == sorted(order)
    assert order[0] == 0 and order[-1] == len(groups) - 1


@pytest.mark.parametrize("name", ["xresnet1d101", "inception1d", "fcn_wang", "lstm", "s4"])
def test_eval_forward_is_deterministic(name):
    model = _shared(name)
    x = torch.randn(2, 12, 250)
    with torch.no_grad():
        a, b = model(x), model(x)
    assert torch.equal(a, b)


def test_train_mode_uses_dropout():
    torch.manual_seed(0)
    model = build("fcn_wang").train()
    x = torch.randn(4, 12, 250)
    assert not torch.equal(model(x), model(x))


def test_unknown_model_name_lists_allowed_names():
    with pytest.raises(ConfigError) as err:
        build("resnet9000")
    message = str(err.value)
    assert "resnet9000" in message
    assert all(name in message for name in MODEL_NAMES)


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError, match="kernel_sise"):
        build("xresnet1d101", kernel_sise=7)
    with pytest.raises(ConfigError, match="n_classes"):
        build("fcn_wang", n_classes=0)
    with pytest.raises(ConfigError, match="bidirectional"):
        build("lstm", bidirectional=True)  # fixed by the name
    with pytest.raises(ConfigError, match="kernel_size"):
        build("inception1d", kernel_size=20)


def test_spec_rebuilds_the_same_model():
    model = build("xresnet1d18", in_channels=8, n_classes=3, kernel_size=7)
    spec = dict(model.spec)
    clone = build(spec.pop("name"), **spec)
    clone.load_state_dict(model.state_dict())  # strict: same architecture
    x = torch.randn(2, 8, 250)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), clone.eval()(x))


def test_freeze_to_head_only_keeps_batchnorm_trainable():
    model = build("xresnet1d18")
    freeze_to(model, 1)
    for name, module in model.body.named_modules():
        for p in module.parameters(recurse=False):
            assert p.requires_grad == isinstance(module, nn.BatchNorm1d), name
    assert all(p.requires_grad for p in model.head.parameters())
    freeze_to(model, 1, train_bn=False)
    assert not any(p.requires_grad for p in model.body.parameters())
    freeze_to(model, -1)
    assert all(p.requires_grad for p in model.parameters())


def test_discriminative_lrs_match_fastai_slice():
    lrs = discriminative_lrs(1e-2 / 1000, 1e-2 / 10, 3)
    assert lrs == pytest.approx([1e-5, 1e-4, 1e-3])
    assert discriminative_lrs(1e-4, 1e-2, 1) == [1e-2]


def test_rnn_pool_takes_each_direction_after_the_whole_window():
    hidden, t = 3, 5
    x = torch.arange(2 * 2 * hidden * t, dtype=torch.float32).reshape(2, 2 * hidden, t)
    out = RnnConcatPool(bidirectional=True)(x)
    assert out.shape == (2, 6 * hidden)
    last = out[:, 4 * hidden :]
    assert torch.equal(last[:, :hidden], x[:, :hidden, -1])  # forward direction: last step
    assert torch.equal(last[:, hidden:], x[:, hidden:, 0])  # backward direction: first step
    bench = RnnConcatPool(bidirectional=True, as_benchmark=True)(x)[:, 4 * hidden :]
    assert torch.equal(bench, x[:, :, -1])
