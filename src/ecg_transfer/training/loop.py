"""The training loop: AdamW + one-cycle + BCE-with-logits over stages, checkpointed every epoch.

A run is a list of :class:`Stage` s (one for training from scratch; several for gradual
fine-tuning). Each stage sets which layer groups train, builds a fresh AdamW over them (fastai v1
also recreates its optimizer whenever the frozen set changes) and runs its own one-cycle
schedule. There is no early stopping: the model after the last epoch is the result.

Self-supervised runs (``[ssl]``) go through the same loop: the model is a
:class:`~ecg_transfer.training.ssl.SslModel`, whose forward pass returns the batch's SSL loss in
place of BCE on labels, and validation reports that loss on the validation records (no AUC).

Exact resume. At the end of every epoch a checkpoint is written atomically holding the model,
optimizer, scheduler, the position (stage, epoch), every random state (torch CPU/CUDA, numpy,
python ``random``, and the two generators this loop owns: one for the data order, one for the
crops), the metrics history and a ``meta`` dict the caller uses to refuse resuming with other
settings. Restoring it and continuing yields bit-identical weights to an uninterrupted run on the
same machine. ``metrics.jsonl`` is rewritten from the checkpoint's history on resume, so lines of
an epoch that was interrupted before its checkpoint never survive.

Data never leaves ``X`` (a :class:`~ecg_transfer.ragged.RaggedSignals` of memory-mapped records,
or a padded ``(N, C, T)`` array with valid ``lengths``) except one batch of crops at a time. Each batch is standardised
and then transformed as ``config.input`` says (:func:`ecg_transfer.signal.input_transform`: the
samples as they are, or a per-crop spectrum / spectrogram), and validation windows the same way.

Several processes (``dist``, see :mod:`.distributed`): every rank draws the same epoch plan, takes
its rows of each global batch and trains a DDP wrapper built after :func:`configure_stage` (param
groups come from the unwrapped model; a new stage wraps again). Rank 0 alone reads the checkpoint
(and broadcasts it), validates, and writes checkpoint and metrics; every rank gets the same row.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..atomic import atomic_path, atomic_write_text
from ..errors import ConfigError, EcgTransferError
from .. import models
from ..ragged import RaggedSignals, as_signals
from ..signal import input_transform
from .config import RunConfig
from .distributed import SINGLE, DistContext, convert_sync_batchnorm, rank_batches, revert_sync_batchnorm
from .predict import predict_records
from .scaler import GlobalStandardScaler
from .speed import autocast, optimizer_kernel, prepare_for_training, resolve_precision, to_device
from .ssl.model import ssl_validation_loss
from .windows import extract_crops, random_crop_starts

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
_BN = nn.modules.batchnorm._BatchNorm


class TrainingDivergedError(EcgTransferError):
    """The training loss became NaN or infinite; later epochs could not recover the weights."""


@dataclass(frozen=True)
class Stage:
    """One phase of training; see :class:`ecg_transfer.training.config.StageSpec` for the fields."""

    name: str
    epochs: int
    train: str = "all"                     # "all" | "head" | "last:N"
    lr: float | tuple[float, float] = 1e-2  # one peak lr, or (first group, head) geometric
    frozen_bn: str = "train"               # "train" (fastai train_bn) | "frozen"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lr"] = list(self.lr) if isinstance(self.lr, tuple) else self.lr
        return d


def trainable_group_ids(train: str, n_groups: int) -> list[int]:
    """Indices of the layer groups a stage trains (groups ordered input -> head)."""
    if train == "all":
        return list(range(n_groups))
    if train == "head":
        return [n_groups - 1]
    if train.startswith("last:"):
        n = int(train.split(":", 1)[1])
        return list(range(max(n_groups - n, 0), n_groups))
    raise ValueError(f"stage train must be all, head or last:N, got {train!r}")


def group_lrs(stage: Stage, n_groups: int) -> list[float]:
    """Peak lr per layer group: fastai's ``lr_range``: a float for all, a range spread geometrically."""
    if isinstance(stage.lr, (tuple, list)):
        return models.discriminative_lrs(float(stage.lr[0]), float(stage.lr[1]), n_groups)
    return [float(stage.lr)] * n_groups


def apply_stage(model: nn.Module, stage: Stage) -> list[list[nn.Parameter]]:
    """Set ``requires_grad`` for ``stage`` and return the layer groups (all parameters, by group).

    Frozen groups' BatchNorm parameters stay trainable when ``frozen_bn == "train"`` (fastai v1's
    ``train_bn=True``, which the benchmark's fine-tuning used).
    """
    own = getattr(model, "layer_groups", None)  # a self-supervised wrapper (training.ssl) lists its own
    groups = own() if callable(own) else models.layer_groups(model)
    train_ids = set(trainable_group_ids(stage.train, len(groups)))
    bn_params = {id(p) for m in model.modules() if isinstance(m, _BN) for p in m.parameters(recurse=False)}
    for gi, params in enumerate(groups):
        for p in params:
            p.requires_grad_(gi in train_ids or (stage.frozen_bn == "train" and id(p) in bn_params))
    return groups


def set_train_mode(model: nn.Module, stage: Stage) -> None:
    """``model.train()``, except BatchNorm layers that a ``frozen_bn == "frozen"`` stage fixes."""
    model.train()
    if stage.frozen_bn == "frozen":
        for m in model.modules():
            params = list(m.parameters(recurse=False))
            if isinstance(m, _BN) and params and not any(p.requires_grad for p in params):
                m.eval()  # keeps running statistics fixed: the features really are frozen


def configure_stage(
    model: nn.Module, stage: Stage, config: RunConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.OneCycleLR]:
    """Freeze/unfreeze for ``stage`` and build its AdamW (one param group per layer group) and one-cycle."""
    groups = apply_stage(model, stage)
    lrs = group_lrs(stage, len(groups))
    param_groups = []
    for params, lr in zip(groups, lrs):
        trainable = [p for p in params if p.requires_grad]
        if trainable:
            param_groups.append({"params": trainable, "lr": lr})
    if not param_groups:
        raise ConfigError(f"stage {stage.name!r} trains no parameters")
    opt_cfg, sch = config.optimizer, config.schedule
    opt = torch.optim.AdamW(param_groups, lr=lrs[-1], betas=opt_cfg.betas, eps=opt_cfg.eps,
                            weight_decay=opt_cfg.weight_decay,
                            **optimizer_kernel(config.optimizer_impl, [p for g in param_groups for p in g["params"]]))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in param_groups], total_steps=stage.epochs * steps_per_epoch,
        pct_start=sch.pct_start, anneal_strategy="cos", cycle_momentum=True,
        base_momentum=sch.base_momentum, max_momentum=sch.max_momentum,
        div_factor=sch.div_factor, final_div_factor=sch.final_div_factor,
    )
    return opt, sched


def batch_slices(n: int, batch_size: int, drop_last: bool) -> list[slice]:
    """Batches of an epoch. With ``drop_last`` (fastai's training default) an incomplete last batch
    is dropped when at least one full batch exists; a last batch of one record is always dropped
    (BatchNorm cannot normalise a single sample)."""
    full, rest = divmod(n, batch_size)
    slices = [slice(i * batch_size, (i + 1) * batch_size) for i in range(full)]
    if rest and not (drop_last and full) and not (rest == 1 and n > 1):
        slices.append(slice(full * batch_size, n))
    if not slices:
        raise ValueError(f"cannot train on {n} record(s): need at least 2")
    return slices


def epoch_plan(
    train_idx: np.ndarray, lengths: np.ndarray, crop_len: int,
    order_gen: torch.Generator, crop_gen: torch.Generator, short: str,
) -> tuple[np.ndarray, np.ndarray]:
    """This epoch's record order and crop starts (aligned), drawn from the loop's own generators."""
    perm = torch.randperm(len(train_idx), generator=order_gen).numpy()
    order = train_idx[perm]
    starts = random_crop_starts(lengths[order], crop_len, crop_gen, short=short)
    return order, starts


def macro_auc(y_true: np.ndarray, probs: np.ndarray) -> tuple[float | None, int]:
    """Mean ROC AUC over classes that have both positives and negatives; (None, 0) if none has."""
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true)
    aucs = [roc_auc_score(y_true[:, k], probs[:, k]) for k in range(y_true.shape[1])
            if 0 < y_true[:, k].sum() < len(y_true)]
    return (float(np.mean(aucs)) if aucs else None), len(aucs)


# ----- random state -----------------------------------------------------------------------

def make_generators(seed: int) -> dict[str, torch.Generator]:
    """The loop's own generators, seeded apart from the global one (which dropout uses)."""
    return {"order": torch.Generator().manual_seed(seed * 2 + 1),
            "crop": torch.Generator().manual_seed(seed * 2 + 2)}


def capture_rng(gens: dict[str, torch.Generator]) -> dict[str, Any]:
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_gauss)},
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "generators": {k: g.get_state() for k, g in gens.items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], gens: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    for k, g in gens.items():
        g.set_state(state["generators"][k])
    if "cuda" in state and torch.cuda.is_available():
        # a checkpoint from a machine with more GPUs (rank 0 of a multi-GPU run) holds more states
        for i, s in enumerate(list(state["cuda"])[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)


# ----- checkpoints ------------------------------------------------------------------------

def save_checkpoint(path: Path, obj: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def locate(epoch: int, stages: Sequence[Stage]) -> tuple[int, int]:
    """(stage index, epochs done within it) after ``epoch`` completed epochs."""
    for i, s in enumerate(stages):
        if epoch < s.epochs:
            return i, epoch
        epoch -= s.epochs
    return len(stages), 0


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    resumed_from_epoch: int  # 0 for a fresh start
    # validation probabilities after the last epoch (rank 0; None if that epoch ran in an earlier
    # session): the run's predictions_val.csv, so they need not be predicted twice
    final_val_probs: np.ndarray | None = None


def fit(
    model: nn.Module,
    X: np.ndarray | RaggedSignals,
    Y: np.ndarray,
    train_idx: Sequence[int] | np.ndarray,
    val_idx: Sequence[int] | np.ndarray,
    *,
    config: RunConfig,
    stages: Sequence[Stage],
    scaler: GlobalStandardScaler,
    run_dir: str | Path | None = None,
    resume: bool = False,
    meta: dict[str, Any] | None = None,
    lengths: np.ndarray | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    callbacks: Sequence[Callable[[dict[str, Any], nn.Module], None]] = (),
    dist: DistContext | None = None,
) -> FitResult:
    """Train ``model`` in place through ``stages``; returns the per-epoch metrics.

    ``run_dir`` receives ``checkpoint.pt`` and ``metrics.jsonl`` (None: nothing is written, no
    resume). With ``resume=True`` and a checkpoint present, training continues after its last
    epoch; its stored ``meta`` must equal ``meta`` (else :class:`ConfigError` lists what differs).
    The caller seeds the global RNG before building the model; the loop seeds its own generators
    from ``config.seed``. ``callbacks(row, model)`` run after each epoch's checkpoint is written.

    ``dist``: this process's place among several (default: alone); then ``device`` must be its
    device, every rank calls ``fit`` with the same arguments, and only rank 0 touches ``run_dir``.
    """
    ctx = dist or SINGLE
    progress = progress and ctx.is_main
    synced_bn = ctx.active and config.sync_batchnorm
    if synced_bn:
        convert_sync_batchnorm(model, device)
    try:
        return _fit(model, X, Y, train_idx, val_idx, config=config, stages=stages, scaler=scaler, run_dir=run_dir,
                    resume=resume, meta=meta, lengths=lengths, device=device, progress=progress,
                    callbacks=callbacks, ctx=ctx)
    finally:
        if synced_bn:
            revert_sync_batchnorm(model)


def _fit(
    model: nn.Module, X: np.ndarray | RaggedSignals, Y: np.ndarray, train_idx: Sequence[int] | np.ndarray,
    val_idx: Sequence[int] | np.ndarray, *, config: RunConfig, stages: Sequence[Stage],
    scaler: GlobalStandardScaler, run_dir: str | Path | None, resume: bool, meta: dict[str, Any] | None,
    lengths: np.ndarray | None, device: torch.device | str, progress: bool,
    callbacks: Sequence[Callable[[dict[str, Any], nn.Module], None]], ctx: DistContext,
) -> FitResult:
    device = torch.device(device)
    train_idx = np.asarray(train_idx, dtype=np.int64)
    val_idx = np.asarray(val_idx, dtype=np.int64)
    X = as_signals(X, lengths)  # a RaggedSignals or a padded array: records at their own lengths
    lens = X.lengths
    meta = dict(meta or {})
    meta.setdefault("stages", [s.to_dict() for s in stages])
    # the forward pass's precision as resolved on this device: a resume elsewhere ("auto" resolving
    # to another precision) is refused like any other change of the run's maths
    precision = resolve_precision(config.precision, device)
    meta.setdefault("precision", precision)
    crop_len, stride = config.crop_len, config.stride
    transform = input_transform(config.input, config.fs)
    slices = batch_slices(len(train_idx), config.batch_size, config.drop_last)
    if ctx.active:  # per-rank BatchNorm needs two rows per rank; synchronised BN one
        slices = rank_batches(slices, ctx, min_rows=1 if config.sync_batchnorm else 2)
    total = sum(s.epochs for s in stages)
    gens = make_generators(config.seed)
    loss_fn = nn.BCEWithLogitsLoss()
    model.to(device)

    run_dir = None if run_dir is None else Path(run_dir)
    ckpt_path = None if run_dir is None else run_dir / CHECKPOINT
    metrics_path = None if run_dir is None else run_dir / METRICS
    history: list[dict[str, Any]] = []
    start_epoch, opt, sched, ck = 0, None, None, None
    if resume and ckpt_path is not None:
        ck = ctx.from_main(lambda: load_checkpoint(ckpt_path) if ckpt_path.exists() else None)
    if ck is not None:
        ck_config, new_config = ck["meta"].get("config"), meta.get("config")
        if isinstance(ck_config, dict) and isinstance(new_config, dict):
            # keys added to RunConfig after the checkpoint was written: it ran with their defaults
            defaults = RunConfig().to_dict()
            for key in new_config.keys() - ck_config.keys():
                if key in defaults:
                    ck_config[key] = defaults[key]
        diff = _diff_keys(ck["meta"], meta)
        if diff:
            raise ConfigError(f"cannot resume {run_dir}: the run was started with different settings: {', '.join(diff)}")
        model.load_state_dict(ck["model"])
        restore_rng(ck["rng"], gens)
        start_epoch, history = int(ck["epoch"]), list(ck["history"])
        if ctx.is_main:
            atomic_write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in history))
            log.info("resuming %s after epoch %d of %d", run_dir, start_epoch, total)
    elif metrics_path is not None and ctx.is_main:
        atomic_write_text(metrics_path, "")

    stage_i, done_in_stage = locate(start_epoch, stages)
    net = model  # what the batches go through: DDP around the model on several processes
    if stage_i < len(stages):
        opt, sched = configure_stage(model, stages[stage_i], config, len(slices))
        if ck is not None and done_in_stage > 0:
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
        net = ctx.wrap(prepare_for_training(model, config.memory_format, config.compile))
    ck = None

    final_val_probs: np.ndarray | None = None
    bar = tqdm(total=total, initial=start_epoch, unit="epoch", disable=not progress, dynamic_ncols=True)
    try:
        for epoch in range(start_epoch, total):
            stage_i, done_in_stage = locate(epoch, stages)
            stage = stages[stage_i]
            if done_in_stage == 0 and epoch != start_epoch:
                opt, sched = configure_stage(model, stage, config, len(slices))
                net = ctx.wrap(prepare_for_training(model, config.memory_format, config.compile))
            t0 = time.perf_counter()
            set_train_mode(model, stage)
            if ctx.active:
                ctx.seed_dropout(config.seed, epoch)
            order, starts = epoch_plan(train_idx, lens, crop_len, gens["order"], gens["crop"], config.short_records)
            loss_sum, n_seen = 0.0, 0
            for sl in tqdm(slices, leave=False, disable=not progress, unit="batch", desc=f"epoch {epoch + 1}"):
                rows, batch_starts = order[sl], starts[sl]
                n_batch = len(rows)
                if ctx.active:  # this rank's rows of the global batch
                    mine = ctx.shard(n_batch)
                    rows, batch_starts = rows[mine], batch_starts[mine]
                xb = transform(scaler.transform(extract_crops(X, rows, batch_starts, crop_len)))
                xb = to_device(xb, device)
                if config.ssl is None:
                    yb = to_device(np.asarray(Y[rows], dtype=np.float32), device)
                    with autocast(precision, device):
                        logits = net(xb)
                    loss = loss_fn(logits.float(), yb)  # the loss in fp32 whatever the forward pass
                else:  # self-supervised: the model (training.ssl.SslModel) returns the batch's loss, no labels
                    with autocast(precision, device):
                        loss = net(xb).float()
                if ctx.active:
                    # the global batch's mean loss, for the record and the divergence check; the
                    # weight makes DDP's average over ranks the gradient of that mean (uneven splits too)
                    batch_loss = ctx.all_sum(loss.detach() * len(rows)) / n_batch
                    loss = loss * (ctx.world_size * len(rows) / n_batch)
                else:
                    batch_loss = loss.item()
                if not np.isfinite(batch_loss):
                    raise TrainingDivergedError(f"training loss is {batch_loss} in epoch {epoch + 1}; "
                                                "lower the learning rate or check the inputs")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip is not None:
                    nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], config.grad_clip)
                opt.step()
                step_lrs = [g["lr"] for g in opt.param_groups]  # the lr this step used
                sched.step()
                loss_sum += batch_loss * n_batch
                n_seen += n_batch
            val_loss, val_auc, n_cls = None, None, 0
            t_val = time.perf_counter()
            if val_idx.size and ((epoch + 1) % config.validate_every == 0 or epoch + 1 == total):
                def validate(epoch: int = epoch) -> tuple[float | None, float | None, int]:
                    nonlocal final_val_probs
                    if config.ssl is not None:  # the SSL loss of the validation records' centre crops
                        return ssl_validation_loss(model, X, val_idx, scaler=scaler, crop_len=crop_len,
                                                   batch_size=config.batch_size, device=device,
                                                   seed=config.seed), None, 0
                    probs, v_loss = predict_records(
                        model, X, val_idx, scaler=scaler, crop_len=crop_len, stride=stride,
                        aggregate=config.aggregate, batch_size=config.batch_size, device=device,
                        short=config.short_records, Y=Y, transform=transform, precision=precision,
                    )
                    if epoch + 1 == total:
                        final_val_probs = probs
                    return (v_loss, *macro_auc(np.asarray(Y[val_idx]), probs))
                val_loss, val_auc, n_cls = ctx.from_main(validate)
            row = {
                "epoch": epoch + 1, "stage": stage.name, "stage_epoch": done_in_stage + 1,
                "train_loss": loss_sum / n_seen, "val_loss": val_loss, "val_macro_auc": val_auc,
                "val_auc_classes": n_cls, "lr": step_lrs[-1], "lrs": step_lrs,
                "seconds": round(time.perf_counter() - t0, 3),  # the epoch: training + validation
                "val_seconds": round(time.perf_counter() - t_val, 3),
            }
            history.append(row)
            if ckpt_path is not None and ctx.is_main:
                save_checkpoint(ckpt_path, {
                    "format": "ecg_transfer.checkpoint/1", "epoch": epoch + 1, "stage": stage_i,
                    "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "rng": capture_rng(gens), "history": history, "meta": meta,
                })
                with open(metrics_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
            bar.update(1)
            bar.set_postfix(loss=f"{row['train_loss']:.4f}",
                            val_auc="n/a" if val_auc is None else f"{val_auc:.4f}")
            for cb in callbacks:
                cb(row, model)
    finally:
        bar.close()
    return FitResult(history=history, resumed_from_epoch=start_epoch, final_val_probs=final_val_probs)
