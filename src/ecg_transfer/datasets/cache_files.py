"""The signal cache's files, treated as untrusted input: checked writes, checksums, no pickle, locks.

A cache folder may be shared (several runs, several machines on one network disk) and may be
damaged (a full disk, a killed build, a stray copy), so everything read back is data only and
checked:

- the table is Parquet (pyarrow), never a pickle: a file placed in the folder cannot run code when
  the cache is opened. Object columns (dicts of SCP codes, lists of leads or SNOMED codes) are
  stored as JSON text and decoded on read;
- the signal store carries checksums: its size and a hash of a few sampled blocks are checked on
  every open (milliseconds), the CRC-32 of every written chunk with ``verify`` (a full read);
- every ``os.pwrite`` is checked: a short write (a full disk) fails and says where;
- a per-cache file lock (``filelock``) serialises builds of one cache across processes and
  machines; temporary folders carry the host name and pid, and are removed by later runs only when
  their owner is gone (same host and pid dead, or the cache's lock is free);
- build workers die with the process that started them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from ..atomic import atomic_path
from ..errors import DatasetError
from .download import sha256_file  # noqa: F401 (re-exported: the cache checks its small files with it)

log = logging.getLogger(__name__)

SAMPLE_BLOCK = 1 << 16  # bytes per sampled block of the cheap check
SAMPLE_COUNT = 16
MAX_WRITE = 1 << 30  # Linux writes at most ~2 GiB per call; larger buffers go in pieces
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class CacheDamagedError(DatasetError):
    """A finished cache folder fails its checks (truncated, overwritten, missing or foreign files)."""


class CacheWarning(UserWarning):
    """Something about a cache was wrong and has been dealt with (e.g. a damaged cache rebuilt)."""


# -- checked writes -------------------------------------------------------------------------------
def pwrite_all(fd: int, data: Any, offset: int, path: Path) -> None:
    """Write ``data`` (bytes-like) at ``offset``; a short write or ENOSPC raises naming ``path``."""
    view = memoryview(data).cast("B")
    for lo in range(0, len(view), MAX_WRITE):
        piece = view[lo : lo + MAX_WRITE]
        try:
            written = os.pwrite(fd, piece, offset + lo)
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                raise DatasetError(_disk_full(path, offset + lo, 0, len(piece))) from None
            raise DatasetError(f"cannot write the signal cache {path}: {exc.strerror or exc}") from None
        if written != len(piece):
            raise DatasetError(_disk_full(path, offset + lo, written, len(piece)))


def _disk_full(path: Path, offset: int, written: int, wanted: int) -> str:
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return (
        f"the disk is full: wrote {written} of {wanted} bytes to {path} at offset {offset} ({free} on the "
        f"disk holding {path.parent}); free space there or put the cache elsewhere with --cache-dir or "
        "$ECG_TRANSFER_CACHE"
    )


# -- checksums ------------------------------------------------------------------------------------
def sample_digest(path: Path, size: int) -> str:
    """sha256 of ``SAMPLE_COUNT`` blocks spread evenly over the file (first and last included).

    A truncated file fails the size check; zeroed or overwritten stretches usually hit a sampled
    block; ``verify`` reads everything.
    """
    h = hashlib.sha256(str(size).encode())
    if size == 0:
        return h.hexdigest()
    starts = np.unique(np.linspace(0, max(size - SAMPLE_BLOCK, 0), SAMPLE_COUNT).astype(np.int64))
    with open(path, "rb") as fh:
        for s in starts.tolist():
            fh.seek(s)
            h.update(fh.read(SAMPLE_BLOCK))
    return h.hexdigest()


def verify_chunks(path: Path, chunks: list[list], size: int) -> list[tuple[int, int]]:
    """Byte ranges ``(offset, nbytes)`` whose CRC-32 differs from the build's (a full read)."""
    bad = []
    covered = 0
    with open(path, "rb") as fh:
        for offset, nbytes, crc in sorted(chunks):
            if offset != covered:
                bad.append((covered, max(offset - covered, 0)))
            covered = offset + nbytes
            fh.seek(offset)
            value, left = 0, nbytes
            while left:
                block = fh.read(min(left, 1 << 22))
                if not block:
                    break
                value = zlib.crc32(block, value)
                left -= len(block)
            if left or value != crc:
                bad.append((offset, nbytes))
    if covered != size:
        bad.append((covered, abs(size - covered)))
    return bad


# -- the table: Parquet, object columns as JSON ---------------------------------------------------
def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} cannot be stored in the cache table")


def write_table(table: pd.DataFrame, path: Path) -> list[str]:
    """Write ``table`` as Parquet; object columns become JSON text. Returns those columns."""
    out = table.reset_index(drop=True).copy()
    json_columns = [c for c in out.columns if out[c].dtype == object]
    for c in json_columns:
        out[c] = pd.Series([json.dumps(v, default=_json_default) for v in out[c]], dtype=object)
    with atomic_path(path) as tmp:
        out.to_parquet(tmp, engine="pyarrow", index=False)
    return json_columns


def read_table(path: Path, json_columns: list[str]) -> pd.DataFrame:
    """The table :func:`write_table` wrote; Parquet holds data only, so reading it runs no code."""
    import pyarrow.parquet as pq

    table = pq.read_table(path).to_pandas()
    for c in json_columns:
        if c not in table.columns:
            raise CacheDamagedError(f"{path}: column {c!r} is missing")
        table[c] = pd.Series([json.loads(v) for v in table[c]], dtype=object, index=table.index)
    return table


# -- locks and temporary folders ------------------------------------------------------------------
_TEMP = re.compile(r"^\.(?P<cache>.+)\.(?P<kind>building|old)-(?P<host>.+)-(?P<pid>\d+)-(?P<token>[0-9a-f]+)$")
_LEGACY = re.compile(r"^\.(?P<cache>.+)\.building-(?P<pid>\d+)$")  # format 1: one host, no token


def host_name() -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "host"


def temp_name(cache: str, kind: str) -> str:
    """``.<cache>.<kind>-<host>-<pid>-<token>``: unique across machines sharing the folder."""
    return f".{cache}.{kind}-{host_name()}-{os.getpid()}-{os.urandom(4).hex()}"


def lock_path(cache_dir: Path, cache: str) -> Path:
    return cache_dir / f".{cache}.lock"


@contextlib.contextmanager
def cache_lock(cache_dir: Path, cache: str, *, say: bool = True) -> Iterator[None]:
    """Hold the cache's lock; says so (once) when another process holds it."""
    lock = FileLock(str(lock_path(cache_dir, cache)))
    try:
        lock.acquire(timeout=1)
    except Timeout:
        msg = f"waiting for another process to finish building {cache_dir / cache} (lock {lock.lock_file})"
        log.warning(msg)
        if say:
            print(msg, file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _lock_is_free(cache_dir: Path, cache: str) -> FileLock | None:
    """The cache's lock, acquired, if nobody holds it; else None."""
    lock = FileLock(str(lock_path(cache_dir, cache)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock


def clean_stale(cache_dir: Path, held: str) -> list[Path]:
    """Remove temporary folders whose owner is gone; ``held``: the cache whose lock we hold.

    An owner holds its cache's lock for as long as its temporary folder exists, so a folder is
    stale when it belongs to ``held``, when its owner ran on this host and that pid is gone, or
    when its cache's lock is free. Returns what was removed.
    """
    removed = []
    for entry in sorted(cache_dir.glob(".*")):
        m = _TEMP.match(entry.name) or _LEGACY.match(entry.name)
        if m is None or not entry.is_dir():
            continue
        cache, pid = m.group("cache"), int(m.group("pid"))
        host = m.groupdict().get("host") or host_name()
        lock = None
        stale = cache == held or (host == host_name() and not pid_alive(pid))
        if not stale:
            lock = _lock_is_free(cache_dir, cache)
            stale = lock is not None
        try:
            if stale:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
                log.info("removed %s (left by a build that is no longer running)", entry)
        finally:
            if lock is not None:
                lock.release()
    return removed


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


# -- workers die with their parent ----------------------------------------------------------------
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, poll_seconds: float = 0.5) -> None:
    """Make this (worker) process end when ``parent_pid`` does.

    On Linux the kernel sends SIGKILL when the parent exits (``prctl(PR_SET_PDEATHSIG)``); a thread
    polling the parent's pid covers other systems and the moment before the prctl.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
            pass
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
