"""How long the leakage audit takes on a collection shaped like PhysioNet/CinC 2021 (issue 12 §4).

Two measurements, because 90,000 real-sized signal files are ~11 GB of disk:

1. ``memory``: the whole audit (fingerprints of every record, candidates, verification) on a
   synthetic collection of ``--records`` (default 90,000) records whose signals are made in the
   worker processes instead of read from files: 10 s at 500 Hz mostly (Ningbo, Chapman, PTB-XL,
   G12EC), 8 % CPSC-like 6-60 s at 500 Hz, 520 PTB-like 30-120 s at 1 kHz, 75 INCART-like 30 min
   at 257 Hz, with planted duplicates: exact copies and the same recording at another rate
   (500 vs 1000, 257 or 100 Hz). Making a signal costs about as much as reading a .mat file, so this
   is an honest stand-in for the reading; the run checks every planted pair is found.
2. ``files``: the same audit on ``--file-records`` (default 6,000) CinC-format files written to a
   temporary folder (same mix), reading them from the page cache: the per-record cost of indexing
   and reading real files, extrapolated linearly to ``--records``.

    python benchmarks/audit_speed.py                  # both, 2 workers
    python benchmarks/audit_speed.py --only memory --records 20000

Prints one JSON line per measurement (seconds per stage, records/s, peak RSS, planted pairs found).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ecg_transfer.datasets.audit import AUDIT_LEADS, find_duplicates  # noqa: E402
from ecg_transfer.errors import RecordError  # noqa: E402


def plan(n: int, seed: int = 0) -> pd.DataFrame:
    """Record shapes of a CinC-2021-like collection, and which records copy which."""
    rng = np.random.default_rng(seed)
    fs = np.full(n, 500.0)
    seconds = np.full(n, 10.0)
    cpsc = rng.random(n) < 0.08
    seconds[cpsc] = np.clip(rng.lognormal(np.log(15), 0.6, cpsc.sum()), 6, 60).round(1)
    idx = rng.permutation(n)
    n_ptb, n_incart = max(1, round(520 * n / 90_000)), max(1, round(75 * n / 90_000))  # as in CinC 2021
    ptb, incart = idx[:n_ptb], idx[n_ptb : n_ptb + n_incart]
    fs[ptb], seconds[ptb] = 1000.0, rng.uniform(30, 120, len(ptb)).round(1)
    fs[incart], seconds[incart] = 257.0, 1800.0
    table = pd.DataFrame(
        {
            "record_id": [f"S{i:06d}" for i in range(n)],
            "fs": fs,
            "seconds": seconds,
            "source": np.arange(n),
            "kind": "original",
        }
    )
    plain = np.flatnonzero((fs == 500) & (seconds == 10))
    copies = rng.choice(plain, size=2 * (n // 180), replace=False)  # 1 000 planted at 90 000
    for k, (i, j) in enumerate(zip(copies[::2], copies[1::2])):
        table.loc[j, "source"] = i
        table.loc[j, "kind"] = "exact" if k % 2 == 0 else "rate"
        if k % 2:
            table.loc[j, "fs"] = [1000.0, 257.0, 100.0][k // 2 % 3]
    table["n_samples"] = (table["fs"] * table["seconds"]).round().astype(int)
    table["n_leads"] = len(AUDIT_LEADS)
    return table


def synthesize(table: pd.DataFrame, i: int) -> np.ndarray:
    """Record ``i`` in mV (samples, 8), stored as int16 at 1 uV: an ECG-like signal whose heart
    rate, phase, lead amplitudes and T wave are drawn from its source's seed (every recording its
    own), sampled at the record's rate, plus 0.02 mV of noise drawn per record (two devices that
    record the same heart at two rates do not share their noise). An exact copy draws everything
    its source drew."""
    row = table.iloc[i]
    src = int(row.source)
    rng = np.random.default_rng(src)
    fs = float(row.fs)
    n = int(round(float(table.iloc[src].seconds) * fs))
    t = np.arange(n, dtype=np.float32) / np.float32(fs)
    rate, phase = rng.uniform(0.7, 2.0), rng.uniform(0, 1)
    beat = np.exp(-((((t * rate + phase) % 1.0) - 0.3) ** 2) / np.float32(rng.uniform(0.0004, 0.0015)))
    wave = np.sin(np.float32(2 * np.pi * rate) * t + np.float32(rng.uniform(0, 6)))
    x = beat[:, None] * rng.uniform(-1.5, 1.5, 8).astype(np.float32)
    x += wave[:, None] * rng.uniform(0.05, 0.4, 8).astype(np.float32)
    noise = np.random.default_rng(None if row.kind == "rate" else src)
    x += noise.standard_normal((n, 8), dtype=np.float32) * np.float32(0.02)
    return np.round(x * 1000).astype(np.int16).astype(np.float64) / 1000


class SyntheticSet:
    """An audit adapter whose records are made on demand (see the module docstring)."""

    name = "synthetic"
    audit_name = "synthetic-cinc2021"

    def __init__(self, table: pd.DataFrame):
        self.table = table
        self._pos = {r: i for i, r in enumerate(table["record_id"])}

    def index(self) -> pd.DataFrame:
        return self.table[["record_id", "fs", "n_samples", "n_leads"]].copy()

    def iter_signals(self, ids):
        for rid in ids:
            try:
                yield rid, synthesize(self.table, self._pos[rid])
            except Exception as exc:  # noqa: BLE001 - reported like a reader's error
                yield rid, RecordError(rid, str(exc))


def _peak_rss_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, kids) / 1024, 1)


def _cpu_seconds() -> tuple[float, float]:
    """User + system CPU time of this process, and of its finished children (the audit's workers)."""
    out = []
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        use = resource.getrusage(who)
        out.append(use.ru_utime + use.ru_stime)
    return out[0], out[1]


def _cpu_fields(c0: tuple[float, float], workers: int) -> dict:
    """CPU seconds of the run, and the wall time it implies on ``workers`` idle cores: the main
    process's CPU (index, matching: serial) plus the workers' CPU shared among them. On a shared,
    loaded machine the wall time measured says more about the other load than about the audit."""
    c1 = _cpu_seconds()
    main, kids = c1[0] - c0[0], c1[1] - c0[1]
    return {
        "cpu_s": round(main + kids, 1),
        "cpu_main_s": round(main, 1),
        "cpu_workers_s": round(kids, 1),
        "wall_on_idle_cores_estimate_s": round(main + kids / workers, 1),
    }


def _planted_found(table: pd.DataFrame, result, name_of) -> tuple[int, int]:
    found = {frozenset(((p.set_a, p.record_a), (p.set_b, p.record_b))) for p in result.pairs}
    group = {k: g for g, members in enumerate(result.groups) for k in members}
    planted = table[table["kind"] != "original"]
    hits = 0
    for _, row in planted.iterrows():
        a = name_of(table.loc[int(row.source), "record_id"])
        b = name_of(row.record_id)
        hits += frozenset((a, b)) in found or (a in group and group.get(a) == group.get(b))
    return hits, len(planted)


def run_memory(n: int, workers: int) -> dict:
    table = plan(n)
    adapter = SyntheticSet(table)
    t0, c0 = time.perf_counter(), _cpu_seconds()
    result = find_duplicates([adapter], workers=workers)
    wall, cpu = time.perf_counter() - t0, _cpu_fields(c0, workers)
    hits, planted = _planted_found(table, result, lambda rid: (adapter.audit_name, rid))
    sample = table["record_id"].iloc[:: max(1, n // 2000)].tolist()
    g0 = time.process_time()
    for _ in adapter.iter_signals(sample):
        pass
    making = (time.process_time() - g0) / len(sample)  # CPU of making a signal, not the audit's own
    return {
        "measure": "memory",
        "records": n,
        "workers": workers,
        "wall_s": round(wall, 1),
        **cpu,
        "signal_making_cpu_s_estimate": round(making * n, 1),
        "wall_on_idle_cores_without_signal_making_s": round(
            cpu["wall_on_idle_cores_estimate_s"] - making * n / workers, 1
        ),
        "stages_s": result.seconds,
        "records_per_s": round(n / wall, 1),
        "pairs": len(result.pairs),
        "planted": planted,
        "planted_found": hits,
        "peak_rss_mib": _peak_rss_mib(),
    }


def write_files(table: pd.DataFrame, root: Path) -> None:
    leads = [lead.replace("AV", "aV") for lead in AUDIT_LEADS]
    for i, row in enumerate(table.itertuples()):
        x = synthesize(table, i)
        val = np.round(x * 1000).astype(np.int16).T
        scipy.io.savemat(root / f"{row.record_id}.mat", {"val": val}, format="4")
        lines = [f"{row.record_id} {len(leads)} {row.fs:g} {val.shape[1]}"]
        lines += [f"{row.record_id}.mat 16x1+24 1000/mV 16 0 {int(v[0])} 0 0 {ld}" for v, ld in zip(val, leads)]
        (root / f"{row.record_id}.hea").write_text("\n".join(lines + ["#Dx: 426783006"]) + "\n")


def run_files(n: int, workers: int, extrapolate_to: int) -> dict:
    table = plan(n, seed=1)
    root = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    try:
        t0 = time.perf_counter()
        write_files(table, root)
        written = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in root.iterdir())
        t0, c0 = time.perf_counter(), _cpu_seconds()
        result = find_duplicates([root], workers=workers)
        wall, cpu = time.perf_counter() - t0, _cpu_fields(c0, workers)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    hits, planted = _planted_found(table, result, lambda rid: (str(root.resolve()), rid))
    per_record = (result.seconds["index"] + result.seconds["fingerprints"]) / n
    idle_per_record = (cpu["wall_on_idle_cores_estimate_s"] - result.seconds["matching"]) / n
    return {
        "measure": "files",
        "records": n,
        "workers": workers,
        "write_s": round(written, 1),
        "bytes": size,
        "wall_s": round(wall, 1),
        **cpu,
        "stages_s": result.seconds,
        "index_plus_read_ms_per_record": round(1000 * per_record, 3),
        f"index_plus_read_extrapolated_to_{extrapolate_to}_s": round(per_record * extrapolate_to, 1),
        "cpu_ms_per_record": round(1000 * cpu["cpu_s"] / n, 3),
        f"index_plus_read_on_idle_cores_extrapolated_to_{extrapolate_to}_s": round(idle_per_record * extrapolate_to, 1),
        "planted": planted,
        "planted_found": hits,
        "peak_rss_mib": _peak_rss_mib(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=90_000)
    ap.add_argument("--file-records", type=int, default=6_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", choices=["memory", "files"], default=None)
    args = ap.parse_args()
    print(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "cpus": os.cpu_count(),
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "python": platform.python_version(),
                "date": time.strftime("%Y-%m-%d"),
            }
        )
    )
    if args.only in (None, "files"):
        print(json.dumps(run_files(args.file_records, args.workers, args.records)), flush=True)
    if args.only in (None, "memory"):
        print(json.dumps(run_memory(args.records, args.workers)), flush=True)


if __name__ == "__main__":
    main()
