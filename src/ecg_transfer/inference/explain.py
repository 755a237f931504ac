"""Why the model decided: per-lead and per-time attributions of a run's record probability.

What is explained is the number the run reports for a record -- not one window's output: the raw
millivolt record, standardised as in training, cut into the run's windows (crop and stride), each
window through the input transform and the network, sigmoid, and the windows aggregated as the run
aggregates (max or mean). :func:`record_probability_module` is that function in torch, so the
attribution of a sample covers every window the sample lies in, and samples after the last whole
window (which the model never sees) get none.

Methods (captum, the field's library for this; ``pip install 'ecg-transfer[explain]'``):

``ig`` (default), integrated gradients (Sundararajan et al. 2017)
    ``(x - x0) * mean over the straight path from x0 to x of the gradient``, with the baseline ``x0``
    a flat 0 mV line (no signal). Per lead and per sample, signed (positive: evidence for the
    label); they add up to ``p(x) - p(x0)`` up to the integral's discretisation error, which is
    reported (``convergence_delta``). Works for every model.
``gradcam``, Grad-CAM (Selvaraju et al. 2017) on the body's last layer
    The gradient-weighted, rectified feature map of the last body layer, stretched back to each
    window's samples and added over the windows. A map over time only: at that depth the leads are
    mixed, so there is no per-lead value. Meant for the convolutional models.

:func:`explain_record` returns the arrays (reusable, e.g. for the report's gallery);
:func:`write_explanation` writes a PNG of the leads with the attribution shaded on each trace and
the numbers as JSON; :func:`explain_inputs` is the loop over a run's input records that both
``ecg-transfer explain`` and :func:`ecg_transfer.explain` run.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path, atomic_write_json
from ..datasets.base import RecordProblem
from ..errors import ConfigError, RecordError
from .inputs import iter_inputs
from .predict import Predictor

if TYPE_CHECKING:
    from .export import WindowProbabilities

METHODS = ("ig", "gradcam")
DEFAULT_STEPS = 50


class RecordProbabilities(nn.Module):
    """Raw mV records ``(B, leads, T)`` -> record probabilities ``(B, K)``, the run's way (see module docstring)."""

    def __init__(self, window_probs: WindowProbabilities, crop_len: int, stride: int, aggregate: str):
        super().__init__()
        if aggregate not in ("max", "mean"):
            raise ConfigError(f"aggregate {aggregate!r} is not max or mean")
        self.window_probs, self.crop_len, self.stride, self.aggregate = window_probs, crop_len, stride, aggregate

    def windows(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B * W, C, crop_len)``: starts 0, stride, ... while a whole window fits."""
        w = x.unfold(-1, self.crop_len, self.stride)  # (B, C, W, crop)
        return w.permute(0, 2, 1, 3).reshape(-1, x.shape[1], self.crop_len)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.window_probs(self.windows(x)).reshape(x.shape[0], -1, self.n_labels)
        return p.amax(dim=1) if self.aggregate == "max" else p.mean(dim=1)

    @property
    def n_labels(self) -> int:
        return int(self.window_probs.model.spec["n_classes"])


def record_probability_module(loaded: Any) -> RecordProbabilities:
    """The run's record-level probability function of a loaded ``model.pt`` (eval mode, CPU)."""
    from .export import window_module

    return RecordProbabilities(window_module(loaded), loaded.crop_len, loaded.stride, loaded.aggregate).eval()


@dataclass
class Explanation:
    """One record and label: ``attribution`` is ``(leads, samples)`` (ig) or ``(samples,)`` (gradcam)."""

    label: str
    probability: float
    method: str
    attribution: np.ndarray
    convergence_delta: float | None = None

    @property
    def per_time(self) -> np.ndarray:
        """How much each sample mattered: ``sum over leads |attribution|`` (ig) or the Grad-CAM map."""
        a = self.attribution
        return np.abs(a).sum(axis=0) if a.ndim == 2 else a

    @property
    def per_lead_share(self) -> np.ndarray | None:
        """Each lead's share of the total ``|attribution|`` (sums to 1); None for Grad-CAM."""
        if self.attribution.ndim != 2:
            return None
        tot = np.abs(self.attribution).sum(axis=1)
        return tot / tot.sum() if tot.sum() > 0 else tot

    @property
    def per_lead_sum(self) -> np.ndarray | None:
        """Each lead's signed total (ig: the lead's part of ``p(x) - p(baseline)``); None for Grad-CAM."""
        return self.attribution.sum(axis=1) if self.attribution.ndim == 2 else None


def _captum():
    try:
        import captum.attr as attr
    except ImportError:
        raise ConfigError("explanations need captum: pip install 'ecg-transfer[explain]'") from None
    return attr


def _label_indices(label_names: Sequence[str], labels: Sequence[str]) -> list[int]:
    unknown = [l for l in labels if l not in label_names]
    if unknown:
        raise ConfigError(
            f"unknown label(s) {', '.join(map(str, unknown))}; the model's labels: {', '.join(label_names)}"
        )
    return [list(label_names).index(l) for l in labels]


def _integrated_gradients(f: RecordProbabilities, x: torch.Tensor, k: int, steps: int) -> tuple[np.ndarray, float]:
    ig = _captum().IntegratedGradients(f)
    attr, delta = ig.attribute(
        x,
        baselines=torch.zeros_like(x),
        target=k,
        n_steps=steps,
        internal_batch_size=max(1, steps // 5),
        return_convergence_delta=True,
    )
    return attr[0].detach().numpy(), float(delta.abs().max())


def _gradcam(f: RecordProbabilities, x: torch.Tensor, k: int) -> np.ndarray:
    """Grad-CAM of the body's last layer per window, stretched to the window and added over windows."""
    attr_mod = _captum()
    layer = f.window_probs.model.body[-1]
    cam = attr_mod.LayerGradCam(f, layer).attribute(x, target=k, relu_attributions=True)  # (W, 1, T')
    if cam.dim() != 3:
        raise ConfigError(
            f"Grad-CAM needs a body whose last layer outputs (windows, channels, time); "
            f"got shape {tuple(cam.shape)}; use --method ig"
        )
    cam = torch.nn.functional.interpolate(cam.detach(), size=f.crop_len, mode="linear", align_corners=False)
    out = np.zeros(x.shape[-1], dtype=np.float64)
    for w, row in enumerate(cam[:, 0].numpy()):
        out[w * f.stride : w * f.stride + f.crop_len] += row
    return out


def explain_record(
    model: Any,
    signal: np.ndarray,
    labels: Sequence[str] | None = None,
    *,
    method: str = "ig",
    steps: int = DEFAULT_STEPS,
    top: int = 3,
) -> list[Explanation]:
    """Attributions of one record for ``labels`` (default: its ``top`` most probable labels).

    ``model``: a run directory, its ``model.pt``, or a :class:`~ecg_transfer.training.modelfile.LoadedModel`.
    ``signal``: ``(leads, samples)`` mV at the model's rate, leads in its order, at least one window
    long (``Predictor.prepare`` makes a record so). Probabilities are uncalibrated.
    """
    from ..training.modelfile import LoadedModel, load_model_file

    if method not in METHODS:
        raise ConfigError(f"explanation method {method!r} is not allowed; allowed: {', '.join(METHODS)}")
    loaded = model if isinstance(model, LoadedModel) else load_model_file(model)
    x = np.asarray(signal, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != loaded.n_leads or x.shape[1] < loaded.crop_len:
        raise ValueError(
            f"signal must be ({loaded.n_leads}, >= {loaded.crop_len}) mV at {loaded.fs:g} Hz, got shape {x.shape}"
        )
    f = record_probability_module(loaded)
    xt = torch.from_numpy(np.ascontiguousarray(x))[None]
    with torch.no_grad():
        probs = f(xt)[0].numpy()
    idx = (
        _label_indices(loaded.label_names, labels)
        if labels
        else [int(i) for i in np.argsort(-probs, kind="stable")[:top]]
    )
    out = []
    for k in idx:
        delta = None
        if method == "ig":
            a, delta = _integrated_gradients(f, xt, k, steps)
        else:
            a = _gradcam(f, xt, k)
        out.append(Explanation(loaded.label_names[k], float(probs[k]), method, a, delta))
    return out


# ----- writing ----------------------------------------------------------------------------------


def _g(v: float) -> float:
    return float(f"{v:.6g}")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "record"


def explanation_json(record_id: str, leads: Sequence[str], fs: float, explanations: Sequence[Explanation]) -> dict:
    """The numbers of a record's explanations (6 significant digits)."""
    labels = {}
    for e in explanations:
        d: dict[str, Any] = {"probability": _g(e.probability), "per_time": [_g(v) for v in e.per_time]}
        share, total = e.per_lead_share, e.per_lead_sum
        if share is not None and total is not None:
            d["per_lead_share"] = {l: _g(v) for l, v in zip(leads, share)}
            d["per_lead_sum"] = {l: _g(v) for l, v in zip(leads, total)}
            d["attribution"] = [[_g(v) for v in row] for row in e.attribution]
        if e.convergence_delta is not None:
            d["convergence_delta"] = _g(e.convergence_delta)
        labels[e.label] = d
    method = explanations[0].method if explanations else None
    return {
        "record": record_id,
        "fs": fs,
        "leads": list(leads),
        "method": method,
        "attribution_shape": "leads x samples" if method == "ig" else "samples (all leads)",
        "baseline": "0 mV flat line" if method == "ig" else None,
        "probability": "the run's record probability (its windows and aggregation), uncalibrated",
        "labels": labels,
    }


def plot_explanation(
    path: str | Path, signal: np.ndarray, fs: float, leads: Sequence[str], e: Explanation, title: str
) -> Path:
    """A PNG of every lead with the attribution shaded behind its trace (red for, blue against the label;
    one colour scale for all leads)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, T = signal.shape
    a = e.attribution if e.attribution.ndim == 2 else np.broadcast_to(e.attribution, (n, T))
    vmax = float(np.abs(a).max()) or 1.0
    signed = bool((a < 0).any())
    fig, axes = plt.subplots(n, 1, figsize=(11, 0.75 * n + 0.9), sharex=True, squeeze=False)
    t_end = T / fs
    share = e.per_lead_share
    for i, ax in enumerate(axes[:, 0]):
        lo, hi = float(signal[i].min()), float(signal[i].max())
        pad = 0.1 * (hi - lo) + 1e-3
        ax.imshow(
            a[i][None, :],
            aspect="auto",
            extent=(0, t_end, lo - pad, hi + pad),
            origin="lower",
            cmap="RdBu_r" if signed else "Reds",
            vmin=-vmax if signed else 0,
            vmax=vmax,
            alpha=0.75,
            interpolation="nearest",
        )
        ax.plot(np.arange(T) / fs, signal[i], color="k", lw=0.6)
        ax.set_ylim(lo - pad, hi + pad)
        name = leads[i] if i < len(leads) else str(i)
        ax.set_ylabel(
            name + (f"\n{100 * share[i]:.0f}%" if share is not None else ""),
            fontsize=7,
            rotation=0,
            ha="right",
            va="center",
        )
        ax.tick_params(labelsize=6, length=2)
        ax.set_yticks([])
    axes[-1, 0].set_xlabel("time (s)", fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.97), h_pad=0.1)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def write_explanation(
    out_dir: str | Path,
    record_id: str,
    signal: np.ndarray,
    fs: float,
    leads: Sequence[str],
    explanations: Sequence[Explanation],
) -> list[Path]:
    """``OUT/<record>.json`` (every label's numbers) and ``OUT/<record>__<label>.png`` per label."""
    out_dir = Path(out_dir)
    stem = _safe(record_id)
    paths = []
    for e in explanations:
        how = (
            f"integrated gradients (baseline 0 mV, |delta| {e.convergence_delta:.2g})"
            if e.method == "ig"
            else "Grad-CAM (last body layer, over time)"
        )
        title = f"{record_id}: {e.label}, p = {e.probability:.3f}; {how}"
        paths.append(plot_explanation(out_dir / f"{stem}__{_safe(e.label)}.png", signal, fs, leads, e, title))
    json_path = out_dir / f"{stem}.json"
    atomic_write_json(json_path, explanation_json(record_id, leads, fs, explanations))
    return [json_path, *paths]


@dataclass
class Explained:
    """What :func:`explain_inputs` found: per record, one :class:`Explanation` per label; the records
    that could not be used, named with why; the files written (with ``out``)."""

    explanations: dict[str, list[Explanation]] = field(default_factory=dict)
    errors: list[RecordProblem] = field(default_factory=list)
    files: dict[str, list[Path]] = field(default_factory=dict)


def explain_inputs(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    *,
    labels: Sequence[str] | None = None,
    method: str = "ig",
    steps: int = DEFAULT_STEPS,
    top: int = 3,
    fs: float | None = None,
    out: str | Path | None = None,
    on_error: Callable[[RecordProblem], None] | None = None,
    on_record: Callable[[str, list[Explanation], list[Path]], None] | None = None,
) -> Explained:
    """Explain every record of ``inputs`` (files or folders, as ``ecg-transfer predict`` reads them)
    with the run in ``run_dir``; a record that cannot be read or used is kept in ``errors`` (and
    passed to ``on_error``) and the others go on. ``out``: also write each record's JSON and PNGs.
    ``on_record(record_id, explanations, files)`` after each record: progress for a caller that
    prints as it goes (the CLI)."""
    if steps < 2 or top < 1:
        raise ConfigError(f"explain needs steps >= 2 and top >= 1 (got steps {steps}, top {top})")
    predictor = Predictor.from_run(run_dir, threshold=None)
    leads = predictor.leads or tuple(f"lead {i + 1}" for i in range(predictor.n_leads))
    found = Explained()
    for rec in iter_inputs(inputs, fs=fs, n_leads=predictor.n_leads):
        try:
            if isinstance(rec, RecordProblem):
                raise RecordError(rec.record, rec.problem)
            x = predictor.prepare(rec)
        except RecordError as exc:
            found.errors.append(RecordProblem(exc.record, exc.problem))
            if on_error is not None:
                on_error(found.errors[-1])
            continue
        explanations = explain_record(predictor.loaded, x, labels, method=method, steps=steps, top=top)
        found.explanations[rec.record_id] = explanations
        if out is not None:
            found.files[rec.record_id] = write_explanation(out, rec.record_id, x, predictor.fs, leads, explanations)
        if on_record is not None:
            on_record(rec.record_id, explanations, found.files.get(rec.record_id, []))
    return found


__all__ = [
    "DEFAULT_STEPS",
    "METHODS",
    "Explained",
    "Explanation",
    "RecordProbabilities",
    "explain_inputs",
    "explain_record",
    "explanation_json",
    "plot_explanation",
    "record_probability_module",
    "write_explanation",
]
