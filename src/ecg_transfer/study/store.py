"""The run store: one directory per run key under ``STUDY_DIR/runs/``, with its state and a lock.

``STUDY_DIR/runs/<key>/`` is an ordinary run directory (``ecg_transfer.training.run``) plus

- ``definition.json``: the run's key, kind, config, parent key and every use of it in the study;
- ``state.json``: what the last attempt came to: ``started``, ``failed`` (error and traceback) or
  ``done``. It is written atomically (rename) and, when an attempt starts, padded to
  :data:`STATE_BYTES`, so that a failure on a full disk can still be recorded by overwriting it in
  place (no new block needed); a torn in-place write is unreadable JSON, never a ``done``;
- ``lock``: host, pid and a random token of the process working on the run (see :mod:`.locks`).

Done means complete. ``done`` is written last -- after ``model.pt``, the predictions, the study's
evaluation and ``MODEL_CARD.md`` -- and lists those outputs with their sha256 (``model.pt``: its
size; the card: its presence). The run is *done* only while they are all still there and
unchanged; otherwise (killed at any write, an output deleted or rewritten, a marker written
before this format) it is *interrupted*, and the next ``study run`` finishes it from what is
there: training resumes from the checkpoint, predictions come from ``model.pt``, the evaluation
and the card are written again. A finished model is never trained again.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..runfiles import study_run_info  # noqa: F401 (re-exported: the store writes what it reads)
from ..atomic import atomic_write_bytes
from ..errors import EcgTransferError
from .locks import LOCK_FILE, STALE_SECONDS, Lease, LockLostError, RunLocks

log = logging.getLogger(__name__)

STATES = ("done", "failed", "running", "interrupted", "missing")
STATE_FILE = "state.json"
STATE_BYTES = 8192
MARKER_FORMAT = 2
#: Outputs the study relies on, checked by content (sha256); ``evaluation/*.json|csv`` too.
HASHED_OUTPUTS = ("config.json", "splits.json", "predictions_val.csv", "predictions_test.csv")
#: Outputs checked by size (large) or presence (rewritten by ``ecg-transfer model-card``).
SIZED_OUTPUTS = ("model.pt",)
PRESENT_OUTPUTS = ("MODEL_CARD.md",)


class DiskFullError(EcgTransferError):
    """The study's disk is full; the message names the disk and the run."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def no_space(exc: BaseException | None) -> bool:
    """Is ``exc`` (or what caused it) a full disk or an exceeded quota?"""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def disk_of(path: str | os.PathLike) -> str:
    """``"/mount (12 MiB free)"``: the file system ``path`` is on, for messages about a full disk."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    mount = p
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    try:
        free = shutil.disk_usage(p).free
    except OSError:
        return str(mount)
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    value = float(free)
    while value >= 1024 and i < len(units) - 1:
        value, i = value / 1024, i + 1
    return f"{mount} ({value:.0f} {units[i]} free)"


class RunStore:
    """Runs of one study, addressed by key."""

    def __init__(self, study_dir: str | Path, *, heartbeat_seconds: float | None = None):
        self.study_dir = Path(study_dir)
        self.root = self.study_dir / "runs"
        self.locks = RunLocks(self.root, heartbeat_seconds=heartbeat_seconds)

    def run_dir(self, key: str) -> Path:
        return self.root / key

    # ----- state -------------------------------------------------------------------------------
    def _read_state(self, key: str) -> dict[str, Any] | None:
        try:
            text = (self.run_dir(key) / STATE_FILE).read_bytes()
        except FileNotFoundError:
            return None
        try:
            st = json.loads(text)
        except ValueError:  # e.g. a torn in-place failure record
            return {"state": "unreadable"}
        return st if isinstance(st, dict) else {"state": "unreadable"}

    def recorded(self, key: str) -> dict[str, Any]:
        """What ``state.json`` and the outputs say, whatever the lock: done (verified), failed,
        interrupted (started, or done but no longer complete) or missing."""
        d = self.run_dir(key)
        st = self._read_state(key)
        if st is None:
            started = any((d / n).exists() for n in ("checkpoint.pt", "model.pt", LOCK_FILE))
            return {"state": "interrupted" if started else "missing"}
        if st.get("state") == "failed":
            return st
        if st.get("state") == "done":
            problem = self.verify(key, st)
            if problem is None:
                return st
            return {"state": "interrupted", "problem": problem, "completed_at": st.get("at")}
        if st.get("state") == "started":
            return {"state": "interrupted", **{k: st[k] for k in ("host", "pid", "at") if k in st}}
        return {"state": "interrupted", "problem": f"{d / STATE_FILE} is unreadable"}

    def state(self, key: str) -> dict[str, Any]:
        """``{"state": one of STATES, ...}``: running while a live process holds the lock, else
        :meth:`recorded`."""
        lock = self.lock_info(key)
        if lock is not None and lock["alive"]:
            return {"state": "running", **lock}
        return self.recorded(key)

    def outputs(self, key: str) -> dict[str, dict[str, Any]]:
        """The fingerprints of the run's outputs that exist now (what a ``done`` marker lists)."""
        d = self.run_dir(key)
        out: dict[str, dict[str, Any]] = {}
        ev = (
            sorted(p for p in (d / "evaluation").glob("*") if p.suffix in (".json", ".csv"))
            if (d / "evaluation").is_dir()
            else []
        )
        for p in [d / n for n in HASHED_OUTPUTS] + ev:
            if p.is_file():
                st = p.stat()
                out[p.relative_to(d).as_posix()] = {
                    "sha256": _sha256(p),
                    "size": st.st_size,
                    "mtime_ns": st.st_mtime_ns,
                }
        for n in SIZED_OUTPUTS:
            if (d / n).is_file():
                out[n] = {"size": (d / n).stat().st_size}
        for n in PRESENT_OUTPUTS:
            if (d / n).is_file():
                out[n] = {}
        return out

    def verify(self, key: str, marker: dict[str, Any]) -> str | None:
        """None when every output the ``done`` marker lists is there unchanged, else what is wrong."""
        if marker.get("format") != MARKER_FORMAT or not isinstance(marker.get("outputs"), dict):
            return "completed by an older version of the run store; its outputs are checked and evaluated again"
        for rel, problem in self._changes(key, marker, first=True):
            return f"{rel} {problem}"
        return None

    def changed_outputs(self, key: str) -> list[str]:
        """The outputs a ``done`` marker lists that are now missing or different (none without one):
        a run being finished must not take them for its own."""
        st = self._read_state(key) or {}
        if st.get("state") != "done" or st.get("format") != MARKER_FORMAT:
            return []
        return [rel for rel, _ in self._changes(key, st, first=False)]

    def _changes(self, key: str, marker: dict[str, Any], first: bool) -> list[tuple[str, str]]:
        d = self.run_dir(key)
        out = []
        for rel, want in marker.get("outputs", {}).items():
            p = d / rel
            try:
                st = p.stat()
            except OSError:
                out.append((rel, "is missing"))
            else:
                if ("size" in want and st.st_size != want["size"]) or (
                    "sha256" in want and st.st_mtime_ns != want.get("mtime_ns") and _sha256(p) != want["sha256"]
                ):
                    out.append((rel, "changed since the run was completed"))
            if out and first:
                break
        return out

    def begin(self, key: str, **info: Any) -> None:
        """An attempt starts: ``state.json`` = started, padded to reserve room for its failure record."""
        record = {"state": "started", "at": _now(), "host": socket.gethostname(), "pid": os.getpid(), **info}
        self._write_state(key, record, pad=True)

    def mark_done(self, key: str, **info: Any) -> None:
        """The completion marker: written last, atomically, listing the outputs it vouches for."""
        record = {"state": "done", "format": MARKER_FORMAT, "at": _now(), **info, "outputs": self.outputs(key)}
        self._write_state(key, record, pad=False)

    def mark_failed(self, key: str, **info: Any) -> bool:
        """Record a failure. When the disk is too full for a new file, overwrite the reserved
        ``state.json`` in place (dropping the traceback if it does not fit). False: not recorded."""
        record = {"state": "failed", "at": _now(), **info}
        try:
            self._write_state(key, record, pad=True)
            return True
        except OSError as exc:
            log.warning("could not write %s: %s; overwriting it in place", self.run_dir(key) / STATE_FILE, exc)
        return _overwrite_in_place(self.run_dir(key) / STATE_FILE, record)

    def mark(self, key: str, state: str, **info: Any) -> None:
        """``mark(key, "done")`` / ``mark(key, "failed", error=...)``."""
        if state == "done":
            self.mark_done(key, **info)
        elif state == "failed":
            self.mark_failed(key, **info)
        else:
            raise ValueError(f"cannot mark a run {state!r}")

    def _write_state(self, key: str, record: dict[str, Any], pad: bool) -> None:
        data = json.dumps(record, indent=2, sort_keys=True, default=str).encode()
        if pad and len(data) < STATE_BYTES:
            data += b" " * (STATE_BYTES - 1 - len(data)) + b"\n"
        self.run_dir(key).mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.run_dir(key) / STATE_FILE, data)

    # ----- locks (see .locks) -------------------------------------------------------------------
    def lock_mode(self) -> str:
        return self.locks.lock_mode()

    def lock_info(self, key: str) -> dict[str, Any] | None:
        """The lock's content plus ``alive`` (is its holder still working?), or None if unlocked."""
        return self.locks.lock_info(self.run_dir(key) / LOCK_FILE)

    def acquire(self, key: str) -> Lease | None:
        """Take the run's lock; None when a live process holds it. A dead holder's lock is taken over."""
        return self.locks.acquire(self.run_dir(key) / LOCK_FILE)

    def release(self, key: str) -> None:
        """Release this process's lease on the run (no-op when it holds none)."""
        lease = self.locks.held(self.run_dir(key) / LOCK_FILE)
        if lease is not None:
            lease.release()


def _sha256(path: Path) -> str:
    from ..datasets.download import sha256_file

    return sha256_file(path)


def _overwrite_in_place(path: Path, record: dict[str, Any]) -> bool:
    """Write ``record`` over the reserved ``path`` without growing it (no new block on a full disk)."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return False
    try:
        size = os.fstat(fd).st_size
        record = dict(record)
        data = json.dumps(record, default=str).encode()
        if len(data) >= size:
            record.pop("traceback", None)
            data = json.dumps(record, default=str).encode()
        while len(data) >= size and len(str(record.get("error", ""))) > 40:
            record["error"] = str(record["error"])[: len(str(record["error"])) // 2] + "..."
            data = json.dumps(record, default=str).encode()
        if len(data) >= size:
            return False
        os.pwrite(fd, data + b" " * (size - 1 - len(data)) + b"\n", 0)
        os.fsync(fd)
        return True
    except OSError as exc:
        log.warning("could not record the failure in %s: %s", path, exc)
        return False
    finally:
        os.close(fd)


__all__ = [
    "DiskFullError",
    "Lease",
    "LockLostError",
    "RunStore",
    "STALE_SECONDS",
    "STATES",
    "STATE_BYTES",
    "disk_of",
    "no_space",
    "study_run_info",
]
