"""``study run --executor slurm``: one SLURM job a run, through submitit.

Each run that is not done becomes one job running :class:`.job.RunJob` -- the local runner's
own code for that run, so the run store is the same whichever executor ran it. A fine-tuned run's
job waits for its pre-training's job (``--dependency=afterok:ID``, and ``kill-on-invalid-dep`` so
it is cancelled, not left pending, when the pre-training fails); a pre-training already done
means no dependency. The last job (``afterany`` on all of them) writes ``results.json`` (and the
report with ``--report``).

Every submission is recorded in the run's directory, ``runs/<key>/slurm.json`` (job id, log
files, dependency); submitit's files and the job's log (``<job>_0_log.out|err``) are in
``STUDY_DIR/slurm/<key>/``. Submitting again (the same command) skips runs that are done, leaves
runs whose job is still pending or running alone (their children depend on that job), records a
run whose last job ended without finishing it as failed (SLURM's state of the job and its log
in ``state.json``), leaves failed runs failed unless ``--retry-failed``, and submits the rest.
Job states come from ``squeue`` (jobs SLURM still holds), then ``sacct`` (accounting, where the
cluster keeps it).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable

from ...atomic import atomic_write_json
from ...errors import ConfigError, EcgTransferError
from ..plan import RunDef
from ..runner import StudyRunner, write_study_files
from ..spec import StudySpec
from ..store import RunStore
from .job import RunJob, write_results_job

JOBS_FILE = "slurm.json"
SLURM_DIR = "slurm"
#: SLURM job states in which a job may still run the run (not ended).
LIVE_STATES = frozenset(
    {
        "PENDING",
        "RUNNING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "CONFIGURING",
        "COMPLETING",
        "RESIZING",
        "SUSPENDED",
        "SIGNALING",
        "STAGE_OUT",
        "RESV_DEL_HOLD",
    }
)
#: sbatch options the executor sets itself (or that break one-run-one-job): refused in --slurm-opt.
OWN_OPTIONS = {
    "output": None,
    "error": None,
    "open-mode": None,
    "signal": None,
    "dependency": None,
    "kill-on-invalid-dep": None,
    "array": None,
    "nodes": None,
    "ntasks": None,
    "ntasks-per-node": None,
    "partition": "--partition",
    "account": "--account",
    "time": "--time",
    "gpus-per-node": "--gpus-per-run",
    "gpus": "--gpus-per-run",
    "cpus-per-task": "--cpus-per-run",
}
DEFAULT_TIME = "24:00:00"
RESULTS_TIME_MIN = 60
WAIT_POLL_SECONDS = 30.0


class SlurmError(EcgTransferError):
    """SLURM could not be asked (squeue failed, sbatch refused a job); the message says what it said."""


# ----- options ------------------------------------------------------------------------------------


def parse_time(text: str) -> int:
    """A SLURM time limit -> whole minutes: ``MIN``, ``HH:MM:SS`` or ``D-HH:MM:SS`` (seconds rounded up)."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d{1,2}):(\d{1,2})", text.strip())
    if m:
        days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
        total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    elif text.strip().isdigit():
        total = int(text) * 60
    else:
        raise ConfigError(f"--time: expected minutes (e.g. 90), HH:MM:SS or D-HH:MM:SS, got {text!r}")
    if total <= 0:
        raise ConfigError(f"--time: must be more than 0, got {text!r}")
    return math.ceil(total / 60)


def parse_slurm_opts(items: Iterable[str] | None) -> dict[str, str | bool]:
    """``["qos=high", "exclusive"]`` -> ``{"qos": "high", "exclusive": True}`` (sbatch long options)."""
    out: dict[str, str | bool] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-").replace("_", "-")
        if not re.fullmatch(r"[a-z][a-z0-9-]*", key) or (sep and not value):
            raise ConfigError(
                f"--slurm-opt: expected KEY=VALUE (an sbatch long option, e.g. qos=high) or KEY, got {item!r}"
            )
        if key in OWN_OPTIONS:
            instead = f"use {OWN_OPTIONS[key]}" if OWN_OPTIONS[key] else "the executor sets it itself"
            raise ConfigError(f"--slurm-opt {item!r}: {instead}")
        out[key] = value if sep else True
    return out


@dataclass(frozen=True)
class SlurmOptions:
    """What every job asks SLURM for. Pre-training jobs take ``gpus_per_run`` GPUs (and train
    under torchrun when it is more than one); fine-tuned and standalone runs, on the small target
    set, take one GPU when ``gpus_per_run`` is at least one."""

    partition: str | None = None
    gpus_per_run: int = 0
    cpus_per_run: int | None = None
    time_min: int = parse_time(DEFAULT_TIME)
    account: str | None = None
    extra: dict[str, str | bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.gpus_per_run < 0:
            raise ConfigError(f"--gpus-per-run: must be 0 or more, got {self.gpus_per_run}")
        if self.cpus_per_run is not None and self.cpus_per_run < 1:
            raise ConfigError(f"--cpus-per-run: must be 1 or more, got {self.cpus_per_run}")

    def gpus(self, kind: str) -> int:
        return self.gpus_per_run if kind == "pretrain" else min(self.gpus_per_run, 1)

    def parameters(self, name: str, gpus: int, time_min: int, dependency: str | None = None) -> dict[str, Any]:
        """submitit ``SlurmExecutor.update_parameters`` keywords of one job."""
        p: dict[str, Any] = {"job_name": name, "time": time_min, "nodes": 1, "ntasks_per_node": 1}
        for key, value in (
            ("partition", self.partition),
            ("account", self.account),
            ("cpus_per_task", self.cpus_per_run),
            ("gpus_per_node", gpus or None),
        ):
            if value is not None:
                p[key] = value
        extra = dict(self.extra)
        if dependency:
            extra.update({"dependency": dependency, "kill-on-invalid-dep": "yes"})
        if extra:
            p["additional_parameters"] = extra
        return p


def options_from_args(args: argparse.Namespace) -> SlurmOptions:
    return SlurmOptions(
        partition=args.partition,
        gpus_per_run=args.gpus_per_run,
        cpus_per_run=args.cpus_per_run,
        time_min=parse_time(args.time),
        account=args.account,
        extra=parse_slurm_opts(args.slurm_opt),
    )


def add_slurm_arguments(p: argparse.ArgumentParser) -> None:
    """The ``study run`` options of the SLURM executor."""
    p.add_argument(
        "--executor",
        choices=("local", "slurm"),
        default="local",
        help="local: run here, one run after the other (default); slurm: one SLURM job a run, fine-tuned "
        "runs after their pre-training (afterok), submitted through submitit",
    )
    p.add_argument("--partition", default=None, help="slurm: the partition of every job")
    p.add_argument(
        "--gpus-per-run",
        type=int,
        default=0,
        metavar="N",
        help="slurm: GPUs of a pre-training job (under torchrun when N > 1); the other runs take one GPU "
        "when N >= 1 (default 0: CPU jobs)",
    )
    p.add_argument("--cpus-per-run", type=int, default=None, metavar="N", help="slurm: CPUs of every job")
    p.add_argument(
        "--time",
        default=DEFAULT_TIME,
        metavar="MIN|HH:MM:SS",
        help=f"slurm: time limit of every job (default {DEFAULT_TIME}); a job that reaches it is requeued "
        "and resumes from its last epoch (up to 3 times)",
    )
    p.add_argument("--account", default=None, help="slurm: the account jobs are charged to")
    p.add_argument(
        "--slurm-opt",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="slurm: any other sbatch option of every job, e.g. qos=high, mem=32G, constraint=a100; repeatable",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="slurm: wait until every job has ended, then say what is done and what failed",
    )


def check_executor_args(args: argparse.Namespace) -> None:
    """SLURM options only with ``--executor slurm``; ``--shard`` only without (SLURM spreads the runs)."""
    if args.executor == "slurm":
        if args.shard is not None:
            raise ConfigError(
                "--shard splits a study over machines by hand; with --executor slurm, SLURM spreads "
                "the runs: drop --shard"
            )
        return
    given = [
        flag
        for flag, value, default in (
            ("--partition", args.partition, None),
            ("--gpus-per-run", args.gpus_per_run, 0),
            ("--cpus-per-run", args.cpus_per_run, None),
            ("--time", args.time, DEFAULT_TIME),
            ("--account", args.account, None),
            ("--slurm-opt", args.slurm_opt, None),
            ("--wait", args.wait, False),
        )
        if value != default
    ]
    if given:
        raise ConfigError(
            f"{', '.join(given)}: {'options' if len(given) > 1 else 'an option'} of --executor slurm "
            f"(add --executor slurm, or drop {'them' if len(given) > 1 else 'it'})"
        )


# ----- job records and states ---------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def job_records(run_dir: Path) -> list[dict[str, Any]]:
    """Every SLURM job submitted for the run, oldest first (``runs/<key>/slurm.json``)."""
    try:
        data = json.loads((run_dir / JOBS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise SlurmError(
            f"{run_dir / JOBS_FILE} is not readable JSON ({exc}); move it away to submit the run again"
        ) from None
    return list(data.get("jobs", []))


def add_job_record(run_dir: Path, record: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / JOBS_FILE, {"jobs": job_records(run_dir) + [record]})


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise SlurmError(f"{cmd[0]} not found: this machine is not a SLURM submit host") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{' '.join(cmd[:3])} ... did not answer within 120 s") from None


def slurm_job_states(job_ids: Iterable[str]) -> dict[str, str]:
    """SLURM's state of each job (PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, ...): ``squeue``
    for the jobs the controller still holds, ``sacct`` for older ones where accounting is kept,
    ``UNKNOWN`` for jobs neither knows (ended long ago). Raises :class:`SlurmError` when
    ``squeue`` fails: a job must never be taken for ended because SLURM could not be asked."""
    ids = sorted({str(j) for j in job_ids})
    if not ids:
        return {}
    states: dict[str, str] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        res = _run(["squeue", "-h", "-t", "all", "-o", "%i|%T", "-j", ",".join(chunk)])
        if res.returncode != 0 and "Invalid job id" not in res.stderr:
            raise SlurmError(f"squeue failed (status {res.returncode}): {res.stderr.strip()}")
        states.update(_parse_pairs(res.stdout))
    rest = [j for j in ids if j not in states]
    if rest:
        res = _run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(rest)])
        if res.returncode == 0:  # no accounting on this cluster: these jobs stay UNKNOWN
            states.update({j: s for j, s in _parse_pairs(res.stdout).items() if j in rest})
    return {j: states.get(j, "UNKNOWN") for j in ids}


def _parse_pairs(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "|" in line:
            job, state = line.split("|", 1)
            out[job.strip()] = (state.split() or ["UNKNOWN"])[0].upper()  # "CANCELLED by 0" -> CANCELLED
    return out


def last_jobs(store: RunStore, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The last job submitted for each run that has one."""
    return {k: recs[-1] for k in keys if (recs := job_records(store.run_dir(k)))}


# ----- submitting ---------------------------------------------------------------------------------


def submitit_executor(folder: Path) -> Any:
    """The submitit executor of one run's jobs (its files and logs in ``folder``)."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("--executor slurm needs submitit: pip install 'ecg-transfer[slurm]'") from None
    return submitit.SlurmExecutor(folder=folder, max_num_timeout=3)


@dataclass
class SubmitSummary:
    submitted: list[str] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)  # a job of an earlier submission is pending / running
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # failed before (left alone)
    failed_now: list[str] = field(default_factory=list)  # recorded as failed by this submission
    busy: list[str] = field(default_factory=list)  # held by a process outside SLURM
    left: list[str] = field(default_factory=list)  # would be submitted (a pass that submits nothing)
    results_job: str | None = None
    jobs: dict[str, str] = field(default_factory=dict)  # run key (or "results") -> job id in flight


class SlurmStudy:
    """Submits the runs of one spec to SLURM, one job a run, and follows them."""

    def __init__(
        self,
        spec: StudySpec,
        study_dir: str | Path,
        options: SlurmOptions,
        *,
        retry_failed: bool = False,
        report: bool = False,
        echo: Callable[[str], None] = print,
        executor: Callable[[Path], Any] = submitit_executor,
        states: Callable[[Iterable[str]], dict[str, str]] = slurm_job_states,
    ):
        self.runner = StudyRunner(spec, study_dir, retry_failed=retry_failed, progress=False, echo=echo)
        self.spec, self.study_dir, self.store = spec, self.runner.study_dir, self.runner.store
        self.options, self.retry_failed, self.report, self.echo = options, retry_failed, report, echo
        self._executor, self._states = executor, states

    def submit(self) -> SubmitSummary:
        """Submit every run that needs a job (and the results job after them)."""
        write_study_files(self.spec, self.study_dir, self.runner.runs)
        s = self._pass(submit=True)
        if s.jobs:
            s.results_job = s.jobs["results"] = self._submit_results(list(s.jobs.values()))
        else:  # nothing in flight: the results of what is done, now
            from ..results import write_results

            self.echo(f"results: {write_results(self.study_dir)}")
        return s

    def settle(self) -> list[str]:
        """After the jobs ended: the same pass without submitting, so runs whose last job ended
        without finishing them (and the runs of a failed pre-training, whose jobs SLURM
        cancelled) are recorded as failed; returns every failed run."""
        s = self._pass(submit=False)
        return s.failed + s.failed_now

    def _pass(self, submit: bool) -> SubmitSummary:
        """One pass over the plan, pre-training runs first so their jobs are known to their children."""
        runs = sorted(self.runner.runs, key=lambda r: r.depends is not None)
        last = last_jobs(self.store, [r.key for r in runs])
        now = self._states([j["job_id"] for j in last.values()])
        s = SubmitSummary()
        for run in runs:
            job = last.get(run.key)
            job_state = now.get(str(job["job_id"]), "UNKNOWN") if job else None
            outcome = self._one(run, job, job_state, s.jobs, submit)
            getattr(s, outcome).append(run.key)
        return s

    def _one(
        self, run: RunDef, job: dict[str, Any] | None, job_state: str | None, inflight: dict[str, str], submit: bool
    ) -> str:
        """Decide about one run: done, queued, failed, failed_now, busy, left or submitted."""
        st = self.store.state(run.key)["state"]
        if st == "done":
            return "done"
        if job is not None and job_state in LIVE_STATES:
            inflight[run.key] = str(job["job_id"])
            return "queued"
        if st == "running":
            return "busy"
        parent = self.runner.by_key[run.depends] if run.depends else None
        parent_st = None if parent is None or parent.key in inflight else self.store.state(parent.key)["state"]
        if parent_st == "failed":  # recorded as a local run records it, with the reason
            return "failed" if st == "failed" else self._outcome(self.runner.run_one(run.key))
        if job is not None and st != "failed":
            st = self._record_ended(run, job, job_state or "UNKNOWN")
            if st in ("done", "busy") or (st == "failed" and not self.retry_failed):
                return self._outcome(st)
        if st == "failed" and not self.retry_failed:
            return "failed"
        if parent is not None and parent_st not in (None, "done"):
            self.echo(
                f"{run.name}: its pre-training {parent.name} is {parent_st} (held by another process); "
                "submit again when it is done"
            )
            return "busy"
        if not submit:
            return "left"
        inflight[run.key] = self._submit_run(run, inflight.get(parent.key) if parent else None)
        return "submitted"

    @staticmethod
    def _outcome(state: str) -> str:
        return {"failed": "failed_now", "done": "done"}.get(state, "busy")

    def _record_ended(self, run: RunDef, job: dict[str, Any], job_state: str) -> str:
        """The run's last job ended and the run is not done: if a job had completed it (an output
        changed since), it is to be finished again ("interrupted"); else the job was killed, timed
        out, cancelled or lost its node: record the run as failed, with SLURM's state and the job's
        log, under the run's lock."""
        lease = self.store.acquire(run.key)
        if lease is None:
            return "busy"
        try:
            rec = self.store.recorded(run.key)
            if rec["state"] in ("done", "failed") or rec.get("completed_at"):
                return rec["state"]
            error = f"SLURM job {job['job_id']} ended ({job_state}) before the run was finished; its log: {job['log']}"
            self.store.mark_failed(
                run.key,
                error=error,
                name=run.name,
                slurm={
                    "job_id": str(job["job_id"]),
                    "state": job_state,
                    "log": job["log"],
                    "stdout": job.get("stdout"),
                },
            )
            self.echo(f"{run.name}: FAILED: {error}")
            return "failed"
        finally:
            lease.release()

    def _submit_run(self, run: RunDef, after: str | None) -> str:
        gpus = self.options.gpus(run.kind)
        folder = self.study_dir / SLURM_DIR / run.key
        params = self.options.parameters(
            f"{self.spec.name}:{run.name}", gpus, self.options.time_min, f"afterok:{after}" if after else None
        )
        job = self._submit(folder, params, RunJob.of(self.spec, self.study_dir, run.key, nproc=max(gpus, 1)))
        add_job_record(
            self.store.run_dir(run.key),
            {
                "job_id": str(job.job_id),
                "submitted_at": _now(),
                "name": run.name,
                "kind": run.kind,
                "after": after,
                "gpus": gpus,
                "log": str(job.paths.stderr),
                "stdout": str(job.paths.stdout),
                "folder": str(folder),
            },
        )
        self.echo(f"submitted {run.name} ({run.key}): job {job.job_id}" + (f", after job {after}" if after else ""))
        return str(job.job_id)

    def _submit_results(self, job_ids: list[str]) -> str:
        folder = self.study_dir / SLURM_DIR / "results"
        params = self.options.parameters(
            f"{self.spec.name}:results", 0, RESULTS_TIME_MIN, "afterany:" + ":".join(job_ids)
        )
        params.pop("cpus_per_task", None)
        params["additional_parameters"].pop("kill-on-invalid-dep", None)
        job = self._submit(folder, params, partial(write_results_job, str(self.study_dir), self.report))
        self.echo(
            f"submitted results.json{' and the report' if self.report else ''}: job {job.job_id}, after every run's job"
        )
        return str(job.job_id)

    def _submit(self, folder: Path, params: dict[str, Any], fn: Callable[[], Any]) -> Any:
        executor = self._executor(folder)
        executor.update_parameters(**params)
        try:
            return executor.submit(fn)
        except Exception as exc:  # submitit raises its own errors with sbatch's message
            if isinstance(exc, EcgTransferError):
                raise
            raise SlurmError(f"sbatch refused a job of {folder.name}: {exc}") from exc

    def wait(self, jobs: dict[str, str], poll: float | None = None) -> None:
        """Until none of ``jobs`` is pending or running; prints the counts as they change."""
        poll = WAIT_POLL_SECONDS if poll is None else poll
        seen = None
        while True:
            now = self._states(jobs.values())
            counts = {s: sum(1 for v in now.values() if v == s) for s in sorted(set(now.values()))}
            if counts != seen:
                self.echo("jobs: " + ", ".join(f"{n} {s.lower()}" for s, n in counts.items()))
                seen = counts
            if not any(v in LIVE_STATES for v in now.values()):
                return
            time.sleep(poll)


def run_study_on_slurm(args: argparse.Namespace, spec: StudySpec, study_dir: Path) -> int:
    """``study run --executor slurm``: submit, then (``--wait``) follow the jobs to their end."""
    study = SlurmStudy(spec, study_dir, options_from_args(args), retry_failed=args.retry_failed, report=args.report)
    s = study.submit()
    failed = len(s.failed) + len(s.failed_now)
    print(
        f"submitted {len(s.submitted)} runs, {len(s.queued)} already queued or running, {len(s.done)} done, "
        f"{failed} failed{' (--retry-failed submits them again)' if failed else ''}, {len(s.busy)} held by "
        f"another process; job files and logs in {study_dir / SLURM_DIR}"
    )
    if not args.wait:
        if s.jobs:
            where = " ".join(
                [str(args.spec)]
                + ([f"--profile {args.profile}"] if args.profile else [])
                + ([f"--out {args.out}"] if args.out else [])
            )
            print(
                f"follow them with `ecg-transfer study status {where}`; results.json is written by job "
                f"{s.results_job} when they have ended"
            )
        return 3 if s.failed_now else 0
    study.wait(s.jobs)
    failed_runs = study.settle()
    done = sum(1 for r in study.runner.runs if study.store.state(r.key)["state"] == "done")
    print(
        f"{done} of {len(study.runner.runs)} runs done, {len(failed_runs)} failed; results: "
        f"{study_dir / 'results.json'}"
    )
    return 3 if failed_runs else 0


def status_jobs(store: RunStore, keys: Iterable[str]) -> tuple[dict[str, dict[str, Any]], str | None]:
    """``study status``: the last job of every run that has one with SLURM's state of it ("?" and a
    note saying why when SLURM cannot be asked); nothing, and no SLURM command, for a local study."""
    last = last_jobs(store, keys)
    note = None
    try:
        now = slurm_job_states([r["job_id"] for r in last.values()]) if last else {}
    except SlurmError as exc:
        now, note = {}, f"SLURM job states unknown: {exc}"
    return {k: {**r, "state": now.get(str(r["job_id"]), "?")} for k, r in last.items()}, note


__all__ = [
    "DEFAULT_TIME",
    "JOBS_FILE",
    "LIVE_STATES",
    "SlurmError",
    "SlurmOptions",
    "SlurmStudy",
    "SubmitSummary",
    "add_job_record",
    "add_slurm_arguments",
    "check_executor_args",
    "job_records",
    "last_jobs",
    "options_from_args",
    "parse_slurm_opts",
    "parse_time",
    "run_study_on_slurm",
    "slurm_job_states",
    "status_jobs",
]
