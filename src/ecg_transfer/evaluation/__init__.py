"""Evaluation from saved predictions: metrics, bootstrap CIs, the CinC 2020 challenge metric,
calibration, reliability diagrams and paired comparisons of runs.

Modules: ``metrics`` (per-class and macro metrics under record weights), ``bootstrap`` (CIs,
paired difference, seeds), ``challenge`` (the challenge metric), ``calibration`` (calibrators and
reliability bins), ``runs`` (evaluate a run directory, write ``evaluation/metrics.json``), ``cli``.
Names are imported lazily so that ``ecg-transfer --help`` does not load scipy and scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "evaluate_run": "runs", "compare_runs": "runs", "summarise_seeds": "runs", "load_run": "runs",
    "align_runs": "runs", "EvaluationError": "runs", "Predictions": "runs", "RunPredictions": "runs",
    "bootstrap_metrics": "bootstrap", "paired_bootstrap": "bootstrap", "seed_summary": "bootstrap",
    "resample_counts": "bootstrap", "metric_values": "bootstrap", "HEADLINE": "bootstrap",
    "roc_auc": "metrics", "average_precision": "metrics", "brier": "metrics", "ece": "metrics",
    "f_max": "metrics", "class_status": "metrics",
    "challenge_score": "challenge", "challenge_mapping": "challenge", "ChallengeMapping": "challenge",
    "make_calibrator": "calibration", "load_calibrator": "calibration", "save_calibrator": "calibration",
    "reliability_bins": "calibration", "CALIBRATORS": "calibration", "TemperatureScaling": "calibration",
    "ClassTemperatureScaling": "calibration", "PlattScaling": "calibration", "IsotonicCalibration": "calibration",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
