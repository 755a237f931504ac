"""``ecg-transfer study run|status|plan SPEC``."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .executors.slurm import LIVE_STATES, add_slurm_arguments, check_executor_args, status_jobs
from .plan import plan_study
from .spec import load_spec
from .store import RunStore

if TYPE_CHECKING:
    from .estimate import StudyEstimate


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", type=Path, help="the study spec (TOML), e.g. studies/ptbxl_to_g12ec.toml")
    p.add_argument(
        "--profile",
        default=None,
        help="a [profiles.NAME] table of the spec merged over it, e.g. laptop (a real answer on a 2-core CPU; `study plan` estimates its time) or smoke (a machinery check)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the study directory (default: the spec's study.out, else studies/out/<name>[-<profile>])",
    )


def add_study_parser(sub: argparse._SubParsersAction, write_report: Callable[[Path], Path] | None = None) -> None:
    """``study run|status|plan``. ``write_report`` (study dir -> report path) serves ``--report``:
    the report is a layer above the study, so the command line that holds both passes it in."""
    study = sub.add_parser(
        "study",
        help="run the whole transfer study from a spec file, resumably; see its status",
        description="The PTB-XL -> G12EC transfer study (or your own) from one TOML spec: pre-training, fine-tuned "
        "and standalone arms on identical splits, each arm's training length (and, with [study] "
        "lr_factors, its peak learning rate) chosen on validation ([study] lengths), experiments 1-6, bootstrap CIs. Every run is keyed by "
        "what defines it, so running again skips what is done and resumes what was interrupted.",
    )
    ssub = study.add_subparsers(dest="study_command", metavar="STUDY_COMMAND", required=True)
    p = ssub.add_parser(
        "run",
        help="train and evaluate every run that is missing, then write results.json",
        description="Train and evaluate what is missing; skip what is done; resume interrupted runs "
        "from their checkpoint; record a failed run (state.json) and go on. Split the "
        "work over machines sharing the study folder with --shard i/n, or submit one "
        "SLURM job a run with --executor slurm. Then make the report with "
        "`ecg-transfer report STUDY_DIR`.",
    )
    _common(p)
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="run only shard I of N (1-based): every N-th pre-training run and every N-th comparison, "
        "each with all of its training lengths and rates",
    )
    p.add_argument("--retry-failed", action="store_true", help="try failed runs again (default: leave them failed)")
    p.add_argument("--report", action="store_true", help="write the report when done (same as `ecg-transfer report`)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_slurm_arguments(p)
    p.set_defaults(func=run_study_command, write_report=write_report)
    p = ssub.add_parser(
        "status",
        help="what is done, running, failed and left",
        description="Count the runs of the study by state (done, running, interrupted, failed, "
        "missing) and list the failed and running ones; --all lists every run.",
    )
    _common(p)
    p.add_argument("--all", action="store_true", help="list every run with its state")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=status_command)
    p = ssub.add_parser(
        "plan",
        help="list the runs the spec needs and how long they will take, running nothing",
        description="Validate the spec and the complete settings of every run, check that every "
        "data root exists, list every run (key, kind, name, uses) and estimate the wall "
        "time on this machine: epochs x records of every run times this machine's "
        "measured cost per training sample and per evaluation window (measured once per "
        "network and window size, a few seconds each, and kept in the cache folder with a speed "
        "probe of under a second that each plan takes again: a kept measurement is taken again "
        "where the machine now runs more than 1.5x faster or slower); where the "
        "study's folder (--out) holds finished runs, the runs and time left.",
    )
    _common(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--no-estimate", action="store_true", help="list the runs only (no measurement, no timing)")
    p.add_argument(
        "--remeasure",
        action="store_true",
        help="measure this machine's speed again instead of using the kept measurements (a measurement "
        "taken while other work ran is flagged beside the estimate and taken again by itself once the "
        "machine is quiet)",
    )
    p.add_argument(
        "--assume-records",
        action="append",
        metavar="NAME=COUNT",
        default=None,
        help="estimate for a dataset that is not here, e.g. target=10344 (the full G12EC); NAME is "
        "source, target or a dataset root. Repeatable",
    )
    p.set_defaults(func=plan_command)


def run_study_command(args: argparse.Namespace) -> int:
    from .runner import StudyRunner, parse_shard

    check_executor_args(args)
    spec = load_spec(args.spec, args.profile)
    study_dir = spec.out_dir(args.out)
    runs = plan_study(spec)
    check_data_roots_except(runs, {})  # before anything is read or trained
    for line in missing_records_lines(runs):
        print(line, flush=True)
    from .leakage import check_leakage

    check_leakage(spec, study_dir, echo=lambda m: print(m, flush=True))
    if args.executor == "slurm":
        from .executors.slurm import run_study_on_slurm

        return run_study_on_slurm(args, spec, study_dir)
    runner = StudyRunner(
        spec, study_dir, shard=parse_shard(args.shard), retry_failed=args.retry_failed, progress=not args.no_progress
    )
    s = runner.run()
    print(
        f"trained {len(s.trained)}, already done or failed before {len(s.skipped)}, failed now {len(s.failed)}, "
        f"held by another process {len(s.busy)}; {s.seconds / 60:.1f} min"
    )
    if args.report and args.write_report is not None:
        print(f"report: {args.write_report(study_dir)}")
    return 3 if s.failed else 0


def status_command(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, args.profile)
    study_dir = spec.out_dir(args.out)
    store = RunStore(study_dir)
    runs = plan_study(spec)
    states = run_states(study_dir, runs)
    counts = Counter(s["state"] for s in states.values())
    jobs, jobs_note = status_jobs(store, [r.key for r in runs])  # SLURM jobs (--executor slurm), if any
    if args.json:
        print(
            json.dumps(
                {
                    "study_dir": str(study_dir),
                    "counts": dict(counts),
                    "slurm_note": jobs_note,
                    "runs": [
                        {"key": r.key, "name": r.name, "kind": r.kind, **states[r.key], "slurm_job": jobs.get(r.key)}
                        for r in runs
                    ],
                },
                indent=2,
                default=str,
            )
        )
        return 0
    print(f"{spec.name}{' (' + spec.profile + ')' if spec.profile else ''}: {study_dir}")
    print(
        f"  {len(runs)} runs: {counts.get('done', 0)} done, {counts.get('running', 0)} running, "
        f"{counts.get('interrupted', 0)} interrupted, {counts.get('failed', 0)} failed, "
        f"{counts.get('missing', 0)} not started"
    )
    if jobs:
        job_counts = Counter(j["state"] for j in jobs.values())
        print(
            "  SLURM, last job of each run: "
            + ", ".join(f"{n} {s.lower()}" for s, n in sorted(job_counts.items()))
            + (f" ({jobs_note})" if jobs_note else "")
        )
    for r in runs:
        st, job = states[r.key], jobs.get(r.key)
        if args.all or st["state"] in ("failed", "running", "interrupted") or (job and job["state"] in LIVE_STATES):
            extra = (
                st.get("error")
                or st.get("problem")
                or (f"pid {st.get('pid')} on {st.get('host')}" if st["state"] == "running" else "")
            )
            if job:
                extra = f"job {job['job_id']} {job['state']}, log {job['log']}" + (f"; {extra}" if extra else "")
            print(f"  {st['state']:<12} {r.key}  {r.name}  {extra}")
    return 0


def plan_command(args: argparse.Namespace) -> int:
    from .estimate import busy_cpus, estimate_study, format_duration, format_estimate, parse_assumptions

    load = busy_cpus()  # before this process adds its own work
    spec = load_spec(args.spec, args.profile)
    runs = plan_study(spec)
    assumed = parse_assumptions(args.assume_records)
    roots = [(d, r) for d, r in check_data_roots_except(runs, assumed)]
    est = None
    if not args.no_estimate:
        cache_dir = Path(spec.settings.study.cache_dir) if spec.settings.study.cache_dir else None
        est = estimate_study(
            runs,
            assumed=assumed,
            cache_dir=cache_dir,
            n_resamples=spec.settings.study.bootstrap,
            echo=lambda m: print(m, file=sys.stderr, flush=True),
            load=load,
            remeasure=args.remeasure,
        )
    study_dir = spec.out_dir(args.out)
    # verifying done runs reads their outputs: only for an estimate
    states = {k: st["state"] for k, st in run_states(study_dir, runs).items()} if est is not None else {}
    if args.json:
        left = None if est is None else leftover(est, states)
        print(
            json.dumps(
                {
                    "runs": [r.to_dict() for r in runs],
                    "roots": roots,
                    "estimate": est.to_dict() if est else None,
                    "states": dict(Counter(states.values())),
                    "left": left,
                },
                indent=2,
            )
        )
        return 0
    kinds = Counter(r.kind for r in runs)
    print(
        f"{spec.name}{' (' + spec.profile + ')' if spec.profile else ''}: {len(runs)} runs "
        f"({', '.join(f'{n} {k}' for k, n in kinds.items())}) -> {spec.out_dir(args.out)}"
    )
    print("data: " + "; ".join(f"{d} at {r}" for d, r in roots))
    for r in runs:
        print(f"  {r.key}  {r.kind:<10} {r.name}" + (f"  (+{len(r.uses) - 1} more uses)" if len(r.uses) > 1 else ""))
    for line in format_estimate(est) if est else []:
        print(line)
    if est is not None and any(st != "missing" for st in states.values()):
        left = leftover(est, states)
        print(
            f"left in {study_dir}: {left['runs']} of {len(runs)} runs, about {format_duration(left['seconds'])} "
            f"({left['done']} done{', ' + str(left['failed']) + ' failed (retried with --retry-failed)' if left['failed'] else ''};"
            " caches not counted)"
        )
    return 0


def run_states(study_dir: Path, runs: list) -> dict[str, dict]:
    """Each run's :meth:`RunStore.state` in ``study_dir`` (all missing when the folder does not exist yet)."""
    if not study_dir.is_dir():
        return {r.key: {"state": "missing"} for r in runs}
    store = RunStore(study_dir)
    return {r.key: store.state(r.key) for r in runs}


def leftover(est: StudyEstimate, states: dict[str, str]) -> dict[str, float | int]:
    """What ``study run`` still has to train: every run neither done nor failed, and its estimate."""
    todo = [r for r in est.runs if states.get(r.key, "missing") not in ("done", "failed")]
    counts = Counter(states.values())
    return {
        "runs": len(todo),
        "seconds": round(sum(r.seconds for r in todo), 1),
        "done": counts.get("done", 0),
        "failed": counts.get("failed", 0),
    }


def missing_records_lines(runs: list) -> list[str]:
    """One line per PTB-XL rate where records are missing and the study uses those present
    (``allow_missing``): how many, and which runs that affects."""
    from ..datasets.ptbxl import PTBXL
    from ..datasets.registry import open_dataset

    lines, seen = [], set()
    for run in runs:
        task = run.config.get("task") or {}
        ident = (task.get("root"), task.get("source_fs"))
        if task.get("dataset") != "ptbxl" or not task.get("allow_missing") or ident in seen:
            continue
        seen.add(ident)
        adapter = open_dataset("ptbxl", task["root"], fs=task.get("source_fs") or 100, allow_missing=True)
        assert isinstance(adapter, PTBXL)  # what open_dataset("ptbxl") opens
        present = len(adapter.index())
        if adapter.missing:
            lines.append(
                f"PTB-XL at {task.get('source_fs')} Hz: {len(adapter.missing)} of "
                f"{len(adapter.missing) + present} records are missing under {task['root']}; the runs "
                f"that read this rate (pre-training above 100 Hz) train and test on the {present} present"
            )
    return lines


def check_data_roots_except(runs: list, assumed: dict[str, int]) -> list[tuple[str, str]]:
    """Check every data root the runs read, except those the user assumes a size for (not here)."""
    from .plan import check_data_roots

    def assumed_for(run) -> bool:
        task = run.config.get("task") or {}
        role = "source" if run.kind == "pretrain" else "target"
        return str(task.get("root")) in assumed or role in assumed

    return check_data_roots([r for r in runs if not assumed_for(r)])
