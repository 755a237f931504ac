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

log = logging.getLogger(__name__)

MODEL_CARD = "MODEL_CARD.md"
QUICK_RESAMPLES = 200
FEW_POSITIVES = 10  # fewer test positives than this: the class's metrics are flagged as unreliable

_NAMES = {"macro_auc": "macro AUC", "macro_auprc": "macro AUPRC", "f_max": "F-max", "brier": "Brier score",
          "ece": "ECE (pooled)", "ece_macro": "ECE (macro)", "challenge": "challenge metric"}

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
    return {"name": lm.spec.get("name"), "in_channels": lm.n_leads, "input": lm.input,
            "network_channels": lm.spec.get("in_channels"), "labels": lm.label_names,
            "n_params": int(sum(p.numel() for p in lm.model.parameters())), "fs": lm.fs, "crop_len": lm.crop_len,
            "stride": lm.stride, "aggregate": lm.aggregate, "scaler": lm.scaler.to_dict()}


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
    return {"labels": labels, "y": y, "headline": b["headline"], "per_class_auc": b["per_class"]["auc"],
            "settings": b["settings"]}


def model_card_text(run_dir: str | Path, *, n_resamples: int = QUICK_RESAMPLES, seed: int = 0) -> str:
    """The card's Markdown (see the module docstring)."""
    from .. import __version__

    run_dir = Path(run_dir)
    config = _read_json(run_dir / "config.json") or {}
    task = config.get("task") or {}
    splits = _read_json(run_dir / "splits.json") or {}
    env = _read_json(run_dir / "environment.json") or {}
    metrics = _read_json(run_dir / "evaluation" / "metrics.json")
    model = _model_facts(run_dir)
    history = _history(run_dir)
    dataset = str(task.get("dataset") or "").lower() or None
    fs = (model or {}).get("fs", config.get("fs"))
    L: list[str] = []
    add = L.append

    add(f"# Model card: {run_dir.resolve().name}")
    add("")
    add(f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} by ecg-transfer {__version__} from "
        f"the run directory `{run_dir}`. Regenerate with `ecg-transfer model-card {run_dir}` "
        f"(after `ecg-transfer evaluate {run_dir}` it quotes the full evaluation).")
    add("")

    # -- model ------------------------------------------------------------------------------
    add("## Model")
    add("")
    if model:
        add(f"- Architecture: `{model['name']}`, {model['n_params']:,} parameters; input {model['in_channels']} leads "
            f"x {model['crop_len']} samples ({model['crop_len'] / model['fs']:g} s at {model['fs']:g} Hz).")
        if model["input"] != "time":
            from ..signal import describe_input, transformed_shape

            c, t = transformed_shape(model["input"], model["fs"], model["in_channels"], model["crop_len"])
            add(f"- Network input (`input = \"{model['input']}\"`): {describe_input(model['input'], model['fs'])}; "
                f"{c} channels x {t}.")
        add(f"- Prediction: windows of {model['crop_len']} samples every {model['stride']} samples, per-window "
            f"sigmoid probabilities aggregated per record by their {model['aggregate']}.")
        sc = model["scaler"]
        add(f"- Input scaling: one global mean {sc['mean']:.6g} mV and standard deviation {sc['std']:.6g} mV, "
            "fitted on the training records only.")
    else:
        add("- No `model.pt` in the run directory (the run did not finish?).")
    ssl = config.get("ssl") or {}
    if ssl:
        add(f"- Self-supervised encoder (`[ssl] method = \"{ssl.get('method')}\"`): its classification head is an "
            "untrained placeholder, so it predicts no labels. Fine-tune it: "
            f"`ecg-transfer finetune CONFIG --from {run_dir}`.")
    ft = config.get("finetune") or {}
    if ft.get("pretrained_run"):
        add(f"- Training: fine-tuned from `{ft['pretrained_run']}` (policy `{ft.get('policy')}`).")
    elif config:
        add("- Training: from random weights.")
    if config:
        sched = config.get("schedule") or {}
        add(f"- Recipe: epochs {config.get('epochs')} (fine-tuning stages may set their own), batch {config.get('batch_size')}, "
            f"AdamW, one-cycle max lr {sched.get('max_lr')}, seed {config.get('seed')}.")
    if history:
        last = history[-1]
        val = last.get("val_macro_auc")
        add(f"- Last epoch ({last.get('epoch')}): train loss {last.get('train_loss', float('nan')):.4f}"
            + (f", validation macro AUC {val:.4f}" if val is not None else "") + ".")
    git = env.get("git") or {}
    pk = env.get("packages") or {}
    if env:
        add(f"- Code: commit {git.get('commit') or 'unknown'}{' (uncommitted changes)' if git.get('dirty') else ''}; "
            f"torch {pk.get('torch')}, python {env.get('python')}; trained on {env.get('device')}.")
    add("")

    # -- data -------------------------------------------------------------------------------
    add("## Data")
    add("")
    if task:
        from ..datasets.task import task_settings
        from ..errors import ConfigError

        try:  # fill in the folds and other defaults the config left out
            task = task_settings(task)
        except ConfigError:  # not a data-layer task (arrays passed directly): show what it says
            pass
        add(f"- Dataset: `{task.get('dataset')}` at `{task.get('root')}`"
            + (f", resampled to {fs:g} Hz." if fs else "."))
        if any(k in task for k in ("train_folds", "val_folds", "test_folds")):
            add(f"- Folds: train {task.get('train_folds')}, validation {task.get('val_folds')}, test "
                f"{task.get('test_folds')}.")
    else:
        add(f"- Dataset: not recorded in config.json (arrays passed directly){f'; {fs:g} Hz' if fs else ''}.")
    if splits:
        order = [k for k in ("train", "val", "test") if k in splits] + [k for k in splits if k not in ("train", "val", "test")]
        add("- Records per split: " + ", ".join(f"{k} {len(splits[k]):,}" for k in order) + ".")
    if dataset in _POPULATION:
        add(f"- Population: {_POPULATION[dataset]}")
    add("")

    # -- labels and task ---------------------------------------------------------------------
    labels = (model or {}).get("labels") or (metrics or {}).get("labels") or []
    add("## Task and labels")
    add("")
    if ssl:
        add("- Task: none (self-supervised pre-training on the signals of the training folds, labelled or not; "
            "its SSL loss per epoch is in `metrics.jsonl`).")
    else:
        add(f"- Task: multi-label classification, one independent probability per label; label set "
            f"`{task.get('labels', 'unknown')}`" + (f", {len(labels)} labels." if labels else "."))
    if labels:
        add(f"- Labels, in output order: {', '.join(f'`{l}`' for l in labels)}.")
    add("")

    # -- metrics ----------------------------------------------------------------------------
    add("## Metrics (test split)")
    add("")
    quick = None
    few: list[str] = []
    if metrics:
        s = metrics.get("settings", {})
        add(f"From `evaluation/metrics.json`: {metrics.get('n_records')} test records; {s.get('level', 0.95):.0%} "
            f"percentile bootstrap intervals, {s.get('n_resamples')} resamples (seed {s.get('seed')}).")
        add("")
        add("| metric | value [CI] |")
        add("|---|---|")
        from ..evaluation.bootstrap import HEADLINE

        head = metrics.get("headline", {})
        for key in [k for k in HEADLINE if k in head] + [k for k in head if k not in HEADLINE]:
            entry = head[key]
            add(f"| {_NAMES.get(key, key)} | {_fmt(entry, 4 if key in ('brier', 'ece', 'ece_macro') else 3)} |")
        left = metrics.get("classes_left_out") or {}
        if left:
            add("")
            add("Left out of the macro averages: " + "; ".join(f"`{k}` ({v})" for k, v in left.items()) + ".")
        add("")
        add("| label | test positives | AUC [CI] | AUPRC [CI] |")
        add("|---|---|---|---|")
        for name, e in (metrics.get("per_class") or {}).items():
            add(f"| `{name}` | {e.get('n_pos')} | {_fmt(e.get('auc'))} | {_fmt(e.get('auprc'))} |")
            if e.get("n_pos") is not None and e["n_pos"] < FEW_POSITIVES:
                few.append(name)
    else:
        quick = quick_test_metrics(run_dir, n_resamples, seed)
        if quick is None:
            add("No test predictions (`predictions_test.csv`): nothing measured on held-out data.")
        else:
            s = quick["settings"]
            n = quick["y"].shape[0]
            add(f"Computed for this card from `predictions_test.csv` ({n} records): macro AUC with a "
                f"{s['level']:.0%} percentile bootstrap interval, {s['n_resamples']} resamples (seed {s['seed']}). "
                f"For every metric (AUPRC, F-max, Brier, ECE, challenge metric) with 1000 resamples run "
                f"`ecg-transfer evaluate {run_dir}`, then regenerate this card.")
            add("")
            add(f"- macro AUC: {_fmt(quick['headline']['macro_auc'])}")
            add("")
            add("| label | test positives | AUC [CI] |")
            add("|---|---|---|")
            for k, name in enumerate(quick["labels"]):
                n_pos = int(quick["y"][:, k].sum())
                add(f"| `{name}` | {n_pos} | {_fmt(quick['per_class_auc'][k])} |")
                if n_pos < FEW_POSITIVES:
                    few.append(name)
    if few:
        add("")
        add(f"Fewer than {FEW_POSITIVES} test positives (their intervals are wide, their values fragile): "
            + ", ".join(f"`{l}`" for l in few) + ".")
    add("")

    # -- calibration ------------------------------------------------------------------------
    add("## Calibration")
    add("")
    cal = (metrics or {}).get("calibration")
    if cal:
        add(f"Calibrators fitted on the {cal.get('n_val_records')} validation records, scored on test "
            f"(Brier and pooled ECE with bootstrap intervals; max |dAUC| is the largest change of a class's AUC):")
        add("")
        add("| state | Brier [CI] | ECE [CI] | max abs dAUC |")
        add("|---|---|---|---|")
        for state in ["uncalibrated"] + sorted(k for k in cal if k != "uncalibrated"):
            e = cal.get(state)
            if isinstance(e, dict):
                d = e.get("max_auc_change")
                add(f"| {state} | {_fmt(e.get('brier'), 4)} | {_fmt(e.get('ece'), 4)} | {'' if d is None else f'{d:.2g}'} |")
        add("")
        add("Use a calibrator at prediction time with `ecg-transfer predict RUN_DIR ... --calibrate METHOD`.")
    else:
        add("Not evaluated. The probabilities are the network's raw sigmoid outputs and are not known to be "
            f"calibrated; fit and score calibrators on the validation split with `ecg-transfer evaluate {run_dir} "
            "--calibrate all`.")
    add("")

    # -- intended use and limits ------------------------------------------------------------
    add("## Intended use")
    add("")
    add("- Research use only: reproducing and studying transfer learning on 12-lead ECGs. **Not a medical "
        "device**: not cleared or approved for any clinical use, and not to be used for diagnosis, triage or "
        "treatment decisions.")
    n_in = (model or {}).get("in_channels", 12)
    add(f"- Input: resting {n_in}-lead ECGs in millivolts, at least {(model or {}).get('crop_len', 0) / (fs or 1):g} s "
        f"long; other rates are resampled to {fs:g} Hz. `ecg-transfer predict` reorders leads by name and refuses "
        "records that lack one." if fs else "- Input: resting 12-lead ECGs in millivolts.")
    add("- Decisions need thresholds: `ecg-transfer predict --threshold fmax|sensitivity:S|NUMBER` chooses them "
        "on the validation split; they were not checked on an independent set.")
    add("")
    add("## Limitations")
    add("")
    if dataset in _POPULATION:
        add(f"- Trained population: {_POPULATION[dataset]} Performance on other populations, hospitals, "
            "devices or filters is unknown.")
    else:
        add("- Trained population: see the dataset's documentation; performance elsewhere is unknown.")
    add(f"- Label quality: {_LABELS.get(dataset, 'labels come from the dataset as published and may be noisy or incomplete.')}")
    add("- Not validated: prospective use; subgroups (age, sex, ethnicity, pacemakers, children); other sampling "
        "rates than the training one beyond resampling; noisy or partial recordings; records shorter than one "
        "window; the decision thresholds on data other than the validation split.")
    add("- Test-set metrics describe one split of one dataset; the bootstrap intervals cover the sampling of "
        "test records, not the variation between training seeds.")
    add("")
    return "\n".join(L)


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
        log.warning("could not write %s in %s: %s (regenerate it with `ecg-transfer model-card %s`)",
                    MODEL_CARD, run_dir, exc, run_dir, exc_info=True)
        return None


__all__ = ["MODEL_CARD", "QUICK_RESAMPLES", "model_card_text", "quick_test_metrics", "write_model_card",
           "write_model_card_after_run"]
