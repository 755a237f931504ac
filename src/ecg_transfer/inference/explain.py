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
    mixed, so there is no per-lead value. Only where that layer's last axis *is* time, locally: a
    time-domain run (``input = "time"``; a spectrum's last axis is frequency, an STFT's frames) of a
    convolutional body (convolutions, normalisation, pooling, activations; an LSTM's or S4's
    output at one step depends on the whole window). Anything else is refused: use ``ig``.

Memory is bounded by windows, not records: the network never sees more than ``window_batch``
(default :data:`WINDOW_BATCH`, predict's batch) windows in one forward and backward pass, however
long the record -- integrated gradients put ``window_batch // windows`` points of the path through
at once, and a record with more windows than that is taken in chunks whose activations are
recomputed for the backward pass (:func:`torch.utils.checkpoint.checkpoint`). An attribution that
is not finite is refused (:class:`AttributionError`), never written.

:func:`explain_record` returns the arrays (reusable, e.g. for the report's gallery);
:func:`write_explanation` writes a PNG of the leads with the attribution shaded on each trace and
the numbers as JSON; :func:`explain_inputs` is the loop over a run's input records that both
``ecg-transfer explain`` and :func:`ecg_transfer.explain` run.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path, atomic_write_json
from ..datasets.base import RecordProblem
from ..errors import ConfigError, EcgTransferError, RecordError
from .inputs import RawRecord, iter_inputs, unique_ids
from .predict import Predictor

if TYPE_CHECKING:
    from .export import WindowProbabilities

METHODS = ("ig", "gradcam")
DEFAULT_STEPS = 50
#: Most windows through the network in one forward and backward pass (predict's default batch).
WINDOW_BATCH = 128
#: Body layers whose output at a time step depends on a neighbourhood of the input in time only:
#: Grad-CAM's map over the last layer's time axis is a map over the window's time.
TIME_LOCAL_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.dropout._DropoutNd,
    nn.Identity,
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
)


class AttributionError(EcgTransferError, ValueError):
    """An attribution came out NaN or infinite: refused, so that no such number is written."""


class CaptumMissing(ConfigError, ImportError):
    """captum (the ``explain`` extra) is not installed: a ConfigError for the command line, an
    ImportError for a caller that treats it as an optional dependency (the study's gallery)."""


def n_windows(n_samples: int, crop_len: int, stride: int) -> int:
    """Whole windows of a record of ``n_samples`` (at least one), as evaluation places them
    (:func:`~ecg_transfer.training.windows.window_starts`)."""
    from ..training.windows import window_starts

    return len(window_starts(n_samples, crop_len, stride, short="pad"))


class RecordProbabilities(nn.Module):
    """Raw mV records ``(B, leads, T)`` -> record probabilities ``(B, K)``, the run's way (see module docstring).

    The windows go through the network ``window_batch`` at a time; with gradients on, each chunk is
    checkpointed, so a backward pass holds one chunk's activations, not the whole record's.
    """

    def __init__(
        self,
        window_probs: WindowProbabilities,
        crop_len: int,
        stride: int,
        aggregate: str,
        window_batch: int = WINDOW_BATCH,
    ):
        super().__init__()
        if aggregate not in ("max", "mean"):
            raise ConfigError(f"aggregate {aggregate!r} is not max or mean")
        if window_batch < 1:
            raise ConfigError(f"window_batch must be >= 1, got {window_batch}")
        self.window_probs, self.crop_len, self.stride, self.aggregate = window_probs, crop_len, stride, aggregate
        self.window_batch = int(window_batch)

    def windows(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B * W, C, crop_len)``: starts 0, stride, ... while a whole window fits."""
        w = x.unfold(-1, self.crop_len, self.stride)  # (B, C, W, crop)
        return w.permute(0, 2, 1, 3).reshape(-1, x.shape[1], self.crop_len)

    def n_windows(self, n_samples: int) -> int:
        """Whole windows in a record of ``n_samples`` (:func:`n_windows`)."""
        return n_windows(n_samples, self.crop_len, self.stride)

    def window_probabilities(self, w: torch.Tensor) -> torch.Tensor:
        """``(N, C, crop) -> (N, K)``, at most ``window_batch`` windows per network call."""
        if w.shape[0] <= self.window_batch:
            return self.window_probs(w)
        if not torch.is_grad_enabled():
            return torch.cat([self.window_probs(c) for c in w.split(self.window_batch)])
        from torch.utils.checkpoint import checkpoint

        return torch.cat([checkpoint(self.window_probs, c, use_reentrant=False) for c in w.split(self.window_batch)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.window_probabilities(self.windows(x)).reshape(x.shape[0], -1, self.n_labels)
        return p.amax(dim=1) if self.aggregate == "max" else p.mean(dim=1)

    def aggregation_weights(self, p: torch.Tensor) -> torch.Tensor:
        """``d record probability / d window probability`` for one record's window probabilities
        ``(W,)`` of a label: ``1/W`` each (mean), or shared by the windows at the maximum (max, as
        ``amax``'s gradient is)."""
        if self.aggregate == "mean":
            return torch.full_like(p, 1.0 / p.numel())
        top = (p == p.max()).to(p.dtype)
        return top / top.sum()

    @property
    def n_labels(self) -> int:
        return int(self.window_probs.model.spec["n_classes"])


def record_probability_module(loaded: Any, window_batch: int = WINDOW_BATCH) -> RecordProbabilities:
    """The run's record-level probability function of a loaded ``model.pt`` (eval mode, CPU)."""
    from .export import window_module

    return RecordProbabilities(
        window_module(loaded), loaded.crop_len, loaded.stride, loaded.aggregate, window_batch
    ).eval()


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
        """Each lead's share of the total ``|attribution|`` (sums to 1; all 0 when nothing is
        attributed); None for Grad-CAM. Refuses a non-finite attribution (no "share" above 1)."""
        if self.attribution.ndim != 2:
            return None
        self.check_finite()
        tot = np.abs(self.attribution).sum(axis=1)
        return tot / tot.sum() if tot.sum() > 0 else tot

    @property
    def per_lead_sum(self) -> np.ndarray | None:
        """Each lead's signed total (ig: the lead's part of ``p(x) - p(baseline)``); None for Grad-CAM."""
        return self.attribution.sum(axis=1) if self.attribution.ndim == 2 else None

    def check_finite(self) -> None:
        """Raise :class:`AttributionError` when the probability, an attribution or the
        convergence delta is NaN or infinite (JSON has no such numbers; a share would be wrong)."""
        bad = int((~np.isfinite(self.attribution)).sum())
        extra = [v for v in (self.probability, self.convergence_delta) if v is not None and not np.isfinite(v)]
        if bad or extra:
            raise AttributionError(
                f"{self.method} attributions of label {self.label} are not finite "
                f"({bad} of {self.attribution.size} values NaN or infinite"
                + (f"; probability {self.probability}, delta {self.convergence_delta}" if extra else "")
                + "); nothing is written for it"
            )


def require_captum() -> Any:
    """``captum.attr``; :class:`CaptumMissing` naming the extra to install when captum is not there."""
    try:
        import captum.attr as attr
    except ImportError:
        raise CaptumMissing("explanations need captum: pip install 'ecg-transfer[explain]'") from None
    return attr


def _label_indices(label_names: Sequence[str], labels: Sequence[str]) -> list[int]:
    unknown = [l for l in labels if l not in label_names]
    if unknown:
        raise ConfigError(
            f"unknown label(s) {', '.join(map(str, unknown))}; the model's labels: {', '.join(label_names)}"
        )
    return [list(label_names).index(l) for l in labels]


def _integrated_gradients(f: RecordProbabilities, x: torch.Tensor, k: int, steps: int) -> tuple[np.ndarray, float]:
    """Integrated gradients of one record ``(1, C, T)``, ``window_batch // windows`` path points
    (at least one) per forward and backward pass, so that a long record costs time, not memory."""
    ig = require_captum().IntegratedGradients(f)
    attr, delta = ig.attribute(
        x,
        baselines=torch.zeros_like(x),
        target=k,
        n_steps=steps,
        internal_batch_size=max(1, f.window_batch // f.n_windows(x.shape[-1])),
        return_convergence_delta=True,
    )
    return attr[0].detach().numpy(), float(delta.abs().max())


def gradcam_layer(loaded: Any) -> nn.Module:
    """The body's last layer, when Grad-CAM's map over its last axis is a map over time; else a
    ConfigError saying why and to use integrated gradients (see the module docstring)."""
    if loaded.input != "time":
        axis = "STFT frames of the whole window" if loaded.input == "stft" else "frequency bins"
        raise ConfigError(
            f"Grad-CAM maps the last layer's axis back onto time, but this run's input is {loaded.input!r}: "
            f"that axis is {axis}, not time. Use --method ig (integrated gradients), which attributes "
            "to the raw samples through the transform"
        )
    body = loaded.model.body
    other = sorted(
        {type(m).__name__ for m in body.modules() if not any(m.children()) and not isinstance(m, TIME_LOCAL_LAYERS)}
    )
    if other:
        raise ConfigError(
            f"Grad-CAM needs a convolutional body whose last layer keeps a local time axis; the "
            f"{loaded.spec.get('name', 'model')} body has {', '.join(other)} (an output step there depends "
            "on the whole window). Use --method ig (integrated gradients)"
        )
    return body[-1]


def _gradcam(f: RecordProbabilities, x: torch.Tensor, k: int, layer: nn.Module) -> np.ndarray:
    """Grad-CAM of ``layer`` per window, stretched to the window and added over windows.

    The record probability's gradient reaches window ``w``'s activations as ``weight_w * d p_w``
    (:meth:`RecordProbabilities.aggregation_weights`), and windows do not interact, so Grad-CAM of
    ``weight_w * p_w`` window chunk by window chunk is Grad-CAM of the record probability."""
    windows = f.windows(x)
    with torch.no_grad():
        weights = f.aggregation_weights(f.window_probabilities(windows)[:, k])
    cam_of = require_captum().LayerGradCam(lambda w, wt: f.window_probs(w) * wt[:, None], layer)
    out = np.zeros(x.shape[-1], dtype=np.float64)
    for start in range(0, windows.shape[0], f.window_batch):
        wt = weights[start : start + f.window_batch]
        if not bool((wt > 0).any()):  # windows the record probability does not depend on (max)
            continue
        cam = cam_of.attribute(
            windows[start : start + f.window_batch], target=k, additional_forward_args=(wt,), relu_attributions=True
        )
        if cam.dim() != 3:
            raise ConfigError(
                f"Grad-CAM needs a body whose last layer outputs (windows, channels, time); "
                f"got shape {tuple(cam.shape)}; use --method ig"
            )
        cam = torch.nn.functional.interpolate(cam.detach(), size=f.crop_len, mode="linear", align_corners=False)
        for j, row in enumerate(cam[:, 0].numpy()):
            s = (start + j) * f.stride
            out[s : s + f.crop_len] += row
    return out


def explain_record(
    model: Any,
    signal: np.ndarray,
    labels: Sequence[str] | None = None,
    *,
    method: str = "ig",
    steps: int = DEFAULT_STEPS,
    top: int = 3,
    window_batch: int = WINDOW_BATCH,
) -> list[Explanation]:
    """Attributions of one record for ``labels`` (default: its ``top`` most probable labels).

    ``model``: a run directory, its ``model.pt``, or a :class:`~ecg_transfer.training.modelfile.LoadedModel`.
    ``signal``: ``(leads, samples)`` mV at the model's rate, leads in its order, at least one window
    long (``Predictor.prepare`` makes a record so). Probabilities are uncalibrated. At most
    ``window_batch`` windows go through the network at once. Raises :class:`AttributionError`
    rather than return a non-finite attribution, and ConfigError for Grad-CAM where it has no
    meaning (:func:`gradcam_layer`).
    """
    from ..training.modelfile import LoadedModel, load_model_file

    if method not in METHODS:
        raise ConfigError(f"explanation method {method!r} is not allowed; allowed: {', '.join(METHODS)}")
    loaded = model if isinstance(model, LoadedModel) else load_model_file(model)
    layer = gradcam_layer(loaded) if method == "gradcam" else None
    x = np.asarray(signal, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != loaded.n_leads or x.shape[1] < loaded.crop_len:
        raise ValueError(
            f"signal must be ({loaded.n_leads}, >= {loaded.crop_len}) mV at {loaded.fs:g} Hz, got shape {x.shape}"
        )
    f = record_probability_module(loaded, window_batch)
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
        if layer is None:
            a, delta = _integrated_gradients(f, xt, k, steps)
        else:
            a = _gradcam(f, xt, k, layer)
        e = Explanation(loaded.label_names[k], float(probs[k]), method, a, delta)
        e.check_finite()
        out.append(e)
    return out


# ----- writing ----------------------------------------------------------------------------------


def _g(v: float) -> float:
    return float(f"{v:.6g}")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "record"


def file_stems(names: Sequence[str]) -> list[str]:
    """File-name stems for distinct ``names`` (record ids, labels): characters outside
    ``[A-Za-z0-9._-]`` become ``_``; where that, or letter case (case-insensitive file systems),
    would give distinct names one stem, each of them gets ``-`` and 8 hex digits of its SHA-1,
    so that no name's files are written over by another's."""
    safe = [_safe(str(n)) for n in names]
    owners: dict[str, set[str]] = {}
    for n, st in zip(names, safe):
        owners.setdefault(st.casefold(), set()).add(str(n))
    return [
        st if len(owners[st.casefold()]) == 1 else f"{st}-{hashlib.sha1(str(n).encode()).hexdigest()[:8]}"
        for n, st in zip(names, safe)
    ]


def explanation_context(loaded: Any, *, run_dir: str | Path | None = None, record_fs: float | None = None) -> dict:
    """What :func:`explanation_json` needs besides the numbers to say what they are: the run, its
    windows and input transform, and the rate the record came at (None: not known)."""
    return {
        "run_dir": None if run_dir is None else str(run_dir),
        "crop_len": int(loaded.crop_len),
        "stride": int(loaded.stride),
        "aggregate": str(loaded.aggregate),
        "input": str(loaded.input),
        "record_fs": None if record_fs is None else float(record_fs),
    }


def _meaning(method: str | None, fs: float, n_samples: int, context: Mapping[str, Any] | None) -> dict[str, Any]:
    """The JSON's description of its own numbers (units, axes, windows, rates, run)."""
    ig = method == "ig"
    d: dict[str, Any] = {
        "unit": (
            "attribution to the label's record probability (probability units; a label's attributions "
            "add up to p(record) - p(baseline) up to its convergence_delta; positive: evidence for the label)"
            if ig
            else "Grad-CAM map of the label's record probability (non-negative, relative: comparable "
            "along one map, not across labels or records)"
        ),
        "per_time_is": "sum over leads of |attribution| at each sample"
        if ig
        else "the Grad-CAM map at each sample, added over the windows covering it",
        "n_samples": int(n_samples),
        "indices": f"column i of attribution and per_time is sample i at fs = {fs:g} Hz (the model's rate), "
        "from the record's start",
    }
    if ig:
        d["per_lead_share_is"] = "a lead's sum of |attribution| over samples over that sum for all leads"
    if context is None:
        return d
    crop, stride = int(context["crop_len"]), int(context["stride"])
    count = n_windows(n_samples, crop, stride)
    seen = (count - 1) * stride + crop
    d["windows"] = {
        "crop_len": crop,
        "stride": stride,
        "aggregate": context["aggregate"],
        "count": count,
        "samples_seen": seen,
        "unseen": f"samples {seen} to {n_samples - 1} lie after the last whole window: the model never sees them "
        "and their attribution is 0"
        if seen < n_samples
        else "none: every sample lies in a window",
    }
    rfs = context.get("record_fs")
    d["record_fs"] = rfs
    d["resampled"] = (
        "not known" if rfs is None else "no" if float(rfs) == float(fs) else f"yes, from {rfs:g} Hz to {fs:g} Hz"
    )
    d["input"] = context.get("input")
    d["run_dir"] = context.get("run_dir")
    return d


def explanation_json(
    record_id: str,
    leads: Sequence[str],
    fs: float,
    explanations: Sequence[Explanation],
    context: Mapping[str, Any] | None = None,
) -> dict:
    """The numbers of a record's explanations (6 significant digits) and what they mean
    (``context``: :func:`explanation_context`). Raises :class:`AttributionError` on a non-finite
    number: JSON has no NaN, and a file must not hold one."""
    labels = {}
    for e in explanations:
        e.check_finite()
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
    n_samples = int(explanations[0].attribution.shape[-1]) if explanations else 0
    return {
        "record": record_id,
        "fs": fs,
        "leads": list(leads),
        "method": method,
        "attribution_shape": "leads x samples" if method == "ig" else "samples (all leads)",
        "baseline": "0 mV flat line" if method == "ig" else None,
        "probability": "the run's record probability (its windows and aggregation), uncalibrated",
        **_meaning(method, fs, n_samples, context),
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
    *,
    stem: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> list[Path]:
    """``OUT/<stem>.json`` (every label's numbers, :func:`explanation_json`) and
    ``OUT/<stem>__<label>.png`` per label; ``stem`` defaults to the record id made file-safe (a
    caller writing several records passes :func:`file_stems` of all their ids). Nothing is written
    when a number is not finite."""
    out_dir = Path(out_dir)
    stem = stem or file_stems([record_id])[0]
    numbers = explanation_json(record_id, leads, fs, explanations, context)  # refuses NaN before any file
    paths = []
    for e, label_stem in zip(explanations, file_stems([e.label for e in explanations])):
        how = (
            f"integrated gradients (baseline 0 mV, |delta| {e.convergence_delta:.2g})"
            if e.method == "ig"
            else "Grad-CAM (last body layer, over time)"
        )
        title = f"{record_id}: {e.label}, p = {e.probability:.3f}; {how}"
        paths.append(plot_explanation(out_dir / f"{stem}__{label_stem}.png", signal, fs, leads, e, title))
    json_path = out_dir / f"{stem}.json"
    atomic_write_json(json_path, numbers)
    return [json_path, *paths]


@dataclass
class Explained:
    """What :func:`explain_inputs` found: per record, one :class:`Explanation` per label; the records
    that could not be used, named with why; the files written (with ``out``)."""

    explanations: dict[str, list[Explanation]] = field(default_factory=dict)
    errors: list[RecordProblem] = field(default_factory=list)
    files: dict[str, list[Path]] = field(default_factory=dict)


def record_names(inputs: Sequence[str | Path], *, fs: float | None, n_leads: int) -> list[str]:
    """The ids of the readable records of ``inputs``, in reading order, made unique as predict
    makes them (:func:`~ecg_transfer.inference.inputs.unique_ids`: an id shared by several records
    becomes each one's path). A first pass over the inputs: arrays are memory-mapped, records read
    once more -- little beside the explanations' many forward and backward passes."""
    ids, sources = [], []
    for rec in iter_inputs(inputs, fs=fs, n_leads=n_leads):
        if isinstance(rec, RawRecord):
            ids.append(rec.record_id)
            sources.append(rec.source)
    return unique_ids(ids, sources)


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
    with the run in ``run_dir``; a record that cannot be read or used, or whose attributions are
    not finite, is kept in ``errors`` (and passed to ``on_error``) and the others go on. Records are
    named as predict names them (:func:`record_names`: two inputs' shared id becomes their paths),
    and each name gets its own files. ``out``: also write each record's JSON and PNGs.
    ``on_record(record_id, explanations, files)`` after each record: progress for a caller that
    prints as it goes (the CLI)."""
    if steps < 2 or top < 1:
        raise ConfigError(f"explain needs steps >= 2 and top >= 1 (got steps {steps}, top {top})")
    predictor = Predictor.from_run(run_dir, threshold=None)
    if method == "gradcam":
        gradcam_layer(predictor.loaded)  # refused before any record is read
    leads = predictor.leads or tuple(f"lead {i + 1}" for i in range(predictor.n_leads))
    names = record_names(inputs, fs=fs, n_leads=predictor.n_leads)
    stems = dict(zip(names, file_stems(names)))
    found = Explained()
    read = iter(names)
    for rec in iter_inputs(inputs, fs=fs, n_leads=predictor.n_leads):
        try:
            if isinstance(rec, RecordProblem):
                raise RecordError(rec.record, rec.problem)
            name = next(read)
            x = predictor.prepare(rec)
            explanations = explain_record(predictor.loaded, x, labels, method=method, steps=steps, top=top)
        except (RecordError, AttributionError) as exc:
            found.errors.append(
                RecordProblem(exc.record, exc.problem)
                if isinstance(exc, RecordError)
                else RecordProblem(name, str(exc))
            )
            if on_error is not None:
                on_error(found.errors[-1])
            continue
        found.explanations[name] = explanations
        if out is not None:
            context = explanation_context(predictor.loaded, run_dir=predictor.run_dir, record_fs=rec.fs)
            found.files[name] = write_explanation(
                out, name, x, predictor.fs, leads, explanations, stem=stems[name], context=context
            )
        if on_record is not None:
            on_record(name, explanations, found.files.get(name, []))
    return found


__all__ = [
    "DEFAULT_STEPS",
    "METHODS",
    "WINDOW_BATCH",
    "AttributionError",
    "CaptumMissing",
    "Explained",
    "Explanation",
    "RecordProbabilities",
    "explain_inputs",
    "explain_record",
    "explanation_context",
    "explanation_json",
    "file_stems",
    "gradcam_layer",
    "n_windows",
    "plot_explanation",
    "record_names",
    "record_probability_module",
    "require_captum",
    "write_explanation",
]
