"""The ``val`` matrix of a CinC ``.mat`` file, checked before anything is allocated from its claims.

CinC sets store each record's ADC integers as ``val`` (n_leads x n_samples, int16) in a MATLAB v4
file (some tools write v5). A broken or hostile file can claim a huge matrix, hold floats already
in millivolts (scaled again by the header's gain they would be silently wrong), complex numbers, a
cell array, or nothing at all. :func:`inspect_val` reads only the file's headers and says what
``val`` is, refusing (``RecordError``) what cannot be read correctly; :func:`read_val` then reads it.

* MATLAB v4 (what the challenges ship) is parsed here: a 20-byte header per matrix, data
  column-major, so ``val`` (leads x samples) is stored sample by sample and reads straight into the
  package's (samples, leads) layout. The claimed size is checked against the file's size first.
* MATLAB v5 goes through ``scipy.io.whosmat``/``loadmat`` after the same size check (a compressed
  variable may expand at most ~1,032-fold, zlib's limit). v7.3 (HDF5) files are refused.
* Integer types other than int16 are converted with a note; float, complex and non-numeric
  ``val`` are refused.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import scipy.io

from ..errors import RecordError
from .files import open_regular

_V4_TYPES = {0: "f8", 1: "f4", 2: "i4", 3: "i2", 4: "u2", 5: "u1"}
_V5_CLASSES = {
    "int8": "i1",
    "uint8": "u1",
    "int16": "i2",
    "uint16": "u2",
    "int32": "i4",
    "uint32": "u4",
    "int64": "i8",
    "uint64": "u8",
    "single": "f4",
    "double": "f8",
}
_ZLIB_MAX_RATIO = 1032  # deflate cannot expand more than this
_MAX_V4_MATRICES = 64
_MI_COMPRESSED = 15
_EXACT_INT = 2**53  # float64 holds every integer up to this exactly


@dataclass(frozen=True)
class ValInfo:
    """Where and what ``val`` is: MATLAB shape (leads, samples), element type, v4 data offset."""

    path: Path
    version: int  # 4 or 5
    shape: tuple[int, int]
    dtype: np.dtype
    offset: int = 0  # v4 only
    note: str | None = None  # a conversion the reader makes (non-int16 integers)


def _v4_header(raw: bytes) -> tuple[str, int, int, int, int, int] | None:
    """(byte order, type code, rows, cols, imagf, name length) of a v4 matrix header, or None."""
    for order in ("<", ">"):
        mopt, rows, cols, imagf, namlen = np.frombuffer(raw, dtype=f"{order}i4", count=5).tolist()
        machine = mopt // 1000
        if 0 <= mopt < 5000 and machine == (0 if order == "<" else 1):
            return order, mopt, rows, cols, imagf, namlen
    return None


def _inspect_v4(fh: BinaryIO, path: Path, record: str, size: int) -> ValInfo:
    """Walk the v4 matrices to ``val`` reading only their 20-byte headers and names."""
    pos, names = 0, []
    fh.seek(0)
    for _ in range(_MAX_V4_MATRICES):
        head = fh.read(20)
        if len(head) < 20:
            break
        parsed = _v4_header(head)
        if parsed is None:
            raise RecordError(record, f"{path.name} is not a MATLAB v4/v5 file (unreadable matrix header)")
        order, mopt, rows, cols, imagf, namlen = parsed
        if rows < 0 or cols < 0 or not 1 <= namlen <= 256:
            raise RecordError(record, f"{path.name}: corrupt MATLAB v4 header ({rows} x {cols}, name length {namlen})")
        name = fh.read(namlen).split(b"\0", 1)[0].decode("latin-1")
        kind, prec = (mopt // 100) % 10, (mopt // 10) % 10
        itemsize = np.dtype(_V4_TYPES.get(prec, "u1")).itemsize
        nbytes = rows * cols * itemsize * (2 if imagf else 1)
        start = pos + 20 + namlen
        if start + nbytes > size:
            raise RecordError(
                record,
                f"{path.name} holds {size:,} bytes but its matrix {name!r} claims "
                f"{rows} x {cols} ({start + nbytes:,} bytes): truncated or corrupt",
            )
        if name == "val":
            if kind != 0 or mopt % 10 != 0 or prec not in _V4_TYPES:
                raise RecordError(record, f"'val' in {path.name} is not a numeric matrix (MATLAB v4 type {mopt})")
            if imagf:
                raise RecordError(record, f"'val' in {path.name} is complex: refused")
            return ValInfo(path, 4, (rows, cols), np.dtype(order + _V4_TYPES[prec]), start)
        names.append(name)
        pos = start + nbytes
        fh.seek(pos)
    raise RecordError(record, f"MATLAB file {path.name} has no 'val' variable (found {sorted(names)})")


def _open(path: Path, record: str) -> io.BufferedReader:
    """``open_regular`` with the problem reported against ``record`` (the header), naming the file."""
    try:
        return open_regular(path, "signal file")
    except RecordError as exc:
        raise RecordError(record, f"{path.name}: {exc.problem}") from None


def _v5_compressed(head: bytes) -> bool:
    """Whether the first variable after the 128-byte v5 header is zlib-compressed."""
    if len(head) < 136:
        return False
    order = "<" if head[126:128] == b"IM" else ">"
    return int(np.frombuffer(head, dtype=f"{order}u4", count=1, offset=128)[0]) == _MI_COMPRESSED


def _inspect_v5(head: bytes, path: Path, record: str, size: int) -> ValInfo:
    try:
        variables = scipy.io.whosmat(str(path))
    except Exception as exc:  # scipy reports corruption with many exception types
        raise RecordError(record, f"cannot read MATLAB file {path.name} (truncated or corrupt?): {exc}") from None
    found = {name: (tuple(shape), cls) for name, shape, cls in variables}
    if "val" not in found:
        raise RecordError(record, f"MATLAB file {path.name} has no 'val' variable (found {sorted(found)})")
    shape, cls = found["val"]
    if cls not in _V5_CLASSES:
        raise RecordError(record, f"'val' in {path.name} is a MATLAB {cls} array, not a numeric matrix: refused")
    if len(shape) != 2:
        raise RecordError(record, f"'val' in {path.name} has shape {shape}, expected (n_leads, n_samples)")
    dtype = np.dtype(_V5_CLASSES[cls])
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    limit = size * (_ZLIB_MAX_RATIO if _v5_compressed(head) else 1)
    if nbytes > limit:
        raise RecordError(
            record,
            f"{path.name} holds {size:,} bytes but 'val' claims {shape[0]} x {shape[1]} "
            f"{cls} ({nbytes:,} bytes): truncated or corrupt",
        )
    return ValInfo(path, 5, (int(shape[0]), int(shape[1])), dtype)


def _check_type(info: ValInfo, record: str) -> ValInfo:
    kind, name = info.dtype.kind, info.dtype.name
    if kind == "f":
        raise RecordError(
            record,
            f"'val' in {info.path.name} is {name}, not integer ADC units (CinC signals are "
            "int16); a float matrix may already be in mV, and scaling it by the header's "
            "gain would give a wrong signal: refused",
        )
    if kind not in "iu":
        raise RecordError(record, f"'val' in {info.path.name} has type {name}: refused")
    if name == "int16":
        return info
    note = f"'val' in {info.path.name} is {name}, not int16: converted from integer ADC units"
    return ValInfo(info.path, info.version, info.shape, info.dtype, info.offset, note)


def inspect_val(path: Path, record: str) -> ValInfo:
    """What ``val`` in ``path`` is, from the file's headers only; RecordError naming ``record``."""
    with _open(path, record) as fh:  # one open (stat-checked first) for every header read
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(136)
        if len(head) >= 4 and 0 in head[:4]:
            info = _inspect_v4(fh, path, record, size)
        elif head.startswith(b"MATLAB 7.3"):
            raise RecordError(record, f"{path.name} is a MATLAB v7.3 (HDF5) file; save it as v4 or v5: refused")
        elif head.startswith(b"MATLAB 5.0") and len(head) >= 128:
            info = _inspect_v5(head, path, record, size)
        else:
            raise RecordError(
                record, f"cannot read MATLAB file {path.name} (truncated or corrupt?): no MATLAB v4 or v5 header"
            )
    return _check_type(info, record)


def read_val(info: ValInfo, record: str) -> np.ndarray:
    """``val`` as (n_samples, n_leads) in its stored integer type (native byte order)."""
    rows, cols = info.shape
    if info.version == 4:
        data = np.empty(rows * cols, dtype=info.dtype)
        with _open(info.path, record) as fh:
            fh.seek(info.offset)
            got = fh.readinto(data.data.cast("B"))
        if got != data.nbytes:
            raise RecordError(record, f"{info.path.name} ended after {got:,} of {data.nbytes:,} bytes of 'val'")
        val = data.reshape(cols, rows)  # column-major (leads x samples) == row-major (samples x leads)
    else:
        try:
            val = np.asarray(scipy.io.loadmat(str(info.path), variable_names=["val"])["val"])
        except Exception as exc:
            raise RecordError(
                record, f"cannot read MATLAB file {info.path.name} (truncated or corrupt?): {exc}"
            ) from None
        if val.dtype.kind not in "iu" or val.shape != info.shape:
            raise RecordError(
                record,
                f"'val' in {info.path.name} is {val.dtype} {val.shape}, its header said "
                f"{info.dtype} {info.shape}: corrupt",
            )
        val = val.T
    if val.dtype.itemsize == 8 and val.size and int(np.abs(val).max()) > _EXACT_INT:
        raise RecordError(
            record,
            f"'val' in {info.path.name} holds integers beyond 2^53 that no float64 "
            "millivolt value can represent exactly: refused",
        )
    return val.astype(val.dtype.newbyteorder("="), copy=False)
