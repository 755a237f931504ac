"""Reading STUDY_DIR/results.json for the report: loading with clear errors, and the small value
helpers that the figures, the HTML page and the Markdown summary share.

The study writes results.json while it runs, so every section may be missing (experiment
disabled) and every value may be null (run failed or not done yet). Everything here therefore
accepts missing or malformed pieces and turns them into ``None``; only a file that is not a study
result at all (missing, not JSON, wrong ``format``, a section of the wrong type) is an error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import EcgTransferError

#: The results format this report reads (see the study runner).
FORMAT = "ecg_transfer.study-results/1"
RESULTS_FILE = "results.json"

#: Top-level sections and the JSON type each must have when present (null counts as absent).
SECTION_TYPES: dict[str, type] = {
    "study": dict, "status": dict, "reference": dict, "headline": list, "pretrain": dict,
    "exp1": dict, "exp2": list, "exp3": list, "exp4": list, "exp5": list,
}

#: What the original study's protocol got wrong (REFERENCE.md), shown beside its numbers.
ORIGINAL_FLAWS: tuple[str, ...] = (
    "Unequal arms: the standalone baseline got raw ADC integers, unstandardised, leads scrambled by a "
    "reshape, and was tested on a different fold than the fine-tuned model.",
    "G12EC RBBB (542 records) was not merged into CRBBB (28 records).",
    "The test fold doubled as validation set and as the temperature-scaling fit set.",
    "PTB-XL pre-training used random folds and a different test set for each data fraction.",
    "Training used centre crops only (the recipe uses random crops).",
    "The 100 Hz G12EC conversion mis-ordered records (chance AUC); the FFT input cropped an unshifted spectrum.",
    "Single runs: no seeds, no confidence intervals, no paired test.",
)


class ReportError(EcgTransferError):
    """STUDY_DIR does not hold a readable study result; the message names the file and the problem."""


def load_results(study_dir: str | Path) -> dict[str, Any]:
    """STUDY_DIR/results.json, checked for its format and section types (values are not checked:
    missing or null values are expected while a study runs)."""
    study_dir = Path(study_dir)
    path = study_dir / RESULTS_FILE
    if not study_dir.is_dir():
        raise ReportError(f"{study_dir}: not a directory (expected a study directory holding {RESULTS_FILE})")
    if not path.is_file():
        raise ReportError(f"{path}: not found; is {study_dir} a study directory? "
                          "(`ecg-transfer study` writes results.json there)")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot be read ({exc})") from None
    if not isinstance(results, dict):
        raise ReportError(f"{path}: expected a JSON object, found {type(results).__name__}")
    fmt = results.get("format")
    if fmt != FORMAT:
        raise ReportError(f"{path}: \"format\" is {fmt!r}; this report reads {FORMAT!r}")
    for key, kind in SECTION_TYPES.items():
        value = results.get(key)
        if value is not None and not isinstance(value, kind):
            raise ReportError(f"{path}: section \"{key}\" must be a JSON {'object' if kind is dict else 'array'} "
                              f"or null, found {type(value).__name__}")
    return results


# ---------------------------------------------------------------------------------------------
# values


def num(x: Any) -> float | None:
    """A finite float, or None (null, NaN, a string, ...)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class Interval:
    """A point value with its CI and, for multi-seed arms, the spread over seeds."""

    value: float | None
    lo: float | None = None
    hi: float | None = None
    sd: float | None = None
    values: list[float] = field(default_factory=list)
    p: float | None = None
    n: int | None = None  # runs finished
    n_planned: int | None = None  # runs planned

    @property
    def ok(self) -> bool:
        return self.value is not None

    @property
    def has_ci(self) -> bool:
        return self.lo is not None and self.hi is not None


def interval(x: Any) -> Interval:
    """An interval from ``{"value", "ci", "sd", "values", "p"}``, a bare number, or nothing."""
    if isinstance(x, Mapping):
        ci = x.get("ci")
        lo = hi = None
        if isinstance(ci, Sequence) and not isinstance(ci, str) and len(ci) == 2:
            lo, hi = num(ci[0]), num(ci[1])
        vals = x.get("values")
        values = [v for v in (num(v) for v in vals) if v is not None] if isinstance(vals, list) else []
        n, planned = num(x.get("n")), num(x.get("n_planned"))
        return Interval(num(x.get("value")), lo, hi, num(x.get("sd")), values, num(x.get("p")),
                        None if n is None else int(n), None if planned is None else int(planned))
    return Interval(num(x))


def fmt(x: float | None, digits: int = 3, sign: bool = False) -> str:
    if x is None:
        return "—"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def fmt_ci(iv: Interval, digits: int = 3, sign: bool = False) -> str:
    """``[0.890, 0.930]`` or an empty string."""
    if not iv.has_ci:
        return ""
    return f"[{fmt(iv.lo, digits, sign)}, {fmt(iv.hi, digits, sign)}]"


def fmt_interval(iv: Interval, missing: str, digits: int = 3, sign: bool = False) -> str:
    """``0.910 [0.890, 0.930]``, or ``missing`` when there is no value."""
    if not iv.ok:
        return missing
    ci = fmt_ci(iv, digits, sign)
    return fmt(iv.value, digits, sign) + (f" {ci}" if ci else "")


def fmt_p(p: float | None) -> str:
    if p is None:
        return ""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "—"
    s = float(s)
    if s < 60:
        return f"{s:.1f} s"
    h, rem = divmod(int(round(s)), 3600)
    m, sec = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {sec:02d} s"


def seeds_note(iv: Interval) -> str:
    """``sd 0.004, 3 runs`` for a multi-run value; ``2 of 3 runs`` while some are missing."""
    n = iv.n if iv.n is not None else len(iv.values)
    parts = []
    if n > 1 and iv.sd is not None:
        parts.append(f"sd {fmt(iv.sd)}")
    if iv.n_planned is not None and n < iv.n_planned:
        parts.append(f"{n} of {iv.n_planned} runs")
    elif n > 1:
        parts.append(f"{n} runs")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# sections


def section(results: Mapping[str, Any], key: str) -> Any:
    """The section, or None when it is missing, null or empty (the experiment was not run)."""
    value = results.get(key)
    return value if value else None


def rows(value: Any) -> list[dict]:
    """The dict rows of a list (anything else is skipped)."""
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def missing_word(results: Mapping[str, Any]) -> str:
    """What a null value most likely means, from the study's status: runs still to do → "pending";
    nothing left but failures → "failed"; both → "pending or failed"."""
    st = results.get("status") if isinstance(results.get("status"), dict) else {}
    left = (num(st.get("left")) or 0) + (num(st.get("running")) or 0)
    failed = (num(st.get("failed")) or 0) > 0 or bool(st.get("failed_runs"))
    if left and failed:
        return "pending or failed"
    if left:
        return "pending"
    if failed:
        return "failed"
    return "n/a" if st else "pending"


def row_missing(row: Mapping[str, Any], default: str) -> str:
    """A row's own status word when it carries one (``"status": "failed"``), else ``default``."""
    st = row.get("status")
    if isinstance(st, str) and st and st != "ok":
        return st
    if row.get("error"):
        return "failed"
    return default


def share_key(x: Any) -> float | None:
    """A data share (10, "10", 10.0) as a number for sorting and plotting."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def reference(results: Mapping[str, Any]) -> dict:
    ref = results.get("reference")
    return ref if isinstance(ref, dict) else {}


def ref_value(results: Mapping[str, Any], *keys: Any) -> float | None:
    """The original study's number at reference[k1][k2]..., keys compared as strings
    (``exp1 → "10" → "finetuned"``; a share 10.0 matches "10")."""
    node: Any = reference(results)
    for key in keys:
        if not isinstance(node, dict):
            return None
        hit = None
        for k, v in node.items():
            if str(k) == str(key) or (share_key(k) is not None and share_key(k) == share_key(key)):
                hit = v
                break
        node = hit
    return num(node)
