"""The training loop and run directory: learning, schedule, determinism, exact resume, guards."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ecg_transfer import models
from ecg_transfer.errors import ConfigError, DatasetError
from ecg_transfer.training import RunConfig, Stage, load_config, train_run
from ecg_transfer.training.loop import batch_slices, configure_stage
from training_synth import (
    LABELS,
    Killed,
    assert_same_state,
    kill_after,
    killed_after_first_epoch,
    load_state,
    make_data,
    tiny_config,
    without_seconds,
)


@pytest.fixture(scope="module")
def data():
    return make_data()


def test_learns_and_writes_the_run_directory(tmp_path, data):
    X, Y, ids, splits = data
    r = train_run(tiny_config(epochs=8), X, Y, ids, splits, LABELS, tmp_path / "run", progress=False)
    assert r.val_macro_auc is not None and r.val_macro_auc > 0.65
    assert r.test_macro_auc is not None and r.test_macro_auc > 0.65
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {
        "config.json",
        "environment.json",
        "splits.json",
        "checkpoint.pt",
        "model.pt",
        "metrics.jsonl",
        "predictions_val.csv",
        "predictions_test.csv",
    } <= names
    lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines == r.history and [l["epoch"] for l in lines] == list(range(1, 9))
    assert {"epoch", "train_loss", "val_loss", "val_macro_auc", "lr", "seconds"} <= set(lines[0])
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert {"python", "packages", "git", "seed", "hostname", "torch_threads"} <= set(env)
    assert env["packages"]["torch"] and "commit" in env["git"]
    assert load_config(tmp_path / "run" / "config.json") == RunConfig.from_dict(tiny_config(epochs=8))
    sp = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert sp["test"] == [ids[i] for i in splits["test"]]
    # model.pt alone reproduces the saved test predictions
    from ecg_transfer.training import load_model_file, load_predictions

    loaded = load_model_file(r.model_path)
    assert loaded.label_names == LABELS and loaded.fs == 100.0 and loaded.crop_len == 250
    rec, _, _, probs = load_predictions(r.predictions["test"])
    assert rec == [ids[i] for i in splits["test"]]
    assert np.array_equal(
        loaded.predict(X, splits["test"], batch_size=8), probs.astype(np.float32)
    )  # the run's batches


def test_one_cycle_schedule_and_momentum():
    cfg = RunConfig.from_dict(tiny_config(schedule={"max_lr": 0.02, "div_factor": 10.0, "final_div_factor": 100.0}))
    model = models.build(cfg.model, 12, 3, **cfg.model_kwargs)
    steps = 50
    opt, sched = configure_stage(model, Stage("s", 5, "all", 0.02), cfg, steps_per_epoch=10)
    lrs, moms = [], []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["betas"][0])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.002) and max(lrs) == pytest.approx(0.02, rel=1e-3)
    assert int(np.argmax(lrs)) == round(0.3 * steps) - 1  # warm-up over 30 % of the steps
    assert lrs[-1] == pytest.approx(0.02 / 10 / 100, rel=1e-6)
    assert moms[0] == pytest.approx(0.95) and min(moms) == pytest.approx(0.85, abs=1e-3)
    assert opt.param_groups[0]["betas"][1] == 0.99 and opt.param_groups[0]["weight_decay"] == 0.01


def test_batch_slices():
    assert [(s.start, s.stop) for s in batch_slices(40, 16, True)] == [(0, 16), (16, 32)]
    assert [(s.start, s.stop) for s in batch_slices(40, 16, False)] == [(0, 16), (16, 32), (32, 40)]
    assert [(s.start, s.stop) for s in batch_slices(10, 16, True)] == [(0, 10)]  # no full batch: keep it
    assert [(s.start, s.stop) for s in batch_slices(33, 16, False)] == [(0, 16), (16, 32)]  # never a batch of 1


def test_same_seed_same_result_other_seed_differs(tmp_path, data):
    X, Y, ids, splits = data
    runs = [
        train_run(tiny_config(seed=s), X, Y, ids, splits, LABELS, tmp_path / f"r{i}", progress=False)
        for i, s in enumerate((5, 5, 6))
    ]
    assert without_seconds(runs[0].history) == without_seconds(runs[1].history)
    assert_same_state(load_state(runs[0].model_path)["state_dict"], load_state(runs[1].model_path)["state_dict"])
    assert runs[0].predictions["test"].read_bytes() == runs[1].predictions["test"].read_bytes()
    assert without_seconds(runs[0].history) != without_seconds(runs[2].history)


def test_resume_after_kill_equals_uninterrupted(tmp_path, data):
    X, Y, ids, splits = data
    cfg = tiny_config(epochs=3)
    straight = train_run(cfg, X, Y, ids, splits, LABELS, tmp_path / "straight", progress=False)

    run_dir = tmp_path / "killed"
    with pytest.raises(Killed):
        train_run(cfg, X, Y, ids, splits, LABELS, run_dir, progress=False, callbacks=[kill_after(2)])
    assert not (run_dir / "model.pt").exists()
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
    # a half-written line from the killed process must not survive the resume
    with open(run_dir / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 3, "train_lo')
    resumed = train_run(cfg, X, Y, ids, splits, LABELS, run_dir, resume=True, progress=False)

    assert resumed.resumed_from_epoch == 2
    assert_same_state(load_state(straight.model_path)["state_dict"], load_state(resumed.model_path)["state_dict"])
    ck_a, ck_b = load_state(tmp_path / "straight" / "checkpoint.pt"), load_state(run_dir / "checkpoint.pt")
    assert_same_state(ck_a["model"], ck_b["model"])
    assert without_seconds(straight.history) == without_seconds(resumed.history)
    metrics = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert without_seconds(metrics) == without_seconds(straight.history)
    for split in ("val", "test"):
        assert straight.predictions[split].read_bytes() == resumed.predictions[split].read_bytes()
    env = json.loads((run_dir / "environment.json").read_text())
    assert len(env["resumed"]) == 1
    # resuming a finished run only rewrites its outputs, identically
    again = train_run(cfg, X, Y, ids, splits, LABELS, run_dir, resume=True, progress=False)
    assert again.resumed_from_epoch == 3
    assert_same_state(load_state(straight.model_path)["state_dict"], load_state(again.model_path)["state_dict"])


def test_resume_refuses_other_settings_and_fresh_runs_refuse_to_overwrite(tmp_path, data):
    X, Y, ids, splits = data
    run_dir = tmp_path / "run"
    killed_after_first_epoch(run_dir, X, Y, ids, splits)
    with pytest.raises(FileExistsError, match="resume=True"):
        train_run(tiny_config(epochs=2), X, Y, ids, splits, LABELS, run_dir, progress=False)
    with pytest.raises(ConfigError, match="schedule.max_lr"):
        train_run(
            tiny_config(epochs=2, schedule={"max_lr": 0.05}),
            X,
            Y,
            ids,
            splits,
            LABELS,
            run_dir,
            resume=True,
            progress=False,
        )
    other = {**splits, "val": splits["val"][:-1], "test": np.append(splits["test"], splits["val"][-1])}
    with pytest.raises(ConfigError, match="splits"):
        train_run(tiny_config(epochs=2), X, Y, ids, other, LABELS, run_dir, resume=True, progress=False)


def test_resume_compares_the_data_folder_as_a_place_not_its_spelling(tmp_path, data, monkeypatch):
    """A run started with its data folder spelt one way resumes when it is spelt another (relative,
    through a symbolic link: the same folder); another folder is refused, as for finishing a run."""
    X, Y, ids, splits = data
    (tmp_path / "data").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    run_dir = tmp_path / "run"

    def task(root):
        return {"task": {"dataset": "ptbxl", "root": root, "labels": "diagnostic"}}

    def resume(root):
        return train_run(
            tiny_config(epochs=2, **task(root)), X, Y, ids, splits, LABELS, run_dir, resume=True, progress=False
        )

    killed_after_first_epoch(run_dir, X, Y, ids, splits, **task(str(tmp_path / "data")))
    with pytest.raises(ConfigError, match="different settings: config.task.root"):
        resume(str(tmp_path / "other"))
    monkeypatch.chdir(tmp_path)
    r = resume("link")
    assert r.resumed_from_epoch == 1 and len(r.history) == 2


def test_input_guards(tmp_path, data):
    X, Y, ids, splits = data
    leaky = {**splits, "test": np.append(splits["test"], splits["train"][0])}
    with pytest.raises(DatasetError, match="share 1 record"):
        train_run(tiny_config(), X, Y, ids, leaky, LABELS, tmp_path / "a", progress=False)
    with pytest.raises(DatasetError, match="label names"):
        train_run(tiny_config(), X, Y, ids, splits, LABELS[:2], tmp_path / "b", progress=False)
    with pytest.raises(DatasetError, match="split_indices"):
        train_run(tiny_config(), X, Y, ids, {"training": splits["train"]}, LABELS, tmp_path / "c", progress=False)


def test_without_validation_or_test_split(tmp_path, data):
    X, Y, ids, splits = data
    r = train_run(tiny_config(epochs=1), X, Y, ids, {"train": splits["train"]}, LABELS, tmp_path / "a", progress=False)
    assert r.history[0]["val_macro_auc"] is None and r.history[0]["val_loss"] is None
    assert r.predictions == {} and r.val_macro_auc is None and r.test_macro_auc is None
    assert r.model_path.exists()


def test_short_records_with_lengths(tmp_path, data):
    X, Y, ids, splits = data
    lengths = np.full(len(X), X.shape[2])
    lengths[splits["val"][0]] = 200
    X = X.copy()
    X[splits["val"][0], :, 200:] = 0.0  # what the cache stores past a record's end
    with pytest.raises(DatasetError, match=ids[splits["val"][0]]):
        train_run(tiny_config(epochs=1), X, Y, ids, splits, LABELS, tmp_path / "a", lengths=lengths, progress=False)
    r = train_run(
        tiny_config(epochs=1, short_records="pad"),
        X,
        Y,
        ids,
        splits,
        LABELS,
        tmp_path / "b",
        lengths=lengths,
        progress=False,
    )
    assert math.isfinite(r.history[0]["val_loss"])


def test_diverging_loss_stops_the_run(data):
    from ecg_transfer.training import GlobalStandardScaler, TrainingDivergedError, fit
    from ecg_transfer.training.finetune import resolve_stages

    X, Y, ids, splits = data
    X = X.copy()
    X[splits["train"], 0, 100] = np.nan  # every crop of every training record sees it
    cfg = RunConfig.from_dict(tiny_config(epochs=1))
    model = models.build(cfg.model, 12, 3, **cfg.model_kwargs)
    with pytest.raises(TrainingDivergedError, match="epoch 1"):
        fit(
            model,
            X,
            Y,
            splits["train"],
            splits["val"],
            config=cfg,
            stages=resolve_stages(cfg),
            scaler=GlobalStandardScaler(0.0, 1.0),
            progress=False,
        )


def test_validate_every_skips_validation_but_not_the_maths(tmp_path, data):
    X, Y, ids, splits = data
    every = train_run(tiny_config(epochs=5), X, Y, ids, splits, LABELS, tmp_path / "a", progress=False)
    sparse = train_run(
        tiny_config(epochs=5, validate_every=2), X, Y, ids, splits, LABELS, tmp_path / "b", progress=False
    )
    validated = [r["epoch"] for r in sparse.history if r["val_macro_auc"] is not None]
    assert validated == [2, 4, 5]  # every second epoch, and always the last
    for r in sparse.history:  # the epoch's time and the validation's share of it
        assert 0 <= r["val_seconds"] <= r["seconds"]
        assert (r["val_seconds"] > 0) == (r["epoch"] in validated)
    assert [r["train_loss"] for r in sparse.history] == [r["train_loss"] for r in every.history]
    assert sparse.predictions["test"].read_bytes() == every.predictions["test"].read_bytes()
    with pytest.raises(ConfigError, match="validate_every"):
        RunConfig.from_dict(tiny_config(validate_every=0))


def test_validation_is_predicted_once_after_the_last_epoch(tmp_path, data, monkeypatch):
    import ecg_transfer.training.loop as loop_mod
    import ecg_transfer.training.run as run_mod

    calls = []
    real = loop_mod.predict_records

    def counting(model, X, idx, **kw):
        calls.append(len(idx))
        return real(model, X, idx, **kw)

    monkeypatch.setattr(loop_mod, "predict_records", counting)
    monkeypatch.setattr(run_mod, "predict_records", counting)
    X, Y, ids, splits = data
    r = train_run(tiny_config(epochs=2, validate_every=5), X, Y, ids, splits, LABELS, tmp_path / "a", progress=False)
    assert calls == [len(splits["val"]), len(splits["test"])]  # last epoch's validation, then test only
    # and the saved validation predictions are those of the final weights
    from ecg_transfer.training import load_model_file, load_predictions

    _, _, _, probs = load_predictions(r.predictions["val"])
    assert np.allclose(load_model_file(r.model_path).predict(X, splits["val"], batch_size=8), probs, atol=1e-6)


def test_memory_format_is_wired_into_training(tmp_path, data):
    X, Y, ids, splits = data
    runs = {
        fmt: train_run(
            tiny_config(epochs=2, memory_format=fmt), X, Y, ids, splits, LABELS, tmp_path / fmt, progress=False
        )
        for fmt in ("contiguous", "channels_last")
    }
    a = [r["train_loss"] for r in runs["contiguous"].history]
    b = [r["train_loss"] for r in runs["channels_last"].history]
    assert np.allclose(a, b, rtol=1e-3) and a != b  # the same maths in another layout: rounding differs
    lstm = {**tiny_config(model="lstm", memory_format="channels_last", epochs=1), "model_kwargs": {"hidden": 8}}
    with pytest.raises(ConfigError, match="memory_format"):
        train_run(lstm, X, Y, ids, splits, LABELS, tmp_path / "lstm", progress=False)


def test_speed_settings_may_change_on_resume(tmp_path, data):
    """memory_format and optimizer_impl are resumable: a foreach, 1-D checkpoint goes on fused, channels-last."""
    X, Y, ids, splits = data
    run_dir = tmp_path / "run"
    with pytest.raises(Killed):
        train_run(
            tiny_config(epochs=3, memory_format="contiguous", optimizer_impl="foreach"),
            X,
            Y,
            ids,
            splits,
            LABELS,
            run_dir,
            progress=False,
            callbacks=[kill_after(2)],
        )
    with pytest.raises(ConfigError, match="config.seed"):  # a defining key still may not change
        train_run(tiny_config(epochs=3, seed=2), X, Y, ids, splits, LABELS, run_dir, resume=True, progress=False)
    r = train_run(
        tiny_config(epochs=3, memory_format="auto", optimizer_impl="auto"),
        X,
        Y,
        ids,
        splits,
        LABELS,
        run_dir,
        resume=True,
        progress=False,
    )
    assert r.resumed_from_epoch == 2 and len(r.history) == 3
    assert all(np.isfinite(h["train_loss"]) for h in r.history)
