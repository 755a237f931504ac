"""The PhysioNet/CinC 2020 and 2021 label spaces: SNOMED-CT codes, the scored classes and the weights.

Package data, copied unchanged from the challenges' scorer repositories (the label definitions the
challenge data is annotated with, not data records; see ``data/README.md`` for their licence):

* 2020 (``physionetchallenges/evaluation-2020``): ``data/cinc2020_dx_mapping_scored.csv`` (27 scored
  codes), ``data/cinc2020_dx_mapping_unscored.csv`` and ``data/cinc2020_weights.csv``;
* 2021 (``physionetchallenges/evaluation-2021``): ``data/cinc2021_dx_mapping_scored.csv`` (30 scored
  codes), ``data/cinc2021_dx_mapping_unscored.csv`` and ``data/cinc2021_weights.csv``. The 2021 files
  add 22 codes of the Chapman-Shaoxing and Ningbo sets (55827005, 251223006, ...) and name every
  2020 code the same way.

A code is *known* when either year's mapping lists it. The 2020 scorer treats three pairs of codes
as one diagnosis, which turns its 27 scored codes into 24 classes; the original transfer study
missed this (G12EC RBBB 59118001, 542 records, left out of CRBBB 713427006, 28 records), so every
encoder here applies it. The 2021 scorer adds a fourth pair, CLBBB 733534002 = LBBB 164909002
(:data:`EQUIVALENT_CODES_2021`); the 2020-based protocols keep the 2020 pairs, the ``dx`` label set
(every code of a set) merges all four.
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
    ("713427006", "59118001"),  # CRBBB = RBBB
    ("284470004", "63593006"),  # PAC = SVPB
    ("427172004", "17338001"),  # PVC = VPB
)
#: The 2021 scorer's pairs: the 2020 ones and CLBBB = LBBB (its weights.csv joins them first-code first).
EQUIVALENT_CODES_2021: tuple[tuple[str, ...], ...] = EQUIVALENT_CODES + (
    ("733534002", "164909002"),  # CLBBB = LBBB
)

#: The record-count columns of the dx mapping files (how many records of each source carry a code).
SOURCE_COLUMNS: tuple[str, ...] = ("CPSC", "CPSC-Extra", "StPetersburg", "PTB", "PTB-XL", "Georgia", "Total")
#: The 2021 files' columns, spelled as the 2020 ones (the files write CPSC_Extra, PTB_XL, ...).
SOURCE_COLUMNS_2021: tuple[str, ...] = (
    "CPSC",
    "CPSC-Extra",
    "StPetersburg",
    "PTB",
    "PTB-XL",
    "Georgia",
    "Chapman-Shaoxing",
    "Ningbo",
    "Total",
)
YEARS: tuple[int, ...] = (2020, 2021)

_DATA = resources.files("ecg_transfer.labels") / "data"


@dataclass(frozen=True)
class SnomedConcept:
    """One SNOMED-CT code as the challenge names it; ``scored`` in 2020, ``scored_2021`` in 2021."""

    code: str
    abbreviation: str
    description: str
    scored: bool
    scored_2021: bool = False


def _read_mapping(name: str, scored: bool) -> pd.DataFrame:
    with resources.as_file(_DATA / name) as path:
        table = pd.read_csv(path, dtype={"SNOMED CT Code": str, "SNOMEDCTCode": str})
    table = table.rename(
        columns={
            "Dx": "description",
            "SNOMED CT Code": "code",
            "SNOMEDCTCode": "code",
            "Abbreviation": "abbreviation",
            "Notes": "notes",
            "CPSC_Extra": "CPSC-Extra",
            "PTB_XL": "PTB-XL",
            "Chapman_Shaoxing": "Chapman-Shaoxing",
        }
    )
    table["scored"] = scored
    return table


@functools.cache
def _mapping(year: int = 2020) -> pd.DataFrame:
    if year not in YEARS:
        raise ValueError(f"no CinC dx mapping for {year}; known: {YEARS}")
    table = pd.concat(
        [
            _read_mapping(f"cinc{year}_dx_mapping_scored.csv", True),
            _read_mapping(f"cinc{year}_dx_mapping_unscored.csv", False),
        ],
        ignore_index=True,
    )
    table["code"] = table["code"].str.strip()
    duplicated = table.loc[table["code"].duplicated(), "code"].tolist()
    if duplicated:
        raise DatasetError(f"duplicate codes in the CinC {year} dx mapping files: {duplicated}")
    return table


def dx_mapping_table(year: int = 2020) -> pd.DataFrame:
    """One year's two mapping files in one table: code (str), abbreviation, description, scored,
    the per-source record counts (``SOURCE_COLUMNS``, ``SOURCE_COLUMNS_2021``) and the notes."""
    return _mapping(year).copy()


@functools.cache
def snomed_lookup() -> dict[str, SnomedConcept]:
    """SNOMED code -> abbreviation and description, from both years' scored and unscored files
    (every 2020 code is in the 2021 files with the same names; a 2021-only code has scored False)."""
    scored_2021 = dict(zip(_mapping(2021)["code"], _mapping(2021)["scored"]))
    lookup: dict[str, SnomedConcept] = {}
    for year in YEARS:
        for row in _mapping(year).itertuples(index=False):
            if row.code not in lookup:
                scored = bool(row.scored) and year == 2020
                lookup[row.code] = SnomedConcept(
                    row.code, row.abbreviation, row.description, scored, bool(scored_2021.get(row.code, False))
                )
    return lookup


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
    """Codes in none of the CinC 2020 and 2021 mapping files, in first-seen order, each once.

    Adapters use it to flag records with an unknown ``#Dx`` (a typo, or a code no challenge used).
    """
    known = snomed_lookup()
    found: list[str] = []
    for code in dx_codes:
        code = str(code).strip()
        if code not in known and code not in found:
            found.append(code)
    return found


def load_weights(
    path: str | Path | None = None, equivalences: Sequence[Sequence[str]] = EQUIVALENT_CODES, *, year: int = 2020
) -> tuple[list[tuple[str, ...]], np.ndarray]:
    """Read a challenge ``weights.csv`` as ``(classes, weights)`` with equivalent codes merged.

    ``path`` defaults to the packaged file of ``year`` (2020 or 2021). Headers name a class by one code (2020) or by
    equivalent codes joined with ``|`` (2021, e.g. ``713427006|59118001``); both are read. Classes
    that ``equivalences`` declares the same are merged, first occurrence kept, as the official
    scorer does; their rows and columns must be identical, else :class:`DatasetError`. Each class
    comes back as a tuple of its codes in header order (in the CinC files, the representative
    code first).
    """
    if path is None:
        with resources.as_file(_DATA / f"cinc{year}_weights.csv") as p:
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
    keys: list[tuple[str, int | str]] = []  # what identifies a class after merging
    for label in header:
        codes = label.split("|")
        keys.append(next((("eq", group_of[c]) for c in codes if c in group_of), ("code", codes[0])))

    classes: list[tuple[str, ...]] = []
    keep: list[int] = []
    for j, key in enumerate(keys):
        first = keys.index(key)
        if first == j:
            keep.append(j)
            classes.append(tuple(header[j].split("|")))
            continue
        same = np.array_equal(values[j], values[first]) and np.array_equal(values[:, j], values[:, first])
        if not same:
            raise DatasetError(
                f"{path}: {header[j]} is declared equivalent to {header[first]} but their weights differ"
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
