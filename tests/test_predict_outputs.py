"""``ecg-transfer predict``'s files as a reader joins and quotes them: the record column is named as
in the run's own ``predictions_*.csv``, calibrated probabilities have the precision of uncalibrated
ones, and thresholds fitted on a few validation positives are named where the notes go."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from training_synth import LABELS, train_tiny_run

from ecg_transfer.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished run, evaluated with a temperature calibrator (as ``predict --calibrate`` needs)."""
    from ecg_transfer.evaluation.runs import evaluate_run

    run = train_tiny_run(tmp_path_factory.mktemp("predict_outputs") / "run", n=48)
    evaluate_run(run, calibrate=["temperature"], n_resamples=20, plots=False)
    return run


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("records")
    rng = np.random.default_rng(0)
    for i in range(3):
        np.save(folder / f"r{i}.npy", rng.normal(0, 0.3, (12, 1000)).astype(np.float32))
    return folder


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _predict(run_dir: Path, records: Path, out: Path, *extra: str) -> int:
    return main(["predict", str(run_dir), str(records), "--fs", "100", "--out", str(out), *extra])


def test_the_record_column_is_the_runs_record_id_and_joins(run_dir: Path, records: Path, tmp_path: Path, capsys):
    """Guide §8: ``record_id``, the column of ``predictions_test.csv``: the two files join on it."""
    import pandas as pd

    from ecg_transfer.predictions import load_predictions

    assert _predict(run_dir, records, tmp_path / "p.csv", "--threshold", "0.5") == 0
    capsys.readouterr()
    header, rows = _rows(tmp_path / "p.csv")
    assert header[0] == "record_id" == _rows(run_dir / "predictions_test.csv")[0][0]
    assert [r[0] for r in rows] == ["r0", "r1", "r2"]
    new = pd.read_csv(tmp_path / "p.csv", dtype={"record_id": str})
    ids, *_ = load_predictions(run_dir / "predictions_test.csv")
    own = pd.DataFrame({"record_id": ["r1", *ids[:2]], "site": ["x", "y", "z"]})
    assert new.merge(own, on="record_id")["record_id"].tolist() == ["r1"]


def _significant_digits(text: str) -> int:
    return len(text.lstrip("0.").replace(".", "").rstrip("0")) if text.strip("0.") else 1


def test_calibrated_probabilities_have_the_uncalibrated_precision(
    run_dir: Path, records: Path, tmp_path: Path, capsys
) -> None:
    """``--calibrate`` used to write 17 digits (float64) against float32's shortest text without it."""
    assert _predict(run_dir, records, tmp_path / "raw.csv", "--threshold", "0.5") == 0
    assert _predict(run_dir, records, tmp_path / "cal.csv", "--threshold", "0.5", "--calibrate", "temperature") == 0
    capsys.readouterr()
    for name in ("raw.csv", "cal.csv"):
        header, rows = _rows(tmp_path / name)
        k = len(LABELS)
        for row in rows:
            probs = row[1 : 1 + k]
            for text in probs:  # each the shortest text of a float32, at most 9 significant digits
                assert np.format_float_positional(np.float32(text), unique=True, trim="-") == text
                assert _significant_digits(text) <= 9, (name, text)
            decisions = [int(v) for v in row[1 + k :]]
            assert decisions == [int(np.float32(t) >= 0.5) for t in probs]  # decided at the written value
    raw = np.array([[float(v) for v in r[1:4]] for r in _rows(tmp_path / "raw.csv")[1]])
    cal = np.array([[float(v) for v in r[1:4]] for r in _rows(tmp_path / "cal.csv")[1]])
    assert np.abs(raw - cal).max() > 1e-3  # the calibrator was applied


def test_thresholds_fitted_on_few_validation_positives_are_noted(
    run_dir: Path, records: Path, tmp_path: Path, capsys
) -> None:
    import pandas as pd

    from ecg_transfer.inference.thresholds import FEW_VALIDATION_POSITIVES

    val = pd.read_csv(run_dir / "predictions_val.csv")
    n_pos = {label: int(val[f"true:{label}"].sum()) for label in LABELS}
    few = [label for label in LABELS if 0 < n_pos[label] < FEW_VALIDATION_POSITIVES]
    assert few, f"fixture: some label needs 1-4 validation positives ({n_pos})"
    assert _predict(run_dir, records, tmp_path / "p.csv") == 0  # fmax, the default
    err = capsys.readouterr().err
    notes = json.loads((tmp_path / "p.json").read_text())["thresholds"]["notes"]
    [note] = [n for n in notes if "fewer than 5 positive validation records" in n]
    values = json.loads((tmp_path / "p.json").read_text())["thresholds"]["values"]
    for label in few:
        k = n_pos[label]
        assert f"{label} ({k} positive{'' if k == 1 else 's'}, threshold {values[label]:.3g})" in note
    for label in set(LABELS) - set(few):
        assert f"{label} (" not in note
    assert f"ecg-transfer predict: note: {note}" in err
