"""Leads by name: every record is read in the standard order I, II, III, aVR, aVL, aVF, V1-V6.

Files name their leads in many spellings (``aVR``, ``AVR``, ``avr``; ``DI``/``DII``/``DIII`` in
European exports; ``Lead I``) and in any order (a V1-first record, the PTB records of CinC 2021 with
the Frank leads vx, vy, vz after the twelve). Reading columns by position would train on the wrong
lead without a word, so every adapter maps names to the standard leads here and picks the columns
by name. Leads that are not standard (vx, vy, vz, ...) are ignored; a standard lead that is wanted
but absent makes the record unusable (:class:`RecordError` naming which leads are missing).

A model for fewer leads (1, 2, 6, ...) reads a subset: ``[task] leads = ["I", "II"]``, always in
the standard order.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError, RecordError
from .base import STANDARD_LEADS

#: How the standard leads are written in messages (the canonical names are upper-case).
DISPLAY_NAMES: dict[str, str] = {lead: lead.replace("AV", "aV") for lead in STANDARD_LEADS}
#: The six limb leads, a common subset.
LIMB_LEADS: tuple[str, ...] = STANDARD_LEADS[:6]

# Spellings other than the name itself (compared upper-case, after dropping a "LEAD" prefix).
_EXTRA_ALIASES: dict[str, str] = {"DI": "I", "DII": "II", "DIII": "III", "D1": "I", "D2": "II", "D3": "III"}
_PREFIX = re.compile(r"^LEAD[\s_\-]*")


def canonical_lead(name: str) -> str | None:
    """The standard lead ``name`` denotes (``"avr"`` -> ``"AVR"``), or None for any other lead."""
    key = _PREFIX.sub("", str(name).strip().upper()).strip()
    if key in STANDARD_LEADS:
        return key
    return _EXTRA_ALIASES.get(key)


def display(leads: Sequence[str]) -> str:
    """``["AVR", "V1"]`` -> ``"aVR, V1"`` for messages."""
    return ", ".join(DISPLAY_NAMES.get(ld, ld) for ld in leads)


def lead_columns(names: Sequence[str], wanted: Sequence[str], record: object) -> np.ndarray:
    """Column of each ``wanted`` standard lead in a record whose leads are ``names``.

    Raises :class:`RecordError` naming ``record`` when two names denote the same standard lead
    (``aVR`` and ``AVR``) or when wanted leads are missing (all of them listed).
    """
    names, wanted = tuple(names), tuple(wanted)
    found = _known_columns(names, wanted)
    if found is None:
        found = _columns(names, wanted, str(record))  # raises, naming the record
    return np.array(found, dtype=np.intp)


@functools.lru_cache(maxsize=256)
def _known_columns(names: tuple[str, ...], wanted: tuple[str, ...]) -> tuple[int, ...] | None:
    """Memo of the usable lead layouts (a set has a handful): the cache reads 20,000 records."""
    try:
        return _columns(names, wanted, "")
    except RecordError:
        return None


def _columns(names: tuple[str, ...], wanted: tuple[str, ...], record: str) -> tuple[int, ...]:
    position: dict[str, int] = {}
    for i, name in enumerate(names):
        lead = canonical_lead(name)
        if lead is None:
            continue
        if lead in position:
            raise RecordError(
                record,
                f"leads {names[position[lead]]!r} and {name!r} both name lead "
                f"{DISPLAY_NAMES[lead]}; which one to use is ambiguous",
            )
        position[lead] = i
    missing = [lead for lead in wanted if lead not in position]
    if missing:
        raise RecordError(
            record,
            f"missing lead(s) {display(missing)} (the record has {', '.join(names)}); "
            "record skipped (configure [task] leads to train on a subset)",
        )
    return tuple(position[lead] for lead in wanted)


def parse_leads(value: object, key: str = "task.leads") -> tuple[str, ...]:
    """A lead subset from a config: any standard names or aliases, returned in the standard order.

    ``None`` means all twelve. Unknown names, repeats and an empty list are :class:`ConfigError`.
    """
    if value is None:
        return STANDARD_LEADS
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f'{key}: must be a non-empty list of lead names such as ["I", "II"], got {value!r}')
    chosen: list[str] = []
    for name in value:
        lead = canonical_lead(name) if isinstance(name, str) else None
        if lead is None:
            raise ConfigError(f"{key}: {name!r} is not a standard lead; allowed: {display(STANDARD_LEADS)}")
        if lead in chosen:
            raise ConfigError(f"{key}: lead {DISPLAY_NAMES[lead]} is listed twice")
        chosen.append(lead)
    return tuple(lead for lead in STANDARD_LEADS if lead in chosen)
