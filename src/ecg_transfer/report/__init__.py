"""The study report (``ecg-transfer report``) and report figures made from saved runs.

``write_report(study_dir)`` turns STUDY_DIR/results.json into report/index.html (self-contained)
and report/report.md. (A run's own reliability diagrams are ``evaluation.plots``.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # what mypy and IDEs read (and nothing else: a misspelt name is an error)
    from .build import write_report as write_report
    from .data import ReportError as ReportError, load_results as load_results
else:  # what runs: the same names, imported on first use (tests/test_lazy_imports.py keeps both equal)
    __getattr__, __dir__, __all__ = lazy_exports(
        __name__, {"build": ("write_report",), "data": ("ReportError", "load_results")}
    )
