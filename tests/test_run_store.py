"""The run store without training: a run is done only while its completion marker's outputs are
all there and unchanged; recording a failure on a full disk needs no new space and stops the
study with one line; only a lock's owner releases it; a study's results cannot be overwritten by
``ecg-transfer evaluate``; ``... | head`` ends quietly."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ecg_transfer.cli import main
from ecg_transfer.study import store as S
from ecg_transfer.study.plan import plan_study
from ecg_transfer.study.spec import spec_from_dict
from ecg_transfer.study.store import RunStore

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "studies" / "ptbxl_to_g12ec.toml"


def fake_roots(base: Path) -> tuple[Path, Path]:
    """Dataset folders that pass the root checks (nothing is read from them here)."""
    (base / "ptbxl").mkdir(parents=True, exist_ok=True)
    (base / "ptbxl" / "ptbxl_database.csv").touch()
    (base / "g12ec").mkdir(exist_ok=True)
    return base / "ptbxl", base / "g12ec"


def small_spec(base: Path | None = None):
    ptbxl, g12ec = fake_roots(base) if base is not None else ("data/ptbxl", "data/g12ec")
    return spec_from_dict(
        {
            "source": {"root": str(ptbxl)},
            "target": {"root": str(g12ec)},
            "study": {"seeds": [0], "protocols": ["seed18"], "model": "fcn_wang", "leakage": "off"},  # fake roots
            "experiments": {
                "target_share": {"enabled": False},
                "source_share": {"enabled": False},
                "sampling_rate": {"rates": [100]},
                "frequency": {"inputs": ["spectrum"]},
            },
        }
    )


def complete_run(store: RunStore, key: str) -> Path:
    """A run directory holding every output a finished study run has (small stand-ins)."""
    d = store.run_dir(key)
    (d / "evaluation").mkdir(parents=True)
    for name in ("config.json", "splits.json", "evaluation/metrics.json", "evaluation/calibrator_temperature.json"):
        (d / name).write_text(json.dumps({"file": name}))
    for name in ("predictions_val.csv", "predictions_test.csv", "evaluation/predictions_test_temperature.csv"):
        (d / name).write_text("record_id,true:A,prob:A\nr1,1,0.9\n")
    (d / "model.pt").write_bytes(b"\0" * 1000)
    (d / "MODEL_CARD.md").write_text("# card\n")
    return d


# ----- done means complete ------------------------------------------------------------------


def test_done_only_while_the_marker_s_outputs_are_there_and_unchanged(tmp_path):
    store = RunStore(tmp_path)
    d = complete_run(store, "k")
    store.begin("k", name="r")
    assert store.state("k")["state"] == "interrupted"  # started, not done
    store.mark_done("k", name="r")
    marker = json.loads((d / "state.json").read_text())
    assert set(marker["outputs"]) == {
        "config.json",
        "splits.json",
        "predictions_val.csv",
        "predictions_test.csv",
        "evaluation/metrics.json",
        "evaluation/calibrator_temperature.json",
        "evaluation/predictions_test_temperature.csv",
        "model.pt",
        "MODEL_CARD.md",
    }
    assert store.state("k")["state"] == "done"
    os.utime(d / "evaluation" / "metrics.json", (1, 1))  # touched, same content: still done
    assert store.state("k")["state"] == "done"
    (d / "evaluation" / "metrics.json").write_text(json.dumps({"headline": "rewritten by someone"}))
    st = store.state("k")
    assert st["state"] == "interrupted" and "evaluation/metrics.json changed" in st["problem"]
    for name in ("evaluation/metrics.json", "MODEL_CARD.md", "predictions_test.csv", "model.pt"):
        store.mark_done("k")
        (d / name).unlink()
        st = store.state("k")
        assert st["state"] == "interrupted" and f"{name} is missing" in st["problem"], name
        (d / name).write_bytes(b"\0" * 1000 if name == "model.pt" else b"{}")


def test_a_marker_from_before_the_format_and_a_torn_state_are_never_done(tmp_path):
    store = RunStore(tmp_path)
    d = complete_run(store, "k")
    (d / "state.json").write_text(json.dumps({"state": "done", "at": "2024-01-01"}))  # the old marker
    st = store.state("k")
    assert st["state"] == "interrupted" and "older version" in st["problem"]
    store.begin("k")
    started = (d / "state.json").read_bytes()
    assert len(started) == S.STATE_BYTES  # room reserved for a failure record
    failed = json.dumps({"state": "failed", "error": "x" * 200}).encode()
    (d / "state.json").write_bytes(failed[: len(failed) // 2] + started[len(failed) // 2 :])  # torn in-place write
    assert store.state("k")["state"] == "interrupted"
    (d / "state.json").write_bytes(b'{"state": "do')
    assert store.state("k")["state"] == "interrupted"


# ----- a full disk --------------------------------------------------------------------------


@pytest.fixture()
def disk(monkeypatch):
    """``disk.full = True``: every new file fails with ENOSPC (writing in place still works)."""
    import ecg_transfer.atomic as A

    class Disk:
        full = False

    real = A.tempfile.mkstemp

    def mkstemp(*a, **k):
        if Disk.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **k)

    monkeypatch.setattr(A.tempfile, "mkstemp", mkstemp)
    return Disk


def test_a_failure_on_a_full_disk_is_recorded_in_place(tmp_path, disk):
    store = RunStore(tmp_path)
    store.begin("k", name="r")
    disk.full = True
    with pytest.raises(OSError):
        store.mark_done("k")  # the marker needs a new file: refused, the old state stays
    assert json.loads((store.run_dir("k") / "state.json").read_text())["state"] == "started"
    assert store.mark_failed("k", error="OSError: [Errno 28] No space left on device", traceback="T" * 20000)
    st = store.state("k")
    assert st["state"] == "failed" and "No space" in st["error"] and "traceback" not in st
    assert (store.run_dir("k") / "state.json").stat().st_size == S.STATE_BYTES
    assert not store.mark_failed("never-started", error="x")  # nothing reserved: not recorded, no exception


def _study_cli(monkeypatch, spec, execute) -> None:
    import ecg_transfer.study.cli as C
    import ecg_transfer.study.runner as R

    monkeypatch.setattr(C, "load_spec", lambda path, profile=None: spec)
    monkeypatch.setattr(R, "execute_run", execute)


@pytest.mark.parametrize("when", ["during", "before"])
def test_a_full_disk_stops_the_study_with_one_line(tmp_path, disk, monkeypatch, capsys, when):
    """ENOSPC in a run (or before it could start): one line naming the disk and the run, no
    traceback, the failure recorded where there was room, nothing half-written read as done;
    with space again, --retry-failed finishes the study."""
    spec = small_spec(tmp_path / "data")
    runs = plan_study(spec)
    victim = runs[2]
    calls = []

    def execute(runner, run):
        calls.append(run.key)
        if run.key == victim.key and when == "during" and calls.count(run.key) == 1:
            disk.full = True
            raise OSError(errno.ENOSPC, "No space left on device", str(runner.store.run_dir(run.key) / "checkpoint.pt"))

    if when == "before":
        real_begin = RunStore.begin

        tripped = []

        def begin(self, key, **info):
            if key == victim.key and not tripped:
                tripped.append(key)
                disk.full = True
            return real_begin(self, key, **info)

        monkeypatch.setattr(RunStore, "begin", begin)
    _study_cli(monkeypatch, spec, execute)
    out_dir = tmp_path / "study"
    code = main(["study", "run", "spec.toml", "--out", str(out_dir), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out + err, err
    assert lines[0].startswith(f"ecg-transfer: error: disk full on {S.disk_of(out_dir).split(' (')[0]} (")
    assert victim.name in lines[0] and victim.key in lines[0] and "--retry-failed" in lines[0]
    store = RunStore(out_dir)
    states = [store.state(r.key)["state"] for r in runs]
    assert states[:2] == ["done", "done"] and all(s == "missing" for s in states[3:])
    for p in out_dir.glob("runs/*/state.json"):  # every state file reads whole, none says done wrongly
        json.loads(p.read_text())
    if when == "during":
        assert "recorded as failed" in lines[0] and states[2] == "failed"
        assert "No space left" in store.state(victim.key)["error"]
    else:
        assert "not recorded" in lines[0] and states[2] == "missing"
    assert not list(out_dir.glob("runs/*/lock"))
    disk.full = False
    assert main(["study", "run", "spec.toml", "--out", str(out_dir), "--no-progress", "--retry-failed"]) == 0
    assert all(store.state(r.key)["state"] == "done" for r in runs)
    assert calls.count(victim.key) == 1 + (when == "during") and calls.count(runs[0].key) == 1


# ----- locks --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["flock", "exclusive"])
def test_only_the_owner_releases_and_a_lost_lock_stops_the_run(tmp_path, monkeypatch, mode):
    monkeypatch.setenv("ECG_TRANSFER_LOCKING", mode)
    store = RunStore(tmp_path, heartbeat_seconds=0.05)
    lease = store.acquire("k")
    path = store.run_dir("k") / "lock"
    info = json.loads(path.read_text())
    assert info["host"] and info["pid"] == os.getpid() and len(info["token"]) == 32 and info["mode"] == mode
    shown = store.state("k")
    assert shown["state"] == "running" and shown["pid"] == os.getpid() and "token" not in shown
    t0 = path.stat().st_mtime_ns
    time.sleep(0.3)
    assert path.stat().st_mtime_ns > t0  # the heartbeat thread, with this thread asleep
    assert store.acquire("k") is None
    lease.check()
    # another process took it over (stale judgement): the token at the path is no longer ours
    path.write_text(json.dumps({**info, "token": "f" * 32, "pid": 1}))
    with pytest.raises(S.LockLostError, match="no longer this process's lock"):
        lease.check()
    lease.release()
    assert json.loads(path.read_text())["token"] == "f" * 32  # the new owner's lock stays


def test_a_run_whose_lock_is_taken_over_records_nothing(tmp_path):
    from ecg_transfer.study.runner import StudyRunner

    spec = small_spec()
    victim = next(r for r in plan_study(spec) if r.kind == "standalone")

    def execute(runner, run):
        if run.key == victim.key:  # another process takes the lock over while this one works
            lock = runner.store.run_dir(run.key) / "lock"
            lock.write_text(json.dumps({**json.loads(lock.read_text()), "token": "0" * 32, "host": "elsewhere"}))

    s = StudyRunner(spec, tmp_path, execute=execute, echo=lambda m: None).run()
    assert s.busy == [victim.key] and victim.key not in s.trained + s.failed
    assert json.loads((RunStore(tmp_path).run_dir(victim.key) / "state.json").read_text())["state"] == "started"


# ----- a study's evaluation belongs to the study --------------------------------------------


def _fake_study_run(tmp_path: Path) -> Path:
    from ecg_transfer.evaluation.runs import evaluate_run
    from ecg_transfer.predictions import save_predictions

    study = tmp_path / "study"
    (study / "runs").mkdir(parents=True)
    (study / "study.json").write_text("{}")
    rng = np.random.default_rng(0)
    runs = []
    truth = {split: (rng.random((n, 2)) < 0.4).astype(int) for split, n in (("val", 30), ("test", 40))}
    for key in ("aaaa", "bbbb"):
        d = study / "runs" / key
        d.mkdir()
        (d / "definition.json").write_text(json.dumps({"key": key, "name": f"headline/seed18/{key}/s0"}))
        for split, n in (("val", 30), ("test", 40)):
            y = truth[split]
            save_predictions(
                d / f"predictions_{split}.csv",
                [f"r{i}" for i in range(n)],
                ["A", "B"],
                y,
                np.clip(y * 0.6 + rng.random((n, 2)) * 0.4, 0, 1),
            )
        evaluate_run(d, calibrate=["temperature"], n_resamples=20, plots=False)  # the study's evaluation
        runs.append(d)
    return runs[0]


def test_evaluate_refuses_to_overwrite_a_study_s_evaluation(tmp_path, capsys):
    run = _fake_study_run(tmp_path)
    other = run.parent / "bbbb"
    study_files = {p: p.read_bytes() for p in sorted((run / "evaluation").iterdir())}
    for args in ([str(run)], [str(run), "--compare", str(other)], [str(other), str(run)]):
        assert main(["evaluate", *args, "--resamples", "10", "--no-plots"]) == 2
        err = capsys.readouterr().err
        assert "of the study" in err and str(tmp_path / "study") in err and "--out DIR" in err
    assert {p: p.read_bytes() for p in sorted((run / "evaluation").iterdir())} == study_files
    mine = tmp_path / "mine"
    assert (
        main(["evaluate", str(run), "--resamples", "10", "--no-plots", "--out", str(mine), "--compare", str(other)])
        == 0
    )
    assert json.loads((mine / "metrics.json").read_text())["settings"]["n_resamples"] == 10
    assert (mine / "comparison_bbbb.json").exists() and str(mine / "metrics.json") in capsys.readouterr().out
    assert main(["evaluate", str(run), str(other), "--resamples", "10", "--no-plots", "--out", str(mine / "two")]) == 0
    assert {p.name for p in (mine / "two").iterdir()} == {"aaaa", "bbbb", "seeds.json"}
    assert {p: p.read_bytes() for p in sorted((run / "evaluation").iterdir())} == study_files


# ----- small things -------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["study", "plan", "--no-estimate"], ["study", "status", "--all"]])
def test_a_closed_pipe_ends_quietly(tmp_path, command):
    """``... | head``: the reader leaves early; no BrokenPipe traceback, the exit status of SIGPIPE."""
    ptbxl, g12ec = fake_roots(tmp_path / "data")
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.read_text().replace('"data/ptbxl"', f'"{ptbxl}"').replace('"data/g12ec"', f'"{g12ec}"'))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecg_transfer", *command, str(spec), "--out", str(tmp_path / "o")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # before the first line is written
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err


def test_training_does_not_import_the_model_card():
    source = (REPO / "src" / "ecg_transfer" / "training" / "run.py").read_text()
    assert "inference" not in source.split('"""', 2)[2]  # the post-run step writes the card, not train_run
