"""The benchmark scripts that GPU leases depend on: a lease is 15 minutes, so what they plan and
measure must be right before the machine is asked for (benchmarks/ is not a package: loaded by path)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there (string annotations)
    spec.loader.exec_module(module)
    return module


def _row(model: str, step: float, val_per_record: float, batch: int) -> dict:
    return {"model": model, "seconds_per_step_median": step, "val_seconds_per_record": val_per_record, "batch": batch}


@pytest.mark.parametrize("left", [30.0, 300.0, 528.0, 900.0, 3000.0, 20000.0])
@pytest.mark.parametrize("s4_step", [0.005, 0.02, 0.08])
def test_gpu_plan_never_plans_more_than_the_safe_share_of_the_time_left(left: float, s4_step: float) -> None:
    plan = _load("gpu_jobs")
    s4, ssl = _row("s4", s4_step, 0.003, 64), _row("xresnet1d18", 0.07, 0.0001, 128)
    diagnostic, epochs = plan.plan(s4, ssl, left)
    s4_run = plan.run_seconds(s4, plan.S4_EPOCHS, plan.S4_VALIDATIONS)
    planned = (1 + diagnostic) * s4_run + epochs * plan.run_seconds(ssl, 1, 0)
    assert diagnostic in (0, 1) and 0 <= epochs <= plan.MAX_SSL
    assert epochs == 0 or epochs >= plan.MIN_SSL
    if diagnostic or epochs:  # the S4 "all" run always goes; anything beside it must fit
        assert planned <= plan.SAFETY * left + 1e-9


def test_gpu_plan_priorities() -> None:
    plan = _load("gpu_jobs")
    s4, ssl = _row("s4", 0.02, 0.003, 64), _row("xresnet1d18", 0.07, 0.0001, 128)
    s4_run, ssl_epoch = plan.run_seconds(s4, 50, 12), plan.run_seconds(ssl, 1, 0)
    # S4 all alone barely fits: nothing else
    assert plan.plan(s4, ssl, 1.05 * s4_run / plan.SAFETY) == (0, 0)
    # room for 30 SSL epochs but not for the diagnostic run: SSL gets it
    assert plan.plan(s4, ssl, (s4_run + 30.5 * ssl_epoch) / plan.SAFETY) == (0, 30)
    # room for both S4 runs and 50 SSL epochs: all three
    assert plan.plan(s4, ssl, (2 * s4_run + 50.5 * ssl_epoch) / plan.SAFETY) == (1, 50)
    # a long lease: the SSL run is capped
    assert plan.plan(s4, ssl, 1e6) == (1, plan.MAX_SSL)


def test_model_epoch_cost_times_the_ssl_objective_at_the_batch_asked(tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "cost.json"
    args = ["--models", "xresnet1d18", "--ssl", "contrastive", "--batch-size", "8", "--steps", "2"]
    args += ["--val-records", "2", "--train-records", "80", "--all-val-records", "10", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", ["model_epoch_cost.py", *args])
    assert _load("model_epoch_cost").main() == 0
    meta = json.loads(out.read_text())
    row = meta["rows"][0]
    assert meta["args"]["batch_size"] == 8 and meta["args"]["ssl"] == "contrastive"
    assert len(row["step_seconds"]) == 2  # the two timed steps, the warm-up left out
    assert row["params"] > 300_000  # the encoder plus the SSL projection head, not the classifier alone
    expected = 80 // 8 * row["seconds_per_step_median"] + 10 * row["val_seconds_per_record"]
    assert row["epoch_seconds"] == pytest.approx(expected)
    assert "per step of 8" in capsys.readouterr().out


def test_label_efficiency_ssl_only_trains_the_ssl_run_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    le = _load("label_efficiency")
    calls: list[tuple[str, dict, Path]] = []

    def fake_run(command: str, config: dict, run_dir: Path, log: dict) -> Path:
        calls.append((command, config, run_dir))
        return run_dir

    monkeypatch.setattr(le, "run", fake_run)
    assert le.main(["--ssl-only", "--ssl-epochs", "7", "--out", str(tmp_path)]) == 0
    assert [c[0] for c in calls] == ["pretrain"]
    command, config, run_dir = calls[0]
    assert config["epochs"] == 7 and config["ssl"] == {"method": "cpc"}  # the method chosen on fold 9
    assert config["task"]["test_folds"] == [10] and 10 not in config["task"]["train_folds"]
    written = json.loads((tmp_path / "xresnet1d18" / "ssl_run.json").read_text())
    assert written["ssl_run"] == str(run_dir) and run_dir == tmp_path / "xresnet1d18" / "ssl-cpc"
    assert not (tmp_path / "xresnet1d18" / "results.md").exists()


def test_label_efficiency_ssl_set_reaches_the_ssl_table_and_is_checked_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    le = _load("label_efficiency")
    calls: list[dict] = []
    monkeypatch.setattr(le, "run", lambda command, config, run_dir, log: calls.append(config) or run_dir)
    augs = '["random-resized-crop", "time-out"]'
    argv = ["--ssl-only", "--out", str(tmp_path), "--method", "contrastive"]
    argv += ["--ssl-set", "temperature=0.1", f"augmentations={augs}"]
    assert le.main(argv) == 0
    assert calls[0]["ssl"] == {
        "method": "contrastive",
        "temperature": 0.1,
        "augmentations": ["random-resized-crop", "time-out"],
    }
    for bad, why in [
        ("temperature", "expected KEY=JSON"),
        ("temperature=x", "not JSON"),
        ("mask_ratio=0.3", "applies to ssl.method = 'masked'"),
        ("temperature=-1", "temperature"),
    ]:
        with pytest.raises(SystemExit):
            le.main(["--ssl-only", "--out", str(tmp_path), "--method", "contrastive", "--ssl-set", bad])
        assert why in capsys.readouterr().err
    with pytest.raises(SystemExit):  # checked for every candidate of a method choice
        le.main(["--choose-method", "--out", str(tmp_path), "--ssl-set", "mask_ratio=0.3"])
    assert len(calls) == 1
    cpc = ["--ssl-only", "--out", str(tmp_path), "--method", "cpc", "--ssl-set", "predict_steps=5"]
    with pytest.raises(SystemExit):  # the 2.5 s crop holds 5 patches of 0.5 s: checked with the run's crop
        le.main(cpc)
    assert "the 2.5 s crop holds 5" in capsys.readouterr().err
    assert le.main([*cpc, "--ssl-crop-seconds", "5"]) == 0
    assert calls[-1]["crop_seconds"] == 5 and calls[-1]["ssl"] == {"method": "cpc", "predict_steps": 5}
    args = le.parse_args([*cpc[1:], "--ssl-crop-seconds", "5"])
    assert "crop_seconds" not in le.finetune_config(args, "ssl", 0.1, tmp_path)  # fine-tuning keeps 2.5 s
    short = le.parse_args(["--method", "cpc", "--ssl-crop-seconds", "1", "--ssl-set", "predict_steps=1"])
    assert le.ssl_config(short, "cpc")["stride_seconds"] == 1  # a crop under the default stride is accepted
    with pytest.raises(SystemExit):
        le.main(["--ssl-only", "--out", str(tmp_path), "--ssl-set", 'method="masked"'])
    assert "give the method with --method" in capsys.readouterr().err


def test_label_efficiency_reuses_an_ssl_run_only_under_its_own_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SSL run's folder is named by its method only: another --ssl-set on the same --out must be
    refused, not answered with the run already there (a config.json of an older version resolves alike)."""
    from ecg_transfer.settings import RunConfig

    le = _load("label_efficiency")
    monkeypatch.setattr(le, "run", lambda command, config, run_dir, log: run_dir)
    run_dir = tmp_path / "xresnet1d18" / "ssl-contrastive"
    run_dir.mkdir(parents=True)
    written = RunConfig.from_dict(
        le.ssl_config(le.parse_args(["--out", str(tmp_path), "--method", "contrastive"]), "contrastive")
    ).to_dict()
    for key in ("patch_seconds", "predict_steps", "context_dim"):  # as a run from before cpc existed wrote it
        del written["ssl"][key]
    (run_dir / "config.json").write_text(json.dumps(written))
    assert le.main(["--ssl-only", "--method", "contrastive", "--out", str(tmp_path)]) == 0
    with pytest.raises(SystemExit, match=r"ssl\.temperature: 0\.5 there, 0\.1 asked.*its own --out"):
        le.main(["--ssl-only", "--method", "contrastive", "--out", str(tmp_path), "--ssl-set", "temperature=0.1"])
    with pytest.raises(SystemExit, match=r"epochs: 4 there, 8 asked"):
        le.main(["--ssl-only", "--method", "contrastive", "--out", str(tmp_path), "--ssl-epochs", "8"])


def test_gpu_lease_script_parses() -> None:
    proc = subprocess.run(["bash", "-n", str(BENCH / "gpu_issue14.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_s4_variants_change_only_what_they_name(tmp_path: Path) -> None:
    """The next lease's S4 configs: the committed recipe plus the keep/validation/schedule changes,
    nothing else (a stray change would make the comparison with the first lease's runs meaningless)."""
    variants = _load("s4_variants")
    from ecg_transfer.settings.run import load_config

    assert variants.main([str(tmp_path)]) == 0
    for name, (base_file, changes, schedule) in variants.VARIANTS.items():
        written = load_config(tmp_path / f"{name}.json").to_dict()
        base = load_config(BENCH.parent / base_file).to_dict()
        assert changes == {"keep": "best-val", "validate_every": 2}
        assert {k: written.pop(k) for k in changes} == changes
        assert {k: written["schedule"][k] for k in schedule} == schedule
        for k in changes:
            base.pop(k, None)
        written["schedule"] = {k: v for k, v in written["schedule"].items() if k not in schedule}
        base["schedule"] = {k: v for k, v in base["schedule"].items() if k not in schedule}
        assert written == base, name
    const = load_config(tmp_path / "s4_all_const.json")
    from ecg_transfer import models
    from ecg_transfer.training import resolve_stages
    from ecg_transfer.training.loop import configure_stage

    stage = resolve_stages(const)[0]
    assert stage.epochs == 50
    opt, sched = configure_stage(models.build("xresnet1d18", 12, 3), stage, const, steps_per_epoch=2)
    seen = set()
    for _ in range(2 * stage.epochs):  # the schedule the loop builds for the run, step by step
        seen |= {(round(g["lr"], 12), g["betas"][0]) for g in opt.param_groups}
        opt.step()
        sched.step()
    assert seen == {(1e-3, 0.9)}  # a constant rate and beta1
    base = load_config(tmp_path / "s4_all_best.json")
    opt, _ = configure_stage(models.build("xresnet1d18", 12, 3), resolve_stages(base)[0], base, steps_per_epoch=2)
    assert opt.param_groups[0]["lr"] < 1e-4  # one-cycle starts at max_lr / 25: the check above can fail


def _metrics(run_dir: Path, epochs: int, seconds: list[float]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({"epochs": epochs}))
    rows = [{"epoch": i + 1, "seconds": s} for i, s in enumerate(seconds)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run_dir


def test_gpu_jobs_are_checked_before_any_starts(tmp_path: Path) -> None:
    jobs = _load("gpu_jobs")
    state, costs = tmp_path / "jobs.json", (tmp_path / "c1.json", tmp_path / "c2.json")
    assert jobs.resolve(["s4_all_best", "s4_diagnostic_best"], 400, state, costs) == (
        0,
        ["s4_all_best", "s4_diagnostic_best"],
    )
    for bad, why in [
        (["s4_all_bset"], "unknown job 's4_all_bset'"),
        ([], "1 to 4 distinct jobs"),
        (["s4_all", "s4_all"], "distinct"),
        (["s4_all", "s4_diagnostic", "s4_all_best", "s4_diagnostic_best", "s4_all_const"], "1 to 4"),
        (["ssl"], "SSL_EPOCHS"),
        (["auto"], "MEASURE=1"),  # no cost files and no saved plan
    ]:
        state.unlink(missing_ok=True)
        with pytest.raises(jobs.JobError, match=why):
            jobs.resolve(bad, 400, state, costs)
    assert jobs.resolve(["s4_all", "ssl"], 400, state, costs, ssl_epochs=30) == (30, ["s4_all", "ssl"])
    assert jobs.main(["resolve", "--left", "400", "--state", str(state), "s4_nope"]) == 2


def test_gpu_jobs_auto_plans_once_and_a_later_call_reuses_the_plan(tmp_path: Path) -> None:
    jobs = _load("gpu_jobs")
    costs = (tmp_path / "cost_s4.json", tmp_path / "cost_ssl.json")
    for path, row in zip(costs, [_row("s4", 0.02, 0.003, 64), _row("xresnet1d18", 0.07, 0.0001, 128)]):
        batch = row.pop("batch")
        path.write_text(json.dumps({"args": {"batch_size": batch}, "rows": [row]}))
    state = tmp_path / "gpu_runs" / "jobs.json"
    ssl_epochs, planned = jobs.resolve(["auto"], 3000.0, state, costs)
    assert planned[0] == "s4_all" and ("ssl" in planned) == (ssl_epochs > 0) and ssl_epochs > 0
    # the next call has less time left: re-planning would shorten the SSL run, i.e. start another run
    assert jobs.resolve(["auto"], 200.0, state, costs) == (ssl_epochs, planned)


def test_gpu_jobs_fits_judges_a_run_by_its_last_epochs(tmp_path: Path) -> None:
    jobs = _load("gpu_jobs")
    run = _metrics(tmp_path / "run", 50, [30.0, 8.0, 8.0, 9.0])  # a slow first epoch, then ~8 s
    assert jobs.seconds_to_finish(run) == pytest.approx(46 * 8.0)
    assert jobs.main(["fits", str(run), "400"]) == 0
    assert jobs.main(["fits", str(run), "300"]) == 1
    assert jobs.seconds_to_finish(_metrics(tmp_path / "new", 50, [8.0])) is None  # too early to judge
    assert jobs.main(["fits", str(tmp_path / "new"), "1"]) == 0
    assert jobs.seconds_to_finish(_metrics(tmp_path / "done", 3, [5.0, 5.0, 5.0])) == 0


def _write_run(le: ModuleType, run_dir: Path, config: dict) -> None:
    """A run folder as far as the reuse check reads it: its resolved settings."""
    from ecg_transfer.settings import RunConfig

    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(RunConfig.from_dict(config).to_dict(), default=str))


def test_label_efficiency_refuses_a_finished_finetuning_run_of_another_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fine-tuning runs are named by arm and share only: a call with another --task on the same --out
    must not be answered with the first task's runs (it was, silently, before the check)."""
    le = _load("label_efficiency")
    monkeypatch.setattr(le, "run", lambda command, config, run_dir, log: run_dir)
    args = le.parse_args(["--out", str(tmp_path), "--root", "data/ptbxl"])
    _write_run(le, args.out / "random-10pct", le.finetune_config(args, "random", 0.1, None))
    assert le.finetune_run(args, "random", 0.1, None, {}) == args.out / "random-10pct"
    absolute = le.parse_args(["--out", str(tmp_path), "--root", str(Path("data/ptbxl").resolve())])
    assert le.finetune_run(absolute, "random", 0.1, None, {}) == args.out / "random-10pct"  # the same folder
    other = le.parse_args(["--out", str(tmp_path), "--root", "data/ptbxl", "--task", "all"])
    with pytest.raises(SystemExit, match=r"task\.labels: 'superdiagnostic' there, 'all' asked"):
        le.finetune_run(other, "random", 0.1, None, {})


def test_label_efficiency_ssl_run_serves_another_task_and_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--ssl-run fine-tunes from a finished SSL run of another --out: its task's labels, epochs and
    batch may differ; its method, backbone, data and folds may not; an unfinished or foreign run
    is refused."""
    le = _load("label_efficiency")
    calls: list[tuple[str, dict, Path]] = []
    monkeypatch.setattr(
        le, "run", lambda command, config, run_dir, log: calls.append((command, config, run_dir)) or run_dir
    )
    first = le.parse_args(["--out", str(tmp_path / "a"), "--method", "cpc", "--ssl-epochs", "24", "--batch-size", "64"])
    ssl_dir = first.out / "ssl-cpc"
    _write_run(le, ssl_dir, le.ssl_config(first, "cpc"))
    argv = [
        "--out",
        str(tmp_path / "b"),
        "--task",
        "all",
        "--epoch-grid",
        "20",
        "--method",
        "cpc",
        "--ssl-run",
        str(ssl_dir),
    ]
    with pytest.raises(SystemExit, match="not a finished run"):
        le.main(argv)
    finished: set[Path] = {ssl_dir}
    monkeypatch.setattr(le, "missing_outputs", lambda run_dir: [] if Path(run_dir) in finished else ["model.pt"])
    monkeypatch.setattr(
        le,
        "compare",
        lambda a, b, split: (
            {k: {"value": 0.5, "ci": [0.4, 0.6]} for k in "ab"} | {"b_minus_a": {"value": 0.0, "ci": [-0.1, 0.1]}}
        ),
    )
    counted = {"labels": 71, "floor": 10, "under_floor": 40, "none": 12}
    monkeypatch.setattr(le, "training_positives", lambda run_dir: counted)
    assert le.main([*argv, "--fractions", "0.1"]) == 0  # default --ssl-epochs and --batch-size: not compared
    assert (
        "| 0.0000 [-0.1000, 0.1000] | 20 / 20 | 40 of 71 (most: the result hangs on which records were drawn"
        in (tmp_path / "b" / "xresnet1d18" / "results.md").read_text()
    )
    assert [c[0] for c in calls] == ["standalone", "finetune"]  # nothing pre-trained
    assert calls[1][1]["finetune"]["pretrained_run"] == str(ssl_dir) and calls[1][1]["task"]["labels"] == "all"
    recorded = json.loads((tmp_path / "b" / "xresnet1d18" / "results.json").read_text())["runs"]["ssl_run"]
    assert recorded["epochs"] == 24 and recorded["ssl"]["method"] == "cpc"  # the run's own settings
    assert f"Arm (b) from {ssl_dir} (24 epochs" in (tmp_path / "b" / "xresnet1d18" / "results.md").read_text()
    with pytest.raises(SystemExit, match=r"ssl\.method: 'cpc' there, 'contrastive' asked"):
        le.main([*argv[:-4], "--method", "contrastive", "--ssl-run", str(ssl_dir)])
    with pytest.raises(SystemExit, match=r"model: 'xresnet1d18' there, 'xresnet1d50' asked"):
        le.main([*argv, "--model", "xresnet1d50"])
    peeked = tmp_path / "peeked" / "ssl-cpc"  # pre-trained on fold 9's signals too
    config = le.ssl_config(first, "cpc")
    config["task"] = {**config["task"], "train_folds": [*range(1, 10)], "val_folds": []}
    _write_run(le, peeked, config)
    finished.add(peeked)
    with pytest.raises(SystemExit, match=r"learnt from PTB-XL folds \[9\]"):
        le.main([*argv[:-1], str(peeked)])
    for name, change, refusal in [
        ("extra", {"ssl": {"method": "cpc", "extra_tasks": [{"dataset": "cinc", "root": "cinc2021"}]}}, "extra_tasks"),
        (
            "elsewhere",
            {"task": {**config["task"], "train_folds": [*range(1, 9)], "val_folds": [9], "root": "/x"}},
            "task:",
        ),
        ("rate", {"fs": 200.0}, r"fs: 200\.0 there, 100\.0 asked"),
    ]:
        other = tmp_path / name / "ssl-cpc"
        _write_run(le, other, {**le.ssl_config(first, "cpc"), **change})
        finished.add(other)
        with pytest.raises(SystemExit, match=refusal):
            le.main([*argv[:-1], str(other)])
    with pytest.raises(SystemExit):  # the run's own settings are read from it, never restated
        le.main([*argv, "--ssl-epochs", "24"])
    assert "--ssl-epochs would be ignored" in capsys.readouterr().err
    bare = tmp_path / "bare"  # a model.pt and predictions, but no config.json: nothing to check against
    bare.mkdir()
    finished.add(bare)
    with pytest.raises(SystemExit, match="missing config.json"):
        le.main([*argv[:-1], str(bare)])
    with pytest.raises(SystemExit):
        le.main([*argv, "--ssl-only"])
    assert "not with --ssl-only" in capsys.readouterr().err


def test_label_efficiency_reuses_a_finished_arm_b_written_with_the_model_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fine-tuned run stores the absolute path of the SSL run's model.pt; the reuse check reads
    it as the run folder it names, and refuses one started from another SSL run. An SSL run under
    --out is reused for another --task (it reads no labels)."""
    le = _load("label_efficiency")
    monkeypatch.setattr(le, "run", lambda command, config, run_dir, log: run_dir)
    args = le.parse_args(["--out", str(tmp_path), "--root", "data/ptbxl"])
    ssl_dir = args.out / "ssl-cpc"
    _write_run(le, ssl_dir, le.ssl_config(args, "cpc"))
    stored = le.finetune_config(args, "ssl", 0.1, ssl_dir)
    stored["finetune"]["pretrained_run"] = str((ssl_dir / "model.pt").resolve())  # as train_run writes it
    _write_run(le, args.out / "ssl-cpc-10pct", stored)
    assert le.finetune_run(args, "ssl", 0.1, ssl_dir, {}) == args.out / "ssl-cpc-10pct"
    with pytest.raises(SystemExit, match=r"finetune\.pretrained_run"):
        le.finetune_run(args, "ssl", 0.1, tmp_path / "elsewhere" / "ssl-cpc", {})
    other_task = le.parse_args(["--out", str(tmp_path), "--root", "data/ptbxl", "--task", "all"])
    assert le.ssl_run(other_task, "cpc", {}) == ssl_dir


def test_label_efficiency_ssl_seed_repeats_the_comparison_from_the_same_ssl_run(tmp_path: Path) -> None:
    """--seed moves the labelled subset and every fine-tuning run; --ssl-seed keeps the SSL run."""
    le = _load("label_efficiency")
    base = le.parse_args(["--out", str(tmp_path)])
    repeat = le.parse_args(["--out", str(tmp_path), "--seed", "1", "--ssl-seed", "0"])
    assert le.ssl_config(repeat, "cpc") == le.ssl_config(base, "cpc")
    ft, ft0 = le.finetune_config(repeat, "random", 0.1, None), le.finetune_config(base, "random", 0.1, None)
    assert (ft["seed"], ft["task"]["fraction_seed"]) == (1, 1) and (ft0["seed"], ft0["task"]["fraction_seed"]) == (0, 0)
    assert le.ssl_config(le.parse_args(["--seed", "1"]), "cpc")["seed"] == 1


def test_label_efficiency_counts_the_labels_learnt_from_few_records(tmp_path: Path) -> None:
    """Beside each share, how many labels the arms learnt from fewer than 10 positive training
    records: from the run's label_counts.json (what training writes), or counted from its
    splits.json and its task's labels for a run trained before that file -- the two agree; a run
    whose labels differ from today's task is "n/a", not a guess."""
    from ecg_transfer.datasets.task import load_task
    from ecg_transfer.predictions import save_predictions
    from ecg_transfer.runfiles import LABEL_COUNTS_FILE
    from ecg_transfer.training.run import label_counts
    from wfdb_fixtures import make_ptbxl_tree

    le = _load("label_efficiency")
    root = make_ptbxl_tree(tmp_path / "ptbxl", n_records=30)
    task = {"dataset": "ptbxl", "root": str(root), "labels": "diagnostic", "cache_dir": str(tmp_path / "cache")}
    data = load_task(task, 100.0, progress=False)
    rows = list(data.splits["train"][:12])
    train = [data.record_ids[i] for i in rows]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"task": task, "fs": 100.0}))
    (run_dir / "splits.json").write_text(json.dumps({"train": train, "val": [], "test": []}))
    test = [data.record_ids[i] for i in data.splits["test"]]
    k = len(data.label_names)
    save_predictions(
        run_dir / "predictions_test.csv",
        test,
        data.label_names,
        data.Y[data.splits["test"]],
        np.full((len(test), k), 0.5),
    )
    counted = le.training_positives(run_dir)  # no label_counts.json: from the task's labels
    (run_dir / LABEL_COUNTS_FILE).write_text(json.dumps(label_counts(data.Y, {"train": rows}, data.label_names)))
    assert le.training_positives(run_dir) == counted  # what training would have written
    positives = data.Y[rows].sum(axis=0)
    assert counted == {
        "labels": k,
        "floor": 10,
        "under_floor": int((positives < 10).sum()),
        "none": int((positives == 0).sum()),
    }
    assert counted["under_floor"] > 0  # 12 records: no label has 10 positives
    (run_dir / LABEL_COUNTS_FILE).unlink()
    save_predictions(
        run_dir / "predictions_test.csv",
        test,
        [f"x{n}" for n in data.label_names],
        data.Y[data.splits["test"]],
        np.full((len(test), k), 0.5),
    )
    assert le.training_positives(run_dir)["labels"] is None and le._few_note(le.training_positives(run_dir)) == "n/a"


def _fake_scores(le, monkeypatch: pytest.MonkeyPatch, fold9: dict[str, float]) -> list[tuple[str, str, str]]:
    """Fold-9 macro AUCs by run name, a flat fold-10 comparison and five well-counted labels, so a
    test of the length choice trains nothing; returns the (a, b, split) pairs compared."""
    compared: list[tuple[str, str, str]] = []
    monkeypatch.setattr(le, "_val_auc", lambda run_dir: {"value": fold9[run_dir.name], "ci": [0, 1]})
    monkeypatch.setattr(
        le,
        "compare",
        lambda a, b, split: (
            compared.append((a.name, b.name, split))
            or ({k: {"value": 0.5, "ci": [0.4, 0.6]} for k in "ab"} | {"b_minus_a": {"value": 0.0, "ci": [-0.1, 0.1]}})
        ),
    )
    monkeypatch.setattr(
        le, "training_positives", lambda run_dir: {"labels": 5, "floor": 10, "under_floor": 0, "none": 0}
    )
    return compared


def test_label_efficiency_chooses_each_arms_length_on_fold_9(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each arm is trained at every length of --epoch-grid, doubled while the longest is the best,
    and keeps its own best on fold 9: the arm from random weights, which learns more slowly, is
    not judged at the pre-trained arm's length. Fold 10 (compare's "test") is read only for the
    chosen pair; run names carry a length other than 20 epochs, so earlier 20-epoch runs are reused."""
    le = _load("label_efficiency")
    trained: list[tuple[str, int]] = []

    def fake_run(command: str, config: dict, run_dir: Path, log: dict) -> Path:
        trained.append((run_dir.name, config["epochs"]))
        return run_dir

    fold9 = {"random-10pct": 0.80, "random-10pct-40ep": 0.82, "random-10pct-80ep": 0.84}
    fold9 |= {"random-10pct-160ep": 0.85, "random-10pct-320ep": 0.845}
    fold9 |= {"ssl-cpc-10pct": 0.86, "ssl-cpc-10pct-40ep": 0.85, "ssl-cpc-10pct-80ep": 0.84}
    fold9 |= {"ssl-cpc-10pct-10ep": 0.855}  # the shortest was best: halved once, and 20 stays
    monkeypatch.setattr(le, "run", fake_run)
    compared = _fake_scores(le, monkeypatch, fold9)
    argv = ["--out", str(tmp_path), "--ssl-epochs", "24", "--fractions", "0.1", "--epoch-grid", "20", "40", "80"]
    assert le.main(argv) == 0
    lengths = [20, 40, 80, 160, 320, 20, 40, 80, 10]
    assert sorted(trained) == sorted([("ssl-cpc", 24)] + list(zip(fold9, lengths)))
    assert ("random-10pct-160ep", "ssl-cpc-10pct", "test") in compared
    assert not [c for c in compared if c[2] == "test" and c[:2] != ("random-10pct-160ep", "ssl-cpc-10pct")]
    results = json.loads((tmp_path / "xresnet1d18" / "results.json").read_text())
    chosen = results["fractions"]["0.1"]["epochs"]
    assert (chosen["a"]["chosen"], chosen["b"]["chosen"], chosen["a"]["at_the_cap"]) == (160, 20, False)
    assert not chosen["b"]["at_the_floor"] and chosen["b"]["val_macro_auc"]["0.01"]["10"] == 0.855
    assert "| 160 / 20 |" in (tmp_path / "xresnet1d18" / "results.md").read_text()
    trained.clear()
    assert le.main([*argv, "--max-epochs", "160"]) == 0  # the cap: 320 is not tried, the table says so
    assert ("random-10pct-320ep", 320) not in trained
    assert "| 160+ / 20 |" in (tmp_path / "xresnet1d18" / "results.md").read_text()
    with pytest.raises(SystemExit):
        le.parse_args(["--epoch-grid", "20", "20"])
    with pytest.raises(SystemExit):
        le.parse_args(["--epoch-grid", "20", "1280"])  # beyond --max-epochs 640
    assert le.parse_args(["--epoch-grid", "80", "20", "40"]).epoch_grid == [20, 40, 80]
    fold9 |= {"random-10pct-80ep": 0.85, "random-10pct-160ep": 0.85}  # a tie keeps the shorter length
    trained.clear()
    assert le.main(argv) == 0
    assert ("random-10pct-160ep", 160) in trained and ("random-10pct-320ep", 320) not in trained
    assert (
        json.loads((tmp_path / "xresnet1d18" / "results.json").read_text())["fractions"]["0.1"]["epochs"]["a"]["chosen"]
        == 80
    )


def test_label_efficiency_chooses_rate_and_length_together_and_halves_to_the_floor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --tune-lrs both arms get every rate at every length, the grid grows around the best
    setting only (halved while the shortest is best, down to --min-epochs), and each arm keeps its
    own (rate, length) by fold-9 macro AUC; the table names the rate and marks the floor."""
    le = _load("label_efficiency")
    trained: list[str] = []

    def fake_run(command: str, config: dict, run_dir: Path, log: dict) -> Path:
        trained.append(run_dir.name)
        if command != "pretrain":
            assert config["schedule"]["max_lr"] == (0.03 if run_dir.name.endswith("lr0.03") else 0.01)
        return run_dir

    fold9 = {"random-10pct": 0.80, "random-10pct-40ep": 0.82, "random-10pct-40ep-lr0.03": 0.83}
    fold9 |= {"random-10pct-lr0.03": 0.81}
    fold9 |= {"ssl-cpc-10pct": 0.86, "ssl-cpc-10pct-40ep": 0.85, "ssl-cpc-10pct-lr0.03": 0.84}
    fold9 |= {"ssl-cpc-10pct-40ep-lr0.03": 0.83, "ssl-cpc-10pct-10ep": 0.87, "ssl-cpc-10pct-5ep": 0.88}
    fold9 |= {"random-10pct-80ep-lr0.03": 0.825, "random-10pct-80ep": 0.815, "ssl-cpc-10pct-10ep-lr0.03": 0.835}
    monkeypatch.setattr(le, "run", fake_run)
    _fake_scores(le, monkeypatch, fold9)
    argv = ["--out", str(tmp_path), "--ssl-epochs", "24", "--fractions", "0.1", "--epoch-grid", "20", "40"]
    assert le.main([*argv, "--tune-lrs", "0.01", "0.03"]) == 0
    assert sorted(trained) == sorted(["ssl-cpc", *fold9])  # every rate grown until its best lies inside
    results = json.loads((tmp_path / "xresnet1d18" / "results.json").read_text())
    a, b = (results["fractions"]["0.1"]["epochs"][arm] for arm in "ab")
    assert (a["chosen"], a["lr"], b["chosen"], b["lr"], b["at_the_floor"]) == (40, 0.03, 5, 0.01, True)
    assert "| 40 @ lr 0.03 / 5- @ lr 0.01 |" in (tmp_path / "xresnet1d18" / "results.md").read_text()
    assert a["val_macro_auc"]["0.01"] == {"20": 0.80, "40": 0.82, "80": 0.815}
    # a tie keeps the shorter length but does not halve it; one grid length is a fixed length
    fold9 |= {"ssl-cpc-10pct": 0.85, "ssl-cpc-10pct-lr0.03": 0.85}
    trained.clear()
    assert le.main([*argv[:-2], "20", "--tune-lrs", "0.01", "0.03"]) == 0
    assert sorted(trained) == sorted(
        ["ssl-cpc", "random-10pct", "random-10pct-lr0.03", "ssl-cpc-10pct", "ssl-cpc-10pct-lr0.03"]
    )
    results = json.loads((tmp_path / "xresnet1d18" / "results.json").read_text())
    b = results["fractions"]["0.1"]["epochs"]["b"]
    assert (b["chosen"], b["lr"], b["at_the_floor"], b["at_the_cap"]) == (20, 0.01, False, False)
    fold9 |= {"ssl-cpc-10pct-40ep": 0.85}
    trained.clear()
    assert le.main([*argv, "--tune-lrs", "0.01"]) == 0
    assert "ssl-cpc-10pct-10ep" not in trained  # 20 and 40 tie: the shorter is kept, not halved
    assert "| 40 @ lr 0.01 / 20 @ lr 0.01 |" in (tmp_path / "xresnet1d18" / "results.md").read_text()
    for bad in (["--min-epochs", "30"], ["--min-epochs", "0"], ["--tune-lrs", "0.01", "0.01"]):
        with pytest.raises(SystemExit):
            le.parse_args([*argv, *bad])
    for bad in (["--tune-lrs", "0.01", "0.0100000001"], ["--tune-lrs", "0.01", "--choose-lr"]):
        with pytest.raises(SystemExit):
            le.parse_args([*argv, *bad])


def test_label_efficiency_discriminative_policy_gives_the_body_lower_rates_than_the_head(tmp_path: Path) -> None:
    """--finetune-policy discriminative: arm (b) trains every layer in one stage of the asked length,
    the head at the peak rate and the first layer group at --body-lr-divisor times less (geometric
    between); its runs are named apart, a divisor other than the default in the name too."""
    from ecg_transfer.settings import RunConfig
    from ecg_transfer.training.finetune import resolve_stages
    from ecg_transfer.training.loop import group_lrs

    le = _load("label_efficiency")
    args = le.parse_args(["--out", str(tmp_path), "--finetune-policy", "discriminative", "--body-lr-divisor", "4"])
    config = RunConfig.from_dict(le.finetune_config(args, "ssl", 0.1, tmp_path / "ssl-cpc", lr=0.04, epochs=8))
    (stage,) = resolve_stages(config)
    assert (stage.epochs, stage.train) == (8, "all")
    assert group_lrs(stage, 3) == pytest.approx([0.01, 0.02, 0.04])
    assert le._run_name(args, "ssl", 0.1, tmp_path / "ssl-cpc", 0.04, 8) == "ssl-cpc-10pct-discriminative4-8ep-lr0.04"
    default = le.parse_args(["--out", str(tmp_path), "--finetune-policy", "discriminative"])
    assert le._run_name(default, "ssl", 0.1, tmp_path / "ssl-cpc", 0.04, 8) == "ssl-cpc-10pct-discriminative-8ep-lr0.04"
    random_arm = le.finetune_config(args, "random", 0.1, None, lr=0.04, epochs=8)
    assert "finetune" not in random_arm and random_arm["schedule"] == {"max_lr": 0.04}


def _finished_call(le: ModuleType, out: Path, seed: int, skill: dict[str, float], **settings: Any) -> None:
    """A finished label-efficiency call in ``out`` (its results.json and two chosen runs' saved
    predictions, no training): each arm's test and validation scores are the labels plus noise of
    the arm's ``skill`` (larger: better separated)."""
    from ecg_transfer.predictions import save_predictions

    rng = np.random.default_rng(seed)
    ids = [f"r{i}" for i in range(120)]
    y = (np.random.default_rng(0).random((120, 3)) < 0.3).astype(float)  # the same records and labels in every call
    folder = out / "xresnet1d18"
    for arm in ("a", "b"):
        run = folder / f"{arm}-run"
        run.mkdir(parents=True)
        for split in ("test", "val"):
            p = 1 / (1 + np.exp(-(skill[arm] * (y - 0.5) + rng.normal(size=y.shape))))
            save_predictions(run / f"predictions_{split}.csv", ids, ["A", "B", "C"], y, p)
    base = {"seed": seed, "out": str(folder), "task": "diagnostic", "method": "cpc", "root": "data/ptbxl"}
    results = {
        "settings": {**base, **settings},
        "fractions": {
            "0.1": {
                "test": {"b_minus_a": {"value": 0.0}},
                "epochs": {"a": {"chosen": 80}, "b": {"chosen": 80}},
                "training_positives": {"labels": 3},
                "dirs": {"a": "a-run", "b": "b-run"},
            }
        },
    }
    (folder / "results.json").write_text(json.dumps(results))


def test_label_efficiency_pools_labelled_subsets_into_one_comparison(tmp_path: Path, monkeypatch) -> None:
    """--pool reads finished calls that differ only in --seed and pairs their chosen runs: each
    subset's own gain is what a paired comparison of its two runs gives, the pooled gain their mean,
    with a CI from the test records; calls that measured something else, the same subset twice or a
    results.json that does not name its runs are refused before anything is computed. Arm (b) must
    start from one SSL run in every call: the one a call trained itself, or named by the others."""
    from ecg_transfer.evaluation.runs import align_runs, load_run
    from sklearn.metrics import roc_auc_score

    le = _load("label_efficiency")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "ptbxl").mkdir(parents=True)
    _finished_call(le, tmp_path / "s0", 0, {"a": 1.0, "b": 2.0}, ssl_run=None, ssl_epochs=24)  # trained its SSL run
    ssl_of_s0 = {"ssl_run": str(tmp_path / "s0" / "xresnet1d18" / "ssl-cpc"), "ssl_epochs": 4}  # ... which s1 names
    _finished_call(le, tmp_path / "s1", 1, {"a": 1.0, "b": 1.5}, root=str(tmp_path / "data" / "ptbxl"), **ssl_of_s0)
    assert le.main(["--pool", "s0", "s1", "--out", "pooled"]) == 0
    pooled = json.loads((tmp_path / "pooled" / "xresnet1d18" / "pooled.json").read_text())["pooled"]["0.1"]
    t = pooled["test"]
    gains = []
    for s in ("s0", "s1"):
        y, (pa, pb), _ = align_runs([load_run(tmp_path / s / "xresnet1d18" / f"{arm}-run") for arm in "ab"], "test")
        gains.append(roc_auc_score(y, pb, average="macro") - roc_auc_score(y, pa, average="macro"))
    np.testing.assert_allclose(t["b_minus_a_per_subset"], gains)
    assert t["b_minus_a"]["value"] == pytest.approx(np.mean(gains))
    assert t["b_minus_a"]["ci"][0] < np.mean(gains) < t["b_minus_a"]["ci"][1]
    assert t["b_minus_a_sd"] == pytest.approx(np.std(gains, ddof=1)) and t["subsets"] == 2
    assert pooled["seeds"] == [0, 1] and "per subset" in (tmp_path / "pooled" / "xresnet1d18" / "pooled.md").read_text()
    assert (
        pooled["stopped_at_a_bound"] == []
        and "at a bound" not in (tmp_path / "pooled" / "xresnet1d18" / "pooled.md").read_text()
    )

    capped = tmp_path / "s1" / "xresnet1d18" / "results.json"  # s1's arm (a) stopped at the cap, still rising
    results = json.loads(capped.read_text())
    results["fractions"]["0.1"]["epochs"]["a"] = {"chosen": 640, "at_the_cap": True, "at_the_floor": False}
    capped.write_text(json.dumps(results))
    assert le.main(["--pool", "s0", "s1", "--out", "pooled"]) == 0
    pooled = json.loads((tmp_path / "pooled" / "xresnet1d18" / "pooled.json").read_text())["pooled"]["0.1"]
    assert pooled["stopped_at_a_bound"] == ["seed 1, arm (a): 640+"]
    assert "at a bound of the grid" in (tmp_path / "pooled" / "xresnet1d18" / "pooled.md").read_text()

    _finished_call(le, tmp_path / "other", 2, {"a": 1.0, "b": 2.0}, method="contrastive")
    with pytest.raises(SystemExit, match="different settings: method"):
        le.main(["--pool", "s0", "other", "--out", "pooled"])
    _finished_call(le, tmp_path / "again", 0, {"a": 1.0, "b": 2.0}, **ssl_of_s0)
    with pytest.raises(SystemExit, match="each labelled subset once"):
        le.main(["--pool", "s0", "again", "--out", "pooled"])
    _finished_call(le, tmp_path / "own", 3, {"a": 1.0, "b": 2.0}, ssl_run=None, ssl_epochs=24)
    _finished_call(le, tmp_path / "named", 4, {"a": 1.0, "b": 2.0}, ssl_run="elsewhere/ssl-cpc")
    for apart in ("own", "named"):  # an SSL run trained apart, or another one named: not one comparison
        with pytest.raises(SystemExit, match="different settings: the SSL run"):
            le.main(["--pool", "s0", apart, "--out", "pooled"])
    old = tmp_path / "s1" / "xresnet1d18" / "results.json"
    results = json.loads(old.read_text())
    del results["fractions"]["0.1"]["dirs"]
    old.write_text(json.dumps(results))
    with pytest.raises(SystemExit, match="run its command again"):
        le.main(["--pool", "s0", "s1", "--out", "pooled"])
    with pytest.raises(SystemExit):
        le.parse_args(["--pool", "s0"])  # one call is nothing to pool


def test_train_throughput_summary_leaves_disturbed_timings_out_and_pairs_ratios_by_round() -> None:
    tt = _load("train_throughput")
    d = 2 * tt.DISTURBED  # a disturbed timing
    names = ["eager", "engine", "matmul"]
    t = tt.Timings(
        samples={"eager": [100.0, 50.0, 100.0, 80.0], "engine": [120.0, 200.0, 90.0, 100.0], "matmul": [50.0, 80.0]},
        others={"eager": [0.0, d, 0.01, 0.0], "engine": [0.0, 0.0, d, 0.01], "matmul": [0.0, d]},
        data_s=[0.01, 0.03, 0.02, 0.02],
    )
    build, first = {n: 1.0 for n in names}, {"eager": 2.0, "engine": 3.0}
    rss = {"eager": 10.0, "engine": 20.0, "matmul": 30.0}
    results, peak = tt._summarise(names, t, build, first, rss, 2e9, 12)
    assert peak == 50.0  # the clean matmul timing only, not the disturbed 80
    engine = results["engine"]
    assert engine["samples_per_s"]["all"] == [120.0, 200.0, 100.0] and engine["samples_per_s"]["median"] == 120.0
    assert engine["all"] == t.samples["engine"]  # every timing is kept
    # rounds 1 and 4 only (eager disturbed in round 2, engine in round 3): 120/100 and 100/80
    assert engine["ratio_to_eager"]["all"] == pytest.approx([1.2, 1.25])
    assert results["eager"]["ratio_to_eager"]["all"] == pytest.approx([1.0, 1.0, 1.0])  # its 3 clean rounds
    assert engine["gflops"] == pytest.approx(240.0) and engine["fraction_of_matmul_peak"] == pytest.approx(4.8)
    assert engine["first_step_s"] == 3.0 and engine["peak_rss_mib"] == 20.0 and results["matmul"]["all"] == [50.0, 80.0]
    assert engine["data_path_fraction"] == pytest.approx(0.02 / (12 / 120.0))  # median data path / one step
    # all disturbed: the summaries fall back to every timing rather than to nothing
    t = tt.Timings({"eager": [10.0, 20.0], "fit": [30.0, 20.0]}, {"eager": [d, d], "fit": [0.0, 0.0]}, [])
    zeros = {"eager": 0.0, "fit": 0.0}
    results, peak = tt._summarise(["eager", "fit"], t, zeros, zeros, rss | zeros, 1e9, 4)
    assert peak is None and results["eager"]["samples_per_s"]["all"] == [10.0, 20.0]
    assert results["fit"]["ratio_to_eager"]["all"] == pytest.approx([3.0, 1.0])
    assert results["fit"]["fraction_of_matmul_peak"] is None and "data_path_fraction" not in results["fit"]


def test_train_throughput_rounds_rotate_the_variants_and_stop_at_the_time_limit(capsys) -> None:
    tt = _load("train_throughput")

    class FakePool:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str]] = []

        def call(self, name: str, cmd: tuple) -> Any:
            self.calls.append((name, cmd[0]))
            if cmd[0] == "data":
                return 0.3  # seconds for cmd[1] batches
            return (40.0, 0.0) if name == "matmul" else (0.5, 0.2 if name == "engine" else 0.0)

    pool = FakePool()
    t = tt._time_rounds(pool, ["eager", "engine", "matmul"], 3, 4, 2, None)
    assert pool.calls == [
        ("eager", "steps"), ("engine", "steps"), ("matmul", "steps"), ("engine", "data"),
        ("engine", "steps"), ("matmul", "steps"), ("eager", "steps"), ("engine", "data"),
    ]  # fmt: skip
    assert t.samples == {"eager": [24.0, 24.0], "engine": [24.0, 24.0], "matmul": [40.0, 40.0]}  # 3 x 4 / 0.5 s
    assert t.others["engine"] == [0.2, 0.2] and t.data_s == pytest.approx([0.1, 0.1])
    assert "round 2: eager 24.0, engine 24.0*, matmul 40.0" in capsys.readouterr().out
    t = tt._time_rounds(FakePool(), ["eager"], 1, 1, 5, 1e-9)  # the first round always runs
    assert t.samples["eager"] == [2.0] and "reached after 1 round(s)" in capsys.readouterr().out
    assert tt._variant_names(["engine"]) == ["eager", "engine"] and tt._variant_names(["all"]) == list(tt.VARIANTS)
    with pytest.raises(SystemExit, match="unknown variant"):
        tt._variant_names(["eager", "nope"])


def test_epoch_time_rows_and_speedups_pair_the_variants_within_each_round(capsys) -> None:
    et = _load("epoch_time")
    h = {"seconds": 10.0, "val_seconds": 2.0, "train_loss": 0.5, "val_macro_auc": 0.7}
    row = et._epoch_row(2, "after", h, 10.456, 19.96, 300, 128)
    assert row == {
        "round": 2, "variant": "after", "epoch_s": 10.46, "train_s": 8.0, "val_s": 2.0,
        "train_samples_per_s": 32.0, "cpu_s": 20.0, "train_loss": 0.5, "val_macro_auc": 0.7,
    }  # fmt: skip  # 256 samples (two full batches of 128) in 8 s of training
    assert et._rotated(["a", "b", "c"], 1) == ["b", "c", "a"] and et._rotated(["a", "b"], 2) == ["a", "b"]
    epochs = {"before": [12.0, 30.0, 9.0], "after": [4.0, 21.0, 7.0]}
    rows = [
        {"round": r + 1, "variant": v, "epoch_s": epochs[v][r], "train_s": epochs[v][r] - 1, "val_s": 1.0}
        for r in range(3)
        for v in et._rotated(["before", "after"], r)
    ]
    summary = et._summarise(rows, ["before", "after"])
    # per round 12/4, 30/21, 9/7: median 10/7 (not the ratio of the medians, 12/7)
    assert summary["after"] == {"epoch_s": 7.0, "train_s": 6.0, "val_s": 1.0, "epoch_speedup_vs_before": 1.429}
    assert summary["before"]["epoch_speedup_vs_before"] == 1.0
    et._print_summary(summary, rows, "before")
    out = capsys.readouterr().out
    assert "epoch vs before" in out and "1.43x" in out and "5.8 min" in out  # 50 x 7 s


def test_label_efficiency_hands_each_run_its_config_from_beside_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settings a run is started with are written beside its lock and log (not to /tmp, where every
    killed call left one) and removed when the run ends, also when it fails."""
    le = _load("label_efficiency")
    seen: list[tuple[list[str], dict]] = []

    def fake_run(argv: list[str], **kwargs: Any) -> None:
        seen.append((argv, json.loads(Path(argv[4]).read_text())))
        if len(seen) == 2:
            raise subprocess.CalledProcessError(1, argv)

    monkeypatch.setattr(le.subprocess, "run", fake_run)
    run_dir = tmp_path / "xresnet1d18" / "random-10pct"
    run_dir.parent.mkdir(parents=True)
    le._train_unless_done("standalone", {"epochs": 3}, run_dir)
    with pytest.raises(subprocess.CalledProcessError):
        le._train_unless_done("standalone", {"epochs": 4}, run_dir)
    assert [cfg for _, cfg in seen] == [{"epochs": 3}, {"epochs": 4}]
    assert {Path(argv[4]) for argv, _ in seen} == {run_dir.parent / "random-10pct.config.json"}
    argv = seen[0][0]
    assert argv[2:4] == ["ecg_transfer", "standalone"] and argv[5:7] == ["--run-dir", str(run_dir)]
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["random-10pct.log"]
