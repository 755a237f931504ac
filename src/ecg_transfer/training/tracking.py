"""Experiment tracking: a run's metrics also in TensorBoard or MLflow (``[tracking]``).

Where users look is where results get compared, so a run can mirror what it writes to
``metrics.jsonl`` into a TensorBoard log directory or an MLflow tracking store. ``metrics.jsonl``
stays the record of truth: the tracker is fed by the loop's per-epoch callback, after the epoch's
checkpoint and metrics line are written, so it never holds an epoch the run directory lacks (a run
killed between the two may lack that one epoch in the tracker; its metrics.jsonl has it).

A tracker receives the run's settings once (:meth:`Tracker.log_params`), each epoch's
``train_loss``, ``val_loss``, ``val_macro_auc``, ``lr`` and ``seconds`` at step = epoch number
(:meth:`Tracker.log_epoch`; a value not computed that epoch, such as a skipped validation, is not
logged), and is closed with the run's outcome whatever happens (:func:`tracking`). Only rank 0 of a
``torchrun`` job logs. A resumed run continues the same MLflow run (its id is kept in
``run_dir/tracking.json``) and the same TensorBoard directory.

The packages are optional: ``pip install "ecg-transfer[track]"`` (tensorboard, mlflow-skinny).
"""

from __future__ import annotations

import json
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol

from ..atomic import atomic_write_json
from ..errors import ConfigError
from ..settings.run import TrackingConfig
from .distributed import SINGLE, DistContext

#: The metrics.jsonl keys a tracker receives each epoch (the scalars users plot).
TRACKED = ("train_loss", "val_loss", "val_macro_auc", "lr", "seconds")
#: Where a run keeps the MLflow run it logs to, so a resumed run continues it.
TRACKING_FILE = "tracking.json"
DEFAULT_EXPERIMENT = "ecg-transfer"
_EXTRA = 'pip install "ecg-transfer[track]"'


class Tracker(Protocol):
    """What the training run calls; every backend implements these three."""

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_epoch(self, row: Mapping[str, Any]) -> None: ...
    def close(self, status: str) -> None: ...  # "FINISHED" | "FAILED" | "KILLED"


class NullTracker:
    """``backend = "none"`` and every rank but 0: logs nothing."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        pass

    def close(self, status: str) -> None:
        pass


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str | int | float | bool]:
    """A config dict as dotted keys of scalars (``optimizer.betas``, ``finetune.policy``): lists
    and empty tables as JSON text, None as ``"none"``; the ``tracking`` table itself left out."""
    out: dict[str, str | int | float | bool] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if name == "tracking":
            continue
        if isinstance(value, Mapping) and value:
            out.update(flat_params(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        elif value is None:
            out[name] = "none"
        else:
            out[name] = json.dumps(value, default=str)
    return out


def epoch_scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """The :data:`TRACKED` values of one metrics.jsonl row that were computed (not None)."""
    return {k: float(row[k]) for k in TRACKED if row.get(k) is not None}


def _missing(package: str, backend: str) -> ConfigError:
    return ConfigError(f"tracking.backend = {backend!r} needs the {package} package, which is not installed: {_EXTRA}")


class TensorBoardTracker:
    """Scalars into TensorBoard event files (``torch.utils.tensorboard``, which needs the
    ``tensorboard`` package); the settings as TensorBoard hyper-parameters."""

    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard", "tensorboard") from None
        self.log_dir = log_dir
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log_params(self, params: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        # written into this run's own directory (add_hparams would make a sub-run of its own), with
        # the tracked scalars named as the metrics the hparams dashboard shows beside the settings
        file_writer = self.writer._get_file_writer()
        for summary in hparams(dict(params), {k: 0.0 for k in TRACKED}):
            file_writer.add_summary(summary)

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        for key, value in epoch_scalars(row).items():
            self.writer.add_scalar(key, value, global_step=int(row["epoch"]))
        self.writer.flush()  # a later kill loses nothing the run directory has

    def close(self, status: str) -> None:
        self.writer.close()


class MlflowTracker:
    """Params and metrics into an MLflow tracking store through ``MlflowClient`` (no global
    active run, so a library call never disturbs the caller's own MLflow state)."""

    def __init__(self, uri: str, experiment: str, run_name: str, run_id: str | None = None):
        try:
            from mlflow.exceptions import MlflowException
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise _missing("mlflow", "mlflow") from None
        self.client = MlflowClient(tracking_uri=uri)
        self.uri = uri
        self.created = run_id is None
        try:
            if run_id is None:
                found = self.client.get_experiment_by_name(experiment)
                exp_id = found.experiment_id if found is not None else self.client.create_experiment(experiment)
                run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id
            else:  # a resumed run continues its MLflow run
                self.client.update_run(run_id, status="RUNNING")
        except (MlflowException, ImportError) as exc:  # e.g. a file: store refused, sqlite without sqlalchemy
            raise ConfigError(f"tracking.uri {uri!r}: MLflow cannot log there: {exc}") from None
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params in one batch
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, int(row["epoch"])) for k, v in epoch_scalars(row).items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


def _open_mlflow(config: TrackingConfig, run_dir: Path, resuming: bool) -> MlflowTracker:
    """The MLflow run of ``run_dir`` (named after it): the one it logged to before when resuming
    against the same store, else a new one (its id written to ``tracking.json``). Without
    ``tracking.uri``, MLflow's own default: ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``
    in the working directory."""
    try:
        import mlflow
    except ImportError:
        raise _missing("mlflow", "mlflow") from None
    # by default where MLflow itself logs, so `mlflow ui` in the same folder shows every run
    uri = config.uri or mlflow.get_tracking_uri()
    previous: dict[str, Any] = {}
    if resuming and (run_dir / TRACKING_FILE).is_file():
        previous = json.loads((run_dir / TRACKING_FILE).read_text(encoding="utf-8"))
    same = previous.get("backend") == "mlflow" and previous.get("uri") == uri
    tracker = MlflowTracker(
        uri, config.experiment or DEFAULT_EXPERIMENT, run_dir.name, run_id=previous.get("run_id") if same else None
    )
    if tracker.created:
        atomic_write_json(run_dir / TRACKING_FILE, {"backend": "mlflow", "uri": uri, "run_id": tracker.run_id})
    return tracker


def open_tracker(config: TrackingConfig, run_dir: str | Path, *, resuming: bool = False) -> Tracker:
    """The tracker ``config`` asks for, for the run in ``run_dir`` (a :class:`NullTracker` for
    ``backend = "none"``). A missing package is a :class:`ConfigError` naming the extra."""
    run_dir = Path(run_dir)
    if config.backend == "tensorboard":
        log_dir = Path(config.log_dir) / run_dir.name if config.log_dir else run_dir / "tensorboard"
        return TensorBoardTracker(log_dir)
    if config.backend == "mlflow":
        return _open_mlflow(config, run_dir, resuming)
    return NullTracker()


class GuardedTracker:
    """A tracker whose epoch logging and closing never stop a training: ``metrics.jsonl`` is the
    record of truth, so a tracking server that goes away mid-run costs the mirror, not hours of
    training. The first error is a warning naming the backend; later epochs are not sent. Other
    attributes are the wrapped tracker's."""

    def __init__(self, inner: Tracker, backend: str):
        self.inner, self.backend, self.failed = inner, backend, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.inner.log_params(params)

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        if self.failed:
            return
        try:
            self.inner.log_epoch(row)
        except Exception as exc:
            self.failed = True
            warnings.warn(
                f"tracking ({self.backend}) failed at epoch {row.get('epoch')}: {exc}; training goes on, later "
                "epochs are not sent (metrics.jsonl in the run directory has every epoch)",
                RuntimeWarning,
                stacklevel=2,
            )

    def close(self, status: str) -> None:
        try:
            self.inner.close(status)
        except Exception as exc:
            warnings.warn(
                f"tracking ({self.backend}) could not be closed as {status}: {exc}", RuntimeWarning, stacklevel=2
            )


@contextmanager
def tracking(
    config: TrackingConfig,
    run_dir: str | Path,
    params: Mapping[str, Any],
    *,
    resuming: bool = False,
    dist: DistContext | None = None,
) -> Iterator[Tracker]:
    """Open the run's tracker, log ``params`` (a new MLflow run, or a run that is not resumed) and
    close it when the block ends: FINISHED, KILLED (KeyboardInterrupt) or FAILED (any other error,
    which is raised on).

    ``dist``: rank 0 alone opens and logs (the others get a :class:`NullTracker`); an error
    opening it is raised on every rank, so no rank is left waiting for the others in training."""
    ctx = dist or SINGLE
    opened: dict[str, Tracker] = {}

    def open_on_main() -> None:
        tracker = open_tracker(config, run_dir, resuming=resuming)
        try:
            if not resuming or getattr(tracker, "created", False):
                tracker.log_params(flat_params(params))
        except BaseException:
            tracker.close("FAILED")
            raise
        opened["tracker"] = tracker

    ctx.from_main(open_on_main)
    tracker = GuardedTracker(opened.get("tracker", NullTracker()), config.backend)
    try:
        yield tracker
    except KeyboardInterrupt:
        tracker.close("KILLED")
        raise
    except BaseException:
        tracker.close("FAILED")
        raise
    tracker.close("FINISHED")


__all__ = [
    "DEFAULT_EXPERIMENT",
    "GuardedTracker",
    "MlflowTracker",
    "NullTracker",
    "TRACKED",
    "TRACKING_FILE",
    "TensorBoardTracker",
    "Tracker",
    "epoch_scalars",
    "flat_params",
    "open_tracker",
    "tracking",
]
