"""Evaluation from saved predictions: metrics, bootstrap CIs, the CinC 2020 challenge metric,
calibration, reliability diagrams and paired comparisons of runs.

Modules: ``metrics`` (per-class and macro metrics under record weights), ``bootstrap`` (CIs,
paired difference, seeds), ``challenge`` (the challenge metric), ``calibration`` (calibrators and
reliability bins), ``runs`` (evaluate a run directory, write ``evaluation/metrics.json``), ``cli``.
Names are imported lazily so that ``ecg-transfer --help`` does not load scipy and scikit-learn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # what mypy and IDEs read (and nothing else: a misspelt name is an error)
    from .runs import (
        EvaluationError as EvaluationError,
        Predictions as Predictions,
        RunPredictions as RunPredictions,
        align_runs as align_runs,
        compare_runs as compare_runs,
        evaluate_run as evaluate_run,
        load_run as load_run,
        summarise_seeds as summarise_seeds,
    )
    from .bootstrap import (
        HEADLINE as HEADLINE,
        bootstrap_metrics as bootstrap_metrics,
        metric_values as metric_values,
        paired_bootstrap as paired_bootstrap,
        resample_counts as resample_counts,
        seed_summary as seed_summary,
    )
    from .metrics import (
        average_precision as average_precision,
        brier as brier,
        class_status as class_status,
        ece as ece,
        f_max as f_max,
        roc_auc as roc_auc,
    )
    from .challenge import (
        ChallengeMapping as ChallengeMapping,
        challenge_mapping as challenge_mapping,
        challenge_score as challenge_score,
    )
    from .calibration import (
        CALIBRATORS as CALIBRATORS,
        ClassTemperatureScaling as ClassTemperatureScaling,
        IsotonicCalibration as IsotonicCalibration,
        PlattScaling as PlattScaling,
        TemperatureScaling as TemperatureScaling,
        load_calibrator as load_calibrator,
        make_calibrator as make_calibrator,
        reliability_bins as reliability_bins,
        save_calibrator as save_calibrator,
    )
else:  # what runs: the same names, imported on first use (tests/test_lazy_imports.py keeps both equal)
    __getattr__, __dir__, __all__ = lazy_exports(
        __name__,
        {
            "runs": (
                "EvaluationError",
                "Predictions",
                "RunPredictions",
                "align_runs",
                "compare_runs",
                "evaluate_run",
                "load_run",
                "summarise_seeds",
            ),
            "bootstrap": (
                "HEADLINE",
                "bootstrap_metrics",
                "metric_values",
                "paired_bootstrap",
                "resample_counts",
                "seed_summary",
            ),
            "metrics": ("average_precision", "brier", "class_status", "ece", "f_max", "roc_auc"),
            "challenge": ("ChallengeMapping", "challenge_mapping", "challenge_score"),
            "calibration": (
                "CALIBRATORS",
                "ClassTemperatureScaling",
                "IsotonicCalibration",
                "PlattScaling",
                "TemperatureScaling",
                "load_calibrator",
                "make_calibrator",
                "reliability_bins",
                "save_calibrator",
            ),
        },
    )
