"""Bootstrap confidence intervals, the paired bootstrap of two arms, and summaries over seeds.

A single test-set number hides how much it would move on another draw of test records (the
original study's error 7), so every headline metric gets a 95 % percentile interval from records
resampled with replacement (1,000 resamples, seeded).

Rare classes (:func:`draw_resamples`). A class with one or two positive test records is missing
from about a third of the resamples. Leaving it out of those resamples' macro mean (what a plain
bootstrap does) moves the macro mean towards the common classes, so the interval no longer
describes the number it surrounds: on PTB-XL fold 10 (task ``all``, 71 classes) macro AUPRC read
0.368 [0.368, 0.416]. We use the PTB-XL benchmark's rule instead (Strodthoff et al. 2021,
``utils.get_appropriate_bootstrap_samples``): a resample in which a class scored on the test set
has no positive record is drawn again; we also redraw when it has no negative record (its AUC
would be undefined). Every resample then averages the same classes as the point estimate. The
redraws are bounded (:data:`MAX_DRAWS_PER_RESAMPLE`); when too few draws qualify, or when the
rule would pin a small test set (every qualifying resample nearly the test set itself, so the
interval would shrink to the point), the plain bootstrap is used and the result says so
(``settings.resampling``).

The paired p-value (:func:`bootstrap_p_value`) inverts the percentile interval of the same
differences, so p < 1 - level exactly when the interval excludes 0; a resample whose difference
is exactly 0 (a tie) keeps 0 inside the interval on both sides.

How it is made fast: a resample is a vector of counts (how often each record was drawn), and every
metric in :mod:`.metrics` takes such counts as record weights. All resamples are evaluated with a
few array passes per class (one sort per class, not one per resample): 1,000 resamples of macro
AUC, AUPRC, F-max, Brier, ECE and the challenge metric over ~2,200 records x 71 classes take
seconds. The same seed and test labels give the same resamples for every metric and every run,
which is what the paired comparison needs: both arms are scored on the very same resampled records.

``classes_used`` reports how many classes entered the macro mean (min / mean over resamples). A
resample where a metric is undefined altogether (NaN) is dropped from its interval and counted in
``n_undefined``.

A point estimate outside its own interval. Under plain resampling (the rule's fallback above), on a
tiny test set, the resamples that lack a rare class's positives average other classes than the
point estimate does, and the percentile interval can exclude the point (smoke study, cinc2020 macro
AUPRC 0.290 [0.291, 0.654]). The interval is kept as computed; ``point_outside_ci`` says so, for the
reader to be told that the test set is too small for the interval to mean much. Of several seeds
(:func:`seed_summary`), ``seeds_outside_ci`` counts the seeds whose own value lies outside the
interval of their mean: that interval resamples test records only, not training randomness.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from . import metrics as M
from .challenge import ChallengeMapping, challenge_terms, normalise

#: The headline metrics, in report order.
HEADLINE: tuple[str, ...] = ("macro_auc", "macro_auprc", "f_max", "brier", "ece", "ece_macro", "challenge")
#: Metrics where larger is better (the others are errors).
HIGHER_IS_BETTER = {
    "macro_auc": True,
    "macro_auprc": True,
    "f_max": True,
    "brier": False,
    "ece": False,
    "ece_macro": False,
    "challenge": True,
}
#: At most this many draws per resample kept before the redraw rule gives up (acceptance below 1 %).
MAX_DRAWS_PER_RESAMPLE = 100
#: The redraw rule is used only when its resamples keep at least this share of the plain bootstrap's
#: variation (:func:`variation_kept`): it may fix which classes a resample holds, not pin the sample.
MIN_VARIATION_KEPT = 0.9
#: How the interval and the p-value are made, as written into every result.
INTERVAL_METHOD = "percentile"
P_VALUE_METHOD = (
    "two-sided, by inverting the percentile interval of the resampled differences: the smallest "
    "1 - level at which that interval excludes 0, so p < 0.05 exactly when the 95 % interval "
    "excludes 0; a resample whose difference is exactly 0 (a tie) keeps 0 inside the interval on "
    "both sides (ties count fully against a difference); never below 1 / (B + 1)"
)
#: Differences this close to 0 are ties (the same metric computed twice in floating point).
TIE_TOLERANCE = 1e-12


def _draw(rng: np.random.Generator, n_records: int, n_resamples: int) -> np.ndarray:
    """``(n_resamples, n_records)`` counts of ``rng.integers(0, n_records, (n_resamples, n_records))``."""
    idx = rng.integers(0, n_records, size=(n_resamples, n_records))
    flat = (idx + np.arange(n_resamples)[:, None] * n_records).ravel()
    return np.bincount(flat, minlength=n_resamples * n_records).reshape(n_resamples, n_records).astype(np.float64)


def resample_counts(n_records: int, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """``(n_resamples, n_records)`` float64: how often each record is drawn in each resample (plain
    bootstrap, no rule on the labels; :func:`draw_resamples` applies the rare-class rule)."""
    if n_records < 1 or n_resamples < 1:
        raise ValueError("need at least one record and one resample")
    return _draw(np.random.default_rng(seed), n_records, n_resamples)


@dataclass(frozen=True)
class Resamples:
    """Bootstrap resamples of a test set and how they were drawn.

    ``rule`` is ``"redraw"`` (every resample keeps a positive and a negative record of each of the
    ``n_required`` classes scored on the test set), ``"plain"`` (nothing to keep: no class has both)
    or ``"plain-fallback"`` (the rule was impossible within the bounded redraws; ``note`` says why).
    """

    counts: np.ndarray  # (B, N)
    rule: str
    n_drawn: int
    n_required: int
    note: str | None = None
    variation_kept: float | None = None  # the redraw rule's resamples: see :func:`variation_kept`
    reason: str | None = None  # plain-fallback: "impossible" or "pinned"

    def describe(self) -> dict:
        """What ``settings.resampling`` of a result holds."""
        text = {
            "redraw": (
                "a resample in which a class scored on the test set (>= 1 positive and >= 1 negative "
                "record) has no positive or no negative record is drawn again (the PTB-XL "
                "benchmark's rule), so every resample averages the same classes as the test set"
            ),
            "plain": "plain resampling of records (no class has both a positive and a negative record)",
            "plain-fallback": "plain resampling of records: the redraw rule was not applied (see note)",
            "given": "resamples given by the caller",
        }
        return {
            "rule": self.rule,
            "description": text.get(self.rule, self.rule),
            "classes_required": self.n_required,
            "draws": self.n_drawn,
            "max_draws_per_resample": MAX_DRAWS_PER_RESAMPLE,
            "variation_kept": None if self.variation_kept is None else round(self.variation_kept, 4),
            "reason": self.reason,
            "note": self.note,
        }


def _keeps_every_class(counts: np.ndarray, Y: np.ndarray, n_records: int) -> np.ndarray:
    """Rows of ``counts`` with a positive and a negative record of every column of ``Y``."""
    pos = counts @ Y
    return (pos > 0).all(axis=1) & (pos < n_records).all(axis=1)


def _redraw(rng: np.random.Generator, first: np.ndarray, Y: np.ndarray, limit: int) -> tuple[np.ndarray | None, int]:
    """Qualifying rows of ``first`` and further blocks, in order, until there are as many as
    ``first`` has rows: ``(counts, draws made)``, or ``(None, draws made)`` after ``limit`` draws."""
    n_resamples, n = first.shape
    kept, n_kept, drawn, block = [], 0, 0, first
    while True:
        ok = np.flatnonzero(_keeps_every_class(block, Y, n))
        need = n_resamples - n_kept
        if ok.size >= need:
            kept.append(block[ok[:need]])
            return np.vstack(kept), drawn + int(ok[need - 1]) + 1
        kept.append(block[ok])
        n_kept += ok.size
        drawn += n_resamples
        if drawn >= limit:
            return None, drawn
        block = _draw(rng, n, n_resamples)


def variation_kept(counts: np.ndarray) -> float:
    """How much of the plain bootstrap's variation in how often each record is drawn the resamples
    keep: the mean over records of the variance of its count, over ``1 - 1/N`` (that variance under
    plain resampling). 1: as free as plain resampling; 0: every resample is the test set itself."""
    n = counts.shape[1]
    if n < 2 or counts.shape[0] < 2:
        return 0.0
    return float(counts.var(axis=0, ddof=1).mean() / (1.0 - 1.0 / n))


def draw_resamples(
    y_true: np.ndarray, n_resamples: int = 1000, seed: int = 0, *, max_draws_per_resample: int = MAX_DRAWS_PER_RESAMPLE
) -> Resamples:
    """Resamples of the test records under the PTB-XL benchmark's rule (see the module docstring).

    Draws come in blocks of ``n_resamples`` rows, ``rng.integers(0, N, (n_resamples, N))`` of
    ``np.random.default_rng(seed)``; qualifying rows are kept in order until there are
    ``n_resamples``. The first block is used as a plain bootstrap instead, and ``note`` says why,
    when (a) ``max_draws_per_resample * n_resamples`` draws did not give enough, or (b) the kept
    resamples would pin the test set: on a small test set where most records are the only positive
    or negative of some label, every qualifying resample is (nearly) the test set itself, and the
    interval would shrink to the point. (b) is measured by :func:`variation_kept`, which must reach
    :data:`MIN_VARIATION_KEPT`.
    """
    y = np.asarray(y_true).astype(bool)
    if y.ndim != 2:
        raise ValueError(f"y_true must be (records, classes), got shape {y.shape}")
    n, n_pos = y.shape[0], y.sum(axis=0)
    if n < 1 or n_resamples < 1:
        raise ValueError("need at least one record and one resample")
    rng = np.random.default_rng(seed)
    scored = (n_pos > 0) & (n_pos < n)
    first = _draw(rng, n, n_resamples)
    if not scored.any():
        return Resamples(first, "plain", n_resamples, 0)
    k = int(scored.sum())
    counts, drawn = _redraw(rng, first, y[:, scored].astype(np.float64), max_draws_per_resample * n_resamples)
    rare = int(((n_pos[scored] <= 2) | (n - n_pos[scored] <= 2)).sum())
    why = (
        f"{k} scored classes, {rare} of them with <= 2 positive or negative records among {n} test records; "
        "plain resampling instead, where a resample that lacks a class leaves it out of the macro means, which "
        "pulls macro AUC / AUPRC intervals towards the common classes"
    )
    if counts is None:
        return Resamples(
            first,
            "plain-fallback",
            drawn,
            k,
            f"the redraw rule was impossible: fewer than {n_resamples} of {drawn} draws kept a positive "
            f"and a negative record of every scored class ({why})",
            reason="impossible",
        )
    kept = variation_kept(counts)
    if kept < MIN_VARIATION_KEPT:
        return Resamples(
            first,
            "plain-fallback",
            drawn,
            k,
            f"the redraw rule would pin the test set: its resamples keep only {100 * kept:.0f} % of the "
            f"plain bootstrap's variation in how often each record is drawn, so its interval would be "
            f"too narrow ({why})",
            variation_kept=kept,
            reason="pinned",
        )
    return Resamples(counts, "redraw", drawn, k, variation_kept=kept)


def _as_resamples(counts: "np.ndarray | Resamples | None", y: np.ndarray, n_resamples: int, seed: int) -> Resamples:
    if counts is None:
        return draw_resamples(y, n_resamples, seed)
    if isinstance(counts, Resamples):
        return counts
    c = np.asarray(counts, dtype=np.float64)
    return Resamples(c, "given", c.shape[0], 0)


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


#: A value closer than this to an end of its interval is on it (floating point), not outside it.
OUTSIDE_TOLERANCE = 1e-9


def outside_interval(value: float | None, lo: float | None, hi: float | None) -> bool:
    """Whether ``value`` lies outside ``[lo, hi]`` (False when either is undefined)."""
    if value is None or lo is None or hi is None or not np.isfinite(value):
        return False
    return bool(value < lo - OUTSIDE_TOLERANCE or value > hi + OUTSIDE_TOLERANCE)


def _interval(point: float, samples: np.ndarray, level: float) -> dict:
    """``{"value", "ci", "n_undefined", "point_outside_ci"}``; the last is True where the percentile
    interval excludes the point estimate (see the module docstring), the interval kept as it is."""
    lo, hi, undefined = percentile_ci(samples, level)
    value = _num(point)
    return {
        "value": value,
        "ci": [lo, hi],
        "n_undefined": undefined,
        "point_outside_ci": outside_interval(value, lo, hi),
    }


def _settings(res: Resamples, seed: int, level: float, n_bins: int, threshold: float) -> dict:
    return {
        "n_resamples": int(res.counts.shape[0]),
        "seed": seed,
        "level": level,
        "n_bins": n_bins,
        "threshold": threshold,
        "interval": INTERVAL_METHOD,
        "resampling": res.describe(),
    }


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
    counts: "np.ndarray | Resamples | None" = None,
) -> dict:
    """Point value and bootstrap CI of each headline metric, plus per-class AUC/AUPRC intervals.

    ``counts`` (from :func:`draw_resamples`) may be passed to reuse resamples across calls; by
    default they are drawn from ``y_true`` under the rare-class rule.
    """
    y, p = M.check_inputs(y_true, probs)
    res = _as_resamples(counts, y, n_resamples, seed)
    point = metric_values(y, p, None, n_bins=n_bins, challenge=challenge, threshold=threshold, include=include)
    boot = metric_values(y, p, res.counts, n_bins=n_bins, challenge=challenge, threshold=threshold, include=include)
    out: dict = {"headline": {}, "per_class": {}}
    for name, samples in boot.headline.items():
        out["headline"][name] = _interval(point.headline[name][0], samples, level)
    if "macro_auc" in boot.headline:
        out["headline"]["macro_auc"]["classes_used"] = {
            "test_set": int(point.classes_used[0]),
            "resamples_min": int(boot.classes_used.min()),
            "resamples_mean": float(boot.classes_used.mean()),
            "of": int(y.shape[1]),
        }
    if "f_max" in boot.headline:
        out["headline"]["f_max"]["threshold"] = _num(point.fmax_threshold[0])
    for name in ("auc", "auprc"):
        if name in boot.per_class:
            out["per_class"][name] = [
                _interval(point.per_class[name][0, k], boot.per_class[name][:, k], level) for k in range(y.shape[1])
            ]
    for name in ("brier", "ece"):
        if name in point.per_class:
            out["per_class"][name] = [_num(v) for v in point.per_class[name][0]]
    out["settings"] = _settings(res, seed, level, n_bins, threshold)
    return out


def _tail_level(s: np.ndarray, below: bool) -> float:
    """For sorted samples ``s`` and the linear quantile function q(a) (numpy's default): the largest
    ``a`` with q(a) <= 0 (``below``), else 1 minus the smallest ``a`` with q(a) >= 0."""
    n = s.size
    if below:
        if s[0] > 0:
            return 0.0
        if s[-1] <= 0 or n == 1:
            return 1.0
        i = int(np.searchsorted(s, 0.0, side="right")) - 1  # s[i] <= 0 < s[i + 1]
        return (i - s[i] / (s[i + 1] - s[i])) / (n - 1)
    if s[-1] < 0:
        return 0.0
    if s[0] >= 0 or n == 1:
        return 1.0
    j = int(np.searchsorted(s, 0.0, side="left"))  # s[j - 1] < 0 <= s[j]
    return 1.0 - (j - 1 - s[j - 1] / (s[j] - s[j - 1])) / (n - 1)


def bootstrap_p_value(diff_samples: np.ndarray) -> float | None:
    """Two-sided bootstrap p-value of "no difference", the inverse of the percentile interval.

    The percentile interval at level ``1 - alpha`` excludes 0 exactly when ``alpha`` exceeds this
    p-value, computed from the same samples and the same (linear) quantile function: the p-value
    and the interval printed beside it always agree (for any ``alpha`` above the floor below).

    Ties: a sample of exactly 0 keeps 0 inside the interval from both sides, so ties at 0 count
    fully against a difference (all samples 0: p = 1). We chose this over counting ties half (a
    mid-p) because a mid-p can fall below 0.05 while the 95 % interval still touches 0, and the
    reader would see a p-value and an interval that disagree. Floored at ``1 / (1 + B)``: B
    resamples cannot resolve a smaller p.
    """
    d = np.asarray(diff_samples, dtype=np.float64)
    d = np.sort(d[~np.isnan(d)])
    if d.size == 0:
        return None
    p = 2.0 * min(_tail_level(d, True), _tail_level(d, False))
    return float(min(1.0, max(p, 1.0 / (1 + d.size))))


def _snap(d: np.ndarray) -> np.ndarray:
    """Differences within :data:`TIE_TOLERANCE` of 0 set to exactly 0 (floating-point ties)."""
    return np.where(np.abs(d) <= TIE_TOLERANCE, 0.0, d)


def difference_entry(point: float, samples: np.ndarray, level: float = 0.95) -> dict:
    """``{"value", "ci", "n_undefined", "p_value", "ties_at_zero"}`` of a difference and its resampled
    values (floating-point ties snapped to 0 first, for the interval and the p-value alike)."""
    d = _snap(np.asarray(samples, dtype=np.float64))
    entry = _interval(float(_snap(np.array([point]))[0]), d, level)
    ok = d[~np.isnan(d)]
    entry["p_value"] = bootstrap_p_value(d)
    entry["ties_at_zero"] = float(np.mean(ok == 0)) if ok.size else None
    return entry


def _arm_values(y: np.ndarray, arm: Sequence[np.ndarray], W: np.ndarray | None, **kw) -> dict[str, np.ndarray]:
    """Headline metrics of an arm: the mean over its seeds' predictions, per row of ``W``."""
    per_seed = [metric_values(y, p, W, **kw).headline for p in arm]
    return {k: np.mean([s[k] for s in per_seed], axis=0) for k in per_seed[0]}


def difference_samples(
    y: np.ndarray, arm_a: Sequence[np.ndarray], arm_b: Sequence[np.ndarray], counts: np.ndarray, **kw
) -> tuple[dict[str, float], dict[str, float], dict[str, np.ndarray]]:
    """Point values of both arms (seed means) and the resampled differences A - B ``(B,)`` of each
    metric, both arms on the same ``counts``; ``kw`` as :func:`metric_values`."""
    pa, pb = _arm_values(y, arm_a, None, **kw), _arm_values(y, arm_b, None, **kw)
    ba, bb = _arm_values(y, arm_a, counts, **kw), _arm_values(y, arm_b, counts, **kw)
    return (
        {k: float(v[0]) for k, v in pa.items()},
        {k: float(v[0]) for k, v in pb.items()},
        {k: ba[k] - bb[k] for k in ba},
    )


def _arm_class_auc(y: np.ndarray, arm: Sequence[np.ndarray], W: np.ndarray | None) -> np.ndarray:
    """Per-class AUC ``(B, K)`` of an arm: the mean over its seeds."""
    return np.mean([M.roc_auc(y, p, W) for p in arm], axis=0)


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
    per_class: bool = False,
) -> dict:
    """Difference A - B of each headline metric on the same records: CI and two-sided p-value.

    Each arm is one or more runs (seeds) whose probabilities are aligned to the same records and
    labels as ``y_true``; an arm's value is the mean over its seeds. Both arms are scored on the
    same resamples, so what is shared between them (which records are easy) cancels out.
    ``ties_at_zero`` is the share of resamples where the difference is exactly 0 (see
    :func:`bootstrap_p_value` for how they count). ``per_class``: also each class's AUC difference.
    """
    y, _ = M.check_inputs(y_true, arm_a[0])
    for p in (*arm_a, *arm_b):
        M.check_inputs(y, p)
    res = draw_resamples(y, n_resamples, seed)
    kw = dict(n_bins=n_bins, challenge=challenge, threshold=threshold, include=include)
    pa, pb, diff = difference_samples(y, arm_a, arm_b, res.counts, **kw)
    out: dict = {}
    for name, d in diff.items():
        entry = difference_entry(pa[name] - pb[name], d, level)
        entry.update({"a": _num(pa[name]), "b": _num(pb[name]), "higher_is_better": HIGHER_IS_BETTER[name]})
        out[name] = entry
    result = {
        "difference": out,
        "settings": {
            **_settings(res, seed, level, n_bins, threshold),
            "p_value": P_VALUE_METHOD,
            "seeds": [len(arm_a), len(arm_b)],
        },
    }
    if per_class:
        point = _arm_class_auc(y, arm_a, None)[0] - _arm_class_auc(y, arm_b, None)[0]
        boot = _arm_class_auc(y, arm_a, res.counts) - _arm_class_auc(y, arm_b, res.counts)
        result["per_class"] = {"auc": [difference_entry(point[k], boot[:, k], level) for k in range(y.shape[1])]}
    return result


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
    resamples): the spread from test records, to read beside the sd that comes from training.

    The pooled CI does not cover the variation between seeds (the seeds are not resampled): with
    few seeds that differ a lot it can exclude every seed's own value. ``seeds_outside_ci`` counts
    the seeds whose value lies outside it (then between-seed variation dominates, and the sd, not the
    CI, is the spread to read); ``mean_outside_ci`` is True where it excludes the mean itself."""
    y, _ = M.check_inputs(y_true, runs[0])
    res = draw_resamples(y, n_resamples, seed)
    kw: dict[str, Any] = dict(n_bins=n_bins, challenge=challenge, threshold=threshold, include=include)
    per_seed = [metric_values(y, p, None, **kw).headline for p in runs]
    pooled = _arm_values(y, runs, res.counts, **kw)
    out: dict = {}
    for name in per_seed[0]:
        values = np.array([s[name][0] for s in per_seed])
        lo, hi, undefined = percentile_ci(pooled[name], level)
        ok = values[~np.isnan(values)]
        mean = _num(ok.mean()) if ok.size else None
        out[name] = {
            "values": [_num(v) for v in values],
            "mean": mean,
            "sd": _num(ok.std(ddof=1)) if ok.size > 1 else None,
            "pooled_ci": [lo, hi],
            "n_undefined": undefined,
            "mean_outside_ci": outside_interval(mean, lo, hi),
            "seeds_outside_ci": sum(outside_interval(float(v), lo, hi) for v in ok),
        }
    return {"metrics": out, "n_seeds": len(runs), "settings": _settings(res, seed, level, n_bins, threshold)}


def format_interval(entry: Mapping, digits: int = 3) -> str:
    """``0.912 [0.901, 0.923]``, or ``n/a`` for an undefined value."""
    v = entry.get("value")
    if v is None:
        return "n/a"
    lo, hi = entry.get("ci", [None, None])
    ci = "" if lo is None else f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return f"{v:.{digits}f}{ci}"
