"""The job list of benchmarks/gpu_issue14.sh's "main" and "run" calls, checked before anything starts,
and the deadline check that protects the first job (a lease is 15 minutes: a mistake found after the
jobs started costs the call).

    python benchmarks/gpu_jobs.py resolve --left S --state FILE JOB...   # prints "SSL_EPOCHS JOB JOB..."
    python benchmarks/gpu_jobs.py fits RUN_DIR SECONDS                  # exit 0: RUN_DIR can finish in time

``resolve``: every name must be a known job (:data:`JOBS`), at most :data:`MAX_JOBS` (each job brings
back two files, and a call brings back a limited number); ``ssl`` needs ``--ssl-epochs``; ``auto`` is
the first lease's plan (:func:`plan`, from the per-step costs that ``setup`` measured with MEASURE=1,
benchmarks/model_epoch_cost.py --device cuda). The resolved list is saved in ``--state``, and a later
call given ``auto`` reuses it instead of planning again from less time (a re-planned SSL length
would be another run).

:func:`plan`'s priorities: S4 "all" (the issue's first target) always runs; then the diagnostic run
if it leaves room for 50 SSL epochs; the rest goes to the SSL run (at most ``MAX_SSL`` epochs; below
``MIN_SSL`` it is not worth a run). Its costs are added (serial time), and only ``SAFETY`` of the time
left is planned: a job cut at the deadline leaves nothing usable (one-cycle schedule).

``fits``: whether the run in RUN_DIR finishes its remaining epochs in SECONDS, at the median speed
of its last three epochs (``metrics.jsonl``); a run with fewer than two epochs cannot be judged yet
and counts as fitting.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

#: the jobs gpu_issue14.sh knows: committed configs, benchmarks/s4_variants.py's, the SSL run
JOBS = ("s4_all", "s4_diagnostic", "s4_all_best", "s4_diagnostic_best", "s4_all_const", "ssl")
MAX_JOBS = 4
S4_EPOCHS, S4_VALIDATIONS = 50, 10 + 2  # validate_every 5, plus the test predictions and one spare (an over-estimate)
TRAIN_RECORDS, VAL_RECORDS = 17_441, 2_193  # PTB-XL folds 1-8 and 9 (task all)
SAFETY, MIN_SSL, FOR_DIAG_SSL, MAX_SSL = 0.8, 20, 50, 200


class JobError(ValueError):
    """A job list the script must not start."""


def check_jobs(names: list[str]) -> list[str]:
    """The names, checked: known, distinct, between 1 and MAX_JOBS."""
    unknown = [n for n in names if n not in JOBS]
    if unknown:
        raise JobError(f"unknown job {unknown[0]!r}; known: {', '.join(JOBS)}, or auto")
    if not names or len(names) > MAX_JOBS or len(set(names)) != len(names):
        raise JobError(f"1 to {MAX_JOBS} distinct jobs, got {names}")
    return names


def cost_row(path: str | Path, model: str) -> dict:
    """``model``'s row of a benchmarks/model_epoch_cost.py output, with the batch it was timed at."""
    meta = json.loads(Path(path).read_text(encoding="utf-8"))
    return next(r for r in meta["rows"] if r["model"] == model) | {"batch": meta["args"]["batch_size"]}


def run_seconds(row: dict, epochs: int, validations: int) -> float:
    steps = TRAIN_RECORDS // row["batch"]
    return epochs * steps * row["seconds_per_step_median"] + validations * VAL_RECORDS * row["val_seconds_per_record"]


def plan(s4: dict, ssl: dict, left: float) -> tuple[int, int]:
    """(whether the S4 diagnostic run fits beside S4 "all": 1/0, the SSL run's epochs: 0 for none)."""
    s4_run, ssl_epoch = run_seconds(s4, S4_EPOCHS, S4_VALIDATIONS), run_seconds(ssl, 1, 0)
    room = SAFETY * left - s4_run
    diagnostic = int(room - s4_run >= FOR_DIAG_SSL * ssl_epoch)
    room -= diagnostic * s4_run
    epochs = min(MAX_SSL, math.floor(max(room, 0) / ssl_epoch))
    return diagnostic, epochs if epochs >= MIN_SSL else 0


def resolve(
    names: list[str], left: float, state: Path, costs: tuple[Path, Path], ssl_epochs: int = 0
) -> tuple[int, list[str]]:
    """(SSL epochs, jobs) for this call; ``auto`` plans once and is then read back from ``state``;
    a named ``ssl`` job needs ``ssl_epochs``."""
    if names == ["auto"]:
        if state.exists():
            saved = json.loads(state.read_text())
            return int(saved["ssl_epochs"]), check_jobs(saved["jobs"])
        if not all(p.exists() for p in costs):
            raise JobError(f"auto plans from {costs[0]} and {costs[1]}: run setup with MEASURE=1 first")
        diagnostic, ssl_epochs = plan(cost_row(costs[0], "s4"), cost_row(costs[1], "xresnet1d18"), left)
        names = ["s4_all"] + ["s4_diagnostic"] * diagnostic + ["ssl"] * (ssl_epochs > 0)
    elif ("ssl" in names) != (ssl_epochs > 0):
        raise JobError("SSL_EPOCHS (> 0) goes with the ssl job, and only with it")
    jobs = check_jobs(names)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"jobs": jobs, "ssl_epochs": ssl_epochs}))
    return ssl_epochs, jobs


def seconds_to_finish(run_dir: Path) -> float | None:
    """Seconds the run in ``run_dir`` still needs at the median speed of its last 3 epochs (None:
    fewer than 2 epochs to judge by)."""
    metrics = run_dir / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] if metrics.exists() else []
    if len(rows) < 2:
        return None
    epochs = int(json.loads((run_dir / "config.json").read_text())["epochs"])
    per_epoch = statistics.median(float(r["seconds"]) for r in rows[-3:])
    return max(epochs - int(rows[-1]["epoch"]), 0) * per_epoch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("resolve", help="check the job list (and plan auto); print SSL_EPOCHS JOB...")
    r.add_argument("--left", type=float, required=True, help="seconds this call may still run")
    r.add_argument("--state", type=Path, required=True, help="where the resolved list is kept between calls")
    r.add_argument("--costs", type=Path, nargs=2, default=(Path("/tmp/cost_s4.json"), Path("/tmp/cost_ssl.json")))
    r.add_argument("--ssl-epochs", type=int, default=0, help="the ssl job's epochs (not with auto)")
    r.add_argument("jobs", nargs="*")
    f = sub.add_parser("fits", help="exit 0 if RUN_DIR can finish in SECONDS")
    f.add_argument("run_dir", type=Path)
    f.add_argument("seconds", type=float)
    args = ap.parse_args(argv)
    if args.command == "fits":
        need = seconds_to_finish(args.run_dir)
        judged = "under 2 epochs: not judged yet" if need is None else f"{need:.0f} s needed, {args.seconds:.0f} s left"
        print(f"{args.run_dir.name}: {judged}", file=sys.stderr)
        return 0 if need is None or need <= args.seconds else 1
    try:
        ssl_epochs, jobs = resolve(args.jobs, args.left, args.state, tuple(args.costs), args.ssl_epochs)
    except JobError as exc:
        print(f"gpu_jobs: {exc}", file=sys.stderr)
        return 2
    print(ssl_epochs, *jobs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
