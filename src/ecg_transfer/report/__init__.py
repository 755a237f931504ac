"""The study report (``ecg-transfer report``) and report figures made from saved runs.

``write_report(study_dir)`` turns STUDY_DIR/results.json into report/index.html (self-contained)
and report/report.md; ``plots.reliability_grid`` draws a run's reliability diagrams.
"""

from __future__ import annotations

from typing import Any

__all__ = ["write_report", "load_results", "ReportError"]


def __getattr__(name: str) -> Any:
    # lazy: importing ecg_transfer.report.plots (evaluation) should not import the whole report
    if name == "write_report":
        from .build import write_report

        return write_report
    if name in ("load_results", "ReportError"):
        from . import data

        return getattr(data, name)
    raise AttributeError(name)
