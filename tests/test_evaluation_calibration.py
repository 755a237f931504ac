"""Calibrators (fit on validation, apply to test, JSON round trip, ranking kept) and reliability bins."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score

from ecg_transfer.evaluation import metrics as M
from ecg_transfer.evaluation.calibration import (
    CALIBRATORS,
    RANK_EPS,
    ClassTemperatureScaling,
    IsotonicCalibration,
    PlattScaling,
    TemperatureScaling,
    load_calibrator,
    logit,
    make_calibrator,
    rank_guard,
    reliability_bins,
    save_calibrator,
)


def _overconfident(n, k=3, T=2.5, seed=0):
    """Labels drawn from sigmoid(z), reported as sigmoid(T z): the right temperature is T."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, size=(n, k))
    y = (rng.random((n, k)) < expit(z)).astype(np.uint8)
    return y, expit(T * z)


def _hard_case(n=400, seed=3):
    """Float32 probabilities with ties, exact 0 and 1, values a float32 step apart near 1, an
    all-negative validation class and an anti-informative class (Platt slope < 0)."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 4)) < 0.3).astype(np.uint8)
    z = rng.normal(size=(n, 4)) * 3 + 2.0 * y
    z[:, 2] = rng.normal(size=n) * 3 - 2.0 * y[:, 2]  # scores go the wrong way
    p = expit(z).astype(np.float32)
    p[:5, 0] = 1.0
    p[5:10, 0] = np.float32(1) - np.float32(2**-24) * np.arange(1, 6, dtype=np.float32)  # adjacent float32s
    p[10:15, 0] = 0.0
    p[15:40, 1] = np.round(p[15:40, 1], 1)  # ties
    return y, p.astype(np.float64)


@pytest.mark.parametrize("method", list(CALIBRATORS))
def test_every_calibrator_keeps_every_class_auc(method):
    y_val, p_val = _hard_case(seed=1)
    y_val[:, 3] = 0  # one class cannot be fitted on validation
    y_test, p_test = _hard_case(seed=2)
    c = make_calibrator(method).fit(p_val, y_val)
    pc = c.transform(p_test)
    assert pc.shape == p_test.shape and np.all((pc >= 0) & (pc <= 1))
    for k in range(4):
        assert roc_auc_score(y_test[:, k], pc[:, k]) == roc_auc_score(y_test[:, k], p_test[:, k]), (method, k)
        # and the ranking itself: equal stays equal, larger stays larger
        order = np.argsort(p_test[:, k], kind="mergesort")
        a, b = p_test[order, k], pc[order, k]
        assert np.array_equal(np.diff(a) > 0, np.diff(b) > 0) and np.array_equal(np.diff(a) == 0, np.diff(b) == 0)
    if method != "temperature":
        assert any("class 3" in note for note in c.notes)


def test_steep_maps_would_create_ties_without_the_guard():
    """Why the rank guard exists: isotonic steps and saturating sigmoids merge distinct scores."""
    y, p = _hard_case()
    iso = IsotonicRegression(out_of_bounds="clip").fit(p[:, 1], y[:, 1])
    assert len(np.unique(iso.predict(p[:, 1]))) < len(np.unique(p[:, 1]))
    z = logit(p[: 5 + 5, 0])
    assert len(np.unique(expit(z * 4))) < len(np.unique(p[:10, 0]))  # 1 - k 2^-24 all become 1.0
    assert len(np.unique(PlattScaling(slopes=[4.0], intercepts=[0.0], n_classes=1).transform(p[:10, :1]))) == len(
        np.unique(p[:10, 0])
    )


def test_rank_guard_separates_every_pair_of_adjacent_float32_values():
    """Whatever the map does (constant, a step, saturated at 0 or 1), distinct float32 inputs stay distinct."""
    x = np.float32(10.0) ** np.linspace(-45, 0, 1500, dtype=np.float32)
    x = np.concatenate([x, np.float32(1) - np.float32(2**-24) * np.arange(1, 40, dtype=np.float32)])
    x = x[(x > 0) & (x < 1)]
    p = np.unique(
        np.concatenate([x, np.nextafter(x, np.float32(1)), np.nextafter(x, np.float32(0)), np.float32([0, 0.5, 1])])
    ).astype(np.float64)
    for f in (np.zeros_like(p), np.full_like(p, 0.3), np.ones_like(p), np.where(p < 0.5, 0.2, 0.9)):
        out = rank_guard(f, p)
        assert np.all(np.diff(out) > 0) and np.all(np.abs(out - f) <= RANK_EPS * (1 + 1e-9))


def test_temperature_recovers_the_true_temperature():
    y, p = _overconfident(20000, T=2.5)
    c = TemperatureScaling().fit(p, y)
    assert c.temperature == pytest.approx(2.5, rel=0.05)

    # and it minimises the validation NLL: nudging T either way does worse
    def nll(T):
        q = np.clip(expit(logit(p) / T), 1e-12, 1 - 1e-12)
        return -np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))

    assert nll(c.temperature) <= min(nll(c.temperature * 1.02), nll(c.temperature / 1.02))


def test_class_temperature_fits_each_class():
    y1, p1 = _overconfident(8000, k=1, T=2.0, seed=1)
    y2, p2 = _overconfident(8000, k=1, T=0.5, seed=2)
    c = ClassTemperatureScaling().fit(np.hstack([p1, p2]), np.hstack([y1, y2]))
    assert c.temperatures[0] == pytest.approx(2.0, rel=0.08)
    assert c.temperatures[1] == pytest.approx(0.5, rel=0.08)


def test_platt_recovers_slope_and_intercept():
    rng = np.random.default_rng(4)
    z = rng.normal(0, 2, size=(20000, 1))
    y = (rng.random(z.shape) < expit(0.5 * z - 1.0)).astype(np.uint8)
    c = PlattScaling().fit(expit(z), y)
    assert c.slopes[0] == pytest.approx(0.5, abs=0.05)
    assert c.intercepts[0] == pytest.approx(-1.0, abs=0.08)


def test_platt_never_reverses_the_ranking():
    y, p = _hard_case()
    c = PlattScaling().fit(p, y)
    assert c.slopes[2] == 0.0 and "slope" in " ".join(c.notes)
    assert c.intercepts[2] == pytest.approx(np.log(y[:, 2].mean() / (1 - y[:, 2].mean())))


def test_isotonic_is_sklearns_fit_up_to_the_guard():
    y, p = _hard_case()
    c = IsotonicCalibration().fit(p, y)
    for k in range(4):
        iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(p[:, k], y[:, k])
        assert np.allclose(c.transform(p)[:, k], iso.predict(p[:, k]), atol=2 * RANK_EPS, rtol=0)


def test_calibration_improves_ece_and_brier_on_overconfident_predictions():
    y_val, p_val = _overconfident(5000, seed=5)
    y_test, p_test = _overconfident(5000, seed=6)
    before_ece = M.ece(y_test, p_test)[1][0]
    before_brier = M.brier(y_test, p_test).mean()
    for method in CALIBRATORS:
        pc = make_calibrator(method).fit(p_val, y_val).transform(p_test)
        assert M.ece(y_test, pc)[1][0] < before_ece / 2, method
        assert M.brier(y_test, pc).mean() < before_brier, method


@pytest.mark.parametrize("method", list(CALIBRATORS))
def test_json_round_trip_is_the_whole_state(method, tmp_path):
    y, p = _hard_case()
    c = make_calibrator(method).fit(p, y)
    path = save_calibrator(c, tmp_path / "cal.json")
    d = json.loads(path.read_text())
    assert d["method"] == method and d["n_classes"] == 4
    back = load_calibrator(path)
    assert type(back) is type(c)
    q = _hard_case(seed=9)[1]
    assert np.array_equal(back.transform(q), c.transform(q))


def test_contract_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        TemperatureScaling().transform(np.full((2, 2), 0.5))
    y, p = _hard_case()
    c = PlattScaling().fit(p, y)
    with pytest.raises(ValueError, match="4 classes"):
        c.transform(np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="unknown calibration"):
        make_calibrator("beta")


def test_reliability_bins_equal_width_by_hand():
    p = np.array([0.05, 0.15, 0.15, 0.95, 1.0])
    y = np.array([0, 1, 0, 1, 1])
    b = reliability_bins(y, p, n_bins=10, strategy="equal-width")
    assert b.count == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]  # 1.0 goes in the last bin
    assert b.mean_pred[1] == pytest.approx(0.15) and b.frac_pos[1] == pytest.approx(0.5)
    assert b.mean_pred[2] is None and b.frac_pos[2] is None
    assert b.frac_pos[9] == 1.0 and b.lower[9] == pytest.approx(0.9) and b.upper[9] == pytest.approx(1.0)


def test_reliability_bins_equal_mass():
    rng = np.random.default_rng(0)
    p = rng.random(103) ** 3  # most mass near 0: equal-width bins would leave the top ones nearly empty
    y = (rng.random(103) < p).astype(int)
    b = reliability_bins(y, p, n_bins=10, strategy="equal-mass")
    assert sum(b.count) == 103 and max(b.count) - min(b.count) <= 1 and len(b.count) == 10
    assert all(lo <= hi for lo, hi in zip(b.lower, b.upper))
    assert all(b.upper[i] <= b.lower[i + 1] for i in range(9))
    s = np.sort(p)
    assert b.mean_pred[0] == pytest.approx(s[: b.count[0]].mean())
    # fewer records than bins: one record per bin, no empty bin
    assert reliability_bins([0, 1], [0.2, 0.3], 10, "equal-mass").count == [1, 1]
    with pytest.raises(ValueError, match="strategy"):
        reliability_bins(y, p, 10, "quantiles")
