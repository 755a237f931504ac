"""Memory-mapped signal caches: every record at its own length, one store per (dataset, rate, settings).

Built once, streaming (a bounded chunk of records per worker, whatever the collection's size),
then opened read-only by every later run as a :class:`~ecg_transfer.ragged.RaggedSignals`.

Layout of a cache folder ``<cache_dir>/<dataset>-<fs>hz-<key>/``:

- ``signals.f32``: little-endian float32 millivolts. Record ``i`` is a channel-first
  ``(n_leads, length_i)`` block at its own length: nothing is padded, so the store is the records'
  own samples at the cache rate (CinC 2021's 6-144 s and 30-minute records cost what they hold).
- ``slots.npy``: int64 ``(n_slots, 2)``: element offset and length of each record, one slot per
  indexed record (a record that could not be read has length 0 and no table row).
- ``table.parquet``: the adapter's index for the good records plus ``row`` (slot) and ``n_valid``
  (samples at the cache rate). Parquet, never a pickle (see :mod:`.cache_files`).
- ``meta.json``: the key's inputs, the problems found, the build time, and the checksums of the
  three files above. Written last.

Trust: every open checks the sizes, the table's and slots' sha256 and a sampled hash of the store
(milliseconds); ``verify=True`` (``ecg-transfer data cache --verify``) checks the CRC-32 of every
chunk the build wrote. A damaged cache is rebuilt with a :class:`CacheWarning`.

Atomic and shared: the folder is built under a temporary name (host, pid and a random token) while
the cache's file lock is held, and renamed into place only when complete; concurrent builds of one
cache wait for the first and open what it built. Keyed: the folder name holds a hash of the
adapter's fingerprint (its files' sizes and mtimes and index content) and of the settings.

Memory while building: the index's sample counts only plan chunks (a header's claim never sizes
an allocation); each worker holds one chunk of about ``MEMORY_BUDGET / (4 * workers)`` bytes
(records are read whole, so a single record larger than that is a chunk of its own), and writes it
at an offset it reserves in the store, so the parent never holds signals.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import threading
import time
import uuid
import warnings
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..atomic import atomic_path, atomic_write_json
from ..errors import DatasetError, RecordError
from ..ragged import RaggedSignals, chunk_by_size
from ..signal import resample
from .base import BlockReader, DatasetAdapter, RecordProblem
from .cache_files import (
    CacheDamagedError,
    CacheWarning,
    cache_lock,
    clean_stale,
    die_with_parent,
    pid_alive,
    pwrite_all,
    read_table,
    sample_digest,
    sha256_file,
    temp_name,
    verify_chunks,
    write_table,
)

__all__ = [
    "CacheDamagedError",
    "CacheWarning",
    "CachedSignals",
    "default_cache_dir",
    "load_or_build",
    "open_cache",
    "pid_alive",
]

CACHE_FORMAT = 2
SIGNALS, SLOTS, TABLE, META = "signals.f32", "slots.npy", "table.parquet", "meta.json"
MAX_CHUNK_RECORDS = 512
MEMORY_BUDGET = 768 << 20  # bytes of signal held by all workers together while building


def default_cache_dir() -> Path:
    """``$ECG_TRANSFER_CACHE``, else ``$XDG_CACHE_HOME/ecg-transfer``, else ``~/.cache/ecg-transfer``."""
    env = os.environ.get("ECG_TRANSFER_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ecg-transfer"


@dataclass
class CachedSignals:
    """An opened cache: the records (read-only memmap), the table of good records, what went wrong."""

    path: Path
    signals: RaggedSignals
    table: pd.DataFrame
    problems: list[RecordProblem] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    built: bool = False  # this call built it (False: opened an existing one)

    @property
    def fs(self) -> float:
        return float(self.meta["settings"]["fs"])


def _settings(adapter: DatasetAdapter, index: pd.DataFrame, fs: float | None, seconds: float | None) -> dict:
    """What the store depends on besides the files: rate, optional cut, lead count, format."""
    fs_in = sorted(set(index["fs"].astype(float)))
    n_leads = sorted(set(index["n_leads"].astype(int)))
    if len(n_leads) != 1:
        raise DatasetError(f"{adapter.name}: records have different lead counts {n_leads}; cannot stack them")
    return {
        "fs": float(fs) if fs is not None else fs_in[0],
        "seconds": None if seconds is None else float(seconds),
        "n_leads": n_leads[0],
        "dtype": "<f4",
        "format": CACHE_FORMAT,
    }


def cache_key(fingerprint: dict, settings: dict) -> str:
    blob = json.dumps({"fingerprint": fingerprint, "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _folder_name(adapter: DatasetAdapter, settings: dict, key: str) -> str:
    cut = "" if settings["seconds"] is None else f"-{settings['seconds']:g}s"
    return f"{adapter.name}-{settings['fs']:g}hz{cut}-{key}"


# -- reading one chunk of records ----------------------------------------------------------------
def _fast_block(
    adapter: BlockReader, ids: Sequence[str], fs_in: float, settings: dict
) -> tuple[list[np.ndarray | None], list[tuple[str, str]], np.ndarray]:
    """Adapters with ``read_block(ids)`` (PTB-XL: records of one shape) read a chunk at once;
    also returns the block itself (records, leads, samples)."""
    native, problems = adapter.read_block(ids)
    bad = {rid for rid, _ in problems}
    nonfinite = ~np.isfinite(native).all(axis=(1, 2))
    if fs_in != settings["fs"]:
        native = resample(native, fs_in, settings["fs"], axis=-1).astype(np.float32)
    records: list[np.ndarray | None] = []
    for i, rid in enumerate(ids):
        if rid not in bad and nonfinite[i]:
            problems.append((rid, "signal contains NaN or infinite values"))
        records.append(None if rid in bad or nonfinite[i] else native[i])
    return records, problems, native


def _one_record(rid: str, sig: np.ndarray | Exception, fs_in: float, settings: dict) -> np.ndarray | str:
    """One record as float32 ``(leads, samples)`` at the cache rate, or why it cannot be used."""
    if isinstance(sig, Exception):
        err = sig if isinstance(sig, RecordError) else RecordError(rid, str(sig))
        return err.problem if err.record == rid else str(err)
    if sig.ndim != 2 or sig.shape[1] != settings["n_leads"]:
        return f"signal has shape {sig.shape}, expected (samples, {settings['n_leads']} leads)"
    if sig.shape[0] == 0:
        return "signal has no samples"
    if not np.isfinite(sig).all():
        return "signal contains NaN or infinite values"
    x = sig.T.astype(np.float32)
    if fs_in != settings["fs"]:
        x = resample(x, fs_in, settings["fs"], axis=-1).astype(np.float32)
    return x


def _read_chunk(
    adapter: DatasetAdapter, ids: Sequence[str], fs_in: np.ndarray, settings: dict
) -> tuple[list[np.ndarray | None], list[tuple[str, str]], np.ndarray | None]:
    """Read and resample ``ids``: per record a float32 ``(leads, samples)`` array or None, the
    problems, and -- when every record is good and they are the rows of one contiguous block --
    that block (written as it is, without a copy). Signals are float32 before resampling on both
    paths, as they always were."""
    block = None
    if isinstance(adapter, BlockReader) and len(set(fs_in)) == 1:
        records, problems, block = _fast_block(adapter, ids, float(fs_in[0]), settings)
    else:
        records, problems = [], []
        for i, (rid, sig) in enumerate(adapter.iter_signals(ids)):
            x = _one_record(rid, sig, float(fs_in[i]), settings)
            if isinstance(x, str):
                problems.append((rid, x))
            records.append(None if isinstance(x, str) else x)
    if settings["seconds"] is not None:
        cut = int(round(settings["seconds"] * settings["fs"]))
        if block is not None and block.shape[-1] > cut:
            block = None
        records = [None if r is None else r[:, :cut] for r in records]
    if block is not None and (problems or block.dtype != np.float32 or not block.flags.c_contiguous):
        block = None
    return records, problems, block


# -- building: workers reserve space in the store and write their chunk ---------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(adapter: DatasetAdapter, cursor: Any, parent_pid: int) -> None:
    _WORKER.update(adapter=adapter, cursor=cursor)
    die_with_parent(parent_pid)


def _reserve(nbytes: int) -> int:
    """Byte offset of ``nbytes`` of the store for this chunk (shared by all workers)."""
    cursor = _WORKER["cursor"]
    with cursor.get_lock():
        offset = cursor.value
        cursor.value += nbytes
    return offset


def _work(job: tuple) -> tuple[int, np.ndarray, np.ndarray, list[tuple[str, str]], list | None]:
    """Read one chunk and write it: (first slot, element offsets, lengths, problems, [offset, nbytes, crc32]).

    CRC-32 rather than sha256: it finds accidental damage as well at twice the speed, and a hash
    would not stop someone who can rewrite the store (they can rewrite meta.json too)."""
    start, ids, fs_in, settings, out_path = job
    records, problems, block = _read_chunk(_WORKER["adapter"], ids, fs_in, settings)
    lengths = np.array([0 if r is None else r.shape[1] for r in records], dtype=np.int64)
    sizes = np.array([0 if r is None else r.size for r in records], dtype=np.int64)
    if not sizes.sum():
        return start, np.zeros(len(records), dtype=np.int64), lengths, problems, None
    buf = block if block is not None else np.concatenate([r.ravel() for r in records if r is not None])
    buf = np.ascontiguousarray(buf, dtype="<f4").reshape(-1)
    offset = _reserve(buf.nbytes)
    fd = os.open(out_path, os.O_WRONLY)
    try:
        pwrite_all(fd, buf, offset, Path(out_path))
    finally:
        os.close(fd)
    offsets = offset // 4 + np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return start, offsets, lengths, problems, [offset, buf.nbytes, zlib.crc32(buf.data)]


def _plan(index: pd.DataFrame, settings: dict, workers: int) -> list[slice]:
    """Chunks of consecutive records, each about ``MEMORY_BUDGET / (4 * workers)`` bytes at the cache
    rate as the headers claim (a plan only: a wrong claim costs balance, never an allocation)."""
    claimed = index["n_samples"].to_numpy(dtype=np.float64) * settings["fs"] / index["fs"].to_numpy(dtype=np.float64)
    if settings["seconds"] is not None:
        claimed = np.minimum(claimed, settings["seconds"] * settings["fs"])
    nbytes = np.nan_to_num(np.clip(claimed, 1, 2.0**50), nan=1.0) * settings["n_leads"] * 4
    budget = int(np.clip(MEMORY_BUDGET // (4 * max(workers, 1)), 4 << 20, 64 << 20))
    return chunk_by_size(nbytes.astype(np.int64), budget, MAX_CHUNK_RECORDS)


def _run_jobs(adapter: DatasetAdapter, jobs: list[tuple], workers: int, collect) -> None:
    """Run ``_work`` over ``jobs`` in worker processes (fork; they die with this one) or here."""
    cursor = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else None).Value("q", 0)
    if workers > 1 and len(jobs) > 1 and "fork" in mp.get_all_start_methods():
        ctx = mp.get_context("fork")
        with ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(adapter, cursor, os.getpid())
        ) as pool:
            try:
                for result in pool.map(_work, jobs):
                    collect(result)
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
    else:
        _WORKER.update(adapter=adapter, cursor=cursor)
        try:
            for job in jobs:
                collect(_work(job))
        finally:
            _WORKER.clear()


@contextlib.contextmanager
def _written_back(path: Path, every: float = 0.25) -> Iterator[None]:
    """Flush ``path`` to disk every ``every`` seconds while the body runs, and fully at its end.

    The store must reach the disk before the folder is renamed into place (else a power loss can
    leave a complete-looking cache of zeros). One fsync at the end cost 1.5 s of a 12 s PTB-XL
    build; flushing while the workers still read, from this otherwise waiting process, hides most of it.
    """
    fd = os.open(path, os.O_RDWR)
    stop = threading.Event()
    failed: list[OSError] = []  # a write-back error is reported once per descriptor: keep it

    def flush() -> None:
        try:
            while not stop.wait(every):
                os.fdatasync(fd)
        except OSError as exc:
            failed.append(exc)

    flusher = threading.Thread(target=flush, name="cache-writeback", daemon=True)
    flusher.start()
    try:
        yield
    finally:
        stop.set()
        flusher.join()
        try:
            os.fsync(fd)
        except OSError as exc:
            failed.append(exc)
        finally:
            os.close(fd)
    if failed:  # only when the body succeeded: its own error says more
        raise DatasetError(
            f"{path} could not be written to the disk ({failed[0]}); the cache was not "
            "built. Check the disk (or use another --cache-dir)."
        ) from failed[0]


def _build(
    adapter: DatasetAdapter, index: pd.DataFrame, settings: dict, tmp: Path, workers: int, progress: bool, strict: bool
) -> tuple[pd.DataFrame, np.ndarray, list, list[RecordProblem]]:
    """Write ``tmp/signals.f32``; return the good records' table, the slots, the chunks, the problems."""
    ids = index["record_id"].astype(str).tolist()
    out = tmp / SIGNALS
    out.touch()
    fs_in = index["fs"].to_numpy(dtype=float)
    jobs = [(p.start, ids[p], fs_in[p], settings, str(out)) for p in _plan(index, settings, workers)]
    slots = np.zeros((len(ids), 2), dtype=np.int64)
    chunks: list = []
    problems: list[RecordProblem] = []
    bar = tqdm(total=len(ids), desc=f"caching {adapter.name} @ {settings['fs']:g} Hz", unit="rec", disable=not progress)

    def collect(result: tuple) -> None:
        start, offsets, lengths, probs, chunk = result
        slots[start : start + len(lengths)] = np.stack([offsets, lengths], axis=1)
        if chunk is not None:
            chunks.append(chunk)
        for rid, msg in probs:
            if strict:
                raise RecordError(rid, msg)
            problems.append(RecordProblem(rid, msg))
        bar.update(len(lengths))

    prefetch = getattr(adapter, "prefetch", None)
    if prefetch is not None:
        threading.Thread(target=prefetch, args=(ids,), daemon=True).start()
    try:
        with _written_back(out):
            _run_jobs(adapter, jobs, workers, collect)
    finally:
        bar.close()
    bad = {p.record for p in problems}
    table = index.copy()
    table["row"] = np.arange(len(ids))
    table["n_valid"] = slots[:, 1]
    table = table[~table["record_id"].astype(str).isin(bad) & (slots[:, 1] > 0)].reset_index(drop=True)
    return table, slots, sorted(chunks), problems


def _check_lead_order(adapter: DatasetAdapter, index: pd.DataFrame) -> None:
    """Every record must hold the same leads in the same order to share a store. The adapters read
    leads by name in the standard order (``datasets.leads``), so a difference is a reader's bug:
    refused, never trained on (records used to be dropped here, all but the first one's order)."""
    if "leads" not in index.columns or len(index) == 0:
        return
    orders = {tuple(str(x) for x in leads) for leads in index["leads"]}
    if len(orders) > 1:
        raise DatasetError(
            f"{adapter.name}: records come with different lead orders {sorted(orders)[:3]}; "
            "an adapter must read every record in one order (by name, see datasets.leads)"
        )


# -- opening and checking -------------------------------------------------------------------------
def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, ValueError) as exc:
        raise CacheDamagedError(f"{path / META} cannot be read: {exc}") from None
    if not isinstance(meta, dict) or meta.get("settings", {}).get("format") != CACHE_FORMAT or "store" not in meta:
        raise CacheDamagedError(f"{path / META} is not a format-{CACHE_FORMAT} cache description")
    return meta


def check_cache(path: Path, meta: dict, *, verify: bool = False) -> None:
    """Raise :class:`CacheDamagedError` when the files differ from what the build wrote.

    Always: every file's size, the sha256 of the table and the slots (small), a sampled hash of the
    store. ``verify``: the CRC-32 of every chunk of the store (reads it all).
    """
    store = meta["store"]
    for name, info in ((SIGNALS, store), (SLOTS, meta["slots"]), (TABLE, meta["table"])):
        try:
            size = (path / name).stat().st_size
        except OSError:
            raise CacheDamagedError(f"{path / name} is missing") from None
        if size != info["bytes"]:
            raise CacheDamagedError(f"{path / name} holds {size} bytes, the build wrote {info['bytes']} (truncated?)")
    for name, info in ((SLOTS, meta["slots"]), (TABLE, meta["table"])):
        if sha256_file(path / name) != info["sha256"]:
            raise CacheDamagedError(f"{path / name} differs from what the build wrote (checksum)")
    if sample_digest(path / SIGNALS, store["bytes"]) != store["sample_sha256"]:
        raise CacheDamagedError(f"{path / SIGNALS} differs from what the build wrote (sampled checksum)")
    if verify:
        bad = verify_chunks(path / SIGNALS, store["chunks"], store["bytes"])
        if bad:
            where = ", ".join(f"bytes {o}-{o + n}" for o, n in bad[:5])
            raise CacheDamagedError(f"{path / SIGNALS}: {len(bad)} damaged chunk(s) ({where})")


def _open_signals(path: Path, meta: dict, slots: np.ndarray) -> RaggedSignals:
    data: np.ndarray = (
        np.memmap(path / SIGNALS, dtype="<f4", mode="r") if meta["store"]["bytes"] else np.zeros(0, dtype=np.float32)
    )
    try:
        return RaggedSignals(data, slots[:, 0], slots[:, 1], meta["settings"]["n_leads"], leads=meta.get("leads"))
    except ValueError as exc:
        raise CacheDamagedError(f"{path / SLOTS}: {exc}") from None


def open_cache(path: str | os.PathLike, *, verify: bool = False) -> CachedSignals:
    """Open a finished cache folder read-only, after :func:`check_cache`. Nothing in it is unpickled."""
    path = Path(path)
    meta = _read_meta(path)
    check_cache(path, meta, verify=verify)
    try:
        slots = np.load(path / SLOTS, allow_pickle=False)
        table = read_table(path / TABLE, meta["table"]["json_columns"])
    except (OSError, ValueError) as exc:
        raise CacheDamagedError(f"{path}: {exc}") from None
    if slots.ndim != 2 or slots.shape[1] != 2 or slots.dtype != np.int64:
        raise CacheDamagedError(f"{path / SLOTS} has shape {slots.shape} / {slots.dtype}, expected (n, 2) int64")
    return CachedSignals(
        path=path,
        signals=_open_signals(path, meta, slots),
        table=table,
        problems=[RecordProblem(**p) for p in meta["problems"]],
        meta=meta,
    )


def _try_open(path: Path, verify: bool, warn: bool) -> CachedSignals | None:
    """The cache at ``path`` if it exists and passes its checks; None otherwise (damage: a warning)."""
    if not (path / META).exists():
        return None
    try:
        return open_cache(path, verify=verify)
    except CacheDamagedError as exc:
        if warn:
            warnings.warn(f"the signal cache is damaged and will be rebuilt: {exc}", CacheWarning, stacklevel=3)
        return None


# -- building a cache folder ---------------------------------------------------------------------
def _write_folder(
    tmp: Path,
    adapter: DatasetAdapter,
    index: pd.DataFrame,
    settings: dict,
    key: str,
    fingerprint: dict,
    workers: int,
    progress: bool,
    strict: bool,
) -> None:
    """Everything of a cache folder into ``tmp``; ``meta.json`` (with the checksums) last."""
    t0 = time.perf_counter()
    index_problems = [RecordProblem(p.record, p.problem) for p in getattr(adapter, "problems", [])]
    _check_lead_order(adapter, index)
    if strict and index_problems:
        raise RecordError(index_problems[0].record, index_problems[0].problem)
    table, slots, chunks, problems = _build(adapter, index, settings, tmp, workers, progress, strict)
    json_columns = write_table(table, tmp / TABLE)
    with atomic_path(tmp / SLOTS) as p, open(p, "wb") as fh:
        np.save(fh, slots, allow_pickle=False)
    size = (tmp / SIGNALS).stat().st_size
    leads = [str(x) for x in index["leads"].iloc[0]] if "leads" in index.columns and len(index) else None
    atomic_write_json(
        tmp / META,
        {
            "dataset": adapter.name,
            "key": key,
            "fingerprint": fingerprint,
            "settings": settings,
            "records": int(len(table)),
            "slots_count": int(len(slots)),
            "leads": leads,
            "samples_per_lead": int(slots[:, 1].sum()),
            "problems": [p.to_dict() for p in index_problems + problems],
            "store": {
                "file": SIGNALS,
                "bytes": size,
                "sample_sha256": sample_digest(tmp / SIGNALS, size),
                "chunks": chunks,
            },
            "slots": {"file": SLOTS, "bytes": (tmp / SLOTS).stat().st_size, "sha256": sha256_file(tmp / SLOTS)},
            "table": {
                "file": TABLE,
                "bytes": (tmp / TABLE).stat().st_size,
                "sha256": sha256_file(tmp / TABLE),
                "json_columns": json_columns,
            },
            "build_id": uuid.uuid4().hex,
            "build_seconds": round(time.perf_counter() - t0, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace ``final`` by ``tmp`` (the caller holds the cache's lock)."""
    old = None
    if final.exists():
        old = final.with_name(temp_name(final.name, "old"))
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
    verify: bool = False,
) -> CachedSignals:
    """Open the cache for ``adapter`` at ``fs`` Hz, building it if needed (or damaged).

    ``fs`` defaults to the lowest of the records' own rates; ``seconds`` (None: whole records) keeps
    only each record's first ``seconds`` in the store. ``strict`` stops at the first bad record
    instead of skipping it. ``verify`` checks every byte of an existing cache (else: sizes and a
    sampled checksum). Problems found while indexing and while reading are kept in ``meta.json``.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    index = adapter.index()
    if len(index) == 0:
        raise DatasetError(f"{adapter.name}: no records found")
    settings = _settings(adapter, index, fs, seconds)
    fingerprint = adapter.fingerprint()
    key = cache_key(fingerprint, settings)
    final = cache_dir / _folder_name(adapter, settings, key)
    cached = None if rebuild else _try_open(final, verify, warn=True)
    if cached is not None:
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    with cache_lock(cache_dir, final.name, say=progress):
        cached = None if rebuild else _try_open(final, verify, warn=False)  # built while we waited?
        if cached is not None:
            return cached
        clean_stale(cache_dir, held=final.name)
        tmp = cache_dir / temp_name(final.name, "building")
        tmp.mkdir(parents=True)
        try:
            _write_folder(
                tmp,
                adapter,
                index,
                settings,
                key,
                fingerprint,
                workers or min(2, os.cpu_count() or 1),
                progress,
                strict,
            )
            _swap_in(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        cached = open_cache(final)
    cached.built = True
    return cached
