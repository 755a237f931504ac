"""Bootstrap CIs, the paired bootstrap and the seed summary, checked against plain resampling loops;
the rare-class resampling rule and the p-value that inverts the percentile interval."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ecg_transfer.evaluation.bootstrap import (
    bootstrap_metrics,
    bootstrap_p_value,
    draw_resamples,
    paired_bootstrap,
    percentile_ci,
    resample_counts,
    seed_summary,
)


def _data(n=150, k=4, seed=0, signal=1.0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < 0.3).astype(np.uint8)
    z = rng.normal(size=(n, k)) + signal * y
    return y, 1 / (1 + np.exp(-z))


def _rule_draws(y, B, seed):
    """The documented redraw rule, by hand: blocks of B draws, rows kept in order while every class with
    a positive and a negative record keeps both."""
    rng = np.random.default_rng(seed)
    scored = [k for k in range(y.shape[1]) if 0 < y[:, k].sum() < len(y)]
    kept = []
    while len(kept) < B:
        for idx in rng.integers(0, len(y), size=(B, len(y))):
            if all(0 < y[idx, k].sum() < len(y) for k in scored):
                kept.append(idx)
    return np.array(kept[:B])


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
    y[0, 3] = 1  # one positive: a plain resample lacks it about a third of the time
    B = 60
    res = bootstrap_metrics(y, p, n_resamples=B, seed=11, include=("macro_auc",))
    idx = _rule_draws(y, B, 11)
    loop = np.array([_macro_auc_loop(y[i], p[i]) for i in idx])
    entry = res["headline"]["macro_auc"]
    assert entry["value"] == pytest.approx(_macro_auc_loop(y, p))
    assert entry["ci"] == pytest.approx(list(np.quantile(loop, [0.025, 0.975])))
    # every resample averages the 4 classes of the test set (the rule), none is left out
    assert entry["classes_used"] == {"test_set": 4, "resamples_min": 4, "resamples_mean": 4.0, "of": 4}
    assert res["settings"]["resampling"]["rule"] == "redraw"
    assert res["settings"]["resampling"]["classes_required"] == 4
    assert res["settings"]["resampling"]["draws"] > B  # some draws lacked the single positive


def test_plain_counts_leave_absent_classes_out_of_the_macro_mean():
    """Resamples given by the caller are used as they are: a class absent from one is left out of it."""
    y, p = _data()
    y[:, 3] = 0
    y[0, 3] = 1
    B = 60
    res = bootstrap_metrics(y, p, counts=resample_counts(len(y), B, 11), include=("macro_auc",))
    idx = np.random.default_rng(11).integers(0, len(y), size=(B, len(y)))
    loop = np.array([_macro_auc_loop(y[i], p[i]) for i in idx])
    entry = res["headline"]["macro_auc"]
    assert entry["ci"] == pytest.approx(list(np.quantile(loop, [0.025, 0.975])))
    used = np.array([sum(0 < y[i][:, k].sum() < len(y) for k in range(4)) for i in idx])
    assert entry["classes_used"]["resamples_min"] == used.min() == 3
    assert res["settings"]["resampling"]["rule"] == "given"


def _rare_class_data(seed=0, n=300):
    """Three common classes predicted well, six classes with a single positive predicted at random:
    macro AUPRC is low because of the rare classes, which a plain resample often loses."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, 9), dtype=np.uint8)
    y[:, :3] = rng.random((n, 3)) < 0.3
    for k in range(3, 9):
        y[10 * k, k] = 1
    z = rng.normal(size=y.shape) + 3.0 * y
    z[:, 3:] = rng.normal(size=(n, 6))
    return y, 1 / (1 + np.exp(-z))


def test_rare_class_point_estimate_lies_inside_its_interval():
    y, p = _rare_class_data()
    res = bootstrap_metrics(y, p, n_resamples=400, seed=0, include=("macro_auc", "macro_auprc"))
    for name in ("macro_auprc", "macro_auc"):
        e = res["headline"][name]
        assert e["ci"][0] < e["value"] < e["ci"][1], (name, e)
    # the plain bootstrap on the same data puts the point outside (below) its interval: the failure fixed here
    plain = bootstrap_metrics(y, p, counts=resample_counts(len(y), 400, 0), include=("macro_auprc",))
    e = plain["headline"]["macro_auprc"]
    assert e["value"] < e["ci"][0]


def test_draw_resamples_keeps_every_scored_class_and_is_seeded():
    y, _ = _rare_class_data(n=120)
    y[:, 8] = 0  # a class without positives is not required (nothing to keep)
    r = draw_resamples(y, 200, seed=4)
    pos = r.counts @ y
    neg = r.counts @ (1 - y)
    assert r.counts.shape == (200, 120) and np.all(r.counts.sum(axis=1) == 120)
    assert (pos[:, :8] > 0).all() and (neg[:, :8] > 0).all()
    assert r.rule == "redraw" and r.n_required == 8 and r.note is None
    assert np.array_equal(r.counts, draw_resamples(y, 200, seed=4).counts)
    assert np.array_equal(r.counts, np.array([np.bincount(i, minlength=120) for i in _rule_draws(y, 200, 4)]))
    # nothing to keep (no class has both a positive and a negative record): plain draws
    assert draw_resamples(np.zeros((10, 2)), 5).rule == "plain"


def test_draw_resamples_gives_up_after_bounded_redraws_and_says_so():
    y = np.eye(12, dtype=np.uint8)  # 12 classes, one positive each in 12 records: ~5e-5 of draws qualify
    r = draw_resamples(y, 50, seed=0, max_draws_per_resample=20)
    assert r.rule == "plain-fallback" and r.n_drawn == 1000
    assert "redraw rule was impossible" in r.note and "fewer than 50 of 1000 draws" in r.note
    assert "12 scored classes, 12 of them with <= 2 positive" in r.note
    assert np.array_equal(r.counts, resample_counts(12, 50, 0))  # the first block, as a plain bootstrap
    res = bootstrap_metrics(y, np.random.default_rng(0).random((12, 12)), n_resamples=50, include=("macro_auc",))
    assert res["settings"]["resampling"]["rule"] == "plain-fallback"
    assert "impossible" in res["settings"]["resampling"]["note"]


def test_redraw_rule_never_pins_a_small_test_set():
    """Six records, each the only positive of a label: every qualifying resample is the test set itself
    (each record drawn once). The rule would give a zero-width interval (and the smallest p-value there
    is); plain resampling instead, and the result says why."""
    y = np.eye(6, dtype=np.uint8)
    rng = np.random.default_rng(0)
    pa, pb = np.clip(0.5 * y + 0.5 * rng.random(y.shape), 0, 1), rng.random(y.shape)
    r = draw_resamples(y, 200)
    assert r.rule == "plain-fallback" and "would pin the test set" in r.note and "only 0 %" in r.note
    d = paired_bootstrap(y, [pa], [pb], n_resamples=200, include=("macro_auc",))
    e = d["difference"]["macro_auc"]
    assert e["ci"][0] < e["ci"][1]
    assert d["settings"]["resampling"]["rule"] == "plain-fallback"
    # a large test set with a few rare classes keeps its variation: the rule applies
    big, _ = _rare_class_data()
    r = draw_resamples(big, 200)
    assert r.rule == "redraw" and r.variation_kept > 0.95


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
    assert bootstrap_p_value(np.ones(99)) == pytest.approx(1 / 100)  # never exactly 0
    assert bootstrap_p_value(np.zeros(10)) == 1.0  # all ties: no evidence of a difference
    d = np.array([-1.0] * 10 + [1.0] * 90)
    # q(a) <= 0 up to a = 9.5 / 99 (halfway between the 10th and 11th sorted sample)
    assert bootstrap_p_value(d) == pytest.approx(2 * 9.5 / 99)
    assert bootstrap_p_value(-d) == pytest.approx(2 * 9.5 / 99)
    assert bootstrap_p_value(np.array([np.nan])) is None


@pytest.mark.parametrize("seed", range(6))
def test_p_value_and_interval_always_agree(seed):
    """p < 1 - level exactly when the percentile interval at that level excludes 0, ties at 0 included
    (for every level the resamples can resolve: 1 - level above the floor 1 / (B + 1))."""
    rng = np.random.default_rng(seed)
    for _ in range(60):
        n = int(rng.integers(20, 400))
        d = np.round(rng.normal(rng.normal(0, 0.04), 0.02, n), int(rng.integers(1, 4)))  # rounding makes ties
        d[rng.random(n) < rng.random() * 0.5] = 0.0
        p = bootstrap_p_value(d)
        for level in (0.8, 0.9, 0.95, 0.99):
            if 1 - level <= 1 / (n + 1):
                continue
            lo, hi, _ = percentile_ci(d, level)
            excludes = lo > 0 or hi < 0
            assert (p < 1 - level) == excludes, (n, level, p, lo, hi)


def test_ties_at_zero_read_consistently():
    """The issue's case: half the resampled differences are exactly 0, the rest positive. The CI touches 0
    and the p-value says the same (no evidence), and the share of ties is reported beside it."""
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]] * 3)
    rng = np.random.default_rng(1)
    pa = np.clip(y * 0.6 + rng.random(y.shape) * 0.5, 0, 1)
    pb = pa.copy()
    pb[0, 0] = 0.01  # one positive pushed to the bottom in arm B only: A - B >= 0, often exactly 0
    res = paired_bootstrap(y, [pa], [pb], n_resamples=400, include=("macro_auc",))
    d = res["difference"]["macro_auc"]
    assert d["ci"][0] == 0.0 and d["ci"][1] > 0
    assert d["ties_at_zero"] > 0.025
    assert d["p_value"] >= 0.05
    assert "ties" in res["settings"]["p_value"] and "inverting the percentile interval" in res["settings"]["p_value"]


def test_paired_bootstrap_matches_a_resampling_loop():
    y, pa = _data(seed=2, signal=2.0)
    _, pb = _data(seed=3, signal=0.5)
    B = 40
    res = paired_bootstrap(y, [pa], [pb], n_resamples=B, seed=5, include=("macro_auc",), per_class=True)
    d = res["difference"]["macro_auc"]
    idx = _rule_draws(y, B, 5)
    loop = np.array([_macro_auc_loop(y[i], pa[i]) - _macro_auc_loop(y[i], pb[i]) for i in idx])
    assert d["value"] == pytest.approx(_macro_auc_loop(y, pa) - _macro_auc_loop(y, pb))
    assert d["ci"] == pytest.approx(list(np.quantile(loop, [0.025, 0.975])))
    assert d["p_value"] == pytest.approx(bootstrap_p_value(loop))
    assert d["value"] > 0 and d["ci"][0] > 0 and d["p_value"] < 0.05
    k = 1  # each class's AUC difference on the same resamples
    per = res["per_class"]["auc"][k]
    loop_k = [roc_auc_score(y[i, k], pa[i, k]) - roc_auc_score(y[i, k], pb[i, k]) for i in idx]
    assert per["value"] == pytest.approx(roc_auc_score(y[:, k], pa[:, k]) - roc_auc_score(y[:, k], pb[:, k]))
    assert per["ci"] == pytest.approx(list(np.quantile(loop_k, [0.025, 0.975])))


def test_paired_bootstrap_of_a_run_with_itself_is_zero():
    y, p = _data(seed=4)
    res = paired_bootstrap(y, [p], [p.copy()], n_resamples=30)
    for name, e in res["difference"].items():
        assert e["value"] == 0 and e["ci"] == [0, 0] and e["p_value"] == 1.0 and e["ties_at_zero"] == 1.0, name


def test_seed_summary():
    y, p1 = _data(seed=5)
    _, p2 = _data(seed=6)
    _, p3 = _data(seed=7)
    res = seed_summary(y, [p1, p2, p3], n_resamples=40, seed=2, include=("macro_auc", "brier"))
    m = res["metrics"]["macro_auc"]
    values = [_macro_auc_loop(y, p) for p in (p1, p2, p3)]
    assert m["values"] == pytest.approx(values)
    assert m["mean"] == pytest.approx(np.mean(values)) and m["sd"] == pytest.approx(np.std(values, ddof=1))
    idx = _rule_draws(y, 40, 2)
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
