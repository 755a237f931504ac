"""``study run``: train what is missing, skip what is done, record failures and go on.

Each run goes through the same steps as ``ecg-transfer train`` followed by ``ecg-transfer
evaluate``: the data layer resolves the run's ``[task]`` table, :func:`train_run` trains it
(resuming from the checkpoint of an interrupted attempt) and :func:`evaluate_run` writes its
metrics with bootstrap CIs (and, for the headline runs, the calibrators of experiment 4, fitted on
validation predictions). Killing the process loses at most the epoch in flight.

Failures: an exception in one run is written to its ``state.json`` (message and traceback) and
the study goes on; runs that start from a failed pre-training run are recorded as failed too.
``--retry-failed`` tries failed runs again. ``results.json`` is written when the process ends
(also when interrupted), and ``ecg-transfer report`` recomputes it from whatever is done.
"""

from __future__ import annotations

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
from .store import RunStore

log = logging.getLogger(__name__)

WAIT_POLL_SECONDS = 20.0


@dataclass
class StudyRunSummary:
    study_dir: Path
    planned: int
    selected: int
    trained: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)   # held by another process
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
        target = study_dir / "spec.toml"
        if not target.exists() or target.read_text(encoding="utf-8") != src:
            from ..atomic import atomic_write_text
            atomic_write_text(target, src)
    atomic_write_json(study_dir / "study.json", {
        "name": spec.name, "profile": spec.profile, "spec": str(spec.path), "spec_digest": spec.digest,
        "resolved": spec.data})
    atomic_write_json(study_dir / "plan.json", {"runs": [r.to_dict() for r in runs]})


class StudyRunner:
    """Runs the plan of one spec into one study directory (one shard of it)."""

    def __init__(self, spec: StudySpec, study_dir: str | Path, *, shard: tuple[int, int] = (1, 1),
                 retry_failed: bool = False, progress: bool = True, echo: Callable[[str], None] = print,
                 execute: Callable[["StudyRunner", RunDef], None] | None = None):
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
        self.summary = StudyRunSummary(self.study_dir, len(self.runs), 0)

    def run(self) -> StudyRunSummary:
        t0 = time.perf_counter()
        write_study_files(self.spec, self.study_dir, self.runs)
        mine = select_shard(self.runs, self.shard)
        self.summary.selected = len(mine)
        shard = "" if self.shard == (1, 1) else f" (shard {self.shard[0]}/{self.shard[1]})"
        self.echo(f"study {self.spec.name}: {len(self.runs)} runs planned, {len(mine)} in this process{shard}; "
                  f"writing to {self.study_dir}")
        try:
            for i, run in enumerate(mine, 1):
                self._ensure(run, f"[{i}/{len(mine)}]")
        finally:  # also when interrupted: the report shows what is done so far
            self.summary.seconds = time.perf_counter() - t0
            self._write_results()
        return self.summary

    def _ensure(self, run: RunDef, where: str, waiting_child: str | None = None) -> str:
        """Bring ``run`` to done or failed; returns its final state ("busy" when another process has it)."""
        st = self.store.state(run.key)["state"]
        if st == "done":
            if waiting_child is None:
                self.summary.skipped.append(run.key)
            return "done"
        if st == "failed" and not self.retry_failed:
            if waiting_child is None:
                self.summary.skipped.append(run.key)
            return "failed"
        if run.depends is not None:
            parent = self.by_key[run.depends]
            pst = self._ensure(parent, where, waiting_child=run.key)
            while pst == "busy":  # another shard trains the pre-training run: wait for it
                self.echo(f"{where} {run.name}: waiting for {parent.name} ({parent.key}), trained by another process")
                time.sleep(WAIT_POLL_SECONDS)
                pst = self._ensure(parent, where, waiting_child=run.key)
            if pst == "failed":
                self.store.mark(run.key, "failed", error=f"its pre-training run {parent.name} ({parent.key}) failed",
                                name=run.name)
                self.summary.failed.append(run.key)
                self.echo(f"{where} {run.name}: not run, its pre-training run failed")
                return "failed"
        if not self.store.acquire(run.key):
            if waiting_child is None:
                self.summary.busy.append(run.key)
                self.echo(f"{where} {run.name}: trained by another process, skipping")
            return "busy"
        try:
            self.store.clear_state(run.key)
            self.echo(f"{where} {run.name} ({run.key}) ...")
            t0 = time.perf_counter()
            try:
                self._execute(self, run)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # recorded, and the study goes on
                self.store.mark(run.key, "failed", error=f"{type(exc).__name__}: {exc}", name=run.name,
                                traceback=traceback.format_exc())
                self.summary.failed.append(run.key)
                self.echo(f"{where} {run.name}: FAILED: {type(exc).__name__}: {exc}")
                return "failed"
            seconds = round(time.perf_counter() - t0, 1)
            self.store.mark(run.key, "done", name=run.name, seconds=seconds)
            self.summary.trained.append(run.key)
            self.echo(f"{where} {run.name}: done in {seconds:.0f} s")
            return "done"
        finally:
            self.store.release(run.key)

    def _write_results(self) -> None:
        from .results import write_results

        try:
            path = write_results(self.study_dir)
            self.echo(f"results: {path}")
        except Exception as exc:  # the report data must never stop the training
            log.warning("could not update results.json: %s", exc)
            self.echo(f"warning: could not update results.json: {type(exc).__name__}: {exc}")


def execute_run(runner: StudyRunner, run: RunDef) -> None:
    """Train (or resume) one run and evaluate it; raises on failure."""
    from ..atomic import atomic_write_json as write_json
    from ..datasets.task import load_task
    from ..evaluation.runs import evaluate_run
    from ..training.modelfile import MODEL_FILE
    from ..training.run import train_run

    store = runner.store
    run_dir = store.run_dir(run.key)
    cfg = dict(run.config)
    if run.depends is not None:
        cfg["finetune"] = {**cfg["finetune"], "pretrained_run": str(store.run_dir(run.depends).resolve())}
    write_json(run_dir / "definition.json", run.to_dict())
    if not (run_dir / MODEL_FILE).exists():
        resume = (run_dir / "checkpoint.pt").exists()
        if not resume:  # a failed attempt before its first checkpoint: start clean
            for p in run_dir.iterdir():
                if p.name not in ("definition.json", "lock", "state.json"):
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
        data = load_task(cfg["task"], cfg["fs"], progress=runner.progress)
        train_run(cfg, data.X, data.Y, data.record_ids, data.splits, data.label_names, run_dir, resume=resume,
                  lengths=data.lengths, progress=runner.progress,
                  callbacks=[lambda row, model: store.heartbeat(run.key)])
    calibrate: list[str] = []
    cal = runner.spec.data["experiments"]["calibration"]
    if cal["enabled"] and any(u["experiment"] == "headline" for u in run.uses):
        calibrate = list(cal["methods"])
    if (run_dir / "predictions_test.csv").exists():
        evaluate_run(run_dir, calibrate=calibrate, n_resamples=runner.spec.data["study"]["bootstrap"], plots=False)


def run_study(spec: StudySpec, study_dir: str | Path | None = None, **kw: Any) -> StudyRunSummary:
    """Run (the missing part of) a study; see :class:`StudyRunner` for the options."""
    return StudyRunner(spec, spec.out_dir(study_dir), **kw).run()


__all__ = ["StudyRunSummary", "StudyRunner", "execute_run", "parse_shard", "run_study", "write_study_files"]
