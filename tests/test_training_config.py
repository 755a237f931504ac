"""Run config: benchmark defaults, TOML/JSON loading, and errors that name the key."""

from __future__ import annotations

import json

import pytest

from ecg_transfer.errors import ConfigError
from ecg_transfer.training import RunConfig, load_config, resolve_stages, save_config


def test_defaults_are_the_benchmark_recipe():
    c = RunConfig()
    # values from docs/REFERENCE.md, "The benchmark recipe"
    assert (c.batch_size, c.epochs, c.loss) == (128, 50, "bce-with-logits")
    assert (c.crop_seconds, c.stride_seconds, c.aggregate) == (2.5, 1.25, "max")
    assert c.crop_len == 250 and c.stride == 125  # at 100 Hz
    assert c.optimizer.name == "adamw" and c.optimizer.betas == (0.9, 0.99) and c.optimizer.weight_decay == 1e-2
    s = c.schedule
    assert (s.name, s.max_lr, s.div_factor, s.pct_start) == ("one-cycle", 1e-2, 25.0, 0.3)
    assert (s.max_momentum, s.base_momentum) == (0.95, 0.85)
    assert c.finetune.policy == "none" and c.finetune.scaler == "refit"
    assert RunConfig(fs=500.0).crop_len == 1250


def test_toml_and_json_load_the_same(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text(
        'model = "fcn_wang"\nfs = 500.0\n'
        '[task]\nlabels = "diagnostic"\ndataset = "ptbxl"\nroot = "data/ptbxl"\n'
        "[optimizer]\nweight_decay = 0.05\n"
        "[schedule]\ndiv_factor = 10.0\n"
        '[finetune]\npolicy = "gradual"\npretrained_run = "runs/pre"\n'
        '[[finetune.stages]]\nepochs = 2\ntrain = "head"\nlr = 0.01\n'
        '[[finetune.stages]]\nepochs = 3\ntrain = "all"\nlr = [1e-6, 1e-4]\n'
    )
    c = load_config(toml)
    assert c.model == "fcn_wang" and c.fs == 500.0 and c.epochs == 5  # the stages' total
    assert (c.task.labels, c.task.dataset, c.task.val_folds) == ("diagnostic", "ptbxl", (9,))
    assert c.optimizer.weight_decay == 0.05 and c.optimizer.betas == (0.9, 0.99)
    assert c.schedule.div_factor == 10.0
    assert [s.lr for s in c.finetune.stages] == [0.01, (1e-6, 1e-4)]
    save_config(c, tmp_path / "resolved.json")
    assert load_config(tmp_path / "resolved.json") == c
    assert json.loads((tmp_path / "resolved.json").read_text())["schedule"]["div_factor"] == 10.0
    stages = resolve_stages(c)
    assert [(s.epochs, s.train) for s in stages] == [(2, "head"), (3, "all")]


@pytest.mark.parametrize(
    "data, key, allowed",
    [
        ({"optimiser": {}}, "optimiser", "optimizer"),
        ({"schedule": {"max_rate": 1}}, "schedule.max_rate", "max_lr"),
        ({"schedule": {"max_lr": "fast"}}, "schedule.max_lr", "a number"),
        ({"schedule": {"max_lr": -1.0}}, "schedule.max_lr", "> 0"),
        ({"schedule": {"pct_start": 1.5}}, "schedule.pct_start", "< 1"),
        ({"batch_size": 12.5}, "batch_size", "an integer"),
        ({"deterministic": "yes"}, "deterministic", "true/false"),
        ({"aggregate": "median"}, "aggregate", "max, mean"),
        ({"model": "resnet9000"}, "model", "xresnet1d101"),
        ({"optimizer": {"betas": [0.9]}}, "optimizer.betas", "a list of 2"),
        ({"finetune": {"policy": "freeze-some"}}, "finetune.policy", "head-then-all"),
        (
            {"finetune": {"policy": "gradual", "stages": [{"epochs": 1, "train": "middle"}]}},
            "finetune.stages[0].train",
            "last:N",
        ),
        ({"finetune": {"policy": "gradual", "stages": [{"epochs": 0}]}}, "finetune.stages[0].epochs", ">= 1"),
        ({"finetune": {"policy": "gradual", "stages": [{"lr": [1e-6, "x"]}]}}, "finetune.stages[0].lr[1]", "a number"),
        ({"finetune": {"head_epochs": 5}}, "finetune.head_epochs", "head-then-all"),
        ({"finetune": {"pretrained_run": "x"}}, "finetune.pretrained_run", "gradual"),
        ({"fs": 100.0, "crop_seconds": 2.555}, "crop_seconds", "whole number"),
        ({"stride_seconds": 5.0}, "stride_seconds", "crop_seconds"),
        ({"device": "tpu"}, "device", "cuda"),
    ],
)
def test_errors_name_the_key_and_what_is_allowed(data, key, allowed):
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict(data)
    msg = str(info.value)
    assert repr(key) in msg or f"'{key}'" in msg, msg
    assert allowed in msg, msg


def test_direct_construction_is_validated_too():
    with pytest.raises(ConfigError, match="'epochs'"):
        RunConfig(epochs=0)


def test_file_errors(tmp_path):
    bad = tmp_path / "run.toml"
    bad.write_text("epochs = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    other = tmp_path / "run.yaml"
    other.write_text("epochs: 3\n")
    with pytest.raises(ConfigError, match=".toml or .json"):
        load_config(other)
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"epoch": 3}))
    with pytest.raises(ConfigError, match=r"typo\.json.*'epoch'"):
        load_config(typo)


def test_changed_settings_compares_paths_as_places(tmp_path, monkeypatch):
    """A run's data folder and pre-trained run are places: a relative and an absolute spelling,
    or a run folder and its model.pt, are the same setting; another folder is not."""
    from ecg_transfer.training.run import changed_settings

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    task = {"dataset": "ptbxl", "root": "data", "labels": "diagnostic"}
    asked = RunConfig.from_dict({"task": task, "finetune": {"policy": "all", "pretrained_run": "runs/ssl"}})
    saved = asked.to_dict()
    saved["task"]["root"] = str(tmp_path / "data")
    saved["finetune"]["pretrained_run"] = str(tmp_path / "runs" / "ssl" / "model.pt")
    assert changed_settings(saved, asked) == {}
    saved["task"]["root"] = str(tmp_path / "other")
    saved["finetune"]["pretrained_run"] = str(tmp_path / "runs" / "ssl2" / "model.pt")
    assert set(changed_settings(saved, asked)) == {"task.root", "finetune.pretrained_run"}
