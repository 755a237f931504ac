"""A decision threshold fitted on a few positive validation records is named in ``notes``, which
``predict`` prints and writes, and the study gallery's threshold line carries."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _val(n_pos: list[int], n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.zeros((n, len(n_pos)), dtype=np.uint8)
    for k, m in enumerate(n_pos):
        y[rng.choice(n, m, replace=False), k] = 1
    return y, np.clip(0.3 * y + 0.6 * rng.random(y.shape), 0, 1)


def test_one_note_names_the_labels_fitted_on_few_positives() -> None:
    from ecg_transfer.inference.thresholds import FEW_VALIDATION_POSITIVES, choose_thresholds

    assert FEW_VALIDATION_POSITIVES == 5
    y, p = _val([1, 4, 5, 12, 0])
    labels = ["one", "four", "five", "many", "none"]
    for rule in ("fmax", "sensitivity:0.9"):
        t = choose_thresholds(rule, labels, y, p)
        few = [n for n in t.notes if "fewer than 5 positive validation records" in n]
        assert len(few) == 1, t.notes
        v = dict(zip(labels, t.values))
        assert few[0].endswith(
            f": one (1 positive, threshold {v['one']:.3g}), four (4 positives, threshold {v['four']:.3g})"
        )
        assert "none: no positive validation record" in " ".join(t.notes)  # the fallback note, as before
        assert t.to_dict()["notes"] == t.notes
    assert choose_thresholds("0.4", labels, y, p).notes == []  # a fixed number is not fitted
    assert choose_thresholds("fmax", ["a", "b"], *_val([5, 30])).notes == []


def test_the_gallery_line_carries_the_note(tmp_path: Path) -> None:
    """study/gallery.py joins ``thr.notes`` into its threshold line: the note reaches the report."""
    from ecg_transfer.predictions import save_predictions
    from ecg_transfer.study.gallery import run_decision_thresholds

    y, p = _val([2, 20])
    save_predictions(tmp_path / "predictions_val.csv", [f"v{i}" for i in range(len(y))], ["A", "B"], y, p)
    values, rule, line = run_decision_thresholds(tmp_path, ["A", "B"])
    assert rule == "fmax" and line.startswith("fmax: each label's validation-F1-maximising threshold (")
    assert "; threshold(s) fitted on fewer than 5 positive validation records, so they may not carry over " in line
    assert f"A (2 positives, threshold {values[0]:.3g})" in line and "B (" not in line
