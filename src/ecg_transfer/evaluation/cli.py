"""``ecg-transfer evaluate``: metrics, CIs, calibration and comparisons from a run's saved predictions."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .caveats import (  # the console's caveats, shared with the model card
    FEW_TEST_POSITIVES,
    interval_caveats,
    resampling_caveat,
    with_caveats,
)

# The calibration methods of .calibration.CALIBRATORS, named here so that building the parser does
# not import scipy and scikit-learn (tests check that the two lists agree).
METHODS: tuple[str, ...] = ("temperature", "class-temperature", "platt", "isotonic")

_NAMES = {
    "macro_auc": "macro AUC",
    "macro_auprc": "macro AUPRC",
    "f_max": "F-max",
    "brier": "Brier",
    "ece": "ECE (pooled)",
    "ece_macro": "ECE (macro)",
    "challenge": "challenge metric",
}


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run_dir",
        type=Path,
        nargs="+",
        help="a run directory (predictions_test.csv, predictions_val.csv, config.json); "
        "several: seeds of one arm, each evaluated, then summarised (mean +- sd, pooled CI)",
    )
    p.add_argument(
        "--compare",
        type=Path,
        nargs="+",
        default=None,
        metavar="OTHER_RUN_DIR",
        help="paired bootstrap of RUN_DIR minus OTHER_RUN_DIR (e.g. fine-tuned minus standalone) on "
        "the same test records; several: seeds of the other arm",
    )
    p.add_argument(
        "--calibrate",
        action="append",
        default=None,
        metavar="METHOD",
        choices=[*METHODS, "all"],
        help=f"fit on validation predictions, apply to test: {', '.join(METHODS)}, or all (repeatable)",
    )
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--bins", type=int, default=10, help="calibration bins for ECE and the diagrams (default 10)")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="probability at which a label counts as predicted, for the challenge metric (default 0.5)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the reliability diagrams")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the evaluation here instead of RUN_DIR/evaluation/ (several runs: DIR/<run>/, with "
        "seeds.json and comparison_<other>.json in DIR); required for a run of a study, whose "
        "evaluation/ holds the study's results",
    )


def _print_run(res: dict[str, Any]) -> None:
    from .bootstrap import HEADLINE, format_interval

    n_pos = sum(1 for c in res["per_class"].values() if c["status"] == "ok")
    print(
        f"{res['run_dir']}: {res['n_records']} test records, {len(res['labels'])} labels "
        f"({n_pos} with positives and negatives); {res['settings']['n_resamples']} resamples, "
        f"{res['settings']['level']:.0%} CI, bootstrap {res['bootstrap_seconds']:.1f} s"
    )
    settings = res["settings"]
    n_resamples, level = settings["n_resamples"], settings["level"]
    fallback = resampling_caveat(settings)
    if fallback:
        print(f"  {fallback}")
    for name in HEADLINE:
        if name in res["headline"]:
            e = res["headline"][name]
            extra = ""
            if name == "f_max" and e.get("threshold") is not None:
                extra = f"  (at t = {e['threshold']:.2f})"
            text = with_caveats(format_interval(e), interval_caveats(e, n_resamples, level))
            print(f"  {_NAMES[name]:<18} {text}{extra}")
    ch = res["challenge"]
    print(f"  challenge classes: {ch['note']}")
    for label, why in res["classes_left_out"].items():
        print(f"  left out of macro AUC: {label} ({why})")
    _print_fragile_labels(res)
    cal = res.get("calibration")
    if cal:
        print(f"  calibration (fitted on {cal['n_val_records']} validation records, scored on test):")
        print(f"    {'state':<18} {'Brier':<24} {'ECE (pooled)':<24} max |dAUC|")
        for state, e in cal.items():
            if not isinstance(e, dict):
                continue
            dauc = e.get("max_auc_change")
            print(
                f"    {state:<18} {format_interval(e['brier'], 4):<24} {format_interval(e['ece'], 4):<24} "
                f"{'' if dauc is None else f'{dauc:.2g}'}"
            )
    print(f"  written: {res['written']}")


def _print_fragile_labels(res: dict[str, Any]) -> None:
    """The per-label AUC and AUPRC whose intervals rest on few test positives or negatives, or on
    many undefined resamples, in the run's label order, each with its caveat beside it."""
    from .bootstrap import format_interval

    n_resamples, level = res["settings"]["n_resamples"], res["settings"]["level"]
    lines = []
    for label in res["labels"]:
        c = res["per_class"].get(label) or {}
        for metric in ("auc", "auprc"):
            why = interval_caveats(c.get(metric), n_resamples, level, c.get("n_pos"), c.get("n_neg"))
            if why:
                lines.append(f"    {label:<12} {metric.upper():<6} {with_caveats(format_interval(c[metric]), why)}")
    if lines:
        print(
            f"  labels whose intervals are fragile (fewer than {FEW_TEST_POSITIVES} test positives or negatives, "
            f"more than {1 - level:.0%} of the resamples undefined, zero width, or a value outside its interval):"
        )
        for line in lines:
            print(line)


def refuse_study_runs(run_dirs: list[Path]) -> None:
    """No user command overwrites a study's results: a study run's ``evaluation/`` is the study's."""
    from ..runfiles import study_run_info
    from .runs import EvaluationError

    for run_dir in run_dirs:
        info = study_run_info(run_dir)
        if info is not None:
            raise EvaluationError(
                f"{run_dir} is run {info['name']} of the study {info['study_dir']}: its evaluation/ holds the "
                f"study's results (bootstrap and calibration as the study's spec says), which this command would "
                f"overwrite. Write this evaluation elsewhere with --out DIR"
            )


def seed_lines(summary: dict[str, Any], level: float) -> list[str]:
    """``evaluate`` on several seeds, as lines: per metric the mean +- sd and the pooled CI of the
    seed mean, and a warning beside a metric whose seeds lie outside that CI (it resamples test
    records, not training: where seeds differ more than it, the sd is the spread to read) or whose
    mean does (a percentile interval on few test records)."""
    lines = [f"{summary['n_seeds']} seeds: mean +- sd, pooled {level:.0%} CI of the seed mean"]
    for name, e in summary["metrics"].items():
        sd = "" if e["sd"] is None else f" +- {e['sd']:.3f}"
        lo, hi = e["pooled_ci"]
        ci = "" if lo is None else f" [{lo:.3f}, {hi:.3f}]"
        mean = "n/a" if e["mean"] is None else f"{e['mean']:.3f}"
        warnings = []
        if e.get("seeds_outside_ci"):
            warnings.append(
                f"{e['seeds_outside_ci']} of {summary['n_seeds']} seeds outside this CI: the seeds differ "
                "more than the test records' resamples do; read the sd"
            )
        if e.get("mean_outside_ci"):
            warnings.append("the mean lies outside its own interval")
        note = f"  (warning: {'; '.join(warnings)})" if warnings else ""
        lines.append(f"  {_NAMES[name]:<18} {mean}{sd}{ci}{note}")
    lines.append(f"  written: {summary['path']}")
    return lines


def _out_dirs(args: argparse.Namespace) -> tuple[list[Path | None], Path | None]:
    """Where each run's evaluation goes, and where seeds.json / comparisons go (None: the defaults)."""
    if args.out is None:
        refuse_study_runs(list(args.run_dir))
        return [None] * len(args.run_dir), None
    if len(args.run_dir) == 1:
        return [args.out], args.out
    names = [Path(r).resolve().name for r in args.run_dir]
    if len(set(names)) != len(names):
        names = [f"{i + 1}_{n}" for i, n in enumerate(names)]
    return [args.out / n for n in names], args.out


def run_evaluate(args: argparse.Namespace) -> int:
    from .bootstrap import format_interval
    from .runs import EVAL_DIR, compare_runs, evaluate_run, summarise_seeds

    methods: list[str] = []
    for m in args.calibrate or []:
        for name in METHODS if m == "all" else [m]:
            if name not in methods:
                methods.append(name)
    kw = dict(n_resamples=args.resamples, seed=args.seed, level=args.level, n_bins=args.bins, threshold=args.threshold)
    outs, shared = _out_dirs(args)
    for run_dir, out in zip(args.run_dir, outs):
        res = evaluate_run(run_dir, calibrate=methods, plots=not args.no_plots, out=out, **kw)
        _print_run({**res, "written": (Path(run_dir) / EVAL_DIR if out is None else out) / "metrics.json"})
    if len(args.run_dir) > 1:
        s = summarise_seeds(args.run_dir, out=None if shared is None else shared / "seeds.json", **kw)
        print("\n".join(seed_lines(s, args.level)))
    if args.compare:
        c = compare_runs(args.run_dir, args.compare, out=shared, **kw)
        print(
            f"paired bootstrap, A - B on {c['n_records']} common test records "
            f"(A: {', '.join(c['a'])}; B: {', '.join(c['b'])})"
        )
        print(f"  {'metric':<18} {'A':>7} {'B':>7}  {'A - B [CI]':<28} p")
        for name, e in c["difference"].items():
            a = "n/a" if e["a"] is None else f"{e['a']:.3f}"
            b = "n/a" if e["b"] is None else f"{e['b']:.3f}"
            p = "n/a" if e["p_value"] is None else f"{e['p_value']:.3g}"
            print(f"  {_NAMES[name]:<18} {a:>7} {b:>7}  {format_interval(e):<28} {p}")
        print(f"  written: {c['path']}")
    return 0
