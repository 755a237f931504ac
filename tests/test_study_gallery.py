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
    assert gallery_run(runs, "p", 0) == "b" and gallery_run(runs, "q", 0) == "c" and gallery_run(runs, "p", 1) is None


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
    assert "figure could not be drawn" in section  # the missing PNG says so, the report is still written
    assert "only 12 test records" in section  # a small test set is flagged beside the examples
    assert "## Why the model decided" in md and "](gallery_0.png)" in md and (paths["dir"] / "gallery_0.png").exists()
    # without a gallery the section says why
    (tmp_path / "results.json").write_text(json.dumps({"format": FORMAT, "study": {"name": "g"}}))
    html = write_report(tmp_path)["html"].read_text()
    assert "needs captum" in html.split('id="gallery"', 1)[1].split("</section>", 1)[0]
