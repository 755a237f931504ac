"""``keep = "best-val"``: a run keeps the weights of its validated epoch with the best validation
macro AUC (chosen on the validation folds only), across a kill and resume too; "last" is unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecg_transfer.errors import ConfigError
from ecg_transfer.settings import RunConfig
from ecg_transfer.training import train_run
from ecg_transfer.training import loop
from training_synth import LABELS, Killed, assert_same_state, kill_after, load_state, make_data, tiny_config

SCRIPT = [0.6, 0.9, 0.7, 0.8]  # validation macro AUC of epochs 1-4 as the loop sees them: epoch 2 is best


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture
def scripted_auc(monkeypatch):
    """The loop's validation AUCs follow SCRIPT (so the best epoch is known and not the last); the
    probabilities each validation produced are kept, in order."""
    seen: list[np.ndarray] = []
    script = iter(SCRIPT)

    def fake(y_true, probs):
        seen.append(np.array(probs, copy=True))
        return next(script), y_true.shape[1]

    monkeypatch.setattr(loop, "macro_auc", fake)
    return seen


def _snapshots():
    states: dict[int, dict] = {}

    def callback(row, model):
        states[row["epoch"]] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    return states, callback


def _val_probs(run_dir) -> np.ndarray:
    table = pd.read_csv(run_dir / "predictions_val.csv", dtype={"record_id": str})
    return table[[c for c in table.columns if c != "record_id" and not c.startswith("true:")]].to_numpy()


def test_best_val_keeps_the_best_validated_epoch_and_its_predictions(tmp_path, data, scripted_auc):
    X, Y, ids, splits = data
    states, snapshot = _snapshots()
    result = train_run(
        tiny_config(epochs=4, keep="best-val"),
        X,
        Y,
        ids,
        splits,
        LABELS,
        tmp_path / "run",
        progress=False,
        callbacks=[snapshot],
    )
    kept = load_state(result.model_path)["state_dict"]
    assert_same_state(kept, states[2])
    with pytest.raises(AssertionError):
        assert_same_state(kept, states[4])  # the last epoch's weights differ: the choice mattered
    np.testing.assert_allclose(_val_probs(tmp_path / "run"), scripted_auc[1], rtol=1e-5, atol=1e-7)


def test_last_is_the_default_and_keeps_the_last_epoch(tmp_path, data, scripted_auc):
    X, Y, ids, splits = data
    states, snapshot = _snapshots()
    result = train_run(
        tiny_config(epochs=4), X, Y, ids, splits, LABELS, tmp_path / "run", progress=False, callbacks=[snapshot]
    )
    assert_same_state(load_state(result.model_path)["state_dict"], states[4])
    assert "keep" not in RunConfig().to_dict()  # runs from before `keep` keep their config and run key


def test_best_val_survives_a_kill_and_resume(tmp_path, data, scripted_auc):
    X, Y, ids, splits = data
    cfg = tiny_config(epochs=4, keep="best-val")
    states, snapshot = _snapshots()
    with pytest.raises(Killed):  # killed after epoch 3: the best (epoch 2) is only in the checkpoint
        train_run(cfg, X, Y, ids, splits, LABELS, tmp_path / "run", progress=False, callbacks=[snapshot, kill_after(3)])
    result = train_run(cfg, X, Y, ids, splits, LABELS, tmp_path / "run", resume=True, progress=False)
    assert result.resumed_from_epoch == 3
    assert_same_state(load_state(result.model_path)["state_dict"], states[2])
    np.testing.assert_allclose(_val_probs(tmp_path / "run"), scripted_auc[1], rtol=1e-5, atol=1e-7)


def test_best_val_needs_validation_records_and_labels(tmp_path, data):
    X, Y, ids, splits = data
    no_val = {"train": splits["train"], "val": splits["val"][:0], "test": splits["test"]}
    with pytest.raises(ConfigError, match="best-val"):
        train_run(tiny_config(epochs=1, keep="best-val"), X, Y, ids, no_val, LABELS, tmp_path / "r", progress=False)
    with pytest.raises(ConfigError, match="keep"):
        RunConfig.from_dict({"keep": "best-val", "ssl": {"method": "contrastive"}})
    with pytest.raises(ConfigError, match="keep"):
        RunConfig.from_dict({"keep": "best-test"})


def test_the_cli_says_which_epoch_a_best_val_run_kept():
    from types import SimpleNamespace

    from ecg_transfer.cli import _result_line

    history = [{"epoch": e, "val_macro_auc": a} for e, a in zip(range(1, 5), [0.6, 0.9, None, 0.9])]
    result = SimpleNamespace(run_dir="runs/x", val_macro_auc=0.9, test_macro_auc=0.8, history=history)
    line = _result_line(RunConfig(keep="best-val"), result)
    assert line.endswith("(the weights of epoch 2 of 4: best validation macro AUC)")  # the first of equal AUCs
    assert "weights of epoch" not in _result_line(RunConfig(), result)
