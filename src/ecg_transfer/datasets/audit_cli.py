"""``ecg-transfer data audit ROOT [ROOT ...]``: the leakage audit's command line (see :mod:`.audit`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DESCRIPTION = (
    "Find exact and near-duplicate ECGs within and across datasets (PTB-XL or CinC-format folders): the "
    "same samples, or the same recording at another rate or length (compared on leads I, II, V1-V6 "
    "resampled to --rate Hz over 0.5-5.5 s). Each record is read once; candidates come from a sorted "
    "key and random-projection sketches, then every candidate is compared sample by sample. Writes "
    "the pairs (which sets, RMS and max |difference| in mV) to --out: JSON (everything) or CSV (pairs)."
)


def add_audit_arguments(p: argparse.ArgumentParser) -> None:
    from .audit_settings import AuditSettings

    d = AuditSettings()
    p.add_argument(
        "roots",
        nargs="+",
        type=Path,
        metavar="ROOT",
        help="dataset folders: PTB-XL (holding ptbxl_database.csv; its 100 Hz records) or CinC-format",
    )
    p.add_argument("--out", type=Path, default=None, help="write the audit here (.json, or .csv for the pairs)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=d.tolerance,
        help=f"largest RMS difference of any lead, in mV, for a near duplicate (default {d.tolerance:g})",
    )
    p.add_argument(
        "--relative",
        type=float,
        default=d.relative,
        help="largest RMS difference over all leads relative to the pair's RMS (default "
        f"{d.relative:g}; keeps low-voltage records from matching each other)",
    )
    p.add_argument(
        "--rate", type=float, default=d.rate, help=f"common rate of the comparison in Hz (default {d.rate:g})"
    )
    p.add_argument("--workers", type=int, default=None, help="reading processes (default 2)")
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="folder for the temporary window store (500 bytes x 8 a record; default: system temp)",
    )
    p.add_argument("--json", action="store_true", help="print the whole audit as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def format_audit(result) -> str:
    """The human-readable summary of an :class:`~.audit.AuditResult`."""
    s = result.summary()
    lines = [
        f"audited {s['records_audited']} records in {len(result.sets)} set(s) ({result.seconds.get('total', 0):g} s)"
    ]
    for info in result.sets:
        lines.append(f"  {info['set']} ({info['kind']}): {info['audited']} of {info['records']} records audited")
    counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s.items() if k.startswith(("exact", "near")))
    lines.append(f"  duplicate pairs: {s['pairs']} ({counts or 'none'}) in {s['groups']} group(s)")
    for p in result.pairs[:20]:
        where = "across" if p.across else "within"
        lines.append(
            f"    {p.kind:5} {where}: {p.set_a} {p.record_a} ({p.fs_a:g} Hz) = {p.set_b} {p.record_b} "
            f"({p.fs_b:g} Hz); RMS diff {p.rms_mv:g} mV, max |diff| {p.max_abs_mv:g} mV"
        )
    if len(result.pairs) > 20:
        lines.append(f"    ... and {len(result.pairs) - 20} more (see --out)")
    lines.append(f"  not audited: {s['skipped']} record(s); flat: {s['flat']}")
    for item in result.skipped[:10]:
        lines.append(f"    {item['record']}: {item['problem']}")
    return "\n".join(lines)


def run_audit(args: argparse.Namespace) -> int:
    from .audit import AuditSettings, find_duplicates

    settings = AuditSettings(rate=args.rate, tolerance=args.tolerance, relative=args.relative)
    result = find_duplicates(
        args.roots,
        settings=settings,
        workers=args.workers,
        work_dir=args.work_dir,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    if args.out is not None:
        result.write(args.out)
    print(json.dumps(result.to_dict(), indent=1) if args.json else format_audit(result))
    if args.out is not None and not args.json:
        print(f"  written to {args.out}")
    return 0
