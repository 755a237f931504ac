"""Fine-tuning: policies freeze what they should, the head is replaced, both arms share split and
preprocessing, and a run resumes exactly in the middle of a multi-stage policy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ecg_transfer import models
from ecg_transfer.errors import ConfigError
from ecg_transfer.training import GlobalStandardScaler, RunConfig, Stage, resolve_stages, train_run
from ecg_transfer.training.finetune import init_model
from ecg_transfer.training.loop import apply_stage, configure_stage
from ecg_transfer.training.modelfile import load_model_file
from ecg_transfer.training.predict import load_predictions
from training_synth import (
    LABELS,
    Killed,
    assert_same_state,
    kill_after,
    load_state,
    make_data,
    tiny_config,
    without_seconds,
)

TARGET_LABELS = ["A", "B"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    X, Y, ids, splits = make_data(seed=0)
    run_dir = tmp_path_factory.mktemp("pre") / "run"
    train_run(tiny_config(epochs=2), X, Y, ids, splits, LABELS, run_dir, progress=False)
    return run_dir


@pytest.fixture(scope="module")
def target():
    X, Y, ids, splits = make_data(n=48, seed=7)
    return X * 2.0, np.ascontiguousarray(Y[:, :2]), [f"g{i}" for i in range(len(ids))], splits


def ft_config(**finetune):
    return tiny_config(finetune=finetune)


def _groups_by_name(model):
    """Layer group of each parameter name, from the tiny fcn_wang's structure (conv1 | conv2 | head)."""
    return {
        n: 0 if n.startswith("body.conv1") else 1 if n.startswith("body.conv2") else 2
        for n, _ in model.named_parameters()
    }


# ----- presets and freezing, unit level ---------------------------------------------------


def test_policy_presets():
    head_all = resolve_stages(RunConfig.from_dict({"finetune": {"policy": "head-then-all"}}))
    assert [(s.epochs, s.train, s.lr, s.frozen_bn) for s in head_all] == [
        (30, "head", 1e-2, "train"),
        (30, "all", (1e-5, 1e-3), "train"),
    ]
    gradual = resolve_stages(RunConfig.from_dict({"finetune": {"policy": "gradual"}}))
    assert [(s.epochs, s.train, s.lr) for s in gradual] == [
        (10, "head", 1e-2),
        (10, "head", 1e-2),
        (10, "last:2", 1e-3),
        (10, "all", (1e-6, 1e-4)),
    ]
    probe = resolve_stages(RunConfig.from_dict({"epochs": 7, "finetune": {"policy": "linear-probe"}}))
    assert [(s.epochs, s.train, s.frozen_bn) for s in probe] == [(7, "head", "frozen")]
    everything = resolve_stages(RunConfig.from_dict({"finetune": {"policy": "all", "lr": 1e-3, "epochs": 4}}))
    assert [(s.epochs, s.train, s.lr) for s in everything] == [(4, "all", 1e-3)]
    scratch = resolve_stages(RunConfig())
    assert [(s.epochs, s.train, s.lr) for s in scratch] == [(50, "all", 1e-2)]
    custom = resolve_stages(RunConfig.from_dict({"finetune": {"policy": "head-then-all", "lr": 0.1, "head_epochs": 2}}))
    assert [(s.epochs, s.lr) for s in custom] == [(2, 0.1), (30, (1e-4, 1e-2))]


@pytest.mark.parametrize(
    "train, frozen_bn, trainable_groups, frozen_bn_trains",
    [
        ("head", "train", {2}, True),
        ("head", "frozen", {2}, False),
        ("last:2", "train", {1, 2}, True),
        ("last:2", "frozen", {1, 2}, False),
        ("all", "train", {0, 1, 2}, True),
    ],
)
def test_apply_stage_sets_requires_grad(train, frozen_bn, trainable_groups, frozen_bn_trains):
    cfg = RunConfig.from_dict(tiny_config())
    model = models.build(cfg.model, 12, 3, **cfg.model_kwargs)
    group_of = _groups_by_name(model)
    apply_stage(model, Stage("s", 1, train, 1e-2, frozen_bn))
    for name, p in model.named_parameters():
        is_bn = ".bn" in name
        expected = group_of[name] in trainable_groups or (is_bn and frozen_bn_trains)
        assert p.requires_grad == expected, name


def test_discriminative_lrs_over_layer_groups():
    cfg = RunConfig.from_dict(tiny_config())
    model = models.build(cfg.model, 12, 3, **cfg.model_kwargs)
    opt, _ = configure_stage(model, Stage("all", 1, "all", (1e-3, 1e-1)), cfg, steps_per_epoch=4)
    assert [g["max_lr"] for g in opt.param_groups] == pytest.approx([1e-3, 1e-2, 1e-1])
    opt, _ = configure_stage(model, Stage("head", 1, "head", 1e-2, "frozen"), cfg, steps_per_epoch=4)
    assert len(opt.param_groups) == 1  # frozen groups are not in the optimizer at all


# ----- the pre-trained start --------------------------------------------------------------


@pytest.mark.parametrize("new_head", ["output", "full"])
def test_init_replaces_the_head_and_keeps_the_body(pretrained, new_head):
    pre = load_model_file(pretrained)
    cfg = RunConfig.from_dict(ft_config(policy="all", new_head=new_head))
    torch.manual_seed(0)
    model, loaded = init_model(cfg, 12, 2, pretrained)
    assert loaded is not None and model.head.out.out_features == 2
    pre_state, state = pre.model.state_dict(), model.state_dict()
    for k in state:
        if k.startswith("body."):
            assert torch.equal(state[k], pre_state[k]), k
    assert torch.equal(state["head.fc0.weight"], pre_state["head.fc0.weight"]) == (new_head == "output")
    torch.manual_seed(0)
    same_k, _ = init_model(cfg, 12, 3, pretrained)  # same label count: still a new output layer
    assert not torch.equal(same_k.state_dict()["head.out.weight"], pre_state["head.out.weight"])


def test_policy_guards(pretrained, target, tmp_path):
    X, Y, ids, splits = target
    with pytest.raises(ConfigError, match="no pre-trained run"):
        train_run(ft_config(policy="gradual"), X, Y, ids, splits, TARGET_LABELS, tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="finetune.policy"):
        train_run(tiny_config(), X, Y, ids, splits, TARGET_LABELS, tmp_path / "b", init_from=pretrained, progress=False)
    with pytest.raises(ConfigError, match="'fs'"):
        train_run(
            tiny_config(fs=200.0, finetune={"policy": "all"}),
            X,
            Y,
            ids,
            splits,
            TARGET_LABELS,
            tmp_path / "c",
            init_from=pretrained,
            progress=False,
        )
    with pytest.raises(ConfigError, match="model.pt"):
        train_run(
            ft_config(policy="all"),
            X,
            Y,
            ids,
            splits,
            TARGET_LABELS,
            tmp_path / "d",
            init_from=tmp_path / "nowhere",
            progress=False,
        )
    with pytest.raises(ConfigError, match="model_kwargs.filters"):
        train_run(
            tiny_config(model_kwargs={"filters": [4, 4]}, finetune={"policy": "all"}),
            X,
            Y,
            ids,
            splits,
            TARGET_LABELS,
            tmp_path / "e",
            init_from=pretrained,
            progress=False,
        )


# ----- policies, end to end ---------------------------------------------------------------


def _snapshots():
    snaps = []

    def callback(row, model):
        snaps.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    return snaps, callback


def test_stages_change_exactly_their_parameters(pretrained, target, tmp_path):
    X, Y, ids, splits = target
    stages = [
        {"epochs": 1, "train": "head", "lr": 1e-2},
        {"epochs": 1, "train": "last:2", "lr": 1e-3},
        {"epochs": 1, "train": "all", "lr": [1e-6, 1e-4]},
    ]
    snaps, cb = _snapshots()
    r = train_run(
        ft_config(policy="gradual", stages=stages),
        X,
        Y,
        ids,
        splits,
        TARGET_LABELS,
        tmp_path / "ft",
        init_from=pretrained,
        progress=False,
        callbacks=[cb],
    )
    assert [h["stage"] for h in r.history] == ["stage-1", "stage-2", "stage-3"]
    start = load_model_file(pretrained).model.state_dict()

    def changed(a, b, key):
        return not torch.equal(a[key], b[key])

    # stage 1, head only (fastai train_bn: body BN keeps training)
    assert not changed(start, snaps[0], "body.conv1.conv.weight")
    assert not changed(start, snaps[0], "body.conv2.conv.weight")
    assert changed(start, snaps[0], "body.conv1.bn.weight")
    assert changed(start, snaps[0], "head.fc0.weight")
    # stage 2, last two groups: conv2 and head
    assert not changed(snaps[0], snaps[1], "body.conv1.conv.weight")
    assert changed(snaps[0], snaps[1], "body.conv2.conv.weight")
    assert changed(snaps[0], snaps[1], "head.out.weight")
    # stage 3, everything, with lrs rising x10 per group from 1e-6 to 1e-4
    assert changed(snaps[1], snaps[2], "body.conv1.conv.weight")
    lrs = r.history[2]["lrs"]
    assert lrs[1] / lrs[0] == pytest.approx(10.0) and lrs[2] / lrs[1] == pytest.approx(10.0)


def test_linear_probe_keeps_the_body_fixed(pretrained, target, tmp_path):
    X, Y, ids, splits = target
    r = train_run(
        ft_config(policy="linear-probe", epochs=2),
        X,
        Y,
        ids,
        splits,
        TARGET_LABELS,
        tmp_path / "lp",
        init_from=pretrained,
        progress=False,
    )
    start = load_model_file(pretrained).model.state_dict()
    end = load_model_file(r.model_path).model.state_dict()
    body = [k for k in start if k.startswith("body.")]
    assert any("running_mean" in k for k in body)
    for k in body:  # weights and BN running statistics alike
        assert torch.equal(start[k], end[k]), k
    assert not torch.equal(start["head.fc0.weight"], end["head.fc0.weight"])


def test_standalone_and_finetuned_share_split_and_preprocessing(pretrained, target, tmp_path):
    X, Y, ids, splits = target
    alone = train_run(tiny_config(epochs=2), X, Y, ids, splits, TARGET_LABELS, tmp_path / "alone", progress=False)
    tuned = train_run(
        tiny_config(epochs=2, finetune={"policy": "all"}),
        X,
        Y,
        ids,
        splits,
        TARGET_LABELS,
        tmp_path / "tuned",
        init_from=pretrained,
        progress=False,
    )
    for name in ("splits.json",):
        assert (tmp_path / "alone" / name).read_text() == (tmp_path / "tuned" / name).read_text()
    for split in ("val", "test"):
        a, b = load_predictions(alone.predictions[split]), load_predictions(tuned.predictions[split])
        assert a[0] == b[0] and a[1] == b[1] and np.array_equal(a[2], b[2])
    s_alone, s_tuned = load_model_file(alone.model_path).scaler, load_model_file(tuned.model_path).scaler
    assert s_alone == s_tuned == GlobalStandardScaler().fit(X, splits["train"])
    assert s_tuned != load_model_file(pretrained).scaler
    ca = json.loads((tmp_path / "alone" / "config.json").read_text())
    cb = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert {k for k in ca if ca[k] != cb[k]} == {"finetune"}
    # the other scaler choice reuses the pre-training statistics
    reuse = train_run(
        ft_config(policy="all", epochs=1, scaler="pretrained"),
        X,
        Y,
        ids,
        splits,
        TARGET_LABELS,
        tmp_path / "reuse",
        init_from=pretrained,
        progress=False,
    )
    assert load_model_file(reuse.model_path).scaler == load_model_file(pretrained).scaler


@pytest.mark.parametrize("kill_at", [1, 2, 3])  # inside stage 1, at the stage boundary, inside stage 2
def test_resume_mid_policy_equals_uninterrupted(pretrained, target, tmp_path, kill_at):
    X, Y, ids, splits = target
    cfg = ft_config(policy="head-then-all", head_epochs=2, all_epochs=2)
    straight = train_run(
        cfg, X, Y, ids, splits, TARGET_LABELS, tmp_path / "straight", init_from=pretrained, progress=False
    )
    run_dir = tmp_path / "killed"
    with pytest.raises(Killed):
        train_run(
            cfg,
            X,
            Y,
            ids,
            splits,
            TARGET_LABELS,
            run_dir,
            init_from=pretrained,
            progress=False,
            callbacks=[kill_after(kill_at)],
        )
    resumed = train_run(
        cfg, X, Y, ids, splits, TARGET_LABELS, run_dir, resume=True, init_from=pretrained, progress=False
    )
    assert resumed.resumed_from_epoch == kill_at
    assert_same_state(load_state(straight.model_path)["state_dict"], load_state(resumed.model_path)["state_dict"])
    assert without_seconds(straight.history) == without_seconds(resumed.history)
    assert straight.predictions["test"].read_bytes() == resumed.predictions["test"].read_bytes()
