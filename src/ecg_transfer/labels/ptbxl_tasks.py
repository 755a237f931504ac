"""PTB-XL label tasks, exactly as the PTB-XL benchmark (Strodthoff et al. 2020) defines them.

The benchmark reads ``scp_codes`` (a Python dict literal, SCP code -> likelihood) and aggregates it
through ``scp_statements.csv``. Its numbers (REFERENCE.md) are only comparable if our labels are
built the same way, so the rules below copy the benchmark's, including the ones that surprise:

* every key counts, whatever its likelihood (form and rhythm statements all carry likelihood 0,
  so any likelihood threshold above 0 silently empties those tasks);
* classes are the labels that actually occur (the benchmark fits a ``MultiLabelBinarizer`` on the
  data), sorted by name;
* a record with no label in the task gets an all-zero row here; the benchmark drops such records,
  and so must the caller (``y.any(axis=1)``).
"""

from __future__ import annotations

import ast
import json
from collections import Counter
from collections.abc import Mapping
from numbers import Real

import numpy as np
import pandas as pd

from ..errors import ConfigError, DatasetError
from ..settings.names import PTBXL_TASKS as SETTINGS_PTBXL_TASKS

# the task names are defined once, in the settings layer
PTBXL_TASKS: tuple[str, ...] = SETTINGS_PTBXL_TASKS

_STATEMENT_COLUMNS = ("diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass")


def _parse_plain_codes(s: str) -> dict[str, float] | None:
    """The common cell (single-quoted codes, finite numbers) read as JSON, ten times faster than
    ``ast.literal_eval`` (1.5 s of a PTB-XL cache build went here); ``None`` for anything else, which
    the literal parser then reads or refuses with its message, so both paths accept the same cells."""
    try:
        value = json.loads(s.replace("'", '"'))
    except (ValueError, RecursionError, OverflowError):
        return None
    if not isinstance(value, dict):
        return None
    if not all(type(v) in (int, float) and abs(v) < 1e300 for v in value.values()):
        return None  # bools, strings, None, NaN, infinities, huge integers: the literal path decides
    return {code: float(likelihood) for code, likelihood in value.items()}


def parse_scp_codes(s: str) -> dict[str, float]:
    """Parse one ``scp_codes`` cell, e.g. ``"{'NORM': 100.0, 'SR': 0.0}"``.

    ``ast.literal_eval`` rather than ``eval``: the cell is data, never code (a JSON reading of the
    common form comes first, for speed; see :func:`_parse_plain_codes`).
    """
    # backslashes: JSON and Python read escapes differently, so such a cell takes the literal path
    plain = _parse_plain_codes(s) if "'" in s and "\\" not in s else None
    if plain is not None:
        return plain
    try:
        value = ast.literal_eval(s)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(f"malformed scp_codes {s!r}: not a Python literal ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"malformed scp_codes {s!r}: expected a dict, got {type(value).__name__}")
    parsed: dict[str, float] = {}
    for code, likelihood in value.items():
        number = isinstance(likelihood, Real) and not isinstance(likelihood, bool)
        if not isinstance(code, str) or not number:
            raise ValueError(
                f"malformed scp_codes {s!r}: expected SCP code (str) -> likelihood (number), "
                f"got {code!r}: {likelihood!r}"
            )
        try:
            parsed[code] = float(likelihood)
        except OverflowError:
            raise ValueError(f"malformed scp_codes {s!r}: likelihood {code!r} is too large") from None
    return parsed


def _as_dict(value: object) -> Mapping[str, float]:
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str):
        return parse_scp_codes(value)
    raise ValueError(f"malformed scp_codes {value!r}: expected a dict or its string form")


def task_classes(statements: pd.DataFrame, task: str) -> dict[str, str]:
    """Map each SCP statement that belongs to ``task`` to the class name it counts as.

    ``statements`` is ``scp_statements.csv`` read with ``index_col=0`` (index = SCP code).
    """
    if task not in PTBXL_TASKS:
        raise ConfigError(f"unknown PTB-XL task {task!r}; allowed: {', '.join(PTBXL_TASKS)}")
    missing = [c for c in _STATEMENT_COLUMNS if c not in statements.columns]
    if missing:
        raise DatasetError(f"scp_statements table lacks column(s) {missing}; read scp_statements.csv with index_col=0")
    if task == "all":
        return {code: code for code in statements.index}
    if task in ("form", "rhythm"):
        rows = statements[statements[task] == 1]
        return {code: code for code in rows.index}
    rows = statements[statements["diagnostic"] == 1]
    if task == "diagnostic":
        return {code: code for code in rows.index}
    column = "diagnostic_subclass" if task == "subdiagnostic" else "diagnostic_class"
    return {code: str(name) for code, name in rows[column].items() if pd.notna(name)}


def task_labels(
    database: pd.DataFrame, statements: pd.DataFrame, task: str, min_likelihood: float | None = None, min_count: int = 0
) -> tuple[list[str], np.ndarray]:
    """Multi-hot labels of one benchmark task, one row per ``database`` row (same order).

    Returns ``(classes, y)``: the sorted class names and an ``(N, C)`` uint8 matrix. Sizes on the
    full PTB-XL: all 71, diagnostic 44, subdiagnostic 23, superdiagnostic 5, form 19, rhythm 12.

    ``min_likelihood``: ``None`` (the benchmark's way) counts every key; a number keeps only keys
    whose likelihood is >= it. ``min_count``: classes with fewer positive records are dropped
    (classes with no positive record never appear, as in the benchmark).

    Records with no label in the task get an all-zero row; the benchmark drops them, so should the
    caller: ``keep = y.any(axis=1)``. To keep one label space across subsets of PTB-XL (data
    fractions, folds), compute the labels on the full table and subset the rows afterwards.
    Keys missing from ``statements`` raise :class:`DatasetError`: a typo must not vanish quietly.
    """
    aggregate = task_classes(statements, task)
    if "scp_codes" not in database.columns:
        raise DatasetError("PTB-XL database table has no 'scp_codes' column (ptbxl_database.csv)")
    known = set(statements.index)
    per_record: list[set[str]] = []
    unknown: dict[str, object] = {}
    for row_id, value in database["scp_codes"].items():
        labels: set[str] = set()
        try:
            codes = _as_dict(value)
        except ValueError as exc:
            raise ValueError(f"row {row_id}: {exc}") from None
        for code, likelihood in codes.items():
            if code not in known:
                unknown.setdefault(code, row_id)
                continue
            if min_likelihood is not None and likelihood < min_likelihood:
                continue
            if code in aggregate:
                labels.add(aggregate[code])
        per_record.append(labels)
    if unknown:
        listed = ", ".join(f"{code} (first in row {row})" for code, row in sorted(unknown.items()))
        raise DatasetError(f"scp_codes use statements missing from scp_statements.csv: {listed}")

    counts = Counter(name for labels in per_record for name in labels)
    classes = sorted(name for name, n in counts.items() if n >= max(min_count, 1))
    column = {name: j for j, name in enumerate(classes)}
    y = np.zeros((len(per_record), len(classes)), dtype=np.uint8)
    for i, labels in enumerate(per_record):
        for name in labels:
            if name in column:
                y[i, column[name]] = 1
    return classes, y
