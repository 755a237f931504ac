"""From a run config's ``[task]`` table to the arrays the training engine takes.

This is the step between the cache and training: open the dataset, open (or build) its cache at
the run's sampling rate, label the records (a PTB-XL task or a label protocol), drop records
without a label, and split them into train / validation / test by fold. Example::

    [task]
    dataset = "ptbxl"              # ptbxl | cinc
    root = "data/ptbxl"
    labels = "diagnostic"          # a PTB-XL task, or "protocol:seed18" / "protocol:cinc2020"
    min_likelihood = 50            # optional (PTB-XL): keep statements with likelihood >= 50
    min_count = 10                 # optional: drop classes with fewer positives
    source_fs = 100                # PTB-XL: read records100 (100) or records500 (500)
    train_folds = [1, 2, 3, 4, 5, 6, 7, 8]
    val_folds = [9]                # tune here
    test_folds = [10]              # report here, never tune

CinC-format sets have no folds of their own: they get ``n_folds`` seeded, multilabel-stratified
folds (``fold_seed``), made on the ``cinc2020`` protocol with identical signals kept together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .cache import CachedSignals, load_or_build
from .registry import DATASET_NAMES, open_dataset
from .splits import record_folds

_DEFAULTS: dict[str, Any] = {
    "dataset": None,
    "root": None,
    "labels": None,
    "source_fs": None,
    "allow_missing": False,
    "cache_dir": None,
    "seconds": None,
    "min_count": 0,
    "min_likelihood": None,
    "train_folds": [1, 2, 3, 4, 5, 6, 7, 8],
    "val_folds": [9],
    "test_folds": [10],
    "n_folds": 10,
    "fold_seed": 0,
}


@dataclass
class TaskData:
    """Everything ``train_run`` needs, plus the table the rows came from."""

    X: np.ndarray
    Y: np.ndarray
    record_ids: list[str]
    label_names: list[str]
    splits: dict[str, np.ndarray]  # rows of X per split
    lengths: np.ndarray
    table: pd.DataFrame
    cache: CachedSignals


def task_settings(task: Mapping[str, Any]) -> dict[str, Any]:
    """``task`` with defaults filled in; a wrong key or value raises ConfigError naming it."""
    unknown = sorted(set(task) - set(_DEFAULTS))
    if unknown:
        raise ConfigError(f"task.{unknown[0]}: unknown key; allowed: {', '.join(sorted(_DEFAULTS))}")
    s = {**_DEFAULTS, **task}
    for key in ("dataset", "root", "labels"):
        if not s[key]:
            raise ConfigError(f"task.{key} is required")
    if s["dataset"] not in DATASET_NAMES + ("g12ec",):
        raise ConfigError(f"task.dataset: {s['dataset']!r} is not one of {', '.join(DATASET_NAMES)}")
    for key in ("train_folds", "val_folds", "test_folds"):
        if not isinstance(s[key], (list, tuple)) or not all(isinstance(f, int) for f in s[key]):
            raise ConfigError(f"task.{key}: must be a list of fold numbers, got {s[key]!r}")
    folds = [set(s["train_folds"]), set(s["val_folds"]), set(s["test_folds"])]
    if folds[0] & folds[1] or folds[0] & folds[2] or folds[1] & folds[2]:
        raise ConfigError("task.train_folds / val_folds / test_folds must not overlap")
    return s


def _labels(
    adapter, table: pd.DataFrame, labels: str, min_count: int, min_likelihood: float | None
) -> tuple[list[str], np.ndarray]:
    """Class names and multi-hot labels; ``min_likelihood`` (PTB-XL only) keeps statements whose
    likelihood is at least that (None: every statement, the benchmark's way)."""
    from ..labels import PTBXL_TASKS, get_protocol, task_labels

    if labels.startswith("protocol:"):
        proto = get_protocol(labels.split(":", 1)[1])
        if min_likelihood is not None and adapter.name == "ptbxl":
            from ..labels import with_heart_axis

            codes = [with_heart_axis(c, a) for c, a in zip(table["scp_codes"], table["heart_axis"])]
            names, y = list(proto.class_names), proto.encode_scp(codes, min_likelihood=min_likelihood)
        else:
            names, y = list(proto.class_names), proto.encode_table(table)
    elif labels in PTBXL_TASKS:
        if adapter.name != "ptbxl":
            raise ConfigError(f"task.labels: {labels!r} is a PTB-XL task; for {adapter.name} use protocol:seed18 or protocol:cinc2020")
        db = adapter.database.loc[table["ecg_id"].to_numpy()]
        names, y = task_labels(db, adapter.statements, labels, min_likelihood=min_likelihood)
    else:
        raise ConfigError(
            f"task.labels: {labels!r} is neither a PTB-XL task ({', '.join(PTBXL_TASKS)}) "
            "nor a protocol (protocol:seed18, protocol:cinc2020)"
        )
    if min_count:
        keep = y.sum(axis=0) >= min_count
        names, y = [n for n, k in zip(names, keep) if k], y[:, keep]
    return names, y


def load_task(task: Mapping[str, Any], fs: float, *, progress: bool = True) -> TaskData:
    """Open, cache, label and split the data a run's ``[task]`` describes, at ``fs`` Hz."""
    s = task_settings(task)
    adapter = open_dataset(s["dataset"], Path(s["root"]), fs=s["source_fs"], allow_missing=s["allow_missing"])
    cached = load_or_build(adapter, fs=fs, seconds=s["seconds"], cache_dir=s["cache_dir"], progress=progress)
    table = cached.table
    names, y = _labels(adapter, table, s["labels"], s["min_count"], s["min_likelihood"])
    folds = record_folds(cached, n_folds=s["n_folds"], seed=s["fold_seed"]).to_numpy()
    has_label = y.any(axis=1)  # the benchmark drops records without a label in the task
    rows = table["row"].to_numpy()
    splits = {}
    for split in ("train", "val", "test"):
        mask = np.isin(folds, s[f"{split}_folds"]) & has_label
        splits[split] = rows[mask]
    Y = np.zeros((cached.signals.shape[0], len(names)), dtype=np.uint8)
    Y[rows] = y
    record_ids = [""] * cached.signals.shape[0]
    for rid, r in zip(table["record_id"], rows):
        record_ids[r] = str(rid)
    lengths = np.zeros(cached.signals.shape[0], dtype=np.int64)
    lengths[rows] = table["n_valid"].to_numpy()
    return TaskData(cached.signals, Y, record_ids, names, splits, lengths, table, cached)
