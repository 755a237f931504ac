"""The whole study end to end on tiny fixtures, through the CLI: every experiment trains and
evaluates for real (a tiny network, two epochs), results.json and the report are written, a second
run trains nothing, and a study killed mid-way resumes without retraining what was done."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ecg_transfer.cli import main
from wfdb_fixtures import make_cinc_tree, make_ptbxl_tree

TINY = "{filters = [8, 8], kernel_sizes = [5, 3], head_hidden = [8], head_dropout = 0.1}"


def spec_text(data: Path, out: Path, frequency: bool = True, strategy: bool = True, lengths: str = "[1, 2]") -> str:
    return f"""
[study]
name = "tiny"
out = "{out}"
model = "fcn_wang"
model_kwargs = {TINY}
fs = 100
seeds = [0, 1]
bootstrap = 50
cache_dir = "{data / "cache"}"
lengths = {lengths}

[source]
root = "{data / "ptbxl"}"
epochs = 2
allow_missing = true
train_fraction = 0.5

[target]
root = "{data / "g12ec"}"

[finetune]
policy = "gradual"
stages = [{{epochs = 1, train = "head", lr = 0.01}}, {{epochs = 1, train = "all", lr = [1e-4, 1e-3]}}]

[standalone]
epochs = 2

[experiments.target_share]
shares = [20, 50]
repeats = 2

[experiments.source_share]
shares = [50, 100]
target_share = 20

[experiments.sampling_rate]
rates = [250, 100, 50]

[experiments.calibration]
methods = ["temperature", "isotonic"]

[experiments.frequency]
enabled = {str(frequency).lower()}
inputs = ["spectrum"]

[experiments.strategy]
enabled = {str(strategy).lower()}
strategies = ["none", "supervised:rhythm", "self-supervised"]
shares = [50]
source_epochs = 1
ssl = {{method = "masked"}}
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("study-data")
    make_ptbxl_tree(base / "ptbxl", n_records=120, rates=(100, 500))
    make_cinc_tree(base / "g12ec", n_records=80)
    return base


def _runs(study: Path) -> dict[str, dict]:
    plan = json.loads((study / "plan.json").read_text())["runs"]
    return {r["key"]: r for r in plan}


def test_the_whole_study_runs_and_reports(data, tmp_path, capsys):
    study = tmp_path / "study"
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_text(data, study))
    assert main(["study", "run", str(spec), "--no-progress", "--report"]) == 0
    out = capsys.readouterr().out
    assert "failed now 0" in out
    runs = _runs(study)
    res = json.loads((study / "results.json").read_text())
    assert res["status"]["done"] == res["status"]["total"] == len(runs) and res["status"]["failed"] == 0
    ssl_runs = {k for k, r in runs.items() if r["config"].get("ssl")}
    assert len(ssl_runs) == 1  # experiment 6's self-supervised pre-training: an encoder, no predictions
    ssl_dir = study / "runs" / ssl_runs.pop()
    assert (ssl_dir / "model.pt").exists() and not list(ssl_dir.glob("predictions_*.csv"))
    ssl_splits = json.loads((ssl_dir / "splits.json").read_text())
    assert ssl_splits["test"] == [] and len(ssl_splits["train"]) > 0  # the PTB-XL test fold never read
    for key, r in runs.items():  # every other run: predictions for validation and test, metrics with a CI
        if r["config"].get("ssl"):
            continue
        d = study / "runs" / key
        assert (d / "predictions_val.csv").exists() and (d / "predictions_test.csv").exists(), r["uses"][0]["name"]
        assert json.loads((d / "evaluation" / "metrics.json").read_text())["headline"]["macro_auc"]["ci"]
    # the two arms of every pair share split and test records
    by_name = {u["name"]: k for k, r in runs.items() for u in r["uses"]}
    for name, key in by_name.items():
        if name.endswith("/finetuned/s0") and not name.startswith(("exp2", "exp6")):  # exp6: paired with "none" below
            other = by_name[name.replace("/finetuned/", "/standalone/")]
            a = json.loads((study / "runs" / key / "splits.json").read_text())
            b = json.loads((study / "runs" / other / "splits.json").read_text())
            assert a == b, name
    for row in res["headline"]:
        assert row["finetuned"]["value"] is not None and row["difference"]["ci"] is not None
        assert row["finetuned"]["n"] == 2 and len(row["per_class"]) == len(row["labels"])
    assert {(r["share"], r["arm"]) for r in res["exp1"]["rest"]} == {
        (s, a) for s in (20, 50) for a in ("finetuned", "standalone")
    }
    assert all(r["value"] is not None for r in res["exp1"]["fixed_test"])
    assert [r["share"] for r in res["exp2"]] == [50, 100] and res["exp2"][0]["pretrain_test_auc"]["value"] is not None
    assert res["exp2"][0]["n_pretrain_records"] < res["exp2"][1]["n_pretrain_records"]
    assert [r["fs"] for r in res["exp3"]] == [250.0, 100.0, 50.0] and res["exp3"][0]["source_fs"] == 500
    assert all(r["finetuned"]["value"] is not None for r in res["exp3"])
    assert [r["input"] for r in res["exp5"]] == ["time", "spectrum"]
    assert res["exp5"][1]["pretrain"]["value"] is not None
    e6 = {r["strategy"]: r for r in res["exp6"]}
    assert list(e6) == ["none", "supervised:rhythm", "self-supervised"] and all(r["share"] == 50 for r in e6.values())
    assert all(r["value"] is not None and r["n"] == 1 for r in e6.values())
    assert e6["none"]["arm"] == "standalone" and e6["none"]["difference_to_none"]["value"] is None
    for strategy in ("supervised:rhythm", "self-supervised"):  # paired with "none" on the same test records
        assert e6[strategy]["arm"] == "finetuned" and e6[strategy]["difference_to_none"]["ci"] is not None
    assert (
        e6["supervised:rhythm"]["pretrain"]["value"] is not None and e6["self-supervised"]["pretrain"]["value"] is None
    )
    cal = res["exp4"][0]
    assert set(cal["methods"]) == {"uncalibrated", "temperature", "isotonic"}
    assert set(cal["reliability"]) == {"uncalibrated", "temperature", "isotonic"}
    assert all(m["max_auc_change"] < 1e-3 for m in cal["methods"].values())
    html = (study / "report" / "index.html").read_text()
    assert "Headline" in html and "data:image/png;base64," in html
    assert 'id="exp6"' in html and "self-supervised" in html
    # the gallery: the headline's first fine-tuned run explains some of its test records, shown in the report
    gallery = json.loads((study / "explain" / "gallery.json").read_text())
    assert gallery["entries"] and all((study / e["png"]).is_file() for e in gallery["entries"])
    # every target run at both lengths, each arm's chosen on validation; the gallery explains the chosen run
    lengths = res["lengths"]
    assert lengths["factors"] == [1.0, 2.0] and {c["arm"] for c in lengths["comparisons"]} == {
        "finetuned",
        "standalone",
    }
    assert all(c["chosen"] in (1.0, 2.0) and len(c["val_macro_auc"]) == 2 for c in lengths["comparisons"])
    head = next(r for r in res["headline"] if r["protocol"] == "seed18")
    assert gallery["run"] == head["runs"]["finetuned"][0]
    assert any(u["name"].startswith("headline/seed18/finetuned/s0") for u in runs[gallery["run"][5:]]["uses"])
    assert res["gallery"]["entries"] == gallery["entries"]
    assert html.split('id="gallery"', 1)[1].split("</section>", 1)[0].count("data:image/png;base64,") == len(
        gallery["entries"]
    )
    # again: everything is done, nothing trains
    assert main(["study", "run", str(spec), "--no-progress"]) == 0
    assert "trained 0," in capsys.readouterr().out
    assert main(["study", "status", str(spec)]) == 0
    assert f"{len(runs)} done" in capsys.readouterr().out


def test_a_killed_study_resumes_and_retrains_nothing_that_was_done(data, tmp_path):
    study = tmp_path / "study"
    spec = tmp_path / "spec.toml"
    spec.write_text(spec_text(data, study, frequency=False, strategy=False, lengths="[1]"))
    cmd = [sys.executable, "-m", "ecg_transfer", "study", "run", str(spec), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    done: list[Path] = []
    while time.time() < deadline and proc.poll() is None:
        states = list((study / "runs").glob("*/state.json")) if (study / "runs").exists() else []
        done = [p.parent for p in states if json.loads(p.read_text())["state"] == "done"]
        if len(done) >= 4:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the study finished before it could be killed; make it bigger"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {d.name: (d / "model.pt").stat().st_mtime_ns for d in done}
    assert main(["study", "run", str(spec), "--no-progress"]) == 0
    res = json.loads((study / "results.json").read_text())
    assert res["status"]["done"] == res["status"]["total"]
    for key, mtime in finished.items():  # trained once, before the kill
        assert (study / "runs" / key / "model.pt").stat().st_mtime_ns == mtime
    assert not list((study / "runs").glob("*/lock"))
