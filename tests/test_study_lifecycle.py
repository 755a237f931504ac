"""The lifecycle of a study run, with real (tiny) training: a run killed after any of its writes is
never reported done before its model, predictions, evaluation and model card are all there, and
the next ``study run`` finishes it without training it again; ``ecg-transfer train --resume``
finishes a run that has its model but not its predictions; an evaluation of a study run that was
rewritten or written by an older version is repaired by the next ``study run``; the model card
of a study run quotes the study's calibration."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecg_transfer.cli import main
from ecg_transfer.study.store import RunStore
from wfdb_fixtures import make_cinc_tree, make_ptbxl_tree

TINY = "{filters = [8, 8], kernel_sizes = [5, 3], head_hidden = [8], head_dropout = 0.1}"
METHODS = ["temperature", "isotonic"]


def spec_text(data: Path) -> str:
    return f"""
[study]
name = "life"
model = "fcn_wang"
model_kwargs = {TINY}
fs = 100
seeds = [0]
protocols = ["seed18"]
bootstrap = 50
cache_dir = "{data / "cache"}"
lengths = [1]                     # one run per arm: the lifecycle, not the choice of length

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
enabled = false

[experiments.source_share]
enabled = false

[experiments.sampling_rate]
enabled = false

[experiments.frequency]
enabled = false

[experiments.calibration]
methods = {json.dumps(METHODS)}
"""


class Killed(BaseException):
    """Stands for SIGKILL inside this process: not an Exception, so nothing records it."""


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A finished three-run study (pre-training, fine-tuned, standalone): (spec, study dir, victim key).
    The victim is the standalone headline run: trained, calibrated, carded."""
    root = tmp_path_factory.mktemp("lifecycle")
    make_ptbxl_tree(root / "ptbxl", n_records=120, rates=(100,))
    make_cinc_tree(root / "g12ec", n_records=80)
    spec = root / "spec.toml"
    spec.write_text(spec_text(root))
    study = root / "study"
    assert main(["study", "run", str(spec), "--out", str(study), "--no-progress"]) == 0
    plan = json.loads((study / "plan.json").read_text())["runs"]
    victim = next(r["key"] for r in plan if r["kind"] == "standalone")
    return spec, study, victim


def _probs(path: Path) -> np.ndarray:
    df = pd.read_csv(path)
    return df[[c for c in df.columns if c.startswith("prob:")]].to_numpy()


def _assert_complete(study: Path, key: str, reference: Path) -> None:
    """Everything a finished study run holds, the study's evaluation quoted by its card."""
    d = study / "runs" / key
    assert RunStore(study).state(key)["state"] == "done"
    m = json.loads((d / "evaluation" / "metrics.json").read_text())
    assert set(m["calibration"]) >= {"uncalibrated", *METHODS} and m["settings"]["n_resamples"] == 50
    card = (d / "MODEL_CARD.md").read_text()
    assert "| temperature |" in card and "| isotonic |" in card and "Not evaluated" not in card
    for split in ("val", "test"):  # the predictions of the uninterrupted run
        np.testing.assert_allclose(
            _probs(d / f"predictions_{split}.csv"), _probs(reference / f"predictions_{split}.csv"), rtol=0, atol=1e-6
        )


def _fresh_copy(study: Path, key: str, dest: Path) -> Path:
    shutil.copytree(study, dest)
    shutil.rmtree(dest / "runs" / key)
    return dest


def _count_writes(monkeypatch, run_dir: Path, kill_at: int | None) -> list[str]:
    """Count the files atomically written into ``run_dir``; 'kill' right after the ``kill_at``-th."""
    real = os.replace
    written: list[str] = []

    def replace(src, dst, *a, **k):
        real(src, dst, *a, **k)
        if str(dst).startswith(str(run_dir) + os.sep):
            written.append(os.path.relpath(dst, run_dir))
            if len(written) == kill_at:
                raise Killed(dst)

    monkeypatch.setattr(os, "replace", replace)
    return written


def test_a_run_killed_after_any_write_is_finished_not_skipped_nor_retrained(base, tmp_path, monkeypatch, capsys):
    spec, study, victim = base
    import ecg_transfer.study.runner as R

    monkeypatch.setattr(R.StudyRunner, "_write_results", lambda self: None)  # not what is tested here
    args = ["study", "run", str(spec), "--no-progress", "--out"]
    count = tmp_path / "count"
    with monkeypatch.context() as m:
        writes = _count_writes(m, _fresh_copy(study, victim, count) / "runs" / victim, None)
        assert main([*args, str(count)]) == 0
    assert writes[-1] == "state.json" and "model.pt" in writes and "MODEL_CARD.md" in writes, writes
    assert writes.index("MODEL_CARD.md") > writes.index("evaluation/metrics.json") > writes.index("model.pt")
    for i in range(1, len(writes) + 1):
        work = _fresh_copy(study, victim, tmp_path / f"kill{i}")
        run_dir = work / "runs" / victim
        with monkeypatch.context() as m:
            _count_writes(m, run_dir, i)
            with pytest.raises(Killed):
                main([*args, str(work)])
        capsys.readouterr()
        state = RunStore(work).state(victim)["state"]
        assert state == ("done" if i == len(writes) else "interrupted"), f"killed after {writes[i - 1]}"
        if i == len(writes) // 2:  # `study status` says the same
            assert main(["study", "status", str(spec), "--out", str(work)]) == 0
            assert "2 done, 0 running, 1 interrupted" in capsys.readouterr().out
        trained = (run_dir / "model.pt").exists()
        stamps = {n: (run_dir / n).stat().st_mtime_ns for n in ("checkpoint.pt", "model.pt") if trained}
        assert main([*args, str(work)]) == 0
        _assert_complete(work, victim, study / "runs" / victim)
        if trained:  # finished from what was there: not trained, model.pt not rewritten
            assert {n: (run_dir / n).stat().st_mtime_ns for n in stamps} == stamps, f"after {writes[i - 1]}"


KILL_AFTER_MODEL = textwrap.dedent("""
    import os, sys
    from ecg_transfer.cli import main

    run_dir = sys.argv[1]
    real = os.replace

    def replace(src, dst, *a, **k):
        real(src, dst, *a, **k)
        if str(dst) == os.path.join(run_dir, "model.pt"):
            os._exit(9)  # killed between model.pt and the predictions

    os.replace = replace
    sys.exit(main(sys.argv[2:]))
""")


def test_killed_between_model_and_predictions_for_real(base, tmp_path, capsys):
    """The issue's reproduction, with a real process exit (lock left behind): the run is not
    reported done, and the next `study run` finishes it from model.pt."""
    spec, study, victim = base
    work = _fresh_copy(study, victim, tmp_path / "work")
    run_dir = work / "runs" / victim
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            KILL_AFTER_MODEL,
            str(run_dir),
            "study",
            "run",
            str(spec),
            "--no-progress",
            "--out",
            str(work),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 9, proc.stdout + proc.stderr
    assert (run_dir / "model.pt").exists() and not (run_dir / "predictions_test.csv").exists()
    assert (run_dir / "lock").exists()
    assert main(["study", "status", str(spec), "--out", str(work), "--all"]) == 0
    out = capsys.readouterr().out
    assert "2 done, 0 running, 1 interrupted" in out and f"interrupted  {victim}" in out
    ckpt = (run_dir / "checkpoint.pt").stat().st_mtime_ns
    assert main(["study", "run", str(spec), "--no-progress", "--out", str(work)]) == 0
    assert "trained 1," in capsys.readouterr().out
    _assert_complete(work, victim, study / "runs" / victim)
    assert (run_dir / "checkpoint.pt").stat().st_mtime_ns == ckpt and not (run_dir / "lock").exists()


def test_train_resume_finishes_a_run_that_has_its_model(base, tmp_path, capsys):
    """`ecg-transfer train --resume` (a run outside a study) writes the predictions and the card
    that a killed run lacks, from its model.pt, without training."""
    _, study, victim = base
    run_dir = tmp_path / "run"
    shutil.copytree(study / "runs" / victim, run_dir)
    counts = (run_dir / "label_counts.json").read_text()
    for name in ("predictions_val.csv", "predictions_test.csv", "MODEL_CARD.md", "state.json", "definition.json"):
        (run_dir / name).unlink()
    (run_dir / "label_counts.json").unlink()  # as a run trained before the file was written
    shutil.rmtree(run_dir / "evaluation")
    stamps = {n: (run_dir / n).stat().st_mtime_ns for n in ("checkpoint.pt", "model.pt")}
    cmd = ["train", str(run_dir / "config.json"), "--run-dir", str(run_dir), "--no-progress"]
    assert main(cmd) == 2  # an existing run is never overwritten
    assert "already holds a run" in capsys.readouterr().err
    assert main([*cmd, "--resume"]) == 0
    assert "test macro AUC" in capsys.readouterr().out
    for split in ("val", "test"):
        np.testing.assert_allclose(
            _probs(run_dir / f"predictions_{split}.csv"),
            _probs(study / "runs" / victim / f"predictions_{split}.csv"),
            rtol=0,
            atol=1e-6,
        )
    assert {n: (run_dir / n).stat().st_mtime_ns for n in stamps} == stamps
    assert "Not evaluated" in (run_dir / "MODEL_CARD.md").read_text()  # written by `train`, before any evaluation
    assert (run_dir / "label_counts.json").read_text() == counts  # written when missing, from the same split


def test_a_rewritten_or_old_evaluation_is_repaired_without_training(base, tmp_path, capsys):
    """What `ecg-transfer evaluate` used to do to a study run (rewrite evaluation/metrics.json
    without the calibration), predictions edited by hand, and a marker written before this format:
    `study status` says interrupted, `study run` predicts and evaluates again and trains nothing.
    The command itself now refuses."""
    from ecg_transfer.evaluation.runs import evaluate_run

    spec, study, victim = base
    work = tmp_path / "work"
    shutil.copytree(study, work)
    run_dir = work / "runs" / victim
    assert main(["evaluate", str(run_dir), "--resamples", "10", "--no-plots"]) == 2
    assert "of the study" in capsys.readouterr().err
    evaluate_run(run_dir, n_resamples=10, plots=False)  # the old command: no calibration, 10 resamples
    df = pd.read_csv(run_dir / "predictions_test.csv")  # and predictions edited by hand
    df[[c for c in df.columns if c.startswith("prob:")]] = 0.5
    df.to_csv(run_dir / "predictions_test.csv", index=False)
    pre = next(k for k in json.loads((work / "plan.json").read_text())["runs"] if k["kind"] == "pretrain")["key"]
    marker = json.loads((work / "runs" / pre / "state.json").read_text())
    (work / "runs" / pre / "state.json").write_text(json.dumps({"state": "done", "at": marker["at"]}))  # old format
    assert main(["study", "status", str(spec), "--out", str(work), "--all"]) == 0
    out = capsys.readouterr().out
    assert "1 done, 0 running, 2 interrupted" in out and "changed since the run was completed" in out
    stamps = {p: p.stat().st_mtime_ns for p in work.glob("runs/*/checkpoint.pt")}
    assert main(["study", "run", str(spec), "--no-progress", "--out", str(work)]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    _assert_complete(work, victim, study / "runs" / victim)
    assert RunStore(work).state(pre)["state"] == "done"
