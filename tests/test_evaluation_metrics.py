"""Metrics: known answers by hand, scikit-learn where it has the metric, and weights == resampling."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from ecg_transfer.evaluation import metrics as M


def _data(seed=0, n=200, k=5, rate=0.25):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < rate).astype(np.uint8)
    p = np.round(np.clip(rng.random((n, k)) * 0.6 + 0.35 * y, 0, 1), 2)  # rounding makes ties
    return y, p


def test_auc_by_hand():
    y = np.array([[0], [0], [1], [1]])
    p = np.array([[0.1], [0.4], [0.35], [0.8]])
    # pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) -> 3/4
    assert M.roc_auc(y, p)[0, 0] == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half
    assert M.roc_auc(np.array([[0], [1]]), np.array([[0.5], [0.5]]))[0, 0] == pytest.approx(0.5)


def test_auc_and_ap_match_sklearn_with_ties():
    y, p = _data()
    auc, ap = M.roc_auc(y, p)[0], M.average_precision(y, p)[0]
    for k in range(y.shape[1]):
        assert auc[k] == pytest.approx(roc_auc_score(y[:, k], p[:, k]), abs=1e-12)
        assert ap[k] == pytest.approx(average_precision_score(y[:, k], p[:, k]), abs=1e-12)


def test_average_precision_by_hand():
    y = np.array([[1], [0], [1]])
    p = np.array([[0.9], [0.8], [0.7]])
    # recall steps 1/2 at precision 1/1 and 1/2 at precision 2/3
    assert M.average_precision(y, p)[0, 0] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_weights_equal_resampling():
    """A row of bootstrap counts gives exactly the metric of the resampled records."""
    y, p = _data(1, n=120)
    rng = np.random.default_rng(5)
    for _ in range(3):
        idx = rng.integers(0, len(y), len(y))
        w = np.bincount(idx, minlength=len(y))
        auc, ap, br = M.roc_auc(y, p, w)[0], M.average_precision(y, p, w)[0], M.brier(y, p, w)[0]
        pc, pooled = M.ece(y, p, w)
        pc2, pooled2 = M.ece(y[idx], p[idx])
        assert np.allclose(pc[0], pc2[0]) and pooled[0] == pytest.approx(pooled2[0])
        fm, t = M.f_max(y, p, w)
        fm2, t2 = M.f_max(y[idx], p[idx])
        assert fm[0] == pytest.approx(fm2[0]) and t[0] == t2[0]
        for k in range(y.shape[1]):
            yk, pk = y[idx, k], p[idx, k]
            if 0 < yk.sum() < len(yk):
                assert auc[k] == pytest.approx(roc_auc_score(yk, pk), abs=1e-12)
                assert ap[k] == pytest.approx(average_precision_score(yk, pk), abs=1e-12)
            assert br[k] == pytest.approx(brier_score_loss(yk, pk), abs=1e-12)


def test_undefined_classes_are_reported_not_nan_in_macro():
    y, p = _data(2, n=50, k=4)
    y[:, 1] = 0  # no positive
    y[:, 3] = 1  # no negative
    auc = M.roc_auc(y, p)
    assert np.isnan(auc[0, 1]) and np.isnan(auc[0, 3])
    assert M.class_status(y) == [None, "no positive records", None, "no negative records"]
    macro, used = M.nanmean_rows(auc)
    assert used[0] == 2
    assert macro[0] == pytest.approx(np.mean([roc_auc_score(y[:, k], p[:, k]) for k in (0, 2)]))
    assert np.isnan(M.average_precision(y, p)[0, 1])
    # a row with nothing defined is NaN without a warning, and the caller reports it
    with np.errstate(all="raise"):
        m, n = M.nanmean_rows(np.full((1, 3), np.nan))
    assert np.isnan(m[0]) and n[0] == 0


def test_brier_matches_sklearn():
    y, p = _data(3)
    br = M.brier(y, p)[0]
    assert np.allclose(br, [brier_score_loss(y[:, k], p[:, k]) for k in range(y.shape[1])])


def test_ece_by_hand():
    y = np.array([[0], [1], [0], [1]])
    p = np.array([[0.05], [0.15], [0.15], [1.0]])
    # bins (10 equal-width): [0,.1): gap |0 - .05|; [.1,.2): |1 - .3|; [.9,1]: |1 - 1| (p = 1 in the last bin)
    per_class, pooled = M.ece(y, p)
    assert per_class[0, 0] == pytest.approx((0.05 + 0.7 + 0.0) / 4)
    assert pooled[0] == pytest.approx(per_class[0, 0])


def test_ece_pooled_vs_per_class_by_hand():
    # class 0: p .25 .25, y 1 0 -> bin 2 gap |1 - .5| = .5 -> ECE .25
    # class 1: p .25 .25, y 0 0 -> bin 2 gap |0 - .5| = .5 -> ECE .25
    # pooled: bin 2 holds all four: |1 - 1| = 0 -> 0
    y = np.array([[1, 0], [0, 0]])
    p = np.full((2, 2), 0.25)
    per_class, pooled = M.ece(y, p)
    assert np.allclose(per_class[0], [0.25, 0.25])
    assert pooled[0] == pytest.approx(0.0)


def test_fmax_by_hand():
    y = np.array([[1, 0], [1, 1]])
    p = np.array([[0.8, 0.3], [0.6, 0.7]])
    # t <= .3: record 1 P=.5 R=1, record 2 P=1 R=1 -> F = 2*.75/1.75; .3 < t <= .6: both P=R=1 -> F = 1
    f, t = M.f_max(y, p)
    assert f[0] == pytest.approx(1.0) and t[0] == pytest.approx(0.31)
    y = np.array([[1, 0], [0, 1]])
    p = np.array([[0.9, 0.8], [0.3, 0.2]])
    # t <= .2: P = (1/2 + 1/2)/2, R = 1 -> F = 2/3; .2 < t <= .3: record 2 predicts class 0 only (wrong):
    # P = (1/2 + 0)/2, R = 1/2 -> F = 1/3; .3 < t <= .8: P = 1/2 (record 1 only), R = 1/2 -> F = 1/2;
    # .8 < t <= .9: P = 1, R = (1 + 0)/2 -> F = 2/3; max 2/3, first reached at t = 0
    f, t = M.f_max(y, p)
    assert f[0] == pytest.approx(2 / 3) and t[0] == 0.0


def _fmax_loops(y, p):
    best = -1.0
    for t in np.round(np.linspace(0, 1, 101), 2):
        precs, recs = [], []
        for i in range(len(y)):
            pred = [k for k in range(y.shape[1]) if p[i, k] >= t]
            true = [k for k in range(y.shape[1]) if y[i, k]]
            tp = len(set(pred) & set(true))
            if pred:
                precs.append(tp / len(pred))
            if true:
                recs.append(tp / len(true))
        if precs and recs:
            P, R = np.mean(precs), np.mean(recs)
            best = max(best, 2 * P * R / (P + R) if P + R else 0.0)
    return best


def test_fmax_matches_plain_loops():
    y, p = _data(4, n=40, k=4)
    y[0] = 0  # a record without labels is left out of recall
    assert M.f_max(y, p)[0][0] == pytest.approx(_fmax_loops(y, p))


def test_inputs_are_checked():
    y = np.zeros((3, 2), dtype=int)
    with pytest.raises(ValueError, match="NaN"):
        M.roc_auc(y, np.array([[0.1, np.nan], [0.2, 0.3], [0.4, 0.5]]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.brier(y, np.full((3, 2), 1.5))
    with pytest.raises(ValueError, match="shape|records"):
        M.roc_auc(y, np.zeros((3, 3)))


def test_labels_scored_counts_the_classes_each_macro_mean_averages():
    y = np.array([[1, 0, 0, 1], [0, 0, 1, 1], [1, 0, 0, 1]])
    # class 0 and 2: a positive and a negative; class 1: no positive; class 3: no negative
    assert M.labels_scored(y) == {"auc": 2, "auprc": 3, "total": 4}
    p = np.full(y.shape, 0.5)
    _, n = M.nanmean_rows(M.roc_auc(y, p))
    assert n[0] == M.labels_scored(y)["auc"]
    _, n = M.nanmean_rows(M.average_precision(y, p))
    assert n[0] == M.labels_scored(y)["auprc"]
