"""One real PTB-XL training epoch (training + validation), timed per speed setting, in one run:

    python benchmarks/epoch_time.py [--root data/ptbxl] [--task diagnostic] [--rounds 2]
                                    [--variants before after] [--out FILE.json]

What ``benchmarks/train_throughput.py`` measures per step, measured here the way a user meets it:
:func:`ecg_transfer.training.loop.fit` for one epoch of the benchmark recipe (xresnet1d101,
100 Hz, folds 1-8 train with random 2.5 s crops, fold 9 validated with sliding windows, batch 128)
on the real cached PTB-XL, once per variant and round (order rotated per round). The loop
records the validation's share itself (``val_seconds`` in ``metrics.jsonl``). Variants (run-config
speed keys; see :data:`VARIANTS`): ``before`` = the engine before the speed work (1-D layout,
foreach AdamW), ``channels_last`` = that with the channels-last layout, ``after`` = today's
defaults (channels-last where possible, fused AdamW).

Each epoch starts from the same initial weights and seed, so every variant does the same work.
A 50-epoch pre-training is about 50 such epochs (the first has no extra cost here). Timings on a
shared machine are noisy: compare the variants within a round.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "before": {"memory_format": "contiguous", "optimizer_impl": "foreach"},
    "channels_last": {"memory_format": "channels_last", "optimizer_impl": "foreach"},
    "after": {"memory_format": "auto", "optimizer_impl": "auto"},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(REPO / "data" / "ptbxl"), help="the PTB-XL folder")
    ap.add_argument("--task", default="diagnostic", help="PTB-XL label task (default: diagnostic)")
    ap.add_argument("--rounds", type=int, default=2, help="epochs per variant (default: 2)")
    ap.add_argument("--variants", nargs="+", default=["before", "after"], choices=list(VARIANTS))
    ap.add_argument(
        "--train-records", type=int, default=0, help="train on the first N training records only (0: all, a full epoch)"
    )
    ap.add_argument(
        "--val-records", type=int, default=0, help="validate on the first N validation records only (0: all)"
    )
    ap.add_argument("--out", help="write the figures as JSON here too")
    args = ap.parse_args()

    from ecg_transfer import models
    from ecg_transfer.datasets.task import load_task
    from ecg_transfer.training import RunConfig, resolve_stages
    from ecg_transfer.training.loop import fit
    from ecg_transfer.training.scaler import GlobalStandardScaler

    config = RunConfig.from_dict(
        {
            "model": "xresnet1d101",
            "fs": 100.0,
            "epochs": 1,
            "seed": 0,
            "task": {"dataset": "ptbxl", "root": args.root, "labels": args.task},
        }
    )
    data = load_task(config.task, config.fs, progress=False)
    train_idx, val_idx = data.splits["train"], data.splits["val"]
    if args.train_records:
        train_idx = train_idx[: args.train_records]
    if args.val_records:
        val_idx = val_idx[: args.val_records]
    scaler = GlobalStandardScaler().fit(data.X, train_idx, lengths=data.lengths)
    torch.manual_seed(0)
    initial = models.build(config.model, data.X.shape[1], len(data.label_names)).state_dict()
    print(
        f"{args.task}: {len(data.label_names)} labels; training {len(train_idx)} records, "
        f"validating {len(val_idx)}; {torch.get_num_threads()} threads",
        flush=True,
    )

    rows = []
    for r in range(args.rounds):
        order = args.variants[r % len(args.variants) :] + args.variants[: r % len(args.variants)]
        for variant in order:
            cfg = RunConfig.from_dict({**config.to_dict(), **VARIANTS[variant]})
            torch.manual_seed(0)  # same dropout masks in every epoch
            model = models.build(cfg.model, data.X.shape[1], len(data.label_names))
            model.load_state_dict(copy.deepcopy(initial))
            cpu0, t0 = time.process_time(), time.perf_counter()
            result = fit(
                model,
                data.X,
                data.Y,
                train_idx,
                val_idx,
                config=cfg,
                stages=resolve_stages(cfg),
                scaler=scaler,
                lengths=data.lengths,
                progress=False,
            )
            wall = time.perf_counter() - t0
            h = result.history[-1]
            train_s = h["seconds"] - h["val_seconds"]
            trained = len(train_idx) // cfg.batch_size * cfg.batch_size  # drop_last, as the recipe
            row = {
                "round": r + 1,
                "variant": variant,
                "epoch_s": round(wall, 2),
                "train_s": round(train_s, 2),
                "val_s": round(h["val_seconds"], 2),
                "train_samples_per_s": round(trained / train_s, 1),
                "cpu_s": round(time.process_time() - cpu0, 1),
                "train_loss": h["train_loss"],
                "val_macro_auc": h["val_macro_auc"],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)

    summary = {}
    for variant in args.variants:
        mine = [x for x in rows if x["variant"] == variant]
        summary[variant] = {k: statistics.median(x[k] for x in mine) for k in ("epoch_s", "train_s", "val_s")}
    base = args.variants[0]
    print(f"\n{'variant':<15}{'epoch s':>9}{'train s':>9}{'val s':>8}{'epoch vs ' + base:>20}   50 epochs")
    for variant, s in summary.items():
        ratio = statistics.median(
            b["epoch_s"] / x["epoch_s"]
            for x in rows
            if x["variant"] == variant
            for b in rows
            if b["variant"] == base and b["round"] == x["round"]
        )
        s["epoch_speedup_vs_" + base] = round(ratio, 3)
        print(
            f"{variant:<15}{s['epoch_s']:>9.1f}{s['train_s']:>9.1f}{s['val_s']:>8.1f}{ratio:>19.2f}x"
            f"   {50 * s['epoch_s'] / 60:6.1f} min"
        )
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {
                    "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "machine": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(),
                    "threads": torch.get_num_threads(),
                    "torch": torch.__version__,
                    "argv": sys.argv[1:],
                    "rows": rows,
                    "summary": summary,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
