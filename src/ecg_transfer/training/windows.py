"""Which part of each record the network sees: random crops for training, sliding windows for evaluation.

The benchmark trains on one random 2.5 s crop per record per epoch (a cheap augmentation that also
makes every model see fixed-length inputs) and evaluates on all 2.5 s windows at 1.25 s stride,
combining the per-window sigmoid outputs by their maximum: a finding present in one window is
present in the record. The original transfer study cropped only the centre; we do not.

Window starts follow the benchmark's convention: ``0, stride, 2*stride, ...`` while a full window
fits, so a tail shorter than a window is not covered (a 10 s record at 2.5 s / 1.25 s gives 7
windows). ``cover_end=True`` adds one window aligned to the end when the tail would be missed.

Records shorter than a window (``length < crop_len``) raise :class:`ShortRecordError` unless
``short="pad"``: then the record is used from its start and zero-padded (0 mV, a flat line, which
is also what the signal cache pads with) to ``crop_len``.

All randomness comes from a caller-owned ``torch.Generator`` so its state can be checkpointed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

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
            "set short_records = \"pad\" to zero-pad them"
        )


def random_crop_starts(
    lengths: Sequence[int] | np.ndarray,
    crop_len: int,
    generator: torch.Generator,
    short: str = "error",
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


def window_starts(
    length: int, crop_len: int, stride: int, short: str = "error", cover_end: bool = False
) -> np.ndarray:
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


def take_crop(record: np.ndarray, start: int, crop_len: int, length: int | None = None) -> np.ndarray:
    """``record[:, start:start+crop_len]`` as float32, zero-padded past ``length`` (or the array end)."""
    end_valid = record.shape[-1] if length is None else min(int(length), record.shape[-1])
    stop = min(start + crop_len, end_valid)
    out = np.zeros((record.shape[0], crop_len), dtype=np.float32)
    if stop > start:
        out[:, : stop - start] = record[:, start:stop]
    return out


def extract_crops(
    X: np.ndarray,
    rows: np.ndarray,
    starts: np.ndarray,
    crop_len: int,
    lengths: np.ndarray | None = None,
) -> np.ndarray:
    """Crops ``(len(rows), C, crop_len)`` float32; reads only the needed slice of each row of ``X``.

    Slicing row by row keeps memmap reads to ``crop_len`` samples per lead instead of whole records.
    """
    out = np.zeros((len(rows), X.shape[1], crop_len), dtype=np.float32)
    T = X.shape[2]
    for j, (r, s) in enumerate(zip(rows, starts)):
        valid = T if lengths is None else min(int(lengths[r]), T)
        stop = min(int(s) + crop_len, valid)
        if stop > s:
            out[j, :, : stop - s] = X[int(r), :, int(s) : stop]
    return out


def sliding_windows(
    X: np.ndarray,
    rows: np.ndarray,
    crop_len: int,
    stride: int,
    lengths: np.ndarray | None = None,
    short: str = "error",
    cover_end: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """All evaluation windows of ``rows``, grouped by record: ``(windows (W, C, L), counts (len(rows),))``."""
    T = X.shape[2]
    block = np.asarray(X[np.asarray(rows, dtype=np.int64)], dtype=np.float32)
    pieces, counts = [], np.zeros(len(rows), dtype=np.int64)
    for j, r in enumerate(rows):
        valid = T if lengths is None else min(int(lengths[r]), T)
        starts = window_starts(valid, crop_len, stride, short=short, cover_end=cover_end)
        counts[j] = starts.size
        pieces.extend(take_crop(block[j], int(s), crop_len, valid) for s in starts)
    return np.stack(pieces), counts


def aggregate_windows(window_probs: np.ndarray, counts: Sequence[int], how: str = "max") -> np.ndarray:
    """Per-record outputs from per-window outputs (windows of a record are consecutive).

    ``max`` is the benchmark's choice; ``mean`` is the alternative its code offers.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() != len(window_probs) or (counts < 1).any():
        raise ValueError("counts must be >= 1 and sum to the number of windows")
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    if how == "max":
        return np.maximum.reduceat(window_probs, offsets, axis=0)
    if how == "mean":
        sums = np.add.reduceat(window_probs.astype(np.float64), offsets, axis=0)
        return (sums / counts[:, None]).astype(window_probs.dtype)
    raise ValueError(f"aggregate must be 'max' or 'mean', got {how!r}")
