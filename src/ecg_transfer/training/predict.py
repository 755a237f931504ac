"""Record-level predictions: sliding windows through the network, aggregated per record.

The files they are saved in (``predictions_<split>.csv``) are described in
:mod:`ecg_transfer.predictions`, which reads and writes them without torch.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..predictions import PROB_PREFIX, TRUE_PREFIX, load_predictions, save_predictions  # noqa: F401 (re-exported)
from ..ragged import RaggedSignals, as_signals, chunk_by_size
from .scaler import GlobalStandardScaler
from .speed import autocast, to_device
from .windows import aggregate_windows, extract_crops, window_plan


@torch.no_grad()
def predict_records(
    model: nn.Module,
    X: np.ndarray | RaggedSignals,
    indices: Sequence[int] | np.ndarray,
    *,
    scaler: GlobalStandardScaler,
    crop_len: int,
    stride: int,
    aggregate: str = "max",
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    lengths: np.ndarray | None = None,
    short: str = "error",
    Y: np.ndarray | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    precision: str = "fp32",
) -> tuple[np.ndarray, float | None]:
    """Probabilities ``(len(indices), K)`` float32, plus the mean per-window BCE loss when ``Y`` is given.

    ``X``: a :class:`~ecg_transfer.ragged.RaggedSignals` or a padded ``(N, C, T)`` array with
    optional valid ``lengths``. Every window of a record is predicted (a 30-minute record at
    2.5 s / 1.25 s has 1,439: the cost of ~200 ten-second records; bound it with ``[task]
    max_seconds``). Records are taken in groups of at most ``batch_size`` windows and the
    windows cut one batch at a time, so memory stays at one batch whatever the record lengths.

    The loss is computed on windows against their record's labels -- the quantity training
    minimises -- while the probabilities are aggregated per record. The model is put in eval mode.
    A DistributedDataParallel wrapper is looked through: prediction runs on one rank, and the
    wrapper's forward would start collectives the other ranks never join.

    ``transform`` (the run's :func:`ecg_transfer.signal.input_transform`; None: the samples) maps
    the standardised windows to what the network takes, window by window as in training.
    ``precision`` (a resolved ``"fp32"`` / ``"bf16"``): the forward pass's, as the run trained.
    """
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    model.eval()
    device = torch.device(device)
    sig = as_signals(X, lengths)
    idx = np.asarray(indices, dtype=np.int64)
    probs_out: list[np.ndarray] = []
    loss_sum, loss_n = 0.0, 0
    win_rows, win_starts, per_record = window_plan(sig, idx, crop_len, stride, short=short)
    first_window = np.concatenate([[0], np.cumsum(per_record)])
    for group in chunk_by_size(per_record, batch_size):
        rows, counts = idx[group], per_record[group]
        logits = []
        for w0 in range(first_window[group.start], first_window[group.stop], batch_size):
            w1 = min(w0 + batch_size, first_window[group.stop])
            crops = extract_crops(sig, win_rows[w0:w1], win_starts[w0:w1], crop_len)
            windows = scaler.transform(crops)
            if transform is not None:
                windows = transform(windows)
            xb = to_device(np.ascontiguousarray(windows), device)
            with autocast(precision, device):
                logits.append(model(xb).float().cpu())
        logit = torch.cat(logits)
        if Y is not None:
            yw = torch.from_numpy(np.repeat(np.asarray(Y[rows], dtype=np.float32), counts, axis=0))
            loss_sum += float(nn.functional.binary_cross_entropy_with_logits(logit, yw, reduction="sum"))
            loss_n += yw.numel()
        probs_out.append(aggregate_windows(torch.sigmoid(logit).numpy(), counts, aggregate))
    if not probs_out:
        k = None if Y is None else Y.shape[1]
        return np.zeros((0, k or 0), dtype=np.float32), None
    probs = np.concatenate(probs_out).astype(np.float32, copy=False)
    return probs, (loss_sum / loss_n if loss_n else None)
