"""Shard locks without races: several processes on one study folder, with random delays injected
around every file-system call they make, never hold one run's lock together, never take over a
live run, and never train or evaluate a run twice -- also when they re-run a finished study.

Each check runs in both lock modes: ``flock`` (kernel leases) and ``exclusive`` (``O_EXCL`` lock
files with an ``O_EXCL`` takeover claim, for file systems without ``flock``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ecg_transfer.study.plan import plan_study
from ecg_transfer.study.spec import spec_from_dict
from ecg_transfer.study.store import RunStore

MODES = ("flock", "exclusive")

# Random sleeps around every call a lock or a state check makes, so that the processes interleave
# at every step; written into each child before it starts.
DELAYS = textwrap.dedent("""
    import builtins, fcntl, io, os, random, time

    def _slow(fn, scale):
        def wrapped(*a, **k):
            time.sleep(random.uniform(0, scale))
            try:
                return fn(*a, **k)
            finally:
                time.sleep(random.uniform(0, scale))
        return wrapped

    def inject_delays(seed, scale=0.004):
        random.seed(seed)
        for name in ("open", "unlink", "rename", "replace", "link", "write", "pwrite", "ftruncate", "fsync",
                     "utime", "stat", "fstat", "close", "mkdir"):
            setattr(os, name, _slow(getattr(os, name), scale))
        fcntl.flock = _slow(fcntl.flock, scale)
        builtins.open = io.open = _slow(io.open, scale)

    def wait_for(path):
        open(f"{path}.ready.{os.getpid()}", "w").close()
        while not os.path.exists(path):
            time.sleep(0.001)

    def log(path, *words):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(fd, (" ".join(map(str, words)) + "\\n").encode())
        os.close(fd)
""")

TAKEOVER = DELAYS + textwrap.dedent("""
    import sys, time
    from ecg_transfer.study import store as S

    study, key, seed, logfile, go, hold = sys.argv[1:]
    store = S.RunStore(study)
    inject_delays(int(seed))
    wait_for(go)
    got = store.acquire(key)
    if got:
        t0 = time.time()
        time.sleep(float(hold))
        log(logfile, "held", os.getpid(), t0, time.time())
        store.release(key)
    else:
        log(logfile, "busy", os.getpid())
""")

RUNNER = DELAYS + textwrap.dedent("""
    import json, random, sys, time
    from ecg_transfer.study import runner as R
    from ecg_transfer.study.spec import spec_from_dict

    study, spec_json, seed, logfile, go = sys.argv[1:]
    R.WAIT_POLL_SECONDS = 0.05
    R.StudyRunner._write_results = lambda self: None  # not what is tested; slow
    spec = spec_from_dict(json.loads(spec_json))

    def execute(runner, run):  # stands for training + evaluation: logged, then a little work
        log(logfile, "execute", run.key, os.getpid())
        time.sleep(random.uniform(0, 0.03))

    inject_delays(int(seed))
    wait_for(go)
    R.StudyRunner(spec, study, execute=execute, echo=lambda m: None).run()
""")


def _spawn(script: str, args: list[str], mode: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "ECG_TRANSFER_LOCKING": mode, **(extra_env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _start_together(procs: list[subprocess.Popen], go: Path, timeout: float = 120) -> None:
    """Touch ``go`` once every child waits at the start line."""
    deadline = time.time() + timeout
    while len(list(go.parent.glob(go.name + ".ready.*"))) < len(procs):
        for p in procs:
            assert p.poll() is None, p.communicate()[0]
        assert time.time() < deadline, "children did not start"
        time.sleep(0.02)
    go.touch()


def _wait_all(procs: list[subprocess.Popen], timeout: float = 300) -> None:
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        assert p.returncode == 0, out


def _dead_pid() -> int:
    return int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
    )


@pytest.mark.parametrize("mode", MODES)
def test_a_stale_lock_taken_over_by_three_processes_is_never_held_twice(tmp_path, mode):
    """Three processes find the lock of a killed process at the same moment: never two holders at
    once (the old unlink-and-recreate let two win), and the lock is released by its owner."""
    store = RunStore(tmp_path)
    for round_ in range(4):
        key = f"k{round_}"
        store.run_dir(key).mkdir(parents=True)
        (store.run_dir(key) / "lock").write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid()}))
        go, logfile = tmp_path / f"go{round_}", tmp_path / f"log{round_}"
        procs = [
            _spawn(TAKEOVER, [str(tmp_path), key, str(round_ * 10 + i), str(logfile), str(go), "0.6"], mode)
            for i in range(3)
        ]
        _start_together(procs, go)
        _wait_all(procs)
        lines = [l.split() for l in logfile.read_text().splitlines()]
        held = sorted((float(l[2]), float(l[3])) for l in lines if l[0] == "held")
        assert len(lines) == 3 and held, lines
        assert all(a_end < b_start for (_, a_end), (b_start, _) in zip(held, held[1:])), f"two holders: {lines}"
        assert not (store.run_dir(key) / "lock").exists()  # released by its owner
        assert not (store.run_dir(key) / "lock.takeover").exists()


@pytest.mark.parametrize("mode", MODES)
def test_no_run_is_executed_twice_by_three_study_processes(tmp_path, mode):
    """Three `study run` processes on one folder, delays everywhere: every run executed exactly
    once; two more processes on the finished study execute nothing (no re-evaluation)."""
    spec_dict = {
        "source": {"root": "data/ptbxl"},
        "target": {"root": "data/g12ec"},
        "study": {"seeds": [0], "protocols": ["seed18"], "model": "fcn_wang"},
        "experiments": {
            "target_share": {"enabled": False},
            "source_share": {"enabled": False},
            "sampling_rate": {"rates": [100]},
            "frequency": {"inputs": ["spectrum"]},
        },
    }
    runs = plan_study(spec_from_dict(spec_dict))
    study, logfile = tmp_path / "study", tmp_path / "log"
    for round_, n in ((0, 3), (1, 2)):
        go = tmp_path / f"go{round_}"
        procs = [
            _spawn(RUNNER, [str(study), json.dumps(spec_dict), str(round_ * 10 + i), str(logfile), str(go)], mode)
            for i in range(n)
        ]
        _start_together(procs, go)
        _wait_all(procs)
        executed = [l.split()[1] for l in logfile.read_text().splitlines()]
        assert sorted(executed) == sorted(r.key for r in runs), f"round {round_}: {executed}"
    store = RunStore(study)
    assert all(store.state(r.key)["state"] == "done" for r in runs)
    assert not list((study / "runs").glob("*/lock*"))


HOLDER = DELAYS + textwrap.dedent("""
    import socket, sys, time
    from ecg_transfer.study import locks as L, store as S

    L.STALE_SECONDS = 1.0
    socket.gethostname = lambda: "node-a"  # the other host: judged by its heartbeat alone
    study, key, go, hold = sys.argv[1:]
    store = S.RunStore(study, heartbeat_seconds=0.2)
    assert store.acquire(key)
    open(go, "w").close()
    time.sleep(float(hold))  # a cache build, a slow epoch, the evaluation: no epoch callback here
    store.release(key)
""")


@pytest.mark.parametrize("mode", MODES)
def test_the_heartbeat_keeps_a_long_step_of_another_host_alive(tmp_path, mode, monkeypatch):
    """A holder on another host whose step outlasts the stale time is kept alive by its
    heartbeat thread: nobody takes its run over (the per-epoch heartbeat let them)."""
    from ecg_transfer.study import locks as L

    monkeypatch.setattr(L, "STALE_SECONDS", 1.0)
    monkeypatch.setenv("ECG_TRANSFER_LOCKING", mode)
    go = tmp_path / "go"
    holder = _spawn(HOLDER, [str(tmp_path), "k", str(go), "3.5"], mode)
    deadline = time.time() + 120
    while not go.exists():
        assert holder.poll() is None and time.time() < deadline, holder.communicate()[0]
        time.sleep(0.05)
    store = RunStore(tmp_path)
    t_end = time.time() + 2.5
    while time.time() < t_end:  # well past the stale time
        assert store.state("k")["state"] == "running"
        assert store.acquire("k") is None
        time.sleep(0.1)
    _wait_all([holder])
    assert store.state("k")["state"] != "running"
