"""What can mislead a reader of ``MODEL_CARD.md`` and of the ``evaluate`` console is said beside the
number: an interval that rests on few test positives or many undefined resamples, intervals from
plain resampling, the challenge metric computed over a few of its classes; and the card keeps the
run's label order after ``evaluate``.

The run is the reviewer's G12EC case: its 5 test records (``STach`` has 1 positive) and 6
validation records, copied from a fine-tuned run on 74 real G12EC records.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ecg_transfer.cli import main
from ecg_transfer.evaluation.bootstrap import format_interval
from ecg_transfer.training.predict import save_predictions

G12EC_LABELS = ["NSR", "SB", "STach", "NSSTTA"]  # the run's order (metrics.json sorts its per-class keys)
TEST = """record_id,true:NSR,true:SB,true:STach,true:NSSTTA,prob:NSR,prob:SB,prob:STach,prob:NSSTTA
E00002,1,0,0,0,0.8004352,0.39552867,0.16788664,0.30800918
E00009,0,0,1,1,0.4939767,0.16209441,0.7257687,0.3003886
E07507,0,0,0,1,0.5337053,0.8261988,0.36562485,0.32487047
E07512,0,1,0,0,0.6809776,0.7222611,0.14626528,0.6102287
E09314,1,0,0,0,0.5596723,0.7320941,0.5590442,0.60846156
"""
VAL = """record_id,true:NSR,true:SB,true:STach,true:NSSTTA,prob:NSR,prob:SB,prob:STach,prob:NSSTTA
E00001,1,0,0,0,0.7791448,0.3772398,0.18188824,0.41457093
E00007,0,0,0,1,0.59010947,0.27729803,0.3296315,0.44402438
E07501,0,0,1,0,0.42743915,0.8888657,0.9976922,0.43824065
E07522,0,1,0,0,0.7048361,0.40952978,0.26838428,0.40756512
E07542,1,0,0,0,0.49990788,0.98621386,0.9872362,0.32379842
E07547,0,0,1,1,0.0004211311,0.104486965,0.9999957,0.028644217
"""


def _g12ec_run(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "predictions_test.csv").write_text(TEST)
    (path / "predictions_val.csv").write_text(VAL)
    (path / "config.json").write_text('{"seed": 0, "task": {"dataset": "cinc", "labels": "dx"}}')
    return path


@pytest.fixture(scope="module")
def g12ec(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The reviewer's run, evaluated as the guide says (1000 resamples)."""
    from ecg_transfer.evaluation.runs import evaluate_run

    run = _g12ec_run(tmp_path_factory.mktemp("g12ec") / "ft")
    return run, evaluate_run(run, n_resamples=1000, plots=False)


@pytest.fixture(scope="module")
def sound(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """300 test records, every label with dozens of positives: nothing to flag."""
    from ecg_transfer.evaluation.runs import evaluate_run

    run = tmp_path_factory.mktemp("sound") / "run"
    run.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("val", 100), ("test", 300)):
        y = (rng.random((n, 3)) < 0.3).astype(np.uint8)
        p = (1 / (1 + np.exp(-(rng.normal(size=y.shape) + 1.5 * y)))).astype(np.float32)
        save_predictions(run / f"predictions_{split}.csv", [f"{split}{i}" for i in range(n)], ["A", "B", "C"], y, p)
    (run / "config.json").write_text('{"seed": 0, "task": {"labels": "form"}}')
    return run, evaluate_run(run, n_resamples=200, plots=False)


def _card(run: Path) -> str:
    from ecg_transfer.inference.modelcard import model_card_text

    return model_card_text(run, n_resamples=1000)


def test_the_reviewer_s_case_is_what_the_fixture_holds(g12ec: tuple[Path, dict]) -> None:
    from ecg_transfer.evaluation.cli import FEW_TEST_POSITIVES

    _, m = g12ec
    st = m["per_class"]["STach"]
    assert st["n_pos"] == 1 and st["auc"]["ci"] == [1.0, 1.0] and st["auc"]["n_undefined"] == 340
    assert m["settings"]["resampling"]["rule"] == "plain-fallback" and not m["challenge"]["complete"]
    assert FEW_TEST_POSITIVES == 5


def test_card_says_beside_the_interval_that_it_rests_on_one_positive(g12ec: tuple[Path, dict]) -> None:
    run, m = g12ec
    card = _card(run)
    why = "1 test positive; 4 test negatives; 340 of 1000 resamples undefined; interval of zero width"
    assert f"| `STach` | 1 | 1.000 [1.000, 1.000] ⚠ {why} | 1.000 [1.000, 1.000] ⚠ {why} |" in card
    nsr = m["per_class"]["NSR"]
    assert (
        f"| `NSR` | 2 | 0.833 [0.250, 1.000] ⚠ 2 test positives; 3 test negatives; {nsr['auc']['n_undefined']} of"
        in card
    )
    assert "⚠ beside an interval says why it is fragile: fewer than 5 test positives or negatives" in card


def test_card_says_the_intervals_come_from_plain_resampling(g12ec: tuple[Path, dict]) -> None:
    run, m = g12ec
    card = _card(run)
    line = (
        "⚠ intervals from plain resampling of the test records, not the rare-class redraw rule: "
        + m["settings"]["resampling"]["note"]
    )
    assert f"(seed 0).\n\n{line}\n\n| metric |" in card


def test_card_shows_the_challenge_note_beside_the_metric(g12ec: tuple[Path, dict]) -> None:
    run, m = g12ec
    card = _card(run)
    note = m["challenge"]["note"]
    assert note.startswith("not the official challenge metric: computed over the 3 of the 24 scored classes")
    assert f"| challenge metric | {format_interval(m['headline']['challenge'])} ⚠ {note} |" in card


def test_card_keeps_the_run_label_order_after_evaluate(g12ec: tuple[Path, dict]) -> None:
    run, _ = g12ec
    card = _card(run)
    rows = [line.split(" | ")[0].strip("| `") for line in card.splitlines() if line.startswith("| `")]
    assert rows == G12EC_LABELS
    assert "- Labels, in output order: `NSR`, `SB`, `STach`, `NSSTTA`." in card


def test_card_without_metrics_json_flags_the_same_label(g12ec: tuple[Path, dict], tmp_path: Path) -> None:
    """The card's own quick bootstrap (no ``evaluate`` yet) says the same beside its AUCs."""
    run = tmp_path / "quick"
    shutil.copytree(g12ec[0], run, ignore=shutil.ignore_patterns("evaluation"))
    card = _card(run)
    row = next(line for line in card.splitlines() if line.startswith("| `STach` |"))
    assert "1.000 [1.000, 1.000] ⚠ 1 test positive; 4 test negatives;" in row and "interval of zero width" in row
    assert "⚠ intervals from plain resampling of the test records" in card


def test_a_sound_evaluation_carries_no_mark(sound: tuple[Path, dict]) -> None:
    from ecg_transfer.evaluation.cli import interval_caveats

    run, m = sound
    card = _card(run)
    assert "⚠" not in card
    for name, e in m["per_class"].items():
        assert interval_caveats(e["auc"], 200, 0.95, e["n_pos"], e["n_neg"]) == []
        assert f"| `{name}` | {e['n_pos']} | {format_interval(e['auc'])} | {format_interval(e['auprc'])} |" in card


def test_evaluate_console_says_it_beside_the_number(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = _g12ec_run(tmp_path / "ft")
    assert main(["evaluate", str(run), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "  ⚠ intervals from plain resampling of the test records, not the rare-class redraw rule: the redraw" in out
    assert "labels whose intervals are fragile (fewer than 5 test positives or negatives" in out
    lines = [line.split() for line in out.splitlines() if line.startswith("    STach ")]
    assert [" ".join(line) for line in lines] == [
        f"STach {metric} 1.000 [1.000, 1.000] ⚠ 1 test positive; 4 test negatives; 340 of 1000 resamples "
        "undefined; interval of zero width"
        for metric in ("AUC", "AUPRC")
    ]
    order = [line.split()[0] for line in out.splitlines() if line.startswith("    ") and " AUC " in line]
    assert order == G12EC_LABELS  # the run's label order


def test_evaluate_console_flags_nothing_on_a_sound_run(sound: tuple[Path, dict], capsys) -> None:
    run, _ = sound
    assert main(["evaluate", str(run), "--no-plots", "--resamples", "200", "--out", str(run.parent / "o")]) == 0
    assert "⚠" not in capsys.readouterr().out


def test_the_caveats_one_by_one() -> None:
    from ecg_transfer.evaluation.cli import interval_caveats, with_caveats

    sound = {"value": 0.8, "ci": [0.7, 0.9], "n_undefined": 50}
    assert interval_caveats(sound, 1000, 0.95, 5, 5) == []  # 5 % undefined: what the tails hold
    assert interval_caveats({**sound, "n_undefined": 51}, 1000, 0.95) == ["51 of 1000 resamples undefined"]
    assert interval_caveats(sound, 1000, 0.95, 4, 1) == ["4 test positives", "1 test negative"]
    assert interval_caveats({"value": 1.0, "ci": [1.0, 1.0], "n_undefined": 0}, 1000) == ["interval of zero width"]
    outside = {"value": 0.29, "ci": [0.291, 0.654], "n_undefined": 0, "point_outside_ci": True}
    assert interval_caveats(outside, 1000) == ["value outside its interval"]
    assert interval_caveats({"value": None, "ci": [None, None], "n_undefined": 1000}, 1000, 0.95, 1) == []
    assert with_caveats("0.800 [0.700, 0.900]", []) == "0.800 [0.700, 0.900]"
    assert with_caveats("1.000", ["a", "b"]) == "1.000 ⚠ a; b"


def test_the_card_explains_the_mark_when_only_a_macro_value_carries_it():
    """The ⚠ key was shown only when a per-label cell carried the mark: a flagged macro value alone
    left the reader without it."""
    from ecg_transfer.inference.modelcard import _flagged

    sound = [{"auc": "0.900 [0.850, 0.950]", "auprc": "0.700 [0.600, 0.800]"}]
    assert not _flagged(sound, "0.880 [0.860, 0.900]")
    assert _flagged(sound, "0.880 [0.890, 0.950] ⚠ value outside its interval")
