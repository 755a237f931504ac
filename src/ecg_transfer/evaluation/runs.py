"""Evaluate a run directory from its saved predictions: no model, no data, no training needed.

Reads ``predictions_test.csv`` (and ``predictions_val.csv`` for calibration) and ``config.json`` of
a run (format: :mod:`ecg_transfer.training.run`, :mod:`ecg_transfer.training.predict`) and writes,
atomically, into ``RUN_DIR/evaluation/``:

- ``metrics.json``: headline metrics with bootstrap CIs, per-class metrics, classes left out and
  why, the challenge metric and how it applies to this label set, calibration before/after;
- ``reliability_<state>_<bins>.png``: reliability diagrams, one grid per calibration state
  (``uncalibrated``, ``temperature``, ...) and bin strategy (``equal-width``, ``equal-mass``), and
  ``reliability.json`` with every bin's range, count, mean prediction and observed frequency;
- ``calibrator_<method>.json`` and ``predictions_test_<method>.csv``: each fitted calibrator and
  the calibrated test predictions (same CSV format as the run's own);
- ``comparison_<other>.json`` / ``seeds.json``: written by :func:`compare_runs` /
  :func:`summarise_seeds`.

``metrics.json`` is written last, so its presence means the figures beside it are complete.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..atomic import atomic_write_json
from ..errors import EcgTransferError
from ..predictions import load_predictions, save_predictions
from . import metrics as M
from .bootstrap import Resamples, bootstrap_metrics, draw_resamples, paired_bootstrap, seed_summary
from .calibration import CALIBRATORS, Calibrator, make_calibrator, reliability_bins, save_calibrator
from .challenge import ChallengeMapping, challenge_mapping

EVAL_DIR = "evaluation"
BIN_STRATEGIES = ("equal-width", "equal-mass")


class EvaluationError(EcgTransferError):
    """A run cannot be evaluated (or compared) as asked; the message says what is missing or differs."""


@dataclass
class Predictions:
    """One split's saved predictions."""

    record_ids: list[str]
    label_names: list[str]
    y_true: np.ndarray  # (N, K) uint8
    probs: np.ndarray  # (N, K) float64

    def reorder(self, record_ids: Sequence[str], label_names: Sequence[str]) -> "Predictions":
        """The same predictions with rows and columns in the given order (both must be permutations)."""
        rpos = {r: i for i, r in enumerate(self.record_ids)}
        cpos = {c: j for j, c in enumerate(self.label_names)}
        rows = [rpos[r] for r in record_ids]
        cols = [cpos[c] for c in label_names]
        return Predictions(
            list(record_ids), list(label_names), self.y_true[np.ix_(rows, cols)], self.probs[np.ix_(rows, cols)]
        )


@dataclass
class RunPredictions:
    run_dir: Path
    config: dict[str, Any]
    test: Predictions
    val: Predictions | None

    @property
    def labels_spec(self) -> str | None:
        """The run's ``task.labels`` (e.g. ``protocol:cinc2020``), None when the config does not say."""
        task = self.config.get("task") or {}
        return task.get("labels") if isinstance(task, dict) else None

    @property
    def name(self) -> str:
        return self.run_dir.resolve().name


def _read_split(path: Path) -> Predictions:
    try:
        ids, labels, y, p = load_predictions(path)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from None
    if len(set(ids)) != len(ids):
        raise EvaluationError(f"{path}: a record id appears more than once")
    return Predictions(ids, labels, y, p)


def load_run(run_dir: str | Path) -> RunPredictions:
    """A run's test (and, when present, validation) predictions and its config (``{}`` if absent)."""
    run_dir = Path(run_dir)
    test_path = run_dir / "predictions_test.csv"
    if not test_path.exists():
        raise EvaluationError(f"{run_dir}: no predictions_test.csv; is this a finished run directory?")
    val_path = run_dir / "predictions_val.csv"
    config_path = run_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
    return RunPredictions(run_dir, config, _read_split(test_path), _read_split(val_path) if val_path.exists() else None)


def align_runs(runs: Sequence[RunPredictions], split: str = "test") -> tuple[np.ndarray, list[np.ndarray], Predictions]:
    """Put several runs' predictions of one split on the same rows and columns, or refuse.

    Comparisons are only meaningful on the same records with the same labels (the original study
    tested its two arms on different folds, its error 1), so differing record sets, label sets or
    reference labels raise :class:`EvaluationError` naming what differs.
    """
    preds = [getattr(r, split) for r in runs]
    for r, p in zip(runs, preds):
        if p is None:
            raise EvaluationError(f"{r.run_dir}: no predictions_{split}.csv")
    ref, ref_run = preds[0], runs[0]
    out = [ref]
    for r, p in zip(runs[1:], preds[1:]):
        if set(p.record_ids) != set(ref.record_ids):
            only_a = sorted(set(ref.record_ids) - set(p.record_ids))
            only_b = sorted(set(p.record_ids) - set(ref.record_ids))
            raise EvaluationError(
                f"{ref_run.run_dir} and {r.run_dir} were tested on different records "
                f"({len(only_a)} only in the first, e.g. {only_a[:3]}; {len(only_b)} only in the second, "
                f"e.g. {only_b[:3]}); a paired comparison needs the same test set for both"
            )
        if set(p.label_names) != set(ref.label_names):
            diff = sorted(set(ref.label_names) ^ set(p.label_names))
            raise EvaluationError(
                f"{ref_run.run_dir} and {r.run_dir} have different label sets "
                f"(differing: {diff[:10]}); compare runs of the same task"
            )
        q = p.reorder(ref.record_ids, ref.label_names)
        if not np.array_equal(q.y_true, ref.y_true):
            bad = np.flatnonzero((q.y_true != ref.y_true).any(axis=1))
            raise EvaluationError(
                f"{ref_run.run_dir} and {r.run_dir} disagree on the reference labels of "
                f"{bad.size} record(s), e.g. {[ref.record_ids[i] for i in bad[:3]]}"
            )
        out.append(q)
    return ref.y_true, [q.probs for q in out], ref


def _mapping_for(run: RunPredictions) -> ChallengeMapping:
    return challenge_mapping(run.test.label_names, run.labels_spec)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "run"


def _calibration_entry(y: np.ndarray, p: np.ndarray, counts: Resamples, n_bins: int, level: float) -> dict:
    b = bootstrap_metrics(y, p, n_bins=n_bins, include=("brier", "ece", "ece_macro"), counts=counts, level=level)
    return {**b["headline"], "per_class": {"brier": b["per_class"]["brier"], "ece": b["per_class"]["ece"]}}


def _reliability(
    out: Path, states: dict[str, np.ndarray], y: np.ndarray, labels: list[str], n_bins: int, plots: bool
) -> list[str]:
    """Reliability bins of every state, strategy and class into reliability.json; the figures if asked."""
    if plots:
        from .plots import reliability_grid

    notes = [f"{int(y[:, k].sum())} pos / {y.shape[0]}" for k in range(len(labels))]
    table: dict[str, Any] = {}
    written = []
    for state, p in states.items():
        table[state] = {}
        for strategy in BIN_STRATEGIES:
            bins = [reliability_bins(y[:, k], p[:, k], n_bins, strategy) for k in range(len(labels))]
            table[state][strategy] = {name: b.to_dict() for name, b in zip(labels, bins)}
            if plots:
                path = out / f"reliability_{state}_{strategy}.png"
                reliability_grid(bins, labels, path, title=f"{state}, {n_bins} {strategy} bins (test)", notes=notes)
                written.append(path.name)
    atomic_write_json(out / "reliability.json", table)
    return ["reliability.json", *written]


def _check_evaluable(run: RunPredictions, calibrate: Sequence[str]) -> None:
    """Refuse an unknown calibration method or an empty test set before the bootstrap's work."""
    unknown = [m for m in calibrate if m not in CALIBRATORS]
    if unknown:
        raise EvaluationError(f"unknown calibration method(s) {unknown}; allowed: {', '.join(CALIBRATORS)}")
    if not run.test.record_ids:
        raise EvaluationError(f"{run.run_dir}: predictions_test.csv holds no record")


def _per_class(y: np.ndarray, labels: list[str], status: list[str | None], boot: dict) -> dict[str, dict]:
    """Each class's counts, whether it was scored (and if not, why) and its metrics with CIs."""
    per_class = {}
    for k, name in enumerate(labels):
        per_class[name] = {
            "n_pos": int(y[:, k].sum()),
            "n_neg": int(y.shape[0] - y[:, k].sum()),
            "status": status[k] or "ok",
            "auc": boot["per_class"]["auc"][k],
            "auprc": boot["per_class"]["auprc"][k],
            "brier": boot["per_class"]["brier"][k],
            "ece": boot["per_class"]["ece"][k],
        }
    return per_class


def _test_metrics(
    run: RunPredictions, boot: dict, mapping: ChallengeMapping, threshold: float, seconds: float
) -> dict[str, Any]:
    """The body of ``metrics.json`` before calibration: headline and per-class metrics, the classes
    left out and why, and how the challenge metric applies to this label set (its score dropped
    from the headline when none of its classes is among the run's labels)."""
    y, labels = run.test.y_true, run.test.label_names
    status = M.class_status(y)
    result: dict[str, Any] = {
        "run_dir": str(run.run_dir),
        "split": "test",
        "n_records": len(run.test.record_ids),
        "labels": labels,
        "labels_spec": run.labels_spec,
        "config_seed": run.config.get("seed"),
        "settings": boot["settings"],
        "headline": boot["headline"],
        "classes_left_out": {labels[k]: s for k, s in enumerate(status) if s},
        "per_class": _per_class(y, labels, status, boot),
        "challenge": {**mapping.to_dict(), "threshold": threshold, "score": boot["headline"].get("challenge")},
        "bootstrap_seconds": round(seconds, 3),
        "files": [],
    }
    if not mapping.classes:
        result["headline"].pop("challenge", None)
    return result


def _check_validation(run: RunPredictions) -> Predictions:
    """The validation predictions calibrators are fitted on; never the test set's."""
    if run.val is None:
        raise EvaluationError(
            f"{run.run_dir}: calibration needs predictions_val.csv (calibrators are fitted "
            "on validation predictions, never on the test set)"
        )
    if run.val.label_names != run.test.label_names:
        raise EvaluationError(f"{run.run_dir}: validation and test predictions have different labels")
    return run.val


def _calibrated_entry(
    c: Calibrator,
    y: np.ndarray,
    pc: np.ndarray,
    auc_before: np.ndarray,
    labels: list[str],
    counts: Resamples,
    n_bins: int,
    level: float,
) -> dict[str, Any]:
    """One fitted calibrator's ``calibration`` entry: Brier and ECE with CIs on the same resamples
    as before calibration, the largest change of a class's AUC (a monotone map per class should
    leave it unchanged), its parameters, and its notes with class numbers replaced by names."""
    change = np.abs(M.roc_auc(y, pc)[0] - auc_before)
    entry = _calibration_entry(y, pc, counts, n_bins, level)
    entry["max_auc_change"] = float(np.nanmax(change)) if np.isfinite(change).any() else 0.0
    entry["params"] = {
        k: v for k, v in c.to_dict().items() if k in ("temperature", "temperatures", "slopes", "intercepts")
    }
    entry["notes"] = [
        re.sub(r"^class (\d+)", lambda m: f"class {labels[int(m.group(1))]}", note) for note in c.notes or []
    ]
    return entry


def _calibrate(
    run: RunPredictions, calibrate: Sequence[str], counts: Resamples, n_bins: int, level: float, out: Path
) -> tuple[dict[str, Any], dict[str, np.ndarray], list[str]]:
    """Fit each calibrator on the validation predictions and apply it to the test predictions.

    Returns the ``calibration`` section of ``metrics.json``, the calibrated test probabilities by
    method (for the reliability diagrams) and the files written: each calibrator and its
    calibrated test predictions, in the run's CSV format.
    """
    val = _check_validation(run)
    test = run.test
    y, p, labels = test.y_true, test.probs, test.label_names
    cal: dict[str, Any] = {
        "fitted_on": "validation",
        "n_val_records": len(val.record_ids),
        "uncalibrated": _calibration_entry(y, p, counts, n_bins, level),
    }
    auc_before = M.roc_auc(y, p)[0]
    states: dict[str, np.ndarray] = {}
    files: list[str] = []
    for method in calibrate:
        c = make_calibrator(method).fit(val.probs, val.y_true)
        pc = c.transform(p)
        cal[method] = _calibrated_entry(c, y, pc, auc_before, labels, counts, n_bins, level)
        save_calibrator(c, out / f"calibrator_{method}.json")
        save_predictions(out / f"predictions_test_{method}.csv", test.record_ids, labels, y, pc)
        files += [f"calibrator_{method}.json", f"predictions_test_{method}.csv"]
        states[method] = pc
    return cal, states, files


def evaluate_run(
    run_dir: str | Path,
    *,
    calibrate: Sequence[str] = (),
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    n_bins: int = 10,
    threshold: float = 0.5,
    plots: bool = True,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Every metric of a run's test predictions, with bootstrap CIs; calibrators fitted on its
    validation predictions only. Writes ``out`` (default ``RUN_DIR/evaluation/``) and returns what
    its ``metrics.json`` holds."""
    run = load_run(run_dir)
    _check_evaluable(run, calibrate)
    y, p, labels = run.test.y_true, run.test.probs, run.test.label_names
    out = run.run_dir / EVAL_DIR if out is None else Path(out)
    mapping = _mapping_for(run)

    t0 = time.perf_counter()
    counts = draw_resamples(y, n_resamples, seed)  # the rare-class rule: every scored class in every resample
    boot = bootstrap_metrics(
        y, p, counts=counts, level=level, n_bins=n_bins, challenge=mapping, threshold=threshold, seed=seed
    )
    result = _test_metrics(run, boot, mapping, threshold, time.perf_counter() - t0)

    states = {"uncalibrated": p}
    if calibrate:
        result["calibration"], calibrated, files = _calibrate(run, calibrate, counts, n_bins, level, out)
        states.update(calibrated)
        result["files"] += files
    result["files"] += _reliability(out, states, y, labels, n_bins, plots)
    atomic_write_json(out / "metrics.json", result)  # last: its presence means the files beside it are complete
    return result


def _settings_kw(n_resamples: int, seed: int, level: float, n_bins: int, threshold: float) -> dict:
    return dict(n_resamples=n_resamples, seed=seed, level=level, n_bins=n_bins, threshold=threshold)


def compare_runs(
    runs_a: Sequence[str | Path],
    runs_b: Sequence[str | Path],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    n_bins: int = 10,
    threshold: float = 0.5,
    write: bool = True,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Paired bootstrap of A - B (e.g. fine-tuned minus standalone) on the same test records.

    Each side is one run or several seeds (an arm's value is its seed mean). Refuses runs whose test
    records, labels or reference labels differ. Written to ``comparison_<B>.json`` in ``out`` (default
    ``<first A run>/evaluation/``).
    """
    a = [load_run(r) for r in runs_a]
    b = [load_run(r) for r in runs_b]
    if not a or not b:
        raise EvaluationError("a comparison needs at least one run on each side")
    y, probs, ref = align_runs([*a, *b])
    mapping = _mapping_for(a[0])
    res = paired_bootstrap(
        y,
        probs[: len(a)],
        probs[len(a) :],
        challenge=mapping if mapping.classes else None,
        **_settings_kw(n_resamples, seed, level, n_bins, threshold),
    )
    res.update(
        {
            "a": [str(r.run_dir) for r in a],
            "b": [str(r.run_dir) for r in b],
            "n_records": len(ref.record_ids),
            "challenge": mapping.to_dict(),
        }
    )
    if write:
        path = (a[0].run_dir / EVAL_DIR if out is None else Path(out)) / f"comparison_{_safe(b[0].name)}.json"
        atomic_write_json(path, res)
        res["path"] = str(path)
    return res


def summarise_seeds(
    run_dirs: Sequence[str | Path],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    n_bins: int = 10,
    threshold: float = 0.5,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Several seeds of one arm: mean +- sd over seeds and the pooled bootstrap CI of the seed mean.

    Written to ``out`` (default ``<first run>/evaluation/seeds.json``).
    """
    runs = [load_run(r) for r in run_dirs]
    if len(runs) < 2:
        raise EvaluationError("a seed summary needs at least two runs")
    y, probs, _ = align_runs(runs)
    mapping = _mapping_for(runs[0])
    res = seed_summary(
        y,
        probs,
        challenge=mapping if mapping.classes else None,
        **_settings_kw(n_resamples, seed, level, n_bins, threshold),
    )
    res["runs"] = [str(r.run_dir) for r in runs]
    res["config_seeds"] = [r.config.get("seed") for r in runs]
    path = Path(out) if out is not None else runs[0].run_dir / EVAL_DIR / "seeds.json"
    atomic_write_json(path, res)
    res["path"] = str(path)
    return res


__all__ = [
    "EVAL_DIR",
    "EvaluationError",
    "Predictions",
    "RunPredictions",
    "align_runs",
    "compare_runs",
    "evaluate_run",
    "load_run",
    "summarise_seeds",
]
