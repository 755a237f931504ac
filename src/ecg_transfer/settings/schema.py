"""JSON Schemas of the run config and the study spec, for editors that check TOML files
(e.g. Taplo / Even Better TOML with a ``#:schema`` line, or any JSON-Schema-aware tool)."""

from __future__ import annotations

from typing import Any

from .run import RunConfig
from .study import StudySettings


def _study_schema() -> dict[str, Any]:
    schema = StudySettings.model_json_schema()
    # profiles.NAME: any subset of the spec's tables, merged over it by --profile NAME
    schema.setdefault("properties", {})["profiles"] = {
        "type": "object",
        "description": "named profiles: tables merged over the spec with --profile NAME",
        "additionalProperties": {"type": "object"},
    }
    return schema


def json_schemas() -> dict[str, dict[str, Any]]:
    """``{"run-config": ..., "study-spec": ...}``: JSON Schema (draft 2020-12) documents."""
    run = RunConfig.model_json_schema()
    run["title"] = "ecg-transfer run config"
    study = _study_schema()
    study["title"] = "ecg-transfer study spec"
    for schema in (run, study):
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return {"run-config": run, "study-spec": study}


__all__ = ["json_schemas"]
