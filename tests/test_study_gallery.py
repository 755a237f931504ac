"""The report's gallery of explained test records: which records are picked, and that the report
shows what the study wrote (and says so when there is nothing)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ecg_transfer.report import write_report  # noqa: E402
from ecg_transfer.study.gallery import gallery_run, pick_examples  # noqa: E402
from ecg_transfer.study.resultsfile import FORMAT  # noqa: E402


def test_picks_the_surest_positive_and_a_real_mistake_for_the_most_frequent_labels():
    labels = ["A", "B", "C", "D"]
    y = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]])
    p = np.array(
        [[0.9, 0.7, 0.1, 0.2], [0.3, 0.1, 0.2, 0.1], [0.6, 0.8, 0.1, 0.9], [0.2, 0.6, 0.4, 0.1], [0.1, 0.2, 0.1, 0.1]]
    )
    picks = pick_examples(y, p, labels, k_labels=2)
    got = [(e["label"], e["example"], e["row"], e["kind"]) for e in picks]
    assert got == [
        ("A", "correct", 0, "true positive"),
        ("A", "wrong", 1, "missed positive"),  # 3 positives
        ("B", "correct", 2, "true positive"),
        ("B", "wrong", 3, "false alarm"),
    ]  # no missed B: a false alarm
    assert all(0 <= e["probability"] <= 1 for e in picks) and picks[1]["probability"] == 0.3
    # a label the network gets right everywhere has no wrong example; labels without positives are skipped
    picks = pick_examples(np.array([[1, 0], [0, 0]]), np.array([[0.9, 0.1], [0.1, 0.2]]), ["X", "Y"], k_labels=3)
    assert [(e["label"], e["example"]) for e in picks] == [("X", "correct")]


def test_a_missed_surest_positive_is_not_shown_as_correct():
    picks = pick_examples(np.array([[1], [1], [0]]), np.array([[0.4], [0.1], [0.2]]), ["A"])
    assert [(e["example"], e["kind"], e["row"]) for e in picks] == [("wrong", "missed positive", 1)]
    # a single positive that is missed is the wrong example, not also the correct one
    picks = pick_examples(np.array([[1], [0]]), np.array([[0.3], [0.2]]), ["A"])
    assert [(e["example"], e["kind"], e["row"]) for e in picks] == [("wrong", "missed positive", 0)]


def test_right_and_wrong_are_decided_at_each_label_s_own_threshold():
    y = np.array([[1, 1], [1, 0], [0, 1], [0, 0]])
    p = np.array([[0.35, 0.9], [0.25, 0.7], [0.2, 0.6], [0.1, 0.1]])
    picks = pick_examples(y, p, ["A", "B"], thresholds=np.array([0.3, 0.8]))
    got = [(e["label"], e["example"], e["row"], e["kind"], e["threshold"]) for e in picks]
    assert got == [
        ("A", "correct", 0, "true positive", 0.3),  # 0.35 >= 0.3: right at A's threshold (missed at 0.5)
        ("A", "wrong", 1, "missed positive", 0.3),
        ("B", "correct", 0, "true positive", 0.8),
        ("B", "wrong", 2, "missed positive", 0.8),  # 0.6 < 0.8 (a true positive at 0.5)
    ]


def test_the_gallery_decides_at_the_thresholds_predict_uses(tmp_path: Path):
    from ecg_transfer.inference.thresholds import run_thresholds
    from ecg_transfer.predictions import save_predictions
    from ecg_transfer.study.gallery import run_decision_thresholds

    values, rule, line = run_decision_thresholds(tmp_path, ["A", "B"])
    assert list(values) == [0.5, 0.5] and rule == "fixed" and "no validation predictions" in line
    rng = np.random.default_rng(0)
    y = (rng.random((40, 2)) < 0.4).astype(int)
    p = np.clip(0.3 * y + rng.random((40, 2)) * 0.6, 0, 1)
    save_predictions(tmp_path / "predictions_val.csv", [f"r{i}" for i in range(40)], ["A", "B"], y, p)
    values, rule, line = run_decision_thresholds(tmp_path, ["B", "A"])
    assert rule == "fmax" and "predictions_val.csv: 40 records" in line
    assert np.array_equal(values, run_thresholds(tmp_path, "fmax", ["B", "A"]).values)  # predict's default rule
    assert not np.allclose(values, 0.5)


def _study_with_headline_run(study: Path) -> Path:
    """study.json and plan.json naming one headline fine-tuned run ``runs/k``; returns its directory."""
    (study / "study.json").write_text(json.dumps({"resolved": {"study": {"protocols": ["p"], "seeds": [0]}}}))
    runs = [{"key": "k", "uses": [{"experiment": "headline", "arm": "finetuned", "protocol": "p", "seed": 0}]}]
    (study / "plan.json").write_text(json.dumps({"runs": runs}))
    (study / "runs" / "k").mkdir(parents=True)
    return study / "runs" / "k"


def test_the_written_gallery_decides_at_the_run_s_thresholds_and_says_so(tmp_path: Path, monkeypatch):
    pytest.importorskip("captum", reason="explanations need captum (pip install 'ecg-transfer[explain]')")
    from types import SimpleNamespace

    from explain_synth import record, save_run, small_model

    import ecg_transfer.datasets.task as task_module
    from ecg_transfer.inference.thresholds import run_thresholds
    from ecg_transfer.predictions import save_predictions
    from ecg_transfer.study.gallery import write_gallery

    run = _study_with_headline_run(tmp_path)
    run.rmdir()
    save_run(small_model(), run)
    (run / "config.json").write_text(json.dumps({"task": "synthetic", "fs": 100.0}))
    ids = [f"t{i}" for i in range(5)]
    y_test = np.array([[1, 0], [1, 1], [1, 0], [0, 1], [0, 0]])
    p_test = np.array([[0.40, 0.2], [0.35, 0.9], [0.10, 0.1], [0.20, 0.8], [0.05, 0.1]])
    save_predictions(run / "predictions_test.csv", ids, ["A", "B"], y_test, p_test)
    y_val = np.array([[1, 1], [1, 0], [1, 1], [0, 0], [0, 1]])
    p_val = np.array([[0.30, 0.9], [0.32, 0.2], [0.50, 0.7], [0.10, 0.1], [0.20, 0.95]])
    save_predictions(run / "predictions_val.csv", [f"v{i}" for i in range(5)], ["A", "B"], y_val, p_val)
    fmax = run_thresholds(run, "fmax", ["A", "B"]).values
    assert 0.2 < fmax[0] <= 0.3  # A: 0.40 is a true positive at the run's threshold, missed at 0.5
    signals = [record(400, seed=i) for i in range(5)]
    data = SimpleNamespace(record_ids=ids, X=SimpleNamespace(leads=None, record=lambda i: signals[i]))
    monkeypatch.setattr(task_module, "load_task", lambda *a, **k: data)
    path = write_gallery(tmp_path, steps=4)
    assert path is not None
    g = json.loads(path.read_text())
    got = [(e["label"], e["example"], e["record"], e["kind"], e.get("threshold")) for e in g["entries"]]
    assert got[:2] == [
        ("A", "correct", "t0", "true positive", fmax[0]),
        ("A", "wrong", "t2", "missed positive", fmax[0]),
    ]
    assert all(e["threshold_rule"] == "fmax" for e in g["entries"]) and g["threshold_rule"].startswith("fmax: ")
    assert f"A {fmax[0]:.2f}" in g["threshold"]
    numbers = json.loads((tmp_path / g["entries"][0]["json"]).read_text())
    assert numbers["run_dir"] == "runs/k" and numbers["windows"]["count"] == 2


def test_the_study_notes_a_missing_captum_once_without_loading_anything(tmp_path: Path, monkeypatch):
    import sys
    from types import SimpleNamespace

    import ecg_transfer.datasets.task as task_module
    from ecg_transfer.study.runner import StudyRunner

    run = _study_with_headline_run(tmp_path)
    (run / "predictions_test.csv").write_text("record_id,true_A,prob_A\nr1,1,0.9\n")
    monkeypatch.setitem(sys.modules, "captum", None)  # not installed
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    monkeypatch.setattr(task_module, "load_task", lambda *a, **k: pytest.fail("the task was loaded for nothing"))
    said: list[str] = []
    runner = SimpleNamespace(study_dir=tmp_path, echo=said.append, _gallery_note_shown=False)
    for _ in range(3):  # the results are written after every run
        StudyRunner._write_gallery(runner)  # type: ignore[arg-type]
    assert said == [
        "note: no explained records in the report (explanations need captum: pip install 'ecg-transfer[explain]')"
    ]


def test_the_gallery_run_is_the_headlines_first_fine_tuned_run():
    runs = [
        {"key": "a", "uses": [{"experiment": "headline", "arm": "standalone", "protocol": "p", "seed": 0}]},
        {
            "key": "b",
            "uses": [
                {"experiment": "exp1", "arm": "finetuned", "protocol": "p", "seed": 0},
                {"experiment": "headline", "arm": "finetuned", "protocol": "p", "seed": 0},
            ],
        },
        {"key": "c", "uses": [{"experiment": "headline", "arm": "finetuned", "protocol": "q", "seed": 0}]},
    ]
    pick = {"done": lambda k: True, "val_score": lambda k: None}
    assert gallery_run(runs, "p", 0, **pick) == "b" and gallery_run(runs, "q", 0, **pick) == "c"
    assert gallery_run(runs, "p", 1, **pick) is None


def _png() -> bytes:
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def test_the_report_shows_the_gallery_the_study_wrote(tmp_path: Path):
    (tmp_path / "explain").mkdir()
    (tmp_path / "explain" / "r1__AF.png").write_bytes(_png())
    gallery = {
        "run": "runs/k1",
        "protocol": "seed18",
        "seed": 0,
        "method": "integrated gradients",
        "threshold": 0.5,
        "n_test": 12,
        "entries": [
            {
                "label": "AF",
                "n_pos": 4,
                "example": "correct",
                "kind": "true positive",
                "probability": 0.93,
                "threshold": 0.31,
                "threshold_rule": "fmax",
                "record": "r1",
                "png": "explain/r1__AF.png",
            },
            {
                "label": "AF",
                "n_pos": 4,
                "example": "wrong",
                "kind": "missed positive",
                "probability": 0.12,
                "record": "r2",
                "png": "explain/r2__AF.png",
            },
        ],
    }  # PNG lost
    (tmp_path / "results.json").write_text(json.dumps({"format": FORMAT, "study": {"name": "g"}, "gallery": gallery}))
    paths = write_report(tmp_path)
    html, md = paths["html"].read_text(), paths["markdown"].read_text()
    section = html.split('id="gallery"', 1)[1].split("</section>", 1)[0]
    assert section.count("data:image/png;base64,") == 1 and "record r1, p = 0.930" in section
    assert "p = 0.930 (threshold 0.31, fmax)" in section  # the caption names the threshold it was decided at
    assert "figure could not be drawn" in section  # the missing PNG says so, the report is still written
    assert "only 12 test records" in section  # a small test set is flagged beside the examples
    assert "## Why the model decided" in md and "](gallery_0.png)" in md and (paths["dir"] / "gallery_0.png").exists()
    # without a gallery the section says why
    (tmp_path / "results.json").write_text(json.dumps({"format": FORMAT, "study": {"name": "g"}}))
    html = write_report(tmp_path)["html"].read_text()
    assert "needs captum" in html.split('id="gallery"', 1)[1].split("</section>", 1)[0]
