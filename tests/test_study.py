"""The study machinery without training: spec validation, the plan and its keys, the run store's
states and locks, and the runner's skip / fail-and-go-on / resume / shard behaviour (with a fake
``execute`` that records what it was asked to run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ecg_transfer.errors import ConfigError
from ecg_transfer.study.plan import fraction_parts, plan_study, run_key, select_shard
from ecg_transfer.study.runner import StudyRunner, parse_shard
from ecg_transfer.study.spec import load_spec, spec_from_dict
from ecg_transfer.study.store import RunStore

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "studies" / "ptbxl_to_g12ec.toml"


def minimal(**over) -> dict:
    d = {"source": {"root": "data/ptbxl"}, "target": {"root": "data/g12ec"}}
    for k, v in over.items():
        d.setdefault(k, {}).update(v)
    return d


# ----- spec ---------------------------------------------------------------------------------


def test_shipped_spec_and_its_smoke_and_laptop_profiles_are_valid():
    full = load_spec(SPEC)
    quick = load_spec(SPEC, "smoke")
    assert full.data["study"]["protocols"] == ["seed18", "cinc2020"]
    assert full.data["experiments"]["target_share"]["shares"] == [10, 20, 30, 50, 70, 80, 90]
    assert full.data["experiments"]["source_share"]["shares"] == [25, 50, 75, 100]
    assert full.data["experiments"]["sampling_rate"]["rates"] == [500, 250, 100, 50]
    assert quick.data["study"]["model"] != full.data["study"]["model"]
    assert quick.digest != full.digest and quick.out_dir() != full.out_dir()
    assert quick.data["source"]["labels"] == "diagnostic"  # merged, not replaced


@pytest.mark.parametrize(
    "over, key",
    [
        ({"study": {"modle": "x"}}, "study.modle"),
        ({"study": {"model": "resnet9000"}}, "study.model"),
        ({"study": {"protocols": ["seed18", "nope"]}}, "study.protocols"),
        ({"study": {"seeds": []}}, "study.seeds"),
        ({"study": {"bootstrap": 3}}, "study.bootstrap"),
        ({"source": {"labels": "everything"}}, "source.labels"),
        ({"source": {"train_fraction": 0}}, "source.train_fraction"),
        ({"target": {"val_folds": [8]}}, "target.*_folds"),
        ({"target": {"test_folds": [11]}}, "target.test_folds"),
        ({"experiments": {"target_share": {"shares": [10, 100]}}}, "experiments.target_share.shares"),
        ({"experiments": {"calibration": {"methods": ["magic"]}}}, "experiments.calibration.methods"),
        ({"experiments": {"frequency": {"inputs": ["wavelet"]}}}, "experiments.frequency.inputs"),
        ({"experiments": {"typo": {}}}, "experiments.typo"),
        ({"finetune": {"policy": "none"}}, "finetune.policy"),
    ],
)
def test_a_wrong_spec_names_the_key_and_what_is_allowed(over, key):
    with pytest.raises(ConfigError, match=key.replace("*", r"\*").replace(".", r"\.")):
        spec_from_dict(minimal(**over))


def test_missing_roots_unknown_profile_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="source.root"):
        spec_from_dict({"target": {"root": "x"}})
    with pytest.raises(ConfigError, match="profile 'fast' is not in"):
        spec_from_dict(minimal(), profile="fast")
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\nname = 1")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_spec(bad)
    with pytest.raises(ConfigError, match="no such study spec"):
        load_spec(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match=r"profiles\.q\.study\.nme"):
        spec_from_dict({**minimal(), "profiles": {"q": {"study": {"nme": "x"}}}}, profile="q")


# ----- plan ---------------------------------------------------------------------------------


def test_fraction_parts():
    assert fraction_parts([10, 20, 30, 50, 70, 80, 90]) == 10
    assert fraction_parts([25, 50, 75, 100]) == 4
    assert fraction_parts([5, 10]) == 20
    assert fraction_parts([100]) == 2


def test_plan_shares_runs_between_experiments_and_pairs_the_arms():
    spec = load_spec(SPEC)
    runs = plan_study(spec)
    keys = [r.key for r in runs]
    assert len(keys) == len(set(keys))
    assert [r.kind for r in runs][:10] == ["pretrain"] * 10  # 1 base + 3 shares + 3 rates + 3 inputs
    assert plan_study(spec)[5].key == runs[5].key  # deterministic
    by_name = {u["name"]: r for r in runs for u in r.uses}
    base = by_name["pretrain/diagnostic/fs500/share100/time"]
    # the headline's fine-tuned run at the base rate is experiment 3's and 5's time-domain run
    head = by_name["headline/seed18/finetuned/s0"]
    assert {u["experiment"] for u in head.uses} == {"headline", "exp3", "exp5"}
    assert head.depends == base.key
    # the two arms differ only in the initial weights and the stage schedule
    fine, alone = head.config, by_name["headline/seed18/standalone/s0"].config
    assert fine["task"] == alone["task"] and fine["fs"] == alone["fs"] and fine["seed"] == alone["seed"]
    # (epochs: the fine-tuned arm's is its stages' total, the standalone arm's is standalone.epochs;
    # both 40 here, as in the original study)
    assert {k for k in set(fine) | set(alone) if fine.get(k) != alone.get(k)} == {"finetune"}
    assert alone["finetune"]["policy"] == "none" and fine["finetune"]["policy"] == "gradual"
    assert fine["epochs"] == alone["epochs"] == 40
    # experiment 1 "rest": validation fold kept apart, the pool is everything else, test = the rest
    rest = by_name["exp1-rest/share30/repeat1/seed18/finetuned/s1"].config["task"]
    assert rest["val_folds"] == [9] and rest["train_folds"] == [1, 2, 3, 4, 5, 6, 7, 8, 10]
    assert rest["test_on_rest"] is True and rest["test_folds"] == [] and rest["train_fraction"] == 0.3
    assert rest["fold_seed"] == 1 and rest["fraction_seed"] == 1
    fixed = by_name["exp1-fixed/share30/repeat1/seed18/standalone/s1"].config["task"]
    assert fixed["test_folds"] == [10] and fixed["train_fraction"] == 0.3 and fixed["fold_seed"] == 0
    # experiment 2: PTB-XL subsets of folds 1-8, always tested on fold 10, fine-tuned on 10 % "rest"
    from ecg_transfer.datasets.task import task_settings

    pre25 = task_settings(by_name["exp2/pretrain/share25"].config["task"])
    assert pre25["train_fraction"] == 0.25 and pre25["test_folds"] == [10] and pre25["val_folds"] == [9]
    assert pre25["train_folds"] == [1, 2, 3, 4, 5, 6, 7, 8] and not pre25["test_on_rest"]
    assert (
        by_name["exp2/share100/repeat0/seed18/finetuned/s0"].key
        == by_name["exp1-rest/share10/repeat0/seed18/finetuned/s0"].key
    )
    # experiment 3: PTB-XL from records500 above 100 Hz, from records100 at and below
    assert by_name["exp3/pretrain/fs250"].config["task"]["source_fs"] == 500
    assert by_name["exp3/pretrain/fs50"].config["task"]["source_fs"] == 100
    assert by_name["exp3/fs50/seed18/finetuned/s0"].config["fs"] == 50.0
    # experiment 5: the input kind on both the pre-training and the target runs
    assert by_name["exp5/pretrain/stft"].config["input"] == "stft"
    assert by_name["exp5/stft/seed18/standalone/s2"].config["input"] == "stft"


def test_run_key_ignores_what_does_not_change_the_result():
    cfg = {
        "model": "fcn_wang",
        "fs": 100.0,
        "seed": 0,
        "finetune": {"policy": "gradual"},
        "task": {"dataset": "cinc", "root": "data/g12ec", "labels": "protocol:seed18"},
    }
    k = run_key(cfg, "parent")
    assert run_key({**cfg, "device": "cuda", "num_threads": 8, "validate_every": 5}, "parent") == k
    speed = {"memory_format": "contiguous", "compile": "default", "optimizer_impl": "foreach"}
    assert run_key({**cfg, **speed}, "parent") == k
    # every resumable setting of a run is also left out of its study key, and nothing else is
    from ecg_transfer.study.plan import NON_DEFINING
    from ecg_transfer.training.config import RESUMABLE_KEYS

    assert set(NON_DEFINING) == set(RESUMABLE_KEYS)
    assert run_key({**cfg, "finetune": {"policy": "gradual", "pretrained_run": "/else/where"}}, "parent") == k
    assert run_key({**cfg, "seed": 1}, "parent") != k
    assert run_key(cfg, "other-parent") != k
    # the key is the hash of the resolved settings: a default written out is the same run
    assert run_key({**cfg, "batch_size": 128, "task": {**cfg["task"], "n_folds": 10}}, "parent") == k
    assert run_key({**cfg, "task": {**cfg["task"], "n_folds": 12}}, "parent") != k
    # keys are made of what a run sets away from the defaults: a key added later with a neutral
    # default (precision = "fp32") keeps every existing study's keys; a value that differs does not
    assert run_key({**cfg, "precision": "fp32"}, "parent") == k
    assert run_key({**cfg, "precision": "bf16"}, "parent") != k


def test_a_changed_default_keeps_the_keys_of_stored_runs():
    """[ssl] method's default moved from contrastive to cpc: the study keys of SSL runs (and so of
    every run fine-tuned from one) must stay those they were stored under. The keys below were
    computed by the code before the change (commit d848646); a key that moves orphans a user's
    finished pre-training."""
    task = {"dataset": "ptbxl", "root": "data/ptbxl", "labels": "diagnostic"}
    base = {"model": "xresnet1d50", "epochs": 3, "task": task}
    stored = {
        "06534acaec0286a1": {"method": "contrastive"},
        "7830e27fe1531e03": {"method": "cpc"},
        "7ecd870517bfdb29": {"method": "masked"},
        "200370fc2def7d2b": {"method": "contrastive", "temperature": 0.1},
    }
    for key, ssl in stored.items():
        assert run_key({**base, "ssl": ssl}, None) == key, ssl
    assert run_key({**base, "ssl": {}}, None) == "7830e27fe1531e03"  # the default now: cpc
    assert run_key(base, None) == "9b4adb5f01e7ec84"  # supervised runs: untouched


def test_shards_cover_the_plan_once():
    runs = plan_study(load_spec(SPEC, "smoke"))
    shards = [select_shard(runs, (i, 3)) for i in (1, 2, 3)]
    assert sorted(r.key for s in shards for r in s) == sorted(r.key for r in runs)
    assert all(any(r.kind == "pretrain" for r in s) for s in shards)
    # a comparison's training lengths stay together: every shard holds each length alike
    for s in shards:
        lengths = [u["length"] for r in s for u in r.uses[:1] if r.kind != "pretrain"]
        assert lengths.count(1.0) == lengths.count(2.0) > 0
    full = plan_study(load_spec(SPEC))
    epochs = [sum(r.config["epochs"] for r in select_shard(full, (i, 3)) if r.kind != "pretrain") for i in (1, 2, 3)]
    assert max(epochs) < 1.2 * min(epochs), epochs
    assert parse_shard("2/3") == (2, 3)
    for bad in ("0/3", "4/3", "x", "1-3"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


# ----- store --------------------------------------------------------------------------------


def test_store_states_and_locks(tmp_path):
    store = RunStore(tmp_path)
    assert store.state("k")["state"] == "missing"
    assert store.acquire("k")
    assert store.state("k")["state"] == "running"
    assert not store.acquire("k")  # held by a live process (this one)
    store.release("k")
    (store.run_dir("k") / "checkpoint.pt").write_bytes(b"x")
    assert store.state("k")["state"] == "interrupted"
    store.mark("k", "failed", error="boom")
    assert store.state("k") == {**store.state("k"), "state": "failed", "error": "boom"}
    store.mark("k", "done")
    assert store.state("k")["state"] == "done"


def test_a_lock_left_by_a_killed_process_is_stale_and_taken_over(tmp_path):
    store = RunStore(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    import socket

    store.run_dir("k").mkdir(parents=True)
    (store.run_dir("k") / "lock").write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))
    assert store.state("k")["state"] == "interrupted"
    assert store.acquire("k")
    # another host's lock: alive while its heartbeat is fresh, stale after STALE_SECONDS
    store.release("k")
    (store.run_dir("k") / "lock").write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    assert store.state("k")["state"] == "running" and not store.acquire("k")
    old = time.time() - 3600
    os.utime(store.run_dir("k") / "lock", (old, old))
    assert store.acquire("k")


# ----- runner (fake execution) --------------------------------------------------------------


class Recorder:
    def __init__(self, fail: set[str] = frozenset(), interrupt_at: str | None = None):
        self.calls: list[str] = []
        self.fail = fail
        self.interrupt_at = interrupt_at

    def __call__(self, runner, run):
        self.calls.append(run.name)
        if run.depends is not None:  # the pre-training run is done before anything starts from it
            assert runner.store.state(run.depends)["state"] == "done"
        if run.name == self.interrupt_at:
            raise KeyboardInterrupt
        if run.name in self.fail:
            raise RuntimeError(f"synthetic failure of {run.name}")


def small_spec():
    return spec_from_dict(
        minimal(
            study={"seeds": [0], "protocols": ["seed18"], "model": "fcn_wang"},
            experiments={
                "target_share": {"enabled": False},
                "source_share": {"enabled": False},
                "sampling_rate": {"rates": [100]},
                "frequency": {"inputs": ["spectrum"]},
            },
        )
    )


def test_runner_skips_done_records_failures_and_goes_on(tmp_path):
    spec = small_spec()
    runs = plan_study(spec)
    names = [r.name for r in runs]
    spectrum_pre = next(r.name for r in runs if r.kind == "pretrain" and r.config.get("input") == "spectrum")
    rec = Recorder(fail={spectrum_pre})
    s = StudyRunner(spec, tmp_path, execute=rec, echo=lambda m: None).run()
    # the failed pre-training run's fine-tuned run is not attempted but recorded as failed
    dependants = [r.name for r in runs if r.depends == next(x.key for x in runs if x.name == spectrum_pre)]
    assert set(rec.calls) == set(names) - set(dependants)
    assert len(s.failed) == 1 + len(dependants)
    store = RunStore(tmp_path)
    failed = {r.name: store.state(r.key) for r in runs if store.state(r.key)["state"] == "failed"}
    assert "synthetic failure" in failed[spectrum_pre]["error"] and "Traceback" in failed[spectrum_pre]["traceback"]
    assert all("pre-training run" in failed[d]["error"] for d in dependants)
    assert json.loads((tmp_path / "plan.json").read_text())["runs"][0]["key"] == runs[0].key
    assert (tmp_path / "results.json").exists() and (tmp_path / "spec.toml").exists() is False  # dict spec
    # again: nothing left but the failed ones, which stay failed unless asked
    rec2 = Recorder()
    StudyRunner(spec, tmp_path, execute=rec2, echo=lambda m: None).run()
    assert rec2.calls == []
    rec3 = Recorder()
    StudyRunner(spec, tmp_path, execute=rec3, echo=lambda m: None, retry_failed=True).run()
    assert set(rec3.calls) == {spectrum_pre, *dependants}
    assert all(store.state(r.key)["state"] == "done" for r in runs)


def test_an_interrupted_study_loses_only_the_run_in_flight(tmp_path):
    spec = small_spec()
    runs = plan_study(spec)
    victim = runs[3].name
    with pytest.raises(KeyboardInterrupt):
        StudyRunner(spec, tmp_path, execute=Recorder(interrupt_at=victim), echo=lambda m: None).run()
    store = RunStore(tmp_path)
    assert [store.state(r.key)["state"] for r in runs[:3]] == ["done"] * 3
    assert store.state(runs[3].key)["state"] == "interrupted"  # started, lock released, nothing done
    assert (tmp_path / "results.json").exists()  # written on the way out
    rec = Recorder()
    StudyRunner(spec, tmp_path, execute=rec, echo=lambda m: None).run()
    assert rec.calls == [r.name for r in runs[3:]]


def test_shards_share_the_work_and_the_pretraining_runs(tmp_path):
    spec = small_spec()
    runs = plan_study(spec)
    recs = [Recorder(), Recorder()]
    StudyRunner(spec, tmp_path, execute=recs[0], shard=(1, 2), echo=lambda m: None).run()
    StudyRunner(spec, tmp_path, execute=recs[1], shard=(2, 2), echo=lambda m: None).run()
    assert sorted(recs[0].calls + recs[1].calls) == sorted(r.name for r in runs)  # each run once


def test_a_run_held_by_another_process_is_left_to_it(tmp_path):
    spec = small_spec()
    runs = plan_study(spec)
    store = RunStore(tmp_path)
    target = next(r for r in runs if r.kind == "standalone")
    store.run_dir(target.key).mkdir(parents=True)
    (store.run_dir(target.key) / "lock").write_text(json.dumps({"host": "other-machine", "pid": 1}))
    rec = Recorder()
    s = StudyRunner(spec, tmp_path, execute=rec, echo=lambda m: None).run()
    assert target.name not in rec.calls and s.busy == [target.key]


def test_status_and_plan_commands(tmp_path, capsys):
    from ecg_transfer.cli import main

    spec_path = tmp_path / "s.toml"
    spec_path.write_text(_with_roots(SPEC.read_text(), tmp_path))
    assert main(["study", "plan", str(spec_path), "--profile", "smoke", "--no-estimate"]) == 0
    out = capsys.readouterr().out
    assert f"{len(plan_study(load_spec(spec_path, 'smoke')))} runs (" in out
    assert main(["study", "status", str(spec_path), "--profile", "smoke", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "0 done" in out and "not started" in out
    assert main(["study", "status", str(spec_path), "--profile", "smoke", "--out", str(tmp_path / "o"), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["counts"] == {"missing": len(st["runs"])}
    spec_path.write_text(
        _with_roots(SPEC.read_text(), tmp_path).replace('model = "xresnet1d101"', 'model = "xresnet9"')
    )
    assert main(["study", "plan", str(spec_path)]) == 2
    assert "study.model" in capsys.readouterr().err


def _with_roots(text: str, tmp_path) -> str:
    """The shipped spec with its data roots pointed at minimal dataset folders under tmp_path."""
    ptbxl, cinc = tmp_path / "ptbxl", tmp_path / "g12ec"
    for d in (ptbxl, cinc):
        d.mkdir(exist_ok=True)
    (ptbxl / "ptbxl_database.csv").write_text("ecg_id\n")
    (cinc / "E00001.hea").write_text("E00001 12 500 5000\n")
    return text.replace('root = "data/ptbxl"', f'root = "{ptbxl}"').replace('root = "data/g12ec"', f'root = "{cinc}"')


def test_plan_refuses_bad_settings_and_missing_roots_before_anything_runs(tmp_path, capsys):
    """A typo in a policy, or a data root that does not exist (or is a broken link), stops `study plan`
    and `study run` with the key / the path named -- not one failed run after another."""
    from ecg_transfer.cli import main

    spec_path = tmp_path / "s.toml"
    good = _with_roots(SPEC.read_text(), tmp_path)
    spec_path.write_text(good.replace('\npolicy = "gradual"\n', '\npolicy = "graduall"\n', 1))
    assert main(["study", "plan", str(spec_path), "--no-estimate"]) == 2
    err = capsys.readouterr().err
    assert "'finetune.policy'" in err and "'graduall' is not allowed" in err and "head-then-all" in err
    missing = tmp_path / "nowhere"
    spec_path.write_text(good.replace(str(tmp_path / "g12ec"), str(missing)))
    for cmd in (
        ["study", "plan", str(spec_path), "--no-estimate"],
        ["study", "run", str(spec_path), "--out", str(tmp_path / "out"), "--no-progress"],
    ):
        assert main(cmd) == 2
        assert f"cinc root {missing} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out" / "runs").exists()  # nothing started
    link = tmp_path / "g12ec-link"
    link.symlink_to(tmp_path / "gone")
    spec_path.write_text(good.replace(str(tmp_path / "g12ec"), str(link)))
    assert main(["study", "plan", str(spec_path), "--no-estimate"]) == 2
    assert f"broken symbolic link to {tmp_path / 'gone'}" in capsys.readouterr().err
    # the folder above the dataset is named as such
    spec_path.write_text(good.replace(f'root = "{tmp_path / "ptbxl"}"', f'root = "{tmp_path}"'))
    assert main(["study", "plan", str(spec_path), "--no-estimate"]) == 2
    assert f"use {tmp_path / 'ptbxl'}" in capsys.readouterr().err


def test_experiment_6_plans_each_strategy_and_backbone_and_shares_runs():
    spec = spec_from_dict(
        minimal(
            study={"seeds": [0], "protocols": ["seed18"]},
            experiments={
                "target_share": {"shares": [10, 50], "repeats": 1, "fixed_test": False},
                "strategy": {
                    "enabled": True,
                    "strategies": ["none", "supervised:diagnostic", "supervised:rhythm"],
                    "models": ["xresnet1d101", "s4"],
                    "shares": [10, 50],
                    "model_runs": {"s4": {"batch_size": 64}},
                },
            },
        )
    )
    runs = plan_study(spec)
    by_name = {u["name"]: r for r in runs for u in r.uses}
    # the diagnostic pre-training of the study's backbone is the headline's; its exp-6 runs are experiment 1's
    assert (
        by_name["exp6/xresnet1d101/supervised:diagnostic/pretrain"].key
        == by_name["pretrain/diagnostic/fs500/share100/time"].key
    )
    assert (
        by_name["exp6/xresnet1d101/supervised:diagnostic/share10/repeat0/seed18/finetuned/s0"].key
        == by_name["exp1-rest/share10/repeat0/seed18/finetuned/s0"].key
    )
    assert (
        by_name["exp6/xresnet1d101/none/share50/repeat0/seed18/standalone/s0"].key
        == by_name["exp1-rest/share50/repeat0/seed18/standalone/s0"].key
    )
    rhythm = by_name["exp6/s4/supervised:rhythm/pretrain"]
    assert rhythm.config["model"] == "s4" and rhythm.config["task"]["labels"] == "rhythm"
    assert rhythm.config["batch_size"] == 64 and rhythm.config["model_kwargs"] == {}
    ft = by_name["exp6/s4/supervised:rhythm/share50/repeat0/seed18/finetuned/s0"]
    assert ft.depends == rhythm.key and ft.config["finetune"]["policy"] == "gradual"
    scratch = by_name["exp6/s4/none/share10/repeat0/seed18/standalone/s0"]
    assert scratch.depends is None and scratch.config["batch_size"] == 64
    assert scratch.config["task"]["train_fraction"] == 0.1 and scratch.config["task"]["test_on_rest"]
    with pytest.raises(ConfigError, match=r"experiments\.strategy\.strategies\[1\]"):
        spec_from_dict(minimal(experiments={"strategy": {"strategies": ["none", "supervised:everything"]}}))
    with pytest.raises(ConfigError, match=r"experiments\.strategy\.ssl"):
        spec_from_dict(minimal(experiments={"strategy": {"enabled": True, "strategies": ["self-supervised"]}}))


def test_a_study_keeps_the_best_validated_epoch_where_a_run_can():
    """keep = "best-val" reaches a study's supervised pre-training and from-scratch runs through
    [source] run and model_runs; the self-supervised pre-training (no validation AUC) keeps its last
    epoch instead of refusing the whole plan."""
    spec = spec_from_dict(
        minimal(
            study={"seeds": [0], "protocols": ["seed18"]},
            source={"run": {"keep": "best-val"}},
            experiments={
                "target_share": {"shares": [10], "repeats": 1, "fixed_test": False},
                "strategy": {
                    "enabled": True,
                    "strategies": ["none", "supervised:diagnostic", "self-supervised"],
                    "models": ["s4"],
                    "shares": [10],
                    "ssl": {"method": "contrastive"},
                    "model_runs": {"s4": {"keep": "best-val"}},
                },
            },
        )
    )
    by_name = {u["name"]: r for r in plan_study(spec) for u in r.uses}
    assert by_name["pretrain/diagnostic/fs500/share100/time"].config["keep"] == "best-val"
    assert by_name["exp6/s4/supervised:diagnostic/pretrain"].config["keep"] == "best-val"
    assert by_name["exp6/s4/none/share10/repeat0/seed18/standalone/s0"].config["keep"] == "best-val"
    for strategy in ("supervised:diagnostic", "self-supervised"):  # compared with "none": chosen alike
        assert by_name[f"exp6/s4/{strategy}/share10/repeat0/seed18/finetuned/s0"].config["keep"] == "best-val"
    ssl = by_name["exp6/s4/self-supervised/pretrain"].config
    assert ssl["ssl"]["method"] == "contrastive" and "keep" not in ssl  # the default, "last"


def test_experiment_6_evaluates_each_backbone_alike_in_every_strategy():
    """A backbone's model_runs protocol keys (windows, aggregation, kept epoch) reach its fine-tuned
    runs as well as its from-scratch ones, so each strategy's paired difference to "none" measures
    the pre-training only; its recipe keys (batch size, optimizer, schedule) stay with the runs that
    train by them. Keys the study sets itself are refused."""
    spec = spec_from_dict(
        minimal(
            study={"seeds": [0], "protocols": ["seed18"]},
            experiments={
                "target_share": {"shares": [10], "repeats": 1, "fixed_test": False},
                "strategy": {
                    "enabled": True,
                    "strategies": ["none", "supervised:rhythm", "self-supervised"],
                    "models": ["s4"],
                    "shares": [10],
                    "ssl": {"method": "cpc"},
                    "model_runs": {
                        "s4": {"aggregate": "mean", "crop_seconds": 3.0, "batch_size": 64, "schedule": {"max_lr": 1e-3}}
                    },
                },
            },
        )
    )
    by_name = {u["name"]: r for r in plan_study(spec) for u in r.uses}
    target = "share10/repeat0/seed18"
    arms = {
        "none": by_name[f"exp6/s4/none/{target}/standalone/s0"].config,
        "supervised:rhythm": by_name[f"exp6/s4/supervised:rhythm/{target}/finetuned/s0"].config,
        "self-supervised": by_name[f"exp6/s4/self-supervised/{target}/finetuned/s0"].config,
    }
    for strategy, config in arms.items():
        assert (config["aggregate"], config["crop_seconds"]) == ("mean", 3.0), strategy
    assert arms["none"]["batch_size"] == 64 and arms["none"]["schedule"]["max_lr"] == 1e-3
    for strategy in ("supervised:rhythm", "self-supervised"):  # trained by [finetune], batch of [target]
        assert arms[strategy]["batch_size"] == 128 and arms[strategy]["schedule"]["max_lr"] != 1e-3
    for key, value in (("epochs", 5), ("task", {}), ("seed", 3)):
        with pytest.raises(ConfigError, match=rf"model_runs.*s4\.{key}: the study sets it"):
            spec_from_dict(minimal(experiments={"strategy": {"model_runs": {"s4": {key: value}}}}))
