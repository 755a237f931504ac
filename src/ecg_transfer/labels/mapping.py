"""PTB-XL SCP statements -> SNOMED-CT codes, read from ``data/scp_to_snomed.csv``.

Where the table comes from. The PhysioNet/CinC 2020 (and 2021) challenge re-released PTB-XL
with SNOMED-CT ``#Dx`` codes. That conversion is the authority, but we found no published table
of it (searched: the physionetchallenges repositories, PTB-XL+, projects that map SCP to SNOMED).
Its outcome is published, though: ``dx_mapping_scored.csv`` / ``dx_mapping_unscored.csv`` give,
per code, how many PTB-XL records carry it. Each ``source = cinc2020`` row was chosen so that the
number of PTB-XL records whose ``scp_codes`` (any likelihood) or ``heart_axis`` hold the mapped
values equals that count: all 50 codes the challenge gives PTB-XL records are reproduced exactly
on PTB-XL 1.0.3 (``tests/test_labels.py`` checks it). Some of the challenge's choices are loose and
are kept as it made them (NORM -> sinus rhythm, SVARR -> supraventricular premature beats, every MI
statement but AMI -> myocardial infarction, axis categories AXL/AXR/SAG -> indeterminate axis);
the ``relation`` column says how close each pair is (exact / broader / narrower / related, read as
"the SNOMED concept is ... than the SCP statement").

One row has ``source = study``: the original transfer study paired NDT with 428750005 (nonspecific
ST-T abnormality) where the challenge codes NDT as T wave abnormal; the seed18 protocol needs it.

Heart axis rows (``scp_kind = heart_axis``) are values of ``ptbxl_database.csv``'s ``heart_axis``
column, not SCP statements; :func:`with_heart_axis` adds them to a record's code dict.
Other published mappings were looked at and not used: PTB-XL+ ``labels/mapping/ptbxlToSNOMED.csv``
maps to OMOP concept ids, not SNOMED codes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from importlib import resources

import pandas as pd

from ..errors import ConfigError

SOURCES: tuple[str, ...] = ("cinc2020", "study")

#: Likelihood given to a heart-axis "statement": the axis is measured, not graded.
HEART_AXIS_LIKELIHOOD = 100.0


@functools.cache
def _table() -> pd.DataFrame:
    data = resources.files("ecg_transfer.labels") / "data"
    with resources.as_file(data / "scp_to_snomed.csv") as p:
        return pd.read_csv(p, dtype=str, keep_default_na=False)


def mapping_table() -> pd.DataFrame:
    """The whole table (all columns as strings): scp_code, scp_description, scp_kind, snomed_code,
    snomed_abbreviation, snomed_description, relation, source, notes."""
    return _table().copy()


def _rows(source: str | None) -> pd.DataFrame:
    table = _table()
    if source is None:
        return table
    if source not in SOURCES:
        raise ConfigError(f"unknown mapping source {source!r}; allowed: {', '.join(SOURCES)} or None")
    return table[table["source"] == source]


def scp_to_snomed(source: str | None = None) -> dict[str, list[str]]:
    """SCP code (or heart-axis value) -> its SNOMED codes, in table order.

    ``source=None`` gives every row; ``"cinc2020"`` only the challenge's conversion (so NDT maps to
    T wave abnormal only); ``"study"`` only the original study's extra pair.
    """
    rows = _rows(source)
    result: dict[str, list[str]] = {}
    for scp, snomed in zip(rows["scp_code"], rows["snomed_code"]):
        result.setdefault(scp, []).append(snomed)
    return result


def snomed_to_scp(source: str | None = None) -> dict[str, list[str]]:
    """SNOMED code -> the SCP codes (or heart-axis values) mapped to it, in table order."""
    rows = _rows(source)
    result: dict[str, list[str]] = {}
    for scp, snomed in zip(rows["scp_code"], rows["snomed_code"]):
        result.setdefault(snomed, []).append(scp)
    return result


def with_heart_axis(scp_codes: Mapping[str, float], heart_axis: object) -> dict[str, float]:
    """A record's ``scp_codes`` plus its ``heart_axis`` value as one more key.

    The challenge derived left/right axis deviation and indeterminate axis from this column, so a
    protocol needs it to label those classes on PTB-XL. Missing axes (NaN, None, "") add nothing.
    Not for :func:`~ecg_transfer.labels.ptbxl_tasks.task_labels`: axis values are no SCP statements.
    """
    result = dict(scp_codes)
    if heart_axis is None or (isinstance(heart_axis, float) and math.isnan(heart_axis)):
        return result
    axis = str(heart_axis).strip()
    if axis:
        result[axis] = HEART_AXIS_LIKELIHOOD
    return result
