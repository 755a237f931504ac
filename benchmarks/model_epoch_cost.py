"""Cost of a PTB-XL training epoch per model, measured on a slice of an epoch and extrapolated:

    python benchmarks/model_epoch_cost.py [--models xresnet1d101 s4] [--steps 20] [--val-records 64]
                                          [--train-records 17441] [--all-val-records 2193] [--out FILE.json]
                                          [--device cuda] [--batch-size 64] [--ssl contrastive]

Each model runs, one after the other in this process, :func:`ecg_transfer.training.loop.fit` for one
epoch of ``--steps`` batches of ``--batch-size`` (128) random 2.5 s crops at 100 Hz (the run config's defaults: the
speed path each model gets, fused AdamW) and validates ``--val-records`` 10 s records with 2.5 s
windows at 1.25 s stride (7 windows each), on synthetic signals of PTB-XL's shape (the arithmetic
does not depend on the values; reading the real cache adds ~1 %, see BENCHMARKS.md). The first
step (allocations) is left out: a step is the time between two optimizer steps. The epoch is then ``ceil(train/128)`` steps -- the
last one dropped as in training -- plus the validation of ``all-val-records`` records, and a run is
50 of those. Defaults: task ``all`` (folds 1-8: 17,441 records; fold 9: 2,193); ``diagnostic`` has
17,111 / 2,156.

``--device cuda`` times on a GPU (each step ends with a synchronisation, so a step's time is its
kernels' time); ``--batch-size`` sets the batch (the epoch is then ``train // batch`` steps);
``--ssl METHOD`` wraps each model in the self-supervised objective (``[ssl] method``) instead of BCE,
as ``ecg-transfer pretrain`` with an ``[ssl]`` table trains it (its validation is the SSL loss).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone

import numpy as np
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook


def _measure(name: str, steps: int, val_records: int, n_classes: int, args: argparse.Namespace, seed: int = 0) -> dict:
    from ecg_transfer import models
    from ecg_transfer.training import RunConfig, deterministic_kernels, fit, resolve_stages, trainable_model
    from ecg_transfer.training.scaler import GlobalStandardScaler

    cfg = RunConfig.from_dict(
        {
            "model": name,
            "epochs": 1,
            "device": args.device,
            "batch_size": args.batch_size,
            "validate_every": 1,
            "schedule": {"max_lr": models.TRAINING_HINTS[name]["lr"]},
            **({"ssl": {"method": args.ssl}} if args.ssl else {}),
        }
    )
    n_train = (steps + 1) * cfg.batch_size  # one warm-up step, then `steps` timed ones
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 0.3, size=(n_train + val_records, 12, 1000)).astype(np.float32)
    Y = (rng.random((len(X), n_classes)) < 0.05).astype(np.float32)
    torch.manual_seed(seed)
    scaler = GlobalStandardScaler(0.0, 0.3)
    model = trainable_model(cfg, models.build(name, 12, n_classes), scaler)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    step_times: list[float] = []  # after every optimizer step: consecutive differences are whole steps
    cpu_times: list[float] = []  # the same in this process's CPU time (all its threads)
    handle = register_optimizer_step_post_hook(
        lambda *_: (sync(), step_times.append(time.perf_counter()), cpu_times.append(time.process_time()))
    )
    with deterministic_kernels(cfg.deterministic, torch.device(args.device)):  # as train_run trains
        res = fit(
            model,
            X,
            Y,
            np.arange(n_train),
            np.arange(n_train, len(X)),
            config=cfg,
            stages=resolve_stages(cfg),
            scaler=scaler,
            device=args.device,
            progress=False,
        )
    handle.remove()
    row = res.history[0]
    train_s = row["seconds"] - row["val_seconds"]
    marks = np.diff(step_times) if len(step_times) == steps + 1 else None
    per_step = float(np.median(marks)) if marks is not None else train_s / (steps + 1)
    cpu = np.diff(cpu_times) if len(cpu_times) == steps + 1 else None
    return {
        "model": name,
        "params": sum(p.numel() for p in model.parameters()),
        "steps_timed": steps,
        "train_seconds_total": train_s,
        "seconds_per_step_median": per_step,
        "step_seconds": None if marks is None else [round(float(m), 3) for m in marks],
        "cpu_seconds_per_step_median": None if cpu is None else float(np.median(cpu)),
        "val_records": val_records,
        "val_seconds": row["val_seconds"],
        "val_seconds_per_record": row["val_seconds"] / max(val_records, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["xresnet1d101", "s4"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--val-records", type=int, default=64)
    ap.add_argument("--train-records", type=int, default=17441)
    ap.add_argument("--all-val-records", type=int, default=2193)
    ap.add_argument("--classes", type=int, default=71)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: torch's default). On a shared machine 1 thread and the CPU seconds "
        "per step are the robust figure: oversubscribed threads wait on each other",
    )
    ap.add_argument("--device", default="cpu", help="cpu or cuda (a GPU: steps end with a synchronisation)")
    ap.add_argument("--batch-size", type=int, default=128, help="records per training step")
    ap.add_argument("--ssl", help="time the [ssl] objective of this method (contrastive, masked, cpc) instead of BCE")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in args.models:
        r = _measure(name, args.steps, args.val_records, args.classes, args)
        steps_per_epoch = args.train_records // args.batch_size
        r["epoch_seconds"] = (
            steps_per_epoch * r["seconds_per_step_median"] + args.all_val_records * r["val_seconds_per_record"]
        )
        r[f"run_hours_{args.epochs}_epochs"] = args.epochs * r["epoch_seconds"] / 3600
        rows.append(r)
        print(
            f"{name}: {r['params']:,} parameters; {r['seconds_per_step_median']:.3f} s per step of {args.batch_size} "
            f"(median of {args.steps}; CPU {r['cpu_seconds_per_step_median']:.2f} s); validation {r['val_seconds_per_record'] * 1000:.0f} ms per record; "
            f"epoch ≈ {r['epoch_seconds'] / 60:.1f} min; {args.epochs} epochs ≈ "
            f"{r[f'run_hours_{args.epochs}_epochs']:.1f} h",
            flush=True,
        )
    if len(rows) > 1:
        base = rows[0]
        for r in rows[1:]:
            print(
                f"{r['model']} / {base['model']}: {r['epoch_seconds'] / base['epoch_seconds']:.1f}x per epoch (wall), "
                f"{r['cpu_seconds_per_step_median'] / base['cpu_seconds_per_step_median']:.1f}x CPU per training step"
            )
    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
        "args": vars(args),
        "rows": rows,
    }
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
