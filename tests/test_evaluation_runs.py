"""Evaluating run directories from their saved predictions, and the ``evaluate`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ecg_transfer.cli import main
from ecg_transfer.evaluation.calibration import CALIBRATORS
from ecg_transfer.evaluation.challenge import challenge_mapping, challenge_score
from ecg_transfer.evaluation.cli import METHODS
from ecg_transfer.evaluation.runs import EvaluationError, compare_runs, evaluate_run, load_run, summarise_seeds
from ecg_transfer.labels import get_protocol
from ecg_transfer.training.predict import save_predictions

LABELS = ["A", "B", "C"]


def _split(n, k, seed, signal):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < 0.3).astype(np.uint8)
    y[:, -1] = 0  # the last class has no positive
    z = rng.normal(size=(n, k)) + signal * y
    return y, (1 / (1 + np.exp(-2 * z))).astype(np.float32)


def make_run(
    path: Path, *, signal=1.5, seed=0, labels=LABELS, n_test=120, n_val=80, ids=None, config=None, val=True
) -> Path:
    """A run directory as train_run leaves it (predictions + config), without training anything."""
    path.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(1000 + seed)
    for split, n, data_seed in (("val", n_val, 1), ("test", n_test, 2)):
        if split == "val" and not val:
            continue
        y, p = _split(n, len(labels), data_seed, signal)  # same records and labels in every run
        p = np.clip(p + noise.normal(0, 0.02, p.shape).astype(np.float32), 0, 1)
        rid = ids if (ids is not None and split == "test") else [f"{split}{i:04d}" for i in range(n)]
        save_predictions(path / f"predictions_{split}.csv", rid, labels, y, p)
    (path / "config.json").write_text(json.dumps(config or {"seed": seed, "task": {"labels": "form"}}))
    return path


def test_evaluate_run_writes_metrics_json(tmp_path):
    run = make_run(tmp_path / "run")
    res = evaluate_run(run, n_resamples=50, plots=False)
    text = (run / "evaluation" / "metrics.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in metrics.json"))  # no NaN / Infinity
    assert json.loads(text) == json.loads(json.dumps(res))
    test = load_run(run).test
    y, p = test.y_true, test.probs
    expected = np.mean([roc_auc_score(y[:, k], p[:, k]) for k in range(2)])
    assert res["headline"]["macro_auc"]["value"] == pytest.approx(expected)
    assert res["headline"]["macro_auc"]["classes_used"]["test_set"] == 2
    assert res["classes_left_out"] == {"C": "no positive records"}
    assert res["per_class"]["C"]["auc"]["value"] is None and res["per_class"]["C"]["status"] == "no positive records"
    assert res["per_class"]["A"]["n_pos"] == int(y[:, 0].sum())
    assert set(res["headline"]) == {"macro_auc", "macro_auprc", "f_max", "brier", "ece", "ece_macro"}
    assert "not computed" in res["challenge"]["note"]  # A, B, C are no challenge classes
    assert res["bootstrap_seconds"] >= 0 and res["settings"]["n_resamples"] == 50
    assert (run / "evaluation" / "reliability.json").exists()


def test_calibration_is_fitted_on_validation_only(tmp_path):
    run = make_run(tmp_path / "run")
    res = evaluate_run(run, calibrate=list(CALIBRATORS), n_resamples=30, plots=False)
    cal = res["calibration"]
    assert cal["fitted_on"] == "validation" and set(cal) >= {"uncalibrated", *CALIBRATORS}
    for method in CALIBRATORS:
        assert cal[method]["max_auc_change"] == 0.0, method
        assert {"brier", "ece", "ece_macro", "per_class"} <= set(cal[method])
    params = (run / "evaluation" / "calibrator_isotonic.json").read_text()
    # change the test set's labels: a calibrator fitted on validation must not move
    r = load_run(run)
    save_predictions(
        run / "predictions_test.csv", r.test.record_ids, r.test.label_names, 1 - r.test.y_true, r.test.probs
    )
    evaluate_run(run, calibrate=["isotonic"], n_resamples=30, plots=False)
    assert (run / "evaluation" / "calibrator_isotonic.json").read_text() == params


def test_calibration_without_validation_predictions_is_refused(tmp_path):
    run = make_run(tmp_path / "run", val=False)
    with pytest.raises(EvaluationError, match="predictions_val.csv"):
        evaluate_run(run, calibrate=["temperature"], n_resamples=10, plots=False)


def test_cinc2020_run_gets_the_challenge_metric(tmp_path):
    names = list(get_protocol("cinc2020").class_names)
    run = make_run(tmp_path / "run", labels=names, config={"task": {"labels": "protocol:cinc2020"}})
    res = evaluate_run(run, n_resamples=30, plots=False, threshold=0.5)
    assert res["challenge"]["complete"] and res["challenge"]["sinus_rhythm_scored"]
    r = load_run(run)
    m = challenge_mapping(names, "protocol:cinc2020")
    expected = challenge_score(r.test.y_true, r.test.probs >= 0.5, m.weights, m.normal_index)
    assert res["headline"]["challenge"]["value"] == pytest.approx(expected)
    assert res["challenge"]["score"]["value"] == pytest.approx(expected)


def test_compare_and_seeds(tmp_path):
    a = make_run(tmp_path / "finetuned", signal=2.5)
    a2 = make_run(tmp_path / "finetuned-s1", signal=2.5, seed=1)
    b = make_run(tmp_path / "standalone", signal=0.3)
    c = compare_runs([a], [b], n_resamples=100)
    d = c["difference"]["macro_auc"]
    assert d["value"] == pytest.approx(d["a"] - d["b"]) and d["ci"][0] > 0 and d["p_value"] < 0.05
    assert Path(c["path"]) == a / "evaluation" / "comparison_standalone.json"
    s = summarise_seeds([a, a2], n_resamples=50)
    assert s["n_seeds"] == 2 and s["config_seeds"] == [0, 1] and s["metrics"]["macro_auc"]["sd"] is not None
    assert (a / "evaluation" / "seeds.json").exists()


def test_compare_aligns_record_order(tmp_path):
    a = make_run(tmp_path / "a", signal=2.0)
    b = make_run(tmp_path / "b", signal=1.0, seed=1)
    r = load_run(b)
    perm = np.random.default_rng(0).permutation(len(r.test.record_ids))
    shuffled = make_run(tmp_path / "b-shuffled", signal=1.0, seed=1)
    save_predictions(
        shuffled / "predictions_test.csv",
        [r.test.record_ids[i] for i in perm],
        list(reversed(r.test.label_names)),
        r.test.y_true[perm][:, ::-1],
        r.test.probs[perm][:, ::-1],
    )
    x = compare_runs([a], [b], n_resamples=40, write=False)["difference"]
    y = compare_runs([a], [shuffled], n_resamples=40, write=False)["difference"]
    for name in x:
        assert x[name]["value"] == pytest.approx(y[name]["value"]), name
        assert x[name]["ci"] == pytest.approx(y[name]["ci"]), name


def test_compare_refuses_different_test_sets(tmp_path):
    a = make_run(tmp_path / "a")
    other = make_run(tmp_path / "other", ids=[f"x{i}" for i in range(120)])
    with pytest.raises(EvaluationError, match="different records"):
        compare_runs([a], [other], n_resamples=10)
    relabelled = make_run(tmp_path / "relabelled", labels=["A", "B", "D"])
    with pytest.raises(EvaluationError, match="different label sets"):
        compare_runs([a], [relabelled], n_resamples=10)
    r = load_run(a)
    flipped = make_run(tmp_path / "flipped")
    y = r.test.y_true.copy()
    y[0, 0] = 1 - y[0, 0]
    save_predictions(flipped / "predictions_test.csv", r.test.record_ids, r.test.label_names, y, r.test.probs)
    with pytest.raises(EvaluationError, match="reference labels"):
        compare_runs([a], [flipped], n_resamples=10)


def test_cli_evaluate_with_plots(tmp_path, capsys):
    a = make_run(tmp_path / "a", signal=2.0)
    b = make_run(tmp_path / "b", signal=0.5, seed=1)
    rc = main(["evaluate", str(a), "--compare", str(b), "--calibrate", "temperature", "--resamples", "30"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "macro AUC" in out and "left out of macro AUC: C (no positive records)" in out
    assert "temperature" in out and "paired bootstrap" in out
    ev = a / "evaluation"
    for state in ("uncalibrated", "temperature"):
        for bins in ("equal-width", "equal-mass"):
            png = ev / f"reliability_{state}_{bins}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(ev.glob(".*.tmp"))  # atomic writes leave no temporary files
    assert (ev / "metrics.json").exists() and (ev / "comparison_b.json").exists()


def test_cli_refusal_is_a_clean_error(tmp_path, capsys):
    a = make_run(tmp_path / "a")
    other = make_run(tmp_path / "other", ids=[f"x{i}" for i in range(120)])
    rc = main(["evaluate", str(a), "--compare", str(other), "--resamples", "10", "--no-plots"])
    assert rc == 2 and "different records" in capsys.readouterr().err
    rc = main(["evaluate", str(tmp_path / "missing"), "--no-plots"])
    assert rc == 2 and "predictions_test.csv" in capsys.readouterr().err


def test_cli_method_names_match_the_calibrators():
    assert set(METHODS) == set(CALIBRATORS)
