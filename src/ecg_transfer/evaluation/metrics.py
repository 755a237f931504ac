"""Per-class and macro metrics of multi-label probabilities, written once for any record weighting.

Every metric here takes record weights ``W`` of shape ``(B, N)`` and returns one value per row:
``W = ones((1, N))`` is the plain metric on the test set, and a row of bootstrap counts (how often
each record was drawn) is that metric on one bootstrap resample. Writing the point estimate and the
bootstrap with the same code means the tests that check the point estimate against scikit-learn and
hand-computed answers also check every resample, and a resample never needs a copy of the data.

Undefined values are NaN in the arrays (a class with no positive or no negative record has no AUC)
and are left out of macro means; :func:`class_status` says why, so reports can name the reason
instead of printing NaN.

Conventions (the tests pin each one):

- ROC AUC: ties between a positive and a negative score count one half (as scikit-learn).
- AUPRC: average precision, ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds (scikit-learn's
  ``average_precision_score``), not the trapezoidal area.
- Brier: mean squared error of the probability, per class; overall = mean over every
  (record, class) pair.
- ECE: ``n_bins`` equal-width bins on [0, 1] (a probability of exactly 1 goes in the last bin),
  ``sum_b |sum of y in b - sum of p in b| / N`` = ``sum_b (n_b / N) |frac_pos_b - mean_p_b|``.
  Per class; "pooled" = the same over all (record, class) pairs; "macro" = mean of per-class ECE.
- F-max: the sample-centric F-max of the PTB-XL benchmark (after CAFA): at threshold t a label is
  predicted when ``p >= t``; precision is averaged over records with at least one predicted label,
  recall over records with at least one true label; F-max is the largest ``2PR/(P+R)`` over
  t = 0.00, 0.01, ..., 1.00.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: How many resamples' worth of work one vectorised step handles (bounds memory at ~B x N floats).
_CHUNK = 256


def as_weights(W: np.ndarray | None, n: int) -> np.ndarray:
    """``(B, N)`` float64 record weights; ``None`` means every record once (the point estimate)."""
    if W is None:
        return np.ones((1, n), dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    if W.ndim == 1:
        W = W[None, :]
    if W.ndim != 2 or W.shape[1] != n:
        raise ValueError(f"weights must be (resamples, {n}), got shape {W.shape}")
    return W


def check_inputs(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y_true`` as bool, ``probs`` as float64, both ``(N, K)``; refuses NaN and values outside [0, 1]."""
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    if y.ndim != 2 or y.shape != p.shape:
        raise ValueError(f"y_true and probs must both be (records, classes), got {y.shape} and {p.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold only 0 and 1")
    if not np.isfinite(p).all():
        raise ValueError(f"{int((~np.isfinite(p)).sum())} probabilities are NaN or infinite")
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError(f"probabilities must lie in [0, 1], found [{p.min()}, {p.max()}]")
    return y.astype(bool), p


def class_status(y_true: np.ndarray) -> list[str | None]:
    """Per class: ``None`` when it has positives and negatives, else why its AUC is undefined."""
    y = np.asarray(y_true).astype(bool)
    n_pos = y.sum(axis=0)
    out: list[str | None] = []
    for k in range(y.shape[1]):
        if n_pos[k] == 0:
            out.append("no positive records")
        elif n_pos[k] == y.shape[0]:
            out.append("no negative records")
        else:
            out.append(None)
    return out


def labels_scored(y_true: np.ndarray) -> dict[str, int]:
    """How many classes enter each macro mean on these records, of ``total``: ``auc`` (those with a
    positive and a negative record) and ``auprc`` (those with a positive record). A macro metric
    that averaged 3 of 18 classes must be read as such; reports print these beside it."""
    y = np.asarray(y_true).astype(bool)
    n_pos = y.sum(axis=0)
    return {
        "auc": int(((n_pos > 0) & (n_pos < y.shape[0])).sum()),
        "auprc": int((n_pos > 0).sum()),
        "total": int(y.shape[1]),
    }


def nanmean_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over classes (axis 1) of the defined values, and how many were defined, per row.

    A row with no defined value gets NaN (never a warning): the caller reports it as undefined.
    """
    values = np.atleast_2d(values)
    ok = ~np.isnan(values)
    n = ok.sum(axis=1)
    total = np.where(ok, values, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
    return mean, n


def _tie_groups(sorted_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each position in a sorted vector: the first and one-past-last index of its tie group."""
    n = sorted_scores.size
    new = np.ones(n, dtype=bool)
    new[1:] = sorted_scores[1:] != sorted_scores[:-1]
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], n)
    gid = np.cumsum(new) - 1
    return starts[gid], ends[gid]


def roc_auc(y_true: np.ndarray, probs: np.ndarray, W: np.ndarray | None = None) -> np.ndarray:
    """ROC AUC ``(B, K)``: the weighted Mann-Whitney statistic, ties counted one half.

    Scores are sorted once per class; for each positive, the weight of negatives below it (plus
    half those tied with it) comes from a cumulative sum, so all B resamples cost a few array
    passes instead of B sorts. NaN where a row's class has no positive or no negative weight.
    """
    y, p = check_inputs(y_true, probs)
    N, K = y.shape
    W = as_weights(W, N)
    out = np.full((W.shape[0], K), np.nan)
    for k in range(K):
        order = np.argsort(p[:, k], kind="mergesort")
        yk = y[order, k]
        pos = np.flatnonzero(yk)
        if pos.size == 0 or pos.size == N:
            continue
        start, end = _tie_groups(p[order, k])
        start, end = start[pos], end[pos]
        neg_mask = ~yk
        for b0 in range(0, W.shape[0], _CHUNK):
            Wo = W[b0 : b0 + _CHUNK, order]
            C = np.zeros((Wo.shape[0], N + 1))
            np.cumsum(Wo * neg_mask, axis=1, out=C[:, 1:])
            below = C[:, start]
            tied = C[:, end] - below
            wpos = Wo[:, pos]
            num = (wpos * (below + 0.5 * tied)).sum(axis=1)
            P, Q = wpos.sum(axis=1), C[:, -1]
            with np.errstate(invalid="ignore", divide="ignore"):
                out[b0 : b0 + _CHUNK, k] = np.where((P > 0) & (Q > 0), num / (P * Q), np.nan)
    return out


def average_precision(y_true: np.ndarray, probs: np.ndarray, W: np.ndarray | None = None) -> np.ndarray:
    """AUPRC as average precision ``(B, K)``; NaN where a row's class has no positive weight."""
    y, p = check_inputs(y_true, probs)
    N, K = y.shape
    W = as_weights(W, N)
    out = np.full((W.shape[0], K), np.nan)
    for k in range(K):
        order = np.argsort(-p[:, k], kind="mergesort")
        yk = y[order, k]
        if not yk.any():
            continue
        _, end = _tie_groups(-p[order, k])
        pos = np.flatnonzero(yk)
        last = end[pos] - 1  # each positive's threshold: the last index of its tie group
        upto = np.searchsorted(pos, last, side="right") - 1  # the last positive at or above it
        for b0 in range(0, W.shape[0], _CHUNK):
            Wo = W[b0 : b0 + _CHUNK, order]
            seen = np.cumsum(Wo, axis=1)[:, last]
            wpos = Wo[:, pos]
            tp_cum = np.cumsum(wpos, axis=1)
            tp = tp_cum[:, upto]
            P = tp_cum[:, -1]
            with np.errstate(invalid="ignore", divide="ignore"):
                precision = np.where(seen > 0, tp / np.where(seen > 0, seen, 1.0), 0.0)
                out[b0 : b0 + _CHUNK, k] = np.where(P > 0, (wpos * precision).sum(axis=1) / P, np.nan)
    return out


def brier(y_true: np.ndarray, probs: np.ndarray, W: np.ndarray | None = None) -> np.ndarray:
    """Brier score per class ``(B, K)``: weighted mean of ``(p - y)**2`` over records."""
    y, p = check_inputs(y_true, probs)
    W = as_weights(W, y.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (W @ (p - y) ** 2) / W.sum(axis=1, keepdims=True)


def bin_index(probs: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each probability: ``floor(p * n_bins)``, with p = 1 in the last bin."""
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    return np.minimum((np.asarray(probs, dtype=np.float64) * n_bins).astype(np.int64), n_bins - 1)


def _calibration_gaps(y: np.ndarray, p: np.ndarray, W: np.ndarray, n_bins: int) -> np.ndarray:
    """``(B, K, n_bins)``: weighted sum of y minus weighted sum of p in each class's bins."""
    N, K = y.shape
    b = bin_index(p, n_bins)
    onehot = np.zeros((N, K, n_bins))
    np.put_along_axis(onehot, b[:, :, None], 1.0, axis=2)
    diff = (onehot * (y.astype(np.float64) - p)[:, :, None]).reshape(N, K * n_bins)
    return (W @ diff).reshape(W.shape[0], K, n_bins)


def ece(
    y_true: np.ndarray, probs: np.ndarray, W: np.ndarray | None = None, n_bins: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Expected calibration error: per class ``(B, K)`` and pooled over all (record, class) pairs ``(B,)``."""
    y, p = check_inputs(y_true, probs)
    W = as_weights(W, y.shape[0])
    gaps = _calibration_gaps(y, p, W, n_bins)
    total = W.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.abs(gaps).sum(axis=2) / total[:, None]
        pooled = np.abs(gaps.sum(axis=1)).sum(axis=1) / (total * y.shape[1])
    return per_class, pooled


FMAX_THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)


def f_max(
    y_true: np.ndarray,
    probs: np.ndarray,
    W: np.ndarray | None = None,
    thresholds: Sequence[float] | np.ndarray = FMAX_THRESHOLDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample-centric F-max ``(B,)`` and the threshold that reaches it ``(B,)`` (see module docstring).

    NaN when no threshold has both a record with a predicted label and a record with a true label.
    """
    y, p = check_inputs(y_true, probs)
    N = y.shape[0]
    W = as_weights(W, N)
    t = np.asarray(thresholds, dtype=np.float64)
    n_true = y.sum(axis=1)
    has_true = n_true > 0
    prec = np.zeros((N, t.size))
    rec = np.zeros((N, t.size))
    has_pred = np.zeros((N, t.size), dtype=bool)
    for j, tj in enumerate(t):
        pred = p >= tj
        n_pred = pred.sum(axis=1)
        tp = (pred & y).sum(axis=1)
        has_pred[:, j] = n_pred > 0
        prec[:, j] = np.where(n_pred > 0, tp / np.maximum(n_pred, 1), 0.0)
        rec[:, j] = np.where(has_true, tp / np.maximum(n_true, 1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        P = (W @ prec) / (W @ has_pred)
        R = (W @ rec) / (W @ has_true.astype(np.float64))[:, None]
        F = np.where(P + R > 0, 2 * P * R / (P + R), 0.0)
    F = np.where(np.isnan(P) | np.isnan(R), np.nan, F)
    best = np.full(W.shape[0], np.nan)
    at = np.full(W.shape[0], np.nan)
    ok = ~np.isnan(F).all(axis=1)
    if ok.any():
        j = np.argmax(np.where(np.isnan(F[ok]), -np.inf, F[ok]), axis=1)
        best[ok] = F[ok][np.arange(j.size), j]
        at[ok] = t[j]
    return best, at
