"""Speed options of the training step (training/speed.py): the same function as eager, and it trains."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from ecg_transfer import models
from ecg_transfer.errors import ConfigError
from ecg_transfer.training import RunConfig, Stage
from ecg_transfer.training.loop import configure_stage
from ecg_transfer.training.speed import (
    COMPILE_MODES,
    MEMORY_FORMATS,
    ChannelsLast2d,
    channels_last_unsupported,
    prepare_for_training,
)
from training_synth import LABELS, make_data, tiny_config

needs_compiler = pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None,
    reason="torch.compile (inductor) on a CPU needs a C++ compiler (g++ or c++ on PATH)",
)
SMALL_XRESNET = {"layers": [1, 1], "stem_widths": [8, 8, 16], "width": 8, "head_hidden": [8]}


def _tiny_model(seed: int = 0, **kwargs) -> nn.Module:
    cfg = RunConfig.from_dict(tiny_config())
    torch.manual_seed(seed)
    return models.build(cfg.model, 12, len(LABELS), **{**cfg.model_kwargs, **kwargs})


def _small_xresnet(seed: int = 0) -> nn.Module:
    """xresnet1d with a bottleneck stage, a strided stage (avg-pool shortcut) and the max-pool stem."""
    from ecg_transfer.models.xresnet1d import xresnet1d

    torch.manual_seed(seed)
    return xresnet1d(4, **SMALL_XRESNET, in_channels=12, n_classes=len(LABELS), zero_init_last_bn=False)


def _data():
    X, Y, _, _ = make_data()
    return ((X - X.mean()) / X.std()).astype(np.float32), Y


def test_bad_options_fail_clearly():
    model = _tiny_model()
    with pytest.raises(ConfigError, match=r"'memory_format'.*'nhwc'.*auto, channels_last, contiguous"):
        prepare_for_training(model, "nhwc")
    with pytest.raises(ConfigError, match=r"'compile'.*'fast'.*none, default, max-autotune-no-cudagraphs"):
        prepare_for_training(model, "auto", "fast")
    lstm = models.build("lstm", 12, 3)
    with pytest.raises(
        ConfigError, match=r"'memory_format'.*cannot be used with this model.*'rnn' is a RnnEncoder.*'auto'"
    ):
        prepare_for_training(lstm, "channels_last")
    assert MEMORY_FORMATS[0] == "auto" and COMPILE_MODES[0] == "none"


def test_auto_picks_channels_last_where_the_model_allows_it():
    for name in ("xresnet1d101", "xresnet1d18", "resnet1d_wang", "fcn_wang", "inception1d"):
        model = models.build(name, 12, 5)
        assert channels_last_unsupported(model) is None, name
        net = prepare_for_training(model)
        assert isinstance(net, ChannelsLast2d) and net.model is model
        assert prepare_for_training(model, "contiguous") is model
    for name in ("lstm", "lstm_bidir"):
        model = models.build(name, 12, 5)
        assert "RnnEncoder" in channels_last_unsupported(model)
        assert prepare_for_training(model, "auto") is model


def test_wrapper_shares_the_models_tensors_and_leaves_its_checkpoint_alone():
    model = _small_xresnet()
    keys = {k: v.shape for k, v in model.state_dict().items()}
    net = prepare_for_training(model, "channels_last")
    assert [id(p) for p in net.parameters()] == [id(p) for p in model.parameters()]
    assert {k: v.shape for k, v in model.state_dict().items()} == keys  # 1-D shapes, same keys
    assert set(net.state_dict()) == {f"model.{k}" for k in keys}  # why the loop saves `model`, not `net`
    net.eval()
    assert not model.training and not any(m.training for m in model.modules())


@pytest.mark.parametrize("build", [_tiny_model, _small_xresnet], ids=["fcn_wang", "xresnet"])
def test_channels_last_computes_the_same_function(build):
    """In float64 (exact enough to compare): outputs, gradients, BN statistics, train/eval flags."""
    X, _ = _data()
    eager = build().double()
    model = copy.deepcopy(eager)
    net = prepare_for_training(model, "channels_last")
    xb = torch.from_numpy(X[:6, :, :250].astype(np.float64))
    for step in range(2):
        torch.manual_seed(step)  # same dropout masks
        out_e = eager(xb)
        torch.manual_seed(step)
        out_c = net(xb)
        torch.testing.assert_close(out_c, out_e, rtol=1e-10, atol=1e-10)
        (out_e * torch.arange(out_e.shape[1])).sum().backward()
        (out_c * torch.arange(out_c.shape[1])).sum().backward()
    for (name, pe), pc in zip(eager.named_parameters(), model.parameters()):
        torch.testing.assert_close(pc.grad, pe.grad, rtol=1e-8, atol=1e-10, msg=lambda m, name=name: f"{name}: {m}")
    for (name, be), bc in zip(eager.named_buffers(), model.buffers()):  # running stats, batches tracked
        assert torch.equal(bc, be) if name.endswith("num_batches_tracked") else torch.allclose(bc, be, rtol=1e-10)
    first_bn = [next(m for m in mod.body.modules() if isinstance(m, nn.BatchNorm1d)) for mod in (eager, model)]
    assert int(first_bn[1].num_batches_tracked) == 2
    # a frozen BatchNorm (eval inside a training model) keeps its statistics on both paths
    eager.train(), model.train()
    first_bn[0].eval(), first_bn[1].eval()
    before = [bn.running_mean.clone() for bn in first_bn]
    torch.manual_seed(7)
    out_e = eager(xb)
    torch.manual_seed(7)
    torch.testing.assert_close(net(xb), out_e, rtol=1e-10, atol=1e-10)
    assert all(torch.equal(bn.running_mean, b) for bn, b in zip(first_bn, before))
    # evaluation mode through the wrapper equals the model's own
    eager.eval(), net.eval()
    torch.testing.assert_close(net(xb), eager(xb), rtol=1e-10, atol=1e-10)


def _train(net: nn.Module, model: nn.Module, X: np.ndarray, Y: np.ndarray, steps: int, **config) -> list[float]:
    """A few steps with the engine's optimizer and schedule on a fixed batch; the losses.
    ``config``: run-config keys over the tiny config's."""
    cfg = RunConfig.from_dict(tiny_config(**config))
    opt, sched = configure_stage(model, Stage("s", steps), cfg, steps_per_epoch=1)
    loss_fn = nn.BCEWithLogitsLoss()
    xb, yb = torch.from_numpy(X[:16, :, :250].copy()), torch.from_numpy(Y[:16].astype(np.float32))
    model.train()
    losses = []
    for _ in range(steps):
        loss = loss_fn(net(xb), yb)
        losses.append(loss.item())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return losses


def _assert_trains_like_eager(eager: nn.Module, net: nn.Module, model: nn.Module, X: np.ndarray, Y: np.ndarray) -> None:
    """``net`` (running ``model``) follows the eager model's loss curve over 12 steps, and learns."""
    torch.manual_seed(4)
    le = _train(eager, eager, X, Y, 12)
    torch.manual_seed(4)
    lc = _train(net, model, X, Y, 12)
    assert lc[-1] < 0.8 * lc[0]
    # float32 rounding differs (other kernels); max-pooling makes gradients sensitive at the 1e-3 level
    np.testing.assert_allclose(lc, le, rtol=2e-2)


def test_channels_last_trains_like_eager_in_float32():
    X, Y = _data()
    eager, model = _tiny_model(1), _tiny_model(1)
    _assert_trains_like_eager(eager, prepare_for_training(model, "channels_last"), model, X, Y)


@pytest.mark.slow
@needs_compiler
def test_compiled_step_matches_eager_and_trains():
    X, Y = _data()
    eager, comp = _tiny_model(), _tiny_model()
    net = prepare_for_training(comp, "contiguous", "default")
    assert net is not comp
    assert {id(p) for p in net.parameters()} == {id(p) for p in comp.parameters()}
    # fallback_random: the compiled graph draws its dropout masks from torch's generator as eager does
    with torch._inductor.config.patch(fallback_random=True):
        xb = torch.from_numpy(X[:16, :, :250].copy())
        torch.manual_seed(3)
        out_e = eager(xb)
        torch.manual_seed(3)
        out_c = net(xb)
        torch.testing.assert_close(out_c, out_e, rtol=1e-4, atol=1e-5)
        out_e.square().mean().backward()
        out_c.square().mean().backward()
        ge = torch.cat([p.grad.flatten() for p in eager.parameters()])
        gc = torch.cat([p.grad.flatten() for p in comp.parameters()])
        assert (gc - ge).norm() < 1e-2 * ge.norm()
        for be, bc in zip(eager.buffers(), comp.buffers()):  # BatchNorm running statistics
            torch.testing.assert_close(bc, be, rtol=1e-4, atol=1e-5)

        eager, comp = _tiny_model(1), _tiny_model(1)
        _assert_trains_like_eager(eager, prepare_for_training(comp, "contiguous", "default"), comp, X, Y)


@pytest.mark.slow
@needs_compiler
def test_compiled_training_is_reproducible():
    """Same seed, same machine: the same losses and weights, dropout (inductor's own RNG) included."""
    X, Y = _data()
    runs = []
    for _ in range(2):
        model = _tiny_model(2)
        torch.manual_seed(5)
        losses = _train(prepare_for_training(model, "contiguous", "default"), model, X, Y, 4)
        runs.append((losses, [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_optimizer_impl_picks_adamws_kernel_and_all_kernels_train_alike():
    from ecg_transfer.training.speed import optimizer_kernel

    params = list(_tiny_model().parameters())
    assert optimizer_kernel("auto", params) == {"fused": True}  # torch fuses AdamW on CPUs
    assert optimizer_kernel("fused", params) == {"fused": True}
    assert optimizer_kernel("foreach", params) == {"foreach": True}
    assert optimizer_kernel("for-loop", params) == {"foreach": False}
    ints = [torch.zeros(3, dtype=torch.int64)]
    assert optimizer_kernel("auto", ints) == {"foreach": True}
    with pytest.raises(ConfigError, match=r"'optimizer_impl': 'fused' is not available.*cpu torch.int64"):
        optimizer_kernel("fused", ints)
    with pytest.raises(ConfigError, match="optimizer_impl"):
        RunConfig.from_dict(tiny_config(optimizer_impl="apex"))

    with pytest.raises(ConfigError, match=r"'optimizer_impl': 'apex' is not allowed"):
        optimizer_kernel("apex", params)

    X, Y = _data()
    losses = {}
    for impl in ("fused", "foreach"):
        cfg = RunConfig.from_dict(tiny_config(optimizer_impl=impl))
        opt, _ = configure_stage(_tiny_model(), Stage("train", 1), cfg, 10)
        assert bool(opt.defaults["fused"]) is (impl == "fused")
        model = _tiny_model()
        torch.manual_seed(0)
        losses[impl] = _train(model, model, X, Y, 8, optimizer_impl=impl)
    assert losses["fused"][-1] < losses["fused"][0]
    np.testing.assert_allclose(losses["fused"], losses["foreach"], rtol=1e-4)
