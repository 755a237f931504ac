"""The s4 backbone (bidirectional S4D): its maths against a direct recurrence, and everything the toolkit
does with a model -- training, fine-tuning policies, prediction, ONNX/TorchScript export, two-process
DDP, the study -- on tiny sizes. This file doubles as the torchrun worker of the DDP test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from training_synth import LABELS, load_state, make_data, tiny_config  # noqa: E402

from ecg_transfer import models  # noqa: E402
from ecg_transfer.errors import ConfigError  # noqa: E402
from ecg_transfer.models.s4 import S4DKernel, S4DLayer, bidirectional_conv  # noqa: E402
from ecg_transfer.training import load_predictions, train_run  # noqa: E402

TINY = {"d_model": 16, "d_state": 4, "n_layers": 2, "dropout": 0.0}


def s4_config(**over) -> dict:
    """The tiny-task config with a tiny s4 (lr 0.05: measured to learn the task in 5 epochs)."""
    cfg = tiny_config(model="s4", schedule={"max_lr": 0.05}, optimizer={"weight_decay": 1e-3}, epochs=5)
    cfg["model_kwargs"] = dict(TINY)
    for k, v in over.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    return cfg


@pytest.fixture(scope="module")
def s4_run(tmp_path_factory) -> Path:
    X, Y, ids, splits = make_data()
    out = tmp_path_factory.mktemp("s4") / "run"
    threads = torch.get_num_threads()
    try:
        train_run(s4_config(), X, Y, ids, splits, LABELS, out, progress=False)
    finally:
        torch.set_num_threads(threads)
    return out


# ----- the maths ----------------------------------------------------------------------------------


def _recurrence(kernel: S4DKernel, direction: int, u: torch.Tensor) -> torch.Tensor:
    """``h_t = dA h_{t-1} + dB u_t``, ``y_t = 2 Re(C h_t)``, step by step in complex float64."""
    dt = torch.exp(kernel.log_dt.double())[:, None]
    A = torch.complex(-torch.exp(kernel.log_neg_re.double()), kernel.im.double())
    if kernel.discretization == "zoh":
        dA = torch.exp(dt * A)
        dB = (dA - 1) / A
    else:
        dA = (1 + dt * A / 2) / (1 - dt * A / 2)
        dB = dt / (1 - dt * A / 2)
    C = torch.complex(kernel.C[direction, ..., 0].double(), kernel.C[direction, ..., 1].double())
    h = torch.zeros(A.shape, dtype=torch.complex128)
    ys = []
    for t in range(u.shape[-1]):
        h = dA * h + dB * u[:, t : t + 1]
        ys.append(2 * (C * h).sum(-1).real)
    return torch.stack(ys, dim=-1)


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
@pytest.mark.parametrize("init", ["inv", "lin"])
def test_kernel_convolution_equals_the_recurrence_both_directions(discretization, init):
    torch.manual_seed(0)
    layer = S4DLayer(3, 6, bidirectional=True, init=init, discretization=discretization, dt_min=0.01, dt_max=0.5)
    layer.double()
    k = layer.kernel
    u = torch.randn(3, 24, dtype=torch.float64)
    K = k(24)
    forward = bidirectional_conv(u[None], K[0], None)[0]
    assert torch.allclose(forward, _recurrence(k, 0, u), atol=1e-9)
    # backward: the recurrence over the reversed input, shifted one step (the present is the forward part's)
    backward = bidirectional_conv(u[None], torch.zeros_like(K[0]), K[1])[0]
    rev = _recurrence(k, 1, u.flip(-1)).flip(-1)
    want = torch.cat([rev[:, 1:], torch.zeros(3, 1, dtype=torch.float64)], dim=-1)
    assert torch.allclose(backward, want, atol=1e-9)
    # the layer: both parts plus D u
    with torch.no_grad():
        y = layer(u[None])[0]
    assert torch.allclose(y, forward + backward + u * layer.D[:, None], atol=1e-9)


def test_fft_and_direct_convolution_agree():
    g = torch.Generator().manual_seed(1)
    u, kf, kb = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((2, 4, 37), (4, 37), (4, 37)))
    assert torch.allclose(bidirectional_conv(u, kf, kb, "fft"), bidirectional_conv(u, kf, kb, "direct"), atol=1e-10)
    layer = S4DLayer(4, 4)
    x = torch.randn(2, 4, 50)
    with torch.no_grad():
        a = layer(x)
        layer.conv_mode = "direct"
        b = layer(x)
    assert torch.allclose(a, b, atol=1e-5)
    layer.conv_mode = "dft"
    with pytest.raises(ValueError, match="conv_mode"):
        layer(x)


def test_initial_modes_follow_s4d_inv_and_lin():
    inv, lin = S4DKernel(2, 8, init="inv"), S4DKernel(2, 8, init="lin")
    n = np.arange(4)
    assert np.allclose(inv.im[0].detach().numpy(), 8 / np.pi * (8 / (2 * n + 1) - 1), rtol=1e-6)
    assert np.allclose(lin.im[1].detach().numpy(), np.pi * n, rtol=1e-6)
    assert torch.allclose(-torch.exp(inv.log_neg_re), torch.full((2, 4), -0.5))
    dt = torch.exp(S4DKernel(1000, 8, dt_min=1e-3, dt_max=1e-1).log_dt)
    assert dt.min() >= 1e-3 * (1 - 1e-6) and dt.max() <= 1e-1 * (1 + 1e-6) and dt.max() / dt.min() > 50


# ----- the model ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [250, 251, 1250])
def test_output_shape_for_any_window_length(n):
    torch.manual_seed(0)
    for kw in ({}, {"bidirectional": False, "norm": "batch", "prenorm": True, "head_hidden": [8]}):
        model = models.build("s4", 12, 5, **{**TINY, **kw}).eval()
        with torch.no_grad():
            y = model(torch.randn(2, 12, n))
        assert y.shape == (2, 5) and torch.isfinite(y).all()


def test_default_size_is_the_s4_ecg_configuration():
    model = models.build("s4", 12, 71)
    kw = models.model_kwargs("s4")
    assert (kw["d_model"], kw["d_state"], kw["n_layers"], kw["dropout"]) == (512, 8, 4, 0.2)
    assert [n for n, _ in model.body.named_children()] == ["encoder", "block1", "block2", "block3", "block4"]
    # encoder 12*512+512; per block: dt 512, A 2*512*4, C 2*512*4*2, D 512, mix 512*1024+1024, LayerNorm 1024
    block = 512 + 2 * 512 * 4 + 2 * 512 * 4 * 2 + 512 + 512 * 1024 + 1024 + 1024
    assert sum(p.numel() for p in model.parameters()) == 12 * 512 + 512 + 4 * block + 512 * 71 + 71


@pytest.mark.parametrize("bidirectional", [True, False])
def test_output_at_t_depends_on_later_inputs_only_when_bidirectional(bidirectional):
    torch.manual_seed(0)
    model = models.build("s4", 12, 3, **{**TINY, "bidirectional": bidirectional}).eval()
    x = torch.randn(1, 12, 120, requires_grad=True)
    model.body(x)[0, :, 60].sum().backward()
    later = x.grad[0, :, 61:].abs().sum().item()
    earlier = x.grad[0, :, :60].abs().sum().item()
    assert earlier > 0
    assert (later > 1e-2 * earlier) if bidirectional else later < 1e-6 * earlier  # FFT rounding aside


def test_bad_arguments_name_the_problem():
    for kw, match in (
        ({"d_state": 5}, "d_state"),
        ({"init": "legs"}, "init"),
        ({"norm": "group"}, "norm"),
        ({"discretization": "euler"}, "discretization"),
        ({"dropout": 1.0}, "dropout"),
    ):
        with pytest.raises(ConfigError, match=match):
            models.build("s4", **kw)


def test_channels_last_speed_path_leaves_s4_as_it_is():
    from ecg_transfer.training.speed import channels_last_unsupported, prepare_for_training

    model = models.build("s4", 12, 3, **TINY)
    assert "S4Block" in channels_last_unsupported(model)
    assert prepare_for_training(model, "auto") is model
    with pytest.raises(ConfigError, match="channels_last"):
        prepare_for_training(model, "channels_last")


def test_layer_groups_are_encoder_blocks_and_head():
    from ecg_transfer.training.loop import Stage, apply_stage

    model = models.build("s4", 12, 3, **{**TINY, "n_layers": 3})
    groups = models.layer_groups(model)
    assert len(groups) == 5
    assert {id(p) for p in groups[0]} == {id(p) for p in model.body.encoder.parameters()}
    assert {id(p) for p in groups[3]} == {id(p) for p in model.body.block3.parameters()}
    apply_stage(model, Stage("last-two", 1, "last:2", 1e-3, "train"))
    trainable = {
        n.split(".")[1] if n.startswith("body.") else "head" for n, p in model.named_parameters() if p.requires_grad
    }
    assert trainable == {"block3", "head"}  # LayerNorm is not BatchNorm: frozen with its block
    assert models.discriminative_lrs(1e-5, 1e-3, 5)[0] == pytest.approx(1e-5)


@pytest.mark.parametrize("task", ["all", "diagnostic"])
def test_shipped_s4_configs_are_valid_and_name_their_task(task):
    from ecg_transfer.training.config import load_config

    cfg = load_config(REPO / "configs" / f"ptbxl_s4_{task}.toml")
    assert cfg.model == "s4" and cfg.model_kwargs == {} and cfg.fs == 100.0 and cfg.crop_len == 250
    assert cfg.task["labels"] == task if isinstance(cfg.task, dict) else cfg.task.labels == task
    assert (cfg.schedule.max_lr, cfg.optimizer.weight_decay, cfg.batch_size) == (1e-3, 1e-3, 64)


# ----- training, fine-tuning, prediction, export ------------------------------------------------------


def test_a_tiny_s4_learns_the_synthetic_task(s4_run):
    metrics = [json.loads(l) for l in (s4_run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["train_loss"] < 0.8 * metrics[0]["train_loss"]
    ids, labels, y, p = load_predictions(s4_run / "predictions_test.csv")
    from ecg_transfer.training.loop import macro_auc

    auc, _ = macro_auc(y, p)
    assert auc > 0.8, auc


@pytest.mark.parametrize("policy", ["head-then-all", "gradual", "linear-probe"])
def test_finetune_policies_start_from_an_s4_run(s4_run, tmp_path, policy):
    X, Y, ids, splits = make_data(seed=1)
    Y = Y[:, :2]  # a new task: two labels
    stages = {
        "head-then-all": [
            {"epochs": 1, "train": "head", "lr": 0.01},
            {"epochs": 1, "train": "all", "lr": [1e-4, 1e-2]},
        ],
        "gradual": [{"epochs": 1, "train": "head", "lr": 0.01}, {"epochs": 1, "train": "last:2", "lr": 1e-3}],
        "linear-probe": [{"epochs": 1, "train": "head", "lr": 0.01}],
    }[policy]
    cfg = s4_config(finetune={"policy": policy, "stages": stages})
    del cfg["schedule"], cfg["epochs"]  # explicit stages carry the epochs and learning rates
    res = train_run(cfg, X, Y, ids, splits, LABELS[:2], tmp_path / "ft", init_from=s4_run, progress=False)
    pre, ft = load_state(s4_run / "model.pt")["state_dict"], load_state(res.model_path)["state_dict"]
    assert ft["head.out.weight"].shape == (2, TINY["d_model"])
    changed = {k.split(".")[1] for k in pre if k.startswith("body.") and not torch.equal(pre[k], ft[k])}
    assert (
        changed
        == {"linear-probe": set(), "gradual": {"block2"}, "head-then-all": {"encoder", "block1", "block2"}}[policy]
    )
    assert len(res.history) == len(stages)


@pytest.mark.parametrize("fmt,exporter", [("onnx", "dynamo"), ("onnx", "legacy"), ("torchscript", "auto")])
def test_export_matches_pytorch(s4_run, tmp_path, fmt, exporter):
    pytest.importorskip("onnxruntime", reason="ONNX export tests need onnxruntime (pip install 'ecg-transfer[export]')")
    if exporter == "dynamo":
        pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    from ecg_transfer.inference.export import export_model, exported_record_probs
    from ecg_transfer.training.modelfile import load_model_file

    res = export_model(s4_run, fmt, tmp_path / f"m.{fmt}", exporter=exporter)
    assert res.metadata["model"] == "s4" and res.metadata["verification"]["max_abs_diff"] < 1e-5
    X = make_data(n=4, t=700, seed=5)[0]
    want = load_model_file(s4_run).predict(X)
    assert np.abs(exported_record_probs(res.path, X) - want).max() < 1e-5


def test_predict_cli_reads_records_with_an_s4_run(s4_run, tmp_path, capsys):
    from ecg_transfer.cli import main

    X = make_data(n=3, t=400, seed=7)[0]
    np.save(tmp_path / "three.npy", X)
    assert (
        main(["predict", str(s4_run), str(tmp_path / "three.npy"), "--fs", "100", "--out", str(tmp_path / "p.csv")])
        == 0
    )
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert len(lines) == 4 and lines[1].startswith("three[0],")


# ----- two processes ------------------------------------------------------------------------------

DDP_CONFIG = s4_config(epochs=2, batch_size=7, drop_last=False, seed=2, num_threads=1)


def worker(out: Path) -> None:
    X, Y, ids, splits = make_data()
    train_run(DDP_CONFIG, X, Y, ids, splits, LABELS, out / "ddp", progress=False)


def test_two_processes_train_s4_as_one_does(tmp_path):
    """gloo, 2 ranks, uneven splits of batch 7, no dropout: the one-process result to float rounding."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(HERE)]), "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(Path(__file__).resolve()),
        "--worker",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    X, Y, ids, splits = make_data()
    threads = torch.get_num_threads()
    try:
        one = train_run(DDP_CONFIG, X, Y, ids, splits, LABELS, tmp_path / "one", progress=False)
    finally:
        torch.set_num_threads(threads)
    for split in ("val", "test"):
        p_ddp = load_predictions(tmp_path / "ddp" / f"predictions_{split}.csv")[3]
        p_one = load_predictions(one.run_dir / f"predictions_{split}.csv")[3]
        assert np.abs(p_ddp - p_one).max() < 2e-4, split
    assert json.loads((tmp_path / "ddp" / "environment.json").read_text())["distributed"]["world_size"] == 2


# ----- the study ----------------------------------------------------------------------------------


def test_a_study_with_model_s4_plans_and_runs(tmp_path, capsys):
    from ecg_transfer.cli import main
    from wfdb_fixtures import make_cinc_tree, make_ptbxl_tree

    make_ptbxl_tree(tmp_path / "ptbxl", n_records=60)
    make_cinc_tree(tmp_path / "g12ec", n_records=40)
    kw = ", ".join(f"{k} = {json.dumps(v)}" for k, v in TINY.items())
    spec = tmp_path / "spec.toml"
    spec.write_text(f"""
[study]
name = "s4"
out = "{tmp_path / "study"}"
model = "s4"
model_kwargs = {{{kw}}}
fs = 100
seeds = [0]
protocols = ["seed18"]
bootstrap = 50
cache_dir = "{tmp_path / "cache"}"
lengths = [1]
[source]
root = "{tmp_path / "ptbxl"}"
epochs = 1
run = {{schedule = {{max_lr = 0.01}}}}
[target]
root = "{tmp_path / "g12ec"}"
[finetune]
policy = "gradual"
stages = [{{epochs = 1, train = "head", lr = 0.01}}, {{epochs = 1, train = "last:2", lr = 0.001}}]
[standalone]
epochs = 1
[experiments.target_share]
shares = [50]
repeats = 1
fixed_test = false
[experiments.source_share]
enabled = false
[experiments.sampling_rate]
enabled = false
[experiments.calibration]
enabled = false
[experiments.frequency]
enabled = false
""")
    assert main(["study", "plan", str(spec)]) == 0
    assert main(["study", "run", str(spec), "--no-progress"]) == 0
    assert "failed now 0" in capsys.readouterr().out
    plan = json.loads((tmp_path / "study" / "plan.json").read_text())["runs"]
    assert {r["kind"] for r in plan} == {"pretrain", "finetuned", "standalone"}
    assert all(r["config"]["model"] == "s4" for r in plan)
    for r in plan:
        assert load_state(tmp_path / "study" / "runs" / r["key"] / "model.pt")["spec"]["name"] == "s4"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(Path(sys.argv[2]))
    else:
        sys.exit(f"usage: torchrun --nproc_per_node=2 {Path(__file__).name} --worker OUT_DIR")
