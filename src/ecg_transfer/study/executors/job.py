"""One run of a study as a cluster job: the same code as a local ``study run``, for one run.

A job calls :meth:`StudyRunner.run_one`: the run's lock, training (or resuming from its
checkpoint, or finishing from ``model.pt``), the study's evaluation, the model card and the
completion marker are exactly those of a local run (:mod:`..runner`). What differs:

- the job never trains another run: a fine-tuned run's pre-training was another job, which
  SLURM finished before this one started (``afterok``); if it is not done, the run is recorded as
  failed with that reason;
- every attempt records the job (id, host, log files) in ``state.json``, so a failure names the
  log that holds its output;
- a run that does not end ``done`` makes the job fail (non-zero exit), so SLURM does not start
  the runs that depend on it;
- with more than one training process (``nproc``), the training runs under ``torchrun``
  (``python -m torch.distributed.run --standalone``) in a child process while this one holds
  the lock; the evaluation follows in this process, as locally;
- on a time-out or pre-emption SLURM signals the job, and submitit requeues it
  (:meth:`RunJob.checkpoint`, at most ``max_num_timeout`` times): it resumes from the last epoch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ...errors import EcgTransferError
from ..plan import RunDef
from ..spec import StudySpec

#: How often (seconds) a job training under torchrun checks that it still holds the run's lock.
LOCK_CHECK_SECONDS = 30.0


class RunNotDoneError(EcgTransferError):
    """The job's run did not end done (failed, or held by another process); details in state.json."""


def cluster_attempt_info() -> dict[str, Any]:
    """``{"slurm": {job_id, host, log, stdout}}`` inside a submitit job (recorded with each attempt
    of the run), ``{}`` elsewhere."""
    try:
        import submitit

        env = submitit.JobEnvironment()
        paths = env.paths
    except (ImportError, RuntimeError, KeyError):
        return {}
    return {
        "slurm": {
            "job_id": str(env.job_id),
            "host": env.hostname,
            "log": str(paths.stderr),
            "stdout": str(paths.stdout),
        }
    }


@dataclass
class TorchrunTrain:
    """Train a run with ``nproc`` processes of ``ecg-transfer train`` under torchrun (one node):
    the run's resolved config is written to a temporary file, the training resumes when the run
    directory holds a checkpoint, and the child is stopped if this process loses the run's lock."""

    nproc: int

    def command(self, config_file: Path, run_dir: Path, resume: bool) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={self.nproc}",
            "-m",
            "ecg_transfer",
            "train",
            str(config_file),
            "--run-dir",
            str(run_dir),
            "--no-progress",
        ]
        return cmd + (["--resume"] if resume else [])

    def __call__(self, runner: Any, run: RunDef, cfg: dict[str, Any], run_dir: Path, resume: bool) -> None:
        with tempfile.TemporaryDirectory(prefix="ecg-transfer-torchrun-") as tmp:
            config_file = Path(tmp) / "config.json"
            config_file.write_text(json.dumps(cfg, indent=2, default=str), encoding="utf-8")
            cmd = self.command(config_file, run_dir, resume)
            runner.echo(f"  training under torchrun: {' '.join(cmd)}")
            proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            try:
                while True:
                    try:
                        code = proc.wait(timeout=LOCK_CHECK_SECONDS)
                        break
                    except subprocess.TimeoutExpired:
                        runner.check_lock(run.key)  # LockLostError: stop training a run that is not ours
            finally:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait()
        if code != 0:
            raise RuntimeError(
                f"torchrun with {self.nproc} processes exited with status {code} while training "
                f"{run.name} ({run.key}); its output is in this job's log"
            )


@dataclass
class RunJob:
    """The callable a SLURM job runs: one run of the study in ``study_dir``, as a local run does it.

    It holds the spec's file and profile, not the parsed spec, and reads the spec when it starts
    (the study's copy, ``STUDY_DIR/spec.toml`` or ``.json``): a job that waited in the queue
    across an upgrade of the package reads it with the code that runs it. Runs are keyed by
    their definition, so a run the spec no longer defines fails with that reason."""

    spec_file: str
    profile: str | None
    study_dir: str
    key: str
    nproc: int = 1  # training processes; > 1: torchrun

    @classmethod
    def of(cls, spec: StudySpec, study_dir: Path, key: str, nproc: int = 1) -> "RunJob":
        copy = study_dir / f"spec{spec.path.suffix}"
        spec_file = copy if copy.is_file() else spec.path
        return cls(str(spec_file.resolve()), spec.profile, str(study_dir.resolve()), key, nproc)

    def __call__(self) -> str:
        from ..runner import StudyRunner, execute_run
        from ..spec import load_spec

        spec = load_spec(self.spec_file, self.profile)
        train = TorchrunTrain(self.nproc) if self.nproc > 1 else None
        runner = StudyRunner(
            spec,
            self.study_dir,
            retry_failed=True,
            progress=False,
            echo=lambda m: print(m, flush=True),
            execute=partial(execute_run, train=train),
            attempt_info=cluster_attempt_info(),
        )
        if self.key not in runner.by_key:
            raise RunNotDoneError(
                f"run {self.key} is not in the plan of {self.spec_file} (profile {self.profile}) "
                "any more: the spec changed after the job was submitted"
            )
        state = runner.run_one(self.key)
        if state != "done":
            run = runner.by_key[self.key]
            where = runner.store.run_dir(self.key) / "state.json"
            raise RunNotDoneError(f"run {run.name} ({self.key}) is {state}, not done; see {where}")
        return state

    def checkpoint(self) -> Any:
        """Called by submitit when SLURM signals a time-out or a pre-emption: requeue this job; the
        run resumes from its last epoch checkpoint."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)


def write_results_job(study_dir: str, report: bool = False) -> str:
    """The study's last job (after every run's job has ended): ``results.json``, and the report."""
    from ..results import write_results

    path = write_results(Path(study_dir))
    print(f"results: {path}", flush=True)
    if report:  # the report is a layer above the study: run its command, do not import it
        subprocess.run([sys.executable, "-m", "ecg_transfer", "report", str(study_dir)], check=True)
        path = Path(study_dir) / "report" / "index.html"
        print(f"report: {path}", flush=True)
    return str(path)


__all__ = [
    "LOCK_CHECK_SECONDS",
    "RunJob",
    "RunNotDoneError",
    "TorchrunTrain",
    "cluster_attempt_info",
    "write_results_job",
]
