"""Open a dataset adapter by name, as the CLI and study specs name them."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..errors import ConfigError
from .base import DatasetAdapter

DATASET_NAMES = ("ptbxl", "cinc")


def open_dataset(
    name: str, root: str | os.PathLike, *, fs: int | None = None, allow_missing: bool = False,
    strict: bool = False, leads: Sequence[str] | None = None,
) -> DatasetAdapter:
    """``ptbxl`` (``fs`` picks records100 or records500) or ``cinc`` (G12EC and any CinC-format set).

    ``leads``: the standard leads to read from every record, by name and in standard order (any
    aliases, see :func:`ecg_transfer.datasets.leads.parse_leads`); ``None``: all twelve.
    """
    from .leads import parse_leads

    chosen = parse_leads(None if leads is None else list(leads))
    if name == "ptbxl":
        from .ptbxl import PTBXL

        return PTBXL(root, fs=fs or 100, allow_missing=allow_missing, leads=chosen)
    if name in ("cinc", "g12ec"):
        from .cinc import CinCDataset

        return CinCDataset(root, strict=strict, leads=chosen)
    raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
