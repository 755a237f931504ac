"""A fast, strict reader for the plain WFDB records that PTB-XL ships (format 16, one .dat file).

``wfdb.rdrecord`` costs about 6 ms a record, mostly in Python header handling; the PTB-XL cache
reads 21,837 of them, so that alone would be over two minutes. Headers of the plain kind
(one signal file, format 16, no byte offset, skew or multi-frame samples) are parsed here in a few
microseconds and the samples read with ``numpy.fromfile``; every other header is handed to
``wfdb`` itself. Both paths give the same float64 millivolts as ``wfdb.rdsamp`` (tested bit for bit),
and both check the signal against its header (length, lead count, checksums) so that a truncated
or corrupt file becomes a :class:`~ecg_transfer.errors.RecordError`, never a wrong array.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from typing import Sequence

import numpy as np
import wfdb
from wfdb.io._signal import BYTES_PER_SAMPLE

from ..errors import RecordError
from .base import fs_problem
from .files import open_regular_fd, read_small_file, readinto_fd, regular_file_size, sibling_file
from .leads import lead_columns

# WFDB gain field: ADC_GAIN(BASELINE)/UNITS, baseline and units optional ("1000/mV", "1000.0(0)/mV").
_GAIN = re.compile(
    r"^(?P<gain>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?:\((?P<baseline>[-+]?\d+)\))?(?:/(?P<units>\S+))?$"
)
WFDB_DEFAULT_GAIN = 200.0  # WFDB: a zero or missing ADC gain means 200 units per physical unit
_GAIN_CACHE: dict[str, tuple[float, int | None, str]] = {}
_DIGITAL_NAN_FMT16 = -32768


@dataclass(frozen=True)
class PlainHeader:
    """The fields of a plain format-16 header that decide how its samples become millivolts."""

    record_name: str
    n_sig: int
    fs: float
    sig_len: int
    dat_name: str
    sig_name: tuple[str, ...]
    gain: np.ndarray  # (n_sig,) float64
    baseline: np.ndarray  # (n_sig,) int64
    units: tuple[str, ...]
    init_value: np.ndarray  # (n_sig,) int64
    checksum: np.ndarray  # (n_sig,) int64


def parse_plain_header(text: str) -> PlainHeader | None:
    """Parse a plain header, or return None when it needs ``wfdb``'s general parser."""
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#") and not ln.isspace()]
    if not lines:
        return None
    rec = lines[0].split()
    if len(rec) < 4 or "/" in rec[0] or "/" in rec[2] or "(" in rec[2]:
        return None  # multi-segment, counter frequency or missing length
    try:
        n_sig, fs, sig_len = int(rec[1]), float(rec[2]), int(rec[3])
    except ValueError:
        return None
    if n_sig < 1:
        return None
    try:
        return _plain_signals(rec, n_sig, fs, sig_len, lines)
    except ValueError:  # a non-integer field: wfdb's general reader says what is wrong
        return None


def _plain_signals(rec: list[str], n_sig: int, fs: float, sig_len: int, lines: list[str]) -> PlainHeader | None:
    sig_lines = [ln.split() for ln in lines[1 : 1 + n_sig]]
    if len(sig_lines) != n_sig or any(len(f) < 9 for f in sig_lines):
        return None
    if any(f[0] != sig_lines[0][0] or f[1] != "16" for f in sig_lines):
        return None
    gains, baselines, units = [], [], []
    for f in sig_lines:
        gain_field = f[2]
        cached = _GAIN_CACHE.get(gain_field)
        if cached is None:
            try:
                cached = _GAIN_CACHE.setdefault(gain_field, parse_gain_field(gain_field))
            except ValueError:
                return None  # let wfdb's general reader say what is wrong
        gain, baseline, unit = cached
        gains.append(gain)
        baselines.append(baseline if baseline is not None else int(f[4]))
        units.append(unit)
    ints = np.array([(int(f[5]), int(f[6])) for f in sig_lines], dtype=np.int64).reshape(n_sig, 2)
    return PlainHeader(
        record_name=rec[0],
        n_sig=n_sig,
        fs=fs,
        sig_len=sig_len,
        dat_name=sig_lines[0][0],
        sig_name=tuple(" ".join(f[8:]) for f in sig_lines),
        gain=np.array(gains, dtype=np.float64),
        baseline=np.array(baselines, dtype=np.int64),
        units=tuple(units),
        init_value=ints[:, 0],
        checksum=ints[:, 1],
    )


def parse_gain_field(text: str) -> tuple[float, int | None, str]:
    """``'1000.0(0)/mV'`` -> (gain, baseline or None, units); WFDB semantics, strict syntax.

    Baseline ``None`` means "not written": WFDB then uses the ADC zero. Raises ``ValueError`` on
    anything wfdb would silently misread, and on a gain that is 0 or negative: WFDB's rule reads
    gain 0 as "uncalibrated" and substitutes 200 adu per unit (``wfdb.rdsamp`` does), so the
    millivolts would be a guess; a negative gain turns the lead upside down.
    """
    m = _GAIN.match(text)
    if m is None:
        raise ValueError(f"gain field {text!r} is not GAIN[(BASELINE)][/UNITS]")
    gain = float(m.group("gain"))
    if not math.isfinite(gain):
        raise ValueError(f"gain field {text!r}: gain is not finite")
    if gain == 0:
        raise ValueError(
            f"gain field {text!r}: gain 0 means the signal is uncalibrated (WFDB then assumes "
            f"{WFDB_DEFAULT_GAIN:g} adu per unit, so its amplitude in mV is unknown): refused"
        )
    if gain < 0:
        raise ValueError(
            f"gain field {text!r}: gain {gain:g} is negative (the lead would be read upside down): refused"
        )
    baseline = int(m.group("baseline")) if m.group("baseline") is not None else None
    units = m.group("units") or "mV"
    return gain, baseline, units


def _read_header_text(hea: Path) -> str:
    raw = read_small_file(hea, "header")
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise RecordError(str(hea), "header is not valid text (non-ASCII bytes)") from None


def _signal_lines(text: str, hea: Path) -> tuple[list[str], list[list[str]]]:
    """(record line tokens, signal line tokens) of a single-segment header; RecordError otherwise."""
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise RecordError(str(hea), "header has no record line")
    rec = lines[0].split()
    if "/" in rec[0]:
        raise RecordError(str(hea), f"multi-segment record {rec[0]!r} is not supported")
    if len(rec) < 2 or not rec[1].isdigit() or int(rec[1]) < 1:
        raise RecordError(str(hea), f"record line {lines[0]!r}: signal count is not a positive integer")
    n_sig = int(rec[1])
    sig = [ln.split() for ln in lines[1 : 1 + n_sig]]
    if len(sig) != n_sig:
        raise RecordError(str(hea), f"record line declares {n_sig} signals but the header has {len(sig)} signal lines")
    return rec, sig


def _check_general_header(base: Path, hea: Path, text: str) -> None:
    """Before wfdb reads anything: rate in range, gains > 0, signal files regular, beside the
    header and at least as large as the header's sample count needs (formats of known size)."""
    _, sig = _signal_lines(text, hea)
    for i, tokens in enumerate(sig):
        sibling_file(hea, tokens[0])
        if len(tokens) > 2:
            try:
                parse_gain_field(tokens[2])
            except ValueError as exc:
                raise RecordError(str(hea), f"signal line {i + 1}: {exc}") from None
    try:
        head = wfdb.rdheader(str(base))
    except Exception as exc:  # wfdb raises many types for broken headers
        raise RecordError(str(base), f"wfdb cannot read its header: {exc}") from None
    problem = fs_problem(float(head.fs))
    if problem:
        raise RecordError(str(hea), problem)
    need: dict[str, float] = {}
    for j, name in enumerate(head.file_name):
        fmt = str(head.fmt[j])
        per = BYTES_PER_SAMPLE.get(fmt, 0)
        if not per:
            raise RecordError(
                str(hea), f"signal format {fmt} is not supported (its size cannot be checked against the file)"
            )
        spf = head.samps_per_frame[j] if head.samps_per_frame else 1
        offset = head.byte_offset[j] if head.byte_offset and head.byte_offset[j] else 0
        need[name] = max(need.get(name, offset), offset) + per * (spf or 1) * (head.sig_len or 0)
    for name, n_bytes in need.items():
        size = regular_file_size(sibling_file(hea, name), "signal file")
        if size < math.ceil(n_bytes):
            raise RecordError(
                str(hea.parent / name),
                f"holds {size:,} bytes but the header's {head.sig_len} "
                f"samples need {math.ceil(n_bytes):,} (truncated or wrong header)",
            )


def _read_general(base: Path, hea: Path, text: str) -> wfdb.Record:
    _check_general_header(base, hea, text)
    try:
        return wfdb.rdrecord(str(base), physical=False)
    except Exception as exc:  # wfdb raises many types for broken files
        raise RecordError(str(base), f"wfdb cannot read it: {exc}") from None


def _read_dat(hea: Path, header: PlainHeader, out: np.ndarray | None = None) -> np.ndarray:
    """A plain record's samples (sig_len, n_sig) int16, read into ``out`` or a new array, once the
    signal file's size equals what the header claims (nothing is allocated from the claim before
    that); RecordError otherwise. One open: a FIFO or directory is refused before it."""
    dat = sibling_file(hea, header.dat_name)
    expected = header.sig_len * header.n_sig
    fd, size = open_regular_fd(dat, "signal file named in the header")
    try:
        if header.sig_len < 0 or size != 2 * expected:
            raise RecordError(
                str(dat),
                f"holds {size // 2} samples but the header says {header.sig_len} samples x "
                f"{header.n_sig} leads = {expected} (truncated or wrong header)",
            )
        if out is None:
            out = np.empty((header.sig_len, header.n_sig), dtype="<i2")
        got = readinto_fd(fd, out.data.cast("B"))
    finally:
        os.close(fd)
    if got != out.nbytes:
        raise RecordError(str(dat), f"ended after {got} of {out.nbytes} bytes while being read")
    return out


def read_digital(record_path: str | os.PathLike) -> tuple[np.ndarray, PlainHeader | None, wfdb.Record | None]:
    """Read the raw int16 samples ``(sig_len, n_sig)`` of a record, validated against its header.

    Returns the samples and the parsed plain header; for records that need wfdb's general reader
    the samples come from ``wfdb.rdrecord(physical=False)`` and the wfdb Record is returned instead.
    Either way the header is checked first (rate, gains, where its signal files are and what they
    are), and nothing is allocated from the header's sample count before the file's size agrees.
    """
    base = Path(record_path)
    hea = base.with_name(base.name + ".hea")
    text = _read_header_text(hea)
    header = parse_plain_header(text)
    if header is None:
        rec = _read_general(base, hea, text)
        return rec.d_signal, None, rec
    problem = fs_problem(header.fs)
    if problem:
        raise RecordError(str(hea), problem)
    digital = _read_dat(hea, header)
    _check_against_header(str(hea.parent / header.dat_name), digital, header)
    return digital, header, None


def _check_against_header(name: str, digital: np.ndarray, header: PlainHeader) -> None:
    sums = digital.sum(axis=0, dtype=np.int64)
    # WFDB stores the checksum as the 16-bit sum, written signed or unsigned depending on the writer.
    bad = np.nonzero((sums - header.checksum) % 65536)[0]
    if bad.size:
        leads = ", ".join(header.sig_name[i] for i in bad[:4])
        raise RecordError(name, f"checksum mismatch in lead(s) {leads}: the file is corrupt")
    if header.sig_len and np.any(digital[0] != header.init_value):
        raise RecordError(name, "first samples differ from the header's initial values: the file is corrupt")


def to_physical(digital: np.ndarray, gain: np.ndarray, baseline: np.ndarray, name: str) -> np.ndarray:
    """Digital -> float64 physical units exactly as wfdb computes it; missing samples are an error."""
    if np.any(digital == _DIGITAL_NAN_FMT16):
        raise RecordError(name, "signal has missing samples (WFDB NaN marker)")
    return (digital.astype(np.float64) - baseline) / gain


def read_physical(
    record_path: str | os.PathLike, leads: Sequence[str] | None = None
) -> tuple[np.ndarray, float, tuple[str, ...]]:
    """Read one record as float64 millivolts ``(sig_len, n_sig)``, equal to ``wfdb.rdsamp``'s array.

    Returns the signal, its sampling rate and the lead names. ``leads`` (standard names) picks and
    orders the columns by name (:func:`~ecg_transfer.datasets.leads.lead_columns`); ``None`` keeps
    the file's leads in the file's order.
    """
    digital, header, rec = read_digital(record_path)
    if header is not None:
        units = {u.lower() for u in header.units}
        if units != {"mv"}:
            raise RecordError(str(record_path), f"signal units are {sorted(units)}, expected mV")
        signal = to_physical(digital, header.gain, header.baseline, str(record_path))
        fs, names = header.fs, header.sig_name
    else:
        assert rec is not None
        if any(u.lower() != "mv" for u in rec.units):
            raise RecordError(str(record_path), f"signal units are {rec.units}, expected mV")
        signal = rec.dac()
        if np.isnan(signal).any():
            raise RecordError(str(record_path), "signal has missing samples (NaN)")
        fs, names = float(rec.fs), tuple(rec.sig_name)
    if leads is None:
        return signal, fs, names
    cols = lead_columns(names, leads, str(record_path))
    return np.ascontiguousarray(signal[:, cols]), fs, tuple(leads)


def _plain_for_block(base: Path, n_leads: int) -> PlainHeader | None:
    """The plain header of ``base`` when the block's fast path can read it, else None."""
    header = parse_plain_header(_read_header_text(base.with_name(base.name + ".hea")))
    if header is None or header.units != ("mV",) * header.n_sig or header.n_sig != n_leads:
        return None
    return header


def read_block(
    paths: list[Path], n_samples: int, n_leads: int, fs: float, leads: Sequence[str] | None = None
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Read many records of one shape into a float32 block ``(n, n_out, n_samples)`` of mV.

    The cache's hot path: per record only the header is parsed and the bytes read straight into
    one int16 buffer; checksums, missing-sample markers and the conversion to millivolts are then
    done for the whole block at once. ``n_leads`` is the number of leads the fast path expects in a
    file (PTB-XL: 12); ``leads`` (standard names) picks and orders each record's columns by name,
    ``None`` keeps the file order (``n_out = n_leads``). The values equal ``wfdb.rdsamp``'s float64
    array cast to float32. Records that fail are returned as ``(position, problem)`` and their slot
    left zero; other headers (another lead count, not plain) go through :func:`read_physical`.
    """
    n = len(paths)
    n_out = n_leads if leads is None else len(leads)
    digital = np.zeros((n, n_samples, n_leads), dtype="<i2")
    cols = np.tile(np.arange(n_out, dtype=np.intp), (n, 1))
    gain = np.ones((n, n_leads))
    baseline = np.zeros((n, n_leads), dtype=np.int64)
    checksum = np.zeros((n, n_leads), dtype=np.int64)
    init = np.zeros((n, n_leads), dtype=np.int64)
    plain = np.zeros(n, dtype=bool)
    general: dict[int, np.ndarray] = {}
    problems: list[tuple[int, str]] = []
    for i, base in enumerate(paths):
        try:
            header = _plain_for_block(base, n_leads)
            if header is None:
                signal, rec_fs, _ = read_physical(base, leads)
                _check_shape(base, signal.shape, rec_fs, n_samples, signal.shape[1], fs)
                general[i] = signal
                continue
            _check_shape(base, (header.sig_len, header.n_sig), header.fs, n_samples, n_leads, fs)
            if leads is not None:
                cols[i] = lead_columns(header.sig_name, leads, base)
            _read_dat(base.with_name(base.name + ".hea"), header, digital[i])
            gain[i], baseline[i], checksum[i], init[i] = (
                header.gain,
                header.baseline,
                header.checksum,
                header.init_value,
            )
            plain[i] = True
        except RecordError as exc:
            problems.append((i, f"{exc.record}: {exc.problem}" if exc.record != str(base) else exc.problem))
    problems += _block_integrity(digital, plain, checksum, init, n_samples)
    return _block_to_mv(digital, cols, gain, baseline, plain, general), sorted(problems)


def _block_integrity(
    digital: np.ndarray, plain: np.ndarray, checksum: np.ndarray, init: np.ndarray, n_samples: int
) -> list[tuple[int, str]]:
    """Checksums, initial values and missing-sample markers of the whole block at once; records
    that fail are listed and their ``plain`` flag cleared (their slot stays zero)."""
    n = len(digital)
    sums = digital.sum(axis=1, dtype=np.int64)
    bad_sum = plain & ((sums - checksum) % 65536 != 0).any(axis=1)
    bad_init = plain & (digital[:, 0, :] != init).any(axis=1) if n_samples else np.zeros(n, bool)
    bad_nan = plain & (digital == _DIGITAL_NAN_FMT16).any(axis=(1, 2))
    problems = []
    for i in np.nonzero(bad_sum | bad_init | bad_nan)[0]:
        what = (
            "checksum mismatch: the signal file is corrupt"
            if bad_sum[i]
            else "first samples differ from the header's initial values: the file is corrupt"
            if bad_init[i]
            else "signal has missing samples (WFDB NaN marker)"
        )
        problems.append((int(i), what))
        plain[i] = False
    return problems


def _block_to_mv(
    digital: np.ndarray,
    cols: np.ndarray,
    gain: np.ndarray,
    baseline: np.ndarray,
    plain: np.ndarray,
    general: dict[int, np.ndarray],
) -> np.ndarray:
    """float32 mV ``(n, n_out, n_samples)``: each record's ``cols`` of the int16 block, converted."""
    n, n_samples, n_leads = digital.shape
    n_out = cols.shape[1]
    if n_out != n_leads or not (cols == np.arange(n_leads)).all():
        digital = np.take_along_axis(digital, cols[:, None, :], axis=2)
        gain = np.take_along_axis(gain, cols, axis=1)
        baseline = np.take_along_axis(baseline, cols, axis=1)
    # float32 arithmetic gives exactly float32(wfdb's float64 result): the difference of two small
    # integers is exact, and double rounding of one division from binary64 to binary32 is innocuous.
    out = np.empty((n, n_out, n_samples), dtype=np.float32)
    np.copyto(out, digital.transpose(0, 2, 1), casting="unsafe")
    out -= baseline[:, :, None].astype(np.float32)
    out /= gain[:, :, None].astype(np.float32)
    out[~plain] = 0.0
    for i, signal in general.items():
        out[i] = signal.T
    return out


def _check_shape(base: Path, shape: tuple[int, int], rec_fs: float, n_samples: int, n_leads: int, fs: float) -> None:
    if rec_fs != fs:
        raise RecordError(str(base), f"header says {rec_fs:g} Hz, expected {fs:g} Hz")
    if tuple(shape) != (n_samples, n_leads):
        raise RecordError(
            str(base), f"header says {shape[0]} samples x {shape[1]} leads, expected {n_samples} x {n_leads}"
        )
