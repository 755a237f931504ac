"""Reproduce the PTB-XL benchmark (Strodthoff et al. 2020) for xresnet1d101 at 100 Hz, one command:

    python benchmarks/ptbxl_benchmark.py [--root data/ptbxl] [--tasks all diagnostic] [--runs runs]

For each task it trains ``configs/ptbxl_benchmark_<task>.toml`` (folds 1-8 train, 9 validation,
10 test; the benchmark recipe) into ``<runs>/ptbxl_benchmark_<task>`` -- resuming a run that was
interrupted, reusing one that finished -- then evaluates the test fold with 1,000 bootstrap
resamples and prints the macro AUC beside the benchmark's. A full run of one task takes about an
hour or more on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARK_MACRO_AUC = {
    "all": 0.925,
    "diagnostic": 0.937,
    "subdiagnostic": 0.929,
    "superdiagnostic": 0.928,
    "form": 0.896,
    "rhythm": 0.957,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(REPO / "data" / "ptbxl"), help="the PTB-XL folder")
    ap.add_argument("--tasks", nargs="+", default=["all", "diagnostic"], choices=sorted(BENCHMARK_MACRO_AUC))
    ap.add_argument("--runs", default=str(REPO / "runs"), help="where the run directories go")
    args = ap.parse_args()
    rows = []
    for task in args.tasks:
        template = REPO / "configs" / "ptbxl_benchmark_all.toml"
        config = tomllib.loads(template.read_text())
        config["task"].update({"root": args.root, "labels": task})
        run_dir = Path(args.runs) / f"ptbxl_benchmark_{task}"
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(config, fh)
        t0 = time.perf_counter()
        if not (run_dir / "model.pt").exists():
            resume = ["--resume"] if (run_dir / "checkpoint.pt").exists() else []
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "ecg_transfer",
                    "train",
                    fh.name,
                    "--run-dir",
                    str(run_dir),
                    "--no-progress",
                    *resume,
                ],
                check=True,
            )
        train_s = time.perf_counter() - t0
        subprocess.run(
            [sys.executable, "-m", "ecg_transfer", "evaluate", str(run_dir), "--no-plots"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        m = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
        rows.append((task, m, train_s, run_dir))
    print(f"\n{'task':<16}{'ours (95% CI)':<28}{'benchmark':>10}   wall time   run")
    for task, m, train_s, run_dir in rows:
        print(
            f"{task:<16}{_fmt(m['headline']['macro_auc']):<28}{BENCHMARK_MACRO_AUC[task]:>10.3f}   {train_s / 60:6.1f} min  {run_dir}"
        )
    return 0


def _fmt(entry: dict) -> str:
    lo, hi = entry["ci"]
    return f"{entry['value']:.4f} [{lo:.4f}, {hi:.4f}]"


if __name__ == "__main__":
    sys.exit(main())
