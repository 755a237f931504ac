"""From a run config's ``[task]`` table to the arrays the training engine takes.

This is the step between the cache and training: open the dataset, open (or build) its cache at
the run's sampling rate, label the records (a PTB-XL task or a label protocol), drop records
without a label, and split them into train / validation / test by fold. The table's keys, with
an example, are in ``settings.task`` (validated there before anything is read); what the split and
length options mean is said here.

Records with none of the task's labels (after ``min_count``) are left out of every split: the
PTB-XL benchmark's rule, kept here. It changes the population behind every number (a G12EC record
whose only codes are outside ``seed18`` is never trained or tested on), so it is counted:
:attr:`TaskData.dropped_unlabelled` (per split, the records of its folds left out by the rule) and
:attr:`TaskData.fold_records` (per split, the records of its folds before it), printed beside the
split sizes and saved in the run's ``label_counts.json``.

How much of a long record is used. The cache holds every record whole, at its own length.
``long_records = "whole"`` (the default) uses all of every record: training draws one random
2.5 s crop anywhere in it per epoch (the benchmark's recipe) and evaluation slides its windows over
all of it. It is the default because it is what was always done: PTB-XL and G12EC records are
10 s, whole either way, so their results are the same as before ragged caches. With long records
it costs evaluation time: a 30-minute INCART record gives 1,439 windows at 2.5 s / 1.25 s, the
work of ~200 ten-second records (memory stays one batch of windows). ``long_records = "first"``
or ``"centre"`` with ``max_seconds = N`` uses only those N seconds of each longer record, for the
training crops and the evaluation windows alike (the model is tested on the kind of span it was
trained on). ``seconds`` instead cuts records to their first N s in the cache itself.

CinC-format sets have no folds of their own: they get ``n_folds`` seeded, multilabel-stratified
folds (``fold_seed``), made on the ``cinc2020`` protocol with identical signals kept together.

Learning curves and "train on p % of a set, test on the rest" (the transfer study's designs) are
``train_fraction`` < 1. The pool (labelled records of ``train_folds``) is cut into
``fraction_parts`` label-stratified parts (``fraction_seed``) and training takes parts 1..k,
k = train_fraction * fraction_parts, so with one seed the subsets are nested as the fraction grows
(10 % is inside 20 %), and a learning curve measures more data, not a different draw. Units that
must not be split stay in one part: one PTB-XL patient's records, records with identical signals.
``test_on_rest = true`` (needs ``test_folds = []``) tests on the pool's remaining parts, e.g.::

    [task]
    dataset = "cinc"
    root = "data/g12ec"
    labels = "protocol:seed18"
    train_folds = [1, 2, 3, 4, 5, 6, 7, 8, 10]
    val_folds = [9]
    test_folds = []
    train_fraction = 0.1
    test_on_rest = true
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..settings.task import TaskSettings
from ..ragged import RaggedSignals
from .cache import CachedSignals, load_or_build
from .folds import duplicate_signal_groups, signal_hash, stratified_folds
from .registry import open_dataset
from .splits import record_folds

_FRACTION_TOL = 1e-9


@dataclass
class TaskData:
    """Everything ``train_run`` needs, plus the table the rows came from."""

    X: RaggedSignals  # every record at its own length (after long_records / max_seconds)
    Y: np.ndarray
    record_ids: list[str]
    label_names: list[str]
    splits: dict[str, np.ndarray]  # rows of X per split
    lengths: np.ndarray  # X.lengths: samples used per row (0: a record that could not be read)
    table: pd.DataFrame
    cache: CachedSignals
    # per split: records of its folds with none of the task's labels, left out (the benchmark's
    # rule); "train" counts the training folds before any train_fraction cut
    dropped_unlabelled: dict[str, int] = field(default_factory=dict)
    fold_records: dict[str, int] = field(default_factory=dict)  # per split: records of its folds, before the rule

    def left_out_line(self) -> str:
        """``"21 of 74 left out: none of the task's 4 labels"``: the records of the splits' folds
        left out for having none of the task's labels (empty when none was)."""
        dropped, total = sum(self.dropped_unlabelled.values()), sum(self.fold_records.values())
        if not dropped:
            return ""
        n = len(self.label_names)
        return f"{dropped} of the folds' {total} records left out: none of the task's {n} label{'' if n == 1 else 's'}"


LONG_RECORDS = ("whole", "first", "centre")


def long_record_view(signals: RaggedSignals, long_records: str, max_seconds: float | None, fs: float) -> RaggedSignals:
    """The part of each record that training and evaluation use (``[task] long_records`` /
    ``max_seconds``, see the module docstring); a view of the cache, nothing is copied."""
    if long_records not in LONG_RECORDS:
        raise ConfigError(f"task.long_records: must be one of {', '.join(LONG_RECORDS)}, got {long_records!r}")
    if long_records == "whole":
        return signals
    if max_seconds is None:
        raise ConfigError(f"task.long_records = {long_records!r} needs task.max_seconds")
    return signals.limit(max(1, int(round(float(max_seconds) * fs))), long_records)


def task_settings(task: Mapping[str, Any] | TaskSettings) -> dict[str, Any]:
    """``task`` validated (:class:`ecg_transfer.settings.TaskSettings`) with defaults filled in, as
    plain values; a wrong key or value raises ConfigError naming it."""
    settings = task if isinstance(task, TaskSettings) else TaskSettings.from_dict(task)
    return settings.to_dict()


def fraction_subset(
    labels: np.ndarray, groups: np.ndarray | None, *, fraction: float, parts: int = 20, seed: int = 0
) -> np.ndarray:
    """Boolean mask over the pool: the records in stratified parts 1..k, k = fraction * parts.

    The pool is cut once into ``parts`` label-stratified parts (``stratified_folds`` with ``seed``
    and ``groups``, so a group never straddles two parts); a fraction takes the first k, so for one
    ``seed`` and ``parts`` the subsets are nested as ``fraction`` grows. ``fraction`` must be a
    multiple of 1/``parts`` (checked by :func:`task_settings`; a ValueError here).
    """
    k = fraction * parts
    if abs(k - round(k)) > _FRACTION_TOL or not 1 <= round(k) <= parts:
        raise ValueError(f"fraction {fraction!r} is not k/{parts} for a whole k in 1..{parts}")
    part = stratified_folds(labels, n_folds=parts, seed=seed, groups=groups)
    return part <= round(k)


def _pool_groups(cached: CachedSignals, table: pd.DataFrame, pool: np.ndarray) -> np.ndarray:
    """Group ids for the pool's table positions: one patient's records (PTB-XL's patient_id) and
    records with identical cached signals (as the CinC folds are made) form one group."""
    rows = table["row"].to_numpy()[pool]
    hashes = [signal_hash(np.asarray(cached.signals[r])) for r in rows]
    patients = table["patient_id"].to_numpy()[pool] if "patient_id" in table.columns else None
    return duplicate_signal_groups(hashes, patients)


def _split_pool(s: dict[str, Any], cached: CachedSignals, y: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """The chosen-for-training mask over ``pool`` (table positions), with errors that say why not."""
    f, parts = float(s["train_fraction"]), int(s["fraction_parts"])
    where = (
        f"task.train_fraction = {f:g}: the {s['dataset']} pool at {s['root']} (labelled records of "
        f"train_folds {list(s['train_folds'])})"
    )
    groups = _pool_groups(cached, cached.table, pool)
    n_groups = len(np.unique(groups))
    if n_groups < parts:
        raise ConfigError(
            f"{where} has {pool.size} records in {n_groups} group(s) (patients / identical "
            f"signals), fewer than task.fraction_parts = {parts}: some parts would be empty; "
            "lower fraction_parts or add train_folds"
        )
    # with at least `parts` groups, stratified_folds makes every part non-empty
    chosen = fraction_subset(y[pool], groups, fraction=f, parts=parts, seed=int(s["fraction_seed"]))
    if chosen.sum() < 2:
        raise ConfigError(
            f"{where} has {pool.size} records; the fraction leaves {int(chosen.sum())} for "
            "training, at least 2 are needed: raise train_fraction or lower fraction_parts"
        )
    return chosen


def _labels(
    adapter, table: pd.DataFrame, labels: str, min_count: int, min_likelihood: float | None
) -> tuple[list[str], np.ndarray]:
    """Class names and multi-hot labels; ``min_likelihood`` (PTB-XL only) keeps statements whose
    likelihood is at least that (None: every statement, the benchmark's way)."""
    from ..labels import PTBXL_TASKS, get_protocol, task_labels
    from .ptbxl import PTBXL

    if labels.startswith("protocol:"):
        proto = get_protocol(labels.split(":", 1)[1])
        if min_likelihood is not None and isinstance(adapter, PTBXL):
            from ..labels import with_heart_axis

            codes = [with_heart_axis(c, a) for c, a in zip(table["scp_codes"], table["heart_axis"])]
            names, y = list(proto.class_names), proto.encode_scp(codes, min_likelihood=min_likelihood)
        else:
            names, y = list(proto.class_names), proto.encode_table(table)
    elif labels == "dx":
        from ..labels import dx_labels

        names, y = dx_labels(table)
    elif labels in PTBXL_TASKS:
        if not isinstance(adapter, PTBXL):  # the PTB-XL tasks are sets of SCP statements, which it alone carries
            raise ConfigError(
                f"task.labels: {labels!r} is a PTB-XL task; for {adapter.name} use protocol:seed18 or protocol:cinc2020"
            )
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


def load_task(task: Mapping[str, Any] | TaskSettings, fs: float, *, progress: bool = True) -> TaskData:
    """Open, cache, label and split the data a run's ``[task]`` describes, at ``fs`` Hz."""
    s = task_settings(task)
    adapter = open_dataset(
        s["dataset"], Path(s["root"]), fs=s["source_fs"], allow_missing=s["allow_missing"], leads=s.get("leads")
    )
    cached = load_or_build(adapter, fs=fs, seconds=s["seconds"], cache_dir=s["cache_dir"], progress=progress)
    table = cached.table
    names, y = _labels(adapter, table, s["labels"], s["min_count"], s["min_likelihood"])
    folds = record_folds(cached, n_folds=s["n_folds"], seed=s["fold_seed"]).to_numpy()
    has_label = y.any(axis=1)  # the benchmark drops records without a label in the task
    rows = table["row"].to_numpy()
    splits, dropped, in_folds = {}, {}, {}
    for split in ("train", "val", "test"):
        in_split = np.isin(folds, s[f"{split}_folds"])
        splits[split] = rows[in_split & has_label]
        in_folds[split], dropped[split] = int(in_split.sum()), int((in_split & ~has_label).sum())
    if s["train_fraction"] < 1:
        pool = np.flatnonzero(np.isin(folds, s["train_folds"]) & has_label)
        chosen = _split_pool(s, cached, y, pool)
        splits["train"] = rows[pool[chosen]]
        if s["test_on_rest"]:
            splits["test"] = rows[pool[~chosen]]
    Y = np.zeros((cached.signals.shape[0], len(names)), dtype=np.uint8)
    Y[rows] = y
    record_ids = [""] * cached.signals.shape[0]
    for rid, r in zip(table["record_id"], rows):
        record_ids[r] = str(rid)
    X = long_record_view(cached.signals, s.get("long_records", "whole"), s.get("max_seconds"), fs)
    return TaskData(X, Y, record_ids, names, splits, X.lengths, table, cached, dropped, in_folds)
