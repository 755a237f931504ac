"""What every dataset adapter provides, so the cache, the splits and the CLI treat them alike."""

from __future__ import annotations

import math
from dataclasses import dataclass, asdict
from typing import Iterator, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd

STANDARD_LEADS: tuple[str, ...] = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")

#: Sampling rates a header may state. ECGs are recorded at 100 Hz to a few kHz; a rate outside
#: these bounds is a broken header (1 Hz once made a 1.7 GB cache for 75 records).
MIN_FS: float = 50.0
MAX_FS: float = 10_000.0


def fs_problem(fs: float) -> str | None:
    """Why ``fs`` (Hz, from a header) cannot be used, or None when it can."""
    if not math.isfinite(fs) or fs <= 0:
        return f"sampling rate {fs:g} Hz is not a positive number"
    if fs < MIN_FS or fs > MAX_FS:
        return f"sampling rate {fs:g} Hz is outside {MIN_FS:g}-{MAX_FS:g} Hz (not an ECG rate): refused"
    return None


@dataclass(frozen=True)
class RecordProblem:
    """One problem found in one record; listed in the summary when the record is skipped."""

    record: str
    problem: str

    def to_dict(self) -> dict:
        return asdict(self)


class DatasetAdapter(Protocol):
    """The contract between a dataset on disk and the rest of the package.

    ``index()`` is cheap (headers/metadata only) and returns one row per record with at least the
    columns ``record_id`` (str, unique), ``fs`` (float, Hz), ``n_samples`` (int) and ``n_leads``
    (int). ``read(record_id)`` returns the signal as float64 millivolts, shape
    ``(n_samples, n_leads)`` (wfdb's layout), or raises :class:`ecg_transfer.errors.RecordError`.
    """

    name: str

    def index(self) -> pd.DataFrame: ...

    def read(self, record_id: str) -> np.ndarray: ...

    def iter_signals(self, record_ids: Sequence[str]) -> Iterator[tuple[str, np.ndarray | Exception]]: ...

    def fingerprint(self) -> dict: ...


@runtime_checkable
class BlockReader(Protocol):
    """An adapter that can also read a chunk of records of one shape at once (PTB-XL): the cache
    and the audit use it where it exists (``isinstance(adapter, BlockReader)``)."""

    def read_block(self, record_ids: Sequence[str]) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """``(block (records, leads, samples), [(record, problem), ...])``; a problem record's rows are
        not to be used."""
        ...
