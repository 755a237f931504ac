"""`study plan` estimates: work per run (epochs x records, evaluation windows) from headers, times
this machine's measured costs, measured once and kept; datasets that are not here assumed by size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecg_transfer.settings import RunConfig
from ecg_transfer.study.estimate import (
    RUN_OVERHEAD_SECONDS,
    DataSize,
    estimate_study,
    measure_throughput,
    parse_assumptions,
    run_work,
    speed_probe,
)
from ecg_transfer.study.plan import plan_study
from ecg_transfer.study.spec import spec_from_dict
from wfdb_fixtures import make_cinc_tree, make_ptbxl_tree

FAKE = {"train_s_per_sample": 0.002, "predict_s_per_window": 0.0005}


@pytest.fixture(autouse=True)
def steady_machine(monkeypatch):
    """The speed probe of a machine that keeps its speed: the real probe's spread between calls
    (up to 1.5x at one thread here) would make a kept measurement's reuse a matter of chance."""
    from ecg_transfer.study import estimate

    monkeypatch.setattr(estimate, "speed_probe", lambda threads: 0.05)


class CountingMeasure:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, cfg: RunConfig) -> dict[str, float]:
        self.calls.append(f"{cfg.model}@{cfg.fs:g}/{cfg.input}")
        return dict(FAKE)


@pytest.fixture()
def spec(tmp_path: Path):
    ptbxl = make_ptbxl_tree(tmp_path / "ptbxl", n_records=30)
    cinc = make_cinc_tree(tmp_path / "g12ec", n_records=40)
    return spec_from_dict(
        {
            "study": {"model": "fcn_wang", "fs": 100, "seeds": [0], "protocols": ["seed18"]},
            "source": {"root": str(ptbxl), "epochs": 4, "validate_every": 2},
            "target": {"root": str(cinc)},
            "standalone": {"epochs": 6},
            "finetune": {"policy": "gradual", "stages": [{"epochs": 2, "train": "head"}, {"epochs": 3}]},
            "experiments": {
                "target_share": {"shares": [50], "repeats": 1, "fixed_test": False},
                "source_share": {"enabled": False},
                "sampling_rate": {"rates": [100]},
                "frequency": {"enabled": False},
            },
        }
    )


def test_work_per_run_is_epochs_times_records(spec, tmp_path):
    runs = plan_study(spec)
    measure = CountingMeasure()
    est = estimate_study(runs, cache_dir=tmp_path / "cache", measure=measure)
    by_name = {r.name: r for r in est.runs}
    pre = by_name["pretrain/diagnostic/fs100/share100/time"]
    import pandas as pd

    folds = pd.read_csv(Path(spec.settings.source.root) / "ptbxl_database.csv")["strat_fold"]
    n_train, n_val, n_test = int(folds.isin(range(1, 9)).sum()), int((folds == 9).sum()), int((folds == 10).sum())
    assert pre.train_records == n_train and pre.train_samples == 4 * n_train
    # 10 s records, 2.5 s windows at 1.25 s: 7 per record; validation after epochs 2 and 4, then test
    assert pre.windows == 7 * (2 * n_val + n_test)
    assert pre.seconds == pytest.approx(
        pre.train_samples * 0.002 + pre.windows * 0.0005 + RUN_OVERHEAD_SECONDS, abs=0.1
    )
    # target (40 CinC records, 10 equal folds): train 8 folds = 32 records; fine-tuned: 2 + 3 epochs
    ft = by_name["headline/seed18/finetuned/s0"]
    sa = by_name["headline/seed18/standalone/s0"]
    assert (ft.epochs, sa.epochs) == (5, 6)
    assert ft.train_samples == pytest.approx(5 * 32) and sa.train_samples == pytest.approx(6 * 32)
    rest = by_name["exp1-rest/share50/repeat0/seed18/standalone/s0"]
    assert rest.train_records == pytest.approx(0.5 * 36)  # half of the 9-fold pool
    assert est.seconds == pytest.approx(sum(r.seconds for r in est.runs) + est.cache_seconds)
    assert measure.calls == ["fcn_wang@100/time"]  # one network, one window: measured once


def test_measurements_are_kept_and_assumed_sizes_scale_the_target(spec, tmp_path):
    runs = plan_study(spec)
    first = CountingMeasure()
    small = estimate_study(runs, cache_dir=tmp_path / "cache", measure=first)
    again = CountingMeasure()
    big = estimate_study(runs, cache_dir=tmp_path / "cache", measure=again, assumed=parse_assumptions(["target=10344"]))
    assert first.calls and not again.calls  # the table in the cache folder answered
    ft_small = next(r for r in small.runs if r.name == "headline/seed18/finetuned/s0")
    ft_big = next(r for r in big.runs if r.name == "headline/seed18/finetuned/s0")
    assert ft_big.train_records == pytest.approx(10344 * 8 / 10)
    assert ft_big.seconds > 100 * ft_small.seconds / 40
    assert any("10344 records assumed" in n for n in big.notes)
    with pytest.raises(Exception, match="NAME=COUNT"):
        parse_assumptions(["target:10"])


def test_run_work_of_a_fraction_tested_on_the_rest():
    cfg = RunConfig.from_dict(
        {
            "model": "fcn_wang",
            "epochs": 10,
            "validate_every": 5,
            "task": {
                "dataset": "cinc",
                "root": "x",
                "labels": "protocol:seed18",
                "train_folds": [1, 2, 3, 4, 5, 6, 7, 8, 10],
                "val_folds": [9],
                "test_folds": [],
                "train_fraction": 0.1,
                "fraction_parts": 10,
                "test_on_rest": True,
            },
        }
    )
    train, samples, windows = run_work(cfg, DataSize(1000, None, 10.0))
    assert train == pytest.approx(90) and samples == pytest.approx(900)
    assert windows == pytest.approx(7 * (100 * 2 + 810))


def test_evaluation_cost_grows_with_test_records_labels_and_resamples():
    from ecg_transfer.study.estimate import EVAL_SECONDS_PER_RECORD_LABEL_RESAMPLE as C, evaluation_seconds

    size = DataSize(1000, None, 10.0)
    rest = RunConfig.from_dict(
        {
            "model": "fcn_wang",
            "task": {
                "dataset": "cinc",
                "root": "x",
                "labels": "protocol:seed18",
                "train_folds": [1, 2, 3, 4, 5, 6, 7, 8, 10],
                "val_folds": [9],
                "test_folds": [],
                "train_fraction": 0.1,
                "fraction_parts": 10,
                "test_on_rest": True,
            },
        }
    )
    assert evaluation_seconds(rest, size, 500) == pytest.approx(810 * 18 * 500 * C)  # the rest: 90 % of 900
    fold = RunConfig.from_dict({"model": "fcn_wang", "task": {"dataset": "ptbxl", "root": "x", "labels": "rhythm"}})
    assert evaluation_seconds(fold, DataSize(1000, {f: 100 for f in range(1, 11)}, 10.0), 1000) == pytest.approx(
        100 * 12 * 1000 * C
    )  # fold 10, 12 rhythm labels
    ssl = RunConfig.from_dict(
        {
            "model": "fcn_wang",
            "ssl": {"method": "masked"},
            "task": {"dataset": "ptbxl", "root": "x", "labels": "rhythm"},
        }
    )
    assert evaluation_seconds(ssl, size, 1000) == 0.0  # no test predictions


def test_run_work_of_a_self_supervised_run():
    # every record of the training folds (no label subset), one crop each (views and patches are in
    # the measured cost of a crop), one centre crop per validation record and validation, no test predictions
    task = {"dataset": "ptbxl", "root": "x", "labels": "diagnostic"}
    sizes = DataSize(1000, {f: 100 for f in range(1, 11)}, 10.0)
    for method in ("contrastive", "masked", "cpc"):
        cfg = RunConfig.from_dict(
            {"model": "fcn_wang", "epochs": 4, "validate_every": 2, "task": task, "ssl": {"method": method}}
        )
        train, samples, windows = run_work(cfg, sizes)
        assert (train, samples, windows) == (800, 800 * 4, 100 * 2), method


def test_an_ssl_run_is_measured_with_its_objective(tmp_path, monkeypatch):
    """The cost of an SSL crop is its objective's (two views for contrastive; CPC encodes each patch
    on its own): measured with the SslModel's loss, and kept apart from the supervised network's
    and from another method's."""
    from ecg_transfer.study import estimate
    from ecg_transfer.training.ssl.model import SslModel

    task = {"dataset": "ptbxl", "root": "x", "labels": "diagnostic"}
    base = {"model": "xresnet1d18", "batch_size": 8, "model_kwargs": {"stem_widths": [8, 8, 8], "width": 8}}
    supervised = RunConfig.from_dict({**base, "task": task})
    by_method = {m: RunConfig.from_dict({**base, "task": task, "ssl": {"method": m}}) for m in ("contrastive", "cpc")}
    losses: list[str] = []
    original = SslModel.forward
    monkeypatch.setattr(SslModel, "forward", lambda self, x: losses.append(self.method) or original(self, x))
    for method, cfg in by_method.items():
        losses.clear()
        cost = measure_throughput(cfg, steps=1)
        assert 0 < cost["train_s_per_sample"] < 1 and set(losses) == {method} and len(losses) >= 3
    signatures = {estimate._signature(c) for c in (supervised, *by_method.values())}
    assert len(signatures) == 3
    extra = RunConfig.from_dict(
        {**base, "task": task, "ssl": {"method": "cpc", "extra_tasks": [{"dataset": "cinc", "root": "y"}]}}
    )
    assert estimate._signature(extra) == estimate._signature(by_method["cpc"])  # more data, same step


def test_every_measured_cost_has_its_own_line():
    """Two settings of one SSL method (or two widths of one model) in one study are measured apart;
    `study plan` names each by what tells it apart, instead of one line hiding the other."""
    from ecg_transfer.study import estimate

    task = {"dataset": "ptbxl", "root": "x", "labels": "diagnostic"}
    base = {"model": "xresnet1d18", "task": task}
    configs = {
        "supervised": base,
        "cpc": {**base, "ssl": {"method": "cpc"}},
        "cpc4": {**base, "ssl": {"method": "cpc", "predict_steps": 4}},
        "contrastive": {**base, "ssl": {"method": "contrastive"}},
        "narrow": {**base, "model_kwargs": {"width": 8}},
    }
    sigs = {name: estimate._signature(RunConfig.from_dict(c)) for name, c in configs.items()}
    names = estimate.display_names(list(sigs.values()))
    assert len(set(names.values())) == len(configs)
    assert names[sigs["contrastive"]] == "xresnet1d18@100Hz/time ssl contrastive"
    assert names[sigs["cpc"]].startswith("xresnet1d18@100Hz/time ssl cpc (ssl.predict_steps=")
    assert "ssl.predict_steps=4" in names[sigs["cpc4"]]
    assert "model_kwargs" in names[sigs["narrow"]] and '"width": 8' in names[sigs["narrow"]]
    assert estimate.display_names([sigs["cpc"]]) == {sigs["cpc"]: "xresnet1d18@100Hz/time ssl cpc"}


def test_two_ssl_settings_of_one_study_are_two_lines_of_the_estimate(spec, tmp_path):
    """The regression: two CPC settings in one study were measured apart but printed as one line."""
    from dataclasses import replace

    from ecg_transfer.study.estimate import format_estimate
    from ecg_transfer.study.plan import RunDef

    pre = next(r for r in plan_study(spec) if r.kind == "pretrain")
    runs: list[RunDef] = [
        replace(pre, key=f"ssl{steps}", config={**pre.config, "ssl": {"method": "cpc", "predict_steps": steps}})
        for steps in (2, 4)
    ]
    measure = CountingMeasure()
    est = estimate_study(runs, cache_dir=tmp_path / "cache", measure=measure)
    assert len(measure.calls) == 2 and len(est.throughput) == 2
    lines = [line for line in format_estimate(est) if "measured here" in line]
    assert (
        len(lines) == 2
        and "ssl.predict_steps=2" in lines[0] + lines[1]
        and "ssl.predict_steps=4" in lines[0] + lines[1]
    )


def test_the_real_measurement_runs(tmp_path):
    cfg = RunConfig.from_dict(
        {
            "model": "fcn_wang",
            "batch_size": 8,
            "model_kwargs": {"filters": [8, 8], "kernel_sizes": [5, 3], "head_hidden": [8]},
        }
    )
    cost = measure_throughput(cfg, steps=1)
    assert 0 < cost["train_s_per_sample"] < 1 and 0 < cost["predict_s_per_window"] < 1


def test_plan_command_prints_the_estimate(spec, tmp_path, capsys, monkeypatch):
    from ecg_transfer.cli import main
    from ecg_transfer.study import estimate

    monkeypatch.setattr(estimate, "measure_throughput", CountingMeasure())
    spec_path = tmp_path / "s.json"
    data = spec.data
    data["study"]["cache_dir"] = str(tmp_path / "cache")
    spec_path.write_text(json.dumps(data))
    # (a study spec may be JSON too)
    assert main(["study", "plan", str(spec_path)]) == 0
    out = capsys.readouterr().out
    assert "estimate on this machine" in out and "training samples = epochs x records" in out
    import torch

    threads = torch.get_num_threads()  # what the runs use, which may be fewer than the machine's CPUs
    assert f"({threads} torch thread{'' if threads == 1 else 's'} per run, " in out
    assert "measured here: fcn_wang@100Hz/time: 500 training samples/s, 2000 windows/s" in out


def test_study_run_says_how_many_ptbxl_records_are_missing_at_500_hz(tmp_path):
    from ecg_transfer.study.cli import missing_records_lines

    ptbxl = make_ptbxl_tree(tmp_path / "ptbxl", n_records=20, rates=(100, 500))
    for i in (3, 7, 11):
        for ext in (".hea", ".dat"):
            (ptbxl / "records500" / "00000" / f"{i:05d}_hr{ext}").unlink()
    cinc = make_cinc_tree(tmp_path / "g12ec", n_records=20)
    spec = spec_from_dict(
        {
            "study": {"model": "fcn_wang", "fs": 100, "seeds": [0], "protocols": ["seed18"]},
            "source": {"root": str(ptbxl), "allow_missing": True},
            "target": {"root": str(cinc)},
            "experiments": {"sampling_rate": {"rates": [250, 100]}, "source_share": {"enabled": False}},
        }
    )
    lines = missing_records_lines(plan_study(spec))
    assert lines == [
        f"PTB-XL at 500 Hz: 3 of 20 records are missing under {ptbxl}; the runs that read this rate "
        "(pre-training above 100 Hz) train and test on the 17 present"
    ]


def test_a_measurement_on_a_busy_machine_is_flagged_and_taken_again_once_quiet(spec, tmp_path, monkeypatch):
    from ecg_transfer.study import estimate

    monkeypatch.setattr(estimate, "_cpu_count", lambda: 2)
    monkeypatch.setattr(estimate, "_threads", lambda cfg: 2)
    runs, cache = plan_study(spec), tmp_path / "cache"

    def plan(load: float | None, remeasure: bool = False) -> tuple[list[str], list[str]]:
        measure = CountingMeasure()
        est = estimate_study(runs, cache_dir=cache, measure=measure, load=load, remeasure=remeasure)
        return measure.calls, [n for n in est.notes if "measured while other work" in n]

    calls, notes = plan(1.9)  # a training on both cores beside the measurement
    assert calls and len(notes) == 1
    assert notes[0].startswith("measured while other work kept CPUs busy: fcn_wang@100Hz/time (1.9 of 2 CPUs busy, ")
    assert "); their runs' times may be too long" in notes[0]
    assert plan(1.9) == ([], notes)  # still busy: the kept (flagged) measurement serves
    assert plan(None) == ([], notes)  # load unknown: nothing judged, nothing taken again
    calls, notes = plan(0.2)  # quiet now: measured again, and the flag goes
    assert calls == ["fcn_wang@100/time"] and notes == []
    assert plan(0.2) == ([], []) and plan(1.9) == ([], [])  # a quiet measurement is kept even when busy later
    assert plan(0.2, remeasure=True)[0] == ["fcn_wang@100/time"]  # once per network, not once per run


def test_the_load_is_the_cpus_other_work_keeps_busy_now(monkeypatch):
    """Read over half a second from /proc/stat, not the 1-minute load average, which still counts a
    training that ended a minute ago (it flagged a quiet measurement as busy)."""
    from ecg_transfer.study import estimate

    monkeypatch.setattr(estimate, "_cpu_count", lambda: 2)
    times = iter([(1000.0, 4000.0), (1150.0, 4200.0)])  # 150 of 200 jiffies busy: 1.5 CPUs of 2
    monkeypatch.setattr(estimate, "_cpu_times", lambda cpus=None: next(times))
    assert estimate.busy_cpus(interval=0) == pytest.approx(1.5)
    monkeypatch.setattr(estimate, "_cpu_times", lambda cpus=None: None)  # not Linux: the load average
    monkeypatch.setattr(estimate.os, "getloadavg", lambda: (0.7, 0.5, 0.3))
    assert estimate.busy_cpus(interval=0) == 0.7


def test_busy_means_other_work_on_the_cores_the_measurement_needs(monkeypatch):
    from ecg_transfer.study import estimate

    monkeypatch.setattr(estimate, "_cpu_count", lambda: 2)
    assert not estimate.machine_busy(2, 0.4) and estimate.machine_busy(2, 0.6)
    assert not estimate.machine_busy(1, 1.4) and estimate.machine_busy(1, 1.6)  # one core left free
    assert not estimate.machine_busy(4, None)  # no load average on this system: not judged


def test_plan_says_what_is_left_in_the_study_folder(spec, tmp_path, capsys, monkeypatch):
    from ecg_transfer.cli import main
    from ecg_transfer.study import estimate
    from ecg_transfer.study.store import RunStore

    monkeypatch.setattr(estimate, "measure_throughput", CountingMeasure())
    spec_path, out = tmp_path / "s.json", tmp_path / "out"
    data = spec.data
    data["study"]["cache_dir"] = str(tmp_path / "cache")
    spec_path.write_text(json.dumps(data))
    assert main(["study", "plan", str(spec_path), "--out", str(out)]) == 0
    assert "left in" not in capsys.readouterr().out  # nothing run yet: the estimate is what is left
    assert main(["study", "plan", str(spec_path), "--out", str(out), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["estimate"]["runs"]
    store = RunStore(out)
    for r in runs[:2]:
        store.mark_done(r["key"], name=r["name"])
    store.mark_failed(runs[2]["key"], name=runs[2]["name"], error="boom")
    assert main(["study", "plan", str(spec_path), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["left"] == {
        "runs": len(runs) - 3,
        "seconds": pytest.approx(sum(r["seconds"] for r in runs[3:]), abs=0.2),
        "done": 2,
        "failed": 1,
    }
    assert main(["study", "plan", str(spec_path), "--out", str(out)]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith(f"left in {out}: {len(runs) - 3} of {len(runs)} runs, about ")
    assert "(2 done, 1 failed (retried with --retry-failed); caches not counted)" in line


def test_the_load_is_read_on_the_cpus_this_process_may_use(tmp_path, monkeypatch):
    """Under a SLURM allotment (affinity) the host's other cores say nothing about ours: /proc/stat's
    per-CPU lines are summed over the usable CPUs only."""
    from ecg_transfer.study import estimate

    stat = "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 90 0 10 0 0 0 0 0 0 0\ncpu1 10 0 90 800 0 0 0 0 0 0\nintr 5\n"
    real_open = open
    monkeypatch.setattr(
        "builtins.open",
        lambda f, *a, **k: real_open(tmp_path / "stat", *a, **k) if f == "/proc/stat" else real_open(f, *a, **k),
    )
    (tmp_path / "stat").write_text(stat)
    assert estimate._cpu_times() == (200.0, 1000.0)  # the machine's total line
    assert estimate._cpu_times([0]) == (100.0, 100.0)  # cpu0 only: all busy
    assert estimate._cpu_times([0, 1]) == (200.0, 1000.0)
    monkeypatch.setattr(estimate, "usable_cpus", lambda: [0])
    assert estimate._cpu_count() == 1 and estimate.machine_busy(1, 0.6) and not estimate.machine_busy(1, 0.4)


def test_a_kept_measurement_is_taken_again_when_the_machine_runs_at_another_speed(tmp_path, monkeypatch):
    """Virtual machines with one CPU name ran the same training 1.7x apart: a kept cost serves only
    while the speed probe taken with it still holds (within SPEED_TOLERANCE), is taken again when
    the probe moved further or was never taken, and a busy machine's probe judges nothing."""
    from ecg_transfer.study import estimate

    monkeypatch.setattr(estimate, "_threads", lambda cfg: 2)
    monkeypatch.setattr(estimate, "_cpu_count", lambda: 2)
    cfg, table = RunConfig.from_dict({"model": "fcn_wang"}), tmp_path / "throughput.json"
    echoed: list[str] = []

    def cost(probe_s: float, load: float | None = 0.0) -> list[str]:
        measure = CountingMeasure()
        estimate.throughput(cfg, table, measure=measure, echo=echoed.append, load=load, probe=lambda t: probe_s)
        return measure.calls

    assert cost(0.05) == ["fcn_wang@100/time"] and json.loads(table.read_text()).popitem()[1]["probe_s"] == 0.05
    assert cost(0.05 * estimate.SPEED_TOLERANCE * 0.99) == [] and cost(0.05 / estimate.SPEED_TOLERANCE * 1.01) == []
    assert cost(0.1) == ["fcn_wang@100/time"]  # twice as slow now
    assert echoed[-1].endswith("this machine runs at 0.50x the speed it was measured at) ...")
    assert cost(0.05, load=1.9) == []  # busy: the probe says nothing of the quiet speed
    assert cost(0.05) == ["fcn_wang@100/time"] and "at 2.00x the speed" in echoed[-1]
    stored = json.loads(table.read_text())
    (entry,) = stored.values()
    del entry["probe_s"]  # a measurement kept before probes were taken
    table.write_text(json.dumps(stored))
    assert cost(0.05) == ["fcn_wang@100/time"] and "kept without a speed probe" in echoed[-1]


def test_the_plan_probes_the_speed_once_per_thread_count(spec, tmp_path):
    probes: list[int] = []

    def probe(threads: int) -> float:
        probes.append(threads)
        return 0.05

    runs = plan_study(spec)
    estimate_study(runs, cache_dir=tmp_path / "cache", measure=CountingMeasure(), probe=probe)
    assert len(probes) == 1  # every network of this spec runs at the same thread count
    estimate_study(runs, cache_dir=tmp_path / "cache", measure=CountingMeasure(), probe=probe)
    assert len(probes) == 2  # and again at the next plan, to judge the kept costs


def test_the_speed_probe_is_a_positive_time_and_leaves_the_threads_as_they_were():
    import torch

    before = torch.get_num_threads()  # the real probe: imported before the fixture replaced it
    assert 0 < speed_probe(1, repeats=1) < 5
    assert torch.get_num_threads() == before


def test_the_speed_probe_is_the_median_step_after_a_warm_up(monkeypatch):
    """The first (warm-up) step is left out and the median of the rest kept, so one slow step
    (the first call's allocations, a neighbour's burst) does not move the machine's measure."""
    from ecg_transfer.study import estimate

    steps = iter([100.0, 5.0, 1.0, 3.0, 2.0, 50.0])  # the warm-up, then 5 timed steps
    clock = {"now": 0.0, "started": False}

    def perf_counter():  # called at each step's start and end: each step lasts the next duration
        if clock["started"]:
            clock["now"] += next(steps)
        clock["started"] = not clock["started"]
        return clock["now"]

    monkeypatch.setattr(estimate.time, "perf_counter", perf_counter)
    assert speed_probe(1, repeats=5) == 3.0  # median of 5, 1, 3, 2, 50
