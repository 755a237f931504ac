"""The run store: one directory per run key under ``STUDY_DIR/runs/``, with its state and a lock.

``STUDY_DIR/runs/<key>/`` is an ordinary run directory (``ecg_transfer.training.run``) plus

- ``definition.json``: the run's key, kind, config, parent key and every use of it in the study;
- ``state.json``: ``done`` | ``failed`` (with the error and traceback) -- written atomically;
- ``lock``: present while a process trains the run: host, pid, start time; its mtime is a
  heartbeat refreshed every epoch.

A run is *running* while its lock is held by a live process (same host: the pid exists; another
host: the heartbeat is younger than ``STALE_SECONDS``). A lock left by a killed process is stale:
the run is *interrupted* and the next ``study run`` resumes it from its last checkpoint. Several
processes (``--shard``) on one shared folder never train the same run twice: the lock is created
with ``O_CREAT | O_EXCL``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_json
from ..datasets.cache import pid_alive

STALE_SECONDS = 30 * 60
STATES = ("done", "failed", "running", "interrupted", "missing")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunStore:
    """Runs of one study, addressed by key."""

    def __init__(self, study_dir: str | Path):
        self.study_dir = Path(study_dir)
        self.root = self.study_dir / "runs"

    def run_dir(self, key: str) -> Path:
        return self.root / key

    # ----- state -------------------------------------------------------------------------------
    def _read_json(self, path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def lock_info(self, key: str) -> dict[str, Any] | None:
        """The lock's content plus ``alive`` (is its holder still working?), or None if unlocked."""
        path = self.run_dir(key) / "lock"
        info = self._read_json(path)
        if info is None:
            if not path.exists():
                return None
            info = {}  # being written right now: treat as alive
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return None
        if info.get("host") == socket.gethostname() and "pid" in info:
            alive = pid_alive(int(info["pid"]))
        else:
            alive = age < STALE_SECONDS
        return {**info, "alive": alive, "heartbeat_age_s": round(age, 1)}

    def state(self, key: str) -> dict[str, Any]:
        """``{"state": one of STATES, ...}``: done/failed from state.json, else from the lock."""
        lock = self.lock_info(key)
        if lock is not None and lock["alive"]:
            return {"state": "running", **lock}
        st = self._read_json(self.run_dir(key) / "state.json")
        if st and st.get("state") in ("done", "failed"):
            return st
        if lock is not None or (self.run_dir(key) / "checkpoint.pt").exists():
            return {"state": "interrupted"}
        return {"state": "missing"}

    def mark(self, key: str, state: str, **info: Any) -> None:
        self.run_dir(key).mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.run_dir(key) / "state.json", {"state": state, "at": _now(), **info})

    def clear_state(self, key: str) -> None:
        (self.run_dir(key) / "state.json").unlink(missing_ok=True)

    # ----- locks -------------------------------------------------------------------------------
    def acquire(self, key: str) -> bool:
        """Take the run's lock; False when a live process holds it. A stale lock is taken over."""
        d = self.run_dir(key)
        d.mkdir(parents=True, exist_ok=True)
        path = d / "lock"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                info = self.lock_info(key)
                if info is not None and info["alive"]:
                    return False
                path.unlink(missing_ok=True)  # stale: its holder was killed
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump({"host": socket.gethostname(), "pid": os.getpid(), "started": _now()}, fh)
            return True
        return False

    def heartbeat(self, key: str) -> None:
        try:
            os.utime(self.run_dir(key) / "lock")
        except FileNotFoundError:
            pass

    def release(self, key: str) -> None:
        (self.run_dir(key) / "lock").unlink(missing_ok=True)


__all__ = ["RunStore", "STALE_SECONDS", "STATES"]
