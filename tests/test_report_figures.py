"""Figures of the report drawn from results.json that is hand-edited or merged (report/figures.py)."""

from __future__ import annotations

from test_report import make_results

from ecg_transfer.report.figures import exp1_figure


def test_a_share_given_twice_draws_the_curve_instead_of_failing():
    """Two rows of one arm at the same share (e.g. two results.json merged by hand) used to fail the
    experiment-1 figure: the points were sorted as (share, Interval) pairs, and equal shares made
    Python compare two Intervals (TypeError). They are sorted by share alone now."""
    res = make_results()
    rest = res["exp1"]["rest"]
    res["exp1"]["rest"] = rest + [dict(r) for r in rest]
    assert exp1_figure(res)[:8] == b"\x89PNG\r\n\x1a\n"
