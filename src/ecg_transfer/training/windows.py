"""Which part of each record the network sees: random crops for training, sliding windows for evaluation.

The benchmark trains on one random 2.5 s crop per record per epoch (a cheap augmentation that also
makes every model see fixed-length inputs) and evaluates on all 2.5 s windows at 1.25 s stride,
combining the per-window sigmoid outputs by their maximum: a finding present in one window is
present in the record. The original transfer study cropped only the centre; we do not.

Window starts follow the benchmark's convention: ``0, stride, 2*stride, ...`` while a full window
fits, so a tail shorter than a window is not covered (a 10 s record at 2.5 s / 1.25 s gives 7
windows). ``cover_end=True`` adds one window aligned to the end when the tail would be missed.

Records shorter than a window (``length < crop_len``) raise :class:`ShortRecordError` unless
``short="pad"``: then the record is used from its start and zero-padded (0 mV, a flat line) to
``crop_len``.

Records come as a :class:`~ecg_transfer.ragged.RaggedSignals` (each at its own length, e.g. from
the signal cache) or as a padded ``(N, C, T)`` array with valid lengths; a crop or window never
reads past a record's end (beyond it: zeros). How much of a long record is used (all of it, its
first or centre N seconds) is decided before, by the view the caller passes
(``[task] long_records`` / ``max_seconds``, see :mod:`ecg_transfer.datasets.task`).

All randomness comes from a caller-owned ``torch.Generator`` so its state can be checkpointed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..ragged import RaggedSignals, as_signals

SHORT_POLICIES = ("error", "pad")


class ShortRecordError(ValueError):
    """A record is shorter than one crop and ``short="error"``."""


def samples(seconds: float, fs: float) -> int:
    """``seconds * fs`` as an exact whole number of samples (2.5 s at 100 Hz -> 250)."""
    n = seconds * fs
    r = int(round(n))
    if r < 1 or abs(n - r) > 1e-6 * max(1.0, abs(n)):
        raise ValueError(f"{seconds} s at {fs} Hz is {n} samples, not a positive whole number")
    return r


def _check_short(lengths: np.ndarray, crop_len: int, short: str) -> None:
    if short not in SHORT_POLICIES:
        raise ValueError(f"short must be one of {SHORT_POLICIES}, got {short!r}")
    if short == "error" and lengths.size and int(lengths.min()) < crop_len:
        bad = np.flatnonzero(lengths < crop_len)
        raise ShortRecordError(
            f"{bad.size} record(s) shorter than one crop of {crop_len} samples "
            f"(positions {bad[:5].tolist()}, lengths {lengths[bad[:5]].tolist()}); "
            'set short_records = "pad" to zero-pad them'
        )


def random_crop_starts(
    lengths: Sequence[int] | np.ndarray, crop_len: int, generator: torch.Generator, short: str = "error"
) -> np.ndarray:
    """One uniformly random start in ``[0, length - crop_len]`` per record (0 for padded ones).

    Draws exactly one random number per record whatever the lengths, so the generator's stream
    does not depend on the data and a restored generator state replays the same crops.
    """
    lens = np.asarray(lengths, dtype=np.int64)
    _check_short(lens, crop_len, short)
    u = torch.rand(lens.size, generator=generator, dtype=torch.float64).numpy()
    span = np.maximum(lens - crop_len, 0) + 1  # number of valid starts
    return np.minimum((u * span).astype(np.int64), span - 1)


def window_starts(length: int, crop_len: int, stride: int, short: str = "error", cover_end: bool = False) -> np.ndarray:
    """Starts of the evaluation windows of one record of ``length`` samples."""
    if stride < 1 or crop_len < 1:
        raise ValueError(f"crop_len and stride must be >= 1, got {crop_len}, {stride}")
    _check_short(np.asarray([length]), crop_len, short)
    if length <= crop_len:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, length - crop_len + 1, stride, dtype=np.int64)
    if cover_end and starts[-1] + crop_len < length:
        starts = np.append(starts, length - crop_len)
    return starts


def extract_crops(
    X: np.ndarray | RaggedSignals,
    rows: np.ndarray,
    starts: np.ndarray,
    crop_len: int,
    lengths: np.ndarray | None = None,
) -> np.ndarray:
    """Crops ``(len(rows), C, crop_len)`` float32, zero-padded past each record's end.

    ``X`` is a :class:`~ecg_transfer.ragged.RaggedSignals` or a padded ``(N, C, T)`` array (with
    optional valid ``lengths`` per row). Only the needed slice of each record is read, so a
    memory-mapped cache is never loaded whole.
    """
    sig = as_signals(X, lengths)
    out = np.zeros((len(rows), sig.n_leads, crop_len), dtype=np.float32)
    for j, (r, s) in enumerate(zip(rows, starts)):
        rec = sig.record(int(r))
        stop = min(int(s) + crop_len, rec.shape[1])
        if stop > s:
            out[j, :, : stop - s] = rec[:, int(s) : stop]
    return out


def window_plan(
    X: np.ndarray | RaggedSignals,
    rows: np.ndarray,
    crop_len: int,
    stride: int,
    lengths: np.ndarray | None = None,
    short: str = "error",
    cover_end: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every evaluation window of ``rows`` as ``(row per window, start per window, windows per record)``.

    The windows themselves are cut later, a batch at a time (:func:`extract_crops`), so a
    30-minute record's 1,439 windows are never all in memory at once.
    """
    sig = as_signals(X, lengths)
    per = [window_starts(int(sig.lengths[int(r)]), crop_len, stride, short=short, cover_end=cover_end) for r in rows]
    counts = np.array([p.size for p in per], dtype=np.int64)
    win_rows = np.repeat(np.asarray(rows, dtype=np.int64), counts)
    win_starts = np.concatenate(per) if per else np.zeros(0, dtype=np.int64)
    return win_rows, win_starts, counts


def sliding_windows(
    X: np.ndarray | RaggedSignals,
    rows: np.ndarray,
    crop_len: int,
    stride: int,
    lengths: np.ndarray | None = None,
    short: str = "error",
    cover_end: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """All evaluation windows of ``rows``, grouped by record: ``(windows (W, C, L), counts (len(rows),))``."""
    sig = as_signals(X, lengths)
    win_rows, win_starts, counts = window_plan(sig, rows, crop_len, stride, short=short, cover_end=cover_end)
    return extract_crops(sig, win_rows, win_starts, crop_len), counts


def aggregate_windows(window_probs: np.ndarray, counts: Sequence[int] | np.ndarray, how: str = "max") -> np.ndarray:
    """Per-record outputs from per-window outputs (windows of a record are consecutive).

    ``max`` is the benchmark's choice; ``mean`` is the alternative its code offers.
    """
    n = np.asarray(counts, dtype=np.int64)
    if n.sum() != len(window_probs) or (n < 1).any():
        raise ValueError("counts must be >= 1 and sum to the number of windows")
    offsets = np.concatenate([[0], np.cumsum(n)[:-1]])
    if how == "max":
        return np.maximum.reduceat(window_probs, offsets, axis=0)
    if how == "mean":
        sums = np.add.reduceat(window_probs.astype(np.float64), offsets, axis=0)
        return (sums / n[:, None]).astype(window_probs.dtype)
    raise ValueError(f"aggregate must be 'max' or 'mean', got {how!r}")
