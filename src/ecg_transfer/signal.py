"""Signal transforms shared by the cache, training and prediction.

Resampling goes through :func:`scipy.signal.resample_poly` (polyphase, anti-aliased FIR): the
original study's 100 Hz conversion mis-ordered records and its down-sampling was not anti-aliased,
so every rate change in this package goes through this one function.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly


def resample_ratio(fs_in: float, fs_out: float) -> tuple[int, int]:
    """Return (up, down), the smallest integers with fs_in * up / down == fs_out."""
    if fs_in <= 0 or fs_out <= 0:
        raise ValueError(f"sampling rates must be positive, got {fs_in} -> {fs_out}")
    ratio = Fraction(str(fs_out)) / Fraction(str(fs_in))
    if ratio.denominator > 10_000 or ratio.numerator > 10_000:
        raise ValueError(f"cannot resample {fs_in} Hz -> {fs_out} Hz with a small rational ratio")
    return ratio.numerator, ratio.denominator


def resample(x: np.ndarray, fs_in: float, fs_out: float, axis: int = -1) -> np.ndarray:
    """Resample ``x`` along ``axis`` from ``fs_in`` to ``fs_out`` Hz (polyphase, anti-aliased).

    Works on a batch at once (any leading axes), which is how the cache calls it. The output length
    is ``ceil(n * up / down)``; for whole seconds of signal that is exactly ``seconds * fs_out``.
    """
    up, down = resample_ratio(fs_in, fs_out)
    if up == down:
        return x
    return resample_poly(x, up, down, axis=axis)


def resampled_length(n_samples: int, fs_in: float, fs_out: float) -> int:
    up, down = resample_ratio(fs_in, fs_out)
    return -(-n_samples * up // down)


def fit_length(x: np.ndarray, n_samples: int, axis: int = -1) -> tuple[np.ndarray, int]:
    """Crop or zero-pad ``x`` along ``axis`` to ``n_samples``; also return how many samples are real.

    Records in CinC sets differ in length; the cache stores a fixed length and keeps the count of
    real samples so crops can avoid the padding.
    """
    n = x.shape[axis]
    if n >= n_samples:
        return np.take(x, np.arange(n_samples), axis=axis), n_samples
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, n_samples - n)
    return np.pad(x, pad), n
