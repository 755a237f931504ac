"""``ecg-transfer export``: the exported window network (standardisation inside) reproduces the run's
record probabilities -- windows and aggregation done as the JSON beside it says -- within 1e-5."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training_synth import LABELS, train_tiny_run

from ecg_transfer.cli import main
from ecg_transfer.inference.export import export_model, exported_record_probs, load_exported
from ecg_transfer.training.modelfile import load_model_file

pytest.importorskip("onnxruntime", reason="ONNX export tests need onnxruntime (pip install 'ecg-transfer[export]')")
TOL = 1e-5


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("export") / "run", n=40)


def synthetic(n: int, t: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.1, 0.4, (n, 12, t)) + np.sin(2 * np.pi * 1.2 * np.arange(t) / 100)[None, None, :]
    return x.astype(np.float32)


@pytest.mark.parametrize("fmt,exporter", [("onnx", "auto"), ("onnx", "legacy"), ("torchscript", "auto")])
def test_export_matches_pytorch(run_dir: Path, tmp_path: Path, fmt: str, exporter: str) -> None:
    lm = load_model_file(run_dir)
    out = tmp_path / f"m.{fmt}"
    res = export_model(run_dir, fmt, out, exporter=exporter)
    assert res.path == out and out.exists() and res.metadata_path == tmp_path / f"m.{fmt}.json"
    meta = json.loads(res.metadata_path.read_text())
    assert meta["labels"] == LABELS and meta["fs"] == 100.0 and meta["crop_len"] == 250 and meta["stride"] == 125
    assert meta["aggregate"] == "max" and meta["input"]["shape"] == ["batch", 12, 250]
    assert meta["verification"]["max_abs_diff"] < TOL
    if fmt == "onnx":
        assert meta["opset"] is not None and meta["exporter"] in ("dynamo", "legacy")

    X = synthetic(5, 1000)
    lengths = np.array([1000, 1000, 250, 600, 999])
    got = exported_record_probs(out, X, lengths=lengths)
    want = lm.predict(X, lengths=lengths)
    assert got.shape == (5, len(LABELS))
    assert np.abs(got - want).max() < TOL
    run = load_exported(out)
    for batch in (1, 7):  # the batch axis is dynamic
        w = synthetic(batch, 250, seed=batch)
        import torch

        with torch.no_grad():
            ref = torch.sigmoid(lm.model(torch.from_numpy(lm.scaler.transform(w)))).numpy()
        assert np.abs(run(w) - ref).max() < TOL


def test_export_cli_default_path_and_thresholds(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["export", str(run_dir), "--format", "torchscript", "--threshold", "0.3"])
    out, _ = capsys.readouterr()
    assert code == 0
    path = run_dir / "export" / "model.torchscript.pt"
    assert path.exists() and str(path) in out
    meta = json.loads((run_dir / "export" / "model.torchscript.pt.json").read_text())
    assert meta["thresholds"]["values"] == {l: 0.3 for l in LABELS}
    assert meta["calibration"] is None and any("max" in s for s in meta["steps"])


def test_export_refuses_unknown_format(run_dir: Path) -> None:
    from ecg_transfer.errors import ConfigError

    with pytest.raises(ConfigError, match="onnx, torchscript"):
        export_model(run_dir, "tflite")


@pytest.mark.realdata
def test_export_on_real_g12ec_records(run_dir: Path, g12ec_root: Path, tmp_path: Path) -> None:
    from scipy.signal import resample_poly

    from ecg_transfer.datasets.cinc import CinCDataset

    lm = load_model_file(run_dir)
    ds = CinCDataset(g12ec_root)
    X = np.stack([resample_poly(ds.read(r).T, 1, 5, axis=-1) for r in ("E00001", "E00002", "E00004", "E00005")])
    X = X.astype(np.float32)
    want = lm.predict(X)
    for fmt in ("onnx", "torchscript"):
        res = export_model(run_dir, fmt, tmp_path / f"real.{fmt}")
        assert np.abs(exported_record_probs(res.path, X) - want).max() < TOL


@pytest.mark.slow
def test_xresnet1d101_exports(tmp_path: Path) -> None:
    """The study's model, random weights, both formats, on a couple of windows."""
    from ecg_transfer import models
    from ecg_transfer.training.modelfile import save_model_file
    from ecg_transfer.training.scaler import GlobalStandardScaler

    model = models.build("xresnet1d101", 12, 5).eval()
    save_model_file(
        tmp_path / "run" / "model.pt",
        model,
        label_names=list("abcde"),
        scaler=GlobalStandardScaler(0.01, 0.2),
        fs=100.0,
        crop_len=250,
        stride=125,
        aggregate="max",
        config={"model": "xresnet1d101"},
    )
    X = synthetic(2, 250, seed=3)
    want = load_model_file(tmp_path / "run").predict(X)
    for fmt in ("onnx", "torchscript"):
        res = export_model(tmp_path / "run", fmt, tmp_path / f"x.{fmt}", verify_windows=2)
        assert res.metadata["verification"]["max_abs_diff"] < TOL
        assert np.abs(exported_record_probs(res.path, X) - want).max() < TOL
