"""Records to predict on, from whatever the user has: WFDB records, CinC-format records, folders of
them, or ``.npy`` arrays -- each turned into one :class:`RawRecord` or one :class:`RecordProblem`.

Reading is lazy (one record at a time, ``.npy`` files memory-mapped), so a folder of ten thousand
records never sits in memory at once, and a bad record becomes a problem naming it while the others
are still read.

What an INPUT may be:

- a record: ``DIR/NAME``, ``DIR/NAME.hea``, or the signal file ``DIR/NAME.dat`` / ``DIR/NAME.mat``.
  A header whose signal file ends in ``.mat`` is a CinC 2020/2021 record (MATLAB v4 ``val``, read by
  :mod:`ecg_transfer.datasets.cinc`); any other is read as WFDB (:func:`~ecg_transfer.datasets.wfdb_fast.read_physical`).
  Lead names come from the header. The record id is ``NAME``.
- a folder: every ``*.hea`` and ``*.npy`` under it (recursively, sorted).
- a ``.npy`` array of millivolts at the rate given by ``fs`` (``--fs``; a ``.npy`` file carries no
  rate), leads in the model's training order (there are no lead names to reorder by):

  * 2-D: one record, ``(leads, samples)`` or ``(samples, leads)``; the axis whose length is the
    model's lead count is the lead axis (a square array is refused as ambiguous). Record id: the
    file's stem.
  * 3-D: ``(records, leads, samples)``, strictly (an array that looks like ``(records, samples,
    leads)`` is refused with the transpose to apply). Record ids: ``STEM[i]``.

Record ids are made unique: when two inputs share one, both are named by their path instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..datasets.base import RecordProblem
from ..errors import RecordError

RECORD_SUFFIXES = (".hea", ".dat", ".mat")


@dataclass
class RawRecord:
    """One record as read: ``signal`` is ``(leads, samples)`` millivolts at ``fs`` Hz."""

    record_id: str
    signal: np.ndarray
    fs: float
    leads: tuple[str, ...] | None  # None: no names (a .npy array), assumed in the model's order
    source: str  # the file it came from


def _header_signal_file(hea: Path) -> str | None:
    """The first signal line's file name, or None when the header has no signal line."""
    from ..datasets.cinc import decode_header_bytes

    text = decode_header_bytes(hea.read_bytes(), hea)
    body = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if len(body) < 2:
        return None
    return body[1].split()[0]


def read_record(path: str | Path) -> RawRecord:
    """Read one WFDB or CinC-format record (see the module docstring); raises :class:`RecordError`."""
    path = Path(path)
    base = path.with_suffix("") if path.suffix.lower() in RECORD_SUFFIXES else path
    hea = base.with_name(base.name + ".hea")
    if not hea.is_file():
        raise RecordError(str(path), f"no header {hea.name} beside it (not a WFDB or CinC-format record)")
    try:
        signal_file = _header_signal_file(hea)
    except OSError as exc:
        raise RecordError(str(hea), f"cannot read header: {exc.strerror or exc}") from None
    if signal_file is None:
        raise RecordError(str(hea), "header has no signal line")
    if signal_file.lower().endswith(".mat"):
        from ..datasets.cinc import load_mat_signal, parse_header

        header = parse_header(hea)
        signal = load_mat_signal(header)  # (samples, leads) float64 mV
        fs, leads = header.fs, tuple(header.leads)
    else:
        from ..datasets.wfdb_fast import read_physical

        signal, fs, leads = read_physical(base)
        leads = tuple(leads)
    return RawRecord(base.name, np.ascontiguousarray(np.asarray(signal).T), float(fs), leads, str(hea))


def _npy_layout(shape: tuple[int, ...], n_leads: int, name: str) -> str:
    """``"CT"``, ``"TC"`` (2-D, one record) or ``"NCT"``; RecordError naming the file otherwise."""
    if len(shape) == 2:
        a, b = shape
        if a == n_leads and b == n_leads:
            raise RecordError(
                name,
                f"array of shape {shape} is ambiguous: both axes have {n_leads} entries; "
                f"a record needs (leads, samples) with more than {n_leads} samples",
            )
        if a == n_leads:
            return "CT"
        if b == n_leads:
            return "TC"
        raise RecordError(
            name,
            f"array of shape {shape}: neither axis has the model's {n_leads} leads; "
            "expected (leads, samples), (samples, leads) or (records, leads, samples)",
        )
    if len(shape) == 3:
        if shape[1] == n_leads:
            return "NCT"
        hint = (
            "; it looks like (records, samples, leads): save np.transpose(x, (0, 2, 1)) instead"
            if shape[2] == n_leads
            else ""
        )
        raise RecordError(
            name,
            f"array of shape {shape}: a 3-D array must be (records, leads, samples) with "
            f"{n_leads} leads on axis 1{hint}",
        )
    raise RecordError(name, f"array of shape {shape}: expected 2-D (one record) or 3-D (records, leads, samples)")


def iter_npy(path: str | Path, fs: float | None, n_leads: int) -> Iterator[RawRecord | RecordProblem]:
    """The records of one ``.npy`` file (see the module docstring), memory-mapped."""
    path = Path(path)
    name = str(path)
    try:
        if fs is None:
            raise RecordError(name, "a .npy array carries no sampling rate: give it (--fs HZ)")
        if not (fs > 0 and np.isfinite(fs)):
            raise RecordError(name, f"sampling rate {fs!r} is not a positive number")
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise RecordError(name, f"cannot read it as a NumPy array: {exc}") from None
        if arr.dtype.kind not in "iuf":
            raise RecordError(name, f"array has dtype {arr.dtype}; expected numbers (millivolts)")
        layout = _npy_layout(tuple(arr.shape), n_leads, name)
    except RecordError as exc:
        yield RecordProblem(exc.record, exc.problem)
        return
    if layout == "CT":
        yield RawRecord(path.stem, np.asarray(arr), float(fs), None, name)
    elif layout == "TC":
        yield RawRecord(path.stem, np.ascontiguousarray(np.asarray(arr).T), float(fs), None, name)
    else:
        for i in range(arr.shape[0]):
            yield RawRecord(f"{path.stem}[{i}]", np.asarray(arr[i]), float(fs), None, name)


def _expand(inputs: Iterable[str | Path]) -> Iterator[Path | RecordProblem]:
    """Inputs -> record paths and .npy files (folders expanded), or a problem for an unusable input."""
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(p.rglob("*.hea")) + sorted(p.rglob("*.npy"))
            found = [f for f in found if f.is_file() and not f.name.startswith("._")]
            if not found:
                yield RecordProblem(str(p), "folder holds no record (*.hea) and no .npy array")
            yield from found
        elif p.suffix.lower() == ".npy":
            yield p if p.is_file() else RecordProblem(str(p), "file does not exist")
        elif p.is_file() or p.with_name(p.name + ".hea").is_file():
            yield p
        else:
            yield RecordProblem(str(p), f"no such file, folder or record (looked for it and for {p.name}.hea)")


def iter_inputs(inputs: Sequence[str | Path], *, fs: float | None, n_leads: int) -> Iterator[RawRecord | RecordProblem]:
    """Every record of every input, in order, read lazily; unreadable ones as problems."""
    for p in _expand(inputs):
        if isinstance(p, RecordProblem):
            yield p
        elif p.suffix.lower() == ".npy":
            yield from iter_npy(p, fs, n_leads)
        else:
            try:
                yield read_record(p)
            except RecordError as exc:
                yield RecordProblem(exc.record, exc.problem)


def unique_ids(record_ids: Sequence[str], sources: Sequence[str]) -> list[str]:
    """``record_ids`` with every id shared by several records replaced by its source path (without the
    extension, plus ``[i]`` for rows of a 3-D array), so that each output row names one record."""
    counts: dict[str, int] = {}
    for r in record_ids:
        counts[r] = counts.get(r, 0) + 1
    out = []
    for rid, src in zip(record_ids, sources):
        if counts[rid] == 1:
            out.append(rid)
            continue
        stem = Path(src).stem
        row = rid[len(stem) :] if rid.startswith(stem) else ""
        out.append(str(Path(src).with_suffix("")) + row)
    return out
