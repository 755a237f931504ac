"""The study report (``ecg-transfer report``) and report figures made from saved runs.

``write_report(study_dir)`` turns STUDY_DIR/results.json into report/index.html (self-contained)
and report/report.md. (A run's own reliability diagrams are ``evaluation.plots``.)
"""

from __future__ import annotations

from typing import Any

__all__ = ["write_report", "load_results", "ReportError"]


def __getattr__(name: str) -> Any:
    # lazy: `ecg-transfer --help` should not import matplotlib and the whole report
    if name == "write_report":
        from .build import write_report

        return write_report
    if name in ("load_results", "ReportError"):
        from . import data

        return getattr(data, name)
    raise AttributeError(name)
