"""``RUN_DIR/MODEL_CARD.md``: what a run is, how well it does (with intervals), and what it is not for.

Written by the step after a run, not by training itself: ``ecg-transfer train`` writes it when the
run is trained, ``ecg-transfer study run`` after the study's evaluation of the run (so it quotes
that evaluation, calibration included), and ``ecg-transfer model-card RUN_DIR`` rewrites it (e.g.
after ``ecg-transfer evaluate``, whose ``evaluation/metrics.json`` it then quotes). Everything comes
from files the run directory already holds -- ``config.json``, ``splits.json``, ``environment.json``,
``metrics.jsonl``, ``model.pt``, ``predictions_*.csv``, ``evaluation/metrics.json`` -- so the card
never disagrees with them. Without ``metrics.json`` the macro AUC's bootstrap interval is computed
here from ``predictions_test.csv`` with :data:`QUICK_RESAMPLES` resamples (stated in the card).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..evaluation.caveats import (
    FEW_TEST_POSITIVES,
    WARN,
    challenge_caveat,
    interval_caveats,
    resampling_caveat,
    with_caveats,
)
from ..runfiles import FEW_TRAINING_POSITIVES, few_training_labels, read_label_counts, read_left_out
from ..training.history import kept_epoch

log = logging.getLogger(__name__)

MODEL_CARD = "MODEL_CARD.md"
QUICK_RESAMPLES = 200

_NAMES = {
    "macro_auc": "macro AUC",
    "macro_auprc": "macro AUPRC",
    "f_max": "F-max",
    "brier": "Brier score",
    "ece": "ECE (pooled)",
    "ece_macro": "ECE (macro)",
    "challenge": "challenge metric",
}

# Who the training data come from (the label-quality facts are in _LABELS).
_POPULATION = {
    "ptbxl": "PTB-XL: 21,837 clinical 10 s 12-lead ECGs of 18,885 patients, recorded 1989-1996 with Schiller "
    "devices at the Physikalisch-Technische Bundesanstalt (Germany); ages 0-95 (median 62), "
    "52 % male.",
    "cinc": "a CinC 2020/2021-format set; for G12EC: 10 s 12-lead ECGs at 500 Hz from Emory University "
    "(Atlanta, Georgia, USA), a population from the south-eastern United States.",
}
_POPULATION["g12ec"] = _POPULATION["cinc"]
_LABELS = {
    "ptbxl": "PTB-XL statements were written by up to two cardiologists (some first made automatically, then "
    "validated); "
    "every statement is used whatever its likelihood, so some labels are uncertain, and a missing "
    "statement does not prove a finding absent.",
    "cinc": "CinC labels are SNOMED-CT codes from the sites' own reports (not adjudicated for the challenge); "
    "they were mapped to the label protocol by code, equivalent codes merged as the challenge scorer "
    "does. Missing codes are common: a missing label does not prove a finding absent.",
}
_LABELS["g12ec"] = _LABELS["cinc"]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    except json.JSONDecodeError:
        return None


def _fmt(entry: dict | None, digits: int = 3) -> str:
    from ..evaluation.bootstrap import format_interval

    return "n/a" if entry is None else format_interval(entry, digits)


def _history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _model_facts(run_dir: Path) -> dict[str, Any] | None:
    from ..training.modelfile import MODEL_FILE, load_model_file

    if not (run_dir / MODEL_FILE).exists():
        return None
    lm = load_model_file(run_dir / MODEL_FILE, encoder_ok=True)  # a self-supervised encoder has a card too
    return {
        "name": lm.spec.get("name"),
        "in_channels": lm.n_leads,
        "input": lm.input,
        "network_channels": lm.spec.get("in_channels"),
        "labels": lm.label_names,
        "n_params": int(sum(p.numel() for p in lm.model.parameters())),
        "fs": lm.fs,
        "crop_len": lm.crop_len,
        "stride": lm.stride,
        "aggregate": lm.aggregate,
        "scaler": lm.scaler.to_dict(),
    }


def quick_test_metrics(run_dir: Path, n_resamples: int = QUICK_RESAMPLES, seed: int = 0) -> dict[str, Any] | None:
    """Macro AUC with a bootstrap CI from ``predictions_test.csv`` (None without that file)."""
    from ..evaluation.bootstrap import bootstrap_metrics
    from ..predictions import load_predictions

    path = run_dir / "predictions_test.csv"
    if not path.exists():
        return None
    _, labels, y, p = load_predictions(path)
    if y.shape[0] == 0:
        return None
    b = bootstrap_metrics(y, p, n_resamples=n_resamples, seed=seed, include=("macro_auc",))
    return {
        "labels": labels,
        "y": y,
        "headline": b["headline"],
        "per_class_auc": b["per_class"]["auc"],
        "settings": b["settings"],
    }


def _model_context(model: dict[str, Any] | None) -> dict[str, Any] | None:
    """The network's facts as the card states them (None without ``model.pt``): the numbers are
    formatted here so the template only places them."""
    if not model:
        return None
    network_input = None
    if model["input"] != "time":  # say what the network sees after the input transform
        from ..signal import describe_input, transformed_shape

        c, t = transformed_shape(model["input"], model["fs"], model["in_channels"], model["crop_len"])
        network_input = {"description": describe_input(model["input"], model["fs"]), "channels": c, "length": t}
    sc = model["scaler"]
    return {
        "name": model["name"],
        "n_params": f"{model['n_params']:,}",
        "in_channels": model["in_channels"],
        "crop_len": model["crop_len"],
        "seconds": f"{model['crop_len'] / model['fs']:g}",
        "fs": f"{model['fs']:g}",
        "input": model["input"],
        "network_input": network_input,
        "stride": model["stride"],
        "aggregate": model["aggregate"],
        "mean": f"{sc['mean']:.6g}",
        "std": f"{sc['std']:.6g}",
    }


def _training_context(config: dict[str, Any], history: list[dict[str, Any]], env: dict[str, Any]) -> dict[str, Any]:
    """How the run was trained -- from scratch or fine-tuned, the recipe, its last epoch and the
    code -- each None when the file that records it is missing (the card then leaves it out)."""
    ft = config.get("finetune") or {}
    sched = config.get("schedule") or {}
    last = None
    if history:  # the epoch whose weights the run kept: the last, or (keep = best-val) the best validated
        keep = config.get("keep", "last")  # absent from config.json: "last"
        kept = kept_epoch(history, keep)
        row = next((r for r in history if r.get("epoch") == kept), history[-1])
        val = row.get("val_macro_auc")
        last = {
            "epoch": row.get("epoch"),
            "of": history[-1].get("epoch"),
            "best_val": keep == "best-val",
            "train_loss": f"{row.get('train_loss', float('nan')):.4f}",
            "val_macro_auc": None if val is None else f"{val:.4f}",
        }
    git, pk = env.get("git") or {}, env.get("packages") or {}
    code = (
        None
        if not env
        else {
            "commit": git.get("commit") or "unknown",
            "dirty": bool(git.get("dirty")),
            "torch": pk.get("torch"),
            "python": env.get("python"),
            "device": env.get("device"),
        }
    )
    return {
        "recorded": bool(config),
        "pretrained_run": ft.get("pretrained_run"),
        "policy": ft.get("policy"),
        "epochs": config.get("epochs"),
        "batch_size": config.get("batch_size"),
        "max_lr": sched.get("max_lr"),
        "seed": config.get("seed"),
        "last_epoch": last,
        "code": code,
    }


def _task_of(config: dict[str, Any]) -> dict[str, Any]:
    """``config.json``'s task with the data layer's defaults filled in (the folds it left out); a
    task that is not the data layer's (arrays passed directly) is shown as it is."""
    task = config.get("task") or {}
    if task:
        from ..datasets.task import task_settings
        from ..errors import ConfigError

        try:
            return task_settings(task)
        except ConfigError:
            pass
    return task


def _data_context(task: dict[str, Any], splits: dict[str, Any], fs: float | None) -> dict[str, Any]:
    """Where the records come from: dataset, folds, split sizes (train, val, test first) and the
    population of a known dataset."""
    folds = None
    if any(k in task for k in ("train_folds", "val_folds", "test_folds")):
        folds = {k: task.get(f"{k}_folds") for k in ("train", "val", "test")}
    order = [k for k in ("train", "val", "test") if k in splits] + [
        k for k in splits if k not in ("train", "val", "test")
    ]
    return {
        "recorded": bool(task),
        "dataset": task.get("dataset"),
        "root": task.get("root"),
        "fs": f"{fs:g}" if fs else None,
        "folds": folds,
        "split_sizes": [(k, f"{len(splits[k]):,}") for k in order],
    }


def _in_run_order(per_class: dict[str, Any], labels: list[str]) -> list[tuple[str, Any]]:
    """``metrics.json``'s per-class entries in the run's label order (the JSON file's keys are
    sorted), any label the run does not name after them."""
    order = [str(label) for label in labels if str(label) in per_class]
    return [(name, per_class[name]) for name in order + [k for k in per_class if k not in order]]


def _cell(entry: dict | None, n_resamples: int | None, level: float, n_pos: Any, n_neg: Any = None) -> str:
    """An interval with what makes it fragile beside it (:func:`..evaluation.caveats.interval_caveats`)."""
    return with_caveats(_fmt(entry), interval_caveats(entry, n_resamples, level, n_pos, n_neg))


def _flagged(per_class: list[dict[str, Any]], *cells: str) -> bool:
    """Whether a label's interval, or one of ``cells`` (the macro values), carries a caveat (the
    card then says what the mark means)."""
    return any(WARN in str(r.get(k, "")) for r in per_class for k in ("auc", "auprc")) or any(WARN in c for c in cells)


def _headline_rows(metrics: dict[str, Any], n_resamples: int | None, level: float) -> list[tuple[str, str]]:
    """(name, value [CI] and its caveats) per headline metric, the evaluation's own order first;
    Brier and ECE with 4 digits (they are small); the challenge metric with its scope note."""
    from ..evaluation.bootstrap import HEADLINE

    head = metrics.get("headline", {})
    rows: list[tuple[str, str]] = []
    for k in [k for k in HEADLINE if k in head] + [k for k in head if k not in HEADLINE]:
        why = interval_caveats(head[k], n_resamples, level)
        if k == "challenge":
            why = challenge_caveat(metrics.get("challenge")) + why
        rows.append(
            (str(_NAMES.get(k, k)), with_caveats(_fmt(head[k], 4 if k in ("brier", "ece", "ece_macro") else 3), why))
        )
    return rows


def _full_metrics(metrics: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    """``evaluation/metrics.json`` as the card's tables: the headline metrics and one row per label
    in the run's label order, each interval with its caveats beside it, and a line when the
    intervals come from plain resampling."""
    s = metrics.get("settings", {})
    n_resamples, level = s.get("n_resamples"), float(s.get("level", 0.95))
    per_class = [
        {
            "name": name,
            "n_pos": e.get("n_pos"),
            "auc": _cell(e.get("auc"), n_resamples, level, e.get("n_pos"), e.get("n_neg")),
            "auprc": _cell(e.get("auprc"), n_resamples, level, e.get("n_pos"), e.get("n_neg")),
        }
        for name, e in _in_run_order(metrics.get("per_class") or {}, labels or metrics.get("labels") or [])
    ]
    headline = _headline_rows(metrics, n_resamples, level)
    return {
        "n_records": metrics.get("n_records"),
        "level": f"{level:.0%}",
        "n_resamples": n_resamples,
        "seed": s.get("seed"),
        "resampling": resampling_caveat(s),
        "headline": headline,
        "left_out": list((metrics.get("classes_left_out") or {}).items()),
        "per_class": per_class,
        "few": [r["name"] for r in per_class if r["n_pos"] is not None and r["n_pos"] < FEW_TEST_POSITIVES],
        "flagged": _flagged(per_class, *(text for name, text in headline if "challenge" not in name)),
    }


def _quick_metrics(run_dir: Path, n_resamples: int, seed: int) -> dict[str, Any] | None:
    """Without ``metrics.json``: the macro AUC and per-label AUCs bootstrapped here from
    ``predictions_test.csv`` (None without test predictions), each with its caveats beside it."""
    quick = quick_test_metrics(run_dir, n_resamples, seed)
    if quick is None:
        return None
    s, y = quick["settings"], quick["y"]
    n_pos = [int(y[:, k].sum()) for k in range(y.shape[1])]
    per_class = [
        {
            "name": name,
            "n_pos": n_pos[k],
            "auc": _cell(quick["per_class_auc"][k], s["n_resamples"], s["level"], n_pos[k], y.shape[0] - n_pos[k]),
        }
        for k, name in enumerate(quick["labels"])
    ]
    macro = quick["headline"]["macro_auc"]
    macro_text = with_caveats(_fmt(macro), interval_caveats(macro, s["n_resamples"], s["level"]))
    return {
        "n_records": y.shape[0],
        "level": f"{s['level']:.0%}",
        "n_resamples": s["n_resamples"],
        "seed": s["seed"],
        "resampling": resampling_caveat(s),
        "macro_auc": macro_text,
        "per_class": per_class,
        "few": [r["name"] for r in per_class if r["n_pos"] < FEW_TEST_POSITIVES],
        "flagged": _flagged(per_class, macro_text),
    }


def _training_positives(run_dir: Path, labels: list[str]) -> dict[str, Any] | None:
    """Each label's positive training records (``label_counts.json``) and the labels learnt from
    fewer than :data:`FEW_TRAINING_POSITIVES` of them: with a small training set or share, many
    labels have a handful of examples or none, and their test AUCs are unreliable. None without
    the file; ``{"mismatch": True}`` when its labels are not the model's (the card says so rather
    than show a count beside another label)."""
    counts = (read_label_counts(run_dir) or {}).get("train")
    if counts is None:
        return None
    if labels and sorted(counts) != sorted(labels):
        return {"mismatch": True}
    few = few_training_labels(counts)
    return {"by_label": counts, "few": few, "none": sum(1 for n in counts.values() if n == 0), "of": len(counts)}


def _left_out_text(run_dir: Path) -> str | None:
    """How many records of the run's folds were left out for having none of the task's labels
    (``label_counts.json``; the PTB-XL benchmark's rule, which every split follows): the test
    population is then the records with at least one label, which a reader must be told. None when
    the run did not record it (arrays passed directly, runs written before) or nothing was left out."""
    recorded = read_left_out(run_dir)
    if recorded is None or not sum(recorded[0].values()):
        return None
    dropped, folds = recorded
    names = {"train": "training folds", "val": "validation folds", "test": "test folds"}
    splits = ", ".join(f"{names[k]} {dropped[k]}" for k in names if dropped.get(k))
    return (
        f"{sum(dropped.values())} of {sum(folds.values())} records of these folds carry none of the task's labels "
        f"and were left out ({splits}): every split, the test split included, holds only records with at "
        "least one of them."
    )


def _calibration_context(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """The evaluation's calibrators scored on test, uncalibrated first (None when not evaluated)."""
    cal = (metrics or {}).get("calibration")
    if not cal:
        return None
    rows = []
    for state in ["uncalibrated"] + sorted(k for k in cal if k != "uncalibrated"):
        e = cal.get(state)
        if isinstance(e, dict):
            d = e.get("max_auc_change")
            rows.append(
                {
                    "state": state,
                    "brier": _fmt(e.get("brier"), 4),
                    "ece": _fmt(e.get("ece"), 4),
                    "max_auc_change": "" if d is None else f"{d:.2g}",
                }
            )
    return {"n_val_records": cal.get("n_val_records"), "rows": rows}


def card_context(run_dir: str | Path, *, n_resamples: int = QUICK_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """Everything ``model_card.md.j2`` lays out, read from the run directory's files (kept apart
    from the rendering so a test can check the facts without parsing Markdown)."""
    from .._version import __version__

    run_dir = Path(run_dir)
    config = _read_json(run_dir / "config.json") or {}
    metrics = _read_json(run_dir / "evaluation" / "metrics.json")
    model = _model_facts(run_dir)
    task = _task_of(config)
    fs = (model or {}).get("fs", config.get("fs"))
    dataset = str((config.get("task") or {}).get("dataset") or "").lower() or None
    labels = (model or {}).get("labels") or (metrics or {}).get("labels") or []
    ssl = config.get("ssl") or {}
    return {
        "run": {
            "name": run_dir.resolve().name,
            "dir": str(run_dir),
            "version": __version__,
            "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
        "model": _model_context(model),
        "ssl_method": str(ssl.get("method")) if ssl else None,
        "training": _training_context(config, _history(run_dir), _read_json(run_dir / "environment.json") or {}),
        "data": _data_context(task, _read_json(run_dir / "splits.json") or {}, fs),
        "population": _POPULATION.get(dataset or ""),
        "left_out": _left_out_text(run_dir),
        "label_quality": _LABELS.get(dataset or ""),
        "label_set": task.get("labels", "unknown"),
        "labels": labels,
        "metrics": _full_metrics(metrics, [str(label) for label in labels]) if metrics else None,
        "quick": None if metrics else _quick_metrics(run_dir, n_resamples, seed),
        "few_test_positives": FEW_TEST_POSITIVES,
        "training_positives": _training_positives(run_dir, [str(label) for label in labels]),
        "few_training_positives": FEW_TRAINING_POSITIVES,
        "calibration": _calibration_context(metrics),
        "min_seconds": f"{(model or {}).get('crop_len', 0) / (fs or 1):g}",
        "n_leads": (model or {}).get("in_channels", 12),
    }


def model_card_text(run_dir: str | Path, *, n_resamples: int = QUICK_RESAMPLES, seed: int = 0) -> str:
    """The card's Markdown: :func:`card_context` laid out by the package's ``model_card.md.j2``
    (see :mod:`ecg_transfer.templates` for why Markdown is not HTML-escaped)."""
    from ..templates import render

    return render("model_card.md.j2", **card_context(run_dir, n_resamples=n_resamples, seed=seed))


def write_model_card(run_dir: str | Path, *, n_resamples: int = QUICK_RESAMPLES, seed: int = 0) -> Path:
    """Write ``RUN_DIR/MODEL_CARD.md`` (atomically) and return its path."""
    path = Path(run_dir) / MODEL_CARD
    atomic_write_text(path, model_card_text(run_dir, n_resamples=n_resamples, seed=seed))
    return path


def write_model_card_after_run(run_dir: str | Path) -> Path | None:
    """``ecg-transfer train``'s post-run step: a card that cannot be written is logged, never the end
    of a finished run."""
    try:
        return write_model_card(run_dir)
    except Exception as exc:  # the run's outputs are already safely written
        log.warning(
            "could not write %s in %s: %s (regenerate it with `ecg-transfer model-card %s`)",
            MODEL_CARD,
            run_dir,
            exc,
            run_dir,
            exc_info=True,
        )
        return None


__all__ = [
    "MODEL_CARD",
    "QUICK_RESAMPLES",
    "card_context",
    "model_card_text",
    "quick_test_metrics",
    "write_model_card",
    "write_model_card_after_run",
]
