"""``ecg-transfer study run|status|plan SPEC``."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from .plan import plan_study
from .spec import load_spec
from .store import RunStore


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", type=Path, help="the study spec (TOML), e.g. studies/ptbxl_to_g12ec.toml")
    p.add_argument("--profile", default=None,
                   help="a [profiles.NAME] table of the spec merged over it, e.g. quick (small, ~20 min on a laptop)")
    p.add_argument("--out", type=Path, default=None,
                   help="the study directory (default: the spec's study.out, else studies/out/<name>[-<profile>])")


def add_study_parser(sub: argparse._SubParsersAction) -> None:
    study = sub.add_parser(
        "study", help="run the whole transfer study from a spec file, resumably; see its status",
        description="The PTB-XL -> G12EC transfer study (or your own) from one TOML spec: pre-training, fine-tuned "
                    "and standalone arms on identical splits, experiments 1-5, bootstrap CIs. Every run is keyed by "
                    "what defines it, so running again skips what is done and resumes what was interrupted.")
    ssub = study.add_subparsers(dest="study_command", metavar="STUDY_COMMAND", required=True)
    p = ssub.add_parser("run", help="train and evaluate every run that is missing, then write results.json",
                        description="Train and evaluate what is missing; skip what is done; resume interrupted runs "
                                    "from their checkpoint; record a failed run (state.json) and go on. Split the "
                                    "work over machines sharing the study folder with --shard i/n. Then make the "
                                    "report with `ecg-transfer report STUDY_DIR`.")
    _common(p)
    p.add_argument("--shard", default=None, metavar="I/N", help="run only every N-th run, starting at the I-th (1-based)")
    p.add_argument("--retry-failed", action="store_true", help="try failed runs again (default: leave them failed)")
    p.add_argument("--report", action="store_true", help="write the report when done (same as `ecg-transfer report`)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_study_command)
    p = ssub.add_parser("status", help="what is done, running, failed and left",
                        description="Count the runs of the study by state (done, running, interrupted, failed, "
                                    "missing) and list the failed and running ones; --all lists every run.")
    _common(p)
    p.add_argument("--all", action="store_true", help="list every run with its state")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=status_command)
    p = ssub.add_parser("plan", help="list the runs the spec needs, without running anything",
                        description="Validate the spec and list every run it needs (key, kind, name, uses).")
    _common(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=plan_command)


def run_study_command(args: argparse.Namespace) -> int:
    from .runner import StudyRunner, parse_shard

    spec = load_spec(args.spec, args.profile)
    study_dir = spec.out_dir(args.out)
    runner = StudyRunner(spec, study_dir, shard=parse_shard(args.shard), retry_failed=args.retry_failed,
                         progress=not args.no_progress)
    s = runner.run()
    print(f"trained {len(s.trained)}, already done or failed before {len(s.skipped)}, failed now {len(s.failed)}, "
          f"held by another process {len(s.busy)}; {s.seconds / 60:.1f} min")
    if args.report:
        from ..report import write_report

        print(f"report: {write_report(study_dir)['html']}")
    return 3 if s.failed else 0


def status_command(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, args.profile)
    study_dir = spec.out_dir(args.out)
    store = RunStore(study_dir)
    runs = plan_study(spec)
    states = {r.key: store.state(r.key) for r in runs}
    counts = Counter(s["state"] for s in states.values())
    if args.json:
        print(json.dumps({"study_dir": str(study_dir), "counts": dict(counts),
                          "runs": [{"key": r.key, "name": r.name, "kind": r.kind, **states[r.key]} for r in runs]},
                         indent=2, default=str))
        return 0
    print(f"{spec.name}{' (' + spec.profile + ')' if spec.profile else ''}: {study_dir}")
    print(f"  {len(runs)} runs: {counts.get('done', 0)} done, {counts.get('running', 0)} running, "
          f"{counts.get('interrupted', 0)} interrupted, {counts.get('failed', 0)} failed, "
          f"{counts.get('missing', 0)} not started")
    for r in runs:
        st = states[r.key]
        if args.all or st["state"] in ("failed", "running", "interrupted"):
            extra = st.get("error") or (f"pid {st.get('pid')} on {st.get('host')}" if st["state"] == "running" else "")
            print(f"  {st['state']:<12} {r.key}  {r.name}  {extra}")
    return 0


def plan_command(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, args.profile)
    runs = plan_study(spec)
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=2))
        return 0
    kinds = Counter(r.kind for r in runs)
    print(f"{spec.name}{' (' + spec.profile + ')' if spec.profile else ''}: {len(runs)} runs "
          f"({', '.join(f'{n} {k}' for k, n in kinds.items())}) -> {spec.out_dir(args.out)}")
    for r in runs:
        print(f"  {r.key}  {r.kind:<10} {r.name}" + (f"  (+{len(r.uses) - 1} more uses)" if len(r.uses) > 1 else ""))
    return 0
