"""The arrays a run trains on, as its config names them: the ``[task]`` table's labelled, split
records, or (with an ``[ssl]`` table) the unlabelled train/validation records of its sets.

One loader for every caller that starts a run from a config (the API and CLI's ``train``, the
study's runs), so they cannot drift apart in what a run reads.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..settings import RunConfig


def load_training_data(config: RunConfig, *, progress: bool = False) -> tuple[Any, list[str]]:
    """``(data, label_names)``: ``data`` has ``X``, ``Y``, ``record_ids``, ``splits`` (and, for a
    ``[task]``, ``lengths``) as :func:`~ecg_transfer.training.train_run` takes them; an ``[ssl]`` run
    has no labels (its test folds are never read: :func:`~ecg_transfer.training.ssl.load_ssl_data`)."""
    if config.ssl is not None:
        from .ssl import load_ssl_data

        return load_ssl_data(config, progress=progress), []
    if config.task is None:
        raise ConfigError(
            "the config has no [task] table: it must name the data to train on (see docs/configuration.md)"
        )
    from ..datasets.task import load_task

    data = load_task(config.task, config.fs, progress=progress)
    return data, data.label_names


__all__ = ["load_training_data"]
