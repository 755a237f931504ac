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
from typing import Any, Callable, Sequence, cast

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
from .history import kept_epoch
from .distributed import SINGLE, DistContext, convert_sync_batchnorm, rank_batches, revert_sync_batchnorm
from .predict import predict_records
from .sameness import differing_settings
from .scaler import GlobalStandardScaler
from .speed import autocast, optimizer_kernel, prepare_for_training, resolve_precision, to_device
from .ssl.model import SslModel, ssl_validation_loss
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
    train: str = "all"  # "all" | "head" | "last:N"
    lr: float | tuple[float, float] = 1e-2  # one peak lr, or (first group, head) geometric
    frozen_bn: str = "train"  # "train" (fastai train_bn) | "frozen"

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
    param_groups: list[dict[str, Any]] = []
    for params, lr in zip(groups, lrs):
        trainable = [p for p in params if p.requires_grad]
        if trainable:
            param_groups.append({"params": trainable, "lr": lr})
    if not param_groups:
        raise ConfigError(f"stage {stage.name!r} trains no parameters")
    opt_cfg, sch = config.optimizer, config.schedule
    opt = torch.optim.AdamW(
        param_groups,
        lr=lrs[-1],
        betas=opt_cfg.betas,
        eps=opt_cfg.eps,
        weight_decay=opt_cfg.weight_decay,
        **optimizer_kernel(config.optimizer_impl, [p for g in param_groups for p in g["params"]]),
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=[g["lr"] for g in param_groups],
        total_steps=stage.epochs * steps_per_epoch,
        pct_start=sch.pct_start,
        anneal_strategy="cos",
        cycle_momentum=True,
        base_momentum=sch.base_momentum,
        max_momentum=sch.max_momentum,
        div_factor=sch.div_factor,
        final_div_factor=sch.final_div_factor,
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
    train_idx: np.ndarray,
    lengths: np.ndarray,
    crop_len: int,
    order_gen: torch.Generator,
    crop_gen: torch.Generator,
    short: str,
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
    aucs = [
        roc_auc_score(y_true[:, k], probs[:, k]) for k in range(y_true.shape[1]) if 0 < y_true[:, k].sum() < len(y_true)
    ]
    return (float(np.mean(aucs)) if aucs else None), len(aucs)


# ----- random state -----------------------------------------------------------------------


def make_generators(seed: int) -> dict[str, torch.Generator]:
    """The loop's own generators, seeded apart from the global one (which dropout uses)."""
    return {"order": torch.Generator().manual_seed(seed * 2 + 1), "crop": torch.Generator().manual_seed(seed * 2 + 2)}


def capture_rng(gens: dict[str, torch.Generator]) -> dict[str, Any]:
    np_state: Any = np.random.get_state()  # the legacy tuple form
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np_state
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "generators": {k: g.get_state() for k, g in gens.items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], gens: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
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
    # validation probabilities of the kept weights (rank 0; None when they were not predicted in this
    # session, e.g. the last epoch ran before a resume): the run's predictions_val.csv, not predicted twice
    final_val_probs: np.ndarray | None = None
    kept_epoch: int | None = None  # whose weights the model holds (keep = "best-val": the best validated one)


@dataclass
class BestEpoch:
    """``keep = "best-val"``: the best validated epoch so far -- its number, validation macro AUC,
    weights (a CPU copy) and validation probabilities. It travels in the checkpoint, so a resumed
    run still chooses among all its epochs; the first of equal AUCs is kept."""

    epoch: int = 0
    auc: float = float("-inf")
    state: dict[str, torch.Tensor] | None = None
    probs: np.ndarray | None = None

    def offer(self, model: nn.Module, epoch: int, auc: float | None, probs: np.ndarray | None) -> None:
        if auc is not None and auc > self.auc:
            self.epoch, self.auc, self.probs = epoch, auc, probs
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def to_checkpoint(self) -> dict[str, Any]:
        probs = None if self.probs is None else torch.from_numpy(np.asarray(self.probs))
        return {"epoch": self.epoch, "auc": self.auc, "state": self.state, "probs": probs}

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> "BestEpoch":
        probs = saved.get("probs")
        return cls(int(saved["epoch"]), float(saved["auc"]), saved["state"], None if probs is None else probs.numpy())

    def restore_into(self, model: nn.Module) -> bool:
        """Load the best weights into ``model``; False (the last epoch's weights stay, with a warning)
        when no validated epoch had an AUC: e.g. no validation class with positives and negatives."""
        if self.state is None:
            log.warning("keep = 'best-val': no validated epoch had a macro AUC; keeping the last epoch's weights")
            return False
        model.load_state_dict(self.state)
        log.info("keeping epoch %d: best validation macro AUC %.4f", self.epoch, self.auc)
        return True


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
        return _fit(
            model,
            X,
            Y,
            train_idx,
            val_idx,
            config=config,
            stages=stages,
            scaler=scaler,
            run_dir=run_dir,
            resume=resume,
            meta=meta,
            lengths=lengths,
            device=device,
            progress=progress,
            callbacks=callbacks,
            ctx=ctx,
        )
    finally:
        if synced_bn:
            revert_sync_batchnorm(model)


@dataclass
class _Setup:
    """What every epoch of a run reads and nothing changes: the data, the settings resolved for
    this device, the batches of an epoch and where the run's files go."""

    model: nn.Module
    X: RaggedSignals
    Y: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    config: RunConfig
    stages: Sequence[Stage]
    scaler: GlobalStandardScaler
    device: torch.device
    precision: str
    transform: Callable[[np.ndarray], np.ndarray]
    slices: list[slice]
    total: int
    ctx: DistContext
    run_dir: Path | None
    meta: dict[str, Any]

    @property
    def ckpt_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / CHECKPOINT

    @property
    def metrics_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / METRICS


def _setup(
    model: nn.Module,
    X: np.ndarray | RaggedSignals,
    Y: np.ndarray,
    train_idx: Sequence[int] | np.ndarray,
    val_idx: Sequence[int] | np.ndarray,
    *,
    config: RunConfig,
    stages: Sequence[Stage],
    scaler: GlobalStandardScaler,
    run_dir: str | Path | None,
    meta: dict[str, Any] | None,
    lengths: np.ndarray | None,
    device: torch.device | str,
    ctx: DistContext,
) -> _Setup:
    """Resolve the inputs once: index arrays, records at their lengths, the batches of an epoch
    (this rank's share of them) and the ``meta`` a checkpoint must match to be resumed."""
    device = torch.device(device)
    train_idx = np.asarray(train_idx, dtype=np.int64)
    meta = dict(meta or {})
    meta.setdefault("stages", [s.to_dict() for s in stages])
    # the forward pass's precision as resolved on this device: a resume elsewhere ("auto" resolving
    # to another precision) is refused like any other change of the run's maths
    precision = resolve_precision(config.precision, device)
    meta.setdefault("precision", precision)
    slices = batch_slices(len(train_idx), config.batch_size, config.drop_last)
    if ctx.active:  # per-rank BatchNorm needs two rows per rank; synchronised BN one
        slices = rank_batches(slices, ctx, min_rows=1 if config.sync_batchnorm else 2)
    return _Setup(
        model=model,
        X=as_signals(X, lengths),  # a RaggedSignals or a padded array: records at their own lengths
        Y=Y,
        train_idx=train_idx,
        val_idx=np.asarray(val_idx, dtype=np.int64),
        config=config,
        stages=stages,
        scaler=scaler,
        device=device,
        precision=precision,
        transform=input_transform(config.input, config.fs),
        slices=slices,
        total=sum(s.epochs for s in stages),
        ctx=ctx,
        run_dir=None if run_dir is None else Path(run_dir),
        meta=meta,
    )


def _resume_checkpoint(
    s: _Setup, resume: bool, gens: dict[str, torch.Generator]
) -> tuple[int, list[dict[str, Any]], dict[str, Any] | None]:
    """(epochs done, metrics history, the checkpoint or None): restores the model and every random
    state from ``run_dir``'s checkpoint when resuming, refusing one written with other settings;
    (re)writes metrics.jsonl so it holds exactly the checkpoint's epochs."""
    ck = None
    if resume and s.ckpt_path is not None:
        path = s.ckpt_path
        ck = s.ctx.from_main(lambda: load_checkpoint(path) if path.exists() else None)
    if ck is None:
        if s.metrics_path is not None and s.ctx.is_main:
            atomic_write_text(s.metrics_path, "")
        return 0, [], None
    ck_config, new_config = ck["meta"].get("config"), s.meta.get("config")
    if isinstance(ck_config, dict) and isinstance(new_config, dict):
        # keys added to RunConfig after the checkpoint was written: it ran with their defaults
        defaults = RunConfig().to_dict()
        for key in new_config.keys() - ck_config.keys():
            if key in defaults:
                ck_config[key] = defaults[key]
    diff = differing_settings(ck["meta"], s.meta)
    if diff:
        raise ConfigError(f"cannot resume {s.run_dir}: the run was started with different settings: {', '.join(diff)}")
    s.model.load_state_dict(ck["model"])
    restore_rng(ck["rng"], gens)
    start_epoch, history = int(ck["epoch"]), list(ck["history"])
    if s.ctx.is_main and s.metrics_path is not None:
        atomic_write_text(s.metrics_path, "".join(json.dumps(r) + "\n" for r in history))
        log.info("resuming %s after epoch %d of %d", s.run_dir, start_epoch, s.total)
    return start_epoch, history, ck


def _begin_stage(
    s: _Setup, stage: Stage, ck: dict[str, Any] | None = None
) -> tuple[nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.OneCycleLR]:
    """(what the batches go through, optimizer, scheduler) for ``stage``: a fresh AdamW and
    one-cycle, or the checkpoint's state when resuming within the stage; DDP wraps the model on
    several processes."""
    opt, sched = configure_stage(s.model, stage, s.config, len(s.slices))
    if ck is not None:
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
    net = s.ctx.wrap(prepare_for_training(s.model, s.config.memory_format, s.config.compile))
    return net, opt, sched


def _batch(s: _Setup, rows: np.ndarray, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """This rank's part of one global batch on the device: (inputs, labels or None for [ssl],
    rows on this rank). Crops are cut from ``X``, standardised and transformed."""
    if s.ctx.active:  # this rank's rows of the global batch
        mine = s.ctx.shard(len(rows))
        rows, starts = rows[mine], starts[mine]
    xb = to_device(s.transform(s.scaler.transform(extract_crops(s.X, rows, starts, s.config.crop_len))), s.device)
    yb = None if s.config.ssl is not None else to_device(np.asarray(s.Y[rows], dtype=np.float32), s.device)
    return xb, yb, len(rows)


def _train_epoch(
    s: _Setup,
    net: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.OneCycleLR,
    epoch: int,
    gens: dict[str, torch.Generator],
    progress: bool,
) -> tuple[float, list[float]]:
    """One epoch of training steps; (mean training loss, the last step's lr per param group).

    The whole step reads top to bottom here: forward (autocast as ``precision`` says), loss in fp32
    (BCE on logits; an [ssl] model returns its own loss), the global batch's loss checked finite,
    backward, optional gradient clipping, optimizer step, scheduler step."""
    config, ctx = s.config, s.ctx
    loss_fn = nn.BCEWithLogitsLoss()
    order, starts = epoch_plan(
        s.train_idx, s.X.lengths, config.crop_len, gens["order"], gens["crop"], config.short_records
    )
    loss_sum, n_seen, step_lrs = 0.0, 0, []
    for sl in tqdm(s.slices, leave=False, disable=not progress, unit="batch", desc=f"epoch {epoch + 1}"):
        n_batch = len(order[sl])
        xb, yb, n_rows = _batch(s, order[sl], starts[sl])
        with autocast(s.precision, s.device):
            out = net(xb)
        # the loss in fp32 whatever the forward pass; a self-supervised model (training.ssl.SslModel)
        # returns the batch's loss itself, no labels
        loss = loss_fn(out.float(), yb) if yb is not None else out.float()
        if ctx.active:
            # the global batch's mean loss, for the record and the divergence check; the
            # weight makes DDP's average over ranks the gradient of that mean (uneven splits too)
            batch_loss = ctx.all_sum(loss.detach() * n_rows) / n_batch
            loss = loss * (ctx.world_size * n_rows / n_batch)
        else:
            batch_loss = loss.item()
        if not np.isfinite(batch_loss):
            raise TrainingDivergedError(
                f"training loss is {batch_loss} in epoch {epoch + 1}; lower the learning rate or check the inputs"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], config.grad_clip)
        opt.step()
        step_lrs = [g["lr"] for g in opt.param_groups]  # the lr this step used
        sched.step()
        loss_sum += batch_loss * n_batch
        n_seen += n_batch
    return loss_sum / n_seen, step_lrs


def _validates(s: _Setup, epoch: int) -> bool:
    """Whether ``epoch`` (0-based) is validated: every ``validate_every`` epochs and the last."""
    return bool(s.val_idx.size) and ((epoch + 1) % s.config.validate_every == 0 or epoch + 1 == s.total)


def _validate(s: _Setup, epoch: int) -> tuple[float | None, float | None, int, np.ndarray | None]:
    """(val loss, val macro AUC, classes in that AUC, probabilities) when ``epoch`` is validated
    (every ``validate_every`` epochs and the last). Rank 0 predicts; every rank gets the three
    numbers, only rank 0 the probabilities. An [ssl] run reports the SSL loss of the validation
    records' centre crops, no AUC and no probabilities."""
    config = s.config
    if not _validates(s, epoch):
        return None, None, 0, None
    held: dict[str, np.ndarray] = {}  # rank 0's probabilities stay on rank 0

    def validate() -> tuple[float | None, float | None, int]:
        if config.ssl is not None:
            return (
                ssl_validation_loss(
                    cast(SslModel, s.model),
                    s.X,
                    s.val_idx,
                    scaler=s.scaler,
                    crop_len=config.crop_len,
                    batch_size=config.batch_size,
                    device=s.device,
                    seed=config.seed,
                ),
                None,
                0,
            )
        held["probs"], v_loss = predict_records(
            s.model,
            s.X,
            s.val_idx,
            scaler=s.scaler,
            crop_len=config.crop_len,
            stride=config.stride,
            aggregate=config.aggregate,
            batch_size=config.batch_size,
            device=s.device,
            short=config.short_records,
            Y=s.Y,
            transform=s.transform,
            precision=s.precision,
        )
        return (v_loss, *macro_auc(np.asarray(s.Y[s.val_idx]), held["probs"]))

    val_loss, val_auc, n_cls = s.ctx.from_main(validate)
    return val_loss, val_auc, n_cls, held.get("probs")


def _record_epoch(
    s: _Setup,
    row: dict[str, Any],
    history: list[dict[str, Any]],
    stage_i: int,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.OneCycleLR,
    gens: dict[str, torch.Generator],
    best: BestEpoch | None = None,
) -> None:
    """Rank 0: the checkpoint (atomically), then the epoch's line of metrics.jsonl."""
    history.append(row)
    if s.ckpt_path is None or s.metrics_path is None or not s.ctx.is_main:
        return
    save_checkpoint(
        s.ckpt_path,
        {
            "format": "ecg_transfer.checkpoint/1",
            "epoch": row["epoch"],
            "stage": stage_i,
            "model": s.model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": capture_rng(gens),
            "history": history,
            "meta": s.meta,
            **({} if best is None else {"best": best.to_checkpoint()}),
        },
    )
    with open(s.metrics_path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def _epoch_row(
    epoch: int,
    stage: Stage,
    done_in_stage: int,
    train_loss: float,
    step_lrs: list[float],
    val: tuple[float | None, float | None, int],
    t0: float,
    val_seconds: float,
) -> dict[str, Any]:
    """One line of ``metrics.jsonl`` (the record of truth; trackers and callbacks get the same dict)."""
    val_loss, val_auc, n_cls = val
    return {
        "epoch": epoch + 1,
        "stage": stage.name,
        "stage_epoch": done_in_stage + 1,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "val_macro_auc": val_auc,
        "val_auc_classes": n_cls,
        "lr": step_lrs[-1],
        "lrs": step_lrs,
        "seconds": round(time.perf_counter() - t0, 3),  # the epoch: training + validation
        "val_seconds": round(val_seconds, 3),  # 0 for an epoch not validated
    }


def _fit(
    model: nn.Module,
    X: np.ndarray | RaggedSignals,
    Y: np.ndarray,
    train_idx: Sequence[int] | np.ndarray,
    val_idx: Sequence[int] | np.ndarray,
    *,
    config: RunConfig,
    stages: Sequence[Stage],
    scaler: GlobalStandardScaler,
    run_dir: str | Path | None,
    resume: bool,
    meta: dict[str, Any] | None,
    lengths: np.ndarray | None,
    device: torch.device | str,
    progress: bool,
    callbacks: Sequence[Callable[[dict[str, Any], nn.Module], None]],
    ctx: DistContext,
) -> FitResult:
    s = _setup(
        model,
        X,
        Y,
        train_idx,
        val_idx,
        config=config,
        stages=stages,
        scaler=scaler,
        run_dir=run_dir,
        meta=meta,
        lengths=lengths,
        device=device,
        ctx=ctx,
    )
    gens = make_generators(config.seed)
    model.to(s.device)
    start_epoch, history, ck = _resume_checkpoint(s, resume, gens)
    best = _best_epoch(s, ck)
    stage_i, done_in_stage = locate(start_epoch, stages)
    net, opt, sched = model, None, None  # net: what the batches go through (DDP around the model on several processes)
    if stage_i < len(stages):
        net, opt, sched = _begin_stage(s, stages[stage_i], ck if done_in_stage > 0 else None)
    ck = None

    final_val_probs: np.ndarray | None = None
    bar = tqdm(total=s.total, initial=start_epoch, unit="epoch", disable=not progress, dynamic_ncols=True)
    try:
        for epoch in range(start_epoch, s.total):
            stage_i, done_in_stage = locate(epoch, stages)
            stage = stages[stage_i]
            if done_in_stage == 0 and epoch != start_epoch:
                net, opt, sched = _begin_stage(s, stage)
            assert opt is not None and sched is not None  # built for the stage the loop is in
            t0 = time.perf_counter()
            set_train_mode(model, stage)
            if ctx.active:
                ctx.seed_dropout(config.seed, epoch)
            train_loss, step_lrs = _train_epoch(s, net, opt, sched, epoch, gens, progress)
            t_val = time.perf_counter()
            val_loss, val_auc, n_cls, probs = _validate(s, epoch)
            val_seconds = time.perf_counter() - t_val if _validates(s, epoch) else 0.0
            if epoch + 1 == s.total:
                final_val_probs = probs
            if best is not None:
                best.offer(model, epoch + 1, val_auc, probs)
            row = _epoch_row(
                epoch, stage, done_in_stage, train_loss, step_lrs, (val_loss, val_auc, n_cls), t0, val_seconds
            )
            _record_epoch(s, row, history, stage_i, opt, sched, gens, best)
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.4f}", val_auc="n/a" if val_auc is None else f"{val_auc:.4f}")
            for cb in callbacks:
                cb(row, model)
    finally:
        bar.close()
    if best is not None and best.restore_into(model):
        final_val_probs = best.probs
    return FitResult(history, start_epoch, final_val_probs, kept_epoch(history, config.keep))


def check_keep(config: RunConfig, n_val: int) -> None:
    """``keep = "best-val"`` needs validation records to choose by (refused before a run writes anything)."""
    if config.keep == "best-val" and not n_val:
        raise ConfigError("keep = 'best-val' chooses the epoch on the validation folds, but this run has none")


def _best_epoch(s: _Setup, ck: dict[str, Any] | None) -> BestEpoch | None:
    """The ``keep = "best-val"`` tracker (restored from a resumed run's checkpoint), or None."""
    if s.config.keep != "best-val":
        return None
    check_keep(s.config, int(s.val_idx.size))
    return BestEpoch.from_checkpoint(ck["best"]) if ck is not None and "best" in ck else BestEpoch()
