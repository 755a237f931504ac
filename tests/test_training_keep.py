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
    cfg = tiny_config(epochs=4, keep="best-val")
    result = train_run(cfg, X, Y, ids, splits, LABELS, tmp_path / "run", progress=False, callbacks=[snapshot])
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


def test_the_kept_epoch_is_named_by_the_cli_and_the_model_card(tmp_path, data, scripted_auc):
    from ecg_transfer.cli import _result_line
    from ecg_transfer.inference.modelcard import write_model_card

    X, Y, ids, splits = data
    cfg = tiny_config(epochs=4, keep="best-val")
    result = train_run(cfg, X, Y, ids, splits, LABELS, tmp_path / "run", progress=False)
    assert result.kept_epoch == 2
    line = _result_line(RunConfig.from_dict(cfg), result)
    assert line.endswith("(the weights of epoch 2 of 4: best validation macro AUC)")
    card = write_model_card(tmp_path / "run", n_resamples=20).read_text()
    assert "Kept epoch (2 of 4: best validation macro AUC)" in card and "Last epoch" not in card


def test_kept_epoch_from_a_history():
    from ecg_transfer.training.history import kept_epoch

    history = [{"epoch": e, "val_macro_auc": a} for e, a in zip(range(1, 6), [0.6, 0.9, None, 0.9, 0.7])]
    assert kept_epoch(history, "best-val") == 2  # the first of equal AUCs, as the loop keeps it
    assert kept_epoch(history, "last") == 5
    assert kept_epoch([{"epoch": 1, "val_macro_auc": None}], "best-val") == 1  # no AUC: the last
    assert kept_epoch([], "best-val") is None


def test_best_val_after_the_last_epoch_ran_but_before_model_pt(tmp_path, data, scripted_auc):
    """Killed after the last epoch's checkpoint: the resume trains nothing and still keeps epoch 2."""
    X, Y, ids, splits = data
    cfg = tiny_config(epochs=4, keep="best-val")
    states, snapshot = _snapshots()
    with pytest.raises(Killed):
        train_run(cfg, X, Y, ids, splits, LABELS, tmp_path / "run", progress=False, callbacks=[snapshot, kill_after(4)])
    result = train_run(cfg, X, Y, ids, splits, LABELS, tmp_path / "run", resume=True, progress=False)
    assert result.resumed_from_epoch == 4 and result.kept_epoch == 2
    assert_same_state(load_state(result.model_path)["state_dict"], states[2])
    np.testing.assert_allclose(_val_probs(tmp_path / "run"), scripted_auc[1], rtol=1e-5, atol=1e-7)


def test_best_val_chooses_among_the_validated_epochs_only(tmp_path, data, monkeypatch):
    script = iter([0.9, 0.7])  # epochs 2 and 4 are validated (validate_every 2)
    monkeypatch.setattr(loop, "macro_auc", lambda y, p: (next(script), y.shape[1]))
    X, Y, ids, splits = data
    states, snapshot = _snapshots()
    cfg = tiny_config(epochs=4, validate_every=2, keep="best-val")
    result = train_run(cfg, X, Y, ids, splits, LABELS, tmp_path / "run", progress=False, callbacks=[snapshot])
    assert result.kept_epoch == 2
    assert_same_state(load_state(result.model_path)["state_dict"], states[2])


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A finished tiny run to fine-tune (module scope: trained before the AUCs are scripted)."""
    from training_synth import train_tiny_run

    return train_tiny_run(tmp_path_factory.mktemp("source") / "run")


def test_best_val_across_the_stages_of_a_fine_tuning_policy(tmp_path, data, pretrained, scripted_auc):
    """head-then-all (2 + 2 epochs) from a pre-trained run: the best epoch (2) ends the head-only stage."""
    X, Y, ids, splits = data
    cfg = tiny_config(keep="best-val", finetune={"policy": "head-then-all", "head_epochs": 2, "all_epochs": 2})
    states, snapshot = _snapshots()
    result = train_run(
        cfg, X, Y, ids, splits, LABELS, tmp_path / "run", init_from=pretrained, progress=False, callbacks=[snapshot]
    )
    assert len(result.history) == 4 and result.kept_epoch == 2
    assert_same_state(load_state(result.model_path)["state_dict"], states[2])
    with pytest.raises(AssertionError):
        assert_same_state(states[2], states[4])  # the second stage moved the weights
