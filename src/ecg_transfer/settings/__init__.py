"""Typed settings, validated before anything reads data or trains: the run config (with its
``[task]`` table), the study spec, and the registries of allowed names.

The bottom layer of the package: it imports neither torch nor any other part of the pipeline
(only ``errors`` and ``atomic``), so ``study plan``, ``config show`` and editors' schema checks work
without a deep-learning stack. Every model is strict pydantic v2 (unknown keys refused, no
coercion), and every error is a :class:`ecg_transfer.errors.ConfigError` naming the dotted key and
what is allowed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # what mypy and IDEs read (and nothing else: a misspelt name is an error)
    from .base import Settings as Settings
    from .names import (
        CALIBRATORS as CALIBRATORS,
        DATASET_NAMES as DATASET_NAMES,
        INPUT_KINDS as INPUT_KINDS,
        MODEL_NAMES as MODEL_NAMES,
        POLICIES as POLICIES,
        PROTOCOLS as PROTOCOLS,
        PTBXL_TASKS as PTBXL_TASKS,
        RESUMABLE_KEYS as RESUMABLE_KEYS,
        STANDARD_LEADS as STANDARD_LEADS,
    )
    from .run import (
        FinetuneConfig as FinetuneConfig,
        OptimizerConfig as OptimizerConfig,
        RunConfig as RunConfig,
        ScheduleConfig as ScheduleConfig,
        StageSpec as StageSpec,
        load_config as load_config,
        preset_stages as preset_stages,
        read_settings_file as read_settings_file,
        save_config as save_config,
    )
    from .schema import json_schemas as json_schemas
    from .study import (
        StudySettings as StudySettings,
        StudySpec as StudySpec,
        load_spec as load_spec,
        spec_from_dict as spec_from_dict,
    )
    from .task import TaskSettings as TaskSettings
else:  # what runs: the same names, imported on first use (tests/test_lazy_imports.py keeps both equal)
    __getattr__, __dir__, __all__ = lazy_exports(
        __name__,
        {
            "base": ("Settings",),
            "names": (
                "CALIBRATORS",
                "DATASET_NAMES",
                "INPUT_KINDS",
                "MODEL_NAMES",
                "POLICIES",
                "PROTOCOLS",
                "PTBXL_TASKS",
                "RESUMABLE_KEYS",
                "STANDARD_LEADS",
            ),
            "run": (
                "FinetuneConfig",
                "OptimizerConfig",
                "RunConfig",
                "ScheduleConfig",
                "StageSpec",
                "load_config",
                "preset_stages",
                "read_settings_file",
                "save_config",
            ),
            "schema": ("json_schemas",),
            "study": ("StudySettings", "StudySpec", "load_spec", "spec_from_dict"),
            "task": ("TaskSettings",),
        },
    )
