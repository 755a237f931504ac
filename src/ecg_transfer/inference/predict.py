"""Predict with a finished run on new records, the way the run predicted its own test set.

Per record: leads put in the model's order (by name, case-insensitively: ``aVR`` == ``AVR``),
resampled to the model's rate with :func:`ecg_transfer.signal.resample` (polyphase, as the cache
does), then the run's own path -- :meth:`LoadedModel.predict`: the saved standardisation, sliding
windows of the model's crop at its stride, sigmoid, the saved aggregation (max by default). Then,
optionally, the run's calibrator (fitted on validation by ``ecg-transfer evaluate --calibrate``) and
per-class thresholds chosen on validation (:mod:`.thresholds`).

A record that cannot be used (unreadable, wrong or missing leads, NaN, shorter than one window,
a rate that cannot be resampled) is listed with the reason; the others are still predicted.

Output (:func:`write_outputs`), for ``--out predictions.csv``:

- ``predictions.csv``: one row per predicted record: ``record_id`` (the column name of the run's
  own ``predictions_*.csv``, so the files join), then ``prob:<label>`` for every label, then
  ``decision:<label>`` (0/1, ``prob >= threshold``), labels in the model's order; probabilities,
  calibrated or not, at float32 precision (the network's), written as the shortest text that reads
  back to the same float32;
- ``predictions.json``: the run, model, rate, crop, stride, aggregation, calibration, the thresholds
  with the rule that chose them, counts, and the errors;
- ``predictions_errors.csv``: ``record,problem`` for every record that failed (header only if none),
  always rewritten so an old file never survives a new run.

When no record could be predicted nothing is written (empty files would pass for results).
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..atomic import atomic_write_json, atomic_write_text
from ..datasets.base import STANDARD_LEADS, RecordProblem
from ..errors import ConfigError, EcgTransferError, RecordError
from ..signal import resample
from .inputs import RawRecord, iter_inputs, unique_ids
from .thresholds import Thresholds, run_thresholds

PROB_PREFIX = "prob:"
#: The predictions CSV's first column: the record id, named as in the run's ``predictions_*.csv``.
RECORD_COLUMN = "record_id"
DECISION_PREFIX = "decision:"
#: Records per batch handed to the network (padded to the longest; windows never cross into padding).
CHUNK_RECORDS = 64


def calibrator_path(run_dir: str | Path, method: str) -> Path:
    return Path(run_dir) / "evaluation" / f"calibrator_{method}.json"


def load_run_calibrator(run_dir: str | Path, method: str, n_classes: int):
    """The calibrator ``ecg-transfer evaluate RUN_DIR --calibrate METHOD`` fitted on validation."""
    from ..evaluation.calibration import CALIBRATORS, load_calibrator

    if method not in CALIBRATORS:
        raise ConfigError(f"unknown calibration method {method!r}; allowed: {', '.join(CALIBRATORS)}")
    path = calibrator_path(run_dir, method)
    if not path.exists():
        raise ConfigError(
            f"{run_dir} has no fitted {method} calibrator ({path} is missing); fit it on the "
            f"validation predictions first: ecg-transfer evaluate {run_dir} --calibrate {method}"
        )
    try:
        cal = load_calibrator(path)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"{path}: not a calibrator file ({exc})") from None
    if cal.n_classes != n_classes:
        raise ConfigError(f"{path} was fitted on {cal.n_classes} classes but the model has {n_classes}")
    return cal


def expected_leads(n_in: int) -> tuple[str, ...] | None:
    """Lead names the model was trained on: the 12 standard leads in PTB-XL/CinC order (every dataset
    adapter yields them in that order), or None for a model with another lead count (order unknown)."""
    return STANDARD_LEADS if n_in == len(STANDARD_LEADS) else None


def lead_order(names: Sequence[str], expected: Sequence[str], record: str) -> np.ndarray:
    """Rows of a record holding ``names`` that give the ``expected`` leads, matched case-insensitively."""
    upper = [str(n).strip().upper() for n in names]
    if len(set(upper)) != len(upper):
        raise RecordError(record, f"lead names repeat: {list(names)}")
    pos = {n: i for i, n in enumerate(upper)}
    missing = [e for e in expected if e.upper() not in pos]
    extra = [n for n, u in zip(names, upper) if u not in {e.upper() for e in expected}]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing lead(s) {missing}")
        if extra:
            parts.append(f"unknown lead(s) {extra}")
        raise RecordError(
            record,
            f"leads {list(names)} do not match the model's {list(expected)} "
            f"({'; '.join(parts)}); names are matched case-insensitively",
        )
    return np.array([pos[e.upper()] for e in expected], dtype=np.int64)


@dataclass
class PredictionResult:
    """Probabilities ``(n, K)`` and decisions of the predicted records; failed ones in ``errors``."""

    record_ids: list[str]
    probs: np.ndarray
    decisions: np.ndarray
    errors: list[RecordProblem]
    sources: list[str] = field(default_factory=list)


class Predictor:
    """A run ready to predict: the model, its preprocessing, an optional calibrator and thresholds."""

    def __init__(
        self,
        loaded: Any,
        *,
        run_dir: str | Path | None = None,
        calibrator: Any = None,
        calibration: str | None = None,
        thresholds: Thresholds | None = None,
        batch_size: int = 128,
        device: str = "cpu",
    ):
        self.loaded = loaded
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.calibrator = calibrator
        self.calibration = calibration
        self.label_names = list(loaded.label_names)
        self.n_leads = int(loaded.n_leads)  # the records' leads (an "stft" network takes leads x bins channels)
        self.leads = expected_leads(self.n_leads)
        self.thresholds = thresholds
        self.batch_size = batch_size
        self.device = device

    @classmethod
    def from_run(
        cls,
        run_dir: str | Path,
        *,
        calibrate: str | None = None,
        threshold: str | float | None = "fmax",
        batch_size: int = 128,
        device: str = "cpu",
    ) -> "Predictor":
        """Load ``RUN_DIR/model.pt``, the calibrator ``calibrate`` fitted by ``evaluate`` (if given)
        and thresholds by ``threshold`` (:mod:`.thresholds`; None: probabilities only, decisions at 0.5)."""
        from ..training.modelfile import load_model_file, resolve_model_path

        model_path = resolve_model_path(run_dir)
        run_dir = model_path.parent
        loaded = load_model_file(model_path)
        k = len(loaded.label_names)
        cal = load_run_calibrator(run_dir, calibrate, k) if calibrate else None
        thr = None if threshold is None else run_thresholds(run_dir, threshold, loaded.label_names, cal, calibrate)
        return cls(
            loaded,
            run_dir=run_dir,
            calibrator=cal,
            calibration=calibrate,
            thresholds=thr,
            batch_size=batch_size,
            device=device,
        )

    # -- preprocessing ---------------------------------------------------------------------
    @property
    def fs(self) -> float:
        return self.loaded.fs

    @property
    def crop_len(self) -> int:
        return self.loaded.crop_len

    def prepare(self, rec: RawRecord) -> np.ndarray:
        """``(leads, samples)`` float32 mV at the model's rate, leads in its order; RecordError if unusable."""
        x = np.asarray(rec.signal)
        name = rec.source if rec.record_id == Path(rec.source).stem else f"{rec.source} ({rec.record_id})"
        if x.ndim != 2:
            raise RecordError(name, f"signal has shape {x.shape}, expected (leads, samples)")
        if rec.leads is not None and self.leads is not None:
            x = x[lead_order(rec.leads, self.leads, name)]
        elif x.shape[0] != self.n_leads:
            raise RecordError(name, f"has {x.shape[0]} leads, the model takes {self.n_leads}")
        x = np.asarray(x, dtype=np.float64)
        if not np.isfinite(x).all():
            bad = np.argwhere(~np.isfinite(x))[0]
            raise RecordError(
                name,
                f"{int((~np.isfinite(x)).sum())} NaN or infinite value(s), first in lead {bad[0]} at sample {bad[1]}",
            )
        try:
            x = resample(x, rec.fs, self.fs, axis=-1)
        except ValueError as exc:
            raise RecordError(name, f"cannot resample to the model's {self.fs:g} Hz: {exc}") from None
        if x.shape[1] < self.crop_len:
            raise RecordError(
                name,
                f"{x.shape[1]} samples at {self.fs:g} Hz ({x.shape[1] / self.fs:g} s) is shorter "
                f"than one window of {self.crop_len} samples ({self.crop_len / self.fs:g} s)",
            )
        return x.astype(np.float32)

    # -- prediction ------------------------------------------------------------------------
    def _network(self, signals: Sequence[np.ndarray]) -> np.ndarray:
        """Uncalibrated record probabilities of prepared signals of any lengths (padded per chunk)."""
        lengths = np.array([s.shape[1] for s in signals], dtype=np.int64)
        X = np.zeros((len(signals), self.n_leads, int(lengths.max())), dtype=np.float32)
        for i, s in enumerate(signals):
            X[i, :, : s.shape[1]] = s
        return self.loaded.predict(X, lengths=lengths, batch_size=self.batch_size, device=self.device)

    def finish(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated (if asked) probabilities and 0/1 decisions from network probabilities."""
        probs = np.asarray(probs)
        if self.calibrator is not None and probs.shape[0]:  # float32 as uncalibrated: one precision either way
            probs = np.asarray(self.calibrator.transform(probs), dtype=np.float32)
        t = self.thresholds.values if self.thresholds is not None else np.full(len(self.label_names), 0.5)
        return probs, (probs >= t[None, :]).astype(np.uint8)

    def predict_array(self, X: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and decisions for ``X`` ``(n, leads, samples)`` mV at ``fs`` Hz, leads in the
        model's order: the batch path (one resampling call for the whole array)."""
        X = np.asarray(X)
        if X.ndim != 3 or X.shape[1] != self.n_leads:
            raise ValueError(f"expected (records, {self.n_leads}, samples), got {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("X holds NaN or infinite values")
        Xr = np.asarray(resample(np.asarray(X, dtype=np.float64), fs, self.fs, axis=-1), dtype=np.float32)
        if Xr.shape[2] < self.crop_len:
            raise ValueError(f"{Xr.shape[2]} samples at {self.fs:g} Hz is shorter than one window of {self.crop_len}")
        return self.finish(self.loaded.predict(Xr, batch_size=self.batch_size, device=self.device))

    def predict_records(
        self, records: Iterable[RawRecord | RecordProblem], *, chunk: int = CHUNK_RECORDS, on_error: Any = None
    ) -> PredictionResult:
        """Predict a stream of records (see :func:`.inputs.iter_inputs`); problems are collected, and
        ``on_error(problem)`` is called for each as it happens (e.g. to print it)."""
        ids: list[str] = []
        sources: list[str] = []
        parts: list[np.ndarray] = []
        errors: list[RecordProblem] = []
        batch: list[tuple[RawRecord, np.ndarray]] = []

        def flush() -> None:
            if batch:
                parts.append(self._network([x for _, x in batch]))
                ids.extend(r.record_id for r, _ in batch)
                sources.extend(r.source for r, _ in batch)
                batch.clear()

        def fail(problem: RecordProblem) -> None:
            errors.append(problem)
            if on_error is not None:
                on_error(problem)

        for rec in records:
            if isinstance(rec, RecordProblem):
                fail(rec)
                continue
            try:
                batch.append((rec, self.prepare(rec)))
            except RecordError as exc:
                fail(RecordProblem(exc.record, exc.problem))
                continue
            if len(batch) >= chunk:
                flush()
        flush()
        K = len(self.label_names)
        raw = np.concatenate(parts) if parts else np.zeros((0, K), dtype=np.float32)
        probs, decisions = self.finish(raw)
        return PredictionResult(unique_ids(ids, sources), probs, decisions, errors, sources)

    def predict_paths(
        self, inputs: Sequence[str | Path], *, fs: float | None = None, on_error: Any = None
    ) -> PredictionResult:
        """Predict WFDB / CinC records, folders of them and ``.npy`` arrays (:mod:`.inputs`)."""
        return self.predict_records(iter_inputs(inputs, fs=fs, n_leads=self.n_leads), on_error=on_error)

    # -- description -----------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What a reader of the outputs needs to know about how they were made."""
        lm = self.loaded
        return {
            "run_dir": None if self.run_dir is None else str(self.run_dir),
            "model": lm.spec.get("name"),
            "labels": self.label_names,
            "fs": lm.fs,
            "crop_len": lm.crop_len,
            "stride": lm.stride,
            "aggregate": lm.aggregate,
            "leads": list(self.leads) if self.leads else None,
            "calibration": self.calibration,
            "thresholds": self.thresholds.to_dict()
            if self.thresholds is not None
            else {"rule": "0.5 (default, no rule given)", "values": {l: 0.5 for l in self.label_names}},
        }


def _fmt(v: float, dtype: np.dtype) -> str:
    if dtype == np.float32:
        return np.format_float_positional(np.float32(v), unique=True, trim="-")
    return repr(float(v))


def sidecar_paths(out: str | Path) -> tuple[Path, Path]:
    """``predictions.csv`` -> (``predictions.json``, ``predictions_errors.csv``)."""
    out = Path(out)
    if out.suffix.lower() == ".json":
        raise ConfigError(f"--out {out}: give a .csv file (its .json sidecar is written beside it)")
    return out.with_suffix(".json"), out.with_name(out.stem + "_errors.csv")


def predictions_csv(result: PredictionResult, labels: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([RECORD_COLUMN, *(PROB_PREFIX + l for l in labels), *(DECISION_PREFIX + l for l in labels)])
    dtype = np.dtype(np.float32) if result.probs.dtype == np.float32 else np.dtype(np.float64)
    for i, rid in enumerate(result.record_ids):
        w.writerow([rid, *(_fmt(v, dtype) for v in result.probs[i]), *map(str, result.decisions[i].tolist())])
    return buf.getvalue()


def write_outputs(
    out: str | Path, result: PredictionResult, predictor: Predictor, extra: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write the predictions CSV, its JSON sidecar and the errors CSV (see the module docstring).
    Refuses a result without a predicted record: empty output files would pass for results."""
    if not result.record_ids:
        raise EcgTransferError(f"{out}: no record was predicted ({len(result.errors)} failed); nothing written")
    out = Path(out)
    meta_path, err_path = sidecar_paths(out)
    atomic_write_text(out, predictions_csv(result, predictor.label_names))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["record", "problem"])
    for e in result.errors:
        w.writerow([e.record, e.problem])
    atomic_write_text(err_path, buf.getvalue())
    meta = {
        **predictor.describe(),
        "n_predicted": len(result.record_ids),
        "n_failed": len(result.errors),
        "predictions": out.name,
        "errors_file": err_path.name,
        "errors": [e.to_dict() for e in result.errors],
        **(extra or {}),
    }
    atomic_write_json(meta_path, meta)
    return {"predictions": out, "metadata": meta_path, "errors": err_path}


def exit_code(result: PredictionResult) -> int:
    """0: every record predicted; 3: some failed (the rest written); 2: none predicted."""
    if not result.record_ids:
        return 2
    return 3 if result.errors else 0


def print_problem(problem: RecordProblem, stream: Any = None) -> None:
    print(f"ecg-transfer predict: skipped {problem.record}: {problem.problem}", file=stream or sys.stderr)


__all__ = [
    "CHUNK_RECORDS",
    "DECISION_PREFIX",
    "PROB_PREFIX",
    "RECORD_COLUMN",
    "PredictionResult",
    "Predictor",
    "calibrator_path",
    "exit_code",
    "expected_leads",
    "lead_order",
    "load_run_calibrator",
    "predictions_csv",
    "sidecar_paths",
    "write_outputs",
]
