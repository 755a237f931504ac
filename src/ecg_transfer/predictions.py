"""Saved predictions, the project's currency: every run writes them, everything downstream reads them.

Metrics, calibration, plots and reports are recomputed from these files without training again,
so the format is fixed and this module needs neither torch nor a model.

Format of ``predictions_<split>.csv`` (UTF-8, comma-separated, one header line, one row per
record in the order the split lists them):

- ``record_id``: the record's id (string);
- ``true:<label>`` for every label, in the run's label order: the reference, ``0`` or ``1``;
- ``prob:<label>`` for every label, same order: the predicted probability, the aggregate (max by
  default) over the record's windows of ``sigmoid(logit)``, written with the shortest decimal
  text that reads back to the identical float32 (float64 for float64 input).

All ``true:`` columns come first, then all ``prob:`` columns; readers should go by the header
names, not positions. The file is written atomically (a killed run never leaves half a file).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import atomic_write_text

TRUE_PREFIX = "true:"
PROB_PREFIX = "prob:"


def _fmt(x: float, dtype: np.dtype) -> str:
    if dtype == np.float32:
        return np.format_float_positional(np.float32(x), unique=True, trim="-")
    return repr(float(x))


def save_predictions(
    path: str | Path, record_ids: Sequence[str], labels: Sequence[str], y_true: np.ndarray, probs: np.ndarray
) -> Path:
    """Write one split's predictions in the format described in this module's docstring."""
    labels = [str(l) for l in labels]
    if len(set(labels)) != len(labels):
        raise ValueError("label names must be unique")
    y_true = np.asarray(y_true)
    probs = np.asarray(probs)
    n, k = len(record_ids), len(labels)
    if y_true.shape != (n, k) or probs.shape != (n, k):
        raise ValueError(f"expected y_true and probs of shape ({n}, {k}), got {y_true.shape} and {probs.shape}")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("y_true must hold only 0 and 1")
    if not np.isfinite(probs).all():
        raise ValueError(f"{int((~np.isfinite(probs)).sum())} predicted probabilities are NaN or infinite")
    dtype = np.dtype(np.float32) if probs.dtype == np.float32 else np.dtype(np.float64)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["record_id", *(TRUE_PREFIX + l for l in labels), *(PROB_PREFIX + l for l in labels)])
    yt = y_true.astype(np.int64)
    for i, rid in enumerate(record_ids):
        w.writerow([str(rid), *map(str, yt[i]), *(_fmt(v, dtype) for v in probs[i])])
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def load_predictions(path: str | Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Read a predictions CSV: ``(record_ids, label names, y_true uint8 (N, K), probs float64 (N, K))``."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or not rows[0] or rows[0][0] != "record_id":
        raise ValueError(f"{path}: not a predictions file (first column must be 'record_id')")
    header = rows[0]
    true_cols = {h[len(TRUE_PREFIX) :]: i for i, h in enumerate(header) if h.startswith(TRUE_PREFIX)}
    prob_cols = {h[len(PROB_PREFIX) :]: i for i, h in enumerate(header) if h.startswith(PROB_PREFIX)}
    labels = list(true_cols)
    if labels != list(prob_cols) or len(true_cols) + len(prob_cols) + 1 != len(header):
        raise ValueError(f"{path}: header must hold record_id, then true:<label> and prob:<label> for the same labels")
    body = rows[1:]
    ids = [r[0] for r in body]
    y_true = np.array([[int(r[true_cols[l]]) for l in labels] for r in body], dtype=np.uint8).reshape(
        len(body), len(labels)
    )
    probs = np.array([[float(r[prob_cols[l]]) for l in labels] for r in body], dtype=np.float64).reshape(
        len(body), len(labels)
    )
    return ids, labels, y_true, probs
