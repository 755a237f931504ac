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

import numpy as np
import wfdb

from ..errors import RecordError

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

    Baseline ``None`` means "not written": WFDB then uses the ADC zero. Gain 0 means 200.
    Raises ``ValueError`` on anything wfdb would silently misread.
    """
    m = _GAIN.match(text)
    if m is None:
        raise ValueError(f"gain field {text!r} is not GAIN[(BASELINE)][/UNITS]")
    gain = float(m.group("gain"))
    if not math.isfinite(gain):
        raise ValueError(f"gain field {text!r}: gain is not finite")
    if gain == 0:
        gain = WFDB_DEFAULT_GAIN
    baseline = int(m.group("baseline")) if m.group("baseline") is not None else None
    units = m.group("units") or "mV"
    return gain, baseline, units


def _read_header_text(hea: Path) -> str:
    try:
        raw = hea.read_bytes()
    except FileNotFoundError:
        raise RecordError(str(hea), "header file is missing") from None
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise RecordError(str(hea), "header is not valid text (non-ASCII bytes)") from None


def read_digital(record_path: str | os.PathLike) -> tuple[np.ndarray, PlainHeader | None, wfdb.Record | None]:
    """Read the raw int16 samples ``(sig_len, n_sig)`` of a record, validated against its header.

    Returns the samples and the parsed plain header; for records that need wfdb's general reader
    the samples come from ``wfdb.rdrecord(physical=False)`` and the wfdb Record is returned instead.
    """
    base = Path(record_path)
    hea = base.with_name(base.name + ".hea")
    text = _read_header_text(hea)
    header = parse_plain_header(text)
    if header is None:
        try:
            rec = wfdb.rdrecord(str(base), physical=False)
        except Exception as exc:  # wfdb raises many types for broken files
            raise RecordError(str(base), f"wfdb cannot read it: {exc}") from None
        return rec.d_signal, None, rec
    dat = hea.parent / header.dat_name
    expected = header.sig_len * header.n_sig
    try:
        raw = np.fromfile(dat, dtype="<i2")
    except FileNotFoundError:
        raise RecordError(str(dat), "signal file named in the header is missing") from None
    if raw.size != expected:
        raise RecordError(
            str(dat),
            f"holds {raw.size} samples but the header says {header.sig_len} samples x "
            f"{header.n_sig} leads = {expected} (truncated or wrong header)",
        )
    digital = raw.reshape(header.sig_len, header.n_sig)
    _check_against_header(str(dat), digital, header)
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


def read_physical(record_path: str | os.PathLike) -> tuple[np.ndarray, float, tuple[str, ...]]:
    """Read one record as float64 millivolts ``(sig_len, n_sig)``, equal to ``wfdb.rdsamp``'s array.

    Returns the signal, its sampling rate and the lead names.
    """
    digital, header, rec = read_digital(record_path)
    if header is not None:
        units = {u.lower() for u in header.units}
        if units != {"mv"}:
            raise RecordError(str(record_path), f"signal units are {sorted(units)}, expected mV")
        return to_physical(digital, header.gain, header.baseline, str(record_path)), header.fs, header.sig_name
    assert rec is not None
    if any(u.lower() != "mv" for u in rec.units):
        raise RecordError(str(record_path), f"signal units are {rec.units}, expected mV")
    p = rec.dac()
    if np.isnan(p).any():
        raise RecordError(str(record_path), "signal has missing samples (NaN)")
    return p, float(rec.fs), tuple(rec.sig_name)


def read_block(
    paths: list[Path], n_samples: int, n_leads: int, fs: float
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Read many records of one shape into a float32 block ``(n, n_leads, n_samples)`` of mV.

    The cache's hot path: per record only the header is parsed and the bytes read straight into
    one int16 buffer; checksums, missing-sample markers and the conversion to millivolts are then
    done for the whole block at once. The values equal ``wfdb.rdsamp``'s float64 array cast to
    float32. Records that fail are returned as ``(position, problem)`` and their slot left zero;
    headers that are not plain go through :func:`read_physical`.
    """
    n = len(paths)
    digital = np.zeros((n, n_samples, n_leads), dtype="<i2")
    gain = np.ones((n, n_leads))
    baseline = np.zeros((n, n_leads), dtype=np.int64)
    checksum = np.zeros((n, n_leads), dtype=np.int64)
    init = np.zeros((n, n_leads), dtype=np.int64)
    plain = np.zeros(n, dtype=bool)
    general: dict[int, np.ndarray] = {}
    problems: list[tuple[int, str]] = []
    expected_bytes = n_samples * n_leads * 2
    for i, base in enumerate(paths):
        try:
            header = parse_plain_header(_read_header_text(base.with_name(base.name + ".hea")))
            if header is None or header.units != ("mV",) * header.n_sig:
                signal, rec_fs, _ = read_physical(base)
                _check_shape(base, signal.shape, rec_fs, n_samples, n_leads, fs)
                general[i] = signal
                continue
            _check_shape(base, (header.sig_len, header.n_sig), header.fs, n_samples, n_leads, fs)
            dat = base.with_name(header.dat_name)
            try:
                with open(dat, "rb") as fh:
                    got = fh.readinto(memoryview(digital[i]).cast("B"))
                    extra = fh.read(1)
            except FileNotFoundError:
                raise RecordError(str(dat), "signal file named in the header is missing") from None
            if got != expected_bytes or extra:
                size = dat.stat().st_size
                raise RecordError(
                    str(dat),
                    f"holds {size // 2} samples but the header says {n_samples} samples x "
                    f"{n_leads} leads = {n_samples * n_leads} (truncated or wrong header)",
                )
            gain[i] = header.gain
            baseline[i] = header.baseline
            checksum[i] = header.checksum
            init[i] = header.init_value
            plain[i] = True
        except RecordError as exc:
            problems.append((i, f"{exc.record}: {exc.problem}" if exc.record != str(base) else exc.problem))
    sums = digital.sum(axis=1, dtype=np.int64)
    bad_sum = plain & ((sums - checksum) % 65536 != 0).any(axis=1)
    bad_init = plain & (digital[:, 0, :] != init).any(axis=1) if n_samples else np.zeros(n, bool)
    bad_nan = plain & (digital == _DIGITAL_NAN_FMT16).any(axis=(1, 2))
    for i in np.nonzero(bad_sum | bad_init | bad_nan)[0]:
        what = (
            "checksum mismatch: the signal file is corrupt" if bad_sum[i]
            else "first samples differ from the header's initial values: the file is corrupt" if bad_init[i]
            else "signal has missing samples (WFDB NaN marker)"
        )
        problems.append((int(i), what))
        plain[i] = False
    # float32 arithmetic gives exactly float32(wfdb's float64 result): the difference of two small
    # integers is exact, and double rounding of one division from binary64 to binary32 is innocuous.
    out = np.empty((n, n_leads, n_samples), dtype=np.float32)
    np.copyto(out, digital.transpose(0, 2, 1), casting="unsafe")
    out -= baseline[:, :, None].astype(np.float32)
    out /= gain[:, :, None].astype(np.float32)
    out[~plain] = 0.0
    for i, signal in general.items():
        out[i] = signal.T
    return out, sorted(problems)


def _check_shape(base: Path, shape: tuple[int, int], rec_fs: float, n_samples: int, n_leads: int, fs: float) -> None:
    if rec_fs != fs:
        raise RecordError(str(base), f"header says {rec_fs:g} Hz, expected {fs:g} Hz")
    if tuple(shape) != (n_samples, n_leads):
        raise RecordError(
            str(base), f"header says {shape[0]} samples x {shape[1]} leads, expected {n_samples} x {n_leads}"
        )
