"""Build the PTB-XL 100 Hz signal cache from the WFDB tree, beside a plain ``wfdb.rdsamp`` loop;
or the cache of a synthetic collection shaped like PhysioNet/CinC 2021 (ragged records at mixed rates).

    python benchmarks/cache_build.py --root data/ptbxl [--fs 100]
    python benchmarks/cache_build.py --synthetic-cinc 10000 --work /tmp/cinc2021 [--to-fs 500]

The synthetic collection (written once into ``--work``, then reused) mixes what CinC 2021 holds:
10 s records at 500 Hz (Chapman-Shaoxing, Ningbo, G12EC, PTB-XL HR: 88 %), CPSC-like records of
6-144 s at 500 Hz (10 %), PTB-like records of 30-120 s at 1000 Hz (1.5 %) and five 30-minute records
at 257 Hz (INCART), 12 leads of int16 noise in CinC .mat/.hea files.

Each contender runs in its own fresh Python process; wall time is measured around the work, and
peak memory is the largest sum of the resident set sizes of the process and its children (the
cache uses worker processes), sampled every 20 ms from /proc; peak PSS (shared pages divided
among the processes) is sampled every 0.5 s. The plain loop is the benchmark's
way of loading PTB-XL: ``[wfdb.rdsamp(f) for f in df.filename_lr]`` stacked into one array.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

OURS = """
import sys, time
from ecg_transfer.datasets.ptbxl import PTBXL
from ecg_transfer.datasets.cache import load_or_build
t = time.perf_counter()
c = load_or_build(PTBXL(sys.argv[1], fs=int(sys.argv[2]), allow_missing=True), cache_dir=sys.argv[3], progress=False)
print(time.perf_counter() - t, c.signals.shape, len(c.problems))
"""

SYNTH = """
import json, sys, time
from ecg_transfer.datasets.cinc import CinCDataset
from ecg_transfer.datasets.cache import load_or_build
t = time.perf_counter()
c = load_or_build(CinCDataset(sys.argv[1]), fs=float(sys.argv[2]), cache_dir=sys.argv[3], progress=False)
dt = time.perf_counter() - t
meta = c.meta
files = sum(f.stat().st_size for f in c.path.iterdir())
print(dt, json.dumps({"records": len(c.table), "slots": len(c.signals), "samples_per_lead": meta["samples_per_lead"],
                      "store_bytes": meta["store"]["bytes"], "folder_bytes": files, "problems": len(c.problems),
                      "built": c.built}))
"""

PLAIN = """
import sys, time
import numpy as np, pandas as pd, wfdb
t = time.perf_counter()
df = pd.read_csv(sys.argv[1] + "/ptbxl_database.csv", index_col="ecg_id")
col = "filename_lr" if sys.argv[2] == "100" else "filename_hr"
import os
files = [f for f in df[col] if os.path.exists(sys.argv[1] + "/" + f + ".hea")]
data = np.array([wfdb.rdsamp(sys.argv[1] + "/" + f)[0] for f in files])
print(time.perf_counter() - t, data.shape, 0)
"""


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as fh:
                stack.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def _status_kib(path: str, key: str) -> int:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def tree_rss_kib(pid: int, pss: bool = False) -> int:
    """Resident memory of ``pid`` and its descendants in KiB: the sum of their RSS (pages shared by
    forked workers counted once per process), or with ``pss`` of their PSS (shared pages divided
    among the processes sharing them: what the tree really holds; costly to read, so sampled
    less often)."""
    if pss:
        return sum(_status_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in _tree(pid))
    return sum(_status_kib(f"/proc/{p}/status", "VmRSS:") for p in _tree(pid))


def drop_page_cache() -> bool:
    """Empty the kernel's page cache (needs root) so every contender reads from disk."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def run(code: str, args: list[str], cold: bool = False) -> dict:
    dropped = drop_page_cache() if cold else False
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    peak, peak_pss = 0, 0

    def poll() -> None:
        nonlocal peak, peak_pss
        tick = 0
        while proc.poll() is None:
            peak = max(peak, tree_rss_kib(proc.pid))
            if tick % 25 == 0:  # every 0.5 s: reading smaps_rollup walks every mapping
                peak_pss = max(peak_pss, tree_rss_kib(proc.pid, pss=True))
            tick += 1
            time.sleep(0.02)

    th = threading.Thread(target=poll)
    th.start()
    out, _ = proc.communicate()
    th.join()
    if proc.returncode:
        raise SystemExit(f"contender failed with exit code {proc.returncode}")
    inner, *_ = out.split()
    return {
        "seconds": round(float(inner), 2),
        "process_seconds": round(time.perf_counter() - t0, 2),
        "peak_rss_mib": round(peak / 1024, 1),
        "peak_pss_mib": round(peak_pss / 1024, 1),
        "page_cache": "dropped" if dropped else "warm",
        "output": out.strip(),
    }


def make_cinc_collection(root: Path, n: int, seed: int = 0) -> dict:
    """Write ``n`` CinC-format records shaped like CinC 2021 into ``root`` (once; reused after)."""
    import numpy as np
    import scipy.io

    done = root / ".complete"
    if done.exists() and json.loads(done.read_text())["n"] == n:
        return json.loads(done.read_text())
    rng = np.random.default_rng(seed)
    leads = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    kinds = ["incart"] * 5 + [str(k) for k in rng.choice(["10s", "cpsc", "ptb"], size=n - 5, p=[0.88, 0.10, 0.02])]
    native = 0
    for i, kind in enumerate(kinds):
        if kind == "10s":
            fs, sec = 500, 10.0
        elif kind == "cpsc":  # 6-144 s, most of them short
            fs, sec = 500, float(rng.uniform(6, 144) if rng.random() < 0.2 else rng.uniform(6, 20))
        elif kind == "ptb":
            fs, sec = 1000, float(rng.uniform(30, 120))
        else:
            fs, sec = 257, 1800.0
        n_samples = int(round(fs * sec))
        val = rng.integers(-2000, 2000, size=(12, n_samples), dtype=np.int16)
        folder = root / kind / f"{i // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"S{i:06d}"
        scipy.io.savemat(folder / f"{name}.mat", {"val": val}, format="4")
        lines = [f"{name}.mat 12 {fs} {n_samples} 05-May-2020 14:50:55"]
        for lead, row in zip(leads, val):
            check = int((int(row.astype(np.int64).sum()) + 32768) % 65536 - 32768)
            lines.append(f"{name}.mat 16+24 1000/mV 16 0 {int(row[0])} {check} 0 {lead}")
        lines += ["#Age: 50", "#Sex: Female", "#Dx: 426783006", "#Rx: Unknown", "#Hx: Unknown", "#Sx: Unknown"]
        (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
        native += n_samples
    info = {
        "n": n,
        "kinds": {k: kinds.count(k) for k in ("10s", "cpsc", "ptb", "incart")},
        "native_samples_per_lead": native,
    }
    done.write_text(json.dumps(info))
    return info


def synthetic_cinc(n: int, work: Path, fs: float, cold: bool) -> dict:
    info = make_cinc_collection(work / "records", n)
    with tempfile.TemporaryDirectory(dir=work) as cache_dir:
        build = run(SYNTH, [str(work / "records"), str(fs), cache_dir], cold)
        reopen = run(SYNTH, [str(work / "records"), str(fs), cache_dir])
    stats = json.loads(build["output"].split(None, 1)[1])
    return {
        "collection": info,
        "cache_fs": fs,
        "build": {
            **build,
            **stats,
            "records_per_second": round(stats["records"] / build["seconds"], 1),
            "store_bytes_per_sample": round(stats["store_bytes"] / (stats["samples_per_lead"] * 12), 4),
            "folder_bytes_over_own_float32": round(stats["folder_bytes"] / (stats["samples_per_lead"] * 12 * 4), 4),
        },
        "reopen_seconds": reopen["seconds"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", help="the PTB-XL tree")
    ap.add_argument(
        "--synthetic-cinc",
        type=int,
        default=0,
        metavar="N",
        help="instead: a synthetic CinC-2021-shaped collection of N records (written into --work)",
    )
    ap.add_argument("--work", type=Path, default=Path("/tmp/ecg-transfer-cinc2021"))
    ap.add_argument("--to-fs", type=float, default=500.0, help="cache rate for --synthetic-cinc")
    ap.add_argument("--fs", default="100", choices=["100", "500"])
    ap.add_argument("--skip-plain", action="store_true", help="only time the cache build")
    ap.add_argument("--cold", action="store_true", help="drop the page cache before each contender (root)")
    args = ap.parse_args()
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "load_average": os.getloadavg(),
    }
    if args.synthetic_cinc:
        args.work.mkdir(parents=True, exist_ok=True)
        results["synthetic_cinc2021"] = synthetic_cinc(args.synthetic_cinc, args.work, args.to_fs, args.cold)
        print(json.dumps(results, indent=2))
        return
    if not args.root:
        ap.error("--root (a PTB-XL tree) or --synthetic-cinc N is needed")
    with tempfile.TemporaryDirectory() as cache_dir:
        results["ecg_transfer_cache_build"] = run(OURS, [args.root, args.fs, cache_dir], args.cold)
        results["ecg_transfer_cache_reopen"] = run(OURS, [args.root, args.fs, cache_dir])
    if not args.skip_plain:
        results["plain_wfdb_rdsamp_loop"] = run(PLAIN, [args.root, args.fs], args.cold)
        results["speedup"] = round(
            results["plain_wfdb_rdsamp_loop"]["seconds"] / results["ecg_transfer_cache_build"]["seconds"], 1
        )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
