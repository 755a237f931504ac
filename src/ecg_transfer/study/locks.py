"""Run locks: one process at a time works on a run, with host and pid in the lock, a heartbeat
thread for the run's whole life, takeover of a dead holder's lock that two processes never both
win, and release by the owner only.

A run's lock (``runs/<key>/lock``) is held from before its process looks at the run until after
it wrote the completion marker, and refreshed by a background thread every
:data:`HEARTBEAT_SECONDS` -- through the cache build, training, prediction and evaluation, with
or without epochs -- so it never looks stale while its holder lives.

- Where the file system has ``flock`` (local disks, NFSv4, GPFS, Lustre mounted with ``flock``),
  the lock is a kernel lease on the ``lock`` file: released by the kernel when its holder dies,
  so taking over a dead holder's lock is the same atomic ``flock`` as taking a free one. A lock
  whose host is another machine with a heartbeat younger than :data:`STALE_SECONDS` is also
  respected, in case the mount's locks are local to each node.
- Elsewhere (``flock`` unsupported, or ``ECG_TRANSFER_LOCKING=exclusive``) the lock is created with
  ``O_CREAT | O_EXCL``; its holder is alive while its pid exists (same host) or its heartbeat is
  younger than :data:`STALE_SECONDS` (another host). A stale lock is taken over under a
  ``lock.takeover`` claim file (itself ``O_EXCL``), after checking that the lock is still the very
  file judged stale (inode *and* change time: a new lock may reuse a removed one's inode) and still
  stale, so two processes never both take it over. A claim whose process was killed inside that
  millisecond section is removed after :data:`CLAIM_STALE_SECONDS`; two processes finding such a
  claim at the same instant is the one window this mode leaves (``flock`` leaves none).

Only the owner releases a lock: it checks that the file at ``lock`` is still its own (same
inode, same random token) before unlinking it, and a run whose lock was taken over stops before
writing its marker (:class:`LockLostError`).
"""

from __future__ import annotations

import enum
import errno
import json
import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: O_EXCL locks only
    fcntl = None  # type: ignore[assignment]

from ..errors import EcgTransferError

log = logging.getLogger(__name__)

STALE_SECONDS = 10 * 60
HEARTBEAT_SECONDS = 30.0
CLAIM_STALE_SECONDS = 60.0  # a takeover claim lives milliseconds; older: its claimant died
LOCK_FILE = "lock"
_NO_FLOCK = {errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL}
_HELD: dict[str, "Lease"] = {}  # this process's leases, by lock path


class _Retry(enum.Enum):
    """An attempt lost a race with the lock's release or takeover: try again (a typed sentinel)."""

    RETRY = enum.auto()


_RETRY = _Retry.RETRY


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class LockLostError(EcgTransferError):
    """This process's lock on a run was taken over by another; the run is left to that one."""


def _locking() -> str:
    mode = os.environ.get("ECG_TRANSFER_LOCKING", "auto")
    if mode not in ("auto", "flock", "exclusive"):
        raise EcgTransferError(f"ECG_TRANSFER_LOCKING={mode!r}: allowed auto, flock, exclusive")
    return mode


def _flock(fd: int, shared: bool = False) -> bool | None:
    """Non-blocking ``flock``: True taken, False held by another, None not supported here."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        if exc.errno in _NO_FLOCK:
            return None
        raise


def _read_fd(fd: int) -> dict[str, Any]:
    try:
        obj = json.loads(os.pread(fd, 65536, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


class Lease:
    """One process's hold on one run's lock, from :meth:`RunStore.acquire` to :meth:`release`.

    A daemon thread refreshes the lock's mtime (the heartbeat other hosts judge it by) every
    ``heartbeat_seconds`` for as long as the lease is held, and notes when the lock stopped being
    this lease's (:meth:`check` raises then).
    """

    def __init__(self, path: Path, fd: int, info: dict[str, Any], mode: str, heartbeat_seconds: float):
        self.path, self.fd, self.info, self.mode = path, fd, info, mode
        self.token = str(info["token"])
        self._identity = _identity(os.fstat(fd))
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, args=(heartbeat_seconds,), daemon=True, name=f"ecg-transfer heartbeat {path.parent.name}"
        )
        self._thread.start()

    def _beat(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                os.utime(self.fd)  # the file this lease holds, whatever is at its path now
            except OSError as exc:
                log.warning("heartbeat of %s failed: %s", self.path, exc)
            if self.lost is None and not self.owned():
                self.lost = f"{self.path} is no longer this process's lock (now: {self.holder()})"
                log.warning(self.lost)

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
            return f"pid {info.get('pid')} on {info.get('host')}"
        except (OSError, ValueError):
            return "absent"

    def owned(self) -> bool:
        """Is the file at the lock's path still this lease's (same inode, same token)?"""
        try:
            if _identity(os.stat(self.path)) != self._identity:
                return False
        except OSError:
            return False
        return _read_fd(self.fd).get("token") == self.token

    def check(self) -> None:
        """Raise :class:`LockLostError` if another process took the lock over."""
        if self.lost is None and not self.owned():
            self.lost = f"{self.path} is no longer this process's lock (now: {self.holder()})"
        if self.lost is not None:
            raise LockLostError(f"{self.lost}; leaving the run to that process")

    def release(self) -> None:
        """Stop the heartbeat; unlink the lock only if it is still this lease's; drop the flock."""
        self._stop.set()
        self._thread.join()
        try:
            if self.owned():
                os.unlink(self.path)  # while still holding the flock: no one can be taking it now
            else:
                log.warning("not removing %s: it is no longer this process's lock (now: %s)", self.path, self.holder())
        except OSError as exc:  # the run's outcome is recorded already; a stale lock is taken over later
            log.warning("could not remove %s: %s", self.path, exc)
        finally:
            os.close(self.fd)
            _HELD.pop(str(self.path), None)


class RunLocks:
    """The locks of the runs under one ``runs/`` folder."""

    def __init__(self, root: str | Path, *, heartbeat_seconds: float | None = None):
        self.root = Path(root)
        self.heartbeat_seconds = HEARTBEAT_SECONDS if heartbeat_seconds is None else heartbeat_seconds
        self._mode: str | None = None

    def lock_mode(self) -> str:
        """``flock`` where this file system has it, else ``exclusive`` (see the module docstring)."""
        if self._mode is None:
            mode = _locking()
            if mode == "auto":
                self.root.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.root / ".lock-probe", os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    mode = "exclusive" if _flock(fd) is None else "flock"
                finally:
                    os.close(fd)  # drops the probe's flock
            self._mode = mode
        return self._mode

    def _lock_record(self, path: Path) -> dict[str, Any] | None:
        """The lock file's content plus its age and identity; None when there is no lock."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            st = os.fstat(fd)
            # the inode number alone does not name a file: a new lock may reuse a removed one's
            return {"info": _read_fd(fd), "age": time.time() - st.st_mtime, "id": (*_identity(st), st.st_ctime_ns)}
        finally:
            os.close(fd)

    def _alive_by_record(self, rec: dict[str, Any]) -> bool:
        """Without flock: the pid exists (this host), or the heartbeat is fresh (another host)."""
        info = rec["info"]
        if info.get("host") == socket.gethostname() and "pid" in info:
            return _pid_alive(int(info["pid"]))
        return rec["age"] < STALE_SECONDS

    def _probe(self, path: Path) -> bool | None:
        """flock mode: is the lock held (True), free (False), or can this not be told (None)?"""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            got = _flock(fd, shared=True)
        finally:
            os.close(fd)
        return None if got is None else not got

    def lock_info(self, path: Path) -> dict[str, Any] | None:
        """The lock's content plus ``alive`` (is its holder still working?), or None if unlocked."""
        held = _HELD.get(str(path))
        if held is not None:  # ours: never reopened (closing a second fd would drop POSIX-emulated locks)
            info = {k: v for k, v in held.info.items() if k != "token"}
            return {**info, "alive": True, "heartbeat_age_s": round(time.time() - os.fstat(held.fd).st_mtime, 1)}
        rec = self._lock_record(path)
        if rec is None:
            return None
        try:
            mode = self.lock_mode()
        except OSError:  # cannot probe here (read-only, full): judge by the record alone
            mode = "exclusive"
        if mode == "flock":
            held_now = self._probe(path)
            other_host = rec["info"].get("host") not in (None, socket.gethostname())
            alive = (
                bool(held_now)
                or (other_host and rec["age"] < STALE_SECONDS)
                or (held_now is None and self._alive_by_record(rec))
            )
        else:
            alive = self._alive_by_record(rec)
        info = {k: v for k, v in rec["info"].items() if k != "token"}
        return {**info, "alive": alive, "heartbeat_age_s": round(rec["age"], 1)}

    def acquire(self, path: Path) -> "Lease | None":
        """Take the lock at ``path``; None when a live process holds it. A dead holder's lock is taken over."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if str(path) in _HELD:
            return None
        for _ in range(20):
            got = self._acquire_flock(path) if self.lock_mode() == "flock" else self._acquire_exclusive(path)
            if got is not _RETRY:
                if got is not None:
                    _HELD[str(path)] = got
                return got
        return None

    def _new_lease(self, path: Path, fd: int, mode: str) -> Lease:
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": _now(),
            "token": uuid.uuid4().hex,
            "mode": mode,
        }
        data = json.dumps(info).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        return Lease(path, fd, info, mode, self.heartbeat_seconds)

    def _acquire_flock(self, path: Path) -> Lease | None | Literal[_Retry.RETRY]:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        keep = False
        try:
            got = _flock(fd)
            for _ in range(10):  # a status probe holds a shared lock for microseconds
                if got is not False:
                    break
                time.sleep(0.02)
                got = _flock(fd)
            if got is None:
                raise EcgTransferError(f"{path}: flock stopped working here; set ECG_TRANSFER_LOCKING=exclusive")
            if not got:
                return None
            try:
                if _identity(os.stat(path)) != _identity(os.fstat(fd)):
                    return _RETRY  # its owner released (unlinked) it between our open and flock
            except FileNotFoundError:
                return _RETRY
            holder, age = _read_fd(fd), time.time() - os.fstat(fd).st_mtime
            if holder.get("host") not in (None, socket.gethostname()) and age < STALE_SECONDS:
                return None  # another machine's fresh lock: this mount's locks may be local to each node
            try:
                lease = self._new_lease(path, fd, "flock")
            except BaseException:  # e.g. a full disk: leave no empty lock behind (the flock is ours)
                path.unlink(missing_ok=True)
                raise
            keep = True
            return lease
        finally:
            if not keep:
                os.close(fd)

    def _acquire_exclusive(self, path: Path) -> Lease | None | Literal[_Retry.RETRY]:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            rec = self._lock_record(path)
            if rec is None:
                return _RETRY
            if self._alive_by_record(rec):
                return None
            return _RETRY if self._take_over(path, rec) else None
        try:
            return self._new_lease(path, fd, "exclusive")
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise

    def _take_over(self, path: Path, judged: dict[str, Any]) -> bool:
        """Remove the stale lock ``judged`` under an O_EXCL claim; False when another process is at it."""
        claim = path.with_name(LOCK_FILE + ".takeover")
        try:
            cfd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                age = time.time() - claim.stat().st_mtime
            except FileNotFoundError:
                return True
            if age > CLAIM_STALE_SECONDS:
                claim.unlink(missing_ok=True)
                return True
            return False
        try:
            now = self._lock_record(path)
            if (
                now is not None
                and now["id"] == judged["id"]
                and now["info"] == judged["info"]
                and not self._alive_by_record(now)
            ):
                path.unlink()  # still the very file judged stale, and still stale
            return True
        finally:
            os.close(cfd)
            claim.unlink(missing_ok=True)

    @staticmethod
    def held(path: Path) -> "Lease | None":
        """This process's lease on the lock at ``path``, if it holds one."""
        return _HELD.get(str(path))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


__all__ = [
    "CLAIM_STALE_SECONDS",
    "HEARTBEAT_SECONDS",
    "LOCK_FILE",
    "Lease",
    "LockLostError",
    "RunLocks",
    "STALE_SECONDS",
]
