"""Small untrained networks behind a run's preprocessing, saved as runs, and noise records: the
fixtures of the explanation tests (no training needed to test how attributions are computed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ecg_transfer.models import build
from ecg_transfer.signal import transformed_shape
from ecg_transfer.training.modelfile import LoadedModel, save_model_file
from ecg_transfer.training.scaler import GlobalStandardScaler

FS, CROP, STRIDE = 100.0, 250, 125
SMALL = {
    "fcn_wang": {"filters": [8, 8], "kernel_sizes": [5, 3], "head_hidden": [8]},
    "lstm": {"hidden": 8, "num_layers": 1, "head_hidden": [8]},
    "s4": {"d_model": 8, "n_layers": 1},
}


def small_model(name: str = "fcn_wang", input: str = "time", aggregate: str = "max") -> LoadedModel:
    """An untrained ``name`` network behind the run's preprocessing (standardisation, transform)."""
    torch.manual_seed(0)
    channels = transformed_shape(input, FS, 12, CROP)[0]
    model = build(name, channels, 2, **SMALL[name]).eval()
    scaler = GlobalStandardScaler(0.05, 0.3)
    return LoadedModel(model, ["A", "B"], scaler, FS, CROP, STRIDE, aggregate, model.spec, {"input": input})


def save_run(lm: LoadedModel, run_dir: Path) -> Path:
    run_dir.mkdir(parents=True)
    save_model_file(
        run_dir / "model.pt",
        lm.model,
        label_names=lm.label_names,
        scaler=lm.scaler,
        fs=lm.fs,
        crop_len=lm.crop_len,
        stride=lm.stride,
        aggregate=lm.aggregate,
        config=lm.config,
    )
    return run_dir


def record(n_samples: int = 400, seed: int = 0, flat_lead: int | None = None) -> np.ndarray:
    x = np.random.default_rng(seed).normal(0.0, 0.3, size=(12, n_samples)).astype(np.float32)
    if flat_lead is not None:
        x[flat_lead] = 0.0  # a missing lead, as G12EC has them
    return x
