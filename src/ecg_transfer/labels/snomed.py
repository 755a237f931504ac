"""The PhysioNet/CinC 2020 label space: SNOMED-CT codes, the scored classes and the scoring weights.

Package data (CC BY 4.0, copied unchanged from ``physionetchallenges/evaluation-2020``):
``data/cinc2020_dx_mapping_scored.csv`` (27 scored codes), ``data/cinc2020_dx_mapping_unscored.csv``
and ``data/cinc2020_weights.csv``. The scorer treats three pairs of codes as one diagnosis, which
turns the 27 scored codes into 24 classes; the original transfer study missed this (G12EC RBBB
59118001, 542 records, left out of CRBBB 713427006, 28 records), so every encoder here applies it.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DatasetError

#: Pairs the CinC 2020 scorer scores as the same diagnosis; the first code represents the pair.
EQUIVALENT_CODES: tuple[tuple[str, ...], ...] = (
    ("713427006", "59118001"),   # CRBBB = RBBB
    ("284470004", "63593006"),   # PAC = SVPB
    ("427172004", "17338001"),   # PVC = VPB
)

#: The record-count columns of the dx mapping files (how many records of each source carry a code).
SOURCE_COLUMNS: tuple[str, ...] = (
    "CPSC", "CPSC-Extra", "StPetersburg", "PTB", "PTB-XL", "Georgia", "Total",
)

_DATA = resources.files("ecg_transfer.labels") / "data"


@dataclass(frozen=True)
class SnomedConcept:
    """One SNOMED-CT code as the challenge names it."""

    code: str
    abbreviation: str
    description: str
    scored: bool


def _read_mapping(name: str, scored: bool) -> pd.DataFrame:
    with resources.as_file(_DATA / name) as path:
        table = pd.read_csv(path, dtype={"SNOMED CT Code": str})
    table = table.rename(columns={"Dx": "description", "SNOMED CT Code": "code",
                                  "Abbreviation": "abbreviation", "Notes": "notes"})
    table["scored"] = scored
    return table


@functools.cache
def _mapping() -> pd.DataFrame:
    table = pd.concat(
        [_read_mapping("cinc2020_dx_mapping_scored.csv", True),
         _read_mapping("cinc2020_dx_mapping_unscored.csv", False)],
        ignore_index=True,
    )
    table["code"] = table["code"].str.strip()
    duplicated = table.loc[table["code"].duplicated(), "code"].tolist()
    if duplicated:
        raise DatasetError(f"duplicate codes in the CinC dx mapping files: {duplicated}")
    return table


def dx_mapping_table() -> pd.DataFrame:
    """Both CinC 2020 mapping files in one table: code (str), abbreviation, description, scored,
    the per-source record counts (``SOURCE_COLUMNS``) and the scorer's notes."""
    return _mapping().copy()


@functools.cache
def snomed_lookup() -> dict[str, SnomedConcept]:
    """SNOMED code -> abbreviation and description, from the scored and unscored mapping files."""
    return {
        row.code: SnomedConcept(row.code, row.abbreviation, row.description, bool(row.scored))
        for row in _mapping().itertuples(index=False)
    }


def describe(code: str) -> str:
    """Readable name of a code, e.g. ``'RBBB (right bundle branch block)'``; the code if unknown."""
    concept = snomed_lookup().get(str(code).strip())
    return f"{concept.abbreviation} ({concept.description})" if concept else str(code)


def scored_codes() -> tuple[str, ...]:
    """The 27 scored codes, in the order of ``dx_mapping_scored.csv``."""
    table = _mapping()
    return tuple(table.loc[table["scored"], "code"])


@functools.cache
def _representative() -> dict[str, str]:
    return {code: group[0] for group in EQUIVALENT_CODES for code in group}


def canonical_code(code: str) -> str:
    """The code that represents ``code``'s equivalence group (the code itself when it has none)."""
    code = str(code).strip()
    return _representative().get(code, code)


def equivalent_codes(code: str) -> frozenset[str]:
    """All codes scored as the same diagnosis as ``code``, ``code`` included."""
    code = str(code).strip()
    for group in EQUIVALENT_CODES:
        if code in group:
            return frozenset(group)
    return frozenset({code})


def unknown_codes(dx_codes: Iterable[str]) -> list[str]:
    """Codes in neither CinC 2020 mapping file, in first-seen order, each once.

    Adapters use it to flag records with an unknown ``#Dx`` (a typo, or a code from another year).
    """
    known = snomed_lookup()
    found: list[str] = []
    for code in dx_codes:
        code = str(code).strip()
        if code not in known and code not in found:
            found.append(code)
    return found


def load_weights(
    path: str | Path | None = None,
    equivalences: Sequence[Sequence[str]] = EQUIVALENT_CODES,
) -> tuple[list[tuple[str, ...]], np.ndarray]:
    """Read a challenge ``weights.csv`` as ``(classes, weights)`` with equivalent codes merged.

    ``path`` defaults to the packaged 2020 file. Headers name a class by one code (2020) or by
    equivalent codes joined with ``|`` (2021, e.g. ``713427006|59118001``); both are read. Classes
    that ``equivalences`` declares the same are merged, first occurrence kept, as the official
    scorer does; their rows and columns must be identical, else :class:`DatasetError`. Each class
    comes back as a tuple of its codes in header order (in the CinC files, the representative
    code first).
    """
    if path is None:
        with resources.as_file(_DATA / "cinc2020_weights.csv") as p:
            return load_weights(p, equivalences)
    path = Path(path)
    with path.open(newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    if not rows:
        raise DatasetError(f"{path}: empty weights file")
    header = [label.strip() for label in rows[0][1:]]
    row_labels = [row[0].strip() for row in rows[1:]]
    if row_labels != header:
        raise DatasetError(f"{path}: row labels differ from column labels; not a weights matrix")
    try:
        values = np.array([[float(x) for x in row[1:]] for row in rows[1:]], dtype=np.float64)
    except ValueError as exc:
        raise DatasetError(f"{path}: non-numeric weight ({exc})") from None
    if values.shape != (len(header), len(header)):
        raise DatasetError(f"{path}: weights are {values.shape}, expected {len(header)} square")

    group_of: dict[str, int] = {}
    for g, group in enumerate(equivalences):
        for code in group:
            group_of[str(code)] = g
    keys: list[object] = []      # what identifies a class after merging
    for label in header:
        codes = label.split("|")
        key = next((("eq", group_of[c]) for c in codes if c in group_of), ("code", codes[0]))
        keys.append(key)

    classes: list[tuple[str, ...]] = []
    keep: list[int] = []
    for j, key in enumerate(keys):
        first = keys.index(key)
        if first == j:
            keep.append(j)
            classes.append(tuple(header[j].split("|")))
            continue
        same = (np.array_equal(values[j], values[first])
                and np.array_equal(values[:, j], values[:, first]))
        if not same:
            raise DatasetError(
                f"{path}: {header[j]} is declared equivalent to {header[first]} "
                "but their weights differ"
            )
        k = keep.index(first)
        classes[k] = classes[k] + tuple(c for c in header[j].split("|") if c not in classes[k])
    return classes, values[np.ix_(keep, keep)]


@functools.cache
def scored_classes() -> tuple[tuple[str, ...], ...]:
    """The 24 scored classes of CinC 2020 in the scorer's (weights.csv) order, each a tuple of its
    codes with the representative first, e.g. ``('713427006', '59118001')``."""
    classes, _ = load_weights()
    return tuple(classes)
