"""Records per second of batch prediction (``ecg-transfer predict``'s path), from arrays and from WFDB files.

    python benchmarks/predict_throughput.py [--model xresnet1d101] [--records 256] [--device cpu]
    python benchmarks/predict_throughput.py --records 4 --model fcn_wang      # a quick check that it runs

A randomly initialised model (speed does not depend on the weights) is saved as a run's ``model.pt``
in a temporary directory, then for each scenario ``MODEL_HZ:RECORD_HZ`` (default 100:100, 500:500 --
the PTB-XL benchmark's and the transfer study's rates -- and 100:500, records resampled on the way):

- arrays: ``Predictor.predict_array`` on ``(records, 12, 10 s)`` float32 mV -- resampling,
  standardisation, 2.5 s windows at 1.25 s stride, the network, max aggregation, thresholds;
- WFDB: the same records written as WFDB format-16 files (not timed), then ``Predictor.predict_paths``
  on the folder -- reading and checking every file included.

One untimed warm-up batch precedes each timing. Prints a table; ``--json FILE`` saves the numbers
with the machine's description (CPU, threads, torch version).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LEADS = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def synthetic_records(n: int, fs: float, seconds: float, seed: int = 0) -> np.ndarray:
    """``(n, 12, seconds * fs)`` float32 mV: a 1.2 Hz wave plus noise, on the 1 uV grid of WFDB files."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * fs))) / fs
    x = 0.5 * np.sin(2 * np.pi * 1.2 * t)[None, None, :] * rng.uniform(0.5, 1.5, (n, 12, 1))
    x = x + rng.normal(0.0, 0.1, (n, 12, t.size))
    return (np.round(x * 1000) / 1000).astype(np.float32)


def save_random_model(run_dir: Path, model_name: str, fs: float, n_classes: int) -> None:
    from ecg_transfer import models
    from ecg_transfer.training.modelfile import save_model_file
    from ecg_transfer.training.scaler import GlobalStandardScaler
    from ecg_transfer.training.windows import samples

    model = models.build(model_name, 12, n_classes)
    save_model_file(
        run_dir / "model.pt",
        model,
        label_names=[f"c{k}" for k in range(n_classes)],
        scaler=GlobalStandardScaler(0.0, 0.2),
        fs=fs,
        crop_len=samples(2.5, fs),
        stride=samples(1.25, fs),
        aggregate="max",
        config={"model": model_name, "fs": fs},
    )


def write_wfdb(folder: Path, X: np.ndarray, fs: float) -> None:
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    for i, x in enumerate(X):
        wfdb.wrsamp(
            f"r{i:05d}",
            fs=fs,
            units=["mV"] * 12,
            sig_name=LEADS,
            d_signal=np.round(x.T.astype(np.float64) * 1000).astype(np.int64),
            fmt=["16"] * 12,
            adc_gain=[1000.0] * 12,
            baseline=[0] * 12,
            write_dir=str(folder),
        )


def run_scenario(tmp: Path, args: argparse.Namespace, model_fs: float, record_fs: float) -> dict:
    from ecg_transfer.inference.predict import Predictor
    from ecg_transfer.training.modelfile import load_model_file

    run_dir = tmp / f"run_{model_fs:g}"
    if not (run_dir / "model.pt").exists():
        save_random_model(run_dir, args.model, model_fs, args.classes)
    pred = Predictor(load_model_file(run_dir), batch_size=args.batch_size, device=args.device)
    X = synthetic_records(args.records, record_fs, args.seconds)
    warm = synthetic_records(min(4, args.records), record_fs, args.seconds, seed=1)
    pred.predict_array(warm, record_fs)
    t0 = time.perf_counter()
    probs, _ = pred.predict_array(X, record_fs)
    t_arrays = time.perf_counter() - t0

    folder = tmp / f"wfdb_{record_fs:g}"
    if not folder.exists():
        write_wfdb(folder, X, record_fs)
    pred.predict_paths([folder / "r00000"])  # warm-up: file reading code paths
    t0 = time.perf_counter()
    res = pred.predict_paths([folder])
    t_files = time.perf_counter() - t0
    if res.errors or len(res.record_ids) != args.records:
        raise SystemExit(f"WFDB path failed: {res.errors[:3]}")
    diff = float(np.abs(res.probs - probs).max())
    n_windows = len(range(0, int(args.seconds * model_fs) - pred.crop_len + 1, pred.loaded.stride))
    return {
        "model_fs": model_fs,
        "record_fs": record_fs,
        "records": args.records,
        "windows_per_record": n_windows,
        "arrays_seconds": t_arrays,
        "arrays_records_per_s": args.records / t_arrays,
        "wfdb_seconds": t_files,
        "wfdb_records_per_s": args.records / t_files,
        "max_abs_diff_wfdb_vs_arrays": diff,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="xresnet1d101")
    ap.add_argument("--records", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--classes", type=int, default=71, help="output classes (71: all PTB-XL statements)")
    ap.add_argument(
        "--scenarios",
        nargs="+",
        default=["100:100", "500:500", "100:500"],
        help="MODEL_HZ:RECORD_HZ pairs (default 100:100 500:500 100:500)",
    )
    ap.add_argument("--batch-size", type=int, default=128, help="windows per forward pass (default 128)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    info = {
        "model": args.model,
        "device": args.device,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "batch_size": args.batch_size,
        "seconds_per_record": args.seconds,
    }
    if args.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    print(
        f"{args.model} on {args.device} ({info['cpu']}, {info['torch_threads']} torch threads), "
        f"{args.records} records of {args.seconds:g} s, batch {args.batch_size} windows"
    )
    print(f"{'model Hz':>8} {'record Hz':>9} {'windows':>7} {'arrays rec/s':>13} {'WFDB rec/s':>11}")
    results = []
    with tempfile.TemporaryDirectory(prefix="predict_throughput_") as tmp:
        for sc in args.scenarios:
            model_fs, record_fs = (float(v) for v in sc.split(":"))
            r = run_scenario(Path(tmp), args, model_fs, record_fs)
            results.append(r)
            print(
                f"{model_fs:>8g} {record_fs:>9g} {r['windows_per_record']:>7} {r['arrays_records_per_s']:>13.1f} "
                f"{r['wfdb_records_per_s']:>11.1f}"
            )
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
