"""Adapter for the PhysioNet/CinC 2020/2021 format: ``E00001.hea`` (WFDB header) + ``E00001.mat``.

G12EC and every other CinC-format set ship one MATLAB v4 file per record holding ``val``, the
ADC integers as (n_leads, n_samples), beside a WFDB header that gives gain, baseline, lead names
and the labels (``#Dx:`` SNOMED-CT codes) as comments.

Why the header is parsed here and not by ``wfdb.rdheader``: wfdb 4.x refuses the record line of
most G12EC headers (``E00271.mat 12 500 ...`` -- the record name carries the ``.mat`` suffix) and
its regular expressions are lenient, so a malformed gain would silently become the default of 200.
The parser below follows the WFDB header specification with the same semantics as wfdb (gain
``G(B)/U`` with baseline B defaulting to ADC zero, gain 0 meaning 200, physical = (d - B) / G);
tests check it against ``wfdb.io._header`` and against ``wfdb.rdsamp`` on the real records.

Problems are handled in two tiers (``strict=False``):

* a header that cannot be parsed leaves its record out of :meth:`CinCDataset.index`;
* a label problem (no/empty ``#Dx``, codes unknown to the CinC mapping, an unreadable age) keeps the
  record in the index (its signal is fine; the label mapper decides) but is listed too.

Both end up in ``self.problems`` with a message saying which tier applies. With ``strict=True`` the
first problem of either kind raises :class:`RecordError` instead.

What ``index`` checks besides the header, cheaply (a ``stat`` and the ``.mat`` file's own header,
never the samples): the signal file is a regular file beside the header (no FIFO, device,
directory or path outside the record's folder), ``val`` has the header's shape and an integer
type (other integer types than int16 are converted and listed), and the record has the wanted
leads (``leads``, by name: read in the standard order I, II, III, aVR, aVL, aVF, V1-V6 whatever the
file's order; a record missing one is skipped and listed). So a header's sample count is never
trusted beyond what its file holds. Remaining signal problems surface when the signal is read
(:meth:`CinCDataset.read` raises, :meth:`CinCDataset.iter_signals` yields the error).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from ecg_transfer.datasets.base import STANDARD_LEADS, RecordProblem, fs_problem
from ecg_transfer.datasets.files import read_small_file, sibling_file
from ecg_transfer.datasets.leads import lead_columns
from ecg_transfer.datasets.matfile import ValInfo, inspect_val, read_val
from ecg_transfer.datasets.wfdb_fast import WFDB_DEFAULT_GAIN, parse_gain_field
from ecg_transfer.errors import DatasetError, RecordError

#: Bump when a change here changes what ``read`` returns or which records ``index`` keeps.
ADAPTER_VERSION = "cinc-2"

# WFDB signal-line format field: FORMATxSAMPS_PER_FRAME:SKEW+BYTE_OFFSET (all but FORMAT optional).
_RX_FMT = re.compile(r"^(?P<fmt>\d+)(?:x(?P<spf>\d+))?(?::(?P<skew>\d+))?(?:\+(?P<offset>\d+))?$")
_RX_INT = re.compile(r"^[-+]?\d+$")
# Physical units -> factor to millivolts. WFDB's default unit (none written) is mV.
_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")

UnknownCodesFn = Callable[[Iterable[str]], Iterable[str]]


@dataclass(frozen=True)
class CinCHeader:
    """Everything ``read`` and ``index`` need from one header, already validated."""

    record_id: str
    path: Path
    mat_path: Path
    fs: float
    n_samples: int
    leads: tuple[str, ...]
    gains: tuple[float, ...]  # ADC units per mV (after unit conversion)
    baselines: tuple[int, ...]
    age: float
    sex: str | None
    dx: tuple[str, ...]
    has_dx_line: bool
    label_notes: tuple[str, ...] = field(default=())  # label problems found while parsing

    @property
    def n_leads(self) -> int:
        return len(self.leads)


def decode_header_bytes(data: bytes, path: Path | str) -> str:
    """Header bytes -> text, refusing binary files (a ``.mat`` renamed ``.hea``, a macOS ``._`` file)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(str(path), f"header is not text (not UTF-8/ASCII: byte {exc.start})") from None
    bad = _CONTROL_CHARS.search(text)
    if bad is not None:
        raise RecordError(
            str(path), f"header is not text (binary byte 0x{ord(bad.group()):02x} at offset {bad.start()})"
        )
    return text


def _parse_record_line(line: str, path: Path) -> tuple[str, int, float, int]:
    tokens = line.split()
    if len(tokens) < 4:
        raise RecordError(str(path), f"record line {line!r} needs name, signal count, sampling rate and sample count")
    name, n_sig_s, fs_s, n_samp_s = tokens[:4]
    if "/" in name:
        raise RecordError(str(path), f"multi-segment record {name!r} is not a CinC-format record")
    # CinC quirk: G12EC writes the record name as 'E00271.mat'.
    if name.lower().endswith(".mat"):
        name = name[:-4]
    if not n_sig_s.isdigit() or int(n_sig_s) < 1:
        raise RecordError(str(path), f"record line: signal count {n_sig_s!r} is not a positive integer")
    # Sampling frequency may carry a counter frequency 'FS/CF(BASE)'; only FS matters here.
    fs_field = fs_s.split("/", 1)[0]
    try:
        fs = float(fs_field)
    except ValueError:
        fs = math.nan
    if not math.isfinite(fs) or fs <= 0:
        raise RecordError(str(path), f"record line: sampling rate {fs_s!r} is not a positive number")
    bad_fs = fs_problem(fs)
    if bad_fs:
        raise RecordError(str(path), f"record line: {bad_fs}")
    if not n_samp_s.isdigit() or int(n_samp_s) < 1:
        raise RecordError(str(path), f"record line: sample count {n_samp_s!r} is not a positive integer")
    return name, int(n_sig_s), fs, int(n_samp_s)


def _parse_signal_line(line: str, path: Path, index: int) -> tuple[str, str, float, int, str]:
    """-> (file name, format, gain in ADC units per mV, baseline, lead name)."""
    where = f"signal line {index + 1}"
    tokens = line.split(maxsplit=8)
    if len(tokens) < 2:
        raise RecordError(str(path), f"{where} {line!r} has no format field")
    file_name, fmt_s = tokens[0], tokens[1]
    fm = _RX_FMT.match(fmt_s)
    if fm is None:
        raise RecordError(str(path), f"{where}: format {fmt_s!r} is not FORMAT[xN][:SKEW][+OFFSET]")
    if fm.group("spf") not in (None, "1"):
        raise RecordError(str(path), f"{where}: {fm.group('spf')} samples per frame is not supported")
    gain, baseline, units = WFDB_DEFAULT_GAIN, None, "mV"
    if len(tokens) > 2:
        try:
            gain, baseline, units = parse_gain_field(tokens[2])
        except ValueError as exc:
            raise RecordError(str(path), f"{where}: {exc}") from None
    scale = _UNIT_TO_MV.get(units.lower())
    if scale is None:
        raise RecordError(str(path), f"{where}: unit {units!r} is not a voltage (mV, uV or V)")
    for pos, label in (
        (3, "ADC resolution"),
        (4, "ADC zero"),
        (5, "initial value"),
        (6, "checksum"),
        (7, "block size"),
    ):
        if len(tokens) > pos and not _RX_INT.match(tokens[pos]):
            raise RecordError(str(path), f"{where}: {label} {tokens[pos]!r} is not an integer")
    adc_zero = int(tokens[4]) if len(tokens) > 4 else 0
    if baseline is None:
        baseline = adc_zero
    if len(tokens) < 9 or not tokens[8].strip():
        raise RecordError(str(path), f"{where} {line!r} has no lead name")
    # gain is ADC units per `units`; ADC units per mV = gain / (mV per unit), e.g. 1/uV -> 1000/mV.
    return file_name, fmt_s, gain / scale, baseline, tokens[8].strip()


def _parse_comments(comments: list[str]) -> dict[str, str]:
    """``#Age: 56`` -> {'age': '56'}; first occurrence wins, keys lower-cased."""
    fields: dict[str, str] = {}
    for line in comments:
        body = line.lstrip("#").strip()
        key, sep, value = body.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def _parse_age(value: str | None) -> tuple[float, str | None]:
    if value is None or value.strip().lower() in ("", "nan", "unknown", "none"):
        return math.nan, None
    try:
        age = float(value)
    except ValueError:
        return math.nan, f"#Age {value!r} is not a number (age set to NaN)"
    if not math.isfinite(age) or age < 0:
        return math.nan, f"#Age {value!r} is not a valid age (age set to NaN)"
    return age, None


def _parse_sex(value: str | None) -> str | None:
    v = (value or "").strip().lower()
    if v in ("male", "m"):
        return "Male"
    if v in ("female", "f"):
        return "Female"
    return None


def _parse_dx(value: str | None) -> tuple[str, ...]:
    """Comma-separated SNOMED codes, order kept, repeats dropped (E00015 lists 284470004 twice)."""
    if value is None:
        return ()
    codes = [c.strip() for c in value.split(",")]
    return tuple(dict.fromkeys(c for c in codes if c))


def parse_header_text(text: str, path: Path | str) -> CinCHeader:
    """Parse and validate one CinC header; raises :class:`RecordError` naming ``path``."""
    path = Path(path)
    lines = [ln.strip() for ln in text.splitlines()]
    comments = [ln for ln in lines if ln.startswith("#")]
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    if not body:
        raise RecordError(str(path), "header has no record line")
    name, n_sig, fs, n_samples = _parse_record_line(body[0], path)
    if name != path.stem:
        raise RecordError(str(path), f"header names record {name!r}, but the file is {path.name!r}")
    sig_lines = body[1:]
    if len(sig_lines) != n_sig:
        raise RecordError(
            str(path), f"record line declares {n_sig} signals but the header has {len(sig_lines)} signal lines"
        )
    parsed = [_parse_signal_line(ln, path, i) for i, ln in enumerate(sig_lines)]
    files = {p[0] for p in parsed}
    if len(files) != 1:
        raise RecordError(str(path), f"signals are spread over several files {sorted(files)}; expected one .mat")
    file_name = files.pop()
    if not file_name.lower().endswith(".mat"):
        raise RecordError(str(path), f"signal file {file_name!r} is not a .mat file (not CinC format)")
    mat_path = sibling_file(path, file_name)
    leads = tuple(p[4] for p in parsed)
    if len({ld.upper() for ld in leads}) != len(leads):
        raise RecordError(str(path), f"lead names repeat: {list(leads)}")

    meta = _parse_comments(comments)
    age, age_note = _parse_age(meta.get("age"))
    dx = _parse_dx(meta.get("dx"))
    notes = [age_note] if age_note else []
    return CinCHeader(
        record_id=path.stem,
        path=path,
        mat_path=mat_path,
        fs=fs,
        n_samples=n_samples,
        leads=leads,
        gains=tuple(p[2] for p in parsed),
        baselines=tuple(p[3] for p in parsed),
        age=age,
        sex=_parse_sex(meta.get("sex")),
        dx=dx,
        has_dx_line="dx" in meta,
        label_notes=tuple(notes),
    )


def parse_header(path: Path | str) -> CinCHeader:
    """Read (a regular file of header size only) and parse one header; RecordError naming it."""
    path = Path(path)
    return parse_header_text(decode_header_bytes(read_small_file(path, "header"), path), path)


def _default_unknown_codes(codes: Iterable[str]) -> Iterable[str]:
    # Imported lazily: the label module is a separate layer and must not be needed to read signals.
    from ecg_transfer.labels import unknown_codes

    return unknown_codes(codes)


def inspect_mat(header: CinCHeader) -> ValInfo:
    """Check the header's .mat against the header from the file's headers alone (no samples read).

    Raises :class:`RecordError` when ``val`` cannot be read correctly; ``.note`` of the result says
    when it is read with a conversion (an integer type other than int16).
    """
    rec = str(header.path)
    info = inspect_val(header.mat_path, rec)
    n_leads, n_samples = info.shape
    if (n_leads, n_samples) != (header.n_leads, header.n_samples):
        mat = header.mat_path.name
        hint = " (looks transposed)" if (n_samples, n_leads) == (header.n_leads, header.n_samples) else ""
        parts = []
        if n_leads != header.n_leads:
            parts.append(f"header has {header.n_leads} leads but {mat} has {n_leads}")
        if n_samples != header.n_samples:
            parts.append(f"header has {header.n_samples} samples but {mat} has {n_samples}")
        raise RecordError(rec, "; ".join(parts) + hint)
    return info


def load_mat_signal(header: CinCHeader, leads: Sequence[str] | None = None) -> np.ndarray:
    """Read ``val`` from the header's .mat as float64 mV (n_samples, n_leads), validated.

    ``leads`` (standard names, see :mod:`ecg_transfer.datasets.leads`) picks and orders the
    columns by name; ``None`` keeps the file's leads in the file's order.
    """
    rec = str(header.path)
    val = read_val(inspect_mat(header), rec)
    cols = np.arange(header.n_leads) if leads is None else lead_columns(header.leads, leads, rec)
    gains = np.asarray(header.gains, dtype=np.float64)[cols]
    baselines = np.asarray(header.baselines, dtype=np.float64)[cols]
    return np.ascontiguousarray((val[:, cols].astype(np.float64) - baselines) / gains)


class CinCDataset:
    """A folder tree of CinC-format records (``*.hea`` + ``*.mat``), found recursively.

    ``leads`` (standard names, default all twelve) are the leads read from every record, by name,
    in the standard order; see :mod:`ecg_transfer.datasets.leads`.
    """

    name = "cinc"

    def __init__(
        self,
        root: str | os.PathLike,
        strict: bool = False,
        *,
        unknown_codes: UnknownCodesFn | None = None,
        leads: Sequence[str] = STANDARD_LEADS,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"CinC dataset root {self.root} is not a directory")
        self.strict = strict
        self.leads = tuple(leads)
        self._unknown_codes = unknown_codes or _default_unknown_codes
        self.problems: list[RecordProblem] = []
        self._header_paths: dict[str, Path] | None = None
        self._headers: dict[str, CinCHeader] = {}
        self._header_errors: dict[str, RecordError] = {}
        self._index: pd.DataFrame | None = None

    # -- discovery -------------------------------------------------------------------------
    def _discover(self) -> dict[str, Path]:
        """Every ``*.hea`` under the root, FIFOs and directories included: reading them refuses
        them by name, so they are listed rather than silently left out."""
        if self._header_paths is None:
            found: dict[str, Path] = {}
            for p in sorted(self.root.rglob("*.hea")):
                if p.stem in found:
                    raise DatasetError(
                        f"record id {p.stem!r} is not unique: {found[p.stem]} and {p} (CinC record ids are file stems)"
                    )
                found[p.stem] = p
            if not found:
                raise DatasetError(f"no *.hea headers under {self.root} (is this a CinC-format dataset?)")
            self._header_paths = dict(sorted(found.items()))
        return self._header_paths

    def _header(self, record_id: str) -> CinCHeader:
        if record_id in self._headers:
            return self._headers[record_id]
        if record_id in self._header_errors:
            raise self._header_errors[record_id]
        paths = self._discover()
        if record_id not in paths:
            raise RecordError(record_id, f"no header {record_id}.hea under {self.root}")
        try:
            header = parse_header(paths[record_id])
        except RecordError as exc:
            self._header_errors[record_id] = exc
            raise
        self._headers[record_id] = header
        return header

    # -- protocol --------------------------------------------------------------------------
    def _usable_headers(self, flag: Callable[[str, str, str], None]) -> list[CinCHeader]:
        """Headers that parse, whose .mat is a readable integer ``val`` of the header's shape and
        that have the wanted leads; the others are flagged and left out."""
        headers: list[CinCHeader] = []
        for record_id in self._discover():
            try:
                h = self._header(record_id)
                lead_columns(h.leads, self.leads, str(h.path))
                note = inspect_mat(h).note
            except RecordError as exc:
                flag(exc.record, exc.problem, "record skipped")
                continue
            if note:
                flag(str(h.path), note, "record kept")
            headers.append(h)
        return headers

    def _flag_labels(self, headers: list[CinCHeader], flag: Callable[[str, str, str], None]) -> None:
        all_codes = sorted({c for h in headers for c in h.dx})
        unknown = set(self._unknown_codes(all_codes)) if all_codes else set()
        for h in headers:
            rec = str(h.path)
            for note in h.label_notes:
                flag(rec, note, "record kept")
            if not h.has_dx_line:
                flag(rec, "no #Dx line", "record kept, no labels")
            elif not h.dx:
                flag(rec, "empty #Dx", "record kept, no labels")
            bad = [c for c in h.dx if c in unknown]
            if bad:
                flag(
                    rec,
                    f"Dx code(s) {', '.join(bad)} not in the CinC 2020/2021 SNOMED mappings",
                    "record kept, codes ignored by labels",
                )

    def index(self) -> pd.DataFrame:
        """One row per usable record; problems listed in ``self.problems``.

        ``leads`` / ``n_leads`` are the leads the signal holds once read (the wanted standard leads,
        in standard order), the same for every row.
        """
        if self._index is not None:
            return self._index.copy()
        problems: list[RecordProblem] = []

        def flag(record: str, problem: str, outcome: str) -> None:
            if self.strict:
                raise RecordError(record, problem)
            problems.append(RecordProblem(record, f"{problem} [{outcome}]"))

        headers = self._usable_headers(flag)
        self._flag_labels(headers, flag)
        # Built column by column with explicit dtypes: pandas 3 would infer ``str`` for ``sex`` and
        # turn a missing sex into NaN; it stays None here.
        df = pd.DataFrame(
            {
                "record_id": pd.Series([h.record_id for h in headers], dtype=object),
                "path": pd.Series([str(h.path) for h in headers], dtype=object),
                "mat_path": pd.Series([str(h.mat_path) for h in headers], dtype=object),
                "fs": pd.Series([h.fs for h in headers], dtype="float64"),
                "n_samples": pd.Series([h.n_samples for h in headers], dtype="int64"),
                "n_leads": pd.Series([len(self.leads)] * len(headers), dtype="int64"),
                "leads": pd.Series([list(self.leads) for _ in headers], dtype=object),
                "age": pd.Series([h.age for h in headers], dtype="float64"),
                "sex": pd.Series([h.sex for h in headers], dtype=object),
                "dx": pd.Series([list(h.dx) for h in headers], dtype=object),
            }
        )
        self.problems = problems
        self._index = df
        return df.copy()

    def header(self, record_id: str) -> CinCHeader:
        """The parsed header (gains, baselines, lead names) behind ``read``; raises RecordError."""
        return self._header(record_id)

    def read(self, record_id: str) -> np.ndarray:
        """float64 mV, shape (n_samples, len(leads)), leads in standard order; RecordError if anything is off."""
        return load_mat_signal(self._header(record_id), self.leads)

    def iter_signals(self, record_ids: Sequence[str]) -> Iterator[tuple[str, np.ndarray | Exception]]:
        """Stream signals; a bad record yields its RecordError (not raised) so a builder can skip it."""
        for record_id in record_ids:
            try:
                yield record_id, self.read(record_id)
            except RecordError as exc:
                yield record_id, exc

    def fingerprint(self) -> dict:
        """What a cache built from this folder depends on: stat() of every .hea/.mat, no file reads,
        and the leads read."""
        entries = []
        for p in sorted(self.root.rglob("*")):
            if p.suffix.lower() not in (".hea", ".mat"):
                continue
            try:
                st = p.stat()
            except OSError:  # a dangling link: its record is listed as unreadable
                entries.append(f"{p.relative_to(self.root).as_posix()}\tmissing")
                continue
            entries.append(f"{p.relative_to(self.root).as_posix()}\t{st.st_mode:o}\t{st.st_size}\t{st.st_mtime_ns}")
        digest = hashlib.sha256("\n".join(entries).encode("utf-8")).hexdigest()[:16]
        return {
            "adapter": self.name,
            "version": ADAPTER_VERSION,
            "n_files": len(entries),
            "files_sha256": digest,
            "leads": list(self.leads),
        }
