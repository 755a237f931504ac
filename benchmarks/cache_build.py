"""Build the PTB-XL 100 Hz signal cache from the WFDB tree, beside a plain ``wfdb.rdsamp`` loop.

    python benchmarks/cache_build.py --root data/ptbxl [--fs 100]

Each contender runs in its own fresh Python process; wall time is measured around the work, and
peak memory is the largest sum of the resident set sizes of the process and its children (the
cache uses worker processes), sampled every 20 ms from /proc. The plain loop is the benchmark's
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

OURS = """
import sys, time
from ecg_transfer.datasets.ptbxl import PTBXL
from ecg_transfer.datasets.cache import load_or_build
t = time.perf_counter()
c = load_or_build(PTBXL(sys.argv[1], fs=int(sys.argv[2]), allow_missing=True), cache_dir=sys.argv[3], progress=False)
print(time.perf_counter() - t, c.signals.shape, len(c.problems))
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


def tree_rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants, in KiB."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            with open(f"/proc/{p}/task/{p}/children") as fh:
                stack.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


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
    peak = 0

    def poll() -> None:
        nonlocal peak
        while proc.poll() is None:
            peak = max(peak, tree_rss_kib(proc.pid))
            time.sleep(0.02)

    th = threading.Thread(target=poll)
    th.start()
    out, _ = proc.communicate()
    th.join()
    if proc.returncode:
        raise SystemExit(f"contender failed with exit code {proc.returncode}")
    inner, *_ = out.split()
    return {"seconds": round(float(inner), 2), "process_seconds": round(time.perf_counter() - t0, 2),
            "peak_rss_mib": round(peak / 1024, 1), "page_cache": "dropped" if dropped else "warm",
            "output": out.strip()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True)
    ap.add_argument("--fs", default="100", choices=["100", "500"])
    ap.add_argument("--skip-plain", action="store_true", help="only time the cache build")
    ap.add_argument("--cold", action="store_true", help="drop the page cache before each contender (root)")
    args = ap.parse_args()
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
               "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as cache_dir:
        results["ecg_transfer_cache_build"] = run(OURS, [args.root, args.fs, cache_dir], args.cold)
        results["ecg_transfer_cache_reopen"] = run(OURS, [args.root, args.fs, cache_dir])
    if not args.skip_plain:
        results["plain_wfdb_rdsamp_loop"] = run(PLAIN, [args.root, args.fs], args.cold)
        results["speedup"] = round(results["plain_wfdb_rdsamp_loop"]["seconds"] / results["ecg_transfer_cache_build"]["seconds"], 1)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
