"""``ecg-transfer predict``: new records through a trained run, compared with the run's own model path.

Known answers are computed independently: signals read back with ``wfdb.rdsamp`` / the raw ``val``
array, resampled with ``scipy.signal.resample_poly``, predicted with ``LoadedModel.predict``;
thresholds by brute force with scikit-learn.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import wfdb
from scipy.signal import resample_poly
from sklearn.metrics import f1_score

from training_synth import LABELS, train_tiny_run

from ecg_transfer.cli import main
from ecg_transfer.errors import ConfigError
from ecg_transfer.inference.predict import Predictor, lead_order
from ecg_transfer.training.modelfile import load_model_file

LEADS = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
CINC_LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("inference") / "run", n=48)


@pytest.fixture(scope="module")
def lm(run_dir: Path):
    return load_model_file(run_dir)


def ecg(n: int, fs: float, seed: int, leads: int = 12) -> np.ndarray:
    """(samples, leads) mV, rounded to the 1 uV grid the files store."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    x = 0.6 * np.sin(2 * np.pi * 1.1 * t)[:, None] * rng.uniform(0.3, 1.5, leads) + rng.normal(0, 0.2, (n, leads))
    x[:, seed % leads] += 0.8 * np.sin(2 * np.pi * 10 * t)
    return np.round(x * 1000) / 1000


def write_wfdb(folder: Path, name: str, sig: np.ndarray, fs: int, leads=LEADS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * len(leads),
        sig_name=list(leads),
        d_signal=np.round(sig * 1000).astype(np.int64),
        fmt=["16"] * len(leads),
        adc_gain=[1000.0] * len(leads),
        baseline=[0] * len(leads),
        write_dir=str(folder),
    )
    return folder / name


def write_cinc(folder: Path, name: str, sig: np.ndarray, fs: int, leads=CINC_LEADS, nan: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    val = np.round(sig.T * 1000).astype(np.int16)
    if nan:
        val = val.astype(np.float64)
        val[2, 5] = np.nan
    scipy.io.savemat(folder / f"{name}.mat", {"val": val}, format="4")
    lines = [f"{name}.mat {len(leads)} {fs} {val.shape[1]} 05-Feb-2020 11:39:16"]
    lines += [f"{name}.mat 16+24 1000/mV 16 0 {0 if nan else int(row[0])} 0 0 {lead}" for lead, row in zip(leads, val)]
    lines += ["#Age: 56", "#Sex: Female", "#Dx: 426783006"]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return folder / name


def expected(lm, sig_tl: np.ndarray, fs_in: float) -> np.ndarray:
    """LoadedModel.predict on one (samples, leads) mV record, resampled by resample_poly if needed."""
    x = sig_tl.T.astype(np.float64)
    if fs_in != lm.fs:
        from fractions import Fraction

        r = Fraction(str(lm.fs)) / Fraction(str(fs_in))
        x = resample_poly(x, r.numerator, r.denominator, axis=-1)
    return lm.predict(x.astype(np.float32)[None])[0]


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def test_wfdb_cinc_and_npy_equal_loaded_model(run_dir: Path, lm, tmp_path: Path) -> None:
    sigs = {f"w{i}": ecg(1000 + 37 * i, 100, i) for i in range(3)}
    for name, s in sigs.items():
        write_wfdb(tmp_path / "wfdb", name, s, 100)
    cinc = {f"E0000{i}": ecg(800 + 100 * i, 100, 10 + i) for i in range(2)}
    for name, s in cinc.items():
        write_cinc(tmp_path / "cinc", name, s, 100)
    batch = np.stack([ecg(900, 100, 20 + i).T for i in range(2)]).astype(np.float32)  # (n, leads, samples)
    np.save(tmp_path / "batch.npy", batch)
    one = ecg(700, 100, 30).astype(np.float32)  # (samples, leads)
    np.save(tmp_path / "one.npy", one)

    pred = Predictor.from_run(run_dir, threshold=None)
    inputs = [
        tmp_path / "wfdb" / "w0",
        tmp_path / "wfdb" / "w1.hea",
        tmp_path / "wfdb" / "w2.dat",
        tmp_path / "cinc" / "E00000.mat",
        tmp_path / "cinc" / "E00001",
        tmp_path / "batch.npy",
        tmp_path / "one.npy",
    ]
    res = pred.predict_paths(inputs, fs=100.0)
    assert res.errors == []
    assert res.record_ids == ["w0", "w1", "w2", "E00000", "E00001", "batch[0]", "batch[1]", "one"]
    want = [expected(lm, wfdb.rdsamp(str(tmp_path / "wfdb" / n))[0], 100) for n in sigs]
    want += [expected(lm, scipy.io.loadmat(tmp_path / "cinc" / f"{n}.mat")["val"].T / 1000.0, 100) for n in cinc]
    want += [lm.predict(batch)[i] for i in range(2)]
    want += [expected(lm, one.astype(np.float64), 100)]
    np.testing.assert_allclose(res.probs, np.stack(want), rtol=0, atol=1e-6)
    assert res.probs.shape == (8, len(LABELS))
    np.testing.assert_array_equal(res.decisions, (res.probs >= 0.5).astype(np.uint8))


def test_folder_through_the_cli(run_dir: Path, lm, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "in"
    write_wfdb(folder / "a", "r1", ecg(1000, 100, 1), 100)
    write_cinc(folder / "b", "E00009", ecg(1000, 100, 2), 100)
    out = tmp_path / "o" / "preds.csv"
    code = main(["predict", str(run_dir), str(folder), "--out", str(out), "--threshold", "0.4"])
    capsys.readouterr()
    assert code == 0
    header, rows = read_csv(out)
    assert header == ["record_id", *(f"prob:{l}" for l in LABELS), *(f"decision:{l}" for l in LABELS)]
    assert [r[0] for r in rows] == ["r1", "E00009"]
    probs = np.array([[float(v) for v in r[1:4]] for r in rows])
    want = np.stack(
        [
            expected(lm, wfdb.rdsamp(str(folder / "a" / "r1"))[0], 100),
            expected(lm, scipy.io.loadmat(folder / "b" / "E00009.mat")["val"].T / 1000.0, 100),
        ]
    )
    np.testing.assert_allclose(probs, want, rtol=0, atol=1e-6)
    assert [[int(v) for v in r[4:]] for r in rows] == (probs >= 0.4).astype(int).tolist()
    meta = json.loads((tmp_path / "o" / "preds.json").read_text())
    assert meta["thresholds"]["values"] == {l: 0.4 for l in LABELS} and meta["labels"] == LABELS
    assert meta["n_predicted"] == 2 and meta["n_failed"] == 0 and meta["fs"] == 100.0
    assert read_csv(tmp_path / "o" / "preds_errors.csv") == (["record", "problem"], [])


def test_500hz_record_is_resampled_like_resample_poly(run_dir: Path, lm, tmp_path: Path) -> None:
    sig = ecg(5000, 500, 3)
    write_wfdb(tmp_path, "hr", sig, 500)
    np.save(tmp_path / "hr.npy", sig.T)
    res = Predictor.from_run(run_dir, threshold=None).predict_paths([tmp_path / "hr", tmp_path / "hr.npy"], fs=500.0)
    x100 = resample_poly(wfdb.rdsamp(str(tmp_path / "hr"))[0].T, 1, 5, axis=-1).astype(np.float32)
    want = lm.predict(x100[None])[0]
    np.testing.assert_allclose(res.probs, np.stack([want, want]), rtol=0, atol=1e-6)
    # and it differs from predicting the 500 Hz samples as if they were 100 Hz (the resampling matters)
    assert np.abs(lm.predict(sig.T.astype(np.float32)[None])[0] - want).max() > 1e-4


def test_leads_reordered_by_name_case_insensitively(run_dir: Path, lm, tmp_path: Path) -> None:
    sig = ecg(1000, 100, 4)
    perm = np.random.default_rng(0).permutation(12)
    shuffled = [CINC_LEADS[i].lower() if i % 2 else CINC_LEADS[i] for i in perm]
    write_wfdb(tmp_path, "ordered", sig, 100)
    write_wfdb(tmp_path, "shuffled", sig[:, perm], 100, leads=shuffled)
    bad = LEADS[:11] + ["V7"]
    write_wfdb(tmp_path, "v7", sig, 100, leads=bad)
    res = Predictor.from_run(run_dir, threshold=None).predict_paths(
        [tmp_path / "ordered", tmp_path / "shuffled", tmp_path / "v7"]
    )
    assert res.record_ids == ["ordered", "shuffled"]
    np.testing.assert_allclose(res.probs[1], res.probs[0], rtol=0, atol=1e-6)
    [err] = res.errors
    assert "v7" in err.record and "V6" in err.problem and "V7" in err.problem
    np.testing.assert_array_equal(lead_order(["v6", "AVR"], ["AVR", "V6"], "r"), [1, 0])


def test_bad_records_listed_others_predicted(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "mixed"
    write_wfdb(folder, "good1", ecg(1000, 100, 5), 100)
    write_wfdb(folder, "good2", ecg(600, 100, 6), 100)
    write_wfdb(folder, "trunc", ecg(1000, 100, 7), 100)
    dat = folder / "trunc.dat"
    dat.write_bytes(dat.read_bytes()[:1000])
    write_wfdb(folder, "short", ecg(200, 100, 8), 100)  # 2 s < one 2.5 s window
    write_cinc(folder, "E00100", ecg(1000, 100, 9), 100, nan=True)
    np.save(folder / "wide.npy", np.zeros((3, 1000), dtype=np.float32))
    out = tmp_path / "p.csv"
    code = main(["predict", str(run_dir), str(folder), "--out", str(out), "--fs", "100", "--threshold", "0.5"])
    _, err = capsys.readouterr()
    assert code == 3
    assert [r[0] for r in read_csv(out)[1]] == ["good1", "good2"]
    _, rows = read_csv(tmp_path / "p_errors.csv")
    problems = {Path(r[0]).name.split(".")[0]: r[1] for r in rows}
    assert set(problems) == {"trunc", "short", "E00100", "wide"}
    assert "truncated" in problems["trunc"]
    assert "shorter than one window" in problems["short"]
    assert "float64, not integer ADC units" in problems["E00100"]  # a float val (here with NaN) is refused
    assert "neither axis" in problems["wide"]
    for name in problems:
        assert name in err
    assert json.loads((tmp_path / "p.json").read_text())["n_failed"] == 4

    before = {p.name: p.read_bytes() for p in (out, tmp_path / "p.json", tmp_path / "p_errors.csv")}
    code = main(
        ["predict", str(run_dir), str(folder / "short"), str(folder / "trunc"), "--out", str(out), "--threshold", "0.5"]
    )
    _, err = capsys.readouterr()
    assert code == 2 and "no record could be predicted" in err and "nothing written" in err
    assert {p.name: p.read_bytes() for p in (out, tmp_path / "p.json", tmp_path / "p_errors.csv")} == before
    fresh = tmp_path / "fresh.csv"  # no empty files that would pass for results
    assert main(["predict", str(run_dir), str(folder / "short"), "--out", str(fresh), "--threshold", "0.5"]) == 2
    assert not list(tmp_path.glob("fresh*"))


def test_npy_layouts_defined_and_checked(run_dir: Path, tmp_path: Path) -> None:
    x = ecg(800, 100, 11).T.astype(np.float32)  # (leads, samples)
    np.save(tmp_path / "ct.npy", x)
    np.save(tmp_path / "tc.npy", x.T)
    np.save(tmp_path / "nct.npy", x[None])
    np.save(tmp_path / "ntc.npy", x.T[None])
    np.save(tmp_path / "square.npy", np.zeros((12, 12), dtype=np.float32))
    pred = Predictor.from_run(run_dir, threshold=None)
    res = pred.predict_paths([tmp_path / n for n in ("ct.npy", "tc.npy", "nct.npy", "ntc.npy", "square.npy")], fs=100)
    assert res.record_ids == ["ct", "tc", "nct[0]"]
    np.testing.assert_allclose(res.probs, np.repeat(res.probs[:1], 3, axis=0), rtol=0, atol=1e-6)
    problems = {Path(e.record).name: e.problem for e in res.errors}
    assert "transpose" in problems["ntc.npy"] and "ambiguous" in problems["square.npy"]
    res = pred.predict_paths([tmp_path / "ct.npy"])  # no --fs
    assert res.record_ids == [] and "--fs" in res.errors[0].problem


def test_duplicate_record_names_get_their_paths(run_dir: Path, tmp_path: Path) -> None:
    write_wfdb(tmp_path / "x", "r", ecg(1000, 100, 1), 100)
    write_wfdb(tmp_path / "y", "r", ecg(1000, 100, 2), 100)
    res = Predictor.from_run(run_dir, threshold=None).predict_paths([tmp_path])
    assert res.record_ids == [str(tmp_path / "x" / "r"), str(tmp_path / "y" / "r")]


def _val(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    df = pd.read_csv(run_dir / "predictions_val.csv")
    return df[[f"true:{l}" for l in LABELS]].to_numpy(), df[[f"prob:{l}" for l in LABELS]].to_numpy()


def _check_fmax(t: np.ndarray, y: np.ndarray, p: np.ndarray) -> None:
    grid = np.round(np.linspace(0, 1, 101), 2)
    for k in range(y.shape[1]):
        f1 = np.array([f1_score(y[:, k], p[:, k] >= g, zero_division=0) for g in grid])
        mine = f1_score(y[:, k], p[:, k] >= t[k], zero_division=0)
        assert t[k] in grid and mine == pytest.approx(f1.max(), abs=1e-12)
        assert t[k] == grid[np.flatnonzero(f1 >= f1.max() - 1e-12)[0]]  # the lowest grid threshold reaching it


def test_thresholds_from_validation(run_dir: Path, tmp_path: Path) -> None:
    y, p = _val(run_dir)
    assert y.sum(axis=0).min() > 0, "fixture: every class needs validation positives"
    pred = Predictor.from_run(run_dir, threshold="fmax")
    _check_fmax(pred.thresholds.values, y, p)

    pred = Predictor.from_run(run_dir, threshold="sensitivity:0.9")
    for k in range(len(LABELS)):
        cands = np.unique(p[:, k])
        ok = [c for c in cands if (p[y[:, k] == 1, k] >= c).mean() >= 0.9]
        assert pred.thresholds.values[k] == max(ok)
    x = np.stack([ecg(1000, 100, i).T for i in range(4)])
    probs, dec = pred.predict_array(x, 100.0)
    np.testing.assert_array_equal(dec, (probs >= pred.thresholds.values).astype(np.uint8))

    code = main(["predict", str(run_dir), str(tmp_path), "--threshold", "sensitivity:2"])
    assert code == 2
    with pytest.raises(ConfigError, match="allowed"):
        Predictor.from_run(run_dir, threshold="best")


def test_calibration_from_the_run(run_dir: Path, tmp_path: Path) -> None:
    from ecg_transfer.evaluation.calibration import load_calibrator
    from ecg_transfer.evaluation.runs import evaluate_run

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    with pytest.raises(ConfigError, match=r"ecg-transfer evaluate .* --calibrate temperature"):
        Predictor.from_run(run, calibrate="temperature")
    evaluate_run(run, calibrate=["temperature"], n_resamples=20, plots=False)
    cal = load_calibrator(run / "evaluation" / "calibrator_temperature.json")
    x = np.stack([ecg(1000, 100, i).T for i in range(3)])
    raw, _ = Predictor.from_run(run, threshold=None).predict_array(x, 100.0)
    pred = Predictor.from_run(run, calibrate="temperature", threshold="fmax")
    probs, _ = pred.predict_array(x, 100.0)
    np.testing.assert_allclose(probs, cal.transform(raw), rtol=0, atol=1e-7)  # float32, as uncalibrated
    y, p = _val(run)
    _check_fmax(pred.thresholds.values, y, cal.transform(p).astype(np.float32).astype(np.float64))
    assert "temperature" in pred.thresholds.fitted_on


@pytest.mark.realdata
def test_real_g12ec_records(run_dir: Path, lm, g12ec_root: Path, tmp_path: Path) -> None:
    from ecg_transfer.datasets.cinc import CinCDataset

    names = ["E00001", "E00002", "E00003"]
    res = Predictor.from_run(run_dir, threshold=None).predict_paths([g12ec_root / n for n in names])
    assert res.record_ids == names and not res.errors
    ds = CinCDataset(g12ec_root)
    want = [lm.predict(resample_poly(ds.read(n).T, 1, 5, axis=-1).astype(np.float32)[None])[0] for n in names]
    np.testing.assert_allclose(res.probs, np.stack(want), rtol=0, atol=1e-6)
