"""One training run = one directory holding everything needed to trust, resume and reuse it.

Layout of ``run_dir``:

- ``config.json``: the resolved :class:`RunConfig` (every default filled in; reload with
  ``load_config``), written when the run starts;
- ``environment.json``: python/torch/numpy/... versions, git commit (None outside a checkout),
  host, device, threads, seed, start time; resumed sessions are appended under ``resumed``;
- ``splits.json``: the record ids of train / val / test, so two arms can be shown to share them;
- ``label_counts.json``: per label, its positive records in each split (not for an ``[ssl]`` run,
  which reads no labels): a label learnt from a handful of training records has an AUC that says
  little, and the model card and ``benchmarks/label_efficiency.py`` say so beside it; with
  ``dropped_unlabelled`` / ``fold_records`` given (a ``[task]`` run: per split, the records of its
  folds left out for having none of the task's labels, and the records of its folds before that
  rule), those two under the same keys;
- ``checkpoint.pt``: written atomically after every epoch (see :mod:`.loop`), used by ``resume``;
- ``metrics.jsonl``: one JSON line per epoch (epoch, stage, train/val loss, val macro AUC, lr, seconds),
  the record of truth that ``[tracking]`` mirrors to TensorBoard (``tensorboard/``) or MLflow
  (``tracking.json`` names the MLflow run; see :mod:`.tracking`);
- ``model.pt``: the final model (see :mod:`.modelfile`);
- ``predictions_val.csv``, ``predictions_test.csv``: record-level probabilities (see
  :mod:`ecg_transfer.predictions`); a self-supervised (``[ssl]``) run has none: its ``model.pt``
  is an encoder with a placeholder head, and ``metrics.jsonl`` holds its SSL losses (see :mod:`.ssl`);
- ``MODEL_CARD.md``: data, labels, metrics with CIs, intended use and limits (see
  :mod:`ecg_transfer.inference.modelcard`), written by the command that ran the training
  (``ecg-transfer train``; ``study run`` after its evaluation), not by :func:`train_run`.

``model.pt`` is written before the predictions; a run killed between the two is finished by
``train_run(..., resume=True)`` (``ecg-transfer train --resume``), which predicts with the saved
model and trains nothing (:func:`missing_outputs` says what a run directory still lacks).

The caller (the data layer) supplies arrays, not datasets: ``X`` the records in mV, either a
:class:`~ecg_transfer.ragged.RaggedSignals` (records at their own lengths, as the signal cache
holds them) or a padded (N, C, T) float32 array (a memmap is fine) with optional valid ``lengths``;
``Y`` (N, K) multi-hot, ``record_ids`` (N), ``split_indices`` rows of X per split.

Under ``torchrun`` every process calls :func:`train_run` with the same arguments; they train one
model data-parallel (see :mod:`.distributed`) and rank 0 alone reads and writes ``run_dir``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import random
import socket
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence, cast

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_write_json
from ..errors import DatasetError, RunExistsError
from ..models.base import EcgClassifier
from ..ragged import RaggedSignals, as_signals
from ..runfiles import LABEL_COUNTS_FILE
from ..signal import input_transform
from .config import RESUMABLE_KEYS, RunConfig, load_config, save_config
from .distributed import init_from_env, resolve_device
from .finetune import check_policy, init_model, resolve_stages
from .history import kept_epoch
from .loop import CHECKPOINT, check_keep, fit, load_checkpoint, macro_auc
from .modelfile import MODEL_FILE, resolve_model_path, save_model_file
from .predict import predict_records, save_predictions
from .sameness import differing_settings, value_at
from .scaler import GlobalStandardScaler
from .speed import cpu_has_native_bf16, resolve_precision
from .ssl.model import SslModel
from .tracking import tracking
from .windows import ShortRecordError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass
class RunResult:
    run_dir: Path
    config: RunConfig
    history: list[dict[str, Any]]
    val_macro_auc: float | None
    test_macro_auc: float | None
    model_path: Path
    predictions: dict[str, Path]
    resumed_from_epoch: int | None  # None: started fresh
    world_size: int = 1  # processes that trained it; the paths exist on rank 0's machine
    kept_epoch: int | None = None  # whose weights model.pt holds (the last, or the best validated: keep)


def _git_info() -> dict[str, Any]:
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True, timeout=30)
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment_info(
    config: RunConfig, device: torch.device, ranks: Sequence[dict[str, Any]] | None = None, backend: str | None = None
) -> dict[str, Any]:
    """What a reader needs to reproduce the numbers: versions, commit, machine, threads, seed."""
    from .._version import __version__

    info: dict[str, Any] = {
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "argv": list(sys.argv),
        "packages": {
            "ecg-transfer": __version__,
            **{
                d: _version(d)
                for d in (
                    "torch",
                    "numpy",
                    "scipy",
                    "scikit-learn",
                    "pandas",
                    "wfdb",
                    "tqdm",
                    "iterative-stratification",
                )
            },
        },
        "git": _git_info(),
        "seed": config.seed,
        "deterministic": config.deterministic,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
        "precision": resolve_precision(config.precision, device),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    if ranks is not None and len(ranks) > 1:
        info["distributed"] = {
            "world_size": len(ranks),
            "backend": backend,
            "sync_batchnorm": config.sync_batchnorm,
            "global_batch_size": config.batch_size,
            "ranks": list(ranks),
        }
    return info


def pick_device(name: str) -> torch.device:
    """Config key ``device`` for one process (``train_run`` asks :func:`init_from_env`, which also
    handles several)."""
    return resolve_device(name)


@contextmanager
def deterministic_kernels(enabled: bool, device: torch.device) -> Iterator[None]:
    """Deterministic kernels for the run, the previous global settings restored afterwards.

    CPU kernels are already deterministic (same machine, same thread count); on CUDA, cuDNN's
    autotuner and atomics-based kernels are switched off.
    """
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    if enabled and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by deterministic cuBLAS
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _check_inputs(
    X: RaggedSignals,
    Y: np.ndarray,
    record_ids: Sequence[str],
    split_indices: Mapping[str, Sequence[int] | np.ndarray],
    label_names: Sequence[str],
) -> dict[str, np.ndarray]:
    n = len(X)
    if Y.ndim != 2 or Y.shape[0] != n:
        raise DatasetError(f"Y must be (records, labels) with {n} rows, got shape {Y.shape}")
    if Y.shape[1] != len(label_names):
        raise DatasetError(f"Y has {Y.shape[1]} label columns but {len(label_names)} label names were given")
    if len(set(map(str, label_names))) != len(label_names):
        raise DatasetError("label names must be unique")
    if not np.isin(np.asarray(Y), (0, 1)).all():
        raise DatasetError("Y must be multi-hot: only 0 and 1")
    if len(record_ids) != n:
        raise DatasetError(f"{len(record_ids)} record ids for {n} rows of X")
    unknown = sorted(set(split_indices) - set(SPLITS))
    if unknown or "train" not in split_indices:
        raise DatasetError(
            f"split_indices needs 'train' (and optionally 'val', 'test'); got keys {sorted(split_indices)}"
        )
    splits = {}
    for name in SPLITS:
        idx = np.asarray(split_indices.get(name, ()), dtype=np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise DatasetError(f"split {name!r} has row indices outside 0..{n - 1}")
        if np.unique(idx).size != idx.size:
            raise DatasetError(f"split {name!r} lists a row twice")
        splits[name] = idx
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        both = np.intersect1d(splits[a], splits[b])
        if both.size:
            ids = [str(record_ids[i]) for i in both[:5]]
            raise DatasetError(
                f"splits {a!r} and {b!r} share {both.size} record(s), e.g. {ids}; a test or "
                "validation record must never be trained on"
            )
    used = np.concatenate(list(splits.values()))
    if len({str(record_ids[i]) for i in used}) != used.size:
        raise DatasetError("record ids are not unique across the rows used by the splits")
    return splits


def _as_signals(X: np.ndarray | RaggedSignals, lengths: np.ndarray | None) -> RaggedSignals:
    """The records of ``X`` at their valid lengths; a wrong shape or lengths is a DatasetError."""
    if not isinstance(X, RaggedSignals) and np.ndim(X) != 3:
        raise DatasetError(f"X must be (records, leads, samples), got shape {np.shape(X)}")
    if lengths is not None and len(lengths) != len(X):
        raise DatasetError(f"{len(lengths)} lengths for {len(X)} rows of X")
    try:
        return as_signals(X, lengths)
    except ValueError as exc:
        raise DatasetError(f"X / lengths: {exc}") from None


def _split_digest(record_ids: Sequence[str], idx: np.ndarray) -> str:
    return hashlib.sha256("\n".join(str(record_ids[i]) for i in idx).encode()).hexdigest()


def _as_config(config: RunConfig | Mapping[str, Any] | str | Path) -> RunConfig:
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, Mapping):
        return RunConfig.from_dict(dict(config))
    return load_config(config)


def _meta_config(config: RunConfig) -> dict[str, Any]:
    d = config.to_dict()
    for k in RESUMABLE_KEYS:
        d.pop(k, None)
    return d


def _existing_run(run_dir: Path, resume: bool, ctx: Any) -> tuple[bool, bool, dict[str, Any] | None]:
    """(finishing, resuming, the checkpoint's scaler): what ``run_dir`` holds, read by rank 0 and
    agreed by every rank. Finishing: ``resume`` and a model.pt exist (only predictions may be
    missing); resuming: ``resume`` and a checkpoint exist. A run found without ``resume`` is refused."""
    ckpt_path = run_dir / CHECKPOINT

    def look() -> tuple[bool, dict[str, Any] | None]:  # rank 0: what run_dir holds
        found = resume and ckpt_path.exists()
        if not found and (ckpt_path.exists() or (run_dir / MODEL_FILE).exists()):
            raise RunExistsError(
                f"{run_dir} already holds a run; pass resume=True to continue it, or use a new directory"
            )
        return found, (load_checkpoint(ckpt_path)["meta"]["scaler"] if found else None)

    finishing = ctx.from_main(lambda: resume and (run_dir / MODEL_FILE).exists())
    resuming, resumed_scaler = (False, None) if finishing else ctx.from_main(look)
    return finishing, resuming, resumed_scaler


def _check_short_records(
    config: RunConfig, X: RaggedSignals, record_ids: Sequence[str], splits: Mapping[str, np.ndarray]
) -> None:
    """With ``short_records = "error"``: a DatasetError naming the used records shorter than one crop."""
    if config.short_records != "error":
        return
    used = np.concatenate(list(splits.values()))
    short = used[X.lengths[used] < config.crop_len]
    if short.size:
        ids = [str(record_ids[i]) for i in short[:5]]
        raise DatasetError(
            f"{short.size} record(s) are shorter than one {config.crop_seconds} s crop "
            f'({config.crop_len} samples), e.g. {ids}; set short_records = "pad" to zero-pad them'
        )


def _run_scaler(
    config: RunConfig,
    X: RaggedSignals,
    train_rows: np.ndarray,
    resumed: dict[str, Any] | None,
    pretrained: Any,
    ctx: Any,
) -> GlobalStandardScaler:
    """The standardisation of the run: the checkpoint's when resuming, the pre-trained model's with
    ``finetune.scaler = "pretrained"``, else fitted on the training rows only (one pass, rank 0)."""
    if resumed is not None:
        return GlobalStandardScaler.from_dict(resumed)
    if config.finetune.scaler == "pretrained" and pretrained is not None:
        return pretrained.scaler
    return GlobalStandardScaler.from_dict(ctx.from_main(lambda: GlobalStandardScaler().fit(X, train_rows).to_dict()))


def _run_meta(
    config: RunConfig,
    X: RaggedSignals,
    record_ids: Sequence[str],
    splits: Mapping[str, np.ndarray],
    label_names: Sequence[str],
    scaler: GlobalStandardScaler,
) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the defining settings, labels, scaler, the
    splits' record digests and the data's shape."""
    return {
        "config": _meta_config(config),
        "label_names": list(label_names),
        "scaler": scaler.to_dict(),
        "splits": {k: _split_digest(record_ids, v) for k, v in splits.items()},
        "n_rows": int(X.shape[0]),
        "input_shape": [int(X.shape[1]), int(X.shape[2])],
    }


def _with_init(config: RunConfig, init_from: str | Path | None) -> tuple[RunConfig, Path | None]:
    """(config, the pre-trained model.pt or None): ``init_from`` overrides ``finetune.pretrained_run``,
    and the config records the resolved path, so config.json says what the run started from."""
    init = init_from if init_from is not None else config.finetune.pretrained_run
    if init is None:
        return config, None
    path = resolve_model_path(init).resolve()
    return config.replace(finetune={**config.finetune.to_dict(), "pretrained_run": str(path)}), path


def trainable_model(config: RunConfig, model: nn.Module, scaler: Any) -> nn.Module:
    """What trains: the classifier itself, or (with [ssl]) its encoder inside the SSL objective."""
    if config.ssl is None:
        return model
    encoder = cast(EcgClassifier, model)
    return SslModel(encoder, config.ssl, fs=config.fs, crop_len=config.crop_len, unit=cast(float, scaler.std_))


class _RunData(NamedTuple):
    """The checked inputs of one run (rows of X, labels, ids, split rows, label names)."""

    X: RaggedSignals
    Y: np.ndarray
    record_ids: list[str]
    splits: dict[str, np.ndarray]
    label_names: list[str]
    left_out: dict[str, dict[str, int]] | None = None  # label_counts.json's dropped_unlabelled / fold_records


class _Run(NamedTuple):
    """What every step of one run reads and none changes: its resolved settings, its folder, its
    data and the device it runs on (passed as one, not as four parallel arguments)."""

    config: RunConfig
    run_dir: Path
    data: _RunData
    device: torch.device


def _train_and_write(
    run: _Run,
    model: nn.Module,
    stages: Any,
    scaler: Any,
    resuming: bool,
    progress: bool,
    ctx: Any,
    callbacks: Sequence[Callable[..., None]],
) -> tuple[Any, dict[str, float | None], dict[str, Path]]:
    """Fit, then (rank 0) predict and write the outputs, all inside the run's tracker, so that
    ``[tracking]`` closes the run as failed when either step fails."""
    config, run_dir, data = run.config, run.run_dir, run.data
    meta = _run_meta(config, data.X, data.record_ids, data.splits, data.label_names, scaler)
    trained = trainable_model(config, model, scaler)
    with tracking(config.tracking, run_dir, config.to_dict(), resuming=resuming, dist=ctx) as tracker:
        epoch_callbacks = [lambda row, _: tracker.log_epoch(row), *callbacks]  # after checkpoint + metrics line
        try:
            result = fit(
                trained,
                data.X,
                data.Y,
                data.splits["train"],
                data.splits["val"],
                config=config,
                stages=stages,
                scaler=scaler,
                run_dir=run_dir,
                resume=resuming,
                meta=meta,
                device=run.device,
                progress=progress,
                dist=ctx,
                callbacks=epoch_callbacks,
            )
        except ShortRecordError as exc:  # pragma: no cover - caught before training, with record ids
            raise DatasetError(str(exc)) from None

        def finish() -> tuple[dict[str, float | None], dict[str, Path]]:  # rank 0; the others wait
            known = {"val": result.final_val_probs}
            return _write_outputs(run, model, scaler, known=known)

        aucs, predictions = ctx.from_main(finish)
    return result, aucs, predictions


def _left_out(
    dropped_unlabelled: Mapping[str, int] | None, fold_records: Mapping[str, int] | None
) -> dict[str, dict[str, int]] | None:
    """``label_counts.json``'s ``dropped_unlabelled`` and ``fold_records``: per split, the records of
    its folds the data layer left out for having none of the task's labels, and its folds' records
    before that rule (None when the caller gave neither)."""
    if dropped_unlabelled is None and fold_records is None:
        return None
    given = {"dropped_unlabelled": dropped_unlabelled or {}, "fold_records": fold_records or {}}
    return {key: {str(k): int(v) for k, v in counts.items()} for key, counts in given.items()}


def train_run(
    config: RunConfig | Mapping[str, Any] | str | Path,
    X: np.ndarray | RaggedSignals,
    Y: np.ndarray,
    record_ids: Sequence[str],
    split_indices: Mapping[str, Sequence[int] | np.ndarray],
    label_names: Sequence[str],
    run_dir: str | Path,
    resume: bool = False,
    init_from: str | Path | None = None,
    *,
    lengths: np.ndarray | None = None,
    progress: bool = True,
    callbacks: Sequence[Callable[[dict[str, Any], nn.Module], None]] = (),
    dropped_unlabelled: Mapping[str, int] | None = None,
    fold_records: Mapping[str, int] | None = None,
) -> RunResult:
    """Train (or fine-tune, with ``init_from`` / ``finetune.pretrained_run``) and evaluate one model.

    The scaler is fitted on the training rows only; validation and test rows are only ever
    predicted. ``lengths`` (optional, per row of X) marks how many samples of each row are signal
    rather than padding (for a RaggedSignals: only the first ``lengths[i]`` samples are used).
    ``resume=True`` continues an interrupted run in ``run_dir`` and ends
    with the same weights as an uninterrupted one; without it an existing run is never overwritten.
    ``dropped_unlabelled`` / ``fold_records`` (see :class:`~ecg_transfer.datasets.task.TaskData`)
    are saved in ``label_counts.json``.
    """
    config = _as_config(config)
    run_dir = Path(run_dir)
    label_names = [str(l) for l in label_names]
    record_ids = [str(r) for r in record_ids]  # positional, even for a pandas Series
    X = _as_signals(X, lengths)
    splits = _check_inputs(X, Y, record_ids, split_indices, label_names)
    data = _RunData(X, Y, record_ids, splits, label_names, _left_out(dropped_unlabelled, fold_records))
    ctx = init_from_env(config.device, config.dist_backend)
    finishing, resuming, resumed_scaler = _existing_run(run_dir, resume, ctx)

    config, init = _with_init(config, init_from)
    check_policy(config, pretrained=init is not None)
    check_keep(config, len(splits.get("val", ())))
    stages = resolve_stages(config)
    if finishing:  # trained already: write what the run lacks from its model.pt
        return _finish_run(config, run_dir, data, ctx)

    device = ctx.device
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    with deterministic_kernels(config.deterministic, device):
        seed_everything(config.seed)
        # an [ssl] run has no labels: its head is a one-output placeholder that fine-tuning replaces
        model, pretrained = init_model(config, X.shape[1], Y.shape[1] if config.ssl is None else 1, init)
        _check_short_records(config, X, record_ids, splits)
        scaler = _run_scaler(config, X, splits["train"], resumed_scaler, pretrained, ctx)
        ranks = ctx.all_gather({"rank": ctx.rank, "host": socket.gethostname(), "device": str(device)})
        if ctx.is_main:
            _write_start(config, run_dir, resuming, environment_info(config, device, ranks, ctx.backend), data)
        result, aucs, predictions = _train_and_write(
            _Run(config, run_dir, data, device),
            model,
            stages,
            scaler,
            resuming,
            progress and ctx.is_main,
            ctx,
            callbacks,
        )

    return RunResult(
        run_dir=run_dir,
        config=config,
        history=result.history,
        val_macro_auc=aucs["val"],
        test_macro_auc=aucs["test"],
        model_path=run_dir / MODEL_FILE,
        predictions=predictions,
        resumed_from_epoch=result.resumed_from_epoch if resuming else None,
        world_size=ctx.world_size,
        kept_epoch=result.kept_epoch,
    )


def _write_start(config: RunConfig, run_dir: Path, resuming: bool, env: dict[str, Any], data: _RunData) -> None:
    """config.json, environment.json, splits.json, label_counts.json (rank 0)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if resuming:
        env_path = run_dir / "environment.json"
        previous = json.loads(env_path.read_text()) if env_path.exists() else {}
        previous.setdefault("resumed", []).append(env)
        atomic_write_json(env_path, previous)
        _write_label_counts(config, run_dir, data, only_if_missing=True)  # a run started before the file
        return
    save_config(config, run_dir / "config.json")
    atomic_write_json(run_dir / "environment.json", env)
    splits = data.splits
    atomic_write_json(run_dir / "splits.json", {k: [data.record_ids[i] for i in v] for k, v in splits.items()})
    _write_label_counts(config, run_dir, data)


def _write_label_counts(config: RunConfig, run_dir: Path, data: _RunData, only_if_missing: bool = False) -> None:
    """``label_counts.json`` of a supervised run (an ``[ssl]`` run reads no labels)."""
    path = run_dir / LABEL_COUNTS_FILE
    if config.ssl is None and not (only_if_missing and path.exists()):
        atomic_write_json(path, {**label_counts(data.Y, data.splits, data.label_names), **(data.left_out or {})})


def label_counts(Y: np.ndarray, splits: Mapping[str, np.ndarray], label_names: Sequence[str]) -> dict[str, Any]:
    """``{"labels": [...], "records": {split: n}, "positives": {split: [per label]}}``."""
    return {
        "labels": list(label_names),
        "records": {k: int(len(v)) for k, v in splits.items()},
        "positives": {
            k: [int(c) for c in np.asarray(Y[np.asarray(v, dtype=np.int64)]).sum(axis=0)] for k, v in splits.items()
        },
    }


def _write_outputs(
    run: _Run, model: nn.Module, scaler: GlobalStandardScaler, known: Mapping[str, np.ndarray | None] | None = None
) -> tuple[dict[str, float | None], dict[str, Path]]:
    """model.pt and the val/test predictions (rank 0). ``known``: probabilities already predicted
    with the kept weights (the validation of their epoch), used instead of predicting again."""
    config = run.config
    save_model_file(
        run.run_dir / MODEL_FILE,
        model,
        label_names=run.data.label_names,
        scaler=scaler,
        fs=config.fs,
        crop_len=config.crop_len,
        stride=config.stride,
        aggregate=config.aggregate,
        config=config.to_dict(),
    )
    return _write_predictions(run, model, scaler, known)


def _write_predictions(
    run: _Run, model: nn.Module, scaler: GlobalStandardScaler, known: Mapping[str, np.ndarray | None] | None = None
) -> tuple[dict[str, float | None], dict[str, Path]]:
    """predictions_val.csv and predictions_test.csv of the non-empty splits, and their macro AUCs
    (none for an [ssl] run: it predicts no labels)."""
    config, device = run.config, run.device
    data = run.data
    crop_len = config.crop_len
    aucs: dict[str, float | None] = {"val": None, "test": None}
    predictions: dict[str, Path] = {}
    if config.ssl is not None:
        return aucs, predictions
    for name in ("val", "test"):
        idx = data.splits[name]
        if not idx.size:
            continue
        probs = (known or {}).get(name)
        if probs is None:
            probs, _ = predict_records(
                model,
                data.X,
                idx,
                scaler=scaler,
                crop_len=crop_len,
                stride=config.stride,
                aggregate=config.aggregate,
                batch_size=config.batch_size,
                device=device,
                short=config.short_records,
                transform=input_transform(config.input, config.fs),
                precision=resolve_precision(config.precision, device),
            )
        y_true = np.asarray(data.Y[idx])
        ids = [str(data.record_ids[i]) for i in idx]
        predictions[name] = save_predictions(
            run.run_dir / f"predictions_{name}.csv", ids, data.label_names, y_true, probs
        )
        aucs[name] = macro_auc(y_true, probs)[0]
    return aucs, predictions


def is_ssl_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a self-supervised run (its config.json has an ``ssl`` table)."""
    try:
        return json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8")).get("ssl") is not None
    except (OSError, ValueError, AttributeError):
        return False


def missing_outputs(run_dir: str | Path) -> list[str]:
    """What :func:`train_run` writes that ``run_dir`` lacks: ``splits.json``, ``model.pt`` and the
    predictions of every non-empty split (an [ssl] run has none) -- empty when its training outputs
    are complete."""
    run_dir = Path(run_dir)
    try:
        splits = json.loads((run_dir / "splits.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ["splits.json", MODEL_FILE]
    predicted = [] if is_ssl_run(run_dir) else [s for s in ("val", "test") if splits.get(s)]
    names = [MODEL_FILE] + [f"predictions_{s}.csv" for s in predicted]
    return [n for n in names if not (run_dir / n).is_file()]


def _finish_run(config: RunConfig, run_dir: Path, data: _RunData, ctx: Any) -> RunResult:
    """``resume=True`` on a run that has its ``model.pt``: predict with it (a kill between
    ``model.pt`` and the predictions left them missing); nothing is trained. The model must be
    this run's: same defining settings, labels and splits, else :class:`ConfigError`."""
    from .modelfile import load_model_file

    def finish() -> tuple[dict[str, float | None], dict[str, Path]]:
        lm = load_model_file(run_dir / MODEL_FILE, map_location=ctx.device, encoder_ok=True)
        _check_same_run(config, run_dir, lm.config, lm.label_names, data.label_names, data.record_ids, data.splits)
        _write_label_counts(config, run_dir, data, only_if_missing=True)
        return _write_predictions(_Run(config, run_dir, data, ctx.device), lm.model, lm.scaler)

    aucs, predictions = ctx.from_main(finish)
    history = []
    if (run_dir / "metrics.jsonl").exists():
        history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return RunResult(
        run_dir=run_dir,
        config=config,
        history=history,
        val_macro_auc=aucs["val"],
        test_macro_auc=aucs["test"],
        model_path=run_dir / MODEL_FILE,
        predictions=predictions,
        resumed_from_epoch=len(history),
        world_size=ctx.world_size,
        kept_epoch=kept_epoch(history, config.keep),
    )


def changed_settings(saved_config: Mapping[str, Any], config: RunConfig) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (saved value, value in config)}`` for every defining setting in which a run's
    saved settings (its config.json or model.pt's config) differ from ``config``; the resumable keys
    (``RESUMABLE_KEYS``) are left out, and a key added to the settings after the run was written
    counts with its default (the run ran with it)."""
    current = json.loads(json.dumps(_meta_config(config), default=str))
    saved = {
        k: v for k, v in json.loads(json.dumps(dict(saved_config), default=str)).items() if k not in RESUMABLE_KEYS
    }
    defaults = json.loads(json.dumps(RunConfig().to_dict(), default=str))
    for key in current.keys() - saved.keys():
        if key in defaults:
            saved[key] = defaults[key]
    return {key: (value_at(saved, key), value_at(current, key)) for key in differing_settings(saved, current)}


def _check_same_run(
    config: RunConfig,
    run_dir: Path,
    saved_config: Mapping[str, Any],
    saved_labels: Sequence[str],
    label_names: Sequence[str],
    record_ids: Sequence[str],
    splits: Mapping[str, np.ndarray],
) -> None:
    from ..errors import ConfigError

    if list(saved_labels) != list(label_names):
        raise ConfigError(
            f"cannot finish {run_dir}: its model.pt predicts {list(saved_labels)}, the data has {list(label_names)}"
        )
    diff = list(changed_settings(saved_config, config))
    if diff:
        raise ConfigError(
            f"cannot finish {run_dir}: its model.pt was trained with different settings: {', '.join(diff)}"
        )
    split_ids = {k: [str(record_ids[i]) for i in v] for k, v in splits.items()}
    saved_splits = json.loads((run_dir / "splits.json").read_text()) if (run_dir / "splits.json").exists() else None
    if saved_splits is not None and saved_splits != split_ids:
        differ = [k for k in split_ids if saved_splits.get(k) != split_ids[k]]
        raise ConfigError(f"cannot finish {run_dir}: its splits.json lists other records for {differ} than the data")
