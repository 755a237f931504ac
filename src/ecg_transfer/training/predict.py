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
from .scaler import GlobalStandardScaler
from .windows import aggregate_windows, sliding_windows



@torch.no_grad()
def predict_records(
    model: nn.Module,
    X: np.ndarray,
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
) -> tuple[np.ndarray, float | None]:
    """Probabilities ``(len(indices), K)`` float32, plus the mean per-window BCE loss when ``Y`` is given.

    The loss is computed on windows against their record's labels -- the quantity training
    minimises -- while the probabilities are aggregated per record. The model is put in eval mode.
    A DistributedDataParallel wrapper is looked through: prediction runs on one rank, and the
    wrapper's forward would start collectives the other ranks never join.

    ``transform`` (the run's :func:`ecg_transfer.signal.input_transform`; None: the samples) maps
    the standardised windows to what the network takes, window by window as in training.
    """
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    model.eval()
    device = torch.device(device)
    idx = np.asarray(indices, dtype=np.int64)
    probs_out: list[np.ndarray] = []
    loss_sum, loss_n = 0.0, 0
    T = X.shape[2]
    per_record = max(1, len(range(0, max(T - crop_len, 0) + 1, stride)))
    records_per_chunk = max(1, batch_size // per_record)
    for start in range(0, idx.size, records_per_chunk):
        rows = idx[start : start + records_per_chunk]
        windows, counts = sliding_windows(X, rows, crop_len, stride, lengths=lengths, short=short)
        windows = scaler.transform(windows)
        if transform is not None:
            windows = transform(windows)
        logits = []
        for w0 in range(0, len(windows), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(windows[w0 : w0 + batch_size])).to(device)
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
