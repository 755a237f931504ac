"""Open a dataset adapter by name, as the CLI and study specs name them."""

from __future__ import annotations

import os

from ..errors import ConfigError
from .base import DatasetAdapter

DATASET_NAMES = ("ptbxl", "cinc")


def open_dataset(
    name: str, root: str | os.PathLike, *, fs: int | None = None, allow_missing: bool = False,
    strict: bool = False,
) -> DatasetAdapter:
    """``ptbxl`` (``fs`` picks records100 or records500) or ``cinc`` (G12EC and any CinC-format set)."""
    if name == "ptbxl":
        from .ptbxl import PTBXL

        return PTBXL(root, fs=fs or 100, allow_missing=allow_missing)
    if name in ("cinc", "g12ec"):
        from .cinc import CinCDataset

        return CinCDataset(root, strict=strict)
    raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
