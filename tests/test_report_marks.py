"""Numbers the report must not let a reader misread (the smoke study's review):

1. a point estimate outside its own bootstrap interval (cinc2020 macro AUPRC "0.290 [0.291, 0.654]")
   is marked † and explained beneath its table;
2. a mean over seeds whose CI excludes the seeds' own values (experiment 3 at 50 Hz: [0.000, 0.667]
   shown as "0.333 [0.250, 0.500] · sd 0.471") is marked ‡, and "How the numbers are made" says what
   a seed mean's CI covers;
3. a per-label difference resting on fewer than 5 positive test records (LAFB: 1 positive,
   p = 0.007) is marked §, never highlighted, and left out of the caption's "better on k labels";
4. a count of test records over repeats of different sizes agrees with the small-test warning
   (not "28 test records ... only 27 test records").

Built from the synthetic results of ``test_report`` and rendered without figures (fast).
"""

from __future__ import annotations

import re

from test_report import make_results

from ecg_transfer.report import tables as T
from ecg_transfer.report.data import (
    MARK_FEW_POSITIVES,
    MARK_NOTES,
    MARK_OUTSIDE,
    MARK_SEEDS,
    MIN_LABEL_POSITIVES,
    interval,
    records_text,
)
from ecg_transfer.report.html import render_html
from ecg_transfer.report.markdown import render_markdown

OUTSIDE_NOTE = "the point estimate lies outside its bootstrap interval: the test set is too small for this interval"
SEEDS_NOTE = "seeds differ by more than the interval: between-seed variation dominates"


def _pages(res: dict) -> tuple[str, str]:
    """(HTML, Markdown) of ``res`` without figures."""
    return render_html(res, {}), render_markdown(res, {}, {})


def _row(t: T.Table, *texts: str) -> list[T.Cell]:
    return next(r for r in t.rows if all(any(c.text == x for c in r) for x in texts))


# ---------------------------------------------------------------------------------------------
# 1. a point estimate outside its own interval


def test_point_estimate_outside_its_interval_is_marked_and_explained():
    res = make_results()
    auprc = res["headline"][1]["metrics"]["finetuned"]["macro_auprc"]
    auprc.update(value=0.28980654761904756, ci=[0.29126984126984123, 0.654234871031746])  # the smoke study's
    t = T.secondary_table(res)
    assert t is not None
    row = _row(t, "cinc2020", "macro AUPRC ↑")
    assert row[2].text == "0.290" and MARK_OUTSIDE in row[2].mark  # the interval itself is kept, not "fixed"
    assert row[2].sub == "[0.291, 0.654]"
    assert not any(MARK_OUTSIDE in c.mark for r in t.rows if r is not row for c in r)  # only that number
    assert t.mark_notes == [MARK_NOTES[MARK_OUTSIDE]]
    html, md = _pages(res)
    assert re.search(r"\| (\*\*)?0\.290(\*\*)?† \[0\.291, 0\.654\]", md) and OUTSIDE_NOTE in md
    assert re.search(r'>0\.290<sup class="mark"[^>]*>†</sup><span class="ci">\[0\.291, 0\.654\]', html)
    assert OUTSIDE_NOTE in html


def test_point_outside_is_read_from_the_numbers():
    assert interval({"value": 0.29, "ci": [0.291, 0.654]}).point_outside
    assert interval({"value": 0.7, "ci": [0.291, 0.654]}).point_outside
    assert not interval({"value": 0.291, "ci": [0.291, 0.654]}).point_outside  # on the end: inside
    assert not interval({"value": 0.5, "ci": None}).point_outside  # no interval, nothing to say
    assert not interval({"value": 0.5, "ci": [0.4, 0.6], "point_outside_ci": True}).point_outside  # numbers decide
    assert interval({"value": 0.5, "ci": [0.4, 0.6]}).marks == ""


def test_headline_card_marks_a_difference_outside_its_interval():
    res = make_results()
    res["headline"][0]["difference"].update(value=0.01, ci=[0.02, 0.05])
    card = T.headline_cards(res)[0]
    assert card["marks"]["difference"] == MARK_OUTSIDE and card["mark_notes"] == [MARK_NOTES[MARK_OUTSIDE]]
    html, md = _pages(res)
    assert "+0.010† [+0.020, +0.050]" in md
    kpi = re.search(r'<div class="kpi">(.*?)</div></div></div>', html, re.S)
    assert kpi is not None and ">+0.010<sup" in html and OUTSIDE_NOTE in html


# ---------------------------------------------------------------------------------------------
# 2. seeds outside the interval of their mean


def test_seeds_outside_the_mean_interval_are_marked_and_the_method_says_what_it_covers():
    res = make_results()
    r50 = next(r for r in res["exp3"] if r["fs"] == 50)
    r50["finetuned"].update(  # the smoke study's 50 Hz cell
        value=0.3333333333333333,
        ci=[0.25, 0.5],
        sd=0.4714045207910317,
        values=[0.0, 0.6666666666666666],
        n=2,
        n_planned=2,
    )
    t = T.exp3_table(res)
    assert t is not None
    cell = _row(t, "50 Hz")[2]
    assert cell.text == "0.333" and cell.mark == MARK_SEEDS and "sd 0.471" in cell.sub
    others = [c for r in t.rows for c in r if c is not cell]
    assert not any(MARK_SEEDS in c.mark for c in others)  # seeds inside their CI: no mark
    assert t.mark_notes == [MARK_NOTES[MARK_SEEDS]]
    method = dict(T.method_items(res))
    assert "not the variation between seeds" in method["means over runs"]
    assert "the sd shown beside it does" in method["means over runs"]
    html, md = _pages(res)
    assert re.search(r"\| (\*\*)?0\.333(\*\*)?‡ \[0\.250, 0\.500\] · sd 0\.471, 2 runs", md) and SEEDS_NOTE in md
    assert re.search(r'>0\.333<sup class="mark"[^>]*>‡</sup>', html) and SEEDS_NOTE in html
    assert "not the variation between seeds" in html and "not the variation between seeds" in md


def test_one_seed_outside_is_enough_and_a_single_run_is_never_marked():
    assert interval({"value": 0.5, "ci": [0.45, 0.55], "values": [0.5, 0.56]}).runs_outside == 1
    assert interval({"value": 0.5, "ci": [0.45, 0.55], "values": [0.46, 0.54]}).runs_outside == 0
    assert interval({"value": 0.5, "ci": [0.45, 0.55], "values": [0.7]}).runs_outside == 0


# ---------------------------------------------------------------------------------------------
# 3. per-label differences on a handful of positives


def test_per_label_difference_on_few_positives_is_marked_not_highlighted_nor_counted():
    res = make_results()
    pcs = res["headline"][0]["per_class"]
    lafb = next(p for p in pcs if p["label"] == "LAFB")
    lafb.update(  # the smoke study's: 1 positive among 3 test records
        n_pos=1,
        finetuned=0.25,
        standalone=1.0,
        status="ok",
        difference={"value": -0.75, "ci": [-1.0, -0.5], "p": 0.007, "ties_at_zero": 0.0},
    )
    t = T.per_class_tables(res)[0][1]
    row = _row(t, "LAFB")
    assert row[1].text == "1" and MARK_FEW_POSITIVES in row[1].mark
    assert MARK_FEW_POSITIVES in row[4].mark and "p = 0.007" in row[4].sub
    assert not any(k in c.kind.split() for c in row for k in ("better", "good", "bad"))
    # the caption counts only labels with enough positives, and says how many it left out and why
    enough = [p for p in pcs if p.get("difference") and p["n_pos"] >= MIN_LABEL_POSITIVES]
    few = [p for p in pcs if p.get("difference") and p["n_pos"] < MIN_LABEL_POSITIVES]
    sa_better = sum(1 for p in enough if p["difference"]["ci"][1] < 0)
    ft_better = sum(1 for p in enough if p["difference"]["ci"][0] > 0)
    n = lambda k: f"{k} label" if k == 1 else f"{k} labels"  # noqa: E731
    assert f"fine-tuned better on {n(ft_better)}, standalone better on {n(sa_better)}" in t.caption
    assert f"left out of these counts: {n(len(few))} with a paired difference but fewer than 5 positive" in t.caption
    assert MARK_NOTES[MARK_FEW_POSITIVES] in t.mark_notes
    html, md = _pages(res)
    assert "| LAFB | 1§ |" in md and "-0.750§ [-1.000, -0.500] · p = 0.007" in md
    assert "**-0.750" not in md
    per = re.search(r'id="per-class">(.*?)</section>', html, re.S)
    assert per is not None
    lafb_row = next(r for r in re.findall(r"<tr>(.*?)</tr>", per.group(1), re.S) if ">LAFB<" in r)
    classes = " ".join(re.findall(r'<td class="([^"]*)"', lafb_row)).split()
    assert not {"better", "good", "bad"} & set(classes) and ">§</sup>" in lafb_row


def test_labels_with_enough_positives_are_still_highlighted_and_counted():
    res = make_results()
    pcs = res["headline"][0]["per_class"]
    top = pcs[0]
    top.update(n_pos=MIN_LABEL_POSITIVES, difference={"value": 0.1, "ci": [0.05, 0.15], "p": 0.001})
    row = _row(T.per_class_tables(res)[0][1], top["label"])
    assert "better" in row[2].kind and "good" in row[4].kind and not row[1].mark and not row[4].mark


# ---------------------------------------------------------------------------------------------
# 4. test records over repeats of different sizes


def test_record_count_over_test_sets_of_different_sizes_agrees_with_the_warning():
    assert records_text(interval({"n_test": 1034, "n_test_min": 1034})) == "1,034 test records"
    assert records_text(interval({"n_test": 28, "n_test_min": 27, "n_test_max": 28})) == "27–28 test records"
    # only the smallest and the (rounded) mean recorded: the mean is no upper bound, so not a range
    assert records_text(interval({"n_test": 28, "n_test_min": 27})) == "at least 27 test records, mean 28"
    res = make_results()
    for r in res["exp1"]["rest"]:
        if r["share"] == 10:
            r.update(n_test=28, n_test_min=27)
    t = T.exp1_table(res)
    assert t is not None
    cell = _row(t, "the rest of the pool", "10 %")[2]
    assert cell.scope.startswith("at least 27 test records, mean 28") and cell.warn == "⚠ only 27 test records (< 30)"
    md = render_markdown(res, {}, {})
    assert "(28 test records" not in md and "(at least 27 test records, mean 28 · " in md


def test_a_difference_outside_its_own_interval_names_no_winner():
    """† on a paired difference: its interval describes other numbers than the one it surrounds, so
    it neither colours a winner nor gives the headline a verdict (review of the marks)."""
    from ecg_transfer.report.data import interval

    clear = interval({"value": 0.05, "ci": [0.02, 0.08]})
    outside = interval({"value": 0.01, "ci": [0.02, 0.08]})
    assert clear.above_zero and clear.excludes_zero
    assert not outside.above_zero and not outside.excludes_zero and "†" in outside.marks
    assert not interval({"value": -0.01, "ci": [-0.08, -0.02]}).below_zero


def test_a_headline_difference_outside_its_interval_gets_no_verdict():
    from ecg_transfer.report.tables import headline_cards

    res = make_results()
    res["headline"][0]["difference"].update(value=0.30, ci=[0.01, 0.20])
    card = headline_cards(res)[0]
    assert card["verdict"].startswith("no verdict: the difference lies outside its own interval")
    assert card["tone"] == "neutral"
