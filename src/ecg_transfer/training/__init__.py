"""Training engine: arrays in, a run directory out (config, environment, checkpoints, metrics,
final model, record-level predictions). Fine-tuning and training from scratch share one path.

Entry point: :func:`train_run`. Building blocks: :class:`GlobalStandardScaler` (scaler),
crops/windows (windows), :class:`RunConfig` (config), :func:`fit` (loop), predictions I/O
(predict), transfer policies (finetune), ``model.pt`` I/O (modelfile).
"""

from .config import FinetuneConfig, OptimizerConfig, RunConfig, ScheduleConfig, StageSpec, load_config, save_config
from .finetune import resolve_stages
from .loop import Stage, TrainingDivergedError, fit, macro_auc
from .modelfile import LoadedModel, load_model_file, save_model_file
from .predict import load_predictions, predict_records, save_predictions
from .run import RunResult, train_run
from .scaler import GlobalStandardScaler

__all__ = [
    "FinetuneConfig", "GlobalStandardScaler", "LoadedModel", "OptimizerConfig", "RunConfig", "RunResult",
    "ScheduleConfig", "Stage", "StageSpec", "TrainingDivergedError", "fit", "load_config", "load_model_file",
    "load_predictions", "macro_auc", "predict_records", "resolve_stages", "save_config", "save_model_file",
    "save_predictions", "train_run",
]
