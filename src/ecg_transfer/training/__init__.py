"""Training engine: arrays in, a run directory out (config, environment, checkpoints, metrics,
final model, record-level predictions). Fine-tuning and training from scratch share one path.

Entry point: :func:`train_run`. Building blocks: :class:`GlobalStandardScaler` (scaler),
crops/windows (windows), :class:`RunConfig` (config), :func:`fit` (loop), predictions I/O
(predict), transfer policies (finetune), ``model.pt`` I/O (modelfile); what ``train_run`` trains
and under which kernels (:func:`trainable_model`, :func:`deterministic_kernels`), for measurements
that time the loop itself (benchmarks/model_epoch_cost.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # what mypy and IDEs read (and nothing else: a misspelt name is an error)
    from .config import (
        FinetuneConfig as FinetuneConfig,
        OptimizerConfig as OptimizerConfig,
        RunConfig as RunConfig,
        ScheduleConfig as ScheduleConfig,
        StageSpec as StageSpec,
        load_config as load_config,
        save_config as save_config,
    )
    from .finetune import resolve_stages as resolve_stages
    from .loop import Stage as Stage, TrainingDivergedError as TrainingDivergedError, fit as fit, macro_auc as macro_auc
    from .modelfile import (
        LoadedModel as LoadedModel,
        load_model_file as load_model_file,
        save_model_file as save_model_file,
    )
    from .predict import (
        load_predictions as load_predictions,
        predict_records as predict_records,
        save_predictions as save_predictions,
    )
    from .run import (
        RunResult as RunResult,
        deterministic_kernels as deterministic_kernels,
        train_run as train_run,
        trainable_model as trainable_model,
    )
    from .data import load_training_data as load_training_data
    from .history import kept_epoch as kept_epoch
    from .scaler import GlobalStandardScaler as GlobalStandardScaler
else:  # what runs: the same names, imported on first use (tests/test_lazy_imports.py keeps both equal)
    __getattr__, __dir__, __all__ = lazy_exports(
        __name__,
        {
            "config": (
                "FinetuneConfig",
                "OptimizerConfig",
                "RunConfig",
                "ScheduleConfig",
                "StageSpec",
                "load_config",
                "save_config",
            ),
            "finetune": ("resolve_stages",),
            "loop": ("Stage", "TrainingDivergedError", "fit", "macro_auc"),
            "modelfile": ("LoadedModel", "load_model_file", "save_model_file"),
            "predict": ("load_predictions", "predict_records", "save_predictions"),
            "run": ("RunResult", "deterministic_kernels", "train_run", "trainable_model"),
            "data": ("load_training_data",),
            "history": ("kept_epoch",),
            "scaler": ("GlobalStandardScaler",),
        },
    )
