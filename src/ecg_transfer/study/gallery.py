"""The report's gallery: why the headline's fine-tuned network decided, on a few of its test records.

For the labels with most positives in the test split of the headline's first fine-tuned run
(primary protocol, first seed), two records each, from the run's saved predictions (uncalibrated
probabilities), decided as ``ecg-transfer predict`` decides by default: ``p >= threshold`` with each
label's validation-F1-maximising threshold (``fmax``, :mod:`ecg_transfer.inference.thresholds`,
fitted on the run's ``predictions_val.csv``); 0.5 when the run has no validation predictions. Each
entry records its label's threshold and the rule (``threshold``, ``threshold_rule``):

* **correct**: the positive record the network is most sure of, when it is a true positive
  (p >= threshold); no correct example when no positive reaches the threshold;
* **wrong**: the positive it is least sure of when that one is missed (p < threshold), else the
  negative it is most sure of when that one is a false alarm (p >= threshold); no wrong example
  when neither.

Each record is explained for its label with integrated gradients
(:func:`ecg_transfer.inference.explain.explain_record`) and written as a PNG of the leads with the
attribution shaded plus the numbers as JSON into ``STUDY_DIR/explain/``; ``explain/gallery.json``
lists them for the report, which reads only those files. Needs captum (``pip install
'ecg-transfer[explain]'``); without it :func:`write_gallery` raises an ImportError before loading
anything, the study says so and the report has no gallery.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .lengths import choose, run_val_macro_auc, slot, use_factors
from .store import RunStore

GALLERY_DIR = "explain"
GALLERY_FILE = "gallery.json"
#: The threshold of a run without validation predictions (and of :func:`pick_examples` without one).
THRESHOLD = 0.5
#: The decision rule of ``ecg-transfer predict`` by default, used where the run's validation allows.
THRESHOLD_RULE = "fmax"


def pick_examples(
    y_true: np.ndarray, probs: np.ndarray, labels: list[str], k_labels: int = 3, thresholds: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """``(label, row, kind, probability, threshold)`` choices, as dicts, for the ``k_labels`` labels
    with most test positives (see the module docstring); rows index the prediction file's records.
    ``thresholds``: one per label (default :data:`THRESHOLD` for all)."""
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    t = np.full(probs.shape[1], THRESHOLD) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    n_pos = y_true.sum(axis=0)
    order = [int(k) for k in np.argsort(-n_pos, kind="stable") if n_pos[k] > 0][:k_labels]
    out = []
    for k in order:
        pos, neg = np.flatnonzero(y_true[:, k] == 1), np.flatnonzero(y_true[:, k] == 0)

        def entry(row: int, example: str, kind: str, k: int = k) -> dict[str, Any]:
            return {
                "label": labels[k],
                "n_pos": int(n_pos[k]),
                "row": row,
                "example": example,
                "probability": float(probs[row, k]),
                "threshold": float(t[k]),
                "kind": kind,
            }

        best = int(pos[np.argmax(probs[pos, k])])
        if probs[best, k] >= t[k]:
            out.append(entry(best, "correct", "true positive"))
        worst = int(pos[np.argmin(probs[pos, k])])
        alarm = int(neg[np.argmax(probs[neg, k])]) if neg.size else None
        if probs[worst, k] < t[k]:
            out.append(entry(worst, "wrong", "missed positive"))
        elif alarm is not None and probs[alarm, k] >= t[k]:
            out.append(entry(alarm, "wrong", "false alarm"))
    return out


def run_decision_thresholds(run_dir: Path, labels: list[str]) -> tuple[np.ndarray, str, str]:
    """Per label, the threshold ``ecg-transfer predict`` decides the run's uncalibrated probabilities
    at by default (:data:`THRESHOLD_RULE` fitted on ``predictions_val.csv``); :data:`THRESHOLD` for
    every label when the run has no validation predictions. Also the rule's name and a line on how
    the thresholds were chosen."""
    from ..inference.thresholds import run_thresholds

    if not (run_dir / "predictions_val.csv").exists():
        return np.full(len(labels), THRESHOLD), "fixed", f"{THRESHOLD:g} (the run has no validation predictions)"
    thr = run_thresholds(run_dir, THRESHOLD_RULE, labels)
    unfitted = f"; {'; '.join(thr.notes)}" if thr.notes else ""
    line = f"{thr.rule}: each label's validation-F1-maximising threshold ({thr.fitted_on}){unfitted}"
    return thr.values, thr.rule, line


def gallery_run(
    plan_runs: list[dict[str, Any]],
    protocol: str,
    seed: int,
    done: Callable[[str], bool],
    val_score: Callable[[str], float | None],
) -> str | None:
    """The key of the headline's fine-tuned run of ``protocol`` and ``seed`` in ``plan.json``'s
    runs: of its training lengths and rates, the one the results take (:func:`.lengths.choose` over
    the comparison's candidates, :func:`.lengths.slot`; ``done`` and ``val_score`` say which runs
    finished and their validation AUC)."""
    want = ("headline", "finetuned", protocol, seed)
    candidates = [
        (slot(str(r["key"]), u), (str(r["key"]), *use_factors(u)))
        for r in plan_runs
        for u in r["uses"]
        if (u.get("experiment"), u.get("arm"), u.get("protocol"), u.get("seed")) == want
    ]
    if not candidates:
        return None
    first = [candidate for name, candidate in candidates if name == candidates[0][0]]
    return choose(first, done, val_score).key


def _headline_run(study_dir: Path) -> tuple[str, int, Path | None]:
    """(primary protocol, first seed, the run directory of their headline fine-tuned run or None)."""
    study = json.loads((study_dir / "study.json").read_text(encoding="utf-8"))["resolved"]["study"]
    runs = json.loads((study_dir / "plan.json").read_text(encoding="utf-8"))["runs"]
    protocol, seed = study["protocols"][0], study["seeds"][0]
    store = RunStore(study_dir)
    key = gallery_run(
        runs,
        protocol,
        seed,
        done=lambda k: store.state(k)["state"] == "done",
        val_score=lambda k: run_val_macro_auc(store.run_dir(k)),
    )
    return protocol, seed, None if key is None else study_dir / "runs" / key


def gallery_needed(study_dir: str | Path) -> bool:
    """Whether the gallery is missing or older than its run's test predictions (and the run has them)."""
    study_dir = Path(study_dir)
    run_dir = _headline_run(study_dir)[2]
    if run_dir is None or not (run_dir / "predictions_test.csv").exists():
        return False
    path = study_dir / GALLERY_DIR / GALLERY_FILE
    try:
        made = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    return (
        made.get("run") != f"runs/{run_dir.name}"
        or path.stat().st_mtime_ns < (run_dir / "predictions_test.csv").stat().st_mtime_ns
    )


def write_gallery(study_dir: str | Path, *, k_labels: int = 3, steps: int = 32) -> Path | None:
    """Explain the picked test records of the headline's first fine-tuned run and write
    ``explain/gallery.json``; None when that run has no test predictions yet."""
    from ..atomic import atomic_write_json
    from ..datasets.task import load_task
    from ..inference.explain import AttributionError, explain_record, explanation_context, file_stems
    from ..inference.explain import require_captum, write_explanation
    from ..predictions import load_predictions
    from ..training.modelfile import load_model_file

    require_captum()  # an ImportError before the task and the model are loaded for nothing
    study_dir = Path(study_dir)
    protocol, seed, run_dir = _headline_run(study_dir)
    if run_dir is None or not (run_dir / "predictions_test.csv").exists():
        return None
    record_ids, labels, y_true, probs = load_predictions(run_dir / "predictions_test.csv")
    thresholds, rule, rule_line = run_decision_thresholds(run_dir, list(labels))
    picks = pick_examples(y_true, probs, list(labels), k_labels, thresholds)
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    data = load_task(config["task"], config["fs"], progress=False)
    where = {str(r): i for i, r in enumerate(data.record_ids)}
    loaded = load_model_file(run_dir)
    leads = list(data.X.leads) if data.X.leads else [f"lead {i + 1}" for i in range(loaded.n_leads)]
    out = study_dir / GALLERY_DIR
    by_record: dict[str, list[dict[str, Any]]] = {}
    for i, pick in enumerate(picks):  # one explanation file per record, holding each of its labels
        by_record.setdefault(str(record_ids[pick["row"]]), []).append({**pick, "order": i})
    entries, skipped = [], []
    context = explanation_context(loaded, run_dir=f"runs/{run_dir.name}")
    for (record, its_picks), stem in zip(by_record.items(), file_stems(list(by_record))):
        signal = np.array(data.X.record(where[record]), dtype=np.float32)  # a copy: the cache is read-only
        if signal.shape[1] < loaded.crop_len:  # target runs pad short records, as they were predicted
            signal = np.pad(signal, ((0, 0), (0, loaded.crop_len - signal.shape[1])))
        try:
            explained = explain_record(loaded, signal, [p["label"] for p in its_picks], method="ig", steps=steps)
        except AttributionError as exc:  # never a NaN in the report; the other records are still shown
            skipped.append({"record": record, "problem": str(exc)})
            continue
        json_path, *pngs = write_explanation(
            out, record, signal, loaded.fs, leads, explained, stem=stem, context=context
        )
        for pick, e, png in zip(its_picks, explained, pngs):
            entries.append(
                {
                    **{k: v for k, v in pick.items() if k != "row"},
                    "record": record,
                    "threshold_rule": rule,
                    "png": str(png.relative_to(study_dir)),
                    "json": str(json_path.relative_to(study_dir)),
                    "convergence_delta": e.convergence_delta,
                }
            )
    entries.sort(key=lambda e: e.pop("order"))  # the picks' order: label by label, correct first
    path = out / GALLERY_FILE
    atomic_write_json(
        path,
        {
            "run": f"runs/{run_dir.name}",
            "protocol": protocol,
            "seed": seed,
            "method": "integrated gradients",
            "threshold": _threshold_text(entries, rule),
            "threshold_rule": rule_line,
            "n_test": int(len(record_ids)),
            "entries": entries,
            "skipped": skipped,
        },
    )
    return path


def _threshold_text(entries: list[dict[str, Any]], rule: str) -> str:
    """The shown labels' thresholds in a few words, e.g. ``"0.5"`` or ``"each label's fmax
    threshold (AF 0.31, SR 0.47)"`` (the report's lead quotes it)."""
    per_label = {e["label"]: e["threshold"] for e in entries}
    if rule == "fixed":
        return f"{THRESHOLD:g}"
    return f"each label's {rule} threshold (" + ", ".join(f"{l} {v:.2f}" for l, v in per_label.items()) + ")"


__all__ = [
    "GALLERY_DIR",
    "GALLERY_FILE",
    "THRESHOLD",
    "THRESHOLD_RULE",
    "gallery_needed",
    "gallery_run",
    "pick_examples",
    "run_decision_thresholds",
    "write_gallery",
]
