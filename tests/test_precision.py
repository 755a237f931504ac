"""precision = fp32 | bf16 | auto: bf16 autocast for the forward pass (loss and optimizer state in
fp32), auto only where the hardware runs bf16 natively, part of a run's definition, followed by
validation, the saved predictions and `predict`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ecg_transfer.errors import ConfigError
from ecg_transfer.training import speed
from ecg_transfer.training.modelfile import load_model_file
from ecg_transfer.training.predict import load_predictions
from ecg_transfer.training.run import train_run
from training_synth import LABELS, killed_after_first_epoch, make_data, tiny_config

CPU = torch.device("cpu")


def test_auto_picks_bf16_only_where_the_hardware_has_it(monkeypatch):
    assert speed.resolve_precision("fp32", CPU) == "fp32" and speed.resolve_precision("bf16", CPU) == "bf16"
    monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda: False)
    assert speed.resolve_precision("auto", CPU) == "fp32"  # an AVX2 machine: emulated bf16 is ~10x slower
    monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda: True)
    assert speed.resolve_precision("auto", CPU) == "bf16"
    with pytest.raises(ConfigError, match="'precision'"):
        speed.resolve_precision("fp16", CPU)


def test_autocast_runs_the_forward_pass_in_bf16_and_nothing_else():
    net = torch.nn.Linear(4, 2)
    x = torch.randn(3, 4)
    with speed.autocast("bf16", CPU):
        assert net(x).dtype == torch.bfloat16
    with speed.autocast("fp32", CPU):
        assert net(x).dtype == torch.float32
    assert net.weight.dtype == torch.float32  # parameters (and so AdamW's state) stay fp32


def _train(tmp_path, name, **over):
    X, Y, ids, splits = make_data(n=48, t=300)
    run = tmp_path / name
    train_run(tiny_config(epochs=2, **over), X, Y, ids, splits, LABELS, run, progress=False)
    return run


def test_a_bf16_run_trains_records_its_precision_and_predicts_in_it(tmp_path):
    fp32, bf16 = _train(tmp_path, "fp32"), _train(tmp_path, "bf16", precision="bf16")
    p32 = load_predictions(fp32 / "predictions_test.csv")[3]
    p16 = load_predictions(bf16 / "predictions_test.csv")[3]
    # the same seed, data and steps: close, but not float32 rounding apart (bf16 has an 8-bit mantissa)
    assert np.abs(p32 - p16).max() > 1e-4 and np.corrcoef(p32.ravel(), p16.ravel())[0, 1] > 0.9
    assert json.loads((bf16 / "environment.json").read_text())["precision"] == "bf16"
    loaded = load_model_file(bf16)
    assert loaded.precision == "bf16"
    X, _, _, splits = make_data(n=48, t=300)
    again = loaded.predict(X, splits["test"])  # predict follows the run's precision: equals the saved file
    np.testing.assert_allclose(again, p16, atol=1e-6)
    assert load_model_file(fp32).precision == "fp32"


def test_a_checkpoint_never_resumes_under_another_precision(tmp_path):
    X, Y, ids, splits = make_data(n=48, t=300)
    run = tmp_path / "run"
    killed_after_first_epoch(run, X, Y, ids, splits)
    with pytest.raises(ConfigError, match="different settings.*precision"):
        train_run(tiny_config(epochs=2, precision="bf16"), X, Y, ids, splits, LABELS, run, resume=True, progress=False)
