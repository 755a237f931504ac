"""The unlabelled records of a self-supervised run: the train and validation folds of every set
named, never a test fold, no labels needed.

The ``[task]`` table names the main set and ``[ssl] extra_tasks`` any further ones
(:class:`~ecg_transfer.settings.run.SslSource`). Of each set, the records of ``train_folds`` are
pre-trained on and those of ``val_folds`` give the validation loss; records of every other fold
(the test folds) are left out of the arrays handed to training altogether, so no crop, scaler
statistic or validation pass can read them. A record without labels is used like any other
(a CinC record with an empty ``#Dx`` is in the cache and in its fold); unreadable records
(length 0 in the cache) are left out.

One set: the records are a view of its memory-mapped cache (nothing is copied). Several sets:
the used part of each record is copied into one in-memory buffer (4 bytes per sample and lead),
because one run reads one buffer; record ids become ``"<dataset>:<id>"`` (``"<dataset>#<k>:<id>"`` when
a dataset is named twice) so that they stay unique.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...datasets.cache import load_or_build
from ...datasets.registry import open_dataset
from ...datasets.splits import record_folds
from ...datasets.task import long_record_view
from ...errors import ConfigError
from ...ragged import RaggedSignals
from ...settings.run import RunConfig, SslSource
from ...settings.task import TaskSettings


@dataclass
class SslData:
    """What ``train_run`` needs for an ``[ssl]`` run (``Y`` has no columns: nothing is labelled)."""

    X: RaggedSignals
    record_ids: list[str]
    splits: dict[str, np.ndarray]  # "train" and "val" rows of X; never "test"
    sources: list[dict[str, Any]] = field(default_factory=list)  # per set: dataset, root, records used

    @property
    def Y(self) -> np.ndarray:
        return np.zeros((len(self.X), 0), dtype=np.uint8)


def _task(config: RunConfig) -> TaskSettings:
    """The ``[task]`` table of an ``[ssl]`` run (it names the data and sets leads and length for every set)."""
    if config.task is None:
        raise ConfigError("an [ssl] run needs a [task] table naming the data to pre-train on")
    return config.task


def task_source(config: RunConfig) -> SslSource:
    """The ``[task]`` table as a source of unlabelled records."""
    t = _task(config)
    return SslSource(
        dataset=t.dataset,
        root=t.root,
        source_fs=t.source_fs,
        allow_missing=t.allow_missing,
        cache_dir=t.cache_dir,
        train_folds=t.train_folds,
        val_folds=t.val_folds,
        test_folds=t.test_folds,
        n_folds=t.n_folds,
        fold_seed=t.fold_seed,
    )


def _subset(signals: RaggedSignals, rows: np.ndarray) -> RaggedSignals:
    """The records ``rows`` of ``signals`` as a view of the same buffer (no copy)."""
    return RaggedSignals(
        signals.data,
        signals.offsets[rows],
        signals.lengths[rows],
        signals.n_leads,
        pitch=signals.pitch[rows],
        starts=signals.starts[rows],
        leads=signals.leads,
    )


def _open_source(src: SslSource, config: RunConfig, progress: bool) -> tuple[RaggedSignals, list[str], dict]:
    """One set's train and val records (train first), and its entry for the run's log."""
    task = _task(config)
    adapter = open_dataset(
        src.adapter, Path(src.root), fs=src.source_fs, allow_missing=src.allow_missing, leads=task.leads
    )
    cached = load_or_build(adapter, fs=config.fs, seconds=task.seconds, cache_dir=src.cache_dir, progress=progress)
    signals = long_record_view(cached.signals, task.long_records, task.max_seconds, config.fs)
    table = cached.table
    rows = table["row"].to_numpy()
    folds = record_folds(cached, n_folds=src.n_folds, seed=src.fold_seed).to_numpy()
    readable = signals.lengths[rows] > 0
    train = rows[np.isin(folds, src.train_folds) & readable]
    val = rows[np.isin(folds, src.val_folds) & readable]
    if train.size < 2:
        raise ConfigError(
            f"[ssl]: {src.dataset} at {src.root} has {train.size} readable record(s) in train_folds "
            f"{list(src.train_folds)}; at least 2 are needed"
        )
    ids = dict(zip(rows.tolist(), table["record_id"].astype(str)))
    used = np.concatenate([train, val])
    entry = {
        "dataset": src.dataset,
        "root": str(src.root),
        "train": int(train.size),
        "val": int(val.size),
        "left_out": int(rows.size - used.size),
        "test_folds": list(src.test_folds),
    }
    return _subset(signals, used), [ids[int(r)] for r in used], entry


def load_ssl_data(config: RunConfig, *, progress: bool = True) -> SslData:
    """Open (building caches where needed) every set of an ``[ssl]`` run and return their train and
    validation records as one array, at ``config.fs`` with the ``[task]``'s leads."""
    if config.ssl is None:
        raise ConfigError("load_ssl_data needs a config with an [ssl] table")
    sources = [task_source(config), *config.ssl.extra_tasks]
    parts: list[RaggedSignals] = []
    ids: list[str] = []
    splits: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    entries: list[dict] = []
    offset = 0
    for k, src in enumerate(sources):
        signals, names, entry = _open_source(src, config, progress)
        n_train = entry["train"]
        if len(sources) > 1:
            again = sum(s.dataset == src.dataset for s in sources[:k])
            prefix = f"{src.dataset}#{again + 1}" if again else src.dataset
            names = [f"{prefix}:{n}" for n in names]
        splits["train"].append(offset + np.arange(n_train))
        splits["val"].append(offset + np.arange(n_train, len(signals)))
        parts.append(signals)
        ids += names
        entries.append(entry)
        offset += len(signals)
    if len({p.n_leads for p in parts}) > 1:
        raise ConfigError(f"[ssl]: the sets have different lead counts {[p.n_leads for p in parts]}")
    X = (
        parts[0]
        if len(parts) == 1
        else RaggedSignals.from_records([p.record(i) for p in parts for i in range(len(p))], leads=parts[0].leads)
    )
    return SslData(X, ids, {k: np.concatenate(v).astype(np.int64) for k, v in splits.items()}, entries)


__all__ = ["SslData", "load_ssl_data", "task_source"]
