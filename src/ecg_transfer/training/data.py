"""The arrays a run trains on, as its config names them: the ``[task]`` table's labelled, split
records, or (with an ``[ssl]`` table) the unlabelled train/validation records of its sets.

One loader for every caller that starts a run from a config (the API and CLI's ``train``, the
study's runs), so they cannot drift apart in what a run reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..datasets.task import load_task
from ..errors import ConfigError
from ..settings import RunConfig
from .run import RunResult, train_run
from .ssl.data import load_ssl_data


def load_training_data(config: RunConfig, *, progress: bool = False) -> tuple[Any, list[str]]:
    """``(data, label_names)``: ``data`` has ``X``, ``Y``, ``record_ids``, ``splits`` (and, for a
    ``[task]``, ``lengths``) as :func:`~ecg_transfer.training.train_run` takes them; an ``[ssl]`` run
    has no labels (its test folds are never read: :func:`~ecg_transfer.training.ssl.load_ssl_data`)."""
    if config.ssl is not None:
        return load_ssl_data(config, progress=progress), []
    if config.task is None:
        raise ConfigError(
            "the config has no [task] table: it must name the data to train on (see docs/configuration.md)"
        )
    data = load_task(config.task, config.fs, progress=progress)
    return data, data.label_names


def train_on_data(
    config: RunConfig | dict[str, Any], data: Any, label_names: list[str], run_dir: str | Path, **kw: Any
) -> RunResult:
    """:func:`~ecg_transfer.training.train_run` on what :func:`load_training_data` returned (``kw``:
    ``resume``, ``init_from``, ``progress``, ``callbacks``)."""
    X, Y, ids, splits, lengths = data.X, data.Y, data.record_ids, data.splits, getattr(data, "lengths", None)
    for key in ("dropped_unlabelled", "fold_records"):  # a [task]'s records left out unlabelled: label_counts.json
        kw.setdefault(key, getattr(data, key, None))
    return train_run(config, X, Y, ids, splits, label_names, run_dir, lengths=lengths, **kw)


__all__ = ["load_training_data", "train_on_data"]
