"""ECG augmentations for contrastive pre-training: each turns a batch of crops into another view.

Every function takes a standardised batch ``(B, leads, T)`` (what the network sees) and returns a
new tensor of the same shape; each record of the batch draws its own random parameters.
Amplitudes are given in mV and divided by ``unit`` (mV per standardised unit: the run's global
standard deviation, see :class:`~ecg_transfer.training.scaler.GlobalStandardScaler`), so
"0.05 mV of hum" means the same on every data set. The set follows Mehari & Strodthoff (2022,
"Self-supervised representation learning from 12-lead ECG data", appendix), whose best SimCLR
pair was random resized crop + time-out:

``random-resized-crop``
    keep a random share ``s ~ U[low, high]`` of the crop, at a random place, and stretch it back to
    ``T`` samples (linear interpolation): the view sees a shorter stretch, slowed down.
``time-out``
    zero a random contiguous share ``U[low, high]`` of the crop in every lead (a lost contact).
``baseline-wander``
    add a slow sinusoid per lead (0.05-0.5 Hz, the range of respiration and electrode drift),
    amplitude ``U[0, max]`` mV, random phase.
``gaussian-noise``
    add white noise of the given standard deviation in mV (muscle / amplifier noise).
``powerline-noise``
    add a 50 or 60 Hz hum (mains in Europe / America), amplitude ``U[0, max]`` mV per lead, one
    phase per record; at rates of 100-120 Hz it is sampled as it is (at or aliased below Nyquist),
    as a digitised record without a notch filter would show it.
``lead-dropout``
    zero each lead with probability ``p`` (a lead not recorded); at least one lead is kept.

Randomness: the global torch generator on the CPU (then moved to the batch's device), so a
training checkpoint, which stores that generator's state, resumes with the very same views, and
under several processes every rank draws its own (``DistContext.seed_dropout``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

#: Baseline wander frequencies, Hz.
WANDER_HZ = (0.05, 0.5)
#: Mains frequencies, Hz.
MAINS_HZ = (50.0, 60.0)


def _uniform(n: int | tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, dtype=torch.float32)


def random_resized_crop(x: torch.Tensor, scale: Sequence[float]) -> torch.Tensor:
    """Keep ``U[scale]`` of each crop at a random place and stretch it back to ``T`` samples."""
    b, c, t = x.shape
    share = _uniform(b, float(scale[0]), float(scale[1]))
    span = share * (t - 1)  # the kept stretch, in sample steps
    start = torch.rand(b) * (t - 1 - span)
    pos = (start[:, None] + span[:, None] * torch.linspace(0, 1, t)[None, :]).to(x.device)
    lo = pos.floor().long().clamp(0, t - 1)
    hi = (lo + 1).clamp(max=t - 1)
    w = (pos - lo).to(x.dtype)[:, None, :]
    take = lambda idx: x.gather(2, idx[:, None, :].expand(b, c, t))  # noqa: E731
    return take(lo) * (1 - w) + take(hi) * w


def time_out(x: torch.Tensor, share: Sequence[float]) -> torch.Tensor:
    """Zero a contiguous ``U[share]`` of each crop, in every lead."""
    b, _, t = x.shape
    n = (_uniform(b, float(share[0]), float(share[1])) * t).round().long()
    start = (torch.rand(b) * (t - n + 1)).floor().long()
    i = torch.arange(t)[None, :]
    keep = ~((i >= start[:, None]) & (i < (start + n)[:, None]))
    return x * keep[:, None, :].to(x.device, x.dtype)


def baseline_wander(x: torch.Tensor, max_mv: float, fs: float, unit: float) -> torch.Tensor:
    """Add a 0.05-0.5 Hz sinusoid per lead, amplitude ``U[0, max_mv]`` mV, random phase."""
    b, c, t = x.shape
    freq = _uniform((b, 1, 1), *WANDER_HZ)
    amp = _uniform((b, c, 1), 0.0, max_mv / unit)
    phase = _uniform((b, c, 1), 0.0, 2 * math.pi)
    time = torch.arange(t, dtype=torch.float32)[None, None, :] / fs
    return x + (amp * torch.sin(2 * math.pi * freq * time + phase)).to(x.device, x.dtype)


def gaussian_noise(x: torch.Tensor, std_mv: float, unit: float) -> torch.Tensor:
    """Add white noise with standard deviation ``std_mv`` mV."""
    return x + (torch.randn(x.shape) * (std_mv / unit)).to(x.device, x.dtype)


def powerline_noise(x: torch.Tensor, max_mv: float, fs: float, unit: float) -> torch.Tensor:
    """Add a 50 or 60 Hz hum per record (one phase), amplitude ``U[0, max_mv]`` mV per lead."""
    b, c, t = x.shape
    freq = torch.tensor(MAINS_HZ)[torch.randint(len(MAINS_HZ), (b,))][:, None, None]
    amp = _uniform((b, c, 1), 0.0, max_mv / unit)
    phase = _uniform((b, 1, 1), 0.0, 2 * math.pi)
    time = torch.arange(t, dtype=torch.float32)[None, None, :] / fs
    return x + (amp * torch.sin(2 * math.pi * freq * time + phase)).to(x.device, x.dtype)


def lead_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Zero each lead with probability ``p``; a record that would lose every lead keeps one."""
    b, c, _ = x.shape
    keep = torch.rand(b, c) >= p
    lost = ~keep.any(dim=1)
    if lost.any():
        keep[lost, torch.randint(c, (int(lost.sum()),))] = True
    return x * keep[:, :, None].to(x.device, x.dtype)


def make_augmenter(ssl: Any, fs: float, unit: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """The ``[ssl]`` table's augmentations, in its order, as one function of a batch.

    ``ssl`` is a resolved :class:`~ecg_transfer.settings.run.SslConfig` (contrastive), ``fs`` the
    rate in Hz, ``unit`` mV per standardised unit.
    """
    if unit <= 0:
        raise ValueError(f"unit (mV per standardised unit) must be > 0, got {unit}")
    steps: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "random-resized-crop": lambda x: random_resized_crop(x, ssl.crop_scale),
        "time-out": lambda x: time_out(x, ssl.time_out),
        "baseline-wander": lambda x: baseline_wander(x, ssl.baseline_wander_mv, fs, unit),
        "gaussian-noise": lambda x: gaussian_noise(x, ssl.gaussian_noise_mv, unit),
        "powerline-noise": lambda x: powerline_noise(x, ssl.powerline_noise_mv, fs, unit),
        "lead-dropout": lambda x: lead_dropout(x, ssl.lead_dropout),
    }
    chosen = [steps[name] for name in ssl.augmentations]

    def augment(x: torch.Tensor) -> torch.Tensor:
        for step in chosen:
            x = step(x)
        return x

    return augment


__all__ = [
    "MAINS_HZ",
    "WANDER_HZ",
    "baseline_wander",
    "gaussian_noise",
    "lead_dropout",
    "make_augmenter",
    "powerline_noise",
    "random_resized_crop",
    "time_out",
]
