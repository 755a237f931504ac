"""Small files of a run directory that the layers above training read: who owns the run (a
study's run store, or the user) and how many positive records each label had per split.

At the bottom of the package so that any command that writes into a run directory (``evaluate``,
``model-card``) can ask before it overwrites what a study relies on, without importing the study
layer above it, and so that the model card and the benchmarks read the label counts without
importing training. The study store (``study.store``) and the training run (``training.run``)
write these files; this module only reads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

#: A study run's definition (written by the run store) and the study's own description.
DEFINITION_FILE = "definition.json"
STUDY_FILE = "study.json"
#: Per label, its positive records in each split (written by ``training.run`` when a run starts).
LABEL_COUNTS_FILE = "label_counts.json"
#: A label learnt from fewer positive training records than this is flagged (its test AUC near
#: chance is expected): by ``ecg-transfer train`` when it starts, the model card and the benchmarks.
FEW_TRAINING_POSITIVES = 10


def read_label_counts(run_dir: str | Path) -> dict[str, dict[str, int]] | None:
    """``{split: {label: positives}}`` from the run's ``label_counts.json``; None where the run has
    none (a self-supervised run, or one trained before the file was written) or it is unreadable."""
    try:
        data = json.loads((Path(run_dir) / LABEL_COUNTS_FILE).read_text(encoding="utf-8"))
        labels = [str(name) for name in data["labels"]]
        positives = {split: [int(n) for n in counts] for split, counts in data["positives"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if len(set(labels)) != len(labels) or any(len(counts) != len(labels) for counts in positives.values()):
        return None  # a count per label or nothing: never a count beside the wrong label
    return {split: dict(zip(labels, counts)) for split, counts in positives.items()}


def read_left_out(run_dir: str | Path) -> tuple[dict[str, int], dict[str, int]] | None:
    """``(dropped_unlabelled, fold_records)`` from ``label_counts.json``: per split, the records of
    its folds left out for having none of the task's labels, and its folds' records before that
    rule. None where the run did not record them (arrays passed directly, runs written before)."""
    try:
        data = json.loads((Path(run_dir) / LABEL_COUNTS_FILE).read_text(encoding="utf-8"))
        dropped = {str(k): int(v) for k, v in data["dropped_unlabelled"].items()}
        folds = {str(k): int(v) for k, v in data["fold_records"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return dropped, folds


def few_training_labels(train_counts: Mapping[str, int]) -> list[str]:
    """The labels learnt from fewer than :data:`FEW_TRAINING_POSITIVES` positive training records
    (``{label: positives}``, e.g. :func:`read_label_counts`'s ``"train"``): the one rule every
    reader of the counts applies."""
    return [name for name, n in train_counts.items() if n < FEW_TRAINING_POSITIVES]


def study_run_info(run_dir: str | Path) -> dict[str, Any] | None:
    """``{"study_dir", "key", "name"}`` when ``run_dir`` is a run of a study's store
    (``STUDY_DIR/runs/<key>/definition.json`` beside ``STUDY_DIR/study.json``), else None."""
    d = Path(run_dir)
    if not (d / DEFINITION_FILE).is_file() or d.parent.name != "runs" or not (d.parent.parent / STUDY_FILE).is_file():
        return None
    try:
        definition = json.loads((d / DEFINITION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        definition = {}
    return {"study_dir": d.parent.parent, "key": d.name, "name": definition.get("name", d.name)}


__all__ = [
    "DEFINITION_FILE",
    "FEW_TRAINING_POSITIVES",
    "LABEL_COUNTS_FILE",
    "STUDY_FILE",
    "few_training_labels",
    "read_label_counts",
    "read_left_out",
    "study_run_info",
]
