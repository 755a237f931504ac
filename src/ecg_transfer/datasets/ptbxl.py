"""PTB-XL v1.0.3 (PhysioNet): the metadata table, the label statements and the WFDB signals.

The record id is the zero-padded ``ecg_id`` (``"00001"``), as in the file names. Signals come at
100 Hz (``records100``, every record) or 500 Hz (``records500``); where a copy holds only some of the
500 Hz records the adapter says how many are missing and, with ``allow_missing=True``, uses the
ones present.

``ptbxl_database.csv`` is checked row by row (:func:`read_database`): a row whose ``ecg_id``,
``scp_codes``, ``strat_fold``, ``patient_id`` or signal path cannot be used (malformed, a path that
leaves the dataset folder, an ``ecg_id`` that repeats) is skipped and listed in ``problems`` with
the file, row and column; bytes that are not UTF-8 are named the same way. A missing column stops
with an error naming it. Signals are read lead by lead by name in the standard order (``leads``).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from ..errors import DatasetError, RecordError
from .base import STANDARD_LEADS, RecordProblem
from .files import inside
from .wfdb_fast import read_block, read_physical

ADAPTER_VERSION = "ptbxl-3"  # bump when index() columns or what read() returns change: caches hold them
RATES = {100: "filename_lr", 500: "filename_hr"}
#: Columns the adapter needs (besides the rate's filename column); heart_axis is optional.
REQUIRED_COLUMNS: tuple[str, ...] = ("ecg_id", "patient_id", "age", "sex", "scp_codes", "strat_fold")
_NOT_UTF8 = re.compile("[\udc80-\udcff]+")


def _row_problem(csv: Path, row: int, ecg_id: object, column: str, problem: str, outcome: str) -> RecordProblem:
    """One row's problem: the file, the row (1 = first data row), its ecg_id and the column."""
    ident = f" (ecg_id {ecg_id})" if ecg_id is not None and str(ecg_id) != "nan" else ""
    return RecordProblem(f"{csv} row {row}{ident}", f"column {column}: {problem} [{outcome}]")


def _flag_invalid(
    csv: Path, db: pd.DataFrame, column: str, bad: np.ndarray, what: str, outcome: str, problems: list[RecordProblem]
) -> None:
    for i in np.flatnonzero(bad):
        value = db[column].iloc[i]
        problems.append(_row_problem(csv, int(i) + 1, db["ecg_id"].iloc[i], column, f"{value!r} {what}", outcome))


def _integers(values: pd.Series, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    """(values as float, mask of cells that are not whole numbers >= minimum)."""
    num = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(num) | (num != np.round(num)) | (num < minimum)
    return num, bad


def _not_utf8(csv: Path, db: pd.DataFrame, needed: tuple[str, ...], problems: list[RecordProblem]) -> np.ndarray:
    """List every cell holding bytes that are not UTF-8 (read as surrogate escapes); mask of the
    rows where such a cell is in a column the adapter uses (those rows are skipped)."""
    bad_rows = np.zeros(len(db), dtype=bool)
    try:
        csv.read_bytes().decode("utf-8")
        return bad_rows  # the usual case: one decode instead of a look at every cell
    except UnicodeDecodeError:
        pass
    for column in db.columns:
        hit = db[column].map(lambda v: isinstance(v, str) and _NOT_UTF8.search(v) is not None)
        for i in np.flatnonzero(hit.to_numpy(dtype=bool)):
            shown = db[column].iloc[i].encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            used = column in needed
            bad_rows[i] |= used
            problems.append(
                _row_problem(
                    csv,
                    int(i) + 1,
                    db["ecg_id"].iloc[i],
                    column,
                    f"bytes that are not UTF-8 in {shown!r}",
                    "record skipped" if used else "record kept: column not used",
                )
            )
    return bad_rows


def _parse_codes(
    csv: Path, db: pd.DataFrame, skip: np.ndarray, problems: list[RecordProblem]
) -> tuple[list, np.ndarray]:
    """Each row's ``scp_codes`` dict (rows in ``skip`` are already listed and left empty)."""
    from ..labels import parse_scp_codes

    parsed: list[dict[str, float]] = []
    bad = np.zeros(len(db), dtype=bool)
    for i, cell in enumerate(db["scp_codes"]):
        if skip[i]:
            parsed.append({})
            continue
        try:
            parsed.append(parse_scp_codes(str(cell)) if isinstance(cell, str) else parse_scp_codes(""))
        except ValueError as exc:
            parsed.append({})
            bad[i] = True
            problems.append(_row_problem(csv, i + 1, db["ecg_id"].iloc[i], "scp_codes", str(exc), "record skipped"))
    return parsed, bad


def _duplicates(csv: Path, ids: np.ndarray, usable: np.ndarray, problems: list[RecordProblem]) -> np.ndarray:
    """Mask of rows whose ecg_id repeats: all of them are skipped (which one is right is unknown)."""
    series = pd.Series(ids)
    dup = series.duplicated(keep=False).to_numpy() & usable
    for ecg_id, rows in series[dup].groupby(series[dup]).groups.items():
        where = ", ".join(str(r + 1) for r in rows)
        problems.append(
            RecordProblem(
                f"{csv} rows {where}",
                f"column ecg_id: ecg_id {int(ecg_id)} appears "
                f"{len(rows)} times [all skipped: which row is right is unknown]",
            )
        )
    return dup


def _load_csv(csv: Path, rate_column: str) -> pd.DataFrame:
    try:
        # object columns: bytes that are not UTF-8 come through as surrogate escapes (listed by
        # _not_utf8), which pandas' Arrow-backed strings would refuse with a traceback
        db = pd.read_csv(csv, dtype=object, encoding="utf-8", encoding_errors="surrogateescape")
    except (ValueError, pd.errors.ParserError) as exc:
        raise DatasetError(f"{csv}: not a readable CSV table ({exc})") from None
    missing = [c for c in (*REQUIRED_COLUMNS, rate_column) if c not in db.columns]
    if missing:
        raise DatasetError(f"{csv}: column(s) {', '.join(missing)} missing (it has {', '.join(map(str, db.columns))})")
    return db


def read_database(csv: Path, root: Path, rate_column: str) -> tuple[pd.DataFrame, list[RecordProblem]]:
    """``ptbxl_database.csv`` checked row by row: (usable rows indexed by ecg_id with ``scp_codes``
    parsed and ``sex`` as given, problems). A missing column raises DatasetError naming it."""
    db = _load_csv(csv, rate_column)
    problems: list[RecordProblem] = []
    bad_text = _not_utf8(csv, db, (*REQUIRED_COLUMNS, rate_column, "heart_axis"), problems)
    ids, bad_id = _integers(db["ecg_id"], 0)
    _flag_invalid(csv, db, "ecg_id", bad_id, "is not a record number", "record skipped", problems)
    folds, bad_fold = _integers(db["strat_fold"], 1)
    _flag_invalid(csv, db, "strat_fold", bad_fold, "is not a fold number (1, 2, ...)", "record skipped", problems)
    patient = pd.to_numeric(db["patient_id"], errors="coerce").to_numpy(dtype=float)
    bad_patient = ~np.isfinite(patient)
    _flag_invalid(csv, db, "patient_id", bad_patient, "is not a patient number", "record skipped", problems)
    codes, bad_codes = _parse_codes(csv, db, bad_text, problems)
    paths = db[rate_column]
    bad_path = np.array([not isinstance(v, str) or not inside(root, v) for v in paths], dtype=bool)
    _flag_invalid(
        csv, db, rate_column, bad_path, "is not a path inside the dataset folder: refused", "record skipped", problems
    )
    for column in ("age", "sex"):
        num = pd.to_numeric(db[column], errors="coerce")
        bad = (num.isna() & db[column].notna()).to_numpy().copy()
        if column == "sex":
            bad |= num.notna().to_numpy() & ~num.isin([0, 1]).to_numpy()
        _flag_invalid(csv, db, column, bad, "is not valid (set to missing)", "record kept", problems)
        db[column] = num.where(~bad)
    usable = ~(bad_text | bad_id | bad_fold | bad_patient | bad_codes | bad_path)
    usable &= ~_duplicates(csv, ids, usable, problems)
    db["scp_codes"] = codes
    db["ecg_id"], db["strat_fold"], db["patient_id"] = ids, folds, patient
    db = db[usable].copy()
    db["ecg_id"] = db["ecg_id"].astype(np.int64)
    db["strat_fold"] = db["strat_fold"].astype(np.int64)
    return db.set_index("ecg_id"), problems


class PTBXL:
    """Adapter for a PTB-XL tree (the one PhysioNet ships, or ``restore_ptbxl.py`` rebuilds).

    ``leads`` (standard names, default all twelve) are read from every record by name, in the
    standard order; ``problems`` lists the rows of ``ptbxl_database.csv`` left out and why.
    """

    name = "ptbxl"

    def __init__(
        self, root: str | os.PathLike, fs: int = 100, allow_missing: bool = False, leads: Sequence[str] = STANDARD_LEADS
    ):
        self.root = Path(root)
        if fs not in RATES:
            raise DatasetError(f"PTB-XL comes at {sorted(RATES)} Hz, not {fs} Hz (resample in the cache)")
        self.fs = fs
        self.allow_missing = allow_missing
        self.leads = tuple(leads)
        for f in ("ptbxl_database.csv", "scp_statements.csv"):
            if not (self.root / f).is_file():
                raise DatasetError(
                    f"{self.root / f} not found: --root must be the PTB-XL folder holding "
                    "ptbxl_database.csv, scp_statements.csv and records100/ "
                    "(get it with `ecg-transfer download ptbxl --root DIR`)"
                )
        self._database: pd.DataFrame | None = None
        self._index: pd.DataFrame | None = None
        self._paths: dict[str, str] | None = None
        self.missing: list[str] = []
        self.problems: list[RecordProblem] = []
        self._db_problems: list[RecordProblem] = []

    # -- metadata -------------------------------------------------------------------------------
    @property
    def database(self) -> pd.DataFrame:
        """The usable rows of ``ptbxl_database.csv``, indexed by ``ecg_id``, ``scp_codes`` parsed
        (see :func:`read_database`; the rows left out are in ``problems``)."""
        if self._database is None:
            csv = self.root / "ptbxl_database.csv"
            self._database, self._db_problems = read_database(csv, self.root, RATES[self.fs])
            self.problems = list(self._db_problems)
        return self._database

    @property
    def statements(self) -> pd.DataFrame:
        return pd.read_csv(self.root / "scp_statements.csv", index_col=0)

    def _present(self, paths: pd.Series) -> np.ndarray:
        """Which records have a header at this rate; a header that is not a regular file (a FIFO,
        a directory) is listed as a problem, not counted as missing."""
        present = np.zeros(len(paths), dtype=bool)
        root = str(self.root)  # string joins: pathlib cost 0.8 s over PTB-XL's 21,837 headers
        for i, rel in enumerate(paths):
            hea = os.path.join(root, f"{rel}.hea")
            try:
                mode = os.stat(hea).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode):
                present[i] = True
            else:
                self.problems.append(
                    RecordProblem(
                        hea, "header is not a regular file (a FIFO, device or directory): refused [record skipped]"
                    )
                )
        return present

    def index(self) -> pd.DataFrame:
        """One row per usable record whose header exists at this rate.

        Columns: record_id, ecg_id, patient_id, age, sex ("Male"/"Female"/None), fold (``strat_fold``),
        fs, n_samples, n_leads, path (relative, without extension), scp_codes (dict), heart_axis.
        """
        if self._index is None:
            db = self.database
            self.problems = list(self._db_problems)
            paths = db[RATES[self.fs]].astype(str)
            present = self._present(paths)
            listed = {p.record for p in self.problems}
            self.missing = [
                f"{i:05d}"
                for i, p in zip(db.index[~present], paths[~present])
                if os.path.join(str(self.root), f"{p}.hea") not in listed
            ]
            if self.missing and not self.allow_missing:
                raise DatasetError(
                    f"{len(self.missing)} of {len(db)} PTB-XL records are missing at {self.fs} Hz under "
                    f"{self.root} (first: {paths[~present].iloc[0]}.hea); "
                    f"{int(present.sum())} are present. Use --allow-missing (allow_missing=True) to "
                    "work with the records present, or download the rest."
                )
            db = db[present]
            sex = {0: "Male", 1: "Female"}
            self._index = pd.DataFrame(
                {
                    "record_id": [f"{i:05d}" for i in db.index],
                    "ecg_id": db.index.to_numpy(),
                    "patient_id": db["patient_id"].to_numpy(),
                    "age": db["age"].to_numpy(dtype=float),
                    "sex": pd.Series([sex.get(v) for v in db["sex"]], dtype=object),
                    "fold": db["strat_fold"].to_numpy(dtype=int),
                    "fs": float(self.fs),
                    "n_samples": 10 * self.fs,
                    "n_leads": len(self.leads),
                    "path": paths[present].to_numpy(),
                    "scp_codes": db["scp_codes"].to_numpy(),
                    "heart_axis": db["heart_axis"].to_numpy() if "heart_axis" in db else None,
                }
            )
        return self._index

    # -- signals --------------------------------------------------------------------------------
    def _rel_paths(self, record_ids: Sequence[str]) -> list[str]:
        """Relative paths of ``record_ids``; the lookup table is built once per adapter."""
        if self._paths is None:
            index = self.index()
            self._paths = dict(zip(index["record_id"], index["path"]))
        try:
            return [self._paths[r] for r in record_ids]
        except KeyError as exc:
            raise RecordError(str(exc.args[0]), f"no such record at {self.fs} Hz under {self.root}") from None

    def _path(self, record_id: str) -> Path:
        return self.root / self._rel_paths([record_id])[0]

    def read(self, record_id: str) -> np.ndarray:
        """float64 millivolts ``(n_samples, len(leads))``, leads in standard order, equal to
        ``wfdb.rdsamp``'s columns; RecordError otherwise."""
        return self._read_path(self._path(record_id), record_id)

    def _read_path(self, path: Path, record_id: str) -> np.ndarray:
        signal, fs, _ = read_physical(path, self.leads)
        if fs != self.fs:
            raise RecordError(str(path), f"header says {fs:g} Hz, expected {self.fs} Hz")
        if signal.shape[0] != 10 * self.fs:
            raise RecordError(str(path), f"signal is {signal.shape[0]} samples, expected {10 * self.fs}")
        return signal

    def iter_signals(self, record_ids: Sequence[str]) -> Iterator[tuple[str, np.ndarray | RecordError]]:
        for rid, rel in zip(record_ids, self._rel_paths(record_ids)):
            try:
                yield rid, self._read_path(self.root / rel, rid)
            except RecordError as exc:
                yield rid, exc

    def read_block(self, record_ids: Sequence[str]) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """Many records at once as float32 mV ``(n, 12, n_samples)`` (the cache's fast path)."""
        paths = [self.root / p for p in self._rel_paths(record_ids)]
        block, problems = read_block(paths, 10 * self.fs, 12, float(self.fs), self.leads)
        return block, [(record_ids[i], msg) for i, msg in problems]

    def prefetch(self, record_ids: Sequence[str]) -> None:
        """Ask the kernel to read the files ahead (in order), so that disk reads overlap the parsing
        done by the cache's workers; on a cold page cache this is most of the build time."""
        for rel in self._rel_paths(record_ids):
            for ext in (".hea", ".dat"):
                try:
                    fd = os.open(self.root / f"{rel}{ext}", os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block
                except OSError:
                    continue
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
                except OSError:
                    pass  # not a regular file: the reader refuses it by name
                finally:
                    os.close(fd)

    def fingerprint(self) -> dict:
        """What the cache depends on: the index files' content and every signal file's size/mtime."""
        h = hashlib.sha256()
        for f in ("ptbxl_database.csv", "scp_statements.csv"):
            h.update(hashlib.sha256((self.root / f).read_bytes()).digest())
        root = str(self.root)
        for rel in self.index()["path"]:
            for ext in (".hea", ".dat"):
                try:
                    st = os.stat(os.path.join(root, f"{rel}{ext}"))
                    h.update(f"{rel}{ext}:{st.st_size}:{st.st_mtime_ns};".encode())
                except FileNotFoundError:
                    h.update(f"{rel}{ext}:missing;".encode())
        return {"adapter": ADAPTER_VERSION, "fs": self.fs, "files": h.hexdigest()[:16], "leads": list(self.leads)}
