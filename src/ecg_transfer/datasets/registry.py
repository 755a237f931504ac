"""Open a dataset adapter by name, as the CLI and study specs name them."""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Sequence

from ..errors import ConfigError, DatasetError
from ..settings.names import DATASET_NAMES
from .base import DatasetAdapter


def check_dataset_root(name: str, root: str | os.PathLike) -> Path:
    """``root`` as a dataset folder, or a :class:`DatasetError` that says what is wrong with it:
    missing, a broken symbolic link (and where it points), not a folder, or the folder *above* the
    dataset (``--root`` is always the dataset's own folder: the one holding ``ptbxl_database.csv``,
    or the CinC records)."""
    path = Path(root)
    if path.is_symlink() and not path.exists():
        raise DatasetError(
            f"{name} root {path} is a broken symbolic link to {os.readlink(path)} "
            f"(resolved: {path.parent / os.readlink(path)}), which does not exist"
        )
    if not path.exists():
        raise DatasetError(f"{name} root {path} does not exist (absolute: {path.absolute()})")
    if not path.is_dir():
        raise DatasetError(f"{name} root {path} is not a folder")
    if name == "ptbxl" and not (path / "ptbxl_database.csv").is_file():
        inner = [p.parent for p in path.glob("*/ptbxl_database.csv")]
        if inner:
            raise DatasetError(
                f"ptbxl root {path} holds the dataset one level down: use {inner[0]} "
                "(--root is the folder holding ptbxl_database.csv)"
            )
    if name in ("cinc", "g12ec"):
        inner = [p.parent for p in path.glob("*/ptbxl_database.csv")] + (
            [path] if (path / "ptbxl_database.csv").is_file() else []
        )
        if inner:
            raise DatasetError(
                f"CinC root {path} holds a PTB-XL tree ({inner[0]}): point the CinC root at the "
                "folder of the CinC records themselves (e.g. data/g12ec)"
            )
    return path


def open_dataset(
    name: str,
    root: str | os.PathLike,
    *,
    fs: int | None = None,
    allow_missing: bool = False,
    strict: bool = False,
    leads: Sequence[str] | None = None,
) -> DatasetAdapter:
    """``ptbxl`` (``fs`` picks records100 or records500) or ``cinc`` (G12EC and any CinC-format set).

    ``leads``: the standard leads to read from every record, by name and in standard order (any
    aliases, see :func:`ecg_transfer.datasets.leads.parse_leads`); ``None``: all twelve.
    """
    from .leads import parse_leads

    chosen = parse_leads(None if leads is None else list(leads))
    if name not in DATASET_NAMES + ("g12ec",):
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    check_dataset_root(name, root)
    if name == "ptbxl":
        from .ptbxl import PTBXL

        return PTBXL(root, fs=fs or 100, allow_missing=allow_missing, leads=chosen)
    if name in ("cinc", "g12ec"):
        from .cinc import CinCDataset

        return CinCDataset(root, strict=strict, leads=chosen)
    raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
