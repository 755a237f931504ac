"""Named label protocols: one label space that both PTB-XL (SCP codes) and CinC-format sets such
as G12EC (SNOMED-CT ``#Dx`` codes) can be encoded into, so a model trained on one is scored on the
other class by class.

* ``seed18``: the original transfer study's 18 classes, the PTB-XL diagnostic statements with a
  G12EC counterpart (REFERENCE.md), named by SCP code, with RBBB 59118001 merged into CRBBB as the
  challenge scorer does (the study did not, its error 2).
* ``cinc2020``: the 24 scored CinC 2020 classes (27 codes, equivalent pairs merged), in the
  scorer's order, named by abbreviation (``CRBBB|RBBB`` for a merged pair). Their PTB-XL side is
  the challenge's own conversion (``source = cinc2020`` rows of ``data/scp_to_snomed.csv``). Two
  classes, LAD and RAD, come from PTB-XL's ``heart_axis`` column, not from ``scp_codes`` (see
  ``mapping.with_heart_axis``); Brady and PVC|VPB have no PTB-XL counterpart at all, so their
  column stays zero on PTB-XL.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
import pandas as pd

from .mapping import snomed_to_scp, with_heart_axis
from .ptbxl_tasks import parse_scp_codes
from .snomed import equivalent_codes, scored_classes, snomed_lookup, unknown_codes

__all__ = ["LabelClass", "LabelProtocol", "PROTOCOLS", "get_protocol", "unknown_codes"]

PROTOCOLS: tuple[str, ...] = ("seed18", "cinc2020")

#: The original study's 18 classes: PTB-XL SCP code -> G12EC SNOMED code (REFERENCE.md).
SEED18_PAIRS: tuple[tuple[str, str], ...] = (
    ("1AVB", "270492004"),
    ("2AVB", "195042002"),
    ("CLBBB", "164909002"),
    ("CRBBB", "713427006"),
    ("ILBBB", "251120003"),
    ("IRBBB", "713426002"),
    ("ISCAN", "426434006"),
    ("ISCIN", "425419005"),
    ("ISCLA", "425623009"),
    ("IVCD", "698252002"),
    ("LAFB", "445118002"),
    ("LAO/LAE", "67741000119109"),
    ("LNGQT", "111975006"),
    ("LPFB", "445211001"),
    ("LVH", "164873001"),
    ("NDT", "428750005"),
    ("RVH", "89792004"),
    ("SEHYP", "266249003"),
)


@dataclass(frozen=True)
class LabelClass:
    """One class: positive when a record carries any of its SNOMED codes (CinC sets) or any of
    its SCP codes (PTB-XL)."""

    name: str
    snomed_codes: frozenset[str]
    scp_codes: frozenset[str]


def _column_index(classes: Sequence[LabelClass], attribute: str, expand) -> dict[str, list[int]]:
    index: dict[str, list[int]] = {}
    for j, label_class in enumerate(classes):
        for code in getattr(label_class, attribute):
            for key in expand(code):
                columns = index.setdefault(key, [])
                if j not in columns:
                    columns.append(j)
    return index


@dataclass(frozen=True)
class LabelProtocol:
    """An ordered set of classes with encoders for both code systems."""

    name: str
    classes: tuple[LabelClass, ...]
    description: str = ""

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    def encode_snomed(self, dx_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """``(N, C)`` uint8 multi-hot from each record's ``#Dx`` codes; the scorer's equivalences
        are applied (RBBB counts for a class holding CRBBB, SVPB for PAC, VPB for PVC). Codes
        outside the protocol set nothing; find unknown ones with :func:`unknown_codes`."""
        index = _column_index(self.classes, "snomed_codes", equivalent_codes)
        y = np.zeros((len(dx_lists), len(self.classes)), dtype=np.uint8)
        for i, codes in enumerate(dx_lists):
            if isinstance(codes, str):
                raise ValueError(
                    f"record {i}: Dx codes must be a list of codes, got the string {codes!r} (split it on commas first)"
                )
            for code in codes:
                for j in index.get(str(code).strip(), ()):
                    y[i, j] = 1
        return y

    def encode_scp(
        self, scp_dicts: Sequence[Mapping[str, float] | str], min_likelihood: float | None = None
    ) -> np.ndarray:
        """``(N, C)`` uint8 multi-hot from PTB-XL ``scp_codes`` (dicts or their string form).

        ``min_likelihood=None`` counts every key, as the benchmark and the challenge did; else only
        keys with likelihood >= it. Classes defined by heart axis (cinc2020 LAD, RAD, ...) need
        the axis added first: ``mapping.with_heart_axis(codes, row.heart_axis)``.
        """
        index = _column_index(self.classes, "scp_codes", lambda code: (code,))
        y = np.zeros((len(scp_dicts), len(self.classes)), dtype=np.uint8)
        for i, codes in enumerate(scp_dicts):
            if isinstance(codes, str):
                codes = parse_scp_codes(codes)
            for code, likelihood in codes.items():
                if min_likelihood is not None and likelihood < min_likelihood:
                    continue
                for j in index.get(code, ()):
                    y[i, j] = 1
        return y

    def encode_table(self, table: pd.DataFrame) -> np.ndarray:
        """Labels for a dataset adapter's index table, whichever dataset it comes from.

        CinC-format tables carry SNOMED ``dx`` lists; PTB-XL tables carry ``scp_codes`` (and
        ``heart_axis``, which the challenge used for the axis classes). This is the one place where
        both datasets enter the shared label space.
        """
        if "dx" in table.columns:
            return self.encode_snomed([list(d) for d in table["dx"]])
        if "scp_codes" in table.columns:
            axes = table["heart_axis"] if "heart_axis" in table.columns else [None] * len(table)
            return self.encode_scp([with_heart_axis(c, a) for c, a in zip(table["scp_codes"], axes)])
        raise ValueError("table has neither a 'dx' column (CinC) nor 'scp_codes' (PTB-XL)")


def _seed18() -> LabelProtocol:
    classes = tuple(
        LabelClass(scp, frozenset(equivalent_codes(snomed)), frozenset({scp})) for scp, snomed in SEED18_PAIRS
    )
    return LabelProtocol(
        "seed18",
        classes,
        "Original study's 18 G12EC classes (PTB-XL diagnostic statements with a SNOMED "
        "counterpart), RBBB 59118001 merged into CRBBB.",
    )


def _cinc2020() -> LabelProtocol:
    lookup = snomed_lookup()
    to_scp = snomed_to_scp(source="cinc2020")
    classes = []
    for codes in scored_classes():
        scp = frozenset(s for code in codes for s in to_scp.get(code, ()))
        name = "|".join(lookup[code].abbreviation for code in codes)
        classes.append(LabelClass(name, frozenset(codes), scp))
    return LabelProtocol(
        "cinc2020",
        tuple(classes),
        "The 24 scored PhysioNet/CinC 2020 classes (equivalent codes merged); PTB-XL side from the "
        "challenge's SCP->SNOMED conversion.",
    )


@functools.cache
def get_protocol(name: str) -> LabelProtocol:
    """The protocol called ``name`` (one of :data:`PROTOCOLS`)."""
    builders = {"seed18": _seed18, "cinc2020": _cinc2020}
    if name not in builders:
        raise ConfigError(f"unknown label protocol {name!r}; allowed: {', '.join(PROTOCOLS)}")
    return builders[name]()
