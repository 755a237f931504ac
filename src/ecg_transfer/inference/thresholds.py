"""Decision thresholds per class, chosen on a run's *validation* predictions, never on test.

A probability becomes a decision (``p >= threshold``) by one of these rules:

- ``fmax``: per class, the threshold on the grid 0.00, 0.01, ..., 1.00 that maximises that class's
  F1 on validation -- :func:`ecg_transfer.evaluation.metrics.f_max` applied to the one class (for a
  single class its sample-centric F-max is the class's F1); of equal F1 the lowest threshold wins.
- ``sensitivity:S``: per class, the largest threshold at which at least a fraction ``S`` of the
  validation positives have ``p >= threshold``: the ``ceil(S * n_pos)``-th largest positive score.
- a number in [0, 1]: the same fixed threshold for every class (no validation needed).

With ``--calibrate`` the validation probabilities are calibrated with the same calibrator first, so
a threshold applies to the probabilities it will meet (both rounded to float32, the precision
``predict`` writes). A class with no positive validation record cannot be fitted: it falls back to
:data:`FALLBACK` and the fact is listed in ``notes``; the classes fitted on fewer than
:data:`FEW_VALIDATION_POSITIVES` positive validation records are named in one note too (such a
threshold rests on a record or two and may not carry over to new records).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError

FALLBACK = 0.5
#: A threshold fitted on fewer positive validation records than this is named in ``notes``.
FEW_VALIDATION_POSITIVES = 5
RULE_HELP = "fmax, sensitivity:S (0 < S <= 1), or a fixed number in [0, 1]"


@dataclass
class Thresholds:
    """Per-class thresholds in label order, and how they were chosen."""

    rule: str
    label_names: list[str]
    values: np.ndarray  # (K,) float64
    fitted_on: str | None = None  # e.g. "predictions_val.csv: 12 records"
    notes: list[str] = field(default_factory=list)
    validation: dict[str, dict[str, Any]] | None = None  # per label: n_pos, sensitivity, specificity, f1

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "fitted_on": self.fitted_on,
            "notes": list(self.notes),
            "values": {l: float(v) for l, v in zip(self.label_names, self.values)},
            "validation": self.validation,
        }


def parse_rule(text: str | float) -> tuple[str, float | None]:
    """``"fmax"`` -> ("fmax", None); ``"sensitivity:0.9"`` -> ("sensitivity", 0.9); ``"0.3"`` -> ("fixed", 0.3)."""
    s = str(text).strip().lower()
    if s == "fmax":
        return "fmax", None
    if s.startswith("sensitivity:"):
        try:
            target = float(s.split(":", 1)[1])
        except ValueError:
            target = math.nan
        if not 0.0 < target <= 1.0:
            raise ConfigError(f"threshold rule {text!r}: the sensitivity must be in (0, 1]; allowed: {RULE_HELP}")
        return "sensitivity", target
    try:
        value = float(s)
    except ValueError:
        raise ConfigError(f"threshold rule {text!r} is not allowed; allowed: {RULE_HELP}") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"threshold {text!r} is outside [0, 1]; allowed: {RULE_HELP}")
    return "fixed", value


def fmax_thresholds(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class F1-maximising grid thresholds ``(K,)`` and the F1 reached; NaN where undefined."""
    from ..evaluation.metrics import f_max

    K = y.shape[1]
    t, f = np.full(K, np.nan), np.full(K, np.nan)
    for k in range(K):
        if not y[:, k].any():
            continue
        best, at = f_max(y[:, k : k + 1], p[:, k : k + 1])
        f[k], t[k] = best[0], at[0]
    return t, f


def sensitivity_thresholds(y: np.ndarray, p: np.ndarray, target: float) -> np.ndarray:
    """Per class, the largest threshold keeping validation sensitivity >= target; NaN without positives."""
    K = y.shape[1]
    out = np.full(K, np.nan)
    for k in range(K):
        pos = np.sort(np.asarray(p[y[:, k].astype(bool), k], dtype=np.float64))[::-1]
        if pos.size == 0:
            continue
        need = max(1, math.ceil(target * pos.size - 1e-9))  # positives that must reach the threshold
        out[k] = pos[need - 1]
    return out


def decision_stats(
    y: np.ndarray, p: np.ndarray, thresholds: np.ndarray, labels: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """What the thresholds do on the data they were chosen on, per class."""
    pred = p >= thresholds[None, :]
    y = y.astype(bool)
    out = {}
    for k, name in enumerate(labels):
        tp = int((pred[:, k] & y[:, k]).sum())
        fp = int((pred[:, k] & ~y[:, k]).sum())
        n_pos, n_neg = int(y[:, k].sum()), int((~y[:, k]).sum())
        out[name] = {
            "n_pos": n_pos,
            "n_neg": n_neg,
            "sensitivity": tp / n_pos if n_pos else None,
            "specificity": (n_neg - fp) / n_neg if n_neg else None,
            "f1": 2 * tp / (2 * tp + fp + (n_pos - tp)) if (2 * tp + fp + n_pos - tp) else None,
        }
    return out


def few_positives_note(labels: Sequence[str], n_pos: np.ndarray, values: np.ndarray) -> list[str]:
    """One note naming the fitted thresholds (not NaN) that rest on 1 to
    :data:`FEW_VALIDATION_POSITIVES` - 1 positive validation records, with the count and threshold
    of each; empty when there is none."""
    few = [
        f"{labels[k]} ({int(n_pos[k])} positive{'' if int(n_pos[k]) == 1 else 's'}, threshold {values[k]:.3g})"
        for k in range(len(labels))
        if 0 < int(n_pos[k]) < FEW_VALIDATION_POSITIVES and not np.isnan(values[k])
    ]
    if not few:
        return []
    return [
        f"threshold(s) fitted on fewer than {FEW_VALIDATION_POSITIVES} positive validation records, "
        f"so they may not carry over to new records: {', '.join(few)}"
    ]


def choose_thresholds(
    rule: str | float,
    label_names: Sequence[str],
    y_val: np.ndarray | None = None,
    p_val: np.ndarray | None = None,
    *,
    fitted_on: str | None = None,
) -> Thresholds:
    """Thresholds by ``rule`` from validation labels and (already calibrated, if so wanted) probabilities."""
    kind, param = parse_rule(rule)
    labels = [str(l) for l in label_names]
    K = len(labels)
    notes: list[str] = []
    number = math.nan if param is None else param  # the rule's number (fmax has none)
    if kind == "fixed":
        values = np.full(K, number)
    else:
        if y_val is None or p_val is None:
            raise ConfigError(
                f"threshold rule {rule!r} needs the run's validation predictions "
                "(predictions_val.csv); pass a fixed number instead"
            )
        if y_val.shape != (y_val.shape[0], K) or p_val.shape != y_val.shape:
            raise ValueError(f"validation labels/probabilities must be (records, {K})")
        values = fmax_thresholds(y_val, p_val)[0] if kind == "fmax" else sensitivity_thresholds(y_val, p_val, number)
        for k in np.flatnonzero(np.isnan(values)):
            notes.append(f"{labels[k]}: no positive validation record, threshold set to {FALLBACK} (not fitted)")
        notes += few_positives_note(labels, y_val.sum(axis=0), values)
        values = np.where(np.isnan(values), FALLBACK, values)
    rule_text = "fmax" if kind == "fmax" else f"sensitivity:{param:g}" if kind == "sensitivity" else f"{param:g}"
    stats = decision_stats(y_val, p_val, values, labels) if y_val is not None and p_val is not None else None
    return Thresholds(rule_text, labels, values.astype(np.float64), fitted_on if stats else None, notes, stats)


def run_thresholds(
    run_dir: str | Path,
    rule: str | float,
    label_names: Sequence[str],
    calibrator: Any | None = None,
    calibrator_name: str | None = None,
) -> Thresholds:
    """:func:`choose_thresholds` on ``RUN_DIR/predictions_val.csv`` (when present), columns put in
    ``label_names`` order and probabilities passed through ``calibrator`` when given."""
    from ..predictions import load_predictions

    path = Path(run_dir) / "predictions_val.csv"
    labels = [str(l) for l in label_names]
    if not path.exists():
        return choose_thresholds(rule, labels)
    try:
        _, val_labels, y, p = load_predictions(path)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if sorted(val_labels) != sorted(labels):
        raise ConfigError(f"{path}: its labels {val_labels} are not the model's {labels}")
    cols = [val_labels.index(l) for l in labels]
    y, p = y[:, cols], p[:, cols]
    if calibrator is not None:  # at the precision predict gives new records' calibrated probabilities
        p = np.asarray(calibrator.transform(p), dtype=np.float32).astype(np.float64)
    where = f"{path.name}: {y.shape[0]} records" + (f", calibrated with {calibrator_name}" if calibrator_name else "")
    return choose_thresholds(rule, labels, y, p, fitted_on=where)
