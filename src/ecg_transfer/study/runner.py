"""``study run``: train what is missing, finish what was interrupted, skip what is done, record
failures and go on.

Each run goes through the same steps as ``ecg-transfer train`` followed by ``ecg-transfer
evaluate`` and ``ecg-transfer model-card``, under the run's lock (:mod:`.store`): the data layer
resolves the run's ``[task]`` table, :func:`train_run` trains it (resuming from the checkpoint of
an interrupted attempt, or writing the predictions a saved ``model.pt`` lacks),
:func:`evaluate_run` writes its metrics with bootstrap CIs (and, for the headline runs, the
calibrators of experiment 4, fitted on validation predictions), the model card quotes that
evaluation, and the completion marker is written last. Killing the process loses at most the
epoch in flight; a run killed after its training is finished without training again.

Under the lock the run's state is read again before anything is done, so two processes on one
folder never train or evaluate one run twice.

Failures: an exception in one run is written to its ``state.json`` (message and traceback) and
the study goes on; runs that start from a failed pre-training run are recorded as failed too.
A full disk stops the study with one line naming the disk and the run (:class:`DiskFullError`);
its failure is recorded in the room ``state.json`` reserved when the attempt started.
``--retry-failed`` tries failed runs again. ``results.json`` is written when the process ends
(also when interrupted), and ``ecg-transfer report`` recomputes it from whatever is done.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..atomic import atomic_write_json
from .plan import RunDef, plan_study, select_shard
from .spec import StudySpec
from .store import DiskFullError, Lease, LockLostError, RunStore, disk_of, no_space

log = logging.getLogger(__name__)

WAIT_POLL_SECONDS = 20.0
#: What finishing a run writes again from its checkpoint when it changed after completion.
REMADE_OUTPUTS = ("model.pt", "predictions_val.csv", "predictions_test.csv")


@dataclass
class StudyRunSummary:
    study_dir: Path
    planned: int
    selected: int
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)  # held by another process
    seconds: float = 0.0


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n), 1 <= i <= n."""
    from ..errors import ConfigError

    if text is None:
        return 1, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard: expected i/n such as 1/4, got {text!r}") from None
    if not 1 <= i <= n:
        raise ConfigError(f"--shard: need 1 <= i <= n, got {text!r}")
    return i, n


def write_study_files(spec: StudySpec, study_dir: Path, runs: list[RunDef]) -> None:
    """The spec as given, the spec as resolved, and the plan: what the study is, beside its runs."""
    study_dir.mkdir(parents=True, exist_ok=True)
    if spec.path.is_file():
        src = spec.path.read_text(encoding="utf-8")
        target = study_dir / f"spec{spec.path.suffix}"  # .toml or .json, readable as the spec it is
        if not target.exists() or target.read_text(encoding="utf-8") != src:
            from ..atomic import atomic_write_text

            atomic_write_text(target, src)
    atomic_write_json(
        study_dir / "study.json",
        {
            "name": spec.name,
            "profile": spec.profile,
            "spec": str(spec.path),
            "spec_digest": spec.digest,
            "resolved": spec.data,
        },
    )
    atomic_write_json(study_dir / "plan.json", {"runs": [r.to_dict() for r in runs]})


class StudyRunner:
    """Runs the plan of one spec into one study directory (one shard of it)."""

    def __init__(
        self,
        spec: StudySpec,
        study_dir: str | Path,
        *,
        shard: tuple[int, int] = (1, 1),
        retry_failed: bool = False,
        progress: bool = True,
        echo: Callable[[str], None] = print,
        execute: Callable[["StudyRunner", RunDef], None] | None = None,
        attempt_info: dict[str, Any] | None = None,
    ):
        self.spec = spec
        self.study_dir = Path(study_dir)
        self.store = RunStore(self.study_dir)
        self.runs = plan_study(spec)
        self.by_key = {r.key: r for r in self.runs}
        self.shard = shard
        self.retry_failed = retry_failed
        self.progress = progress
        self.echo = echo
        self._execute = execute or execute_run
        self.attempt_info = dict(attempt_info or {})  # recorded in state.json with each attempt (e.g. a cluster job)
        self._leases: dict[str, Lease] = {}
        self.summary = StudyRunSummary(self.study_dir, len(self.runs), 0)
        self._gallery_note_shown = False  # "no explained records (no captum)": said once, not per results write

    def _note_grown_plan(self) -> None:
        """Say so when a study planned before training lengths (or peak rates) were chosen -- its
        study.json has no ``lengths`` (``lr_factors``) -- is run again and its plan grows: the
        finished runs are kept, the other lengths (rates) are new work."""
        try:
            before = json.loads((self.study_dir / "study.json").read_text(encoding="utf-8"))["resolved"]["study"]
        except (OSError, ValueError, KeyError, TypeError):
            return
        now = self.spec.data["study"]
        for key, what, unit in (("lengths", "training length", "its epochs"), ("lr_factors", "peak rate", "its rates")):
            factors = now[key]
            if key not in before and len(factors) > 1:
                self.echo(
                    f"note: {self.study_dir} was planned with one {what} per arm; each target run now "
                    f"trains at {', '.join(f'{f:g}x' for f in factors)} {unit}, the best on validation kept "
                    f"(finished runs are kept; [study] {key} = [1] keeps the old plan)"
                )

    def run(self) -> StudyRunSummary:
        t0 = time.perf_counter()
        self._note_grown_plan()
        try:
            write_study_files(self.spec, self.study_dir, self.runs)
        except OSError as exc:
            if no_space(exc):
                raise DiskFullError(
                    f"disk full on {disk_of(self.study_dir)}: cannot write the study's files in "
                    f"{self.study_dir}; free space and run the study again"
                ) from None
            raise
        mine = select_shard(self.runs, self.shard)
        self.summary.selected = len(mine)
        shard = "" if self.shard == (1, 1) else f" (shard {self.shard[0]}/{self.shard[1]})"
        self.echo(
            f"study {self.spec.name}: {len(self.runs)} runs planned, {len(mine)} in this process{shard}; "
            f"writing to {self.study_dir}"
        )
        disk_full = False
        try:
            for i, run in enumerate(mine, 1):
                self._ensure(run, f"[{i}/{len(mine)}]")
        except DiskFullError:
            disk_full = True
            raise
        finally:  # also when interrupted: the report shows what is done so far
            self.summary.seconds = time.perf_counter() - t0
            if not disk_full:
                self._write_results()
        return self.summary

    def check_lock(self, key: str) -> None:
        """Raise :class:`LockLostError` when this process no longer holds ``key``'s lock."""
        lease = self._leases.get(key)
        if lease is not None:
            lease.check()

    def _ensure(self, run: RunDef, where: str, waiting_child: str | None = None) -> str:
        """Bring ``run`` to done or failed; returns its final state ("busy" when another process has it)."""
        st = self.store.state(run.key)["state"]
        if st == "done" or (st == "failed" and not self.retry_failed):
            if waiting_child is None:
                self.summary.skipped.append(run.key)
            return st
        parent_failed = None
        if run.depends is not None:
            parent = self.by_key[run.depends]
            pst = self._ensure(parent, where, waiting_child=run.key)
            while pst == "busy":  # another shard trains the pre-training run: wait for it
                self.echo(f"{where} {run.name}: waiting for {parent.name} ({parent.key}), trained by another process")
                time.sleep(WAIT_POLL_SECONDS)
                pst = self._ensure(parent, where, waiting_child=run.key)
            if pst == "failed":
                parent_failed = f"its pre-training run {parent.name} ({parent.key}) failed"
        return self._locked(run, where, waiting_child, parent_failed)

    def run_one(self, key: str) -> str:
        """Bring the run ``key`` to done or failed without touching any other run -- what a cluster
        job does, whose pre-training was another job, finished before this one started (a
        pre-training that is not done fails the run, as a failed one does in :meth:`_ensure`).
        Returns the run's final state ("busy" when another process has it)."""
        run = self.by_key[key]
        parent_failed = None
        if run.depends is not None:
            parent = self.by_key[run.depends]
            pst = self.store.state(parent.key)["state"]
            if pst != "done":
                parent_failed = f"its pre-training run {parent.name} ({parent.key}) is {pst}, not done"
        return self._locked(run, f"[{run.kind}]", None, parent_failed)

    def _locked(self, run: RunDef, where: str, waiting_child: str | None, parent_failed: str | None) -> str:
        """Take the run's lock, :meth:`_attempt` it, release the lock; "busy" when another process has it."""
        try:
            lease = self.store.acquire(run.key)
        except OSError as exc:
            if no_space(exc):
                raise DiskFullError(
                    f"disk full on {disk_of(self.study_dir)}: cannot start run {run.name} "
                    f"({run.key}); free space and run the study again"
                ) from None
            raise
        if lease is None:
            if waiting_child is None:
                self.summary.busy.append(run.key)
                self.echo(f"{where} {run.name}: trained by another process, skipping")
            return "busy"
        self._leases[run.key] = lease
        try:
            return self._attempt(run, where, waiting_child, parent_failed)
        finally:
            del self._leases[run.key]
            lease.release()

    def _attempt(self, run: RunDef, where: str, waiting_child: str | None, parent_failed: str | None) -> str:
        """Under the run's lock: look again (another process may have finished it meanwhile), then
        run it and write the completion marker last."""
        st = self.store.recorded(run.key)["state"]
        if st == "done" or (st == "failed" and not self.retry_failed):
            if waiting_child is None:
                self.summary.skipped.append(run.key)
            return st
        if parent_failed is not None:
            self.store.mark_failed(run.key, error=parent_failed, name=run.name, **self.attempt_info)
            self.summary.failed.append(run.key)
            self.echo(f"{where} {run.name}: not run, {parent_failed}")
            return "failed"
        t0 = time.perf_counter()
        try:
            self._forget_changed(run)
            self.store.begin(run.key, name=run.name, **self.attempt_info)
            self.echo(f"{where} {run.name} ({run.key}) ...")
            self._execute(self, run)
            self.check_lock(run.key)
            seconds = round(time.perf_counter() - t0, 1)
            self.store.mark_done(run.key, name=run.name, seconds=seconds, **self.attempt_info)
        except KeyboardInterrupt:
            raise
        except LockLostError as exc:  # another process has the run now: record nothing
            self.summary.busy.append(run.key)
            self.echo(f"{where} {run.name}: stopped: {exc}")
            return "busy"
        except Exception as exc:  # recorded, and the study goes on (unless the disk is full)
            return self._failed(run, where, exc)
        self.summary.trained.append(run.key)
        self.echo(f"{where} {run.name}: done in {seconds:.0f} s")
        return "done"

    def _forget_changed(self, run: RunDef) -> None:
        """Training outputs that changed after the run was completed are made again, not trusted."""
        for rel in self.store.changed_outputs(run.key):
            if rel in REMADE_OUTPUTS:
                self.echo(f"  {run.name}: {rel} changed since the run was completed: making it again")
                (self.store.run_dir(run.key) / rel).unlink(missing_ok=True)

    def _failed(self, run: RunDef, where: str, exc: Exception) -> str:
        """Record a failed attempt; on a full disk, stop the study with one line naming disk and run."""
        error = f"{type(exc).__name__}: {exc}"
        recorded = self.store.mark_failed(
            run.key, error=error, name=run.name, traceback=traceback.format_exc(), **self.attempt_info
        )
        self.summary.failed.append(run.key)
        if no_space(exc) or (not recorded and no_space_now(self.study_dir)):
            state = self.store.run_dir(run.key) / "state.json"
            where_recorded = f"recorded as failed in {state}" if recorded else "not recorded (no room even for that)"
            raise DiskFullError(
                f"disk full on {disk_of(self.study_dir)} while running {run.name} ({run.key}): {error.splitlines()[0]}; "
                f"the run is {where_recorded}. Free space, then run the study again with --retry-failed"
            ) from None
        self.echo(f"{where} {run.name}: FAILED: {error}" + ("" if recorded else " (could not record it in state.json)"))
        return "failed"

    def _write_results(self) -> None:
        from .results import write_results

        self._write_gallery()
        try:
            path = write_results(self.study_dir)
            self.echo(f"results: {path}")
        except Exception as exc:  # the report data must never stop the training
            log.warning("could not update results.json: %s", exc)
            self.echo(f"warning: could not update results.json: {type(exc).__name__}: {exc}")

    def _write_gallery(self) -> None:
        """The report's explained test records, once the headline's first fine-tuned run is done
        (redone when its predictions change); never stops the study."""
        from .gallery import gallery_needed, write_gallery

        try:
            if not gallery_needed(self.study_dir):
                return
            path = write_gallery(self.study_dir)
            if path is not None:
                self.echo(f"explained test records for the report: {path}")
        except ImportError as exc:  # captum is an extra: write_gallery raises CaptumMissing before loading anything
            if not self._gallery_note_shown:
                self.echo(f"note: no explained records in the report ({exc})")
                self._gallery_note_shown = True
        except Exception as exc:  # the gallery must never stop the study
            log.warning("could not explain the gallery's records: %s", exc, exc_info=True)
            self.echo(f"warning: could not explain the gallery's records: {type(exc).__name__}: {exc}")


def no_space_now(path: Path) -> bool:
    """Is there (almost) no room left where ``path`` is? Used when a write failed for an unnamed reason."""
    try:
        return shutil.disk_usage(path).free < 1 << 20
    except OSError:
        return False


#: What a fresh attempt keeps in the run directory (the rest is a failed attempt's leftovers).
KEPT_ON_RESTART = ("definition.json", "lock", "state.json", "slurm.json")
#: ``train(runner, run, cfg, run_dir, resume)``: trains (or finishes) the run into ``run_dir``.
TrainFn = Callable[["StudyRunner", RunDef, dict[str, Any], Path, bool], None]


def execute_run(runner: StudyRunner, run: RunDef, *, train: TrainFn | None = None) -> None:
    """Bring one run to complete and raise on failure: train it (resuming from its checkpoint), or
    finish an interrupted one from what it holds (predictions from ``model.pt``), then evaluate it
    as the study asks and write its model card, which quotes that evaluation. Idempotent: a run
    killed at any write is finished by calling this again; a finished model is never retrained.
    ``train`` replaces the in-process training (a cluster job trains under ``torchrun``)."""
    from ..atomic import atomic_write_json as write_json
    from ..evaluation.runs import evaluate_run
    from ..inference.modelcard import write_model_card
    from ..training.run import missing_outputs

    store = runner.store
    run_dir = store.run_dir(run.key)
    cfg = dict(run.config)
    if run.depends is not None:
        cfg["finetune"] = {**cfg["finetune"], "pretrained_run": str(store.run_dir(run.depends).resolve())}
    write_json(run_dir / "definition.json", run.to_dict())
    if missing_outputs(run_dir):
        _train_or_finish(runner, run, cfg, run_dir, train or train_in_process)
    runner.check_lock(run.key)
    calibrate: list[str] = []
    cal = runner.spec.data["experiments"]["calibration"]
    if cal["enabled"] and any(u["experiment"] == "headline" for u in run.uses):
        calibrate = list(cal["methods"])
    if (run_dir / "predictions_test.csv").exists():
        evaluate_run(run_dir, calibrate=calibrate, n_resamples=runner.spec.data["study"]["bootstrap"], plots=False)
    runner.check_lock(run.key)
    write_model_card(run_dir)  # after the evaluation: the card says what the study evaluated


def _train_or_finish(runner: StudyRunner, run: RunDef, cfg: dict[str, Any], run_dir: Path, train: TrainFn) -> None:
    """Train the run, resume it from its checkpoint, or write the outputs its ``model.pt`` lacks."""
    from ..training.loop import CHECKPOINT
    from ..training.modelfile import MODEL_FILE

    resume = (run_dir / CHECKPOINT).exists() or (run_dir / MODEL_FILE).exists()
    if not resume:  # a failed attempt before its first checkpoint: start clean
        for p in run_dir.iterdir():
            if p.name not in KEPT_ON_RESTART:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    train(runner, run, cfg, run_dir, resume)


def train_in_process(runner: StudyRunner, run: RunDef, cfg: dict[str, Any], run_dir: Path, resume: bool) -> None:
    """:func:`train_run` in this process, checking the run's lock after every epoch. A
    self-supervised source run (experiment 6) reads the unlabelled train/val records of its set
    (:func:`~ecg_transfer.training.ssl.load_ssl_data`: labelled or not, the test fold never)."""
    from ..settings import RunConfig
    from ..training.data import load_training_data, train_on_data

    data, labels = load_training_data(RunConfig.from_dict(cfg), progress=runner.progress)
    runner.check_lock(run.key)
    check = [lambda row, model: runner.check_lock(run.key)]
    train_on_data(cfg, data, labels, run_dir, resume=resume, progress=runner.progress, callbacks=check)


def run_study(spec: StudySpec, study_dir: str | Path | None = None, **kw: Any) -> StudyRunSummary:
    """Run (the missing part of) a study; see :class:`StudyRunner` for the options."""
    return StudyRunner(spec, spec.out_dir(study_dir), **kw).run()


__all__ = [
    "KEPT_ON_RESTART",
    "StudyRunSummary",
    "StudyRunner",
    "TrainFn",
    "execute_run",
    "no_space_now",
    "parse_shard",
    "run_study",
    "train_in_process",
    "write_study_files",
]
