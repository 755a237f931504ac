"""Memory-mapped signal caches: one float32 array per (dataset, sampling rate, settings).

Built once, streaming (a chunk of records at a time, so peak memory stays far below the
dataset's size), then opened read-only with ``numpy.load(mmap_mode="r")`` by every later run.

Layout of a cache folder ``<cache_dir>/<dataset>-<fs>hz-<key>/``:

- ``signals.npy``: float32 ``(n_slots, n_leads, n_samples)`` in millivolts, channel-first as the
  models take it. A record that could not be read keeps an all-zero slot and no table row.
- ``table.pkl``: the adapter's index for the good records plus ``row`` (slot in ``signals.npy``)
  and ``n_valid`` (samples that are signal, not zero padding).
- ``meta.json``: the key's inputs, shape, the problems found, the build time. Written last.

Atomic: the folder is built under a temporary name and renamed into place only when complete, so a
killed build leaves nothing a later run would trust (stale temporaries are removed next time).
Keyed: the folder name holds a hash of the adapter's fingerprint (its files' sizes and mtimes and
index content) and of the settings, so changed inputs or settings build a new cache.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..atomic import atomic_write_json
from ..errors import DatasetError, RecordError
from ..signal import fit_length, resample
from .base import DatasetAdapter, RecordProblem

CACHE_FORMAT = 1
CHUNK = 512


def default_cache_dir() -> Path:
    """``$ECG_TRANSFER_CACHE``, else ``$XDG_CACHE_HOME/ecg-transfer``, else ``~/.cache/ecg-transfer``."""
    env = os.environ.get("ECG_TRANSFER_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ecg-transfer"


@dataclass
class CachedSignals:
    """An opened cache: the read-only memmap, the table of good records, and what went wrong."""

    path: Path
    signals: np.ndarray
    table: pd.DataFrame
    problems: list[RecordProblem] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def fs(self) -> float:
        return float(self.meta["settings"]["fs"])


def _settings(adapter: DatasetAdapter, index: pd.DataFrame, fs: float | None, seconds: float | None) -> dict:
    fs_in = sorted(set(index["fs"].astype(float)))
    n_leads = sorted(set(index["n_leads"].astype(int)))
    if len(n_leads) != 1:
        raise DatasetError(f"{adapter.name}: records have different lead counts {n_leads}; cannot stack them")
    fs_out = float(fs) if fs is not None else fs_in[0]
    if seconds is None:
        seconds = float((index["n_samples"] / index["fs"]).max())
    return {
        "fs": fs_out,
        "seconds": float(seconds),
        "n_samples": int(round(seconds * fs_out)),
        "n_leads": n_leads[0],
        "dtype": "float32",
        "format": CACHE_FORMAT,
    }


def cache_key(fingerprint: dict, settings: dict) -> str:
    blob = json.dumps({"fingerprint": fingerprint, "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _folder_name(adapter: DatasetAdapter, settings: dict, key: str) -> str:
    return f"{adapter.name}-{settings['fs']:g}hz-{settings['seconds']:g}s-{key}"


# -- building ----------------------------------------------------------------------------------
_WORKER_ADAPTER: DatasetAdapter | None = None


def _fill_chunk(
    adapter: DatasetAdapter, ids: Sequence[str], fs_in: np.ndarray, settings: dict
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Read, resample and fit ``ids``; return the float32 block, valid lengths and problems.

    Adapters with a ``read_block(ids)`` method (PTB-XL) read the whole chunk at once; others are
    read record by record through ``iter_signals``. Signals are float32 before resampling in both.
    """
    n, c, t = len(ids), settings["n_leads"], settings["n_samples"]
    block = np.zeros((n, c, t), dtype=np.float32)
    n_valid = np.zeros(n, dtype=np.int64)
    problems: list[tuple[str, str]] = []
    fs_out = settings["fs"]
    read_block = getattr(adapter, "read_block", None)
    if read_block is not None and len(set(fs_in)) == 1:
        native, block_problems = read_block(ids)
        problems.extend(block_problems)
        bad = {rid for rid, _ in block_problems}
        nonfinite = ~np.isfinite(native).all(axis=(1, 2))
        if fs_in[0] != fs_out:
            native = resample(native, fs_in[0], fs_out, axis=-1).astype(np.float32)
        fitted, valid = fit_length(native, t, axis=-1)
        block[:] = fitted
        for i, rid in enumerate(ids):
            if rid in bad:
                block[i] = 0.0
            elif nonfinite[i]:
                problems.append((rid, "signal contains NaN or infinite values"))
                block[i] = 0.0
            else:
                n_valid[i] = valid
        return block, n_valid, problems
    for i, (rid, sig) in enumerate(adapter.iter_signals(ids)):
        if isinstance(sig, Exception):
            err = sig if isinstance(sig, RecordError) else RecordError(rid, str(sig))
            problems.append((rid, err.problem if err.record == rid else str(err)))
            continue
        if not np.isfinite(sig).all():
            problems.append((rid, "signal contains NaN or infinite values"))
            continue
        x = sig.T.astype(np.float32)  # (leads, samples)
        if fs_in[i] != fs_out:
            x = resample(x, fs_in[i], fs_out, axis=-1).astype(np.float32)
        block[i], n_valid[i] = fit_length(x, t, axis=-1)
    return block, n_valid, problems


def _work(args: tuple) -> tuple[int, np.ndarray, list[tuple[str, str]]]:
    start, ids, fs_in, settings, out_path, offset = args
    block, n_valid, problems = _fill_chunk(_WORKER_ADAPTER, ids, fs_in, settings)
    fd = os.open(out_path, os.O_WRONLY)
    try:
        os.pwrite(fd, block.tobytes(), offset + start * block[0].nbytes if len(block) else 0)
    finally:
        os.close(fd)
    return start, n_valid, problems


def _init_worker(adapter: DatasetAdapter) -> None:
    global _WORKER_ADAPTER
    _WORKER_ADAPTER = adapter


def _build(
    adapter: DatasetAdapter, index: pd.DataFrame, settings: dict, tmp: Path, workers: int,
    progress: bool, strict: bool,
) -> tuple[pd.DataFrame, list[RecordProblem]]:
    ids = index["record_id"].astype(str).tolist()
    n = len(ids)
    shape = (n, settings["n_leads"], settings["n_samples"])
    out = tmp / "signals.npy"
    arr = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=shape)
    offset = arr.offset
    del arr  # the file exists at full (sparse) size; chunks are written into it with pwrite
    fs_in = index["fs"].to_numpy(dtype=float)
    jobs = [
        (s, ids[s : s + CHUNK], fs_in[s : s + CHUNK], settings, str(out), offset)
        for s in range(0, n, CHUNK)
    ]
    n_valid = np.zeros(n, dtype=np.int64)
    problems: list[RecordProblem] = []
    bar = tqdm(total=n, desc=f"caching {adapter.name} @ {settings['fs']:g} Hz", unit="rec", disable=not progress)

    def collect(result: tuple[int, np.ndarray, list[tuple[str, str]]]) -> None:
        start, valid, probs = result
        n_valid[start : start + len(valid)] = valid
        for rid, msg in probs:
            if strict:
                raise RecordError(rid, msg)
            problems.append(RecordProblem(rid, msg))
        bar.update(len(valid))

    prefetch = getattr(adapter, "prefetch", None)
    warmer = threading.Thread(target=prefetch, args=(ids,), daemon=True) if prefetch else None
    if warmer is not None:
        warmer.start()
    global _WORKER_ADAPTER
    if workers > 1 and len(jobs) > 1 and "fork" in mp.get_all_start_methods():
        ctx = mp.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(adapter,)) as pool:
            try:
                for result in pool.map(_work, jobs):
                    collect(result)
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
    else:
        _WORKER_ADAPTER = adapter
        for job in jobs:
            collect(_work(job))
    bar.close()
    bad = {p.record for p in problems}
    table = index.copy()
    table["row"] = np.arange(n)
    table["n_valid"] = n_valid
    table = table[~table["record_id"].astype(str).isin(bad)].reset_index(drop=True)
    return table, problems


def _same_lead_order(index: pd.DataFrame) -> tuple[pd.DataFrame, list[RecordProblem]]:
    """Keep records whose leads come in the first record's order; the others cannot share an array."""
    if "leads" not in index.columns or len(index) == 0:
        return index, []
    order = [tuple(str(x).upper() for x in leads) for leads in index["leads"]]
    ok = np.array([o == order[0] for o in order])
    problems = [
        RecordProblem(str(rid), f"leads {list(leads)} are not in the order of the other records ({list(order[0])})")
        for rid, leads in zip(index["record_id"][~ok], index["leads"][~ok])
    ]
    return index[ok].reset_index(drop=True), problems


def open_cache(path: Path) -> CachedSignals:
    meta = json.loads((path / "meta.json").read_text())
    return CachedSignals(
        path=path,
        signals=np.load(path / "signals.npy", mmap_mode="r"),
        table=pd.read_pickle(path / "table.pkl"),
        problems=[RecordProblem(**p) for p in meta["problems"]],
        meta=meta,
    )


def load_or_build(
    adapter: DatasetAdapter,
    fs: float | None = None,
    seconds: float | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    workers: int | None = None,
    progress: bool = True,
    strict: bool = False,
    rebuild: bool = False,
) -> CachedSignals:
    """Open the cache for ``adapter`` at ``fs`` Hz and ``seconds`` of signal, building it if needed.

    ``fs`` defaults to the records' own rate, ``seconds`` to the longest record. ``strict`` stops at
    the first bad record instead of skipping it. Problems found while indexing (headers that cannot
    be parsed, ...) and while reading are both kept in ``meta.json`` and returned.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    index = adapter.index()
    if len(index) == 0:
        raise DatasetError(f"{adapter.name}: no records found")
    settings = _settings(adapter, index, fs, seconds)
    fingerprint = adapter.fingerprint()
    key = cache_key(fingerprint, settings)
    final = cache_dir / _folder_name(adapter, settings, key)
    if final.exists() and (final / "meta.json").exists() and not rebuild:
        return open_cache(final)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for stale in cache_dir.glob(f".{adapter.name}-*.building-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = cache_dir / f".{final.name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        index_problems = [RecordProblem(p.record, p.problem) for p in getattr(adapter, "problems", [])]
        index, lead_problems = _same_lead_order(index)
        index_problems += lead_problems
        if strict and index_problems:
            raise RecordError(index_problems[0].record, index_problems[0].problem)
        table, problems = _build(
            adapter, index, settings, tmp, workers or min(2, os.cpu_count() or 1), progress, strict
        )
        table.to_pickle(tmp / "table.pkl")
        atomic_write_json(
            tmp / "meta.json",
            {
                "dataset": adapter.name,
                "key": key,
                "fingerprint": fingerprint,
                "settings": settings,
                "shape": [len(index), settings["n_leads"], settings["n_samples"]],
                "records": int(len(table)),
                "problems": [p.to_dict() for p in index_problems + problems],
                "build_seconds": round(time.perf_counter() - t0, 3),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_cache(final)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
