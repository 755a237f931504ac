"""Each arm's peak learning rate chosen on validation with its length (``study.lr_factors``): the
planner trains every target run at each multiple of its arm's own peak rates, the results take per
comparison and arm the (length, rate) with the best validation macro AUC -- never the test's -- and
the report says what was chosen, when a rate at an end of the grid won, and when the rates were
fixed (BENCHMARKS.md, "The peak rate too": a fixed rate, like a fixed length, moved a measured gain)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from ecg_transfer.errors import ConfigError
from ecg_transfer.report.data import FIXED_LR_WARNING, length_warning, lr_text
from ecg_transfer.report.tables import RATE_NOTE, headline_cards, method_items
from ecg_transfer.settings.run import RunConfig
from ecg_transfer.study.gallery import gallery_run
from ecg_transfer.study.lengths import LENGTH_KEY, LR_KEY, choose, run_val_macro_auc, scale_length, scale_lr, slot
from ecg_transfer.study.plan import plan_study, select_shard
from ecg_transfer.study.results import collect_results
from ecg_transfer.study.runner import StudyRunner
from ecg_transfer.study.spec import load_spec, spec_from_dict
from ecg_transfer.study.store import RunStore
from study_fakes import fake_executor

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "studies" / "ptbxl_to_g12ec.toml"


def _spec_with(**study):
    raw = tomllib.loads(SPEC.read_text())
    raw["study"].update(study)
    return spec_from_dict(raw, path=SPEC)


def _stage_lrs(config: dict) -> list[list[float]]:
    """Each stage's learning rate(s), as a flat list (one rate, or the two ends of a range)."""
    return [np.ravel(s.lr).tolist() for s in RunConfig.from_dict(config).stages()]


# ----- the plan ------------------------------------------------------------------------------


def test_every_target_run_is_planned_at_each_length_and_rate():
    runs = plan_study(_spec_with(lengths=[1, 2], lr_factors=[1, 3]))
    by_name = {u["name"]: r for r in runs for u in r.uses}
    base = "exp1-rest/share10/repeat0/seed18"
    alone = {x: by_name[f"{base}/standalone/s0{x}"] for x in ("", "/lr3", "/x2", "/x2/lr3")}
    assert {x: r.config["schedule"]["max_lr"] for x, r in alone.items()} == pytest.approx(
        {"": 0.01, "/lr3": 0.03, "/x2": 0.01, "/x2/lr3": 0.03}
    )
    assert {x: r.config["epochs"] for x, r in alone.items()} == {"": 40, "/lr3": 40, "/x2": 80, "/x2/lr3": 80}
    fine = {x: by_name[f"{base}/finetuned/s0{x}"] for x in ("", "/lr3", "/x2/lr3")}
    one, three, long_three = (_stage_lrs(r.config) for r in fine.values())
    assert one == [[0.01], [0.01], [0.001], [1e-6, 1e-4]]  # the original's four stages
    assert three == [
        [0.03],
        [0.03],
        [0.003],
        [3e-6, 3e-4],
    ]  # both ends: the groups' ratio kept; no 0.00030000000000000003
    assert long_three == three and {r.depends for r in fine.values()} == {fine[""].depends}
    uses = [u for r in alone.values() for u in r.uses if u["name"].startswith(base)]
    assert sorted((u[LENGTH_KEY], u[LR_KEY]) for u in uses) == [(1, 1), (1, 3), (2, 1), (2, 3)]
    pre = [r for r in runs if r.kind == "pretrain"]
    assert all(LR_KEY not in u for r in pre for u in r.uses)  # pre-training keeps its own recipe
    n_target = len(plan_study(_spec_with(lengths=[1, 2], lr_factors=[1]))) - len(pre)
    assert len(runs) - len(pre) == 2 * n_target


def test_rate_one_keeps_every_key_a_run_had_before_rates():
    before = {r.name: r.key for r in plan_study(_spec_with(lr_factors=[1]))}
    grown = {r.name: r.key for r in plan_study(load_spec(SPEC))}  # the full spec chooses among [1, 3]
    assert before.items() <= grown.items() and len(grown) > len(before)


def test_a_shard_holds_every_candidate_of_its_comparisons():
    """A comparison is chosen as soon as its shard is done: its lengths and rates stay together."""
    runs = plan_study(_spec_with(lengths=[1, 2], lr_factors=[1, 3]))
    shards = [select_shard(runs, (i, 3)) for i in (1, 2, 3)]
    assert sum(len(s) for s in shards) == len(runs)
    where: dict[str, set[int]] = {}
    for i, shard in enumerate(shards):
        for r in shard:
            if r.kind != "pretrain":
                where.setdefault(slot(r.key, r.uses[0]), set()).add(i)
    assert all(len(shard_ids) == 1 for shard_ids in where.values())
    sizes = {len([r for r in runs if r.kind != "pretrain" and slot(r.key, r.uses[0]) == name]) for name in where}
    assert 4 in sizes  # two lengths x two rates in one comparison


@pytest.mark.parametrize(
    "lr_factors, error",
    [([1, 1], "must not repeat"), ([], "must not be empty"), ([0], "must be > 0"), ([-3, 1], "must be > 0")],
)
def test_rate_factors_are_validated(lr_factors, error):
    raw = {"source": {"root": "p"}, "target": {"root": "g"}, "study": {"lr_factors": lr_factors}}
    with pytest.raises(ConfigError, match=error):
        spec_from_dict(raw)


def test_rate_factors_are_kept_in_increasing_order():
    raw = {"source": {"root": "p"}, "target": {"root": "g"}, "study": {"lr_factors": [3, 0.5, 1]}}
    assert spec_from_dict(raw).data["study"]["lr_factors"] == [0.5, 1.0, 3.0]


@pytest.mark.parametrize(
    "finetune, expect",
    [
        ({"policy": "none"}, lambda c: c["schedule"]["max_lr"] == pytest.approx(0.02)),
        ({"policy": "all"}, lambda c: c["schedule"]["max_lr"] == pytest.approx(0.02) and "lr" not in c["finetune"]),
        ({"policy": "all", "lr": 0.003}, lambda c: c["finetune"]["lr"] == pytest.approx(0.006)),
        ({"policy": "linear-probe"}, lambda c: c["schedule"]["max_lr"] == pytest.approx(0.02)),
        ({"policy": "head-then-all", "lr": 0.02}, lambda c: _stage_lrs(c)[0] == pytest.approx([0.04])),
        ({"policy": "gradual"}, lambda c: _stage_lrs(c)[-1] == pytest.approx([2e-6, 2e-4])),
    ],
)
def test_rate_scaling_multiplies_what_sets_each_policys_peak(finetune, expect):
    config = {"model": "fcn_wang", "finetune": dict(finetune)}
    if finetune["policy"] in ("none", "all", "linear-probe"):  # the staged policies' stages decide
        config["epochs"] = 11
    if finetune["policy"] != "none":
        config["finetune"]["pretrained_run"] = "x"
    scaled = scale_lr(config, 2)
    assert expect(scaled)
    rc, before = RunConfig.from_dict(scaled), RunConfig.from_dict(config)  # still a valid run config
    assert rc.epochs == before.epochs and [s.epochs for s in rc.stages()] == [s.epochs for s in before.stages()]
    for new, old in zip(rc.stages(), before.stages()):
        assert np.allclose(np.ravel(new.lr), 2 * np.ravel(old.lr))  # every stage, both ends
    assert scale_lr(config, 1) is config
    both = scale_lr(scale_length(config, 3), 2)  # the planner's order: the length, then the rate
    assert [s.epochs for s in RunConfig.from_dict(both).stages()] == [3 * s.epochs for s in before.stages()]


@pytest.mark.parametrize("policy", ["none", "all", "linear-probe"])
def test_a_configured_schedule_peak_is_what_scales_without_a_policy_rate(policy):
    """all / linear-probe without their own lr train at schedule.max_lr: that is scaled (a finetune.lr
    beside a configured schedule.max_lr would be refused as leaving it unused)."""
    config = {"model": "fcn_wang", "epochs": 11, "schedule": {"max_lr": 3e-3}, "finetune": {"policy": policy}}
    if policy != "none":
        config["finetune"]["pretrained_run"] = "x"
    scaled = scale_lr(config, 3)
    assert scaled["schedule"]["max_lr"] == 9e-3 and "lr" not in scaled["finetune"]
    assert [s.lr for s in RunConfig.from_dict(scaled).stages()] == [9e-3]


# ----- the choice ----------------------------------------------------------------------------


def test_length_and_rate_are_chosen_together_a_tie_keeps_the_shorter_then_the_configured_rate():
    every = lambda k: True  # noqa: E731
    grid = [("a1", 1, 1), ("a3", 1, 3), ("b1", 2, 1), ("b3", 2, 3)]
    c = choose(grid, every, {"a1": 0.80, "a3": 0.86, "b1": 0.84, "b3": 0.85}.get)
    assert (c.chosen, c.chosen_length, c.chosen_lr) == ("a3", 1.0, 3.0)
    assert c.lr_at_top and not c.lr_at_bottom and not c.at_cap and c.at_floor
    tie = choose(grid, every, {"a1": 0.80, "a3": 0.85, "b1": 0.85, "b3": 0.85}.get)
    assert tie.chosen == "a3"  # the shorter length first, whatever the rate
    same = choose([("x", 1, 3), ("y", 1, 1), ("z", 1, 0.3)], every, {"x": 0.9, "y": 0.9, "z": 0.9}.get)
    assert same.chosen == "y" and not same.at_cap and not same.at_floor  # one length: no length edge
    low = choose([("x", 1, 3), ("z", 1, 0.3), ("y", 1, 1)], every, {"x": 0.8, "y": 0.85, "z": 0.9}.get)
    assert low.chosen == "z" and low.lr_at_bottom and not low.lr_at_top
    capped = choose(grid, every, {"a1": 0.80, "a3": 0.81, "b1": 0.90, "b3": 0.84}.get)
    assert capped.chosen == "b1" and capped.at_cap and capped.lr_at_bottom
    # the shortest must beat every longer candidate at any rate to be "at the floor"
    close = choose(grid, every, {"a1": 0.80, "a3": 0.86, "b1": 0.86, "b3": 0.70}.get)
    assert close.chosen == "a3" and not close.at_floor
    unscored = choose(grid, every, {"a1": 0.80, "a3": None, "b1": 0.84, "b3": 0.85}.get)
    assert unscored.chosen == "b3" and not unscored.lr_at_top and not unscored.at_cap  # not all compared
    waiting = choose(grid, lambda k: k != "b3", {}.get)
    assert waiting.chosen is None and waiting.key == "b3" and waiting.chosen_lr is None
    assert not (waiting.lr_at_top or waiting.lr_at_bottom)
    assert choose([("a", 1), ("b", 2)], every, {"a": 0.5, "b": 0.6}.get).lr_factors == (1.0, 1.0)
    # as far from the configured rate either way: the lower one
    third = choose([("up", 1, 3), ("down", 1, 1 / 3)], every, {"up": 0.7, "down": 0.7}.get)
    assert third.chosen == "down" and not third.lr_at_bottom  # a tie claims no edge


def test_a_tie_claims_no_rate_edge():
    """With the grid [1, 3] a tie keeps 1, the lowest rate: a run that learnt nothing (alike at every
    rate) must not read as "best at its lowest rate" beside the headline."""
    every = lambda k: True  # noqa: E731
    flat = choose([("a1", 1, 1), ("a3", 1, 3), ("b1", 2, 1), ("b3", 2, 3)], every, lambda k: 0.5)
    assert flat.chosen == "a1" and not flat.lr_at_bottom and not flat.lr_at_top and not flat.at_floor
    # the top rate won against the lower rate at its own length but only tied a longer, lower-rate run
    tied = choose([("a1", 1, 1), ("a3", 1, 3), ("b1", 2, 1)], every, {"a1": 0.6, "a3": 0.8, "b1": 0.8}.get)
    assert tied.chosen == "a3" and not tied.lr_at_top
    clear = choose([("a1", 1, 1), ("a3", 1, 3)], every, {"a1": 0.6, "a3": 0.8}.get)
    assert clear.lr_at_top and not clear.lr_at_bottom


# ----- the results and the report, from saved predictions ----------------------------------------

#: validation / test quality per (arm, rate factor): from random weights best at 3x on validation,
#: fine-tuned at 1x; the test says the opposite, and must not be listened to.
QUALITY = {
    ("standalone", 1.0): (0.3, 2.0),
    ("standalone", 3.0): (1.5, 0.2),
    ("finetuned", 1.0): (1.5, 0.2),
    ("finetuned", 3.0): (0.3, 2.0),
}
fake_execute = fake_executor(QUALITY, factor="rate")


def _spec(root: Path, lengths: list[float], lr_factors: list[float]):
    (root / "ptbxl").mkdir(exist_ok=True)
    (root / "g12ec").mkdir(exist_ok=True)
    study = {"seeds": [0], "protocols": ["seed18"], "model": "fcn_wang", "bootstrap": 50}
    off = {"enabled": False}
    return spec_from_dict(
        {
            "study": {**study, "lengths": lengths, "lr_factors": lr_factors},
            "source": {"root": str(root / "ptbxl")},
            "target": {"root": str(root / "g12ec")},
            "experiments": {
                "target_share": {"shares": [50], "repeats": 1, "fixed_test": False},
                **{k: off for k in ("source_share", "sampling_rate", "frequency", "calibration", "strategy")},
            },
        }
    )


def _run_study(root: Path, lengths: list[float], lr_factors: list[float]):
    spec = _spec(root, lengths, lr_factors)
    out = root / "study"
    StudyRunner(spec, out, execute=fake_execute, echo=lambda m: None, progress=False).run()
    return out, plan_study(spec)


def _keys(runs, arm: str, lr: float) -> list[str]:
    return [
        f"runs/{r.key}"
        for r in runs
        for u in r.uses
        if u.get("arm") == arm and u["experiment"] == "headline" and u.get(LR_KEY) == lr
    ]


@pytest.fixture(scope="module")
def rate_study(tmp_path_factory):
    return _run_study(tmp_path_factory.mktemp("rate-study"), [1], [1, 3])


def test_results_take_each_arms_rate_by_validation_never_by_test(rate_study):
    out, runs = rate_study
    res = collect_results(out)
    row = res["headline"][0]
    assert row["runs"]["standalone"] == _keys(runs, "standalone", 3.0)
    assert row["runs"]["finetuned"] == _keys(runs, "finetuned", 1.0)
    assert row["finetuned"]["value"] < 0.75 and row["standalone"]["value"] < 0.75  # the test's worse ones
    section = res["lengths"]
    assert section["fixed"] and not section["lr_fixed"] and section["lr_factors"] == [1.0, 3.0]
    alone = section["arms"]["standalone"]
    assert (alone["chosen_lr"], alone["lr_at_top"], alone["lr_at_bottom"]) == ({"1": 0, "3": 2}, 2, 0)
    fine = section["arms"]["finetuned"]
    assert (fine["chosen_lr"], fine["lr_at_top"], fine["lr_at_bottom"]) == ({"1": 2, "3": 0}, 0, 2)
    for c in section["comparisons"]:
        assert c["lengths"] == [1.0, 1.0] and not c["at_cap"] and not c["at_floor"]
        assert c["chosen_lr"] == (3.0 if c["val_macro_auc"][1] > c["val_macro_auc"][0] else 1.0)


def test_the_report_says_which_rate_won_and_where_it_may_overstate(rate_study):
    out, _ = rate_study
    res = collect_results(out)
    warn = length_warning(res, "seed18")
    assert "the arm from random weights did best at its highest peak learning rate in 1 of 1 runs" in warn
    assert "overstate" in warn and "one fixed training length" in warn  # lengths = [1] here
    assert FIXED_LR_WARNING not in warn and "lowest" not in warn  # the fine-tuned arm's ends: method text
    assert all(warn in c["warn"] for c in headline_cards(res))
    text = dict(method_items(res))["learning rate"]
    assert text == lr_text(res) and text != RATE_NOTE
    assert "peak rates 1×, 3×" in text and "the arm from random weights: 1× 0, 3× 2 (the highest 2 times)" in text
    assert "the fine-tuned arm: 1× 2, 3× 0 (the lowest 2 times)" in text


def test_the_gallery_explains_the_rate_the_results_chose(rate_study):
    out, _ = rate_study
    plan = json.loads((out / "plan.json").read_text())["runs"]
    store = RunStore(out)
    key = gallery_run(
        plan,
        "seed18",
        0,
        done=lambda k: store.state(k)["state"] == "done",
        val_score=lambda k: run_val_macro_auc(store.run_dir(k)),
    )
    chosen = collect_results(out)["headline"][0]["runs"]["finetuned"]
    assert [f"runs/{key}"] == chosen
    assert chosen == _keys(plan_study(_spec(out.parent, [1], [1, 3])), "finetuned", 1.0)  # validation's pick


def test_a_choice_of_rates_on_few_validation_records_says_so():
    choice = {"experiments": ["headline"], "arm": "standalone", "protocol": "p", "chosen": 1.0, "n_val": 7}
    res = {"lengths": {"fixed": True, "lr_fixed": False, "comparisons": [choice]}}
    assert "⚠ rates chosen on 7 validation records" in length_warning(res, "p")
    res["lengths"]["fixed"] = False
    assert "⚠ lengths and rates chosen on 7 validation records" in length_warning(res, "p")


def test_fixed_rates_are_said_beside_the_difference_and_in_the_method(tmp_path):
    out, _ = _run_study(tmp_path, [1, 2], [1])
    res = collect_results(out)
    assert res["lengths"]["lr_fixed"] and lr_text(res) is None
    assert FIXED_LR_WARNING in headline_cards(res)[0]["warn"]
    assert dict(method_items(res))["learning rate"] == RATE_NOTE
    del res["lengths"]["lr_fixed"]  # results written before rates could be chosen: not claimed
    assert FIXED_LR_WARNING not in length_warning(res, "seed18")


def test_a_study_planned_before_rates_says_its_plan_grows(tmp_path):
    spec = _spec(tmp_path, [1], [1, 3])
    out = tmp_path / "study"
    out.mkdir()
    old = spec.data
    del old["study"]["lr_factors"]
    (out / "study.json").write_text(json.dumps({"resolved": old}))
    said: list[str] = []
    StudyRunner(spec, out, execute=fake_execute, echo=said.append, progress=False).run()
    assert any("planned with one peak rate per arm" in m and "1x, 3x its rates" in m for m in said)
