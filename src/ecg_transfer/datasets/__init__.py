"""Dataset adapters: raw files on disk -> validated signals in mV + a metadata/label table.

:func:`open_dataset` opens ``ptbxl`` or ``cinc`` (any CinC 2020/2021-format folder) by name;
:func:`load_or_build` caches an adapter's signals; :func:`load_task` turns a run config's ``[task]``
table into the arrays, labels and splits training needs; :func:`summarise` describes a set;
:func:`find_duplicates` / :func:`leaked_records` audit sets for copied signals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # what mypy and IDEs read (and nothing else: a misspelt name is an error)
    from .base import DatasetAdapter as DatasetAdapter, RecordProblem as RecordProblem
    from .registry import check_dataset_root as check_dataset_root, open_dataset as open_dataset
    from .summary import format_summary as format_summary, summarise as summarise
    from .cache import CachedSignals as CachedSignals, load_or_build as load_or_build, open_cache as open_cache
    from .task import TaskData as TaskData, load_task as load_task
    from .audit import find_duplicates as find_duplicates, leaked_records as leaked_records
else:  # what runs: the same names, imported on first use (tests/test_lazy_imports.py keeps both equal)
    __getattr__, __dir__, __all__ = lazy_exports(
        __name__,
        {
            "base": ("DatasetAdapter", "RecordProblem"),
            "registry": ("check_dataset_root", "open_dataset"),
            "summary": ("format_summary", "summarise"),
            "cache": ("CachedSignals", "load_or_build", "open_cache"),
            "task": ("TaskData", "load_task"),
            "audit": ("find_duplicates", "leaked_records"),
        },
    )
