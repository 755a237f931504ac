"""The run config, as the training engine sees it: the settings layer's :class:`RunConfig`.

Defined (and validated) in :mod:`ecg_transfer.settings.run`; this module keeps the engine's
historical import path. Fine-tuning presets are documented in :mod:`ecg_transfer.training.finetune`.
"""

from __future__ import annotations

from ..settings.names import COMPILE_MODES, MEMORY_FORMATS, OPTIMIZER_IMPLS, POLICIES, RESUMABLE_KEYS
from ..settings.run import (
    FinetuneConfig,
    OptimizerConfig,
    RunConfig,
    ScheduleConfig,
    StageSpec,
    load_config,
    save_config,
)

__all__ = [
    "COMPILE_MODES",
    "FinetuneConfig",
    "MEMORY_FORMATS",
    "OPTIMIZER_IMPLS",
    "OptimizerConfig",
    "POLICIES",
    "RESUMABLE_KEYS",
    "RunConfig",
    "ScheduleConfig",
    "StageSpec",
    "load_config",
    "save_config",
]
