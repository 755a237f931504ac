"""Record-level prediction (windows -> sigmoid -> aggregate) and the predictions CSV format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ecg_transfer.training import GlobalStandardScaler, load_predictions, predict_records, save_predictions


class LeadMean(nn.Module):
    """logit_k = mean of lead k over the window: easy to compute by hand."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, : self.k, :].mean(dim=-1)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.mark.parametrize("how", ["max", "mean"])
def test_predict_records_by_hand(how):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 3, 40)).astype(np.float32)
    X[2, 0, 30:] += 4.0  # a finding only at the end of record 2
    Y = rng.integers(0, 2, size=(5, 2)).astype(np.uint8)
    idx = np.array([4, 2, 0])
    scaler = GlobalStandardScaler(0.5, 2.0)
    probs, loss = predict_records(
        LeadMean(2), X, idx, scaler=scaler, crop_len=10, stride=5, aggregate=how, batch_size=4, Y=Y
    )
    expected, losses = [], []
    for r in idx:
        z = (X[r].astype(np.float64) - 0.5) / 2.0
        logits = np.array([[z[k, s : s + 10].mean() for k in range(2)] for s in range(0, 31, 5)])  # 7 windows
        p = _sigmoid(logits)
        expected.append(p.max(axis=0) if how == "max" else p.mean(axis=0))
        y = Y[r].astype(np.float64)
        losses.append(-(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert probs.shape == (3, 2) and probs.dtype == np.float32
    assert np.allclose(probs, np.array(expected), atol=1e-6)
    assert loss == pytest.approx(np.concatenate(losses).mean(), rel=1e-5)
    if how == "max":
        assert probs[1, 0] > 0.85  # the record-2 finding in its last windows dominates


def test_predictions_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    ids = ["00017_lr", "E00271", "a,b"]  # a comma needs quoting
    labels = ["426783006", "NORM", "1AVB"]
    y = rng.integers(0, 2, size=(3, 3)).astype(np.uint8)
    p32 = rng.random((3, 3)).astype(np.float32)
    path = save_predictions(tmp_path / "predictions_test.csv", ids, labels, y, p32)
    header = path.read_text().splitlines()[0].split(",")
    assert header == [
        "record_id",
        "true:426783006",
        "true:NORM",
        "true:1AVB",
        "prob:426783006",
        "prob:NORM",
        "prob:1AVB",
    ]
    rid, lab, yt, pr = load_predictions(path)
    assert rid == ids and lab == labels
    assert yt.dtype == np.uint8 and np.array_equal(yt, y)
    assert np.array_equal(pr.astype(np.float32), p32)  # float32 written exactly
    p64 = rng.random((3, 3))
    save_predictions(tmp_path / "p64.csv", ids, labels, y, p64)
    assert np.array_equal(load_predictions(tmp_path / "p64.csv")[3], p64)


def test_save_predictions_refuses_bad_input(tmp_path):
    y = np.array([[0, 1]])
    with pytest.raises(ValueError, match="shape"):
        save_predictions(tmp_path / "a.csv", ["r"], ["A"], y, np.array([[0.1, 0.2]]))
    with pytest.raises(ValueError, match="0 and 1"):
        save_predictions(tmp_path / "a.csv", ["r"], ["A", "B"], np.array([[0, 2]]), np.array([[0.1, 0.2]]))
    with pytest.raises(ValueError, match="NaN"):
        save_predictions(tmp_path / "a.csv", ["r"], ["A", "B"], y, np.array([[np.nan, 0.2]]))
    with pytest.raises(ValueError, match="unique"):
        save_predictions(tmp_path / "a.csv", ["r"], ["A", "A"], y, np.array([[0.1, 0.2]]))
    assert not (tmp_path / "a.csv").exists()
    (tmp_path / "b.csv").write_text("id,x\n1,2\n")
    with pytest.raises(ValueError, match="record_id"):
        load_predictions(tmp_path / "b.csv")
