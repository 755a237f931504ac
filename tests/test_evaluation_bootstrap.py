"""Bootstrap CIs, the paired bootstrap and the seed summary, checked against plain resampling loops."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ecg_transfer.evaluation.bootstrap import (
    bootstrap_metrics, bootstrap_p_value, paired_bootstrap, percentile_ci, resample_counts, seed_summary,
)


def _data(n=150, k=4, seed=0, signal=1.0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < 0.3).astype(np.uint8)
    z = rng.normal(size=(n, k)) + signal * y
    return y, 1 / (1 + np.exp(-z))


def _macro_auc_loop(y, p):
    aucs = [roc_auc_score(y[:, k], p[:, k]) for k in range(y.shape[1]) if 0 < y[:, k].sum() < len(y)]
    return np.mean(aucs) if aucs else np.nan


def test_resample_counts_are_seeded_draws_with_replacement():
    c = resample_counts(50, 20, seed=3)
    assert c.shape == (20, 50) and np.all(c.sum(axis=1) == 50) and c.min() >= 0
    assert np.array_equal(c, resample_counts(50, 20, seed=3))
    assert not np.array_equal(c, resample_counts(50, 20, seed=4))
    # the documented draw: rng.integers over records, counted
    idx = np.random.default_rng(3).integers(0, 50, size=(20, 50))
    assert np.array_equal(c[7], np.bincount(idx[7], minlength=50))


def test_ci_equals_percentiles_of_explicit_resampling():
    y, p = _data()
    y[:, 3] = 0
    y[0, 3] = 1  # one positive: most resamples lack it, and leave the class out of their macro mean
    B = 60
    res = bootstrap_metrics(y, p, n_resamples=B, seed=11, include=("macro_auc",))
    idx = np.random.default_rng(11).integers(0, len(y), size=(B, len(y)))
    loop = np.array([_macro_auc_loop(y[i], p[i]) for i in idx])
    entry = res["headline"]["macro_auc"]
    assert entry["value"] == pytest.approx(_macro_auc_loop(y, p))
    assert entry["ci"] == pytest.approx(list(np.quantile(loop, [0.025, 0.975])))
    used = np.array([sum(0 < y[i][:, k].sum() < len(y) for k in range(4)) for i in idx])
    assert entry["classes_used"]["resamples_min"] == used.min() == 3
    assert entry["classes_used"]["resamples_mean"] == pytest.approx(used.mean())
    assert entry["classes_used"]["test_set"] == 4


def test_per_class_intervals_and_undefined_classes():
    y, p = _data(seed=1)
    y[:, 2] = 0
    res = bootstrap_metrics(y, p, n_resamples=50)
    auc = res["per_class"]["auc"]
    assert auc[2]["value"] is None and auc[2]["ci"] == [None, None] and auc[2]["n_undefined"] == 50
    assert auc[0]["ci"][0] <= auc[0]["value"] <= auc[0]["ci"][1]
    for name, e in res["headline"].items():
        if name != "challenge":
            assert e["ci"][0] <= e["value"] <= e["ci"][1], name


def test_percentile_ci_drops_undefined():
    lo, hi, n_undef = percentile_ci(np.array([np.nan, 1, 2, 3, 4, np.nan]), 0.5)
    assert (lo, hi, n_undef) == (1.75, 3.25, 2)
    assert percentile_ci(np.array([np.nan]))[:2] == (None, None)


def test_p_value():
    assert bootstrap_p_value(np.ones(99)) == pytest.approx(2 / 100)  # never exactly 0
    assert bootstrap_p_value(np.zeros(10)) == 1.0
    d = np.array([-1.0] * 10 + [1.0] * 90)
    assert bootstrap_p_value(d) == pytest.approx(2 * 11 / 101)


def test_paired_bootstrap_matches_a_resampling_loop():
    y, pa = _data(seed=2, signal=2.0)
    _, pb = _data(seed=3, signal=0.5)
    B = 40
    res = paired_bootstrap(y, [pa], [pb], n_resamples=B, seed=5, include=("macro_auc",))
    d = res["difference"]["macro_auc"]
    idx = np.random.default_rng(5).integers(0, len(y), size=(B, len(y)))
    loop = np.array([_macro_auc_loop(y[i], pa[i]) - _macro_auc_loop(y[i], pb[i]) for i in idx])
    assert d["value"] == pytest.approx(_macro_auc_loop(y, pa) - _macro_auc_loop(y, pb))
    assert d["ci"] == pytest.approx(list(np.quantile(loop, [0.025, 0.975])))
    assert d["p_value"] == pytest.approx(bootstrap_p_value(loop))
    assert d["value"] > 0 and d["ci"][0] > 0 and d["p_value"] < 0.05


def test_paired_bootstrap_of_a_run_with_itself_is_zero():
    y, p = _data(seed=4)
    res = paired_bootstrap(y, [p], [p.copy()], n_resamples=30)
    for name, e in res["difference"].items():
        assert e["value"] == 0 and e["ci"] == [0, 0] and e["p_value"] == 1.0, name


def test_seed_summary():
    y, p1 = _data(seed=5)
    _, p2 = _data(seed=6)
    _, p3 = _data(seed=7)
    res = seed_summary(y, [p1, p2, p3], n_resamples=40, seed=2, include=("macro_auc", "brier"))
    m = res["metrics"]["macro_auc"]
    values = [_macro_auc_loop(y, p) for p in (p1, p2, p3)]
    assert m["values"] == pytest.approx(values)
    assert m["mean"] == pytest.approx(np.mean(values)) and m["sd"] == pytest.approx(np.std(values, ddof=1))
    idx = np.random.default_rng(2).integers(0, len(y), size=(40, len(y)))
    pooled = [np.mean([_macro_auc_loop(y[i], p[i]) for p in (p1, p2, p3)]) for i in idx]
    assert m["pooled_ci"] == pytest.approx(list(np.quantile(pooled, [0.025, 0.975])))


@pytest.mark.slow
def test_bootstrap_is_fast_at_benchmark_size():
    """1,000 resamples of every headline metric, 2,200 records x 71 classes: seconds, not minutes."""
    rng = np.random.default_rng(0)
    y = (rng.random((2200, 71)) < 0.05).astype(np.uint8)
    p = (1 / (1 + np.exp(-(rng.normal(size=y.shape) + 2 * y)))).astype(np.float32).astype(np.float64)
    t0 = time.perf_counter()
    bootstrap_metrics(y, p, n_resamples=1000, include=("macro_auc",))
    auc_seconds = time.perf_counter() - t0
    assert auc_seconds < 30, auc_seconds
