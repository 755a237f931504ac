"""Using a trained run: predict on new records, export the network, describe it in a model card.

Modules: ``inputs`` (WFDB / CinC / folder / ``.npy`` inputs -> records or named problems),
``thresholds`` (per-class decision thresholds chosen on validation), ``predict`` (:class:`Predictor`
and the prediction files), ``export`` (ONNX / TorchScript with the standardisation inside),
``modelcard`` (``MODEL_CARD.md``), ``cli`` (the ``predict``, ``export`` and ``model-card`` commands).
Names are imported lazily so that ``ecg-transfer --help`` does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # what mypy and IDEs read (and nothing else: a misspelt name is an error)
    from .predict import (
        PredictionResult as PredictionResult,
        Predictor as Predictor,
        exit_code as exit_code,
        load_run_calibrator as load_run_calibrator,
        write_outputs as write_outputs,
    )
    from .inputs import RawRecord as RawRecord, iter_inputs as iter_inputs, read_record as read_record
    from .thresholds import (
        Thresholds as Thresholds,
        choose_thresholds as choose_thresholds,
        run_thresholds as run_thresholds,
    )
    from .export import (
        export_model as export_model,
        exported_record_probs as exported_record_probs,
        load_exported as load_exported,
    )
    from .explain import (
        Explained as Explained,
        Explanation as Explanation,
        explain_inputs as explain_inputs,
        explain_record as explain_record,
        write_explanation as write_explanation,
    )
    from .modelcard import model_card_text as model_card_text, write_model_card as write_model_card
else:  # what runs: the same names, imported on first use (tests/test_lazy_imports.py keeps both equal)
    __getattr__, __dir__, __all__ = lazy_exports(
        __name__,
        {
            "predict": ("PredictionResult", "Predictor", "exit_code", "load_run_calibrator", "write_outputs"),
            "inputs": ("RawRecord", "iter_inputs", "read_record"),
            "thresholds": ("Thresholds", "choose_thresholds", "run_thresholds"),
            "export": ("export_model", "exported_record_probs", "load_exported"),
            "explain": ("Explained", "Explanation", "explain_inputs", "explain_record", "write_explanation"),
            "modelcard": ("model_card_text", "write_model_card"),
        },
    )
