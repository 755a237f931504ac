"""Each arm's training length chosen on validation (``study.lengths``): the planner trains every
target run at each multiple of its arm's epochs, the results take per comparison and arm the length
with the best validation macro AUC -- never the test's -- and the report says what was chosen, when
the longest length won (the arm may still have been learning) and when one fixed length was used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecg_transfer.errors import ConfigError
from ecg_transfer.report.data import FIXED_LR_WARNING, length_text, length_warning, longest_note
from ecg_transfer.report.tables import exp1_table, exp6_table, headline_cards, method_items
from ecg_transfer.settings.run import RunConfig, preset_stages
from ecg_transfer.study.gallery import _headline_run, gallery_run
from ecg_transfer.study.lengths import LENGTH_KEY, choose, scale_length
from ecg_transfer.study.plan import plan_study
from ecg_transfer.study.results import collect_results
from ecg_transfer.study.runner import StudyRunner
from ecg_transfer.study.spec import load_spec, spec_from_dict
from ecg_transfer.study.store import RunStore
from study_fakes import fake_executor

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "studies" / "ptbxl_to_g12ec.toml"


def _minimal(**study) -> dict:
    return {"source": {"root": "data/ptbxl"}, "target": {"root": "data/g12ec"}, "study": study}


def _stages(config: dict) -> list[tuple[int, object]]:
    rc = RunConfig.from_dict(config)
    return [(s.epochs, s.lr) for s in preset_stages(rc.finetune, rc.epochs or 0, rc.schedule.max_lr)]


# ----- the plan ------------------------------------------------------------------------------


def test_every_target_run_is_planned_at_each_length_and_pretraining_once():
    runs = plan_study(load_spec(SPEC))
    by_name = {u["name"]: r for r in runs for u in r.uses}
    base = "exp1-rest/share10/repeat0/seed18"
    alone = [by_name[f"{base}/standalone/s0{x}"] for x in ("", "/x2", "/x4")]
    assert [r.config["epochs"] for r in alone] == [40, 80, 160]
    fine = [by_name[f"{base}/finetuned/s0{x}"] for x in ("", "/x2", "/x4")]
    one, two, four = (_stages(r.config) for r in fine)
    assert [e for e, _ in one] == [10, 10, 10, 10] and [e for e, _ in four] == [40, 40, 40, 40]
    assert [lr for _, lr in one] == [lr for _, lr in two] == [lr for _, lr in four]  # the schedule, stretched
    assert {r.depends for r in fine} == {fine[0].depends} and fine[0].depends is not None
    assert [u[LENGTH_KEY] for r in alone for u in r.uses if u["name"].startswith(base)] == [1.0, 2.0, 4.0]
    # every target comparison three times, each pre-training once
    pre = [r for r in runs if r.kind == "pretrain"]
    target = [r for r in runs if r.kind != "pretrain"]
    assert len(target) == 3 * len(plan_study(load_spec_with(SPEC, lengths=[1]))) - 3 * len(pre)
    assert all(LENGTH_KEY not in u for r in pre for u in r.uses)


def load_spec_with(path: Path, **study):
    import tomllib

    raw = tomllib.loads(path.read_text())
    raw["study"].update(study)
    return spec_from_dict(raw, path=path)


def test_length_one_keeps_the_key_a_run_had_without_lengths():
    """Studies planned with one length keep every finished run when lengths are added."""
    fixed = {r.name: r.key for r in plan_study(load_spec_with(SPEC, lengths=[1]))}
    grown = {r.name: r.key for r in plan_study(load_spec(SPEC))}
    assert fixed.items() <= grown.items()


@pytest.mark.parametrize(
    "lengths, error",
    [([1, 1], "must not repeat"), ([], "must not be empty"), ([0], "must be > 0"), ([-2, 1], "must be > 0")],
)
def test_lengths_are_validated(lengths, error):
    with pytest.raises(ConfigError, match=error):
        spec_from_dict(_minimal(lengths=lengths))


def test_lengths_are_kept_in_increasing_order():
    assert spec_from_dict(_minimal(lengths=[4, 1, 2])).data["study"]["lengths"] == [1.0, 2.0, 4.0]


@pytest.mark.parametrize(
    "finetune, expect",
    [
        ({"policy": "all", "epochs": 7}, lambda c: c["finetune"]["epochs"] == 21 and "epochs" not in c),
        ({"policy": "linear-probe"}, lambda c: c["epochs"] == 3 * 11 and "epochs" not in c["finetune"]),
        ({"policy": "head-then-all", "lr": 0.02}, lambda c: [s["epochs"] for s in c["finetune"]["stages"]] == [90, 90]),
        ({"policy": "none"}, lambda c: c["epochs"] == 3 * 11),
    ],
)
def test_scaling_stretches_what_decides_each_policys_schedule(finetune, expect):
    config = {"model": "fcn_wang", "finetune": finetune}
    if finetune["policy"] in ("none", "linear-probe"):
        config["epochs"] = 11
    if finetune["policy"] != "none":
        config["finetune"] = {**finetune, "pretrained_run": "x"}
    scaled = scale_length(config, 3)
    assert expect(scaled)
    RunConfig.from_dict(scaled)  # still a valid run config
    if finetune["policy"] == "head-then-all":  # the preset's learning rates, made explicit
        assert [s.lr for s in preset_stages(RunConfig.from_dict(scaled).finetune, 11, 1e-2)] == [
            s.lr for s in preset_stages(RunConfig.from_dict(config).finetune, 11, 1e-2)
        ]
    assert scale_length(config, 1) is config
    resolved = RunConfig.from_dict(config).to_dict()  # a resolved config (epochs filled in) scales alike
    assert RunConfig.from_dict(scale_length(resolved, 3)).epochs == RunConfig.from_dict(scaled).epochs


# ----- the choice ----------------------------------------------------------------------------


def test_the_best_validation_wins_a_tie_keeps_the_shorter_and_nothing_is_chosen_early():
    scores = {"a": 0.80, "b": 0.85, "c": 0.85}
    c = choose([("c", 4), ("a", 1), ("b", 2)], lambda k: True, scores.get)
    assert (c.chosen, c.chosen_length, c.at_cap, c.keys) == ("b", 2.0, False, ("a", "b", "c"))
    assert choose([("a", 1), ("b", 2)], lambda k: True, {"a": 0.7, "b": 0.9}.get).at_cap
    assert choose([("a", 1), ("b", 2)], lambda k: True, {"a": None, "b": None}.get).chosen == "a"
    unscored = choose([("a", 1), ("b", 2)], lambda k: True, {"a": None, "b": 0.6}.get)
    assert unscored.chosen == "b" and not unscored.at_cap  # nothing shorter to have beaten
    waiting = choose([("a", 1), ("b", 2)], lambda k: k != "b", scores.get)
    assert waiting.chosen is None and waiting.key == "b" and not waiting.at_cap and not waiting.at_floor
    assert not c.at_floor and choose([("a", 1), ("b", 2)], lambda k: True, {"a": 0.9, "b": 0.7}.get).at_floor
    assert not choose([("a", 1), ("b", 2)], lambda k: True, {"a": 0.9, "b": None}.get).at_floor
    assert not choose([("a", 1)], lambda k: True, {"a": 0.9}.get).at_floor  # nothing longer was tried
    assert not choose([("a", 1), ("b", 2)], lambda k: True, {"a": 0.5, "b": 0.5}.get).at_floor  # a tie


# ----- the results, from saved predictions ------------------------------------------------------

#: (validation quality, test quality) of each arm at each length: the standalone arm is best on
#: validation at 2x, the fine-tuned at 1x; the test says the opposite, and must not be listened to.
QUALITY = {
    ("standalone", 1.0): (0.3, 2.0),
    ("standalone", 2.0): (1.5, 0.2),
    ("finetuned", 1.0): (1.5, 0.2),
    ("finetuned", 2.0): (0.3, 2.0),
}
fake_execute = fake_executor(QUALITY)


def _spec(root: Path, lengths: list[float]):
    (root / "ptbxl").mkdir(exist_ok=True)
    (root / "g12ec").mkdir(exist_ok=True)
    return spec_from_dict(
        {
            "study": {"seeds": [0], "protocols": ["seed18"], "model": "fcn_wang", "bootstrap": 50, "lengths": lengths},
            "source": {"root": str(root / "ptbxl")},
            "target": {"root": str(root / "g12ec")},
            "experiments": {
                "target_share": {"shares": [50], "repeats": 1, "fixed_test": False},
                "source_share": {"enabled": False},
                "sampling_rate": {"enabled": False},
                "frequency": {"enabled": False},
                "calibration": {"enabled": False},
                "strategy": {"enabled": True, "strategies": ["none", "supervised:rhythm"], "shares": [50]},
            },
        }
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("lengths-study")
    spec = _spec(root, [1, 2])
    out = root / "study"
    StudyRunner(spec, out, execute=fake_execute, echo=lambda m: None, progress=False).run()
    return out, plan_study(spec)


def _keys(runs, arm: str, experiment: str, length: float) -> list[str]:
    return [
        f"runs/{r.key}"
        for r in runs
        for u in r.uses
        if u.get("arm") == arm and u["experiment"] == experiment and u.get(LENGTH_KEY) == length
    ]


def test_results_take_each_arms_length_by_validation_never_by_test(study):
    out, runs = study
    res = collect_results(out)
    row = res["headline"][0]
    assert row["runs"]["standalone"] == _keys(runs, "standalone", "headline", 2.0)
    assert row["runs"]["finetuned"] == _keys(runs, "finetuned", "headline", 1.0)
    # on the test records the chosen lengths are the worse ones: the difference is what validation chose
    assert row["finetuned"]["value"] < 0.75 and row["standalone"]["value"] < 0.75
    lengths = res["lengths"]
    assert lengths["factors"] == [1.0, 2.0] and not lengths["fixed"]
    assert lengths["arms"]["standalone"] == {
        "chosen": {"1": 0, "2": 2},
        "chosen_lr": {"1": 2},
        "at_cap": 2,
        "at_cap_by_experiment": {"headline": [1, 1], "exp1-rest": [1, 1], "exp6": [1, 1]},
        "at_floor": 0,
        "lr_at_top": 0,
        "lr_at_bottom": 0,
        "unfinished": 0,
        "comparisons": 2,
        "n_val_min": 60,
    }
    assert lengths["arms"]["finetuned"]["chosen"] == {"1": 3, "2": 0}  # headline, exp1, exp6 (rhythm)
    assert lengths["arms"]["finetuned"]["at_floor"] == 3
    head = [c for c in lengths["comparisons"] if c["experiments"] == ["headline"]]
    assert {(c["arm"], c["protocol"], c["seed"], c["val_labels_scored"]) for c in head} == {
        ("finetuned", "seed18", 0, 3),
        ("standalone", "seed18", 0, 3),
    }
    for c in lengths["comparisons"]:
        better = c["val_macro_auc"][1] > c["val_macro_auc"][0]
        assert c["chosen"] == (2.0 if better else 1.0) and c["at_cap"] == better
    exp1 = {r["arm"]: r for r in res["exp1"]["rest"]}
    assert exp1["standalone"]["n"] == exp1["standalone"]["n_planned"] == 1


def test_the_report_says_what_was_chosen_and_that_the_longest_won(study):
    out, _ = study
    res = collect_results(out)
    warn = length_warning(res, "seed18")
    assert "the arm from random weights did best at its longest training length in 1 of 1 runs" in warn
    assert "fine-tuned arm did best" not in warn and "validation records" not in warn  # 60 of them
    assert length_warning(res, "cinc2020") == FIXED_LR_WARNING  # no headline of that protocol: the rate only
    assert all(warn in c["warn"] for c in headline_cards(res))
    text = dict(method_items(res))["training length"]
    assert (
        "1×, 2×" in text
        and "the arm from random weights: 1× 0, 2× 2 (the longest 2 times: headline 1 of 1, exp1-rest 1 of 1, exp6 1 of 1"
        in text
    )
    assert "not the choice's own" in text
    assert "not one chosen on validation" in dict(method_items(res))["learning rate"]
    assert "the fine-tuned arm: 1× 3, 2× 0 (the shortest best against every longer 3 times" in text


def test_each_experiment_row_says_where_the_longest_length_won(study):
    out, _ = study
    res = collect_results(out)
    rest = next(r for r in exp1_table(res).rows if r[0].text == "the rest of the pool")
    assert rest[1].warn == "⚠ longest length best: from random weights 1 of 1"
    rows = {r[1].text: r for r in exp6_table(res).rows}
    # "none" is experiment 1's standalone run at the same share: its choice carries exp6's strategy
    assert rows["none (random weights)"][2].warn == "⚠ longest length best: from random weights 1 of 1"
    assert rows["supervised (rhythm)"][2].warn == ""  # the fine-tuned arm won at 1x
    assert longest_note(res, "exp6", 10.0, strategy="none") == ""  # no such share


def test_the_gallery_explains_the_run_the_results_chose(study):
    out, runs = study
    key = _headline_run(out)[2]
    assert key is not None and f"runs/{key.name}" == _keys(runs, "finetuned", "headline", 1.0)[0]
    plan = json.loads((out / "plan.json").read_text())["runs"]
    longer = _keys(runs, "finetuned", "headline", 2.0)[0].removeprefix("runs/")
    assert gallery_run(plan, "seed18", 0, lambda k: True, lambda k: 1.0 if k == longer else 0.5) == longer


def test_a_choice_waits_for_every_length(study, tmp_path):
    out, runs = study
    import shutil

    copy = tmp_path / "study"
    shutil.copytree(out, copy)
    unfinished = next(r for r in runs if r.kind == "standalone" and r.uses[0].get(LENGTH_KEY) == 2.0)
    RunStore(copy).run_dir(unfinished.key).joinpath("state.json").unlink()
    res = collect_results(copy)
    waiting = res["lengths"]["arms"]["standalone"]
    assert waiting["unfinished"] == 1 and waiting["chosen"]["2"] + waiting["chosen"]["1"] == 1
    name = unfinished.uses[0]["experiment"]
    if name == "headline":
        assert res["headline"][0]["standalone"]["value"] is None
    else:
        assert next(r for r in res["exp1"]["rest"] if r["arm"] == "standalone")["n"] == 0


def test_a_choice_on_few_validation_records_says_so():
    res = {
        "lengths": {
            "fixed": False,
            "comparisons": [
                {"experiments": ["headline"], "arm": "standalone", "protocol": "p", "chosen": 1.0, "n_val": 7}
            ],
        }
    }
    assert "lengths chosen on 7 validation records" in length_warning(res, "p")


def test_an_arm_from_random_weights_best_at_its_shortest_length_is_said_beside_the_difference():
    """Its best may lie shorter still (over-trained at every length tried): the difference may
    overstate pre-training. The fine-tuned arm at its shortest (which would understate it) is the
    usual case and is only counted in the method text."""
    choice = {"experiments": ["headline"], "protocol": "p", "chosen": 1.0, "n_val": 400, "at_floor": True}
    res = {"lengths": {"fixed": False, "comparisons": [{**choice, "arm": "standalone"}]}}
    assert "did best at its shortest training length in 1 of 1 runs" in length_warning(res, "p")
    assert "overstate" in length_warning(res, "p")
    res["lengths"]["comparisons"] = [{**choice, "arm": "finetuned"}]
    assert length_warning(res, "p") == ""
    res["lengths"]["comparisons"] = [{**choice, "arm": "standalone", "at_floor": False}]
    assert length_warning(res, "p") == ""


def test_validation_runs_as_often_per_schedule():
    config = {"model": "fcn_wang", "epochs": 9, "validate_every": 3, "finetune": {"policy": "none"}}
    assert scale_length(config, 3)["validate_every"] == 9 and scale_length(config, 0.5)["validate_every"] == 2


def test_one_fixed_length_is_said_beside_the_difference(tmp_path):
    spec = _spec(tmp_path, [1])
    out = tmp_path / "study"
    StudyRunner(spec, out, execute=fake_execute, echo=lambda m: None, progress=False).run()
    res = collect_results(out)
    assert res["lengths"]["fixed"] and res["lengths"]["comparisons"] == []
    assert "each arm at one fixed training length" in headline_cards(res)[0]["warn"]
    assert "head start" in (length_text(res) or "")
    del res["lengths"]  # results written before lengths were chosen: nothing claimed either way
    assert length_warning(res) == "" and length_text(res) is None


def test_a_study_planned_before_lengths_says_its_plan_grows(tmp_path):
    spec = _spec(tmp_path, [1, 2])
    out = tmp_path / "study"
    out.mkdir()
    old = spec.data
    del old["study"]["lengths"]
    (out / "study.json").write_text(json.dumps({"resolved": old}))
    said: list[str] = []
    StudyRunner(spec, out, execute=fake_execute, echo=said.append, progress=False).run()
    assert any("planned with one training length per arm" in m and "1x, 2x" in m for m in said)
    said.clear()
    StudyRunner(spec, out, execute=fake_execute, echo=said.append, progress=False).run()  # now it has them
    assert not any("one training length per arm" in m for m in said)
