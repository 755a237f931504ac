"""Intervals that do not surround what they are printed beside are flagged, not mended:

- on a tiny test set under plain resampling, resamples that lack a rare class's positives average
  other classes than the point estimate, so the percentile interval can exclude the point
  (``point_outside_ci``);
- the interval of a seed mean resamples test records only, so seeds that differ a lot can all lie
  outside it (``seeds_outside_ci``).
"""

from __future__ import annotations

import numpy as np

from ecg_transfer.evaluation.bootstrap import (
    bootstrap_metrics,
    difference_entry,
    outside_interval,
    percentile_ci,
    seed_summary,
)


def _tiny(seed: int = 21) -> tuple[np.ndarray, np.ndarray]:
    """7 records, 6 labels, most with one positive: the redraw rule would pin it (plain fallback)."""
    rng = np.random.default_rng(seed)
    y = np.zeros((7, 6), dtype=np.uint8)
    y[0, 0] = 1
    y[1:4, 1] = 1
    for j in range(2, 6):
        y[rng.integers(7), j] = 1
    return y, rng.random((7, 6))


def test_point_estimate_outside_its_percentile_interval_is_flagged_not_mended():
    y, p = _tiny()
    b = bootstrap_metrics(y, p, n_resamples=200, seed=0, include=("macro_auprc",))
    assert b["settings"]["resampling"]["rule"] == "plain-fallback"
    e = b["headline"]["macro_auprc"]
    lo, hi = e["ci"]
    assert e["value"] < lo  # the situation of the smoke study's 0.290 [0.291, 0.654]
    assert e["point_outside_ci"] is True


def test_point_inside_is_not_flagged_and_per_class_entries_carry_the_flag():
    rng = np.random.default_rng(0)
    y = (rng.random((150, 4)) < 0.3).astype(np.uint8)
    p = 1 / (1 + np.exp(-(rng.normal(size=(150, 4)) + y)))
    b = bootstrap_metrics(y, p, n_resamples=200, seed=0)
    assert all(e["point_outside_ci"] is False for e in b["headline"].values())
    assert all(e["point_outside_ci"] is False for e in b["per_class"]["auc"])


def test_difference_entry_flags_a_point_outside_its_interval():
    samples = np.linspace(0.1, 0.3, 101)
    assert difference_entry(0.05, samples)["point_outside_ci"] is True
    assert difference_entry(0.2, samples)["point_outside_ci"] is False
    lo, hi, _ = percentile_ci(samples)
    assert difference_entry(0.05, samples)["ci"] == [lo, hi]  # the interval as computed


def test_seed_summary_counts_seeds_outside_the_interval_of_their_mean():
    """One seed ranks perfectly, the other perfectly inverted: every resample's mean AUC is 0.5, so
    the interval is [0.5, 0.5] and neither seed's own value (1 and 0) lies in it."""
    y = np.array([[1], [0]] * 10, dtype=np.uint8)
    p = np.where(y == 1, 0.9, 0.1)
    s = seed_summary(y, [p, 1 - p], n_resamples=200, include=("macro_auc",))["metrics"]["macro_auc"]
    assert s["values"] == [1.0, 0.0] and s["mean"] == 0.5
    assert s["pooled_ci"] == [0.5, 0.5]
    assert s["seeds_outside_ci"] == 2 and s["mean_outside_ci"] is False
    same = seed_summary(y, [p, p], n_resamples=200, include=("macro_auc",))["metrics"]["macro_auc"]
    assert same["seeds_outside_ci"] == 0


def test_outside_interval_edges():
    assert not outside_interval(0.5, 0.5, 0.6) and not outside_interval(0.6, 0.5, 0.6)
    assert outside_interval(0.49, 0.5, 0.6) and outside_interval(0.61, 0.5, 0.6)
    assert not outside_interval(None, 0.5, 0.6) and not outside_interval(0.4, None, None)
    assert not outside_interval(float("nan"), 0.5, 0.6)


def test_evaluate_prints_a_warning_beside_seeds_outside_their_pooled_interval():
    """The seed summary's counts are read where a user reads the numbers: `evaluate RUN RUN` says
    beside the metric when the seeds differ more than the pooled CI covers, and nothing otherwise."""
    from ecg_transfer.evaluation.cli import seed_lines

    y = np.array([[1], [0]] * 10, dtype=np.uint8)
    p = np.where(y == 1, 0.9, 0.1)
    apart = {**seed_summary(y, [p, 1 - p], n_resamples=200, include=("macro_auc",)), "path": "seeds.json"}
    (line,) = [x for x in seed_lines(apart, 0.95) if "macro" in x.lower()]
    assert "0.500 +- 0.707 [0.500, 0.500]" in line and "warning: 2 of 2 seeds outside this CI" in line
    close = {**seed_summary(y, [p, p], n_resamples=200, include=("macro_auc",)), "path": "seeds.json"}
    assert not [x for x in seed_lines(close, 0.95) if "warning" in x]
