"""Using a trained run: predict on new records, export the network, describe it in a model card.

Modules: ``inputs`` (WFDB / CinC / folder / ``.npy`` inputs -> records or named problems),
``thresholds`` (per-class decision thresholds chosen on validation), ``predict`` (:class:`Predictor`
and the prediction files), ``export`` (ONNX / TorchScript with the standardisation inside),
``modelcard`` (``MODEL_CARD.md``), ``cli`` (the ``predict``, ``export`` and ``model-card`` commands).
Names are imported lazily so that ``ecg-transfer --help`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Predictor": "predict", "PredictionResult": "predict", "write_outputs": "predict", "exit_code": "predict",
    "load_run_calibrator": "predict",
    "RawRecord": "inputs", "iter_inputs": "inputs", "read_record": "inputs",
    "Thresholds": "thresholds", "choose_thresholds": "thresholds", "run_thresholds": "thresholds",
    "export_model": "export", "load_exported": "export", "exported_record_probs": "export",
    "write_model_card": "modelcard", "model_card_text": "modelcard",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
