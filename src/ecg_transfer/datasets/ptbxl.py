"""PTB-XL v1.0.3 (PhysioNet): the metadata table, the label statements and the WFDB signals.

The record id is the zero-padded ``ecg_id`` (``"00001"``), as in the file names. Signals come at
100 Hz (``records100``, every record) or 500 Hz (``records500``); where a copy holds only some of the
500 Hz records the adapter says how many are missing and, with ``allow_missing=True``, uses the
ones present.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from ..errors import DatasetError, RecordError
from .wfdb_fast import read_block, read_physical

ADAPTER_VERSION = "ptbxl-2"  # bump when index() columns change: cached tables hold them
RATES = {100: "filename_lr", 500: "filename_hr"}


class PTBXL:
    """Adapter for a PTB-XL tree (the one PhysioNet ships, or ``restore_ptbxl.py`` rebuilds)."""

    name = "ptbxl"

    def __init__(self, root: str | os.PathLike, fs: int = 100, allow_missing: bool = False):
        self.root = Path(root)
        if fs not in RATES:
            raise DatasetError(f"PTB-XL comes at {sorted(RATES)} Hz, not {fs} Hz (resample in the cache)")
        self.fs = fs
        self.allow_missing = allow_missing
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

    # -- metadata -------------------------------------------------------------------------------
    @property
    def database(self) -> pd.DataFrame:
        """``ptbxl_database.csv`` as published, indexed by ``ecg_id``, ``scp_codes`` parsed."""
        if self._database is None:
            from ..labels import parse_scp_codes

            db = pd.read_csv(self.root / "ptbxl_database.csv", index_col="ecg_id")
            db["scp_codes"] = [parse_scp_codes(s) for s in db["scp_codes"]]
            self._database = db
        return self._database

    @property
    def statements(self) -> pd.DataFrame:
        return pd.read_csv(self.root / "scp_statements.csv", index_col=0)

    def index(self) -> pd.DataFrame:
        """One row per record whose signal file exists at this rate.

        Columns: record_id, ecg_id, patient_id, age, sex ("Male"/"Female"), fold (``strat_fold``),
        fs, n_samples, n_leads, path (relative, without extension), scp_codes (dict), heart_axis.
        """
        if self._index is None:
            db = self.database
            paths = db[RATES[self.fs]].astype(str)
            present = np.array([(self.root / f"{p}.hea").is_file() for p in paths])
            self.missing = [f"{i:05d}" for i in db.index[~present]]
            if self.missing and not self.allow_missing:
                raise DatasetError(
                    f"{len(self.missing)} of {len(db)} PTB-XL records are missing at {self.fs} Hz under "
                    f"{self.root} (first: {paths[~present].iloc[0]}.hea); "
                    f"{int(present.sum())} are present. Use --allow-missing (allow_missing=True) to "
                    "work with the records present, or download the rest."
                )
            db = db[present]
            self._index = pd.DataFrame(
                {
                    "record_id": [f"{i:05d}" for i in db.index],
                    "ecg_id": db.index.to_numpy(),
                    "patient_id": db["patient_id"].to_numpy(),
                    "age": db["age"].to_numpy(dtype=float),
                    "sex": np.where(db["sex"].to_numpy() == 0, "Male", "Female"),
                    "fold": db["strat_fold"].to_numpy(dtype=int),
                    "fs": float(self.fs),
                    "n_samples": 10 * self.fs,
                    "n_leads": 12,
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
        """float64 millivolts ``(n_samples, 12)``, equal to ``wfdb.rdsamp``; RecordError otherwise."""
        return self._read_path(self._path(record_id), record_id)

    def _read_path(self, path: Path, record_id: str) -> np.ndarray:
        signal, fs, leads = read_physical(path)
        if fs != self.fs:
            raise RecordError(str(path), f"header says {fs:g} Hz, expected {self.fs} Hz")
        if signal.shape != (10 * self.fs, 12):
            raise RecordError(
                str(path), f"signal is {signal.shape[0]} samples x {signal.shape[1]} leads, "
                f"expected {10 * self.fs} x 12"
            )
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
        block, problems = read_block(paths, 10 * self.fs, 12, float(self.fs))
        return block, [(record_ids[i], msg) for i, msg in problems]

    def prefetch(self, record_ids: Sequence[str]) -> None:
        """Ask the kernel to read the files ahead (in order), so that disk reads overlap the parsing
        done by the cache's workers; on a cold page cache this is most of the build time."""
        for rel in self._rel_paths(record_ids):
            for ext in (".hea", ".dat"):
                try:
                    fd = os.open(self.root / f"{rel}{ext}", os.O_RDONLY)
                except OSError:
                    continue
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
                finally:
                    os.close(fd)

    def fingerprint(self) -> dict:
        """What the cache depends on: the index files' content and every signal file's size/mtime."""
        h = hashlib.sha256()
        for f in ("ptbxl_database.csv", "scp_statements.csv"):
            h.update(hashlib.sha256((self.root / f).read_bytes()).digest())
        for rel in self.index()["path"]:
            for ext in (".hea", ".dat"):
                try:
                    st = os.stat(self.root / f"{rel}{ext}")
                    h.update(f"{rel}{ext}:{st.st_size}:{st.st_mtime_ns};".encode())
                except FileNotFoundError:
                    h.update(f"{rel}{ext}:missing;".encode())
        return {"adapter": ADAPTER_VERSION, "fs": self.fs, "files": h.hexdigest()[:16]}
