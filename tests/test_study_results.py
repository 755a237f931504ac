"""results.json from a study's saved predictions, without training: a fake ``execute`` writes each
planned run's predictions (labels chosen so that macro means average few labels and test sets are
small), the real evaluation scores them, and ``collect_results`` must report every number with its
scope (test records, labels scored), paired differences where the report names a winner, experiment
4 pooled over seeds exactly as the headline, and how the intervals were made."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from ecg_transfer.evaluation.runs import evaluate_run
from ecg_transfer.labels import get_protocol
from ecg_transfer.predictions import save_predictions
from ecg_transfer.runfiles import LABEL_COUNTS_FILE
from ecg_transfer.study.plan import plan_study
from ecg_transfer.study.results import REFERENCE, collect_results, write_results
from ecg_transfer.study.resultsfile import FORMAT, is_machinery_check
from ecg_transfer.study.runner import StudyRunner
from ecg_transfer.study.spec import spec_from_dict
from ecg_transfer.training.run import label_counts

PTBXL_LABELS = ["NORM", "IMI", "ASMI", "LVH", "NDT"]
B = 100
#: labels with positives on the target's test records, per protocol (the rest have none)
POSITIVE_LABELS = {"seed18": 3, "cinc2020": 5}
FIXED_TEST = 12  # below the report's 30-record threshold


def _spec(root: Path):
    (root / "ptbxl").mkdir(exist_ok=True)
    (root / "g12ec").mkdir(exist_ok=True)
    return spec_from_dict(
        {
            "study": {"seeds": [0, 1], "model": "fcn_wang", "bootstrap": B, "fs": 100},
            "source": {"root": str(root / "ptbxl"), "allow_missing": True},
            "target": {"root": str(root / "g12ec")},
            "experiments": {
                "target_share": {"shares": [20, 50], "repeats": 2},
                "source_share": {"shares": [50, 100], "target_share": 20},
                "sampling_rate": {"rates": [250, 100]},
                "frequency": {"enabled": False},
                "calibration": {"methods": ["temperature", "isotonic"]},
            },
        }
    )


def _ids(run) -> tuple[list[str], list[str], list[str]]:
    """Train, validation and test record ids of a planned run (what its split would give)."""
    task = run.config["task"]
    if run.kind == "pretrain":
        n_test = 20 if task["source_fs"] == 500 else 60  # PTB-XL at 500 Hz: only the records present
        n_val = 10 if task["source_fs"] == 500 else 30
        n_train = int(200 * task.get("train_fraction", 1.0))
        return (
            [f"p-train-{i}" for i in range(n_train)],
            [f"p-val-{i}" for i in range(n_val)],
            [f"p-test-{i}" for i in range(n_test)],
        )
    if task.get("test_on_rest"):
        r, share = task["fraction_seed"], round(100 * task["train_fraction"])
        # the rest of the larger share: 3 records, each the only positive of a label (the rule would pin it)
        test = [f"rest{r}-{share}-{i}" for i in range(3 if share == 50 else 36)]
    else:
        test = [f"t{i}" for i in range(FIXED_TEST)]
    return [f"tr{i}" for i in range(30)], [f"v{i}" for i in range(16)], test


def _labels(run) -> tuple[list[str], int]:
    spec = run.config["task"]["labels"]
    if spec.startswith("protocol:"):
        name = spec.split(":", 1)[1]
        return list(get_protocol(name).class_names), POSITIVE_LABELS[name]
    return PTBXL_LABELS, len(PTBXL_LABELS)


def _split(ids: list[str], labels: list[str], n_pos: int, strength: float, seed: int):
    y = np.zeros((len(ids), len(labels)), dtype=np.uint8)
    for i in range(len(ids)):
        for k in range(n_pos):
            y[i, k] = (i + k) % 3 == 0
    rng = np.random.default_rng([seed, *(zlib.crc32(r.encode()) for r in ids[:3])])
    z = strength * (2.0 * y - 1) + rng.normal(0, 1.0, y.shape)
    return y, 1 / (1 + np.exp(-z))


def fake_execute(runner, run) -> None:
    """Predictions for the run's splits (fine-tuned better than standalone) and the study's evaluation."""
    d = runner.store.run_dir(run.key)
    d.mkdir(parents=True, exist_ok=True)
    train, val, test = _ids(run)
    labels, n_pos = _labels(run)
    strength = {"pretrain": 1.2, "finetuned": 1.5, "standalone": 0.6}[run.kind]
    for name, ids in (("val", val), ("test", test)):
        y, p = _split(
            ids,
            labels,
            n_pos,
            strength,
            run.config["seed"] + (7 if name == "val" else 0) + 100 * (run.kind == "finetuned"),
        )
        save_predictions(d / f"predictions_{name}.csv", ids, labels, y, p)
    (d / "config.json").write_text(json.dumps(run.config))
    (d / "splits.json").write_text(json.dumps({"train": train, "val": val, "test": test}))
    y_train, _ = _split(train, labels, n_pos, strength, run.config["seed"])  # the first n_pos labels: 1 in 3
    counts = label_counts(y_train, {"train": range(len(train))}, labels)
    counts["dropped_unlabelled"] = {"train": 3, "val": 1, "test": 2}  # records with none of the labels
    counts["fold_records"] = {"train": len(train) + 3, "val": len(val) + 1, "test": len(test) + 2}
    (d / LABEL_COUNTS_FILE).write_text(json.dumps(counts))
    headline = any(u["experiment"] == "headline" for u in run.uses)
    evaluate_run(d, calibrate=["temperature", "isotonic"] if headline else [], n_resamples=B, plots=False)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake-study")
    spec = _spec(root)
    out = root / "study"
    StudyRunner(spec, out, execute=fake_execute, echo=lambda m: None, progress=False).run()
    return out, collect_results(out), plan_study(spec)


def test_results_file_is_written_with_its_format(study):
    out, res, _ = study
    assert json.loads((out / "results.json").read_text())["format"] == FORMAT == res["format"]
    assert write_results(out) == out / "results.json"


def test_the_report_says_threads_0_is_torchs_default(study):
    """``[study] threads = 0`` is torch's own default, not zero threads: results keep the number,
    the report says it in words."""
    from ecg_transfer.report.tables import _env_value

    assert study[1]["study"]["environment"]["threads"] == 0
    assert _env_value("threads", 0) == "torch's default" and _env_value("threads", 4) == 4


def test_runs_on_different_test_sets_are_not_marked_as_seeds_outside_the_mean():
    """Repeats on their own test sets: the mean's CI is about sqrt(K) narrower than one run's
    spread, so a run outside it is expected, not a sign that seeds dominate (the ‡ mark)."""
    from ecg_transfer.report.data import interval

    one_set = {"value": 0.8, "ci": [0.78, 0.82], "values": [0.7, 0.9]}
    assert interval(one_set).runs_outside == 2 and "‡" in interval(one_set).marks
    assert (
        interval({**one_set, "test_sets": 3}).runs_outside == 0
        and "‡" not in interval({**one_set, "test_sets": 3}).marks
    )


def test_every_macro_value_carries_its_scope(study):
    _, res, _ = study
    for row in res["headline"]:
        k, n = POSITIVE_LABELS[row["protocol"]], len(row["labels"])
        assert (row["labels_scored"], row["n_labels"], row["n_test"]) == (k, n, FIXED_TEST)
        for arm in ("finetuned", "standalone", "difference"):
            assert (row[arm]["labels_scored"], row[arm]["n_labels"], row[arm]["n_test"]) == (k, n, FIXED_TEST), arm
            # 30 training records: the first k labels have 10 positives each, the others none
            assert row[arm]["labels_few_train"] == n - k, arm
    pre = res["pretrain"]["test_macro_auc"]
    assert (pre["n_test"], pre["labels_scored"], pre["n_labels"]) == (60, 5, 5)
    assert pre["labels_few_train"] == 0  # 200 records: every label has 66 positives
    assert pre["resampling"] == "redraw"  # the run's own evaluation (metrics.json) applies the rare-class rule
    for r in res["exp1"]["rest"]:  # the rest shrinks as the share grows
        assert r["n_test"] == (3 if r["share"] == 50 else 36) and r["labels_scored"] == 3 and r["n_labels"] == 18
    for r in res["exp1"]["fixed_test"]:
        assert r["n_test"] == FIXED_TEST


def test_paired_differences_wherever_arms_are_compared(study):
    _, res, _ = study
    for row in res["headline"]:
        d = row["difference"]
        assert d["value"] > 0 and d["ci"][0] <= d["value"] <= d["ci"][1] and 0 < d["p"] <= 1
        assert 0 <= d["ties_at_zero"] <= 1
        assert set(row["metric_differences"]) >= {"macro_auprc", "brier", "ece"}
        scored = [p for p in row["per_class"] if p["status"] == "ok"]
        assert len(scored) == row["labels_scored"] and all(p["difference"]["ci"] for p in scored)
    for variant in ("rest", "fixed_test"):
        diffs = res["exp1"]["difference"][variant]
        assert [d["share"] for d in diffs] == [20, 50]
        assert all(d["n_pairs"] == (2 if variant == "rest" else 1) and d["p"] is not None for d in diffs)
    assert all(r["difference"]["ci"] is not None for r in res["exp2"] + res["exp3"])


def test_challenge_metric_is_computed_for_the_headline(study):
    _, res, _ = study
    row = next(r for r in res["headline"] if r["protocol"] == "cinc2020")
    assert row["metrics"]["finetuned"]["challenge"]["value"] is not None
    assert "one to one" in row["challenge_note"]
    seed18 = next(r for r in res["headline"] if r["protocol"] == "seed18")
    assert "not the official challenge metric" in seed18["challenge_note"]


def test_calibration_pools_the_seeds_exactly_as_the_headline(study):
    """One metric, one value: experiment 4's uncalibrated ECE and Brier are the headline's."""
    _, res, _ = study
    for e in res["exp4"]:
        head = next(r for r in res["headline"] if r["protocol"] == e["protocol"])["metrics"][e["arm"]]
        unc = e["methods"]["uncalibrated"]
        assert e["n_seeds"] == 2
        for k in ("ece", "brier"):
            assert unc[k]["value"] == head[k]["value"] and unc[k]["ci"] == head[k]["ci"], (e["protocol"], k)
        for m in ("temperature", "isotonic"):
            assert set(e["methods"][m]["vs_uncalibrated"]) == {"ece", "ece_macro", "brier"}
        assert e["reliability_seed"] == 0 and e["reliability"]


def test_sampling_rate_rows_say_how_many_records_were_tested(study):
    _, res, _ = study
    by_fs = {r["fs"]: r for r in res["exp3"]}
    assert by_fs[250.0]["pretrain"]["n_test"] == 20 and by_fs[100.0]["pretrain"]["n_test"] == 60
    assert by_fs[250.0]["finetuned"]["n_test"] == FIXED_TEST
    cov = res["study"]["source"]["coverage"]
    assert cov["missing_at_500hz"] == {"val": 20, "test": 40}
    assert cov["records_at_500hz"]["test"] == 20


def test_statistics_say_how_intervals_were_made(study):
    _, res, _ = study
    st = res["statistics"]
    assert st["n_resamples"] == B and "PTB-XL benchmark rule" in st["resampling"]
    assert "inverting the percentile interval" in st["p_value"] and st["small_test"] == 30
    # the rule was not applied to the two 3-record test sets (one per repeat), each listed once with its values
    pinned = [f for f in st["fallbacks"] if f["n_test"] == 3]
    assert len(pinned) == 2 and all(f["reason"] == "pinned" and f["variation_kept"] < 0.9 for f in pinned)
    assert sorted(f["where"] for f in pinned) == [
        "exp1-rest/share50/repeat0/seed18/finetuned/s0",
        "exp1-rest/share50/repeat1/seed18/finetuned/s1",
    ]
    assert all(f["values"] >= 3 for f in pinned)  # both arms and their paired difference
    assert all(f["n_test"] == 3 for f in st["fallbacks"])  # the 12- and 36-record test sets keep the rule
    assert res["reference"]["protocol"] == REFERENCE["protocol"] == "seed18"
    assert all(r["protocol"] == "seed18" for r in res["exp2"] + res["exp3"])


def test_machinery_check_flag(study):
    out, res, _ = study
    assert res["study"]["machinery_check"] is False
    assert is_machinery_check("smoke") and is_machinery_check("quick") and not is_machinery_check("laptop")
    assert not is_machinery_check(None)
    assert is_machinery_check("laptop", {"machinery_check": True})
    assert not is_machinery_check("smoke", {"machinery_check": False})
    original = (out / "study.json").read_text()
    try:
        study_json = json.loads(original)
        study_json["resolved"]["study"]["machinery_check"] = True  # the resolved spec says so
        (out / "study.json").write_text(json.dumps(study_json))
        assert collect_results(out)["study"]["machinery_check"] is True
        del study_json["resolved"]["study"]["machinery_check"]  # a spec from before the key: the profile decides
        study_json["profile"] = "smoke"
        (out / "study.json").write_text(json.dumps(study_json))
        assert collect_results(out)["study"]["machinery_check"] is True
    finally:
        (out / "study.json").write_text(original)


def test_strategy_rows_say_how_many_records_each_pretraining_read(tmp_path):
    """Experiment 6's self-supervised pre-training reads every record of the source's training folds, a
    supervised one ``[source] train_fraction`` of them: each row carries its pre-training's records (from
    its splits.json, as experiment 2's rows do), so the report can say when the strategies differ. The
    study section records the target's folds, so the report can say what "the pool" of a share is."""
    (tmp_path / "ptbxl").mkdir()
    (tmp_path / "g12ec").mkdir()
    spec = spec_from_dict(
        {
            "study": {"seeds": [0], "model": "fcn_wang", "bootstrap": B, "fs": 100, "protocols": ["seed18"]},
            "source": {"root": str(tmp_path / "ptbxl"), "allow_missing": True, "train_fraction": 0.5},
            "target": {"root": str(tmp_path / "g12ec"), "name": "Leipzig", "train_folds": [1, 2, 3, 4, 5, 6]},
            "experiments": {
                "target_share": {"enabled": False, "shares": [50]},
                "source_share": {"enabled": False},
                "sampling_rate": {"enabled": False},
                "frequency": {"enabled": False},
                "calibration": {"enabled": False},
                "strategy": {
                    "enabled": True,
                    "strategies": ["none", "supervised:rhythm", "self-supervised"],
                    "shares": [50],
                    "ssl": {"method": "masked"},
                },
            },
        }
    )
    out = tmp_path / "study"
    StudyRunner(spec, out, execute=fake_execute, echo=lambda m: None, progress=False).run()
    res = collect_results(out)
    e6 = {r["strategy"]: r for r in res["exp6"]}
    # fake_execute: 200 training records at train_fraction 1 (self-supervised), 100 at 0.5 (supervised)
    assert e6["self-supervised"]["n_pretrain_records"] == 200
    assert e6["supervised:rhythm"]["n_pretrain_records"] == 100
    assert e6["none"]["n_pretrain_records"] is None
    tgt = res["study"]["target"]
    assert tgt["name"] == "Leipzig" and tgt["n_folds"] == 10
    assert (tgt["train_folds"], tgt["val_folds"], tgt["test_folds"]) == ([1, 2, 3, 4, 5, 6], [9], [10])


def test_an_interval_that_excludes_its_point_says_so_and_test_sets_give_their_range():
    """Tiny test sets: a percentile interval can exclude its own point (the smoke study's cinc2020
    AUPRC 0.290 [0.291, 0.654]); the results say so, and a mean over test sets of different sizes
    carries their smallest and largest, so the report can write "27-28 test records"."""
    from ecg_transfer.study.results import _interval, _scope

    assert _interval(0.290, [0.291, 0.654])["point_outside_ci"] is True
    assert "point_outside_ci" not in _interval(0.3, [0.291, 0.654]) and "point_outside_ci" not in _interval(0.3, None)
    scope = _scope([np.zeros((27, 3)), np.zeros((28, 3))])
    assert (scope["n_test_min"], scope["n_test_max"]) == (27, 28)


def test_the_headline_says_which_records_it_was_tested_on(study):
    """Records with none of the protocol's labels are left out of every split (the benchmark's
    rule): the results carry the counts, and the report's headline says so beside the numbers."""
    from ecg_transfer.report.tables import headline_cards

    row = study[1]["headline"][0]
    assert row["left_out"]["dropped_unlabelled"] == {"train": 3, "val": 1, "test": 2}
    assert row["left_out"]["fold_records"]["test"] == row["n_test"] + 2
    warn = headline_cards(study[1])[0]["warn"]
    assert f"2 of the test folds' {row['n_test'] + 2} records had none and were left out (and 4 more" in warn
