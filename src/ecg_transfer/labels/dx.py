"""The ``dx`` label set: every SNOMED-CT diagnosis a CinC-format set carries, one class per diagnosis.

The protocols (``seed18``, ``cinc2020``) fix the classes in advance; a user with their own set
(Chapman-Shaoxing, Ningbo, a hospital's export in CinC format) wants to train on the diagnoses that
set has. ``[task] labels = "dx"`` gives one class per SNOMED code present in the set, with the
challenges' equivalent codes merged into one class (the 2020 pairs and the 2021 CLBBB = LBBB pair:
:data:`~ecg_transfer.labels.snomed.EQUIVALENT_CODES_2021`). Classes are named by the challenges'
abbreviations (``CRBBB|RBBB`` for a merged pair; the code itself when neither year's mapping
knows it) and ordered by how many records carry them (most first; ties by code), so the order is
fixed by the set itself. ``min_count`` (applied by the task, as for every label set) drops rare ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .snomed import EQUIVALENT_CODES_2021, snomed_lookup

#: The equivalences the ``dx`` label set merges.
DX_EQUIVALENCES: tuple[tuple[str, ...], ...] = EQUIVALENT_CODES_2021


@dataclass(frozen=True)
class DxClass:
    """One class of the ``dx`` set: its name, its codes (representative first) and its count."""

    name: str
    codes: tuple[str, ...]
    count: int


def _groups() -> dict[str, tuple[str, ...]]:
    return {code: tuple(group) for group in DX_EQUIVALENCES for code in group}


def _record_classes(codes: Iterable[str], groups: dict[str, tuple[str, ...]]) -> set[tuple[str, ...]]:
    if isinstance(codes, str):
        raise ValueError(f"Dx codes must be a list of codes, got the string {codes!r} (split it on commas first)")
    found = set()
    for code in codes:
        code = str(code).strip()
        if code:
            found.add(groups.get(code, (code,)))
    return found


def _class_name(codes: tuple[str, ...]) -> str:
    lookup = snomed_lookup()
    return "|".join(lookup[c].abbreviation if c in lookup else c for c in codes)


def dx_classes(dx_lists: Sequence[Iterable[str]]) -> list[DxClass]:
    """The classes of the ``dx`` set for records whose ``#Dx`` codes are ``dx_lists``."""
    groups = _groups()
    counts: Counter[tuple[str, ...]] = Counter()
    for codes in dx_lists:
        counts.update(_record_classes(codes, groups))
    ordered = sorted(counts, key=lambda g: (-counts[g], g[0]))
    return [DxClass(_class_name(g), g, counts[g]) for g in ordered]


def encode_dx(dx_lists: Sequence[Iterable[str]], classes: Sequence[DxClass]) -> np.ndarray:
    """``(N, C)`` uint8 multi-hot of ``dx_lists`` over ``classes`` (codes outside them set nothing)."""
    groups = _groups()
    column = {c.codes: j for j, c in enumerate(classes)}
    y = np.zeros((len(dx_lists), len(classes)), dtype=np.uint8)
    for i, codes in enumerate(dx_lists):
        for group in _record_classes(codes, groups):
            j = column.get(group)
            if j is not None:
                y[i, j] = 1
    return y


def dx_labels(table: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Class names and multi-hot labels of the ``dx`` set for a CinC-format index table."""
    if "dx" not in table.columns:
        raise ValueError("the dx label set needs SNOMED #Dx codes (a CinC-format set); this table has no 'dx' column")
    dx_lists = [list(d) for d in table["dx"]]
    classes = dx_classes(dx_lists)
    return [c.name for c in classes], encode_dx(dx_lists, classes)
