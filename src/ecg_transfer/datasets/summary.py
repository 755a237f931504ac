"""The data summary: what a dataset on disk holds, and every problem found reading it.

It goes through the cache, so every signal is read and checked once (and the next run is instant).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from .base import DatasetAdapter
from .cache import CachedSignals, load_or_build
from .registry import open_dataset
from .splits import record_folds


def _class_counts(names: list[str], y: np.ndarray) -> dict[str, int]:
    return {n: int(c) for n, c in zip(names, y.sum(axis=0))}


def label_tables(adapter: DatasetAdapter, table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Class counts per PTB-XL task (PTB-XL only), per label protocol (both datasets) and of the
    ``dx`` set (CinC-format sets: every SNOMED code present, equivalent codes merged)."""
    from ..labels import PROTOCOLS, PTBXL_TASKS, get_protocol, task_labels

    out: dict[str, dict[str, int]] = {}
    if adapter.name == "ptbxl":
        db = adapter.database.loc[table["ecg_id"].to_numpy()]
        for task in PTBXL_TASKS:
            names, y = task_labels(db, adapter.statements, task)
            out[task] = _class_counts(names, y)
    for name in PROTOCOLS:
        proto = get_protocol(name)
        out[f"protocol:{name}"] = _class_counts(list(proto.class_names), proto.encode_table(table))
    if "dx" in table.columns:  # CinC-format sets: every SNOMED code of the set (labels = "dx")
        from ..labels import dx_labels

        out["dx"] = _class_counts(*dx_labels(table))
    return out


def summarise(
    dataset: str,
    root: str | os.PathLike,
    *,
    fs: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    allow_missing: bool = False,
    strict: bool = False,
    progress: bool = True,
) -> dict:
    """Build (or open) the cache and describe the dataset. JSON-ready."""
    adapter = open_dataset(dataset, root, fs=fs, allow_missing=allow_missing, strict=strict)
    cached: CachedSignals = load_or_build(adapter, cache_dir=cache_dir, progress=progress, strict=strict)
    table = cached.table
    labels = label_tables(adapter, table)
    tasks = {name: len(counts) for name, counts in labels.items()}
    fold_of = record_folds(cached, n_folds=min(10, len(table)) or 1)
    folds = {int(k): int(v) for k, v in sorted(Counter(fold_of).items())}
    fold_source = "strat_fold (PTB-XL)" if "fold" in table.columns else "iterative stratification on cinc2020, seed 0"
    summary = {
        "dataset": adapter.name,
        "root": str(Path(root).resolve()),
        "records": int(len(table)),
        "records_indexed": int(cached.meta["shape"][0]),
        "sampling_rates_hz": sorted({float(f) for f in table["fs"]}),
        "cache": {"path": str(cached.path), **cached.meta["settings"]},
        "leads": int(cached.meta["settings"]["n_leads"]),
        "seconds": sorted({round(float(n) / float(f), 3) for n, f in zip(table["n_samples"], table["fs"])}),
        "folds": folds,
        "fold_source": fold_source,
        "tasks": tasks,
        "class_counts": labels,
        "problems": [p.to_dict() for p in cached.problems],
    }
    missing = getattr(adapter, "missing", [])
    if missing:
        summary["missing_records"] = {"count": len(missing), "first": missing[:10]}
    return summary


def format_summary(s: dict) -> str:
    """The human-readable version of :func:`summarise`'s dict."""
    lines = [
        f"{s['dataset']} at {s['root']}",
        f"  records: {s['records']} usable of {s['records_indexed']} indexed; "
        f"{s['leads']} leads; native rate(s) {', '.join(f'{r:g}' for r in s['sampling_rates_hz'])} Hz; "
        f"length(s) {', '.join(f'{x:g}' for x in s['seconds'][:5])} s",
        f"  cache: {s['cache']['path']} ({s['cache']['fs']:g} Hz, {s['cache']['n_samples']} samples)",
    ]
    if s.get("missing_records"):
        m = s["missing_records"]
        lines.append(f"  missing at this rate: {m['count']} records (e.g. {', '.join(m['first'][:3])}); using those present")
    if s["folds"]:
        lines.append(f"  folds ({s['fold_source']}): " + ", ".join(f"{k}: {v}" for k, v in s["folds"].items()))
    lines.append("  label sets (classes; most frequent):")
    for name, counts in s["class_counts"].items():
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:4]
        lines.append(f"    {name:<24} {len(counts):>3}   " + ", ".join(f"{k} {v}" for k, v in top))
    probs = s["problems"]
    lines.append(f"  problems: {len(probs)}" + ("" if probs else " (none)"))
    for p in probs[:50]:
        lines.append(f"    {p['record']}: {p['problem']}")
    if len(probs) > 50:
        lines.append(f"    ... and {len(probs) - 50} more (see --json)")
    return "\n".join(lines)
