"""The cache as a trust boundary: no pickle, checksums, checked writes, locks, stale folders, workers.

Each test damages or races a cache the way a shared folder, a full disk or a killed job would.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from filelock import FileLock

import ecg_transfer
from ecg_transfer.datasets import cache as cache_mod
from ecg_transfer.datasets import cache_files
from ecg_transfer.datasets.cache import CacheWarning, load_or_build, open_cache
from ecg_transfer.datasets.cache_files import CacheDamagedError, host_name, pid_alive
from ecg_transfer.datasets.ptbxl import PTBXL
from ecg_transfer.errors import DatasetError

from wfdb_fixtures import make_ptbxl_tree

SRC = Path(ecg_transfer.__file__).resolve().parents[1]


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    return make_ptbxl_tree(tmp_path / "ptbxl", n_records=12, rates=(100,))


def _same_as_reads(c, tree: Path) -> None:
    ds = PTBXL(tree)
    for rid, row in zip(c.table["record_id"], c.table["row"]):
        assert np.array_equal(c.signals.record(int(row)), ds.read(rid).T.astype(np.float32))


# -- no pickle -----------------------------------------------------------------------------------
class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_planted_pickle_is_never_unpickled(tree: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = load_or_build(PTBXL(tree), cache_dir=cache_dir, progress=False)
    marker = cache_dir / "owned"
    # what an attacker with write access to a shared cache folder would plant (the old table file)
    (c.path / "table.pkl").write_bytes(pickle.dumps(_Payload(str(marker))))

    def refuse(*args, **kwargs):
        raise AssertionError("the cache unpickled something")

    for target in (pickle, "load"), (pickle, "loads"), (pd, "read_pickle"):
        monkeypatch.setattr(*target, refuse)
    again = load_or_build(PTBXL(tree), cache_dir=cache_dir, progress=False, verify=True)
    open_cache(c.path, verify=True)
    assert not marker.exists() and again.path == c.path and not again.built
    assert (c.path / "table.parquet").read_bytes()[:4] == b"PAR1"
    assert again.table["scp_codes"].tolist() == PTBXL(tree).index()["scp_codes"].tolist()  # dicts round-trip


def test_no_module_reads_pickles() -> None:
    risky = re.compile(r"read_pickle|pickle\.loads?\(|allow_pickle\s*=\s*True|torch\.load\((?![^)]*weights_only=True)")
    found = [
        f"{p.relative_to(SRC)}:{i}"
        for p in (SRC / "ecg_transfer").rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if risky.search(line)
    ]
    # distributed.py pickles an exception it raised itself to test it can travel; nothing read from disk
    assert [f for f in found if not f.startswith("ecg_transfer/training/distributed.py")] == []


# -- checksums: damaged caches are found and rebuilt -----------------------------------------------
def _damage_and_reopen(tree: Path, cache_dir: Path, damage, *, verify: bool = False):
    c = load_or_build(PTBXL(tree), cache_dir=cache_dir, progress=False)
    damage(c.path)
    with pytest.warns(CacheWarning, match="damaged"):
        again = load_or_build(PTBXL(tree), cache_dir=cache_dir, progress=False, verify=verify)
    assert again.built and again.meta["build_id"] != c.meta["build_id"]
    _same_as_reads(again, tree)
    return again


def test_truncated_store_is_rebuilt(tree: Path, cache_dir: Path) -> None:
    def truncate(path: Path) -> None:
        with open(path / cache_mod.SIGNALS, "rb+") as fh:
            fh.truncate(fh.seek(0, 2) // 3)

    _damage_and_reopen(tree, cache_dir, truncate)


def test_half_zeroed_store_is_rebuilt(tree: Path, cache_dir: Path) -> None:
    def zero_half(path: Path) -> None:
        f = path / cache_mod.SIGNALS
        size = f.stat().st_size
        with open(f, "rb+") as fh:
            fh.seek(size // 2)
            fh.write(b"\0" * (size - size // 2))

    _damage_and_reopen(tree, cache_dir, zero_half)


def test_verify_finds_a_small_change_the_sampled_check_cannot(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    tree = make_ptbxl_tree(tmp_path / "ptbxl40", n_records=40, rates=(100,))  # 1.9 MB: gaps between samples
    c = load_or_build(PTBXL(tree), cache_dir=cache_dir, progress=False)
    size = c.meta["store"]["bytes"]
    sampled = np.unique(np.linspace(0, size - cache_files.SAMPLE_BLOCK, cache_files.SAMPLE_COUNT).astype(int))
    gap = next(
        int(s + cache_files.SAMPLE_BLOCK + 8)
        for s, t in zip(sampled, sampled[1:])
        if t - s > cache_files.SAMPLE_BLOCK + 64
    )
    with open(c.path / cache_mod.SIGNALS, "rb+") as fh:
        fh.seek(gap)
        fh.write(b"\x7f\x7f\x7f\x7f")
    assert not load_or_build(PTBXL(tree), cache_dir=cache_dir, progress=False).built  # cheap check: not seen
    with pytest.raises(CacheDamagedError, match="damaged chunk"):
        open_cache(c.path, verify=True)
    from ecg_transfer.cli import main

    with pytest.warns(CacheWarning, match="damaged"):
        assert (
            main(
                [
                    "data",
                    "cache",
                    "--dataset",
                    "ptbxl",
                    "--root",
                    str(tree),
                    "--cache-dir",
                    str(cache_dir),
                    "--verify",
                    "--no-progress",
                ]
            )
            == 0
        )
    assert "built" in capsys.readouterr().out
    _same_as_reads(open_cache(c.path, verify=True), tree)


@pytest.mark.parametrize(
    "name,content", [("meta.json", b"{not json"), ("table.parquet", b"PAR1 garbage PAR1"), ("slots.npy", None)]
)
def test_damaged_metadata_files_are_rebuilt(tree: Path, cache_dir: Path, name: str, content: bytes | None) -> None:
    def damage(path: Path) -> None:
        if content is None:
            (path / name).unlink()
        else:
            (path / name).write_bytes(content)

    _damage_and_reopen(tree, cache_dir, damage)


# -- every write checked -------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["short", "enospc"])
def test_a_full_disk_fails_and_says_where(
    tree: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    real = os.pwrite

    def full_disk(fd, data, offset):
        if how == "enospc":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, memoryview(data)[: len(memoryview(data)) // 3], offset)

    monkeypatch.setattr(cache_files.os, "pwrite", full_disk)
    with pytest.raises(DatasetError, match=r"disk is full.*signals\.f32.*--cache-dir"):
        load_or_build(PTBXL(tree), cache_dir=cache_dir, progress=False, workers=1)
    assert [p.name for p in cache_dir.iterdir() if not p.name.endswith(".lock")] == []


# -- the store reaches the disk before the folder is renamed into place ----------------------------
def test_store_is_written_back_while_building_and_synced_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_fdatasync, real_fsync = os.fdatasync, os.fsync
    monkeypatch.setattr(cache_mod.os, "fdatasync", lambda fd: (calls.append("fdatasync"), real_fdatasync(fd))[1])
    monkeypatch.setattr(cache_mod.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    store = tmp_path / "signals.f32"
    store.write_bytes(b"")
    with cache_mod._written_back(store, every=0.01):
        with open(store, "ab") as fh:
            fh.write(b"\0" * 4096)
        time.sleep(0.2)
    assert calls.count("fdatasync") >= 2, calls  # flushed while the body ran
    assert calls[-1] == "fsync" and calls.count("fsync") == 1  # and once fully at its end


def test_a_write_back_error_fails_the_build(tree: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An I/O error seen by the background flush is reported once per descriptor: it must not be lost."""
    real = cache_mod._written_back

    def failing(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(cache_mod.os, "fdatasync", failing)
    monkeypatch.setattr(cache_mod, "_written_back", lambda path: real(path, every=0.0005))
    with pytest.raises(DatasetError, match=r"signals\.f32 could not be written to the disk.*Input/output error"):
        load_or_build(PTBXL(tree), cache_dir=cache_dir, progress=False, workers=1)
    assert [p.name for p in cache_dir.iterdir() if not p.name.endswith(".lock")] == []


# -- temporary folders: host and pid in the name, removed only when their owner is gone ----------------
def test_build_folder_names_carry_host_and_pid(tree: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real = cache_mod._write_folder

    def spy(tmp, *args, **kwargs):
        seen.append(tmp.name)
        return real(tmp, *args, **kwargs)

    monkeypatch.setattr(cache_mod, "_write_folder", spy)
    load_or_build(PTBXL(tree), cache_dir=cache_dir, progress=False)
    assert re.fullmatch(rf"\..+\.building-{re.escape(host_name())}-{os.getpid()}-[0-9a-f]+", seen[0])


def _holder(lock: Path, ready: Path) -> subprocess.Popen:
    code = (
        f"from filelock import FileLock; import time, pathlib; l = FileLock({str(lock)!r}); l.acquire(); "
        f"pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    for _ in range(200):
        if ready.exists():
            return proc
        time.sleep(0.05)
    raise AssertionError("lock holder did not start")


def test_stale_folders_removed_only_when_their_owner_is_gone(tree: Path, cache_dir: Path, tmp_path: Path) -> None:
    cache_dir.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    folders = {
        "dead here": cache_dir / f".ptbxl-100hz-aaaa.building-{host_name()}-{dead_pid}-00ff",
        "legacy": cache_dir / f".ptbxl-100hz-10s-bbbb.building-{dead_pid}",
        "elsewhere, lock free": cache_dir / ".ptbxl-100hz-cccc.building-other-host.example-4242-0a0a",
        "elsewhere, locked": cache_dir / ".ptbxl-100hz-dddd.building-other-host.example-4242-0b0b",
        "alive here, locked": cache_dir / f".cinc-500hz-eeee.old-{host_name()}-{os.getpid()}-0c0c",
    }
    for f in folders.values():
        f.mkdir()
        (f / cache_mod.SIGNALS).write_bytes(b"half")
    holder = _holder(cache_files.lock_path(cache_dir, "ptbxl-100hz-dddd"), tmp_path / "ready")
    mine = FileLock(str(cache_files.lock_path(cache_dir, "cinc-500hz-eeee")))
    mine.acquire()
    try:
        load_or_build(PTBXL(tree), cache_dir=cache_dir, progress=False)
    finally:
        mine.release()
        holder.kill()
        holder.wait()
    left = {k for k, f in folders.items() if f.exists()}
    assert left == {"elsewhere, locked", "alive here, locked"}
    load_or_build(PTBXL(tree), fs=50, cache_dir=cache_dir, progress=False)  # now both locks are free
    assert not any(f.exists() for f in folders.values())


# -- several processes ---------------------------------------------------------------------------
def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(Path(__file__).parent)])}


def test_concurrent_builds_never_crash_and_build_once(tree: Path, cache_dir: Path) -> None:
    code = textwrap.dedent(f"""
        import json, sys
        from ecg_transfer.datasets.cache import load_or_build
        from ecg_transfer.datasets.ptbxl import PTBXL
        c = load_or_build(PTBXL({str(tree)!r}), cache_dir={str(cache_dir)!r}, progress=False, workers=2)
        print(json.dumps({{"build_id": c.meta["build_id"], "built": c.built, "records": len(c.table)}}))
    """)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
        )
        for _ in range(8)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert len({r["build_id"] for r in results}) == 1 and sum(r["built"] for r in results) == 1
    assert all(r["records"] == 12 for r in results)
    assert [p.name for p in cache_dir.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")] == []


SLOW_ADAPTER = '''
import os, time
import numpy as np, pandas as pd

class Slow:
    """Claims 30-minute records (one per chunk), writes each worker's pid, then reads slowly."""
    name = "slow"

    def __init__(self, pids):
        self.pids = pids

    def index(self):
        return pd.DataFrame({"record_id": [f"s{i}" for i in range(6)], "fs": 500.0, "n_samples": 900_000,
                             "n_leads": 12})

    def iter_signals(self, ids):
        open(os.path.join(self.pids, str(os.getpid())), "w").close()
        time.sleep(120)
        for rid in ids:
            yield rid, np.zeros((1000, 12))

    def fingerprint(self):
        return {"slow": 1}
'''


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_build_and_its_folder_is_cleaned(tree: Path, cache_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "slow_adapter.py").write_text(SLOW_ADAPTER)
    pids = tmp_path / "pids"
    pids.mkdir()
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); from slow_adapter import Slow; "
        f"from ecg_transfer.datasets.cache import load_or_build; "
        f"load_or_build(Slow({str(pids)!r}), cache_dir={str(cache_dir)!r}, progress=False, workers=2)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], env=_env())
    deadline = time.time() + 120
    while len(list(pids.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.1)
    workers = [int(p.name) for p in pids.iterdir()]
    assert len(workers) == 2, "the build did not start two workers"
    building = [p for p in cache_dir.iterdir() if ".building-" in p.name]
    assert len(building) == 1 and f"-{parent.pid}-" in building[0].name
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while any(_state(w) not in ("gone", "Z") for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert [w for w in workers if _state(w) not in ("gone", "Z")] == []
    assert not pid_alive(parent.pid)
    load_or_build(PTBXL(tree), cache_dir=cache_dir, progress=False)  # a later run, another cache
    assert not building[0].exists()
