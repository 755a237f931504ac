"""``ecg-transfer report STUDY_DIR [--open]``: the study's HTML page and Markdown summary."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "write the study report: one self-contained HTML page and a Markdown summary"
DESCRIPTION = (
    "Read STUDY_DIR/results.json (written by `ecg-transfer study`) and write STUDY_DIR/report/index.html "
    "(one self-contained page: figures embedded, no network needed) and STUDY_DIR/report/report.md (figures as "
    "PNG files beside it): the headline table with confidence intervals and the paired difference per label "
    "protocol beside the original study's numbers, the experiment curves and charts, calibration before and "
    "after, per-label AUC, run status and study metadata. Works on a study still running: missing results read "
    "'not run', 'pending' or 'failed'."
)


def add_report_parser(sub: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register the ``report`` subcommand on the main parser's subparsers."""
    p = sub.add_parser("report", help=HELP, description=DESCRIPTION)
    p.add_argument("study_dir", type=Path, metavar="STUDY_DIR", help="a study directory holding results.json")
    p.add_argument("--open", action="store_true", help="open index.html in the default web browser afterwards")
    p.add_argument(
        "--no-refresh",
        action="store_true",
        help="use results.json as it is (default: recompute it first from the runs' saved predictions "
        "when STUDY_DIR is a study directory, so a study still running shows what is done)",
    )
    p.set_defaults(func=run_report)
    return p


def run_report(args: argparse.Namespace) -> int:
    from .build import write_report

    if not args.no_refresh and (args.study_dir / "plan.json").exists():
        from ..study.results import write_results

        write_results(args.study_dir)
    paths = write_report(args.study_dir)
    n_fig = sum(1 for k in paths if k not in ("dir", "html", "markdown"))
    print(f"{paths['html']}\n{paths['markdown']} ({n_fig} figure(s) beside it)")
    if args.open:
        import webbrowser

        if not webbrowser.open(paths["html"].resolve().as_uri()):
            print("no web browser found; open the file above yourself")
    return 0
