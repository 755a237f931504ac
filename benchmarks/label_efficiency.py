"""Label efficiency on PTB-XL: does self-supervised pre-training on folds 1-8's signals help when
only 1 %, 10 % or 100 % of their labels are used? One command:

    python benchmarks/label_efficiency.py [--root data/ptbxl] [--model xresnet1d18] [--epoch-grid 20 40 80]
        [--ssl-epochs 4] [--fractions 0.01 0.1 1] [--out runs/label_efficiency] [--quick]

Arms, for each fraction of folds 1-8's labelled records (``[task] train_fraction``; patients kept
together; nested subsets: ``fraction_parts = 100``, one ``fraction_seed``):

(a) random weights: ``ecg-transfer standalone`` (policy none), at max_lr 1e-2;
(b) self-supervised: ``ecg-transfer finetune --from SSL_RUN`` (policy all: every layer, the same
    one-cycle schedule as (a), so only the initial weights differ), where SSL_RUN is one
    ``ecg-transfer pretrain`` run with an ``[ssl]`` table on the signals of all of folds 1-8
    (fold 9 for its validation loss; fold 10 never read), ``--ssl-epochs`` at max_lr 1e-3.

Each arm is trained for every length of ``--epoch-grid`` (20, 40 and 80 epochs), doubled while the
longest is the best (up to ``--max-epochs``; a "+" beside a length in the table: the cap was reached
still rising), halved while the shortest is (down to ``--min-epochs``, 5; "-": that floor reached),
and keeps the one of its best fold-9 macro AUC, per share. ``--tune-lrs 0.01 0.03`` tries every
length at each of those peak rates for both arms, grows each rate's lengths by the same rule (a
slower rate still rising is extended too), and chooses rate and length together on fold 9. A single length for both would favour the arm that learns
sooner: with 10 % of the labels, 20 epochs leave the network from random weights short of what it
reaches in 40 (measured: diagnostic, fold 9 0.802 -> 0.844), so "pre-training helps" would partly
read "pre-training converges sooner". ``--epoch-grid 20`` is the fixed 20-epoch protocol of the
first measurements.
``--ssl-only`` trains that run and stops (a GPU can do the long pre-training; the fine-tunes, cheap
at 1 % and 10 %, then run anywhere from the same ``--out``: a finished run is reused).

Reported: fold-10 macro AUC of each arm with a 95 % bootstrap CI (1,000 resamples) and the paired
difference (b) - (a) with its CI, from the saved predictions (``ecg_transfer.evaluation``), plus
fold-9 macro AUCs (where the settings may be tuned; fold 10 is only reported), and beside each
share how many labels the arms learnt from fewer than 10 positive training records (with 1 % of a
44- or 71-label task, most: such a comparison hangs on which records were drawn). Everything goes to
``--out``: one run directory per run (resumable: a finished run is reused, an interrupted one
resumed), ``results.json`` and ``results.md``.

``--choose-method`` is the measurement that picked the ``[ssl]`` method: one SSL run per
candidate (``--methods``), each fine-tuned on ``--choice-fraction`` (10 %) of the labels, ranked by
fold-9 macro AUC (nothing of fold 10 is printed or used). Its runs are the label-efficiency runs
of that fraction. Invocations may run in parallel on one ``--out`` (one per method, say): each
run is locked while it trains, and a finished run is reused.

``--ssl-set KEY=JSON ...`` sets further keys of the SSL run's ``[ssl]`` table (augmentations,
temperature, ...; checked before anything trains); give each setting its own ``--out``, since a
finished run is reused by its name. ``--choose-method --methods contrastive --ssl-set ...`` is then
the fold-9 measurement of one setting (its random-weights arm is the same run in every ``--out``).

``--ssl-run DIR`` fine-tunes from a finished SSL run instead of training one: an SSL run reads
signals only, so the run trained under one ``--out`` serves a call with another ``--task``
(checked for what the comparison needs: its method is ``--method``, its backbone and rate those of
both arms, its data this PTB-XL folder, and it learnt from no signal of fold 9 or 10; its epochs
and objective settings are its own, recorded in results.json). Every run reused from ``--out`` is
checked against the settings asked: a finished run trained with other settings is refused, not
answered.

``--pool OUT OUT ...`` trains nothing: it pools finished calls that differ only in ``--seed``
(other labelled subsets, each with its own rate and length chosen on its own fold 9) into one
comparison per share, the mean over the subsets with a CI from the test records and each subset's
own gain with their sd beside it (the CI does not cover the draw of the labelled records; the sd
does), written to ``--out`` as ``pooled.json`` and ``pooled.md``.

``--quick`` is a smoke check of the machinery (minutes): folds 1-2 for training, 1 epoch each,
a narrow network; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np

from ecg_transfer.evaluation.bootstrap import bootstrap_metrics, outside_interval, paired_bootstrap, seed_summary
from ecg_transfer.evaluation.runs import RunPredictions, align_runs, load_run
from ecg_transfer.runfiles import FEW_TRAINING_POSITIVES, few_training_labels, read_label_counts
from ecg_transfer.settings.names import SSL_METHODS
from ecg_transfer.settings.run import RunConfig, ScheduleConfig
from ecg_transfer.study.lengths import Choice, choose
from ecg_transfer.training.run import changed_settings, missing_outputs
from ecg_transfer.training.sameness import same_place

REPO = Path(__file__).resolve().parents[1]

FRACTION_PARTS = 100
#: The SSL run's own options: with --ssl-run they are the run's, read from it, never restated.
SSL_RUN_OWN = ("ssl_epochs", "ssl_lr", "ssl_set", "ssl_crop_seconds", "ssl_seed")
SSL_UNREAD = ("task.labels",)  # an SSL run reads signals only: its [task] labels change nothing it learns
DEFAULT_LR = ScheduleConfig().max_lr  # the toolkit's default peak rate: run names carry a rate only when it differs
DEFAULT_EPOCHS = 20  # the fine-tuning length of the first measurements: run names carry a length only when it differs
DEFAULT_BODY_LR_DIVISOR = 10.0  # --finetune-policy discriminative: head rate / first layer group's rate
QUICK_KWARGS = {"stem_widths": [8, 8, 16], "width": 16, "head_hidden": [16]}


def _task(args: argparse.Namespace, fraction: float = 1.0) -> dict[str, Any]:
    task = {
        "dataset": "ptbxl",
        "root": str(args.root),
        "labels": args.task,
        "train_folds": args.train_folds,
        "val_folds": [9],
        "test_folds": [10],
    }
    if fraction < 1:
        task.update(train_fraction=fraction, fraction_parts=FRACTION_PARTS, fraction_seed=args.seed)
    return task


def _base(args: argparse.Namespace) -> dict[str, Any]:
    base = {"model": args.model, "fs": 100.0, "batch_size": args.batch_size, "seed": args.seed}
    if args.quick:
        base["model_kwargs"] = QUICK_KWARGS
    return base


def ssl_config(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """The run config of the SSL run: every signal of folds 1-8 (fold 9 its validation loss)."""
    config = {
        **_base(args),
        "seed": args.seed if args.ssl_seed is None else args.ssl_seed,
        "epochs": args.ssl_epochs,
        "validate_every": args.ssl_epochs,
        "schedule": {"max_lr": args.ssl_lr},
        "task": _task(args),
        "ssl": {"method": method, **args.ssl_set},
    }
    if args.ssl_crop_seconds is not None:  # the fine-tuning runs keep the default crop
        config["crop_seconds"] = args.ssl_crop_seconds
        config["stride_seconds"] = min(args.ssl_crop_seconds, RunConfig().stride_seconds)
    return config


def finetune_config(
    args: argparse.Namespace,
    arm: str,
    fraction: float,
    ssl_run: Path | None,
    lr: float | None = None,
    epochs: int | None = None,
) -> dict[str, Any]:
    """Arm (a) trains from random weights at ``--lr``; arm (b) from the SSL encoder at
    ``--finetune-lr`` with ``--finetune-policy`` (all: every layer, one cycle over ``epochs``,
    default ``--epochs``; head-then-all: a quarter of the epochs on the head, the rest on everything
    at discriminative rates; discriminative: every layer in one cycle as ``all``, the head at the
    peak rate and the first layer group at ``--body-lr-divisor`` times less, geometric between, so
    the pre-trained layers move less than the new head)."""
    lr = lr if lr is not None else (args.lr if arm == "random" else args.finetune_lr)
    epochs = args.epochs if epochs is None else epochs
    config = {
        **_base(args),
        "epochs": epochs,
        "validate_every": epochs,
        "task": _task(args, fraction),
        "schedule": {"max_lr": lr},
    }
    if arm == "ssl":
        ft: dict[str, Any] = {"policy": args.finetune_policy, "pretrained_run": str(ssl_run)}
        if args.finetune_policy == "head-then-all":
            head = max(1, epochs // 4)
            ft.update(head_epochs=head, all_epochs=max(1, epochs - head), lr=lr)
            del config["schedule"]
        elif args.finetune_policy == "discriminative":
            low = lr / args.body_lr_divisor  # the first layer group's peak; geometric up to lr at the head
            ft.update(policy="all", stages=[{"name": "all", "epochs": epochs, "train": "all", "lr": [low, lr]}])
            del config["schedule"]
        config["finetune"] = ft
    return config


def _run_name(args: argparse.Namespace, arm: str, fraction: float, ssl_dir: Path | None, lr: float, epochs: int) -> str:
    """``random-10pct``, ``ssl-contrastive-10pct``; settings other than the defaults are spelled out
    (``-lr0.001``, ``-head-then-all``, ``-40ep``), so a finished run is reused only under the same
    settings (check_reusable refuses one trained otherwise)."""
    name = f"{arm if arm == 'random' else ssl_dir.name}-{fraction * 100:g}pct"
    if arm == "ssl" and args.finetune_policy != "all":
        name += f"-{args.finetune_policy}"
        if args.finetune_policy == "discriminative" and args.body_lr_divisor != DEFAULT_BODY_LR_DIVISOR:
            name += f"{args.body_lr_divisor:g}"
    name += "" if epochs == DEFAULT_EPOCHS else f"-{epochs}ep"
    return name + ("" if lr == DEFAULT_LR else f"-lr{lr:g}")


def run(command: str, config: dict[str, Any], run_dir: Path, log: dict[str, Any]) -> Path:
    """Train ``run_dir`` unless it is complete (resuming what an interrupted run left); records
    the wall time of this call and the training seconds of the run's metrics in ``log``. A lock per
    run lets several invocations share ``--out`` (e.g. one per candidate method, in parallel)."""
    from filelock import FileLock

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with FileLock(str(run_dir.parent / f"{run_dir.name}.lock")):
        _train_unless_done(command, config, run_dir)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    log[run_dir.name] = {
        "call_seconds": round(time.perf_counter() - t0, 1),
        "epoch_seconds": round(sum(r["seconds"] for r in metrics), 1),
        "epochs": len(metrics),
        "last": {k: metrics[-1][k] for k in ("train_loss", "val_loss", "val_macro_auc")},
    }
    return run_dir


def _train_unless_done(command: str, config: dict[str, Any], run_dir: Path) -> None:
    if missing_outputs(run_dir):
        resume = ["--resume"] if (run_dir / "checkpoint.pt").exists() or (run_dir / "model.pt").exists() else []
        # beside the run's lock and log, not in /tmp: a call that is killed leaves it where the next overwrites it
        asked = run_dir.parent / f"{run_dir.name}.config.json"
        asked.write_text(json.dumps(config), encoding="utf-8")
        print(f"[{datetime.now():%H:%M:%S}] {command} {run_dir.name}{' (resumed)' if resume else ''}", flush=True)
        try:
            with open(run_dir.parent / f"{run_dir.name}.log", "a", encoding="utf-8") as out:
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "ecg_transfer",
                        command,
                        str(asked),
                        "--run-dir",
                        str(run_dir),
                        "--no-progress",
                        *resume,
                    ],
                    check=True,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
        finally:
            asked.unlink(missing_ok=True)


def check_reusable(config: dict[str, Any], run_dir: Path, ignore: Sequence[str] = ()) -> None:
    """Refuse to reuse (or resume) the run in ``run_dir`` when it was trained with other settings
    than ``config`` (``training.run.changed_settings``, the comparison the toolkit makes before
    finishing a run), except the keys in ``ignore``. Runs are named by arm, method and share only,
    so another ``--task``, ``--ssl-set`` or ``--ssl-crop-seconds`` on the same ``--out`` would
    otherwise be answered with the old run."""
    stored_path = run_dir / "config.json"
    if not stored_path.is_file():
        return
    changed = changed_settings(json.loads(stored_path.read_text(encoding="utf-8")), RunConfig.from_dict(config))
    for key in ignore:
        changed.pop(key, None)
    if changed:
        detail = "; ".join(f"{k}: {there!r} there, {asked!r} asked" for k, (there, asked) in changed.items())
        raise SystemExit(f"{run_dir} holds a run with other settings ({detail}); give this setting its own --out")


def ssl_run(args: argparse.Namespace, method: str, log: dict[str, Any]) -> Path:
    """The SSL run of ``method``: ``--ssl-run`` if given (checked, never trained here), else
    ``ssl-{method}`` under ``--out``, trained unless finished."""
    config = ssl_config(args, method)
    if args.ssl_run is None:
        check_reusable(config, args.out / f"ssl-{method}", ignore=SSL_UNREAD)
        return run("pretrain", config, args.out / f"ssl-{method}", log)
    saved = check_ssl_run(args, method, args.ssl_run)
    own = {k: saved.get(k) for k in ("epochs", "seed", "crop_seconds", "ssl")}
    log["ssl_run"] = {"dir": str(args.ssl_run), **own, "max_lr": (saved.get("schedule") or {}).get("max_lr")}
    return args.ssl_run


def check_ssl_run(args: argparse.Namespace, method: str, run_dir: Path) -> dict[str, Any]:
    """The settings of the finished SSL run named by ``--ssl-run``, checked for what makes the
    comparison valid: the method its arm is named by, the backbone and rate of both arms, this
    PTB-XL folder, and no signal of fold 9 (where settings are chosen) or 10 (reported) learnt
    from. Its epochs, rates and objective settings are its own (recorded in results.json), so a
    call need not restate them."""
    missing = missing_outputs(run_dir) or ([] if (run_dir / "config.json").is_file() else ["config.json"])
    if missing:
        raise SystemExit(f"--ssl-run {run_dir}: not a finished run of this toolkit (missing {', '.join(missing)})")
    saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    ssl, task = saved.get("ssl") or {}, saved.get("task") or {}
    asked = {
        "ssl.method": method,
        "model": args.model,
        "model_kwargs": _base(args).get("model_kwargs", {}),
        "fs": 100.0,
    }
    there = {"ssl.method": ssl.get("method"), "model": saved.get("model"), "model_kwargs": saved.get("model_kwargs")}
    there["fs"] = saved.get("fs")
    problems = [f"{k}: {there[k]!r} there, {v!r} asked" for k, v in asked.items() if there[k] != v]
    if task.get("dataset") != "ptbxl" or not same_place(task.get("root"), str(args.root)):
        problems.append(
            f"task: {task.get('dataset')!r} at {task.get('root')!r} there, ptbxl at {str(args.root)!r} asked "
            "(a relative root is read from here: pass --root with the run's PTB-XL folder)"
        )
    for key in ("leads", "source_fs"):
        if task.get(key) is not None:
            problems.append(f"task.{key}: {task[key]!r} there; both arms read every lead at the cached rate")
    if {9, 10} & set(task.get("train_folds") or []):
        problems.append(
            f"it learnt from PTB-XL folds {sorted({9, 10} & set(task['train_folds']))} (9: choices; 10: test)"
        )
    if ssl.get("extra_tasks"):  # another folder may hold PTB-XL's folds 9-10 (CinC 2021 ships PTB-XL)
        problems.append(
            "ssl.extra_tasks: it learnt from other sets too; this benchmark's arm (b) learns from folds 1-8 only"
        )
    if problems:
        raise SystemExit(f"--ssl-run {run_dir}: " + "; ".join(problems))
    return saved


def finetune_run(
    args: argparse.Namespace,
    arm: str,
    fraction: float,
    ssl_dir: Path | None,
    log: dict[str, Any],
    lr: float | None = None,
    epochs: int | None = None,
) -> Path:
    """Arm ``arm`` on ``fraction`` of the labels: trained unless a finished run with the same
    settings is there (one with other settings is refused)."""
    lr = lr if lr is not None else (args.lr if arm == "random" else args.finetune_lr)
    epochs = args.epochs if epochs is None else epochs
    config, run_dir = (
        finetune_config(args, arm, fraction, ssl_dir, lr, epochs),
        args.out / _run_name(args, arm, fraction, ssl_dir, lr, epochs),
    )
    check_reusable(config, run_dir)
    return run("standalone" if arm == "random" else "finetune", config, run_dir, log)


def _auc(entry: dict[str, Any]) -> dict[str, Any]:
    return {"value": entry["value"], "ci": entry["ci"]}


def compare(a_dir: Path, b_dir: Path, split: str) -> dict[str, Any]:
    """Macro AUC of both arms on ``split`` with bootstrap CIs, and the paired difference b - a."""
    runs = [load_run(a_dir), load_run(b_dir)]
    y, (pa, pb), _ = align_runs(runs, split)
    out = {"records": int(len(y))}
    for name, p in (("a", pa), ("b", pb)):
        out[name] = _auc(bootstrap_metrics(y, p, include=("macro_auc",))["headline"]["macro_auc"])
    diff = paired_bootstrap(y, [pb], [pa], include=("macro_auc",))["difference"]["macro_auc"]
    out["b_minus_a"] = {"value": diff["value"], "ci": diff["ci"], "p_value": diff.get("p_value")}
    return out


def pooled_compare(a_runs: Sequence[RunPredictions], b_runs: Sequence[RunPredictions], split: str) -> dict[str, Any]:
    """Both arms over several labelled subsets (one run per subset and arm, paired by position) on
    ``split``: each arm's mean macro AUC over the subsets with its pooled CI, each subset's own
    difference b - a, and the paired difference of the means with its CI. The records are resampled,
    the subsets are not: the CI says how much the test records move the mean gain, and the subsets'
    sd beside it how much the draw of labelled records does (``subsets_outside_ci``: how many
    subsets' own gains lie outside the CI -- then the sd, not the CI, is the spread to read)."""
    n = len(a_runs)
    y, probs, _ = align_runs([*a_runs, *b_runs], split)
    pa, pb = probs[:n], probs[n:]
    arms = {
        name: seed_summary(y, p, include=("macro_auc",))["metrics"]["macro_auc"] for name, p in (("a", pa), ("b", pb))
    }
    diff = paired_bootstrap(y, pb, pa, include=("macro_auc",))["difference"]["macro_auc"]
    gains = np.array(arms["b"]["values"], dtype=float) - np.array(arms["a"]["values"], dtype=float)
    lo, hi = diff["ci"]
    return {
        "records": int(len(y)),
        "subsets": n,
        **{
            name: {"value": e["mean"], "ci": e["pooled_ci"], "values": e["values"], "sd": e["sd"]}
            for name, e in arms.items()
        },
        "b_minus_a": {"value": diff["value"], "ci": diff["ci"], "p_value": diff.get("p_value")},
        "b_minus_a_per_subset": [float(g) for g in gains],
        "b_minus_a_sd": float(gains.std(ddof=1)) if n > 1 else None,
        "subsets_outside_ci": int(sum(outside_interval(float(g), lo, hi) for g in gains)),
    }


def training_positives(run_dir: Path) -> dict[str, Any]:
    """How many of a fine-tuning run's labels it learnt from fewer than FEW_TRAINING_POSITIVES
    positive training records (and from none): at 1 % of the labels of a 44- or 71-label task most
    labels have a handful. From the run's ``label_counts.json``, or, for a run trained before it
    was written, counted from its ``splits.json`` and its task's labels (checked against the labels
    the run predicts); ``{"labels": None}`` when neither can be had (said, not guessed)."""
    counts = (read_label_counts(run_dir) or {}).get("train")
    if counts is None:
        counts = _counted_from_task(run_dir)
    if counts is None:
        return {"labels": None, "floor": FEW_TRAINING_POSITIVES}
    return {
        "labels": len(counts),
        "floor": FEW_TRAINING_POSITIVES,
        "under_floor": len(few_training_labels(counts)),
        "none": sum(1 for n in counts.values() if n == 0),
    }


_TASKS: dict[str, Any] = {}  # one load of each task per call: every share's run reads the same labels


def _counted_from_task(run_dir: Path) -> dict[str, int] | None:
    from ecg_transfer.datasets.task import load_task
    from ecg_transfer.errors import EcgTransferError
    from ecg_transfer.training.run import label_counts

    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        key = json.dumps([config["task"], config["fs"]], sort_keys=True)
        if key not in _TASKS:
            _TASKS[key] = load_task(config["task"], config["fs"], progress=False)
        data = _TASKS[key]
        if list(data.label_names) != list(load_run(run_dir).test.label_names):
            return None  # today's label code gives other labels than the run predicts
        row = {rid: i for i, rid in enumerate(data.record_ids)}
        train = json.loads((run_dir / "splits.json").read_text(encoding="utf-8"))["train"]
        counted = label_counts(data.Y, {"train": [row[r] for r in train]}, data.label_names)
    except (OSError, ValueError, KeyError, EcgTransferError) as exc:
        print(f"{run_dir}: training positives not counted ({type(exc).__name__}: {exc})", file=sys.stderr)
        return None
    return dict(zip(counted["labels"], counted["positives"]["train"]))


def _few_note(t: dict[str, Any]) -> str:
    """``3 of 5``; a warning when most labels were learnt from fewer than the floor (the bootstrap
    CI covers the test records, not the choice of the labelled subset: repeat with --seed)."""
    if t.get("labels") is None:
        return "n/a"
    note = f"{t['under_floor']} of {t['labels']}"
    if 2 * t["under_floor"] > t["labels"]:
        note += " (most: the result hangs on which records were drawn, which the CI does not cover; repeat with --seed)"
    return note


def _fmt(e: dict[str, Any]) -> str:
    lo, hi = e["ci"]
    return f"{e['value']:.4f} [{lo:.4f}, {hi:.4f}]"


def choose_method(args: argparse.Namespace, log: dict[str, Any]) -> dict[str, Any]:
    """One SSL run per candidate, fine-tuned on ``--choice-fraction`` of the labels; fold 9 only."""
    tuned = {}
    for method in args.methods:
        tuned[method] = finetune_run(args, "ssl", args.choice_fraction, ssl_run(args, method, log), log)
    random_dir = finetune_run(args, "random", args.choice_fraction, None, log)
    rows = {method: compare(random_dir, ft_dir, "val") for method, ft_dir in tuned.items()}
    best = max(rows, key=lambda m: rows[m]["b"]["value"])
    print(f"\nfold-9 macro AUC, {args.choice_fraction * 100:g} % of folds 1-8's labels ({args.task}):")
    print(f"  random weights           {_fmt(next(iter(rows.values()))['a'])}")
    for method, r in rows.items():
        print(f"  ssl {method:<20} {_fmt(r['b'])}   difference to random {_fmt(r['b_minus_a'])}")
    print(f"chosen by fold-9 macro AUC: {best}")
    return {"fraction": args.choice_fraction, "split": "val (fold 9)", "methods": rows, "chosen": best}


def choose_lr(args: argparse.Namespace, log: dict[str, Any]) -> dict[str, Any]:
    """Each arm's peak learning rate from ``--lrs``, by fold-9 macro AUC at ``--choice-fraction`` of
    the labels: both arms get the same grid, so neither is favoured by tuning (fold 10 is not read)."""
    ssl_dir = ssl_run(args, args.method, log)
    rows: dict[str, dict[str, Any]] = {"random": {}, "ssl": {}}
    for lr in args.lrs:
        for arm in rows:
            run_dir = finetune_run(args, arm, args.choice_fraction, ssl_dir if arm == "ssl" else None, log, lr)
            rows[arm][f"{lr:g}"] = _val_auc(run_dir)
    chosen = {arm: max(r, key=lambda k: r[k]["value"]) for arm, r in rows.items()}
    print(
        f"\nfold-9 macro AUC, {args.choice_fraction * 100:g} % of the labels ({args.task}; "
        f"ssl arm: {args.finetune_policy}):"
    )
    for arm, r in rows.items():
        print(f"  {arm:<7}" + "   ".join(f"lr {k}: {_fmt(v)}" for k, v in r.items()) + f"   chosen: {chosen[arm]}")
    return {
        "fraction": args.choice_fraction,
        "split": "val (fold 9)",
        "policy": args.finetune_policy,
        "lrs": rows,
        "chosen": chosen,
    }


#: Settings of the pooled calls that may differ: the labelled subset (--seed), where each call wrote,
#: its own shares (the shares all of them measured are pooled) and what the pool call itself asks.
POOL_FREE = ("seed", "out", "fractions", "pool")
POOL_PLACES = ("root",)  # compared as places: one folder spelt two ways is one setting
#: How arm (b)'s SSL run was named or trained: compared as the run itself (:func:`_pooled_ssl_run`).
POOL_SSL = ("ssl_run", *SSL_RUN_OWN)


def _finished_call(folder: Path) -> dict[str, Any]:
    """A finished label-efficiency call's results.json, with the chosen runs of each share named."""
    path = folder / "results.json"
    if not path.is_file():
        raise SystemExit(f"--pool: {path} not found: run the label-efficiency call for that subset first")
    results = json.loads(path.read_text(encoding="utf-8"))
    rows = results.get("fractions") or {}
    if not rows or any("dirs" not in r for r in rows.values()):
        raise SystemExit(
            f"--pool: {path} does not name its chosen runs (written by an older version of this script): "
            "run its command again -- every finished run is reused, only results.json is rewritten"
        )
    return results


def _check_poolable(calls: Sequence[dict[str, Any]], folders: Sequence[Path]) -> None:
    """Refuse to pool calls that measured different things: every setting but ``POOL_FREE`` must
    agree (the places as places), arm (b) must start from one SSL run, and each labelled subset
    may come once."""
    first = calls[0]["settings"]
    for folder, call in zip(folders[1:], calls[1:]):
        other = call["settings"]
        differ = [
            f"{key} ({first.get(key)!r} / {other.get(key)!r})"
            for key in sorted(set(first) | set(other))
            if key not in POOL_FREE + POOL_SSL
            and not (key in POOL_PLACES and same_place(first.get(key), other.get(key)))
            and first.get(key) != other.get(key)
        ]
        ssl_runs = [_pooled_ssl_run(first, folders[0]), _pooled_ssl_run(other, folder)]
        if not same_place(*ssl_runs):
            differ.append(f"the SSL run ({ssl_runs[0]!r} / {ssl_runs[1]!r})")
        if differ:
            shown = ", ".join(differ)
            raise SystemExit(f"--pool: {folders[0]} and {folder} measured with different settings: {shown}")
    seeds = [c["settings"].get("seed") for c in calls]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"--pool: each labelled subset once (--seed of the calls: {seeds})")


def _pooled_ssl_run(settings: dict[str, Any], folder: Path) -> str:
    """The SSL run a call's arm (b) started from: the one ``--ssl-run`` named, else the one the call
    trained in its own folder. A subset measured first with its own SSL run pools with subsets that
    name that run (``--ssl-run OUT/MODEL/ssl-METHOD``); two runs trained apart are two runs."""
    if settings.get("ssl_run") is not None:
        return str(settings["ssl_run"])
    return str(folder / f"ssl-{settings['method']}")


def pool(args: argparse.Namespace) -> dict[str, Any]:
    """The comparison pooled over labelled subsets: ``--pool OUT ...`` names finished calls that
    differ only in ``--seed`` (each subset's rate and length chosen on its own fold 9, as the call
    did); for each share they all measured, :func:`pooled_compare` on their chosen runs. One subset's
    gain hangs on which 10 % of the records were labelled; the mean over several says what
    pre-training is worth, and the subsets' sd how much the draw moves it."""
    folders = [Path(out) / args.model for out in args.pool]
    calls = [_finished_call(f) for f in folders]
    _check_poolable(calls, folders)
    shares = sorted(set.intersection(*(set(c["fractions"]) for c in calls)), key=float)
    if not shares:
        raise SystemExit(
            f"--pool: no share of the labels measured by every call ({[sorted(c['fractions']) for c in calls]})"
        )
    rows = {}
    for share in shares:
        arms = {arm: [load_run(f / c["fractions"][share]["dirs"][arm]) for f, c in zip(folders, calls)] for arm in "ab"}
        rows[share] = {
            "test": pooled_compare(arms["a"], arms["b"], "test"),
            "val": pooled_compare(arms["a"], arms["b"], "val"),
            "seeds": [c["settings"]["seed"] for c in calls],
            "epochs": [c["fractions"][share]["epochs"] for c in calls],
            "training_positives": [c["fractions"][share]["training_positives"] for c in calls],
        }
        rows[share]["stopped_at_a_bound"] = _stopped_at_a_bound(rows[share]["seeds"], rows[share]["epochs"])
    print(f"\nfold-10 macro AUC over {len(calls)} labelled subsets (mean, pooled 95 % CI), {args.model}:")
    for share, r in rows.items():
        print(f"{float(share) * 100:>7g}%  {_pooled_line(r)}")
    return {"pooled": rows, "calls": [str(f) for f in folders]}


def _stopped_at_a_bound(seeds: Sequence[int], epochs: Sequence[dict[str, Any]]) -> list[str]:
    """``seed 2, arm (a): 640+`` for each subset whose chosen length stopped at ``--max-epochs`` while
    still rising on fold 9 (or at ``--min-epochs`` while shorter was still better): that arm's
    figure may be understated, so the pooled gain leans its way -- the pool says so beside it."""
    return [
        f"seed {seed}, arm ({arm}): {_length(entry[arm], tuned_lr=False)}"
        for seed, entry in zip(seeds, epochs)
        for arm in ("a", "b")
        if entry.get(arm, {}).get("at_the_cap") or entry.get(arm, {}).get("at_the_floor")
    ]


def _pooled_line(r: dict[str, Any]) -> str:
    """``(a) 0.858 [..], (b) 0.873 [..], (b) - (a) +0.0144 [..]; per subset +0.0130, +0.0158 (sd 0.0020)``,
    a warning where subsets' own gains lie outside the pooled CI, and one where a subset's chosen
    length stopped at a bound of the grid."""
    t = r["test"]
    per = ", ".join(f"{g:+.4f}" for g in t["b_minus_a_per_subset"])
    sd = f" (sd {t['b_minus_a_sd']:.4f})" if t["b_minus_a_sd"] is not None else ""
    line = f"(a) {_fmt(t['a'])}, (b) {_fmt(t['b'])}, (b) - (a) {_fmt(t['b_minus_a'])}; per subset {per}{sd}"
    if t["subsets_outside_ci"]:
        line += (
            f" -- warning: {t['subsets_outside_ci']} of {t['subsets']} subsets' gains lie outside the CI "
            "(the draw of labelled records moves the gain more than the test records do: read the sd)"
        )
    if r.get("stopped_at_a_bound"):
        line += (
            " -- warning: chosen length at a bound of the grid, better still beyond it on fold 9 "
            f"({'; '.join(r['stopped_at_a_bound'])}; +: longer, -: shorter): that arm may be understated; "
            "run the subset again with a larger --max-epochs (or smaller --min-epochs)"
        )
    return line


def _val_auc(run_dir: Path) -> dict[str, Any]:
    y, (p,), _ = align_runs([load_run(run_dir)], "val")
    return _auc(bootstrap_metrics(y, p, include=("macro_auc",))["headline"]["macro_auc"])


def _arm_lrs(args: argparse.Namespace, arm: str) -> list[float]:
    """The peak rates an arm is tried at: ``--tune-lrs`` for both arms, else its own single rate."""
    if args.tune_lrs:
        return list(args.tune_lrs)
    return [args.lr if arm == "random" else args.finetune_lr]


Setting = tuple[float, int]  # (peak learning rate, fine-tuning epochs)


def _best(val: dict[Setting, dict[str, Any]]) -> Setting:
    """The setting of the best fold-9 macro AUC, by the study's rule (ecg_transfer.study.lengths.choose):
    a tie keeps the shorter length (and, at one length, the rate listed first)."""
    keys = {f"{lr:g}@{e}": (lr, e) for lr, e in val}
    chosen = choose([(k, s[1]) for k, s in keys.items()], lambda k: True, lambda k: val[keys[k]]["value"])
    return keys[str(chosen.key)]


def _at_rate(val: dict[Setting, dict[str, Any]], lr: float) -> dict[int, float]:
    """Fold-9 macro AUC by length, of the runs at peak rate ``lr``."""
    return {e: v["value"] for (r, e), v in sorted(val.items()) if r == lr}


def _rate_choice(scores: dict[int, float]) -> Choice:
    """One rate's length choice by the study's rule (:func:`ecg_transfer.study.lengths.choose`): its
    ``at_cap`` / ``at_floor`` say the longest / shortest length beat every other (a tie keeps the
    shorter, so neither holds on a tie; one length: neither)."""
    return choose([(str(e), e) for e in scores], lambda k: True, lambda k: scores[int(k)])


def _next_length(scores: dict[int, float], args: argparse.Namespace) -> int | None:
    """Where one rate's lengths grow: twice the longest while it is the rate's best (up to
    ``--max-epochs``), half the shortest while it is (down to ``--min-epochs``); None when the best
    lies inside, a bound stops it, or ``--epoch-grid`` is one fixed length."""
    if len(args.epoch_grid) == 1:
        return None
    choice = _rate_choice(scores)
    if choice.at_cap and 2 * max(scores) <= args.max_epochs:
        return 2 * max(scores)
    if choice.at_floor and args.min_epochs <= min(scores) // 2 < min(scores):
        return min(scores) // 2
    return None


def chosen_length(
    args: argparse.Namespace, arm: str, fraction: float, ssl_dir: Path | None, log: dict[str, Any]
) -> tuple[Path, dict[str, Any]]:
    """The arm's run at each fine-tuning length of ``--epoch-grid`` at each of its rates (``--tune-lrs``),
    each rate's lengths grown until its best lies inside them -- doubled while the longest is best,
    halved while the shortest is -- or a bound stops them, and the setting of the best fold-9 macro
    AUC. Each arm gets the same rule and its own choice: one fixed length favours the arm that
    converges sooner (the pre-trained one), since the other is judged before it has finished
    learning (measured: at 10 % of diagnostic's labels, 20 epochs gave the SSL arm +0.025, 40
    epochs +0.002); a choice at either end of the grid would still be one, and a slower rate is
    grown too, so rate and length are chosen together. Fold 10 is not read for the choice."""
    rates = _arm_lrs(args, arm)
    runs = {(lr, e): finetune_run(args, arm, fraction, ssl_dir, log, lr, e) for lr in rates for e in args.epoch_grid}
    if len(runs) == 1:  # a fixed length and rate: nothing to choose
        return next(iter(runs.values())), {"chosen": args.epoch_grid[0], "lr": rates[0]}
    val = {s: _val_auc(d) for s, d in runs.items()}
    while grown := [(lr, e) for lr in rates if (e := _next_length(_at_rate(val, lr), args)) is not None]:
        for setting in grown:
            runs[setting] = finetune_run(args, arm, fraction, ssl_dir, log, *setting)
            val[setting] = _val_auc(runs[setting])
    lr, chosen = _best(val)
    at_rate = _rate_choice(_at_rate(val, lr))  # the chosen rate's own lengths: the same length wins there
    return runs[(lr, chosen)], {
        "chosen": chosen,
        "lr": lr,
        "val_macro_auc": {f"{r:g}": {str(e): v for e, v in _at_rate(val, r).items()} for r in rates},
        "at_the_cap": at_rate.at_cap,  # the growth stopped by --max-epochs, still rising
        "at_the_floor": at_rate.at_floor,  # stopped by --min-epochs
    }


def label_efficiency(args: argparse.Namespace, log: dict[str, Any]) -> dict[str, Any]:
    ssl_dir = ssl_run(args, args.method, log)
    rows = {}
    for fraction in args.fractions:
        a, a_len = chosen_length(args, "random", fraction, None, log)
        b, b_len = chosen_length(args, "ssl", fraction, ssl_dir, log)
        rows[f"{fraction:g}"] = {
            "test": compare(a, b, "test"),
            "val": compare(a, b, "val"),
            "epochs": {"a": a_len, "b": b_len, "lrs": args.tune_lrs or []},
            "dirs": {"a": a.name, "b": b.name},  # the chosen runs, beside this file (--pool reads them)
            "training_positives": training_positives(a),  # arm (b) trains on the same records
        }
    print(f"\nfold-10 macro AUC (95 % bootstrap CI), {args.model}, task {args.task}, SSL {args.method}:")
    print(f"{'labels':>8}  {'(a) random weights':<26}{'(b) self-supervised':<26}{'(b) - (a)':<26}", end="")
    print(f"{'epochs (a) / (b)':<34}labels with < {FEW_TRAINING_POSITIVES} training positives")
    for fraction, r in rows.items():
        t = r["test"]
        print(
            f"{float(fraction) * 100:>7g}%  {_fmt(t['a']):<26}{_fmt(t['b']):<26}{_fmt(t['b_minus_a']):<26}"
            f"{_lengths(r):<34}{_few_note(r['training_positives'])}"
        )
    return rows


def _lengths(row: dict[str, Any]) -> str:
    """``40 / 20`` -- each arm's fine-tuning length (chosen on fold 9 when the grid has several)."""
    lengths = row.get("epochs") or {}
    arms = [lengths.get(arm) or {} for arm in ("a", "b")]
    return " / ".join(_length(e, tuned_lr=bool(lengths.get("lrs"))) for e in arms)


def _length(entry: dict[str, Any], tuned_lr: bool) -> str:
    """``160+`` (the cap reached, longer still better), ``5-`` (the floor reached, shorter still
    better), ``40 @ lr 0.03`` (with --tune-lrs)."""
    text = (
        f"{entry.get('chosen', '?')}{'+' if entry.get('at_the_cap') else ''}{'-' if entry.get('at_the_floor') else ''}"
    )
    return text + (f" @ lr {entry['lr']:g}" if tuned_lr and "lr" in entry else "")


def _results_name(args: argparse.Namespace) -> str:
    """The results file's name (without suffix) for what this call measured."""
    if args.pool:
        return "pooled"
    if args.ssl_only:
        return "ssl_run"
    if args.choose_method:
        return "method_choice"
    if args.choose_lr:
        return f"lr_choice_{args.finetune_policy}"
    # another policy's results lie beside the policy-all results of the same --out
    return "results" if args.finetune_policy == "all" else f"results-{args.finetune_policy}"


def _table_lines(args: argparse.Namespace, results: dict[str, Any]) -> list[str]:
    """results.md of a measurement: one row per share, and the SSL run arm (b) started from."""
    lines = [
        f"| labels | (a) random weights | (b) SSL ({args.method}) | (b) - (a) | epochs (a) / (b) | labels learnt from "
        f"< {FEW_TRAINING_POSITIVES} positives |",
        "|---|---|---|---|---|---|",
    ]
    for fraction, r in results.get("fractions", {}).items():
        t = r["test"]
        lines.append(
            f"| {float(fraction) * 100:g} % | {_fmt(t['a'])} | {_fmt(t['b'])} | {_fmt(t['b_minus_a'])} | "
            f"{_lengths(r)} | {_few_note(r['training_positives'])} |"
        )
    ssl_run = results.get("runs", {}).get("ssl_run")
    if ssl_run:  # --ssl-run: name the run arm (b) started from, and its own length
        lines.append(f"\nArm (b) from {ssl_run['dir']} ({ssl_run['epochs']} epochs, [ssl] {ssl_run['ssl']}).")
    return lines


def _pooled_lines(results: dict[str, Any]) -> list[str]:
    """pooled.md: the calls pooled, and one line per share."""
    lines = [f"Pooled over {len(results['calls'])} labelled subsets: {', '.join(results['calls'])}", ""]
    return lines + [f"- {float(share) * 100:g} %: {_pooled_line(r)}" for share, r in results["pooled"].items()]


def write_results(args: argparse.Namespace, results: dict[str, Any]) -> None:
    from ecg_transfer.atomic import atomic_write_json, atomic_write_text

    name = _results_name(args)
    path = args.out / f"{name}.json"
    atomic_write_json(path, results)
    lines = _pooled_lines(results) if args.pool else _table_lines(args, results)
    if not (args.ssl_only or args.choose_method or args.choose_lr):
        atomic_write_text(args.out / f"{name}.md", "\n".join(lines) + "\n")
    print(f"\nwritten: {path}")


def _key_values(ap: argparse.ArgumentParser, items: list[str]) -> dict[str, Any]:
    """``["temperature=0.1", ...]`` -> ``{"temperature": 0.1}``; the values are JSON."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--ssl-set {item!r}: expected KEY=JSON")
        if key == "method":
            ap.error("--ssl-set method=...: give the method with --method (or --methods)")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError as exc:
            ap.error(f"--ssl-set {item!r}: the value is not JSON ({exc.msg})")
    return out


def _check_ssl_runs(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse an SSL run's setting (``--ssl-set``, ``--ssl-crop-seconds``) that the run would
    refuse, before anything trains."""
    from ecg_transfer.errors import ConfigError

    if args.ssl_run is not None:  # checked when read (check_ssl_run)
        return
    for method in args.methods if args.choose_method else [args.method]:
        try:
            RunConfig.from_dict(ssl_config(args, method))
        except ConfigError as exc:
            ap.error(f"the SSL run of method {method!r}: {exc}")


def _add_ssl_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of the SSL run (arm (b)'s starting point)."""
    ap.add_argument("--ssl-epochs", type=int, default=4, help="self-supervised epochs")
    ap.add_argument("--ssl-lr", type=float, default=1e-3, help="peak learning rate of the SSL run")
    ap.add_argument("--method", default="cpc", choices=SSL_METHODS, help="[ssl] method")
    ap.add_argument(
        "--ssl-crop-seconds",
        type=float,
        default=None,
        help="crop of the SSL run, s (default: the toolkit's 2.5 s; cpc predicts more patches of a longer one); "
        "the fine-tuning runs keep 2.5 s",
    )
    ap.add_argument(
        "--ssl-set",
        nargs="+",
        default=[],
        metavar="KEY=JSON",
        help="further keys of the SSL run's [ssl] table, values in JSON, e.g. temperature=0.1 "
        '\'augmentations=["random-resized-crop", "time-out"]\' (use a separate --out per setting: '
        "a finished run is reused by name)",
    )
    ap.add_argument(
        "--ssl-run",
        type=Path,
        default=None,
        help="a finished SSL run to fine-tune from instead of training one (e.g. one trained under another "
        "--out for another --task: an SSL run reads no labels); checked for method, backbone, data and "
        "folds, its epochs and settings recorded as they were",
    )
    ap.add_argument(
        "--ssl-seed",
        type=int,
        default=None,
        help="seed of the SSL run (default: --seed); --seed 1 --ssl-seed 0 repeats the fine-tuning "
        "comparison on another labelled subset and initialisation from the same SSL run",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=REPO / "data" / "ptbxl", help="the PTB-XL folder")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "label_efficiency", help="run directories, results")
    ap.add_argument("--model", default="xresnet1d18")
    ap.add_argument("--task", default="superdiagnostic", help="PTB-XL task (labels)")
    ap.add_argument(
        "--epochs",
        type=int,
        default=DEFAULT_EPOCHS,
        help="fine-tuning epochs of both arms in --choose-method and --choose-lr",
    )
    ap.add_argument(
        "--epoch-grid",
        type=int,
        nargs="+",
        default=[20, 40, 80],
        help="fine-tuning lengths tried for each arm at each share, doubled while the longest is the best; "
        "each arm's is chosen by fold-9 macro AUC (one value: a fixed length for both)",
    )
    ap.add_argument(
        "--max-epochs",
        type=int,
        default=640,
        help="the longest fine-tuning the grid may double to (at 1 %% of the labels an epoch is one or two steps)",
    )
    ap.add_argument(
        "--min-epochs",
        type=int,
        default=5,
        help="the shortest fine-tuning the grid may halve to, while its shortest length is an arm's best",
    )
    ap.add_argument(
        "--tune-lrs",
        type=float,
        nargs="+",
        default=None,
        help="peak learning rates tried for both arms; each arm's rate is chosen on fold 9 together with "
        "its length (default: --lr for arm (a), --finetune-lr for arm (b))",
    )
    _add_ssl_arguments(ap)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.01, 1.0])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0, help="seed of the runs and of the labelled subsets")
    ap.add_argument("--choose-method", action="store_true", help="rank the candidate methods on fold 9")
    ap.add_argument(
        "--methods",
        nargs="+",
        default=["contrastive", "masked", "cpc"],
        choices=SSL_METHODS,
        help="with --choose-method",
    )
    ap.add_argument("--choice-fraction", type=float, default=0.1, help="with --choose-method")
    ap.add_argument("--lr", type=float, default=DEFAULT_LR, help="peak learning rate of arm (a), random weights")
    ap.add_argument("--finetune-lr", type=float, default=DEFAULT_LR, help="peak learning rate of arm (b)")
    ap.add_argument(
        "--finetune-policy",
        default="all",
        choices=["all", "head-then-all", "discriminative"],
        help="arm (b)'s policy (discriminative: every layer, the body at lower peak rates than the head)",
    )
    ap.add_argument(
        "--body-lr-divisor",
        type=float,
        default=DEFAULT_BODY_LR_DIVISOR,
        help="with --finetune-policy discriminative: the head's peak rate over the first layer group's",
    )
    ap.add_argument("--choose-lr", action="store_true", help="pick each arm's learning rate on fold 9 (--lrs)")
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-2, 3e-3, 1e-3], help="with --choose-lr")
    ap.add_argument(
        "--ssl-only",
        action="store_true",
        help="train the self-supervised run and stop (e.g. on a GPU); a later call with the same --out, "
        "--method and --ssl-epochs fine-tunes from it",
    )
    ap.add_argument("--quick", action="store_true", help="smoke check: folds 1-2, 1 epoch, narrow network")
    ap.add_argument(
        "--pool",
        nargs="+",
        metavar="OUT",
        help="trains nothing: pool the finished calls written to these --out folders (the same settings, "
        "another --seed each: other labelled subsets; arm (b) from one SSL run: the first call's own, "
        "named by the others' --ssl-run) into one comparison per share, written to --out as pooled.json / pooled.md",
    )
    args = ap.parse_args(argv)
    if args.pool is not None and (args.ssl_only or args.choose_method or args.choose_lr or len(args.pool) < 2):
        ap.error(
            "--pool reads two or more finished calls and trains nothing: not with --ssl-only, --choose-method or --choose-lr"
        )
    if args.ssl_run is not None and (args.ssl_only or (args.choose_method and len(args.methods) > 1)):
        ap.error("--ssl-run names one finished SSL run: not with --ssl-only or several --methods")
    own = [f"--{k.replace('_', '-')}" for k in SSL_RUN_OWN if getattr(args, k) != ap.get_default(k)]
    if args.ssl_run is not None and own:
        ap.error(f"--ssl-run: {', '.join(own)} would be ignored (the run's own settings are used and recorded)")
    if len(set(args.epoch_grid)) != len(args.epoch_grid) or min(args.epoch_grid) < 1:
        ap.error(f"--epoch-grid {' '.join(map(str, args.epoch_grid))}: give distinct lengths of at least 1 epoch")
    if max(args.epoch_grid) > args.max_epochs:
        ap.error(f"--epoch-grid {max(args.epoch_grid)} is longer than --max-epochs {args.max_epochs}")
    if args.quick:
        args.min_epochs = 1
    if not 1 <= args.min_epochs <= min(args.epoch_grid):
        ap.error(f"--min-epochs {args.min_epochs}: give 1 to the grid's shortest length ({min(args.epoch_grid)})")
    if args.tune_lrs is not None and (
        len({f"{lr:g}" for lr in args.tune_lrs}) != len(args.tune_lrs) or min(args.tune_lrs) <= 0
    ):
        ap.error(f"--tune-lrs {' '.join(map(str, args.tune_lrs))}: give distinct positive rates")
    if args.tune_lrs is not None and (args.choose_lr or args.choose_method or args.ssl_only):
        ap.error(
            "--tune-lrs chooses rates in the label-efficiency measurement: not with --choose-lr, "
            "--choose-method or --ssl-only"
        )
    args.epoch_grid = sorted(args.epoch_grid)  # a tie on fold 9 keeps the shorter length
    args.ssl_set = _key_values(ap, args.ssl_set)
    args.train_folds = [1, 2, 3, 4, 5, 6, 7, 8]
    if args.quick:
        args.train_folds, args.epochs, args.ssl_epochs, args.fractions = [1, 2], 1, 1, [0.1]
        args.epoch_grid = [1]
        if args.out == REPO / "runs" / "label_efficiency":
            args.out = REPO / "runs" / "label_efficiency_quick"
    args.out = args.out / args.model
    _check_ssl_runs(ap, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    t0 = time.perf_counter()
    log: dict[str, Any] = {}
    if args.pool:
        body = pool(args)
    elif args.ssl_only:
        body = {"ssl_run": str(ssl_run(args, args.method, log))}
    elif args.choose_method:
        body = choose_method(args, log)
    elif args.choose_lr:
        body = choose_lr(args, log)
    else:
        body = {"fractions": label_efficiency(args, log)}
    results = {
        "command": " ".join(sys.argv),
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "wall_seconds_this_call": round(time.perf_counter() - t0, 1),
        "runs": log,
        **body,
    }
    write_results(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
