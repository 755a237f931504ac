"""Bootstrap confidence intervals, the paired bootstrap of two arms, and summaries over seeds.

A single test-set number hides how much it would move on another draw of test records (the
original study's error 7), so every headline metric gets a 95 % percentile interval from records
resampled with replacement (1,000 resamples, seeded).

How it is made fast: a resample is a vector of counts (how often each record was drawn), and every
metric in :mod:`.metrics` takes such counts as record weights. All resamples are evaluated with a
few array passes per class (one sort per class, not one per resample): 1,000 resamples of macro
AUC, AUPRC, F-max, Brier, ECE and the challenge metric over ~2,200 records x 71 classes take
seconds. The same seed gives the same resamples for every metric and every run, which is what the
paired comparison needs: both arms are scored on the very same resampled records.

Classes with no positive record in a resample have no AUC/AUPRC in it and are left out of that
resample's macro mean (as the PTB-XL benchmark's bootstrap does); ``classes_used`` reports how many
classes entered the macro mean (min / mean over resamples). A resample where a metric is undefined
altogether (NaN) is dropped from its interval and counted in ``n_undefined``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from . import metrics as M
from .challenge import ChallengeMapping, challenge_terms, normalise

#: The headline metrics, in report order.
HEADLINE: tuple[str, ...] = ("macro_auc", "macro_auprc", "f_max", "brier", "ece", "ece_macro", "challenge")
#: Metrics where larger is better (the others are errors).
HIGHER_IS_BETTER = {"macro_auc": True, "macro_auprc": True, "f_max": True, "brier": False, "ece": False,
                    "ece_macro": False, "challenge": True}


def resample_counts(n_records: int, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """``(n_resamples, n_records)`` float64: how often each record is drawn in each resample."""
    if n_records < 1 or n_resamples < 1:
        raise ValueError("need at least one record and one resample")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_records, size=(n_resamples, n_records))
    flat = (idx + np.arange(n_resamples)[:, None] * n_records).ravel()
    return np.bincount(flat, minlength=n_resamples * n_records).reshape(n_resamples, n_records).astype(np.float64)


@dataclass
class MetricValues:
    """Metrics under each row of record weights: headline ``(B,)`` and per-class ``(B, K)`` arrays."""

    headline: dict[str, np.ndarray]
    per_class: dict[str, np.ndarray]
    classes_used: np.ndarray  # (B,) classes in the macro AUC
    fmax_threshold: np.ndarray  # (B,)


def metric_values(
    y_true: np.ndarray,
    probs: np.ndarray,
    W: np.ndarray | None = None,
    *,
    n_bins: int = 10,
    challenge: ChallengeMapping | None = None,
    threshold: float = 0.5,
    include: Sequence[str] = HEADLINE,
) -> MetricValues:
    """Every metric in ``include`` under record weights ``W`` (``None``: the plain test-set value)."""
    y, p = M.check_inputs(y_true, probs)
    W = M.as_weights(W, y.shape[0])
    head: dict[str, np.ndarray] = {}
    per: dict[str, np.ndarray] = {}
    used = np.zeros(W.shape[0], dtype=np.int64)
    at = np.full(W.shape[0], np.nan)
    if "macro_auc" in include:
        per["auc"] = M.roc_auc(y, p, W)
        head["macro_auc"], used = M.nanmean_rows(per["auc"])
    if "macro_auprc" in include:
        per["auprc"] = M.average_precision(y, p, W)
        head["macro_auprc"], _ = M.nanmean_rows(per["auprc"])
    if "f_max" in include:
        head["f_max"], at = M.f_max(y, p, W)
    if "brier" in include:
        per["brier"] = M.brier(y, p, W)
        head["brier"] = per["brier"].mean(axis=1)
    if "ece" in include or "ece_macro" in include:
        per["ece"], pooled = M.ece(y, p, W, n_bins=n_bins)
        head["ece"] = pooled
        head["ece_macro"] = per["ece"].mean(axis=1)
    if "challenge" in include and challenge is not None and challenge.classes:
        obs, cor, ina = challenge_terms(challenge, y, p, threshold)
        head["challenge"] = normalise(W @ obs, W @ cor, W @ ina)
    head = {k: v for k, v in head.items() if k in include}
    return MetricValues(head, per, used, at)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float | None, float | None, int]:
    """``(low, high, n_undefined)``: the percentile interval of the defined samples (NaN dropped)."""
    samples = np.asarray(samples, dtype=np.float64)
    ok = samples[~np.isnan(samples)]
    if ok.size == 0:
        return None, None, int(samples.size)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(ok, [a, 1.0 - a])
    return float(lo), float(hi), int(samples.size - ok.size)


def _num(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _interval(point: float, samples: np.ndarray, level: float) -> dict:
    lo, hi, undefined = percentile_ci(samples, level)
    return {"value": _num(point), "ci": [lo, hi], "n_undefined": undefined}


def bootstrap_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    n_bins: int = 10,
    challenge: ChallengeMapping | None = None,
    threshold: float = 0.5,
    include: Sequence[str] = HEADLINE,
    counts: np.ndarray | None = None,
) -> dict:
    """Point value and bootstrap CI of each headline metric, plus per-class AUC/AUPRC intervals.

    ``counts`` (from :func:`resample_counts`) may be passed to reuse resamples across calls.
    """
    y, p = M.check_inputs(y_true, probs)
    if counts is None:
        counts = resample_counts(y.shape[0], n_resamples, seed)
    point = metric_values(y, p, None, n_bins=n_bins, challenge=challenge, threshold=threshold, include=include)
    boot = metric_values(y, p, counts, n_bins=n_bins, challenge=challenge, threshold=threshold, include=include)
    out: dict = {"headline": {}, "per_class": {}}
    for name, samples in boot.headline.items():
        out["headline"][name] = _interval(point.headline[name][0], samples, level)
    if "macro_auc" in boot.headline:
        out["headline"]["macro_auc"]["classes_used"] = {
            "test_set": int(point.classes_used[0]), "resamples_min": int(boot.classes_used.min()),
            "resamples_mean": float(boot.classes_used.mean())}
    if "f_max" in boot.headline:
        out["headline"]["f_max"]["threshold"] = _num(point.fmax_threshold[0])
    for name in ("auc", "auprc"):
        if name in boot.per_class:
            out["per_class"][name] = [_interval(point.per_class[name][0, k], boot.per_class[name][:, k], level)
                                      for k in range(y.shape[1])]
    for name in ("brier", "ece"):
        if name in point.per_class:
            out["per_class"][name] = [_num(v) for v in point.per_class[name][0]]
    out["settings"] = {"n_resamples": int(counts.shape[0]), "seed": seed, "level": level, "n_bins": n_bins,
                       "threshold": threshold, "interval": "percentile"}
    return out


def bootstrap_p_value(diff_samples: np.ndarray) -> float | None:
    """Two-sided bootstrap p-value of "no difference": twice the smaller tail beyond 0, with the
    +1 correction ``(1 + count) / (1 + B)`` so it is never exactly 0; capped at 1."""
    d = np.asarray(diff_samples, dtype=np.float64)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return None
    lower = (1 + np.count_nonzero(d <= 0)) / (1 + d.size)
    upper = (1 + np.count_nonzero(d >= 0)) / (1 + d.size)
    return float(min(1.0, 2 * min(lower, upper)))


def _arm_values(y: np.ndarray, arm: Sequence[np.ndarray], W: np.ndarray | None, **kw) -> dict[str, np.ndarray]:
    """Headline metrics of an arm: the mean over its seeds' predictions, per row of ``W``."""
    per_seed = [metric_values(y, p, W, **kw).headline for p in arm]
    return {k: np.mean([s[k] for s in per_seed], axis=0) for k in per_seed[0]}


def paired_bootstrap(
    y_true: np.ndarray,
    arm_a: Sequence[np.ndarray],
    arm_b: Sequence[np.ndarray],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    n_bins: int = 10,
    challenge: ChallengeMapping | None = None,
    threshold: float = 0.5,
    include: Sequence[str] = HEADLINE,
) -> dict:
    """Difference A - B of each headline metric on the same records: CI and two-sided p-value.

    Each arm is one or more runs (seeds) whose probabilities are aligned to the same records and
    labels as ``y_true``; an arm's value is the mean over its seeds. Both arms are scored on the
    same resamples, so what is shared between them (which records are easy) cancels out.
    """
    y, _ = M.check_inputs(y_true, arm_a[0])
    for p in (*arm_a, *arm_b):
        M.check_inputs(y, p)
    counts = resample_counts(y.shape[0], n_resamples, seed)
    kw = dict(n_bins=n_bins, challenge=challenge, threshold=threshold, include=include)
    pa, pb = _arm_values(y, arm_a, None, **kw), _arm_values(y, arm_b, None, **kw)
    ba, bb = _arm_values(y, arm_a, counts, **kw), _arm_values(y, arm_b, counts, **kw)
    out: dict = {}
    for name in pa:
        d = ba[name] - bb[name]
        entry = _interval(pa[name][0] - pb[name][0], d, level)
        entry.update({"a": _num(pa[name][0]), "b": _num(pb[name][0]), "p_value": bootstrap_p_value(d),
                      "higher_is_better": HIGHER_IS_BETTER[name]})
        out[name] = entry
    return {"difference": out, "settings": {"n_resamples": n_resamples, "seed": seed, "level": level,
                                            "n_bins": n_bins, "threshold": threshold, "interval": "percentile",
                                            "p_value": "two-sided, 2 x smaller tail of the resampled difference "
                                                       "beyond 0, (1 + count) / (1 + B)",
                                            "seeds": [len(arm_a), len(arm_b)]}}


def seed_summary(
    y_true: np.ndarray,
    runs: Sequence[np.ndarray],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    n_bins: int = 10,
    challenge: ChallengeMapping | None = None,
    threshold: float = 0.5,
    include: Sequence[str] = HEADLINE,
) -> dict:
    """Several seeds of one arm on the same test records: per-seed values, mean +- sd (ddof 1) and the
    pooled CI, the bootstrap interval of the seed mean (records resampled, all seeds on the same
    resamples): the spread from test records, to read beside the sd that comes from training."""
    y, _ = M.check_inputs(y_true, runs[0])
    counts = resample_counts(y.shape[0], n_resamples, seed)
    kw = dict(n_bins=n_bins, challenge=challenge, threshold=threshold, include=include)
    per_seed = [metric_values(y, p, None, **kw).headline for p in runs]
    pooled = _arm_values(y, runs, counts, **kw)
    out: dict = {}
    for name in per_seed[0]:
        values = np.array([s[name][0] for s in per_seed])
        lo, hi, undefined = percentile_ci(pooled[name], level)
        ok = values[~np.isnan(values)]
        out[name] = {"values": [_num(v) for v in values],
                     "mean": _num(ok.mean()) if ok.size else None,
                     "sd": _num(ok.std(ddof=1)) if ok.size > 1 else None,
                     "pooled_ci": [lo, hi], "n_undefined": undefined}
    return {"metrics": out, "n_seeds": len(runs),
            "settings": {"n_resamples": n_resamples, "seed": seed, "level": level, "n_bins": n_bins,
                         "threshold": threshold}}


def format_interval(entry: Mapping, digits: int = 3) -> str:
    """``0.912 [0.901, 0.923]``, or ``n/a`` for an undefined value."""
    v = entry.get("value")
    if v is None:
        return "n/a"
    lo, hi = entry.get("ci", [None, None])
    ci = "" if lo is None else f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return f"{v:.{digits}f}{ci}"
