"""``study run --executor slurm``.

Unit tests drive submitit's real SLURM executor (sbatch file, pickled job) with ``sbatch``
replaced by a counter and job states set by the test: dependencies, what is skipped, what is not
submitted twice, how ended jobs are recorded. One test runs a job's callable in this process to
check what a job records. The end-to-end test runs a tiny study on a real one-node SLURM cluster
(``.ci/slurm_up.sh`` starts one) and compares it with a local run of the same spec; it is skipped,
with the reason, where SLURM is not up. A torchrun test trains a pre-training with two processes
the way a multi-GPU job does.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecg_transfer.cli import main
from ecg_transfer.errors import ConfigError
from ecg_transfer.study.executors import slurm as slurm_mod
from ecg_transfer.study.executors.job import RunJob, RunNotDoneError
from ecg_transfer.study.executors.slurm import (
    SlurmError,
    SlurmOptions,
    SlurmStudy,
    add_job_record,
    job_records,
    parse_slurm_opts,
    parse_time,
    slurm_job_states,
)
from ecg_transfer.study.plan import plan_study
from ecg_transfer.study.spec import load_spec
from ecg_transfer.study.store import RunStore
from wfdb_fixtures import make_cinc_tree, make_ptbxl_tree

SLURM_STATUS = Path("/tmp/ecg-transfer-slurm-up.txt")


def write_spec(path: Path, data: Path, out: Path, rates: tuple[int, ...] = (100,)) -> Path:
    """A tiny study as a JSON spec: one pre-training a rate (experiment 3 when two rates), each with
    a fine-tuned run, and a standalone run a rate; a network without dropout."""
    off = {"enabled": False}
    spec = {
        "study": {
            "name": "tinyslurm",
            "out": str(out),
            "model": "fcn_wang",
            "fs": 100,
            "seeds": [0],
            "leakage": "off",
            "model_kwargs": {"filters": [8, 8], "kernel_sizes": [5, 3], "head_hidden": [8], "head_dropout": 0.0},
            "protocols": ["seed18"],
            "bootstrap": 50,
            "cache_dir": str(data / "cache"),
            "lengths": [1],  # the executor, not the choice of length
        },
        "source": {"root": str(data / "ptbxl"), "epochs": 2},
        "target": {"root": str(data / "g12ec")},
        "finetune": {
            "policy": "gradual",
            "stages": [{"epochs": 1, "train": "head", "lr": 0.01}, {"epochs": 1, "train": "all", "lr": [1e-4, 1e-3]}],
        },
        "standalone": {"epochs": 2},
        "experiments": {
            "target_share": off,
            "source_share": off,
            "frequency": off,
            "sampling_rate": {"rates": list(rates)} if len(rates) > 1 else off,
            "calibration": {"methods": ["temperature"]},
        },
    }
    path.write_text(json.dumps(spec, indent=2))
    return path


# ----- a fake sbatch under submitit's real executor -----------------------------------------------


class FakeCluster:
    """submitit's SlurmExecutor writes the sbatch file and pickles the job; "sbatch" only counts.
    Jobs are PENDING once submitted; the test sets other states."""

    def __init__(self) -> None:
        self.next_id = 100
        self.states: dict[str, str] = {}

    def executor(self, folder: Path):
        import submitit

        cluster = self

        class Executor(submitit.SlurmExecutor):
            @classmethod
            def affinity(cls) -> int:  # submitit >= 1.5.4 refuses a machine without srun: this one is the cluster
                return 2

            def _make_submission_command(self, submission_file_path):
                cluster.next_id += 1
                cluster.states[str(cluster.next_id)] = "PENDING"
                return ["echo", f"Submitted batch job {cluster.next_id}"]

        return Executor(folder=folder)

    def job_states(self, ids):
        return {str(i): self.states.get(str(i), "UNKNOWN") for i in ids}


@pytest.fixture()
def cluster() -> FakeCluster:
    pytest.importorskip("submitit")
    return FakeCluster()


@pytest.fixture()
def study(tmp_path):
    """A spec (two pre-trainings, each with a fine-tuned run; two standalone runs) and its plan."""
    spec = load_spec(write_spec(tmp_path / "spec.json", tmp_path / "data", tmp_path / "study", rates=(100, 50)))
    runs = plan_study(spec)
    assert sorted(r.kind for r in runs) == ["finetuned"] * 2 + ["pretrain"] * 2 + ["standalone"] * 2
    return spec, runs, tmp_path / "study"


def make(spec, study_dir, cluster, options=None, **kw) -> SlurmStudy:
    return SlurmStudy(
        spec,
        study_dir,
        options or SlurmOptions(),
        echo=lambda m: None,
        executor=cluster.executor,
        states=cluster.job_states,
        **kw,
    )


def sbatch_text(study_dir: Path, key: str, job_id: str) -> str:
    return (study_dir / "slurm" / key / f"{job_id}_submission.sh").read_text()


def last_job(study_dir: Path, key: str) -> dict:
    return job_records(study_dir / "runs" / key)[-1]


# ----- options --------------------------------------------------------------------------------------


def test_time_limits_in_every_slurm_format():
    assert parse_time("90") == 90
    assert parse_time("01:30:00") == 90
    assert parse_time("00:00:30") == 1  # rounded up: never less than asked
    assert parse_time("2-00:00:00") == 2880
    for bad in ("", "1:30", "ninety", "0", "00:00:00"):
        with pytest.raises(ConfigError, match="--time"):
            parse_time(bad)


def test_slurm_opts_pass_through_but_not_what_the_executor_owns():
    assert parse_slurm_opts(["qos=high", "--mem=32G", "exclusive"]) == {"qos": "high", "mem": "32G", "exclusive": True}
    with pytest.raises(ConfigError, match="--partition"):
        parse_slurm_opts(["partition=gpu"])
    with pytest.raises(ConfigError, match="sets it itself"):
        parse_slurm_opts(["dependency=afterok:1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_slurm_opts(["qos="])


def test_slurm_options_need_the_slurm_executor_and_shard_does_not_mix_with_it(study, capsys):
    spec, _, _ = study
    assert main(["study", "run", str(spec.path), "--partition", "gpu"]) != 0
    assert "--partition: an option of --executor slurm" in capsys.readouterr().err
    assert main(["study", "run", str(spec.path), "--executor", "slurm", "--shard", "1/2"]) != 0
    assert "drop --shard" in capsys.readouterr().err


# ----- submitting -------------------------------------------------------------------------------------


def test_one_job_a_run_finetuned_after_their_pretraining(study, cluster):
    spec, runs, study_dir = study
    opts = SlurmOptions(
        partition="gpu", gpus_per_run=2, cpus_per_run=8, time_min=90, account="lab", extra={"qos": "high"}
    )
    s = make(spec, study_dir, cluster, opts).submit()
    assert sorted(s.submitted) == sorted(r.key for r in runs) and not s.queued
    jobs = {r.key: last_job(study_dir, r.key)["job_id"] for r in runs}
    assert len(set(jobs.values())) == len(runs)
    for r in runs:
        text = sbatch_text(study_dir, r.key, jobs[r.key])
        assert "#SBATCH --partition=gpu" in text and "#SBATCH --account=lab" in text and "#SBATCH --qos=high" in text
        assert "#SBATCH --time=90" in text and "#SBATCH --cpus-per-task=8" in text
        assert f"#SBATCH --gpus-per-node={2 if r.kind == 'pretrain' else 1}" in text
        deps = re.findall(r"#SBATCH --dependency=(\S+)", text)
        if r.kind == "finetuned":
            assert deps == [f"afterok:{jobs[r.depends]}"] and "#SBATCH --kill-on-invalid-dep=yes" in text
            assert last_job(study_dir, r.key)["after"] == jobs[r.depends]
        else:
            assert deps == []
        # the pickled job is the run's: the study's spec copy, the run's key, torchrun for 2 GPUs
        from submitit.core.utils import DelayedSubmission

        job = DelayedSubmission.load(study_dir / "slurm" / r.key / f"{jobs[r.key]}_submitted.pkl").function
        assert isinstance(job, RunJob) and job.key == r.key and job.nproc == (2 if r.kind == "pretrain" else 1)
        assert Path(job.spec_file) == (study_dir / "spec.json").resolve()
    results = sbatch_text(study_dir, "results", s.results_job)
    after = re.search(r"#SBATCH --dependency=afterany:(\S+)", results).group(1).split(":")
    assert sorted(after) == sorted(jobs.values())
    assert "--gpus-per-node" not in results


def test_pending_and_running_jobs_are_not_submitted_again(study, cluster):
    spec, runs, study_dir = study
    make(spec, study_dir, cluster).submit()
    first = {r.key: last_job(study_dir, r.key)["job_id"] for r in runs}
    for i, job in enumerate(first.values()):
        cluster.states[job] = "RUNNING" if i % 2 else "PENDING"
    s = make(spec, study_dir, cluster).submit()
    assert s.submitted == [] and sorted(s.queued) == sorted(first)
    assert {r.key: len(job_records(study_dir / "runs" / r.key)) for r in runs} == {k: 1 for k in first}
    assert set(s.jobs) == set(first) | {"results"}  # what --wait follows


def test_done_runs_are_skipped_and_a_done_pretraining_means_no_dependency(study, cluster):
    spec, runs, study_dir = study
    store = RunStore(study_dir)
    pre = next(r for r in runs if r.kind == "pretrain")
    done_sa = next(r for r in runs if r.kind == "standalone")
    for r in (pre, done_sa):
        store.begin(r.key, name=r.name)
        store.mark_done(r.key, name=r.name)
    s = make(spec, study_dir, cluster).submit()
    assert sorted(s.done) == sorted([pre.key, done_sa.key])
    assert pre.key not in s.submitted and done_sa.key not in s.submitted
    child = next(r for r in runs if r.depends == pre.key)
    text = sbatch_text(study_dir, child.key, last_job(study_dir, child.key)["job_id"])
    assert "--dependency" not in text
    other = next(r for r in runs if r.kind == "finetuned" and r.depends != pre.key)
    other_job = last_job(study_dir, other.key)["job_id"]
    assert f"#SBATCH --dependency=afterok:{last_job(study_dir, other.depends)['job_id']}" in sbatch_text(
        study_dir, other.key, other_job
    )
    # everything done: nothing to submit, results.json written here
    for r in runs:
        store.begin(r.key, name=r.name)
        store.mark_done(r.key, name=r.name)
    s = make(spec, study_dir, cluster).submit()
    assert s.submitted == [] and s.results_job is None and (study_dir / "results.json").exists()


def test_a_job_that_ended_without_finishing_its_run_is_recorded_failed_with_its_log(study, cluster):
    spec, runs, study_dir = study
    make(spec, study_dir, cluster).submit()
    sa = next(r for r in runs if r.kind == "standalone")
    job = last_job(study_dir, sa.key)
    for r in runs:
        cluster.states[last_job(study_dir, r.key)["job_id"]] = "RUNNING"
    cluster.states[job["job_id"]] = "TIMEOUT"
    s = make(spec, study_dir, cluster).submit()
    assert s.failed_now == [sa.key] and sa.key not in s.submitted
    state = json.loads((study_dir / "runs" / sa.key / "state.json").read_text())
    assert state["state"] == "failed"
    assert f"SLURM job {job['job_id']} ended (TIMEOUT)" in state["error"] and job["log"] in state["error"]
    assert state["slurm"]["log"] == job["log"] and job["log"].endswith(f"{job['job_id']}_0_log.err")
    # not again without --retry-failed; with it, a second job (resuming from the run's checkpoint)
    assert make(spec, study_dir, cluster).submit().failed == [sa.key]
    s = make(spec, study_dir, cluster, retry_failed=True).submit()
    assert s.submitted == [sa.key] and len(job_records(study_dir / "runs" / sa.key)) == 2


def test_a_resubmitted_finetuned_run_waits_for_its_pretraining_job_still_running(study, cluster):
    spec, runs, study_dir = study
    make(spec, study_dir, cluster).submit()
    ft = next(r for r in runs if r.kind == "finetuned")
    parent_job = last_job(study_dir, ft.depends)["job_id"]
    for r in runs:
        cluster.states[last_job(study_dir, r.key)["job_id"]] = "RUNNING"
    cluster.states[last_job(study_dir, ft.key)["job_id"]] = "FAILED"
    RunStore(study_dir).mark_failed(ft.key, error="boom", name=ft.name)
    s = make(spec, study_dir, cluster, retry_failed=True).submit()
    assert s.submitted == [ft.key]
    text = sbatch_text(study_dir, ft.key, last_job(study_dir, ft.key)["job_id"])
    assert f"#SBATCH --dependency=afterok:{parent_job}" in text


def test_runs_of_a_failed_pretraining_are_recorded_failed_and_not_submitted(study, cluster):
    spec, runs, study_dir = study
    pre = next(r for r in runs if r.kind == "pretrain")
    child = next(r for r in runs if r.depends == pre.key)
    RunStore(study_dir).mark_failed(pre.key, error="out of memory", name=pre.name)
    s = make(spec, study_dir, cluster).submit()
    assert pre.key in s.failed and child.key in s.failed_now
    assert child.key not in s.submitted and not job_records(study_dir / "runs" / child.key)
    error = json.loads((study_dir / "runs" / child.key / "state.json").read_text())["error"]
    assert pre.name in error and "failed" in error
    # --retry-failed: the pre-training again, and its child after it
    s = make(spec, study_dir, cluster, retry_failed=True).submit()
    assert pre.key in s.submitted and child.key in s.submitted
    assert f"afterok:{last_job(study_dir, pre.key)['job_id']}" in sbatch_text(
        study_dir, child.key, last_job(study_dir, child.key)["job_id"]
    )


def test_settle_after_waiting_records_children_cancelled_because_their_pretraining_failed(study, cluster):
    spec, runs, study_dir = study
    slurm_study = make(spec, study_dir, cluster)
    s = slurm_study.submit()
    pre = next(r for r in runs if r.kind == "pretrain")
    child = next(r for r in runs if r.depends == pre.key)
    store = RunStore(study_dir)
    for r in runs:  # everything finished, except the pre-training (failed) and its child (cancelled by SLURM)
        cluster.states[last_job(study_dir, r.key)["job_id"]] = "COMPLETED"
        if r.key not in (pre.key, child.key):
            store.begin(r.key, name=r.name)
            store.mark_done(r.key, name=r.name)
    cluster.states[s.jobs[pre.key]] = "FAILED"
    cluster.states[s.jobs[child.key]] = "CANCELLED"
    store.mark_failed(pre.key, error="RuntimeError: boom", name=pre.name)
    cluster.states[s.results_job] = "COMPLETED"
    slurm_study.wait(s.jobs, poll=0)
    assert sorted(slurm_study.settle()) == sorted([pre.key, child.key])
    assert pre.name in json.loads((study_dir / "runs" / child.key / "state.json").read_text())["error"]


def test_a_job_records_itself_and_fails_when_its_pretraining_is_not_done(study, monkeypatch):
    pytest.importorskip("submitit")
    spec, runs, study_dir = study
    from ecg_transfer.study.runner import write_study_files

    write_study_files(spec, study_dir, runs)
    ft = next(r for r in runs if r.kind == "finetuned")
    folder = study_dir / "slurm" / ft.key
    for name, value in {
        "SUBMITIT_EXECUTOR": "slurm",
        "SUBMITIT_FOLDER": str(folder),
        "SLURM_JOB_ID": "4242",
        "SLURM_PROCID": "0",
        "SLURM_NTASKS": "1",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_JOB_NUM_NODES": "1",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(RunNotDoneError, match="failed, not done"):
        RunJob.of(spec, study_dir, ft.key)()
    state = json.loads((study_dir / "runs" / ft.key / "state.json").read_text())
    assert state["state"] == "failed" and "is missing, not done" in state["error"]
    assert state["slurm"]["job_id"] == "4242" and state["slurm"]["log"] == str(folder / "4242_0_log.err")
    assert not (study_dir / "runs" / ft.depends / "state.json").exists()  # the job never trains its parent


def test_a_fresh_attempt_keeps_the_runs_job_records(study):
    """A job that starts a run afresh clears a failed attempt's leftovers, not the run's slurm.json."""
    from ecg_transfer.study.runner import StudyRunner, _train_or_finish

    spec, runs, study_dir = study
    runner = StudyRunner(spec, study_dir, progress=False, echo=lambda m: None)
    d = runner.store.run_dir(runs[0].key)
    add_job_record(d, {"job_id": "7", "log": "7_0_log.err"})
    (d / "metrics.jsonl").write_text("{}\n")  # a failed attempt's, before its first checkpoint
    resumed = []
    _train_or_finish(runner, runs[0], dict(runs[0].config), d, lambda *args: resumed.append(args[-1]))
    assert resumed == [False] and not (d / "metrics.jsonl").exists()
    assert [j["job_id"] for j in job_records(d)] == ["7"]


def test_status_shows_job_ids_and_states(study, cluster, monkeypatch, capsys):
    spec, runs, study_dir = study
    s = make(spec, study_dir, cluster).submit()
    pre = next(r for r in runs if r.kind == "pretrain")
    cluster.states[s.jobs[pre.key]] = "RUNNING"
    monkeypatch.setattr(slurm_mod, "slurm_job_states", cluster.job_states)
    assert main(["study", "status", str(spec.path)]) == 0
    out = capsys.readouterr().out
    assert f"job {s.jobs[pre.key]} RUNNING" in out and "5 pending, 1 running" in out
    for r in runs:
        assert f"job {s.jobs[r.key]} " in out
    assert main(["study", "status", str(spec.path), "--json"]) == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)["runs"]}
    assert rows[pre.key]["slurm_job"]["job_id"] == s.jobs[pre.key] and rows[pre.key]["slurm_job"]["state"] == "RUNNING"

    def unreachable(ids):
        raise SlurmError("squeue failed (status 1): Unable to contact slurm controller")

    monkeypatch.setattr(slurm_mod, "slurm_job_states", unreachable)  # status still answers, and says why
    assert main(["study", "status", str(spec.path), "--all"]) == 0
    out = capsys.readouterr().out
    assert "6 ?" in out and "SLURM job states unknown: squeue failed" in out and f"job {s.jobs[pre.key]} ?" in out


def test_job_states_from_squeue_then_sacct_and_never_guessed(monkeypatch):
    calls = []

    def fake_run(cmd):
        calls.append(cmd[0])
        if cmd[0] == "squeue":
            return subprocess.CompletedProcess(cmd, 0, "101|RUNNING\n102|PENDING\n", "")
        return subprocess.CompletedProcess(cmd, 0, "103|CANCELLED by 0\n", "")

    monkeypatch.setattr(slurm_mod, "_run", fake_run)
    assert slurm_job_states(["101", "102", "103", "104"]) == {
        "101": "RUNNING",
        "102": "PENDING",
        "103": "CANCELLED",
        "104": "UNKNOWN",
    }
    assert calls == ["squeue", "sacct"]
    monkeypatch.setattr(
        slurm_mod,
        "_run",
        lambda cmd: subprocess.CompletedProcess(
            cmd, 1, "", "slurm_load_jobs error: Unable to contact slurm controller"
        ),
    )
    with pytest.raises(SlurmError, match="Unable to contact"):
        slurm_job_states(["101"])


# ----- torchrun -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("slurm-data")
    make_ptbxl_tree(base / "ptbxl", n_records=60, rates=(100,))
    make_cinc_tree(base / "g12ec", n_records=50)
    return base


def _predictions(run_dir: Path) -> dict[str, pd.DataFrame]:
    return {n: pd.read_csv(run_dir / f"predictions_{n}.csv") for n in ("val", "test")}


@pytest.mark.slow
def test_a_multi_gpu_pretraining_job_trains_under_torchrun(data, tmp_path):
    """Two CPU processes stand in for two GPUs: the job trains with torchrun, evaluates and
    completes the run as a local run does, with the predictions of one process (no dropout; sync
    BatchNorm) up to floating-point summation order."""
    from ecg_transfer.study.runner import StudyRunner, write_study_files

    for name in ("local", "torchrun"):
        write_spec(tmp_path / f"{name}.json", data, tmp_path / name)
    spec = load_spec(tmp_path / "torchrun.json")
    pre = next(r for r in plan_study(spec) if r.kind == "pretrain")
    write_study_files(spec, tmp_path / "torchrun", plan_study(spec))
    assert RunJob.of(spec, tmp_path / "torchrun", pre.key, nproc=2)() == "done"
    run_dir = tmp_path / "torchrun" / "runs" / pre.key
    assert json.loads((run_dir / "environment.json").read_text())["distributed"]["world_size"] == 2
    assert RunStore(tmp_path / "torchrun").state(pre.key)["state"] == "done"
    assert (run_dir / "evaluation" / "metrics.json").exists() and (run_dir / "MODEL_CARD.md").exists()
    local = StudyRunner(load_spec(tmp_path / "local.json"), tmp_path / "local", progress=False, echo=lambda m: None)
    assert local.run_one(pre.key) == "done"
    for split, frame in _predictions(run_dir).items():
        ref = _predictions(tmp_path / "local" / "runs" / pre.key)[split]
        assert list(frame.columns) == list(ref.columns) and frame.iloc[:, 0].tolist() == ref.iloc[:, 0].tolist()
        np.testing.assert_allclose(frame.iloc[:, 1:].to_numpy(float), ref.iloc[:, 1:].to_numpy(float), atol=2e-3)


# ----- a real SLURM cluster --------------------------------------------------------------------------------


def slurm_not_up() -> str | None:
    """Why SLURM cannot run jobs here (None: it can)."""
    status = SLURM_STATUS.read_text().strip() if SLURM_STATUS.exists() else ""
    why = f" (.ci/slurm_up.sh: {status})" if status and not status.startswith("up") else ""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return f"SLURM is not installed (no sbatch/sinfo on PATH; .ci/slurm_up.sh starts a one-node cluster){why}"
    res = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
    if res.returncode != 0:
        return f"SLURM is not up: sinfo failed: {res.stderr.strip()}{why}"
    if not re.search(r"^(idle|mixed|allocated)$", res.stdout, re.M):
        return f"no SLURM node can run jobs (sinfo: {res.stdout.strip() or 'no nodes'}){why}"
    return None


def _slurm_times(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%i|%S|%e", "-j", ",".join(job_ids)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {j: (s, e) for j, s, e in (line.split("|") for line in out.split())}


@pytest.mark.slow
def test_the_study_on_a_real_slurm_cluster_equals_a_local_run(data, tmp_path, monkeypatch, capsys):
    pytest.importorskip("submitit")
    reason = slurm_not_up()
    if reason:
        pytest.skip(reason)
    monkeypatch.setattr(slurm_mod, "WAIT_POLL_SECONDS", 2.0)
    for name in ("local", "slurm"):
        write_spec(tmp_path / f"{name}.json", data, tmp_path / name)
    assert main(["study", "run", str(tmp_path / "local.json"), "--no-progress"]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "study",
                "run",
                str(tmp_path / "slurm.json"),
                "--executor",
                "slurm",
                "--wait",
                "--time",
                "15",
                "--cpus-per-run",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    runs = plan_study(load_spec(tmp_path / "slurm.json"))
    assert f"{len(runs)} of {len(runs)} runs done, 0 failed" in out, out
    study_dir, store = tmp_path / "slurm", RunStore(tmp_path / "slurm")
    jobs = {}
    for r in runs:  # every run: done, by exactly one job, trained once, as the local run
        d = study_dir / "runs" / r.key
        records = job_records(d)
        assert len(records) == 1, r.name
        jobs[r.key] = records[0]["job_id"]
        state = store.state(r.key)
        assert state["state"] == "done" and state["slurm"]["job_id"] == jobs[r.key]
        epochs = [json.loads(line)["epoch"] for line in (d / "metrics.jsonl").read_text().splitlines()]
        assert len(epochs) == len(set(epochs)), f"{r.name} trained an epoch twice: {epochs}"
        for split in ("val", "test"):
            assert (d / f"predictions_{split}.csv").read_bytes() == (
                tmp_path / "local" / "runs" / r.key / f"predictions_{split}.csv"
            ).read_bytes(), (r.name, split)
    assert set(slurm_job_states(jobs.values()).values()) == {"COMPLETED"}
    times = _slurm_times(list(jobs.values()))
    for r in runs:  # dependency order: a pre-training's job ended before its fine-tuned run's job started
        if r.depends:
            assert times[jobs[r.key]][0] >= times[jobs[r.depends]][1]
            parent_done = (study_dir / "runs" / r.depends / "state.json").stat().st_mtime_ns
            child_started = (study_dir / "runs" / r.key / "definition.json").stat().st_mtime_ns
            assert child_started > parent_done, r.name
    assert json.loads((study_dir / "results.json").read_text())["status"]["done"] == len(runs)
    # again: everything is done, nothing is submitted
    assert main(["study", "run", str(tmp_path / "slurm.json"), "--executor", "slurm"]) == 0
    assert f"submitted 0 runs, 0 already queued or running, {len(runs)} done" in capsys.readouterr().out
    assert main(["study", "status", str(tmp_path / "slurm.json")]) == 0
    assert f"{len(runs)} completed" in capsys.readouterr().out
