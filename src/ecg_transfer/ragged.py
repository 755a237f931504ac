"""Records of one lead count and any lengths, as views into one flat float32 buffer.

ECG collections are ragged: CinC 2021 mixes 6-144 s records at 500 Hz, 30-minute INCART records
and 10 s PTB-XL ones. Padding them to the longest record (the signal cache's first layout) made a
cache of 371 records 979 MB. :class:`RaggedSignals` keeps each record at its own length: record
``i`` is a ``(n_leads, lengths[i])`` view of a ``(n_leads, pitch[i])`` block that starts at element
``offsets[i]`` of ``data`` (a memory map for a cache, so nothing is read until a crop is taken).

``starts`` / ``lengths`` select the part of each block that is used, so narrowing every record to
its first or centre N seconds (:meth:`RaggedSignals.limit`) is a new view, not a copy. A plain
padded ``(N, C, T)`` array with valid lengths is the same thing with ``pitch = T``
(:meth:`RaggedSignals.from_padded`), which is how the training engine accepts both: it calls
:func:`as_signals` on whatever it is given.

A slot of length 0 is a record that could not be read (the cache keeps its position, as the
padded layout kept an all-zero row, so row numbers equal positions in the dataset's index).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

SPANS = ("first", "centre")


class RaggedSignals:
    """``len()`` records; ``record(i)`` is a ``(n_leads, lengths[i])`` float32 view (no copy)."""

    def __init__(
        self,
        data: np.ndarray,
        offsets: Sequence[int] | np.ndarray,
        lengths: Sequence[int] | np.ndarray,
        n_leads: int,
        *,
        pitch: Sequence[int] | np.ndarray | None = None,
        starts: Sequence[int] | np.ndarray | None = None,
        leads: Sequence[str] | None = None,
    ):
        self._keep = data  # a memmap stays open while views exist
        self.data = np.asarray(data).reshape(-1)  # plain ndarray view: cheaper to slice than np.memmap
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.n_leads = int(n_leads)
        self.pitch = self.lengths.copy() if pitch is None else np.asarray(pitch, dtype=np.int64)
        self.starts = np.zeros_like(self.lengths) if starts is None else np.asarray(starts, dtype=np.int64)
        self.leads = None if leads is None else tuple(str(x) for x in leads)
        self._check()

    def _check(self) -> None:
        n = self.lengths.shape
        if self.lengths.ndim != 1 or self.offsets.shape != n or self.pitch.shape != n or self.starts.shape != n:
            raise ValueError("offsets, lengths, pitch and starts must be 1-D arrays of one length")
        if self.n_leads < 1 or (self.leads is not None and len(self.leads) != self.n_leads):
            raise ValueError(f"n_leads {self.n_leads} does not match leads {self.leads}")
        if n[0] == 0:
            return
        if (self.lengths < 0).any() or (self.starts < 0).any() or (self.starts + self.lengths > self.pitch).any():
            raise ValueError("each record's used span [start, start + length) must lie inside its block")
        end = self.offsets + self.n_leads * self.pitch
        if (self.offsets < 0).any() or int(end.max()) > self.data.size:
            raise ValueError(f"record blocks reach element {int(end.max())} of a buffer of {self.data.size}")

    # -- constructors -------------------------------------------------------------------------------
    @classmethod
    def from_padded(cls, X: np.ndarray, lengths: Sequence[int] | np.ndarray | None = None) -> "RaggedSignals":
        """A padded ``(N, C, T)`` array whose row ``i`` holds ``lengths[i]`` samples of signal
        (all ``T`` when None). No copy when ``X`` is C-contiguous (a ``np.load`` memmap is)."""
        X = np.asarray(X)  # a memmap's base stays referenced by the view
        if X.ndim != 3:
            raise ValueError(f"expected an (N, C, T) array, got shape {X.shape}")
        n, c, t = X.shape
        lens = np.full(n, t, dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
        if lens.shape != (n,):
            raise ValueError(f"{lens.size} lengths for {n} records")
        if (lens > t).any() or (lens < 0).any():
            raise ValueError(f"lengths must lie in 0..{t} (the array's samples per record)")
        flat = X if X.flags.c_contiguous else np.ascontiguousarray(X)
        return cls(flat, np.arange(n, dtype=np.int64) * c * t, lens, c, pitch=np.full(n, t, dtype=np.int64))

    @classmethod
    def from_records(cls, records: Sequence[np.ndarray], leads: Sequence[str] | None = None) -> "RaggedSignals":
        """Concatenate ``(C, n_i)`` arrays into one in-memory buffer (tests, small user data)."""
        if not len(records):
            raise ValueError("no records")
        arrays = [np.asarray(r, dtype=np.float32) for r in records]
        c = arrays[0].shape[0]
        if any(a.ndim != 2 or a.shape[0] != c for a in arrays):
            raise ValueError(f"every record must be (leads, samples) with {c} leads")
        lengths = np.array([a.shape[1] for a in arrays], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths * c)[:-1]]).astype(np.int64)
        data = np.concatenate([a.ravel() for a in arrays]) if lengths.sum() else np.zeros(0, np.float32)
        return cls(data, offsets, lengths, c, leads=leads)

    # -- access ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.lengths.size)

    def record(self, i: int) -> np.ndarray:
        """Record ``i`` as a ``(n_leads, lengths[i])`` view of the buffer."""
        o, p, s = int(self.offsets[i]), int(self.pitch[i]), int(self.starts[i])
        return self.data[o : o + self.n_leads * p].reshape(self.n_leads, p)[:, s : s + int(self.lengths[i])]

    def __getitem__(self, i: int) -> np.ndarray:
        if not isinstance(i, (int, np.integer)):
            raise TypeError("RaggedSignals is indexed by one record number; use record(i) per record")
        return self.record(int(i))

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape of the padded array these records stand for: (records, leads, longest)."""
        return len(self), self.n_leads, int(self.lengths.max()) if len(self) else 0

    ndim = 3

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def total_samples(self) -> int:
        """Samples per lead summed over the records' used spans."""
        return int(self.lengths.sum())

    # -- views -------------------------------------------------------------------------------------------
    def _view(self, starts: np.ndarray, lengths: np.ndarray) -> "RaggedSignals":
        return RaggedSignals(
            self._keep, self.offsets, lengths, self.n_leads, pitch=self.pitch, starts=starts, leads=self.leads
        )

    def limit(self, max_samples: int | None, where: str = "first") -> "RaggedSignals":
        """Each record narrowed to at most ``max_samples``: its ``first`` ones or its ``centre``
        (the start rounded down). Shorter records are kept whole. A view; None: unchanged."""
        if max_samples is None:
            return self
        if where not in SPANS:
            raise ValueError(f"where must be one of {SPANS}, got {where!r}")
        if int(max_samples) < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        lengths = np.minimum(self.lengths, int(max_samples))
        shift = (self.lengths - lengths) // 2 if where == "centre" else np.zeros_like(lengths)
        return self._view(self.starts + shift, lengths)

    def with_lengths(self, lengths: Sequence[int] | np.ndarray) -> "RaggedSignals":
        """The first ``lengths[i]`` samples of each record (the padded arrays' meaning of lengths)."""
        lens = np.asarray(lengths, dtype=np.int64)
        if lens.shape != self.lengths.shape:
            raise ValueError(f"{lens.size} lengths for {len(self)} records")
        if (lens < 0).any():
            raise ValueError("lengths must be >= 0")
        return self._view(self.starts, np.minimum(lens, self.lengths))

    def __repr__(self) -> str:
        return (
            f"RaggedSignals({len(self)} records, {self.n_leads} leads, {self.total_samples} samples per lead, "
            f"longest {self.shape[2]})"
        )


def as_signals(X: "np.ndarray | RaggedSignals", lengths: Sequence[int] | np.ndarray | None = None) -> RaggedSignals:
    """What the training engine calls on its input: a :class:`RaggedSignals` (narrowed to
    ``lengths`` when given) or a padded ``(N, C, T)`` array with optional valid ``lengths``."""
    if isinstance(X, RaggedSignals):
        return X if lengths is None else X.with_lengths(lengths)
    return RaggedSignals.from_padded(X, lengths)


def chunk_by_size(sizes: Sequence[int] | np.ndarray, budget: int, max_items: int | None = None) -> list[slice]:
    """Consecutive groups of items whose sizes add up to at most ``budget`` (and at most
    ``max_items`` items); an item larger than the budget is a group of its own. Bounds the memory
    of whatever is processed one group at a time (records read, windows predicted, values fitted)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    groups, start, total = [], 0, 0
    for i, size in enumerate(sizes.tolist()):
        full = max_items is not None and i - start >= max_items
        if i > start and (total + size > budget or full):
            groups.append(slice(start, i))
            start, total = i, 0
        total += size
    if sizes.size:
        groups.append(slice(start, sizes.size))
    return groups
