"""Signal transforms shared by the cache, training and prediction.

Resampling goes through :func:`scipy.signal.resample_poly` (polyphase, anti-aliased FIR): the
original study's 100 Hz conversion mis-ordered records and its down-sampling was not anti-aliased,
so every rate change in this package goes through this one function.

The network-input transforms (RunConfig ``input``: time, spectrum, log-spectrum, stft) live here
too, as numpy/scipy functions applied per window; see :func:`input_transform`.
"""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import Callable

import numpy as np
import scipy.fft
from scipy.signal import ShortTimeFFT, get_window, resample_poly

from .errors import ConfigError
from .settings.names import INPUT_KINDS, STFT_HOP_SECONDS, STFT_WINDOW_SECONDS


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


# ----- network inputs: per-window frequency-domain transforms --------------------------------
#
# Experiment 5 feeds the network a frequency-domain view of each window instead of the samples.
# The original study took an (unshifted) FFT of the *whole record* and then cut 2.5 s windows out
# of that spectrum, so a "window" was a band of frequencies of a 10 s record and the sliding
# evaluation windows slid along frequency. Here the transform is applied to each 2.5 s window
# after the global standardisation -- the random training crop and every sliding evaluation
# window alike -- so cropping, windowing, aggregation and the scaler are exactly those of the
# time-domain runs and only what the network sees of a window changes.

#: Added to magnitudes before the logarithm. Standardised windows have unit variance and both
#: transforms are energy-preserving (``norm="ortho"``; a unit-energy STFT window), so unit white
#: noise has E|X|^2 = 1 in every bin: 1e-3 is 60 dB below that. It bounds log(0) at log(1e-3) =
#: -6.9 (zero-padded windows, empty bins) and only avoids it: in 2,000 standardised PTB-XL 100 Hz
#: windows 0.2 % of spectrum bins are below 1e-3 (4 % below 1e-2; the 40-50 Hz band's median is
#: 0.03), so the log keeps the weak high-frequency content that is its reason to exist.
LOG_FLOOR = 1e-3
#: STFT window (periodic Hann) and hop, in seconds, rounded to whole samples. 0.2 s resolves
#: 5 Hz (bins at 0, 5, 10, ... Hz, so the 10 Hz of the synthetic tests is a bin centre) while
#: keeping a QRS complex (~0.1 s) within about one frame; the 0.05 s hop is 75 % overlap (the
#: usual choice for Hann). Both are whole samples at 100, 200, 500 and 1000 Hz.
# STFT_WINDOW_SECONDS / STFT_HOP_SECONDS: defined in settings.names (a crop shorter than the window
# is a settings error), imported above.

Transform = Callable[[np.ndarray], np.ndarray]


def _check_kind(kind: str) -> None:
    if kind not in INPUT_KINDS:
        raise ConfigError(f"config key 'input': {kind!r} is not allowed; allowed values: {', '.join(INPUT_KINDS)}")


def spectrum(x: np.ndarray) -> np.ndarray:
    """``|rfft(x)|`` along the last axis, ``norm="ortho"``: float32 ``(..., T) -> (..., T // 2 + 1)``.

    Bin ``k`` is ``k * fs / T`` Hz (0.4 Hz for a 2.5 s window). The magnitude discards phase, so a
    time shift of the window's content leaves it (nearly: exactly for a circular shift) unchanged
    -- the property the frequency-domain arm tests. ``ortho`` keeps the scale of the standardised
    input (Parseval), independent of the window length.
    """
    x = np.asarray(x, dtype=np.float32)
    return np.ascontiguousarray(np.abs(scipy.fft.rfft(x, axis=-1, norm="ortho")), dtype=np.float32)


def log_spectrum(x: np.ndarray) -> np.ndarray:
    """``log(|rfft(x, norm="ortho")| + LOG_FLOOR)``: the spectrum with its dynamic range compressed.

    ECG power falls by orders of magnitude from a few Hz to 40 Hz; the log lets high-frequency
    bins (QRS notching, noise) contribute on a comparable scale. See :data:`LOG_FLOOR`. The price:
    the log keeps each bin's periodogram scatter (~5.6 dB, whatever the level) and compresses a
    strong component's lead, so a narrow-band feature in broadband noise is harder to pick out than
    in :func:`spectrum` (on the synthetic 10 Hz-in-white-noise tests a tiny network does not learn it).
    """
    return np.log(spectrum(x) + np.float32(LOG_FLOOR)).astype(np.float32, copy=False)


def stft_geometry(fs: float) -> tuple[int, int]:
    """``(window, hop)`` in samples at ``fs``: :data:`STFT_WINDOW_SECONDS` and :data:`STFT_HOP_SECONDS`
    rounded to whole samples; a window of at least 4 and a hop of at least 1 sample."""
    nperseg, hop = int(round(STFT_WINDOW_SECONDS * fs)), int(round(STFT_HOP_SECONDS * fs))
    if nperseg < 4 or hop < 1:
        raise ConfigError(
            f"config key 'fs': {fs} Hz is too low for input='stft' (a {STFT_WINDOW_SECONDS} s window "
            f"is {STFT_WINDOW_SECONDS * fs:g} samples; needs at least 4)"
        )
    return nperseg, hop


def stft_bins(fs: float) -> int:
    """Frequency bins per lead of :func:`stft_spectrogram` (``window // 2 + 1``)."""
    return stft_geometry(fs)[0] // 2 + 1


def stft_frames(fs: float, n_samples: int) -> int:
    """Frames of :func:`stft_spectrogram` for ``n_samples``: every STFT window that fits entirely."""
    nperseg, hop = stft_geometry(fs)
    return (n_samples - nperseg) // hop + 1


@functools.lru_cache(maxsize=8)
def _short_time_fft(fs: float) -> ShortTimeFFT:
    nperseg, hop = stft_geometry(fs)
    win = get_window("hann", nperseg)  # periodic
    return ShortTimeFFT(win / np.sqrt(np.sum(win**2)), hop=hop, fs=fs, fft_mode="onesided", mfft=nperseg)


def stft_spectrogram(x: np.ndarray, fs: float) -> np.ndarray:
    """Log STFT magnitude per lead, laid out for a 1-D network: ``(B, C, T) -> (B, C * F, N)`` float32.

    :class:`scipy.signal.ShortTimeFFT` with a periodic Hann window of :data:`STFT_WINDOW_SECONDS`
    scaled to unit energy (``w / sqrt(sum w^2)``, the STFT's ``norm="ortho"``: unit white noise reads
    E|S|^2 = 1 per bin at any rate, as in :func:`spectrum`, so :data:`LOG_FLOOR` means the same in
    both), hop :data:`STFT_HOP_SECONDS` (see :func:`stft_geometry`), FFT length = window (``F =
    window // 2 + 1`` bins, ``fs / window`` Hz apart). Frames are the STFT windows that lie entirely inside
    the (2.5 s) input window -- starting at samples ``0, hop, 2 hop, ...``, ``N = (T - window) // hop
    + 1`` -- with no zero padding, so no frame sees an artificial edge (the same frames as
    ``scipy.signal.stft(..., boundary=None, padded=False)``). Then ``log(|S| + LOG_FLOOR)``. Channel
    ``c * F + f`` is lead ``c`` at bin ``f``: the network's convolutions run along time (frames) and
    mix leads and frequencies in their channels, the way a time-domain network mixes leads.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"expected windows (batch, leads, samples), got shape {x.shape}")
    B, C, T = x.shape
    sft = _short_time_fft(float(fs))
    # k_offset = the window's middle: slice p then spans samples [p * hop, p * hop + window)
    S = np.abs(sft.stft(x, p0=0, p1=stft_frames(fs, T), k_offset=sft.m_num_mid, axis=-1))  # (B, C, F, N)
    out = np.log(S + LOG_FLOOR).astype(np.float32)
    return np.ascontiguousarray(out.reshape(B, C * S.shape[2], S.shape[3]))


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def input_transform(kind: str, fs: float) -> Transform:
    """The per-window transform of RunConfig ``input``: float32 ``(B, C, T) -> (B, C', T')``.

    ``"time"`` returns its argument unchanged (the time-domain runs stay bit-for-bit what they
    were); ``"spectrum"`` :func:`spectrum`, ``"log-spectrum"`` :func:`log_spectrum`, ``"stft"``
    :func:`stft_spectrogram` at ``fs``. Applied after the global standardisation, to training crops
    and to sliding evaluation windows alike.
    """
    _check_kind(kind)
    if kind == "time":
        return _identity
    if kind == "spectrum":
        return spectrum
    if kind == "log-spectrum":
        return log_spectrum
    stft_geometry(fs)  # fail now, not at the first batch
    return functools.partial(stft_spectrogram, fs=float(fs))


def transformed_shape(kind: str, fs: float, channels: int, crop_len: int) -> tuple[int, int]:
    """``(C', T')`` that :func:`input_transform` makes of a ``(channels, crop_len)`` window.

    At 2.5 s and 12 leads: time (12, 250) / (12, 1250) at 100 / 500 Hz; spectrum and log-spectrum
    (12, 126) / (12, 626); stft (132, 47) / (612, 47).
    """
    _check_kind(kind)
    if kind == "time":
        return channels, crop_len
    if kind in ("spectrum", "log-spectrum"):
        return channels, crop_len // 2 + 1
    nperseg, _ = stft_geometry(fs)
    if crop_len < nperseg:
        raise ConfigError(
            f"config key 'crop_seconds': a {crop_len}-sample window is shorter than the "
            f"{nperseg}-sample STFT window of input='stft' ({STFT_WINDOW_SECONDS} s)"
        )
    return channels * stft_bins(fs), stft_frames(fs, crop_len)


def input_leads(kind: str, fs: float, network_channels: int) -> int:
    """Leads of the signal behind a network that takes ``network_channels`` channels of ``kind``."""
    _check_kind(kind)
    if kind != "stft":
        return network_channels
    f = stft_bins(fs)
    if network_channels % f:
        raise ConfigError(
            f"a network with {network_channels} input channels cannot take input='stft' at {fs:g} Hz "
            f"({f} bins per lead)"
        )
    return network_channels // f


def describe_input(kind: str, fs: float) -> str:
    """One line for model cards and export metadata: what the network sees of a window."""
    _check_kind(kind)
    if kind == "time":
        return "the standardised samples of each window (time domain)"
    if kind == "spectrum":
        return "|rfft| of each standardised window per lead (norm='ortho')"
    if kind == "log-spectrum":
        return f"log(|rfft| + {LOG_FLOOR:g}) of each standardised window per lead (norm='ortho')"
    nperseg, hop = stft_geometry(fs)
    return (
        f"log(|STFT| + {LOG_FLOOR:g}) of each standardised window per lead: periodic Hann window of {nperseg} "
        f"samples ({nperseg / fs:g} s, unit energy), hop {hop} ({hop / fs:g} s), {stft_bins(fs)} bins per lead, channels "
        "lead-major (lead * bins + bin)"
    )
