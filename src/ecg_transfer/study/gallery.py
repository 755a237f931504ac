"""The report's gallery: why the headline's fine-tuned network decided, on a few of its test records.

For the labels with most positives in the test split of the headline's first fine-tuned run
(primary protocol, first seed), two records each, from the run's saved predictions at the 0.5
threshold (uncalibrated probabilities):

* **correct**: the positive record the network is most sure of (a true positive when p >= 0.5);
* **wrong**: the positive it is least sure of when that one is missed (p < 0.5), else the negative
  it is most sure of when that one is a false alarm (p >= 0.5); no wrong example when neither.

Each record is explained for its label with integrated gradients
(:func:`ecg_transfer.inference.explain.explain_record`) and written as a PNG of the leads with the
attribution shaded plus the numbers as JSON into ``STUDY_DIR/explain/``; ``explain/gallery.json``
lists them for the report, which reads only those files. Needs captum (``pip install
'ecg-transfer[explain]'``); without it the study says so and the report has no gallery.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

GALLERY_DIR = "explain"
GALLERY_FILE = "gallery.json"
THRESHOLD = 0.5


def pick_examples(y_true: np.ndarray, probs: np.ndarray, labels: list[str], k_labels: int = 3) -> list[dict[str, Any]]:
    """``(label, row, kind, probability)`` choices, as dicts, for the ``k_labels`` labels with most
    test positives (see the module docstring); rows index the prediction file's records."""
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    n_pos = y_true.sum(axis=0)
    order = [int(k) for k in np.argsort(-n_pos, kind="stable") if n_pos[k] > 0][:k_labels]
    out = []
    for k in order:
        pos, neg = np.flatnonzero(y_true[:, k] == 1), np.flatnonzero(y_true[:, k] == 0)
        best = int(pos[np.argmax(probs[pos, k])])
        out.append(
            {
                "label": labels[k],
                "n_pos": int(n_pos[k]),
                "row": best,
                "probability": float(probs[best, k]),
                "kind": "true positive" if probs[best, k] >= THRESHOLD else "positive (most probable, missed)",
                "example": "correct",
            }
        )
        worst = int(pos[np.argmin(probs[pos, k])])
        alarm = int(neg[np.argmax(probs[neg, k])]) if neg.size else None
        if probs[worst, k] < THRESHOLD and worst != best:
            out.append(
                {
                    "label": labels[k],
                    "n_pos": int(n_pos[k]),
                    "row": worst,
                    "example": "wrong",
                    "probability": float(probs[worst, k]),
                    "kind": "missed positive",
                }
            )
        elif alarm is not None and probs[alarm, k] >= THRESHOLD:
            out.append(
                {
                    "label": labels[k],
                    "n_pos": int(n_pos[k]),
                    "row": alarm,
                    "example": "wrong",
                    "probability": float(probs[alarm, k]),
                    "kind": "false alarm",
                }
            )
    return out


def gallery_run(plan_runs: list[dict[str, Any]], protocol: str, seed: int) -> str | None:
    """The key of the headline's fine-tuned run of ``protocol`` and ``seed`` in ``plan.json``'s runs."""
    for r in plan_runs:
        for u in r["uses"]:
            if (u.get("experiment"), u.get("arm"), u.get("protocol"), u.get("seed")) == (
                "headline",
                "finetuned",
                protocol,
                seed,
            ):
                return str(r["key"])
    return None


def _headline_run(study_dir: Path) -> tuple[str, int, Path | None]:
    """(primary protocol, first seed, the run directory of their headline fine-tuned run or None)."""
    study = json.loads((study_dir / "study.json").read_text(encoding="utf-8"))["resolved"]["study"]
    runs = json.loads((study_dir / "plan.json").read_text(encoding="utf-8"))["runs"]
    protocol, seed = study["protocols"][0], study["seeds"][0]
    key = gallery_run(runs, protocol, seed)
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
    from ..inference.explain import explain_record, write_explanation
    from ..predictions import load_predictions
    from ..training.modelfile import load_model_file

    study_dir = Path(study_dir)
    protocol, seed, run_dir = _headline_run(study_dir)
    if run_dir is None or not (run_dir / "predictions_test.csv").exists():
        return None
    record_ids, labels, y_true, probs = load_predictions(run_dir / "predictions_test.csv")
    picks = pick_examples(y_true, probs, list(labels), k_labels)
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    data = load_task(config["task"], config["fs"], progress=False)
    where = {str(r): i for i, r in enumerate(data.record_ids)}
    loaded = load_model_file(run_dir)
    leads = list(data.X.leads) if data.X.leads else [f"lead {i + 1}" for i in range(loaded.n_leads)]
    out = study_dir / GALLERY_DIR
    by_record: dict[str, list[dict[str, Any]]] = {}
    for i, pick in enumerate(picks):  # one explanation file per record, holding each of its labels
        by_record.setdefault(str(record_ids[pick["row"]]), []).append({**pick, "order": i})
    entries = []
    for record, its_picks in by_record.items():
        signal = np.array(data.X.record(where[record]), dtype=np.float32)  # a copy: the cache is read-only
        if signal.shape[1] < loaded.crop_len:  # target runs pad short records, as they were predicted
            signal = np.pad(signal, ((0, 0), (0, loaded.crop_len - signal.shape[1])))
        explained = explain_record(loaded, signal, [p["label"] for p in its_picks], method="ig", steps=steps)
        json_path, *pngs = write_explanation(out, record, signal, loaded.fs, leads, explained)
        for pick, e, png in zip(its_picks, explained, pngs):
            entries.append(
                {
                    **{k: v for k, v in pick.items() if k != "row"},
                    "record": record,
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
            "threshold": THRESHOLD,
            "n_test": int(len(record_ids)),
            "entries": entries,
        },
    )
    return path


__all__ = [
    "GALLERY_DIR",
    "GALLERY_FILE",
    "THRESHOLD",
    "gallery_needed",
    "gallery_run",
    "pick_examples",
    "write_gallery",
]
