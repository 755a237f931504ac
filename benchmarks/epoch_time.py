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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from ecg_transfer.datasets.task import TaskData
    from ecg_transfer.training import RunConfig
    from ecg_transfer.training.scaler import GlobalStandardScaler

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "before": {"memory_format": "contiguous", "optimizer_impl": "foreach"},
    "channels_last": {"memory_format": "channels_last", "optimizer_impl": "foreach"},
    "after": {"memory_format": "auto", "optimizer_impl": "auto"},
}


@dataclass(frozen=True)
class Setup:
    """What every timed epoch shares, loaded once: the base config, the data, its rows, the scaler, the start."""

    config: RunConfig
    data: TaskData
    train_idx: np.ndarray
    val_idx: np.ndarray
    scaler: GlobalStandardScaler
    initial: dict[str, torch.Tensor]  # the model's initial weights (state dict)


def _parse_args() -> argparse.Namespace:
    """The command line (``sys.argv``), kept apart so that ``main`` reads as the run's steps."""
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
    return ap.parse_args()


def _prepare(args: argparse.Namespace) -> Setup:
    """Load PTB-XL and fix the recipe's config, rows, scaler and initial weights once, so every epoch starts equal."""
    from ecg_transfer import models
    from ecg_transfer.datasets.task import load_task
    from ecg_transfer.training import RunConfig
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
    return Setup(config, data, train_idx, val_idx, scaler, initial)


def _rotated(variants: list[str], r: int) -> list[str]:
    """Round ``r``'s order: the variants rotated by ``r``, so no variant always runs first (or last)."""
    return variants[r % len(variants) :] + variants[: r % len(variants)]


def _time_epoch(setup: Setup, variant: str, round_no: int) -> dict[str, Any]:
    """One epoch of ``variant`` from the shared initial weights and seed, so every variant does the same work;
    its row (:func:`_epoch_row`)."""
    from ecg_transfer import models
    from ecg_transfer.training import RunConfig, resolve_stages
    from ecg_transfer.training.loop import fit

    data = setup.data
    cfg = RunConfig.from_dict({**setup.config.to_dict(), **VARIANTS[variant]})
    torch.manual_seed(0)  # same dropout masks in every epoch
    model = models.build(cfg.model, data.X.shape[1], len(data.label_names))
    model.load_state_dict(copy.deepcopy(setup.initial))
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = fit(
        model,
        data.X,
        data.Y,
        setup.train_idx,
        setup.val_idx,
        config=cfg,
        stages=resolve_stages(cfg),
        scaler=setup.scaler,
        lengths=data.lengths,
        progress=False,
    )
    wall = time.perf_counter() - t0
    cpu_s = time.process_time() - cpu0
    return _epoch_row(round_no, variant, result.history[-1], wall, cpu_s, len(setup.train_idx), cfg.batch_size)


def _epoch_row(
    round_no: int, variant: str, h: dict[str, Any], wall: float, cpu_s: float, n_train: int, batch_size: int
) -> dict[str, Any]:
    """The figures of one epoch as printed and saved: training time is the epoch's less its validation, and
    its samples/s counts the full batches only (the recipe drops the last partial one)."""
    train_s = h["seconds"] - h["val_seconds"]
    trained = n_train // batch_size * batch_size  # drop_last, as the recipe
    return {
        "round": round_no,
        "variant": variant,
        "epoch_s": round(wall, 2),
        "train_s": round(train_s, 2),
        "val_s": round(h["val_seconds"], 2),
        "train_samples_per_s": round(trained / train_s, 1),
        "cpu_s": round(cpu_s, 1),
        "train_loss": h["train_loss"],
        "val_macro_auc": h["val_macro_auc"],
    }


def _speedup(rows: list[dict[str, Any]], variant: str, base: str) -> float:
    """Median over same-round pairs of base's epoch seconds / ``variant``'s: variants are compared within a round,
    seconds apart, as a shared machine's load drifts between rounds."""
    return statistics.median(
        b["epoch_s"] / x["epoch_s"]
        for x in rows
        if x["variant"] == variant
        for b in rows
        if b["variant"] == base and b["round"] == x["round"]
    )


def _summarise(rows: list[dict[str, Any]], variants: list[str]) -> dict[str, dict[str, float]]:
    """Per variant: the median epoch, training and validation seconds over the rounds, and the speed-up over the
    first variant (``epoch_speedup_vs_<first>``, 3 places), as the JSON's ``summary`` holds them."""
    summary: dict[str, dict[str, float]] = {}
    for variant in variants:
        mine = [x for x in rows if x["variant"] == variant]
        summary[variant] = {k: statistics.median(x[k] for x in mine) for k in ("epoch_s", "train_s", "val_s")}
    base = variants[0]
    for variant, s in summary.items():
        s["epoch_speedup_vs_" + base] = round(_speedup(rows, variant, base), 3)
    return summary


def _print_summary(summary: dict[str, dict[str, float]], rows: list[dict[str, Any]], base: str) -> None:
    """The table: the medians, the unrounded speed-up over ``base`` and what 50 such epochs would take."""
    print(f"\n{'variant':<15}{'epoch s':>9}{'train s':>9}{'val s':>8}{'epoch vs ' + base:>20}   50 epochs")
    for variant, s in summary.items():
        ratio = _speedup(rows, variant, base)
        print(
            f"{variant:<15}{s['epoch_s']:>9.1f}{s['train_s']:>9.1f}{s['val_s']:>8.1f}{ratio:>19.2f}x"
            f"   {50 * s['epoch_s'] / 60:6.1f} min"
        )


def _write_json(path: Path, rows: list[dict[str, Any]], summary: dict[str, dict[str, float]]) -> None:
    """The figures with what they were measured on (machine, threads, torch, command line), to compare runs."""
    path.write_text(
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


def main() -> int:
    """Time ``--rounds`` epochs of every variant (order rotated per round), print and optionally save the figures."""
    args = _parse_args()
    setup = _prepare(args)
    rows = []
    for r in range(args.rounds):
        for variant in _rotated(args.variants, r):
            row = _time_epoch(setup, variant, r + 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = _summarise(rows, args.variants)
    _print_summary(summary, rows, args.variants[0])
    if args.out:
        _write_json(Path(args.out), rows, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
