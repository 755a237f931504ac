"""The data summary: what a dataset on disk holds, and every problem found reading it.

By default it reads the headers and index files only (seconds for a whole CinC 2021 collection);
``signals=True`` (``data summary --signals``) also reads every signal through the cache -- so each
is checked once, signal problems are listed and signal statistics given, and the next run is
instant -- which for a large collection is a full cache build.
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


def _label_sets(adapter: DatasetAdapter, table: pd.DataFrame) -> dict[str, tuple[list[str], np.ndarray]]:
    """Class names and multi-hot labels per PTB-XL task (PTB-XL only), per label protocol (both
    datasets) and of the ``dx`` set (CinC-format sets: every SNOMED code present, equivalent codes
    merged)."""
    from ..labels import PROTOCOLS, PTBXL_TASKS, get_protocol, task_labels
    from .ptbxl import PTBXL

    out: dict[str, tuple[list[str], np.ndarray]] = {}
    if isinstance(adapter, PTBXL):
        db = adapter.database.loc[table["ecg_id"].to_numpy()]
        for task in PTBXL_TASKS:
            names, y = task_labels(db, adapter.statements, task)
            out[task] = (list(names), y)
    for name in PROTOCOLS:
        proto = get_protocol(name)
        out[f"protocol:{name}"] = (list(proto.class_names), proto.encode_table(table))
    if "dx" in table.columns:  # CinC-format sets: every SNOMED code of the set (labels = "dx")
        from ..labels import dx_labels

        names, y = dx_labels(table)
        out["dx"] = (list(names), y)
    return out


def label_tables(adapter: DatasetAdapter, table: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Class counts per PTB-XL task (PTB-XL only), per label protocol (both datasets) and of the
    ``dx`` set (CinC-format sets: every SNOMED code present, equivalent codes merged)."""
    return {name: _class_counts(names, y) for name, (names, y) in _label_sets(adapter, table).items()}


def signal_statistics(cached: CachedSignals) -> dict:
    """Amplitude statistics over the good records of a cache (float64 sums, one record at a time)."""
    total = sq = 0.0
    count, flat = 0, 0
    peaks = []
    for row in cached.table["row"].to_numpy():
        x = np.asarray(cached.signals.record(int(row)), dtype=np.float64)
        total, sq, count = total + float(x.sum()), sq + float(np.square(x).sum()), count + x.size
        peaks.append(float(np.abs(x).max()) if x.size else 0.0)
        flat += int(x.size > 0 and float(x.std()) == 0.0)
    mean = total / count if count else float("nan")
    std = float(np.sqrt(max(sq / count - mean * mean, 0.0))) if count else float("nan")
    return {
        "records_read": len(peaks),
        "mean_mv": round(mean, 6),
        "std_mv": round(std, 6),
        "max_abs_mv_median": round(float(np.median(peaks)), 4) if peaks else None,
        "max_abs_mv_p99": round(float(np.percentile(peaks, 99)), 4) if peaks else None,
        "flat_records": flat,
    }


def _folds(cached: CachedSignals | None, table: pd.DataFrame) -> tuple[dict[int, int], str]:
    if "fold" in table.columns:
        return {int(k): int(v) for k, v in sorted(Counter(table["fold"]).items())}, "strat_fold (PTB-XL)"
    if cached is None:
        return {}, "made from the signals (identical records kept together): add --signals"
    fold_of = record_folds(cached, n_folds=min(10, len(table)) or 1)
    return (
        {int(k): int(v) for k, v in sorted(Counter(fold_of).items())},
        "iterative stratification on cinc2020, seed 0",
    )


def _skipped_at_index(adapter: DatasetAdapter) -> int:
    """Records the adapter's index left out (a header that does not parse, a missing or short
    ``.mat``, a bad row of ``ptbxl_database.csv``, ...): its problems tagged ``[record skipped]``."""
    return len({p.record for p in getattr(adapter, "problems", []) if p.problem.endswith("[record skipped]")})


def summarise(
    dataset: str,
    root: str | os.PathLike,
    *,
    fs: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    allow_missing: bool = False,
    strict: bool = False,
    progress: bool = True,
    signals: bool = False,
) -> dict:
    """Describe the dataset from its headers (``signals=True``: also read every signal through the
    cache, list signal problems and give amplitude statistics). JSON-ready."""
    adapter = open_dataset(dataset, root, fs=fs, allow_missing=allow_missing, strict=strict)
    index = adapter.index()
    cached = load_or_build(adapter, cache_dir=cache_dir, progress=progress, strict=strict) if signals else None
    table = cached.table if cached is not None else index
    problems = cached.problems if cached is not None else list(getattr(adapter, "problems", []))
    indexed = int(len(cached.signals) if cached is not None else len(index))
    skipped = _skipped_at_index(adapter)  # adapter.problems holds the index's problems (index() ran above)
    label_sets = _label_sets(adapter, table)
    labels = {name: _class_counts(names, y) for name, (names, y) in label_sets.items()}
    folds, fold_source = _folds(cached, table)
    summary = {
        "dataset": adapter.name,
        "root": str(Path(root).resolve()),
        "records": int(len(table)),
        "records_indexed": indexed,
        "records_found": indexed + skipped,  # the indexed ones and those the index skipped (under problems)
        "signals_read": cached is not None,
        "sampling_rates_hz": sorted({float(f) for f in table["fs"]}),
        "cache": None
        if cached is None
        else {
            "path": str(cached.path),
            "fs": cached.fs,
            "seconds": cached.meta["settings"]["seconds"],
            "bytes": cached.meta["store"]["bytes"],
            "samples_per_lead": cached.meta["samples_per_lead"],
        },
        "leads": sorted({int(n) for n in table["n_leads"]}) if len(table) else [],
        "seconds": sorted({round(float(n) / float(f), 3) for n, f in zip(table["n_samples"], table["fs"])}),
        "folds": folds,
        "fold_source": fold_source,
        "tasks": {name: len(counts) for name, counts in labels.items()},
        "class_counts": labels,
        # per label set: usable records with none of its classes, which a run on it leaves out
        # (min_count, which drops rare classes, can leave out more)
        "records_without_labels": {name: int((~y.any(axis=1)).sum()) for name, (_, y) in label_sets.items()},
        "signals": None if cached is None else signal_statistics(cached),
        "problems": [p.to_dict() for p in problems],
    }
    missing = getattr(adapter, "missing", [])
    if missing:
        summary["missing_records"] = {"count": len(missing), "first": missing[:10]}
    return summary


def format_summary(s: dict) -> str:
    """The human-readable version of :func:`summarise`'s dict."""
    secs = s["seconds"]
    lengths = (
        ", ".join(f"{x:g}" for x in secs) if len(secs) <= 5 else f"{secs[0]:g} to {secs[-1]:g} ({len(secs)} lengths)"
    )
    found = s.get("records_found", s["records_indexed"])
    skipped = f" ({found - s['records']} skipped: see problems)" if found > s["records"] else ""
    lines = [
        f"{s['dataset']} at {s['root']}",
        f"  records: {s['records']} usable of {found} found{skipped}; "
        f"{'/'.join(str(n) for n in s['leads'])} leads; native rate(s) "
        f"{', '.join(f'{r:g}' for r in s['sampling_rates_hz'])} Hz; length(s) {lengths} s",
    ]
    if s["cache"] is None:
        lines.append("  headers only: signals not read (--signals reads every signal: signal problems, statistics)")
    else:
        c, st = s["cache"], s["signals"]
        lines.append(f"  cache: {c['path']} ({c['fs']:g} Hz, {c['bytes'] / 2**20:.1f} MiB)")
        lines.append(
            f"  signals: {st['records_read']} read; mean {st['mean_mv']:g} mV, std {st['std_mv']:g} mV; "
            f"max |x| median {st['max_abs_mv_median']} mV, p99 {st['max_abs_mv_p99']} mV; "
            f"flat records {st['flat_records']}"
        )
    if s.get("missing_records"):
        m = s["missing_records"]
        lines.append(
            f"  missing at this rate: {m['count']} records (e.g. {', '.join(m['first'][:3])}); using those present"
        )
    if s["folds"]:
        lines.append(f"  folds ({s['fold_source']}): " + ", ".join(f"{k}: {v}" for k, v in s["folds"].items()))
    else:
        lines.append(f"  folds: {s['fold_source']}")
    lines.append(
        "  label sets (classes; most frequent; records with none of its classes, which a run on it leaves "
        "out -- more once min_count drops rare classes):"
    )
    unlabelled = s.get("records_without_labels", {})
    for name, counts in s["class_counts"].items():
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:4]
        none = f"; {unlabelled[name]} with none" if name in unlabelled else ""
        lines.append(f"    {name:<24} {len(counts):>3}   " + ", ".join(f"{k} {v}" for k, v in top) + none)
    probs = s["problems"]
    lines.append(f"  problems: {len(probs)}" + ("" if probs else " (none)"))
    for p in probs[:50]:
        lines.append(f"    {p['record']}: {p['problem']}")
    if len(probs) > 50:
        lines.append(f"    ... and {len(probs) - 50} more (see --json)")
    return "\n".join(lines)
