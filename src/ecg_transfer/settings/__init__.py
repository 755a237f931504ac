"""Typed settings, validated before anything reads data or trains: the run config (with its
``[task]`` table), the study spec, and the registries of allowed names.

The bottom layer of the package: it imports neither torch nor any other part of the pipeline
(only ``errors`` and ``atomic``), so ``study plan``, ``config show`` and editors' schema checks work
without a deep-learning stack. Every model is strict pydantic v2 (unknown keys refused, no
coercion), and every error is a :class:`ecg_transfer.errors.ConfigError` naming the dotted key and
what is allowed.
"""

from .base import Settings
from .names import (
    CALIBRATORS, DATASET_NAMES, INPUT_KINDS, MODEL_NAMES, POLICIES, PROTOCOLS, PTBXL_TASKS, RESUMABLE_KEYS,
    STANDARD_LEADS,
)
from .run import (
    FinetuneConfig, OptimizerConfig, RunConfig, ScheduleConfig, StageSpec, load_config, preset_stages,
    read_settings_file, save_config,
)
from .schema import json_schemas
from .study import StudySettings, StudySpec, load_spec, spec_from_dict
from .task import TaskSettings

__all__ = [
    "CALIBRATORS", "DATASET_NAMES", "INPUT_KINDS", "MODEL_NAMES", "POLICIES", "PROTOCOLS", "PTBXL_TASKS",
    "RESUMABLE_KEYS", "STANDARD_LEADS",
    "FinetuneConfig", "OptimizerConfig", "RunConfig", "ScheduleConfig", "Settings", "StageSpec", "StudySettings",
    "StudySpec", "TaskSettings", "json_schemas", "load_config", "load_spec", "preset_stages", "read_settings_file",
    "save_config", "spec_from_dict",
]
