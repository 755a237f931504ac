"""[task] train_fraction / fraction_parts / fraction_seed / test_on_rest: the transfer study's splits.

Learning curves need nested, label-stratified training subsets that never split a patient or a
duplicated signal; "train on p % of a set, test on the rest" needs the rest as the test split.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ecg_transfer.datasets.task as task_module
from ecg_transfer.cli import main
from ecg_transfer.datasets.folds import stratified_folds
from ecg_transfer.datasets.task import fraction_subset, load_task, task_settings
from ecg_transfer.errors import ConfigError

from wfdb_fixtures import CINC_CODES, make_ptbxl_tree, write_cinc

TINY_MODEL = {"filters": [8, 8], "kernel_sizes": [5, 3], "head_hidden": [8], "head_dropout": 0.1}


@pytest.fixture(scope="module")
def ptbxl(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """200 fake PTB-XL records (patient_id = 1000 + i // 2: records 2k and 2k+1 share a patient),
    with one cache for the module; returns the base [task] table."""
    base = tmp_path_factory.mktemp("splits")
    tree = make_ptbxl_tree(base / "ptbxl", n_records=200)
    return {"dataset": "ptbxl", "root": str(tree), "labels": "diagnostic", "cache_dir": str(base / "cache")}


@pytest.fixture(scope="module")
def cinc(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[set[str]]]:
    """120 CinC records; 10 signals appear three times each (different record names and labels).
    Returns the base [task] table and the sets of record ids that share a signal."""
    base = tmp_path_factory.mktemp("cinc")
    rng = np.random.default_rng(7)
    dups: list[set[str]] = []
    signal = None
    for i in range(1, 121):
        name = f"E{i:05d}"
        if i <= 30 and i % 3 != 1:  # E00002/E00003 copy E00001, E00005/E00006 copy E00004, ...
            dups[-1].add(name)
        else:
            signal = rng.integers(-800, 800, size=(12, 500)).astype(np.int16)
            if i <= 30:
                dups.append({name})
        write_cinc(base / "g1", name, signal, CINC_CODES[i % 4] + ("," + CINC_CODES[(i + 1) % 4] if i % 5 == 0 else ""))
    task = {
        "dataset": "cinc",
        "root": str(base / "g1"),
        "labels": "protocol:cinc2020",
        "cache_dir": str(base / "cache"),
    }
    return task, dups


def ids(data, split: str) -> set[str]:
    return {data.record_ids[r] for r in data.splits[split]}


# -- semantics ------------------------------------------------------------------------------------
def test_fraction_one_gives_exactly_the_old_splits_and_computes_no_parts(ptbxl: dict, monkeypatch) -> None:
    default = load_task(ptbxl, 100.0, progress=False)
    db = pd.read_csv(Path(ptbxl["root"]) / "ptbxl_database.csv", index_col="ecg_id")
    # the old rule, written out: split by strat_fold; every fixture record has a diagnostic label
    for split, folds in (("train", range(1, 9)), ("val", [9]), ("test", [10])):
        expected = [f"{i:05d}" for i in db.index if db.loc[i, "strat_fold"] in folds]
        assert [default.record_ids[r] for r in default.splits[split]] == expected

    def boom(*a, **k):
        raise AssertionError("parts computed for train_fraction = 1")

    monkeypatch.setattr(task_module, "stratified_folds", boom)
    monkeypatch.setattr(task_module, "signal_hash", boom)
    explicit = load_task(
        {**ptbxl, "train_fraction": 1.0, "fraction_parts": 7, "fraction_seed": 3}, 100.0, progress=False
    )
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(explicit.splits[split], default.splits[split])


def test_subsets_are_nested_as_the_fraction_grows(ptbxl: dict) -> None:
    pool = ids(load_task(ptbxl, 100.0, progress=False), "train")
    previous: set[str] = set()
    sizes = []
    for f in (0.05, 0.1, 0.25, 0.5, 0.75, 0.95):
        train = ids(load_task({**ptbxl, "train_fraction": f, "fraction_seed": 4}, 100.0, progress=False), "train")
        assert previous < train <= pool, f
        sizes.append(len(train) / len(pool))
        previous = train
    # each size near its fraction (parts hold whole patients, so not exactly)
    assert np.allclose(sizes, [0.05, 0.1, 0.25, 0.5, 0.75, 0.95], atol=0.03), sizes


def test_another_seed_gives_another_subset(ptbxl: dict) -> None:
    a = ids(load_task({**ptbxl, "train_fraction": 0.5, "fraction_seed": 0}, 100.0, progress=False), "train")
    a2 = ids(load_task({**ptbxl, "train_fraction": 0.5, "fraction_seed": 0}, 100.0, progress=False), "train")
    b = ids(load_task({**ptbxl, "train_fraction": 0.5, "fraction_seed": 1}, 100.0, progress=False), "train")
    assert a == a2  # deterministic
    assert a != b and abs(len(a) - len(b)) <= 8


def test_a_patient_is_never_on_both_sides(ptbxl: dict) -> None:
    db = pd.read_csv(Path(ptbxl["root"]) / "ptbxl_database.csv", index_col="ecg_id")
    full = load_task(ptbxl, 100.0, progress=False)
    pool = ids(full, "train")
    patient = {f"{i:05d}": db.loc[i, "patient_id"] for i in db.index}
    shared = pd.Series([patient[r] for r in pool]).value_counts()
    assert (shared == 2).sum() >= 50  # the fixture really has patients with two pool records
    split_somewhere = 0
    for seed in range(4):
        for f in (0.25, 0.5):
            train = ids(
                load_task({**ptbxl, "train_fraction": f, "fraction_seed": seed}, 100.0, progress=False), "train"
            )
            rest = pool - train
            assert not {patient[r] for r in train} & {patient[r] for r in rest}, (seed, f)
            # the same parts without groups would split some of these patients
            y = full.Y[full.splits["train"]]
            plain = stratified_folds(y, n_folds=20, seed=seed) <= round(f * 20)
            ordered = [full.record_ids[r] for r in full.splits["train"]]
            chosen = {r for r, c in zip(ordered, plain) if c}
            split_somewhere += bool({patient[r] for r in chosen} & {patient[r] for r in set(ordered) - chosen})
    assert split_somewhere  # the check above could fail


def test_identical_cinc_signals_stay_on_one_side(cinc: tuple[dict, list[set[str]]]) -> None:
    task, dups = cinc
    pool = ids(load_task(task, 100.0, progress=False), "train")
    in_pool = [d for d in dups if d <= pool]
    assert len(in_pool) >= 6  # folds keep copies together, and most copies land in folds 1-8
    for seed in range(3):
        for f in (0.25, 0.5, 0.75):
            data = load_task({**task, "train_fraction": f, "fraction_seed": seed}, 100.0, progress=False)
            train = ids(data, "train")
            for d in in_pool:
                assert d <= train or not d & train, (seed, f, sorted(d))


def test_half_subset_keeps_each_class_share(ptbxl: dict) -> None:
    full = load_task(ptbxl, 100.0, progress=False)
    half = load_task({**ptbxl, "train_fraction": 0.5, "fraction_seed": 2}, 100.0, progress=False)
    share_pool = full.Y[full.splits["train"]].mean(axis=0)
    share_half = half.Y[half.splits["train"]].mean(axis=0)
    assert full.label_names == ["CRBBB", "LVH", "NORM", "NST_"]
    assert len(half.splits["train"]) == len(full.splits["train"]) // 2
    np.testing.assert_allclose(share_half, share_pool, atol=0.02)


def test_fraction_subset_stratifies_rare_classes() -> None:
    """On a larger synthetic pool: every class, rare ones included, keeps its prevalence in 30 % and
    50 % subsets, and the positives per class are closer to their due than in a random draw."""
    rng = np.random.default_rng(0)
    prevalence = np.array([0.4, 0.2, 0.1, 0.05, 0.02, 0.01])
    y = (rng.random((3000, 6)) < prevalence).astype(np.uint8)
    groups = np.repeat(np.arange(1500), 2)  # pairs of records, as patients
    for f in (0.3, 0.5):
        random_off = [
            np.abs(y[np.repeat(rng.random(1500) < f, 2)].sum(axis=0) - f * y.sum(axis=0)).sum() for _ in range(21)
        ]
        for seed in range(3):
            chosen = fraction_subset(y, groups, fraction=f, parts=20, seed=seed)
            assert abs(chosen.mean() - f) < 0.01
            assert (chosen[0::2] == chosen[1::2]).all()  # no pair split
            np.testing.assert_allclose(y[chosen].mean(axis=0), y.mean(axis=0), atol=0.01)
            ours_off = np.abs(y[chosen].sum(axis=0) - f * y.sum(axis=0)).sum()
            assert ours_off < np.median(random_off), (f, seed, ours_off, np.median(random_off))
    with pytest.raises(ValueError, match="not k/20"):
        fraction_subset(y, groups, fraction=0.33, parts=20)


def test_test_on_rest_partitions_the_pool(ptbxl: dict) -> None:
    full = load_task(ptbxl, 100.0, progress=False)
    data = load_task(
        {**ptbxl, "train_fraction": 0.3, "test_folds": [], "test_on_rest": True, "fraction_seed": 1},
        100.0,
        progress=False,
    )
    train, test, pool = ids(data, "train"), ids(data, "test"), ids(full, "train")
    assert train | test == pool and not train & test
    assert train == ids(load_task({**ptbxl, "train_fraction": 0.3, "fraction_seed": 1}, 100.0, progress=False), "train")
    np.testing.assert_array_equal(data.splits["val"], full.splits["val"])
    assert abs(len(train) / len(pool) - 0.3) < 0.03


def test_train_cli_records_the_subset(ptbxl: dict, tmp_path: Path) -> None:
    """`ecg-transfer train CONFIG` alone reproduces the split: splits.json holds the subset."""
    task = {**ptbxl, "train_fraction": 0.5, "test_folds": [], "test_on_rest": True, "fraction_seed": 3}
    cfg = {
        "model": "fcn_wang",
        "model_kwargs": TINY_MODEL,
        "fs": 100.0,
        "batch_size": 8,
        "epochs": 1,
        "device": "cpu",
        "seed": 0,
        "task": task,
    }
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    assert main(["train", str(tmp_path / "c.json"), "--run-dir", str(tmp_path / "run"), "--no-progress"]) == 0
    saved = json.loads((tmp_path / "run" / "splits.json").read_text())
    data = load_task(task, 100.0, progress=False)
    assert set(saved["train"]) == ids(data, "train") and set(saved["test"]) == ids(data, "test")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["task"]["train_fraction"] == 0.5


# -- errors ---------------------------------------------------------------------------------------
BASE = {"dataset": "ptbxl", "root": "x", "labels": "diagnostic"}


@pytest.mark.parametrize(
    "extra,pattern",
    [
        ({"train_fraction": 0}, r"'task\.train_fraction': must be > 0, got 0"),
        ({"train_fraction": -0.5}, r"'task\.train_fraction': must be > 0"),
        ({"train_fraction": 1.5}, r"'task\.train_fraction': must be <= 1"),
        ({"train_fraction": float("nan")}, r"'task\.train_fraction': must be a finite number"),
        ({"train_fraction": "0.5"}, r"'task\.train_fraction': expected a number"),
        ({"train_fraction": True}, r"'task\.train_fraction': expected a number"),
        (
            {"train_fraction": 0.33},
            r"'task\.train_fraction': 0\.33 is not a multiple of 1/20 .*0\.05, 0\.1, 0\.15, \.\.\., "
            r"0\.95, 1 .*task\.fraction_parts = 100",
        ),
        ({"train_fraction": 1 / 3}, r"'task\.train_fraction': .* set task\.fraction_parts = 3"),
        ({"train_fraction": 0.3, "fraction_parts": 4}, r"not a multiple of 1/4 .*0\.25, 0\.5, 0\.75, 1 "),
        ({"train_fraction": 0.01}, r"'task\.train_fraction': 0\.01 is not a multiple of 1/20"),
        ({"fraction_parts": 1}, r"'task\.fraction_parts': must be >= 2"),
        ({"fraction_parts": 2.5}, r"'task\.fraction_parts': expected an integer"),
        ({"fraction_parts": "20"}, r"'task\.fraction_parts': expected an integer"),
        ({"fraction_parts": True}, r"'task\.fraction_parts': expected an integer"),
        ({"fraction_seed": -1}, r"'task\.fraction_seed': must be >= 0"),
        ({"fraction_seed": 1.0}, r"'task\.fraction_seed': expected an integer"),
        ({"fraction_seed": False}, r"'task\.fraction_seed': expected an integer"),
        ({"test_on_rest": "yes"}, r"'task\.test_on_rest': expected true/false"),
        ({"test_on_rest": 1}, r"'task\.test_on_rest': expected true/false"),
        ({"test_on_rest": True, "test_folds": []}, r"test_on_rest': true needs task\.train_fraction < 1"),
        ({"test_on_rest": True, "train_fraction": 0.5}, r"test_on_rest': true needs task\.test_folds = \[\].*\[10\]"),
    ],
)
def test_bad_values_name_the_key(extra: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        task_settings({**BASE, **extra})


def test_good_values_pass() -> None:
    s = task_settings({**BASE, "train_fraction": 0.15, "fraction_parts": 20, "fraction_seed": 9})
    assert s["train_fraction"] == 0.15 and s["test_on_rest"] is False
    assert task_settings({**BASE, "train_fraction": 1})["train_fraction"] == 1
    assert task_settings({**BASE, "train_fraction": 1 / 3, "fraction_parts": 3})["fraction_parts"] == 3
    assert task_settings(BASE)["train_fraction"] == 1.0


def test_too_small_pool_names_dataset_fraction_and_size(ptbxl: dict) -> None:
    # folds [1] of the fixture: 20 records of 20 patients; 40 parts cannot all be filled
    with pytest.raises(
        ConfigError,
        match=r"train_fraction = 0\.5: the ptbxl pool at .*has 20 records in 20 group"
        r".*fewer than task\.fraction_parts = 40",
    ):
        load_task({**ptbxl, "train_folds": [1], "train_fraction": 0.5, "fraction_parts": 40}, 100.0, progress=False)
    # folds [1]: 1/20 of 20 single-record patients is one record, too few to train on
    with pytest.raises(
        ConfigError,
        match=r"train_fraction = 0\.05: the ptbxl pool .*has 20 records; the fraction "
        r"leaves 1 for training, at least 2",
    ):
        load_task({**ptbxl, "train_folds": [1], "train_fraction": 0.05}, 100.0, progress=False)


# -- real data ------------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.slow
def test_real_ptbxl_quarter_of_folds_1_to_8(ptbxl_root: Path, cache_dir: Path) -> None:
    """Builds the PTB-XL 100 Hz cache (about 1 GB) in a temporary folder, removed afterwards."""
    task = {"dataset": "ptbxl", "root": str(ptbxl_root), "labels": "diagnostic", "cache_dir": str(cache_dir)}
    try:
        full = load_task(task, 100.0, progress=False)
        quarter = load_task({**task, "train_fraction": 0.25, "fraction_parts": 20}, 100.0, progress=False)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    pool, train = ids(full, "train"), ids(quarter, "train")
    assert train < pool
    assert abs(len(train) / len(pool) - 0.25) <= 0.02, (len(train), len(pool))
    patient = dict(zip(full.table["record_id"].astype(str), full.table["patient_id"]))
    assert not {patient[r] for r in train} & {patient[r] for r in pool - train}
    for split in ("val", "test"):
        np.testing.assert_array_equal(quarter.splits[split], full.splits[split])
    share_pool = full.Y[full.splits["train"]].mean(axis=0)
    share_train = quarter.Y[quarter.splits["train"]].mean(axis=0)
    np.testing.assert_allclose(share_train, share_pool, atol=0.01)
