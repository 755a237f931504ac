"""From a config's [task] table to a finished run, through the CLI: split, labels, transfer checks."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ecg_transfer.cli import main
from ecg_transfer.datasets.task import load_task, task_settings
from ecg_transfer.errors import ConfigError

from wfdb_fixtures import make_ptbxl_tree

TINY_MODEL = {"filters": [8, 8], "kernel_sizes": [5, 3], "head_hidden": [8], "head_dropout": 0.1}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ptbxl_tree(tmp_path_factory.mktemp("t") / "ptbxl", n_records=40)


def write_config(path: Path, tree: Path, cache: Path, **extra) -> Path:
    cfg = {
        "model": "fcn_wang",
        "model_kwargs": TINY_MODEL,
        "fs": 100.0,
        "batch_size": 4,
        "epochs": 1,
        "device": "cpu",
        "seed": 3,
        "task": {"dataset": "ptbxl", "root": str(tree), "labels": "superdiagnostic", "cache_dir": str(cache)},
    }
    cfg.update(extra)
    path.write_text(json.dumps(cfg))
    return path


def test_splits_follow_folds_and_drop_unlabelled(tree: Path, tmp_path: Path) -> None:
    data = load_task(
        {"dataset": "ptbxl", "root": str(tree), "labels": "form", "cache_dir": str(tmp_path)}, 100.0, progress=False
    )
    db = pd.read_csv(tree / "ptbxl_database.csv", index_col="ecg_id")
    for split, folds in (("train", range(1, 9)), ("val", [9]), ("test", [10])):
        ids = [int(data.record_ids[r]) for r in data.splits[split]]
        assert set(db.loc[ids, "strat_fold"]) <= set(folds)
    # only every fourth fixture record carries a form statement (NST_); the others are dropped
    used = {int(data.record_ids[r]) for s in data.splits.values() for r in s}
    assert used == {i for i in range(1, 41) if i % 4 == 3}
    assert data.label_names == ["NST_"]
    assert data.X.shape == (40, 12, 1000)


def test_task_errors_name_the_key(tree: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'task\.labelz'"):
        task_settings({"dataset": "ptbxl", "root": str(tree), "labelz": "all"})
    with pytest.raises(ConfigError, match=r"config key 'task\.labels' is required"):
        task_settings({"dataset": "ptbxl", "root": str(tree)})
    with pytest.raises(ConfigError, match="must not overlap"):
        task_settings({"dataset": "ptbxl", "root": str(tree), "labels": "all", "val_folds": [8]})
    with pytest.raises(ConfigError, match="neither a PTB-XL task"):
        load_task({"dataset": "ptbxl", "root": str(tree), "labels": "diagnostics"}, 100.0, progress=False)


def test_pretrain_then_finetune_and_standalone_via_cli(tree: Path, tmp_path: Path, capsys) -> None:
    cache = tmp_path / "cache"
    pre = write_config(tmp_path / "pre.json", tree, cache)
    assert main(["pretrain", str(pre), "--run-dir", str(tmp_path / "pre"), "--no-progress"]) == 0
    counts = json.loads((tmp_path / "pre" / "label_counts.json").read_text())
    few = sum(1 for k in counts["positives"]["train"] if k < 10)  # 40 records: some labels are rare
    assert 0 < few and counts["records"]["train"] == len(
        json.loads((tmp_path / "pre" / "splits.json").read_text())["train"]
    )
    assert f"warning: {few} of {len(counts['labels'])} labels have fewer than 10 positive training records" in (
        capsys.readouterr().err
    )
    for f in (
        "config.json",
        "environment.json",
        "label_counts.json",
        "model.pt",
        "metrics.jsonl",
        "predictions_val.csv",
        "predictions_test.csv",
        "splits.json",
    ):
        assert (tmp_path / "pre" / f).exists(), f
    test_ids = pd.read_csv(tmp_path / "pre" / "predictions_test.csv", dtype={"record_id": str})["record_id"]
    db = pd.read_csv(tree / "ptbxl_database.csv", index_col="ecg_id")
    assert set(db.loc[[int(i) for i in test_ids], "strat_fold"]) == {10}

    target = write_config(
        tmp_path / "target.json",
        tree,
        cache,
        task={
            "dataset": "ptbxl",
            "root": str(tree),
            "labels": "protocol:seed18",
            "cache_dir": str(cache),
            "min_count": 1,
        },
    )
    # `finetune` turns policy "none" into the head-then-all preset (30 + 30 epochs): a top-level
    # `epochs` would be silently overridden, so it is refused, naming the preset's own keys
    capsys.readouterr()
    assert (
        main(
            [
                "finetune",
                str(target),
                "--from",
                str(tmp_path / "pre"),
                "--run-dir",
                str(tmp_path / "ft0"),
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "'epochs': 1" in err and "finetune.head_epochs" in err and not (tmp_path / "ft0").exists()
    ft_target = tmp_path / "ft_target.json"
    ft_cfg = {k: v for k, v in json.loads(target.read_text()).items() if k != "epochs"}
    ft_target.write_text(
        json.dumps({**ft_cfg, "finetune": {"head_epochs": 1, "all_epochs": 1, "policy": "head-then-all"}})
    )
    assert (
        main(
            [
                "finetune",
                str(ft_target),
                "--from",
                str(tmp_path / "pre"),
                "--run-dir",
                str(tmp_path / "ft"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert main(["standalone", str(target), "--run-dir", str(tmp_path / "sa"), "--no-progress"]) == 0
    ft = json.loads((tmp_path / "ft" / "splits.json").read_text())
    sa = json.loads((tmp_path / "sa" / "splits.json").read_text())
    assert ft == sa  # the two arms see the same records in every split
    ft_cfg = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert ft_cfg["finetune"]["policy"] == "head-then-all" and ft_cfg["finetune"]["pretrained_run"]
    assert ft_cfg["epochs"] == 2  # config.json says what ran: the stages' total

    capsys.readouterr()
    assert main(["finetune", str(target), "--run-dir", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "needs a pre-trained run" in capsys.readouterr().err
    assert main(["train", str(target), "--run-dir", str(tmp_path / "sa"), "--no-progress"]) != 0  # never overwrites


def test_bad_config_key_is_named(tree: Path, tmp_path: Path, capsys) -> None:
    cfg = write_config(tmp_path / "bad.json", tree, tmp_path / "c", epochz=3)
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "epochz" in capsys.readouterr().err


def test_min_likelihood_and_min_count(tree: Path, tmp_path: Path) -> None:
    base = {"dataset": "ptbxl", "root": str(tree), "cache_dir": str(tmp_path)}
    every = load_task({**base, "labels": "diagnostic"}, 100.0, progress=False)
    sure = load_task({**base, "labels": "diagnostic", "min_likelihood": 60}, 100.0, progress=False)
    # fixture: LVH is written with likelihood 50 (records 2, 6, ...): gone at >= 60
    assert "LVH" in every.label_names and "LVH" not in sure.label_names
    few = load_task({**base, "labels": "diagnostic", "min_count": 11}, 100.0, progress=False)
    assert set(few.label_names) == {n for n, c in zip(every.label_names, every.Y.sum(axis=0)) if c >= 11}


def test_a_package_replaced_during_a_run_does_not_fail_it_at_its_end(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `train` needs after training (the model card's writer) is imported before it: a package
    upgraded or edited during a run of hours once failed a finished 24-epoch run at its last step
    (the new model card module could not import from the old, already loaded runfiles module)."""
    import sys

    from ecg_transfer import api
    from ecg_transfer.training import data as training_data

    real = training_data.train_on_data

    def train_then_replace_the_package(*args, **kwargs):
        result = real(*args, **kwargs)
        monkeypatch.setitem(sys.modules, "ecg_transfer.inference.modelcard", None)  # importing it now fails
        return result

    monkeypatch.setattr(training_data, "train_on_data", train_then_replace_the_package)
    config = write_config(tmp_path / "c.json", tree, tmp_path / "cache")
    result = api.train(str(config), tmp_path / "run")
    assert result.test_macro_auc is not None and (tmp_path / "run" / "MODEL_CARD.md").is_file()
