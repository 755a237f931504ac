"""What every dataset adapter provides, so the cache, the splits and the CLI treat them alike."""

from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import Iterator, Protocol, Sequence

import numpy as np
import pandas as pd

STANDARD_LEADS: tuple[str, ...] = (
    "I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6",
)


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
