"""The report speaks of the study's own target: its name (``[target] name``) in every caption, axis and
header, what a data share is a share of, and how many records each pre-training strategy read.

Users run the study on their own CinC-format set; a report that says "G12EC" about a set named
"Leipzig", or "share of G12EC" about a share of the folds outside validation, would put the wrong
words beside numbers that go into papers. The original study's G12EC numbers keep their name.
"""

from __future__ import annotations

import copy
import html as html_lib

import pytest
from matplotlib.text import Text
import test_report
from test_report import _text, _write, make_results

from ecg_transfer.report import write_report
from ecg_transfer.report import tables as T
from ecg_transfer.report.data import ORIGINAL_FLAWS, missing_word
from ecg_transfer.study.results import REFERENCE, original_reference

#: The passages that mean the original study's G12EC records, whatever this study's target.
ORIGINAL_G12EC = (
    *(f for f in ORIGINAL_FLAWS if "G12EC" in f),
    "the original study (its 100 Hz G12EC records were mis-ordered)",
    "The original's 100 Hz G12EC result (≈ 0.49) came from mis-ordered records.",
)


def _leipzig(folds: bool = True) -> dict:
    res = make_results()
    res["study"]["target"]["name"] = "Leipzig"
    res["reference"] = original_reference(res["study"]["target"])  # as collect_results writes it
    if folds:
        res["study"]["target"].update(n_folds=10, train_folds=list(range(1, 9)), val_folds=[9], test_folds=[10])
    return res


#: the report's figures as matplotlib figures, not PNG bytes (test_report's fixture)
kept_figures = test_report.kept_figures


def _texts(fig) -> list[str]:
    """Every text of a figure: titles, axis labels, tick labels, legends, annotations."""
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


@pytest.mark.usefixtures("undrawn_figures")
def test_the_page_and_the_markdown_name_the_target_as_the_spec_does(tmp_path):
    paths = write_report(_write(tmp_path, _leipzig()))
    text = html_lib.unescape(_text(paths["html"].read_text()))
    md = paths["markdown"].read_text()
    for page in (text, md):
        rest = page
        for passage in ORIGINAL_G12EC:
            rest = rest.replace(passage, "")
        assert "G12EC" not in rest, rest[max(0, rest.find("G12EC") - 200) : rest.find("G12EC") + 50]
    # the original study's G12EC numbers, and what was wrong with them, are not shown beside another set
    assert "RBBB (542 records) was not merged" not in text and "original study" not in md
    for said in (
        "Macro AUC on the Leipzig test split",  # headline table
        "Leipzig fine-tuned AUC",  # experiment 2's header
        "fine-tuned (Leipzig test)",  # experiments 3 and 5
        "Leipzig macro AUC",  # experiment 6
        "share of the Leipzig pool",
    ):
        assert said in text and said in md, said
    assert "1 · Leipzig share" in text and "Leipzig resampled polyphase" in text  # navigation, experiment 3's lead
    assert "## Experiment 1: share of the Leipzig data for training" in md


def test_every_figure_and_caption_names_the_target(kept_figures):
    figs = kept_figures.make_figures(_leipzig())
    for name, f in figs.items():
        assert f.error is None and f.png is not None, name
        assert "G12EC" not in f.caption, name
        assert not [t for t in _texts(f.png) if "G12EC" in t], name
    said = {name: "\n".join(_texts(f.png)) for name, f in figs.items()}
    assert "macro AUC on the Leipzig test split (95 % CI)" in said["headline"]
    assert "Leipzig after fine-tuning" in said["exp2"] and "fine-tuned (Leipzig test)" in said["exp2"]
    assert "standalone (same Leipzig split)" in said["exp2"]
    assert "Leipzig test 1,034" in said["exp3"] and "fine-tuned (Leipzig test)" in said["exp3"]
    assert "standalone (Leipzig test)" in said["exp5"]
    for p in ("seed18", "cinc2020"):
        assert "AUC on the Leipzig test split" in said[f"per_class_{p}"]
    assert "fine-tuned on a share of the Leipzig pool" in figs["exp2"].caption


def test_the_target_name_falls_back_to_its_dataset_then_to_target():
    res = make_results()
    del res["study"]["target"]["name"]
    res["study"]["target"]["dataset"] = "g12ec"
    assert T.headline_table(res).caption.startswith("Macro AUC on the G12EC test split")
    res["study"]["target"]["dataset"] = "cinc"  # a CinC folder without a name: not called G12EC
    assert T.headline_table(res).caption.startswith("Macro AUC on the target test split")


def _xlabels(fig) -> dict[str, str]:
    return {ax.get_title(loc="left"): ax.get_xlabel() for ax in fig.axes if ax.get_title(loc="left")}


def test_each_share_says_what_it_is_a_share_of(kept_figures):
    """Test on the rest (experiments 1, 2, 6) takes a share of the training + test folds; the fixed
    test fold a share of the training folds: neither is a share of the whole target set."""
    res = _leipzig()
    assert _xlabels(kept_figures.exp1_figure(res)) == {
        "Test on the rest of the Leipzig pool": "share of the Leipzig pool (training + test folds)",
        "Fixed test fold": "share of the Leipzig training folds",
    }
    assert set(_xlabels(kept_figures.exp6_figure(res)).values()) == {
        "share of the Leipzig pool (training + test folds)"
    }
    # the captions say what the pool is and what its share is of the whole set
    whole = "the training and test folds, 9 of 10 folds; 10 % of the pool is about 9 % of all Leipzig records"
    e1 = T.exp1_table(res)
    for caption in (e1.caption, kept_figures.captions(res)["exp1"]):
        assert f"a share of the Leipzig pool ({whole}) trains" in caption
        assert "Fixed test fold: a share of the Leipzig training folds trains" in caption
    assert e1.headers[1] == "share used for training"
    assert {(r[0].text, r[1].sub) for r in e1.rows} == {
        ("the rest of the pool", "of the pool"),
        ("fixed test fold", "of the training folds"),
    }
    assert f"fine-tuned on 10 % of the Leipzig pool ({whole})" in T.exp2_table(res).caption
    e6 = T.exp6_table(res)
    assert "share of the Leipzig pool" in e6.headers and whole in e6.caption
    assert whole in kept_figures.captions(res)["exp6"]
    # the fold counts are the study's own: 6 training folds leave a pool of 7
    res["study"]["target"]["train_folds"] = list(range(1, 7))
    assert "7 of 10 folds; 10 % of the pool is about 7 % of all Leipzig records" in T.exp1_table(res).caption
    # a results.json without the folds says what the pool is, without counts
    old = _leipzig(folds=False)
    assert "a share of the Leipzig pool (the training and test folds) trains" in T.exp1_table(old).caption


def _records(res: dict, counts: dict[str, int | None]) -> dict:
    res = copy.deepcopy(res)
    for r in res["exp6"]:
        if r["strategy"] in counts:
            r["n_pretrain_records"] = counts[r["strategy"]]
    return res


def _by_strategy(t: T.Table) -> dict[str, list[T.Cell]]:
    return {r[1].text: r for r in t.rows}


def test_experiment_6_says_how_many_records_each_strategy_pretrained_on(kept_figures):
    """Self-supervised pre-training reads every record of PTB-XL's training folds, a supervised one
    [source] train_fraction of them: the table gives each strategy's records and the caption says
    when they differ (the rows are then not like-for-like)."""
    res = make_results()
    res["study"]["source"]["train_fraction"] = 0.1
    counts = {"self-supervised": 17418, "supervised:diagnostic": 1742, "supervised:rhythm": 1520}
    t = T.exp6_table(_records(res, counts))
    col = t.headers.index("pre-training records")
    auc = t.headers.index("pre-training (PTB-XL test, its task)")
    rows = _by_strategy(t)
    assert rows["self-supervised"][col].text == "17,418"
    assert rows["supervised (diagnostic)"][col].text == "1,742"
    assert rows["supervised (rhythm)"][col].text == "1,520"
    none = rows["none (random weights)"][col]
    assert (none.text, none.sub) == ("—", "no pre-training")
    ssl = rows["self-supervised"][auc]
    assert ssl.text == "n/a" and "no labels" in ssl.sub  # not a bare dash
    assert "supervised: 10 % of those with a label of its task" in t.caption
    differ = (
        "The strategies pre-trained on different numbers of records (supervised (diagnostic) 1,742; "
        "supervised (rhythm) 1,520; self-supervised 17,418)"
    )
    assert differ in t.caption
    assert differ in kept_figures.captions(_records(res, counts))["exp6"]
    # the same records for every strategy: nothing to warn about
    same = T.exp6_table(_records(res, dict.fromkeys(counts, 17418)))
    assert "different numbers" not in same.caption and _by_strategy(same)["self-supervised"][col].text == "17,418"
    # a pre-training not done yet, and a results.json written before the count was
    pending = _by_strategy(T.exp6_table(_records(res, {**counts, "self-supervised": None})))
    assert pending["self-supervised"][col].text == missing_word(res) == "pending or failed"
    old = T.exp6_table(res)
    assert _by_strategy(old)["self-supervised"][col].text == "not recorded" and "Not recorded" in old.caption


def test_the_original_study_s_numbers_stand_beside_g12ec_only(tmp_path, kept_figures):
    """The original's numbers are its G12EC results: results.json carries them for a study whose
    target is G12EC (by dataset or name) and not for a user's own set, whose report then draws no
    hollow diamonds, names no "original study" and shows no box about its protocol."""
    assert original_reference({"dataset": "cinc", "name": "G12EC"}) is REFERENCE
    assert original_reference({"dataset": "g12ec", "name": "Georgia 2020"}) is REFERENCE
    assert original_reference({"dataset": "cinc", "name": "georgia"}) is REFERENCE
    assert original_reference({"dataset": "cinc", "name": "Leipzig"}) is None
    own = _leipzig()
    for f in kept_figures.make_figures(own).values():
        assert "original" not in f.caption and not [t for t in _texts(f.png) if "original study" in t]
    g12ec = make_results()
    assert g12ec["reference"]
    captions = [f.caption for f in kept_figures.make_figures(g12ec).values()]
    assert sum("the original study" in c for c in captions) >= 4


@pytest.mark.usefixtures("undrawn_figures")
def test_the_page_shows_the_original_protocol_s_errors_beside_g12ec_only(tmp_path):
    own = write_report(_write(tmp_path, _leipzig(), "own"))
    text = html_lib.unescape(_text(own["html"].read_text()))
    assert "original study" not in text and "original study" not in own["markdown"].read_text()
    g12ec = html_lib.unescape(_text(write_report(_write(tmp_path, make_results(), "g12ec"))["html"].read_text()))
    assert "G12EC RBBB (542 records) was not merged into CRBBB" in g12ec
    assert "The original's 100 Hz G12EC result (≈ 0.49)" in g12ec
