"""The configuration reference (``docs/configuration.md``), generated from the settings models so
that it can never drift from what is validated: every key, its type, default and description.

    ecg-transfer config reference > docs/configuration.md      (a test checks the file is current)
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .run import (
    FinetuneConfig,
    OptimizerConfig,
    RunConfig,
    ScheduleConfig,
    SslConfig,
    SslSource,
    StageSpec,
    TrackingConfig,
)
from .study import (
    CalibrationExperiment,
    FrequencyExperiment,
    SamplingRateExperiment,
    SourceSection,
    SourceShareExperiment,
    StandaloneSection,
    StudySection,
    TargetSection,
    TargetShareExperiment,
)
from .task import TaskSettings

#: (heading, model) in the order a reader meets them.
RUN_TABLES: tuple[tuple[str, type[BaseModel]], ...] = (
    ("top level", RunConfig),
    ("[task]", TaskSettings),
    ("[optimizer]", OptimizerConfig),
    ("[schedule]", ScheduleConfig),
    ("[finetune]", FinetuneConfig),
    ("[[finetune.stages]]", StageSpec),
    ("[ssl]", SslConfig),
    ("[[ssl.extra_tasks]]", SslSource),
    ("[tracking]", TrackingConfig),
)
STUDY_TABLES: tuple[tuple[str, type[BaseModel]], ...] = (
    ("[study]", StudySection),
    ("[source]", SourceSection),
    ("[target]", TargetSection),
    ("[finetune]", FinetuneConfig),
    ("[standalone]", StandaloneSection),
    ("[experiments.target_share]", TargetShareExperiment),
    ("[experiments.source_share]", SourceShareExperiment),
    ("[experiments.sampling_rate]", SamplingRateExperiment),
    ("[experiments.calibration]", CalibrationExperiment),
    ("[experiments.frequency]", FrequencyExperiment),
)


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, __import__("types").UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is tuple:
        inner = [a for a in args if a is not Ellipsis]
        return f"list of {_type_name(inner[0])}" if inner else "list"
    if origin is dict or tp is dict:
        return "table"
    if tp is type(None):
        return "none"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "table"
    return {int: "integer", float: "number", bool: "true/false", str: "string"}.get(tp, "value")


def _default(info: Any) -> str:
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        value = info.default_factory()
        return "see below" if isinstance(value, BaseModel) else f"`{value!r}`" if value != {} else "`{}`"
    value = info.default
    if value is PydanticUndefined:
        return ""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, tuple):
        value = list(value)
    return f"`{value!r}`".replace("'", '"')


def model_table(model: type[BaseModel]) -> list[str]:
    lines = ["| key | type | default | what it does |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        desc = (info.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name}` | {_type_name(info.annotation)} | {_default(info)} | {desc} |")
    return lines


def reference_markdown() -> str:
    """The whole reference as Markdown."""
    out = [
        "# Configuration reference",
        "",
        "Generated from the settings layer (`ecg_transfer.settings`) by `ecg-transfer config reference`; "
        "do not edit by hand. Every key is validated strictly (unknown keys and wrong types are refused, "
        "naming the dotted key); `ecg-transfer config show FILE` prints a file's resolved settings and "
        "`ecg-transfer config schema` writes JSON Schemas for editors.",
        "",
        "## Run configs (`ecg-transfer train|pretrain|finetune|standalone CONFIG`)",
        "",
    ]
    for heading, model in RUN_TABLES:
        doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        out += [f"### {heading}", "", doc, "", *model_table(model), ""]
    out += [
        "## Study specs (`ecg-transfer study plan|run|status SPEC [--profile NAME]`)",
        "",
        "`[profiles.NAME]` tables hold any of the tables below and are merged over the spec with "
        "`--profile NAME` (`run` and `model_kwargs` tables are replaced whole).",
        "",
    ]
    for heading, model in STUDY_TABLES:
        out += [f"### {heading}", "", *model_table(model), ""]
    return "\n".join(out).rstrip() + "\n"


__all__ = ["reference_markdown"]
