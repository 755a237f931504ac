"""Data-parallel training: two CPU processes (gloo, launched by torchrun) against one process.

One torchrun launch (this file doubles as the worker script) trains the tiny synthetic task five
ways on two ranks -- straight through, killed after epoch 2 and resumed, with per-rank BatchNorm,
a two-stage fine-tuning (head, then all: DDP is rebuilt when the trainable set changes), and
``keep = "best-val"`` with scripted validation AUCs (every rank must keep rank 0's choice) --
and the tests compare those runs with one-process runs of the same configs.

Why the tolerance: with synchronised BatchNorm, no dropout, the same global batches and the loss
weighting of :mod:`ecg_transfer.training.distributed`, the two-process gradient is the
one-process gradient written as a different sum (half-batch sums averaged by DDP, BN moments
from all-reduced partial sums), so the runs differ only by float32 rounding (~1e-7 relative per
step), which a few epochs of AdamW keep far below 1e-4 in the predicted probabilities. A bug in
sharding, loss weighting or BN synchronisation moves them by ~1e-2: the per-rank BatchNorm run is
checked to land outside the tolerance, so the comparison can fail.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ecg_transfer import models
from ecg_transfer.errors import ConfigError
from ecg_transfer.training import RunConfig, load_predictions, train_run
from ecg_transfer.training.distributed import (
    SINGLE,
    CpuSyncBatchNorm,
    DistContext,
    convert_sync_batchnorm,
    init_from_env,
    is_main_process,
    main_process_first,
    rank_batches,
    resolve_device,
    revert_sync_batchnorm,
)
from ecg_transfer.training import loop
from ecg_transfer.training.loop import batch_slices

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from training_synth import LABELS, Killed, kill_after, load_state, make_data, tiny_config  # noqa: E402

# Float rounding alone moves this config's probabilities by up to 1e-4 in one process (measured:
# fused instead of foreach AdamW 2.8e-5, channels-last instead of 1-D 2.5e-5, both 9.5e-5);
# a wrong gradient average or BatchNorm statistic moves them by > 10x this (the local-BN control).
PROB_TOL = 2e-4
# head_dropout 0: dropout masks are drawn per rank, so only a dropout-free model can match one
# process; batch 7 over 40 training records with drop_last off gives uneven 4/3 and 3/2 splits.
# One thread in every process: thread count alone moves the result by as much as two processes do.
CONFIG = tiny_config(
    epochs=3,
    batch_size=7,
    drop_last=False,
    seed=2,
    num_threads=1,
    model_kwargs={"head_dropout": 0.0},
    schedule={"max_lr": 0.02},
)
# (head-then-all takes its learning rates from [finetune]: a schedule.max_lr would be refused)
FINETUNE = {
    **{k: v for k, v in CONFIG.items() if k != "schedule"},
    "finetune": {"policy": "head-then-all", "head_epochs": 1, "all_epochs": 2},
}
RUNS = ("ddp", "ddp-resumed", "ddp-local-bn", "ddp-finetune", "ddp-best")
BEST = {**CONFIG, "keep": "best-val"}
# Validation macro AUCs of epochs 1-3 by rank: rank 0's choose epoch 2 (not the last). Validation runs
# on rank 0 alone and its AUC is broadcast, so rank 1's script is never read; a rank choosing by its
# own AUC would keep epoch 1 and hold other weights than rank 0.
BEST_SCRIPT = {0: [0.6, 0.9, 0.7], 1: [0.9, 0.1, 0.1]}
# one run also mirrors its metrics to TensorBoard (tracking never changes the maths): only rank 0 may log
HAS_TB = importlib.util.find_spec("tensorboard") is not None
LOCAL_BN = {**CONFIG, "sync_batchnorm": False, **({"tracking": {"backend": "tensorboard"}} if HAS_TB else {})}


# ----- the worker (run by torchrun) ----------------------------------------------------------------


def _summary(result) -> dict:
    return {
        "world_size": result.world_size,
        "history": result.history,
        "val": result.val_macro_auc,
        "test": result.test_macro_auc,
        "resumed_from_epoch": result.resumed_from_epoch,
    }


def worker(out: Path, pretrained: Path) -> None:
    rank = int(os.environ["RANK"])
    X, Y, ids, splits = make_data()
    report: dict[str, dict] = {}
    report["ddp"] = _summary(train_run(CONFIG, X, Y, ids, splits, LABELS, out / "ddp", progress=False))
    try:
        train_run(CONFIG, X, Y, ids, splits, LABELS, out / "ddp-resumed", progress=False, callbacks=[kill_after(2)])
    except Killed:
        pass
    report["ddp-resumed"] = _summary(
        train_run(CONFIG, X, Y, ids, splits, LABELS, out / "ddp-resumed", resume=True, progress=False)
    )
    report["ddp-local-bn"] = _summary(
        train_run(LOCAL_BN, X, Y, ids, splits, LABELS, out / "ddp-local-bn", progress=False)
    )
    report["ddp-finetune"] = _summary(
        train_run(FINETUNE, X, Y, ids, splits, LABELS, out / "ddp-finetune", init_from=pretrained, progress=False)
    )
    report["ddp-best"] = _best_val_run(X, Y, ids, splits, out / "ddp-best", BEST_SCRIPT[rank])
    (out / f"rank{rank}.json").write_text(json.dumps(report))


def _digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _best_val_run(X, Y, ids, splits, run_dir: Path, script: list[float]) -> dict:
    """A keep = "best-val" run whose validation AUCs follow ``script``; also returns which epoch this
    process restored and a digest of the weights it then held (run in the worker and in one process)."""
    aucs, restored = iter(script), {}
    restore_into = loop.BestEpoch.restore_into

    def spy(best: loop.BestEpoch, model: nn.Module) -> bool:
        done = restore_into(best, model)
        restored.update(epoch=best.epoch, digest=_digest(model))
        return done

    saved_auc = loop.macro_auc
    loop.macro_auc = lambda y_true, probs: (next(aucs), y_true.shape[1])
    loop.BestEpoch.restore_into = spy  # type: ignore[method-assign]
    try:
        result = train_run(BEST, X, Y, ids, splits, LABELS, run_dir, progress=False)
    finally:
        loop.macro_auc, loop.BestEpoch.restore_into = saved_auc, restore_into  # type: ignore[method-assign]
    return {**_summary(result), "kept_epoch": result.kept_epoch, "restored": restored, "run_dir": str(run_dir)}


# ----- fixtures ------------------------------------------------------------------------------------


def _torchrun(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(HERE)]), "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A one-process run to fine-tune from (another seed, so the fine-tuning starts off-task)."""
    X, Y, ids, splits = make_data()
    run_dir = tmp_path_factory.mktemp("pre") / "run"
    threads = torch.get_num_threads()
    try:
        train_run({**CONFIG, "epochs": 1, "seed": 9}, X, Y, ids, splits, LABELS, run_dir, progress=False)
    finally:
        torch.set_num_threads(threads)
    return run_dir


@pytest.fixture(scope="module")
def ddp_out(tmp_path_factory, pretrained) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    t0 = time.perf_counter()
    proc = _torchrun([str(Path(__file__).resolve()), "--worker", str(out), str(pretrained)], cwd=out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    print(f"torchrun: {time.perf_counter() - t0:.1f} s")
    return out


@pytest.fixture(scope="module")
def single_runs(tmp_path_factory, pretrained):
    X, Y, ids, splits = make_data()
    root = tmp_path_factory.mktemp("single")
    threads = torch.get_num_threads()
    try:
        return {
            "plain": train_run(CONFIG, X, Y, ids, splits, LABELS, root / "run", progress=False),
            "finetune": train_run(
                FINETUNE, X, Y, ids, splits, LABELS, root / "ft", init_from=pretrained, progress=False
            ),
            "best": _best_val_run(X, Y, ids, splits, root / "best", BEST_SCRIPT[0]),
        }
    finally:
        torch.set_num_threads(threads)  # train_run sets the config's count for the process


@pytest.fixture(scope="module")
def single(single_runs):
    return single_runs["plain"]


def _probs(run_dir: Path, split: str) -> np.ndarray:
    ids, labels, y, p = load_predictions(run_dir / f"predictions_{split}.csv")
    assert labels == LABELS
    return p


def _no_seconds(rows):
    return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]


# ----- two processes against one -------------------------------------------------------------------


def test_two_processes_compute_what_one_process_computes(ddp_out, single):
    ddp = ddp_out / "ddp"
    diffs = {s: float(np.abs(_probs(ddp, s) - _probs(single.run_dir, s)).max()) for s in ("val", "test")}
    print(f"max |p_ddp - p_single|: {diffs}")
    assert max(diffs.values()) < PROB_TOL, diffs
    a, b = load_state(ddp / "model.pt")["state_dict"], load_state(single.model_path)["state_dict"]
    assert a.keys() == b.keys()  # no "module." prefix, plain BatchNorm keys
    for k in a:
        if a[k].is_floating_point():
            assert torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-4), k
        else:
            assert torch.equal(a[k], b[k]), k  # num_batches_tracked: the same number of steps
    rank0 = json.loads((ddp_out / "rank0.json").read_text())["ddp"]
    assert rank0["world_size"] == 2
    for r_ddp, r_one in zip(rank0["history"], single.history, strict=True):
        assert r_ddp["lrs"] == r_one["lrs"]
        for key in ("train_loss", "val_loss"):
            assert r_ddp[key] == pytest.approx(r_one[key], rel=1e-4), key
    assert rank0["val"] == pytest.approx(single.val_macro_auc, abs=1e-6)
    assert rank0["test"] == pytest.approx(single.test_macro_auc, abs=1e-6)
    # the task is learnt, so agreement is not the agreement of two untrained models
    assert single.test_macro_auc > 0.7


def test_two_stage_finetuning_on_two_processes(ddp_out, single_runs):
    one, ddp = single_runs["finetune"], ddp_out / "ddp-finetune"
    diff = max(float(np.abs(_probs(ddp, s) - _probs(one.run_dir, s)).max()) for s in ("val", "test"))
    print(f"fine-tuning: max |p_ddp - p_single| = {diff:.3g}")
    assert diff < PROB_TOL
    rows = json.loads((ddp_out / "rank0.json").read_text())["ddp-finetune"]["history"]
    assert [r["stage"] for r in rows] == [r["stage"] for r in one.history] == ["head", "all", "all"]
    for r_ddp, r_one in zip(rows, one.history, strict=True):
        assert r_ddp["train_loss"] == pytest.approx(r_one["train_loss"], rel=1e-4)


def test_best_val_on_two_processes_keeps_rank0s_choice_everywhere(ddp_out, single_runs):
    r0, r1 = (json.loads((ddp_out / f"rank{r}.json").read_text())["ddp-best"] for r in (0, 1))
    assert r0["kept_epoch"] == r1["kept_epoch"] == 2  # rank 0's script; rank 1's would give 1
    assert r0["restored"]["epoch"] == r1["restored"]["epoch"] == 2
    assert r0["restored"]["digest"] == r1["restored"]["digest"]  # the same weights on every rank
    one = single_runs["best"]
    assert one["kept_epoch"] == 2 and one["restored"]["epoch"] == 2
    run_dir = ddp_out / "ddp-best"
    diff = max(float(np.abs(_probs(run_dir, s) - _probs(Path(one["run_dir"]), s)).max()) for s in ("val", "test"))
    assert diff < PROB_TOL, diff  # epoch 2 of two processes = epoch 2 of one
    # and epoch 2 is not the last epoch the same config reached (run "ddp": keep = "last")
    assert float(np.abs(_probs(run_dir, "test") - _probs(ddp_out / "ddp", "test")).max()) > 10 * PROB_TOL


def test_per_rank_batchnorm_is_outside_the_tolerance(ddp_out, single):
    local = ddp_out / "ddp-local-bn"
    diff = max(float(np.abs(_probs(local, s) - _probs(single.run_dir, s)).max()) for s in ("val", "test"))
    print(f"per-rank BN: max |p - p_single| = {diff:.4g}")
    assert diff > 10 * PROB_TOL  # so the synchronised comparison above has teeth
    summary = json.loads((ddp_out / "rank0.json").read_text())["ddp-local-bn"]
    assert all(np.isfinite(r["train_loss"]) for r in summary["history"])


def test_resume_on_two_processes_is_exact(ddp_out):
    straight, resumed = ddp_out / "ddp", ddp_out / "ddp-resumed"
    a, b = load_state(straight / "model.pt")["state_dict"], load_state(resumed / "model.pt")["state_dict"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for split in ("val", "test"):
        assert (straight / f"predictions_{split}.csv").read_bytes() == (
            resumed / f"predictions_{split}.csv"
        ).read_bytes()
    summary = json.loads((ddp_out / "rank0.json").read_text())
    assert summary["ddp-resumed"]["resumed_from_epoch"] == 2
    assert _no_seconds(summary["ddp-resumed"]["history"]) == _no_seconds(summary["ddp"]["history"])
    env = json.loads((resumed / "environment.json").read_text())
    assert env["distributed"]["world_size"] == 2 and len(env["resumed"]) == 1


def test_rank0_writes_and_every_rank_agrees(ddp_out):
    names = {p.name for p in ddp_out.iterdir()}
    assert names == {*RUNS, "rank0.json", "rank1.json"}  # nothing written anywhere else
    for run in RUNS:
        files = {p.name for p in (ddp_out / run).iterdir()} - ({"tensorboard"} if run == "ddp-local-bn" else set())
        assert {
            "config.json",
            "environment.json",
            "splits.json",
            "label_counts.json",
            "checkpoint.pt",
            "metrics.jsonl",
            "model.pt",
            "predictions_val.csv",
            "predictions_test.csv",
        } == files, run  # no stray temporaries
        # (no MODEL_CARD.md: the command that trains writes it after evaluation, not train_run)
        lines = [json.loads(l) for l in (ddp_out / run / "metrics.jsonl").read_text().splitlines()]
        assert [l["epoch"] for l in lines] == [1, 2, 3], run  # written once, by one rank
        counts = json.loads((ddp_out / run / "label_counts.json").read_text())  # the whole split, not a rank's shard
        splits = json.loads((ddp_out / run / "splits.json").read_text())
        assert counts["records"] == {k: len(v) for k, v in splits.items()}, run
    env = json.loads((ddp_out / "ddp" / "environment.json").read_text())
    d = env["distributed"]
    assert (d["world_size"], d["backend"], d["sync_batchnorm"], d["global_batch_size"]) == (2, "gloo", True, 7)
    assert [r["rank"] for r in d["ranks"]] == [0, 1]
    r0, r1 = (json.loads((ddp_out / f"rank{r}.json").read_text()) for r in (0, 1))
    for run in RUNS:  # rank 1 returns rank 0's metrics and results
        assert _no_seconds(r0[run]["history"]) == _no_seconds(r1[run]["history"])
        assert (r0[run]["val"], r0[run]["test"]) == (r1[run]["val"], r1[run]["test"])


@pytest.mark.skipif(not HAS_TB, reason='tensorboard not installed (pip install "ecg-transfer[track]")')
def test_only_rank0_tracks(ddp_out):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = ddp_out / "ddp-local-bn" / "tensorboard"
    assert len(list(tb.glob("events.out.tfevents.*"))) == 1  # rank 1 would add its own file
    acc = EventAccumulator(str(tb))
    acc.Reload()
    rows = [json.loads(l) for l in (ddp_out / "ddp-local-bn" / "metrics.jsonl").read_text().splitlines()]
    logged = acc.Scalars("train_loss")
    assert [e.step for e in logged] == [r["epoch"] for r in rows]
    assert [e.value for e in logged] == pytest.approx([r["train_loss"] for r in rows], rel=1e-6)  # float32


# ----- pieces, in one process ----------------------------------------------------------------------


def test_one_process_context_and_device_rules(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    ctx = init_from_env("cpu")
    assert not ctx.active and ctx.is_main and ctx.device == torch.device("cpu")
    assert ctx.from_main(lambda: 41) + 1 == 42 and ctx.broadcast("x") == "x" and ctx.all_sum(2.5) == 2.5
    assert is_main_process()
    with main_process_first(ctx):
        pass
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc_per_node=1: no process group needed
    assert not init_from_env("cpu").active
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="cuda:LOCAL_RANK"):
        resolve_device("cuda:1", local_rank=0, distributed=True)
    with pytest.raises(ConfigError, match="dist_backend"):
        RunConfig.from_dict(tiny_config(dist_backend="mpi"))


def test_sharding_follows_distributed_sampler():
    order = np.arange(100, 137)  # one epoch's shuffled rows
    slices = batch_slices(len(order), 8, drop_last=False)
    ranks = [DistContext(rank=r, world_size=3) for r in range(3)]
    for sl in slices:
        parts = [order[sl][c.shard(sl.stop - sl.start)] for c in ranks]
        assert sorted(np.concatenate(parts).tolist()) == order[sl].tolist()  # each row once per global batch
        assert [len(p) for p in parts] == [c.shard_size(sl.stop - sl.start) for c in ranks]
    # with a per-rank batch of 8/4 = 2, DistributedSampler's indices[rank::world] batched by 2
    ranks4 = [DistContext(rank=r, world_size=4) for r in range(4)]
    for c in ranks4:
        sampler = order[:32][c.rank :: 4]
        mine = np.concatenate([order[sl][c.shard(8)] for sl in batch_slices(32, 8, True)])
        assert mine.tolist() == sampler.tolist()
    # a short last batch that cannot give every rank two rows is dropped
    kept = rank_batches(batch_slices(37, 8, drop_last=False), DistContext(rank=0, world_size=3), min_rows=2)
    assert [(s.start, s.stop) for s in kept] == [(0, 8), (8, 16), (16, 24), (24, 32)]
    with pytest.raises(ConfigError, match="batch_size"):
        rank_batches(batch_slices(37, 8, True), DistContext(rank=0, world_size=8), min_rows=2)


def test_sync_batchnorm_conversion_keeps_parameters_and_keys():
    cfg = RunConfig.from_dict(tiny_config(model_kwargs={"head_dropout": 0.0}))
    model = models.build(cfg.model, 12, 3, **cfg.model_kwargs)
    before = model.state_dict()
    params = [id(p) for p in model.parameters()]
    convert_sync_batchnorm(model)
    assert any(isinstance(m, CpuSyncBatchNorm) for m in model.modules())
    assert [id(p) for p in model.parameters()] == params  # optimizers and layer groups stay valid
    assert model.state_dict().keys() == before.keys()
    x = torch.randn(6, 12, 250)
    ref = models.build(cfg.model, 12, 3, **cfg.model_kwargs)
    ref.load_state_dict(before)
    model.train(), ref.train()
    # no process group: plain BatchNorm, running statistics included
    assert torch.allclose(model(x), ref(x), atol=1e-6)
    for k, v in ref.state_dict().items():
        assert torch.allclose(model.state_dict()[k].float(), v.float()), k
    revert_sync_batchnorm(model)
    assert not any(isinstance(m, (nn.SyncBatchNorm, CpuSyncBatchNorm)) for m in model.modules())
    assert [id(p) for p in model.parameters()] == params
    assert SINGLE.wrap(model) is model


def test_cli_runs_under_torchrun(tmp_path):
    """``torchrun -m ecg_transfer train`` end to end on a tiny PTB-XL-shaped tree."""
    from ecg_transfer.datasets.task import load_task
    from wfdb_fixtures import make_ptbxl_tree

    tree = make_ptbxl_tree(tmp_path / "ptbxl", n_records=40)
    task = {"dataset": "ptbxl", "root": str(tree), "labels": "superdiagnostic", "cache_dir": str(tmp_path / "cache")}
    load_task(task, 100.0, progress=False)  # build the cache once, before the ranks open it
    cfg = {
        "model": "fcn_wang",
        "model_kwargs": {"filters": [8, 8], "kernel_sizes": [5, 3], "head_hidden": [8]},
        "fs": 100.0,
        "batch_size": 8,
        "epochs": 1,
        "device": "cpu",
        "seed": 3,
        "task": task,
    }
    (tmp_path / "run.json").write_text(json.dumps(cfg))
    proc = _torchrun(
        [
            "-m",
            "ecg_transfer",
            "train",
            str(tmp_path / "run.json"),
            "--run-dir",
            str(tmp_path / "run"),
            "--no-progress",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "val macro AUC" in proc.stdout
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert env["distributed"]["world_size"] == 2
    assert (tmp_path / "run" / "model.pt").exists() and (tmp_path / "run" / "predictions_test.csv").exists()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        worker(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(f"usage: torchrun --nproc_per_node=2 {Path(__file__).name} --worker OUT_DIR PRETRAINED_RUN")
