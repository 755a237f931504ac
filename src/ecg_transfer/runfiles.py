"""Who owns a run directory: a study's run store, or the user.

At the bottom of the package so that any command that writes into a run directory (``evaluate``,
``model-card``) can ask before it overwrites what a study relies on, without importing the study
layer above it. The study store (``study.store``) writes these files; this module only reads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: A study run's definition (written by the run store) and the study's own description.
DEFINITION_FILE = "definition.json"
STUDY_FILE = "study.json"


def study_run_info(run_dir: str | Path) -> dict[str, Any] | None:
    """``{"study_dir", "key", "name"}`` when ``run_dir`` is a run of a study's store
    (``STUDY_DIR/runs/<key>/definition.json`` beside ``STUDY_DIR/study.json``), else None."""
    d = Path(run_dir)
    if not (d / DEFINITION_FILE).is_file() or d.parent.name != "runs" or not (d.parent.parent / STUDY_FILE).is_file():
        return None
    try:
        definition = json.loads((d / DEFINITION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        definition = {}
    return {"study_dir": d.parent.parent, "key": d.name, "name": definition.get("name", d.name)}


__all__ = ["DEFINITION_FILE", "STUDY_FILE", "study_run_info"]
