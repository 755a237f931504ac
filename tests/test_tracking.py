"""[tracking]: a run's metrics mirrored to TensorBoard / MLflow, read back with their own readers
and held equal to metrics.jsonl (the record of truth); closed on failure; never part of the run key."""

from __future__ import annotations

import builtins
import importlib.util
import json
import re

import pytest

from ecg_transfer.errors import ConfigError
from ecg_transfer.settings.run import RunConfig, TrackingConfig
from ecg_transfer.study.plan import run_key
from ecg_transfer.training import train_run
from ecg_transfer.training.distributed import DistContext
from ecg_transfer.training.tracking import TRACKED, NullTracker, flat_params, tracking
from training_synth import LABELS, Killed, kill_after, make_data, tiny_config

HAS_TB = importlib.util.find_spec("tensorboard") is not None
HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
needs_tb = pytest.mark.skipif(not HAS_TB, reason='tensorboard not installed (pip install "ecg-transfer[track]")')
needs_mlflow = pytest.mark.skipif(not HAS_MLFLOW, reason='mlflow not installed (pip install "ecg-transfer[track]")')


@pytest.fixture(scope="module")
def data():
    return make_data(n=40)


def _metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _expected(rows: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """What a tracker must hold: (epoch, value) of each tracked key, where the epoch computed it."""
    return {k: [(r["epoch"], r[k]) for r in rows if r[k] is not None] for k in TRACKED}


@needs_tb
def test_tensorboard_scalars_equal_metrics_jsonl(tmp_path, data):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    X, Y, ids, splits = data
    run_dir = tmp_path / "run"
    # validation every 2nd epoch: epoch 1 has no val_loss / val_macro_auc, and none is logged for it
    cfg = tiny_config(epochs=3, validate_every=2, tracking={"backend": "tensorboard"})
    train_run(cfg, X, Y, ids, splits, LABELS, run_dir, progress=False)
    rows = _metrics(run_dir)
    assert rows[0]["val_loss"] is None and rows[1]["val_loss"] is not None
    events = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    got = {k: [(e.step, e.value) for e in acc.Scalars(k)] for k in acc.Tags()["scalars"]}
    want = _expected(rows)
    assert set(got) == set(TRACKED)
    for key in TRACKED:
        assert [s for s, _ in got[key]] == [s for s, _ in want[key]], key
        assert [v for _, v in got[key]] == pytest.approx([v for _, v in want[key]], rel=1e-6), key  # float32
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    start = HParamsPluginData.FromString(acc.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams  # the run's settings, once
    assert hp["seed"].number_value == 1 and hp["model"].string_value == "fcn_wang"
    assert hp["validate_every"].number_value == 2 and not any(k.startswith("tracking") for k in hp)


@needs_mlflow
def test_mlflow_metrics_equal_metrics_jsonl_and_a_killed_run_is_closed_then_continued(tmp_path, data, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow >= 3.x keeps file: stores behind this switch
    X, Y, ids, splits = data
    run_dir, uri = tmp_path / "run", (tmp_path / "mlruns").as_uri()
    cfg = tiny_config(epochs=2, tracking={"backend": "mlflow", "uri": uri, "experiment": "tests"})
    with pytest.raises(Killed):
        train_run(cfg, X, Y, ids, splits, LABELS, run_dir, progress=False, callbacks=[kill_after(1)])
    client = MlflowClient(tracking_uri=uri)
    run_id = json.loads((run_dir / "tracking.json").read_text())["run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.info.end_time is not None  # closed although training failed
    assert run.info.run_name == "run"
    assert client.get_experiment(run.info.experiment_id).name == "tests"
    assert run.data.params["seed"] == "1" and run.data.params["model"] == "fcn_wang"
    assert json.loads(run.data.params["model_kwargs.filters"]) == [8, 8]
    assert not any(k.startswith("tracking") for k in run.data.params)

    train_run(cfg, X, Y, ids, splits, LABELS, run_dir, resume=True, progress=False)
    runs = client.search_runs([run.info.experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]  # the resumed run continued its MLflow run
    assert client.get_run(run_id).info.status == "FINISHED"
    want = _expected(_metrics(run_dir))
    for key in TRACKED:
        got = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        assert got == want[key], key  # each epoch once, values exactly metrics.jsonl's


@needs_tb
@needs_mlflow
def test_trackers_are_closed_with_the_outcome(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    row = {"epoch": 1, "train_loss": 0.5, "val_loss": None, "val_macro_auc": None, "lr": 1e-3, "seconds": 1.0}
    tb = TrackingConfig(backend="tensorboard")
    with pytest.raises(RuntimeError):
        with tracking(tb, tmp_path / "a", {"seed": 0}) as t:
            t.log_epoch(row)
            raise RuntimeError("boom")
    assert t.writer.all_writers is None  # SummaryWriter.close() ran
    ml = TrackingConfig(backend="mlflow", uri=(tmp_path / "mlruns").as_uri())
    (tmp_path / "b").mkdir()
    with pytest.raises(KeyboardInterrupt):
        with tracking(ml, tmp_path / "b", {"seed": 0}) as t:
            raise KeyboardInterrupt
    assert MlflowClient(tracking_uri=ml.uri).get_run(t.run_id).info.status == "KILLED"


def test_missing_package_names_the_extra(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tracking_packages(name, *args, **kwargs):
        if name.startswith(("mlflow", "torch.utils.tensorboard")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tracking_packages)
    for cfg in (TrackingConfig(backend="tensorboard"), TrackingConfig(backend="mlflow")):
        with pytest.raises(ConfigError, match=r'pip install "ecg-transfer\[track\]"') as err:
            with tracking(cfg, tmp_path, {}):
                pass
        assert ("mlflow" if cfg.backend == "mlflow" else "tensorboard") in str(err.value)


def test_other_ranks_and_backend_none_log_nothing(tmp_path, monkeypatch):
    # rank 1 of 2: rank 0's answer arrives by broadcast (here: a successful open, nothing else)
    monkeypatch.setattr(DistContext, "broadcast", lambda self, obj: ("ok", None))
    rank1 = DistContext(rank=1, world_size=2)
    with tracking(
        TrackingConfig(backend="tensorboard", log_dir=str(tmp_path / "tb")), tmp_path / "run", {}, dist=rank1
    ) as t:
        t.log_epoch({"epoch": 1, "train_loss": 1.0})
    with tracking(TrackingConfig(), tmp_path / "run", {}) as t2:
        t2.log_epoch({"epoch": 1, "train_loss": 1.0})
    assert isinstance(t.inner, NullTracker) and isinstance(t2.inner, NullTracker)
    assert not (tmp_path / "tb").exists() and not (tmp_path / "run").exists()


def test_tracking_is_not_part_of_the_run_key_or_the_written_config():
    base = tiny_config()
    tracked = {**base, "tracking": {"backend": "mlflow", "uri": "file:/tmp/x", "experiment": "e"}}
    assert run_key(tracked, None) == run_key(base, None)
    assert run_key({**base, "seed": 2}, None) != run_key(base, None)  # the key does see defining changes
    assert "tracking" not in RunConfig.from_dict(base).to_dict()  # untracked runs' config.json unchanged
    assert RunConfig.from_dict(tracked).to_dict()["tracking"]["backend"] == "mlflow"
    from ecg_transfer.training.run import _meta_config

    assert _meta_config(RunConfig.from_dict(tracked)) == _meta_config(RunConfig.from_dict(base))  # resume allowed


def test_tracking_settings_are_checked():
    with pytest.raises(ConfigError, match=r"tracking\.uri.*mlflow"):
        RunConfig.from_dict({"tracking": {"backend": "tensorboard", "uri": "file:/x"}})
    with pytest.raises(ConfigError, match=r"tracking\.backend"):
        RunConfig.from_dict({"tracking": {"backend": "wandb"}})
    with pytest.raises(ConfigError, match=r"tracking\.log_dir"):
        RunConfig.from_dict({"tracking": {"backend": "tensorboard", "log_dir": ""}})


def test_flat_params_are_dotted_scalars():
    flat = flat_params(RunConfig.from_dict(tiny_config(tracking={"backend": "tensorboard"})).to_dict())
    assert flat["optimizer.weight_decay"] == 0.01 and flat["finetune.policy"] == "none"
    assert flat["optimizer.betas"] == "[0.9, 0.99]" and flat["grad_clip"] == "none"
    assert all(isinstance(v, (str, int, float, bool)) for v in flat.values())
    assert not any(k.startswith("tracking") for k in flat)


class _FailingTracker(NullTracker):
    def __init__(self):
        self.epochs, self.closed = [], []

    def log_epoch(self, row):
        self.epochs.append(row["epoch"])
        raise ConnectionError("tracking server unreachable")

    def close(self, status):
        self.closed.append(status)
        raise ConnectionError("still unreachable")


def test_a_tracker_that_fails_mid_run_warns_and_never_stops_the_training(tmp_path, monkeypatch):
    """metrics.jsonl is the record of truth: a server that goes away costs the mirror, not the run."""
    failing = _FailingTracker()
    monkeypatch.setattr("ecg_transfer.training.tracking.open_tracker", lambda *a, **k: failing)
    rows = [{"epoch": e, "train_loss": 0.5} for e in (1, 2, 3)]
    with pytest.warns(RuntimeWarning) as caught:
        with tracking(TrackingConfig(backend="tensorboard"), tmp_path / "run", {"seed": 0}) as t:
            for row in rows:
                t.log_epoch(row)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2, messages
    assert re.match(r"tracking \(tensorboard\) failed at epoch 1: .*training goes on", messages[0])
    assert messages[1].startswith("tracking (tensorboard) could not be closed as FINISHED")
    assert failing.epochs == [1]  # tried once, then left alone
    assert failing.closed == ["FINISHED"]  # closed with the outcome; its error a warning, not a failure
