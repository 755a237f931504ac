"""The Python API's own functions: a run config to a finished run, and a run to predictions and
explanations of record files -- what ``ecg-transfer pretrain|finetune|standalone|train``,
``predict`` and ``explain`` do, for code.

Everything else the API offers is the pipeline's own functions, re-exported by ``ecg_transfer``
(``import ecg_transfer as et``; see ``docs/api.md``): :func:`~ecg_transfer.datasets.open_dataset`,
:func:`~ecg_transfer.datasets.load_or_build`, :func:`~ecg_transfer.evaluation.evaluate_run`, ...
The functions here only join those steps, so a script and the command line train, predict and
explain the same way: a config's ``[task]`` (or ``[ssl]``) table is read into arrays
(:func:`~ecg_transfer.datasets.load_task`, :func:`~ecg_transfer.training.ssl.load_ssl_data`),
:func:`~ecg_transfer.training.train_run` trains, and the run's ``MODEL_CARD.md`` is written by the
post-run step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .settings import RunConfig, load_config
from .settings.run import finetune_default, ssl_refusal

if TYPE_CHECKING:
    from .datasets.base import RecordProblem
    from .inference.explain import Explained
    from .inference.predict import PredictionResult
    from .training.run import RunResult

ConfigLike = RunConfig | Mapping[str, Any] | str | Path
"""A :class:`~ecg_transfer.settings.RunConfig`, a dict of config keys, or a ``.toml`` / ``.json`` file."""


def _config(config: ConfigLike) -> RunConfig:
    if isinstance(config, RunConfig):
        return config
    return RunConfig.from_dict(dict(config)) if isinstance(config, Mapping) else load_config(config)


def train(
    config: ConfigLike,
    run_dir: str | Path,
    *,
    init_from: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    model_card: bool = True,
    on_data: Callable[[Any], None] | None = None,
) -> RunResult:
    """Train one run as the config says (``ecg-transfer train``): from random weights, from
    ``init_from`` (a finished run directory or its ``model.pt``) or ``finetune.pretrained_run``, or
    self-supervised when the config has an ``[ssl]`` table.

    Writes ``run_dir`` (never over an existing run unless ``resume=True``, which continues an
    interrupted one) and, with ``model_card``, its ``MODEL_CARD.md``. Returns the
    :class:`~ecg_transfer.training.RunResult` (validation and test macro AUC, paths). Under
    ``torchrun`` every process calls it; rank 0 builds the signal cache first and writes the run.
    ``on_data`` (rank 0) is given the loaded data before training, e.g. to say what it holds.
    """
    # imported before training, not after it: a package upgraded (or edited) during a run of hours
    # would otherwise fail the finished run at its last step; the card's own failures are logged
    from .inference.modelcard import write_model_card_after_run
    from .training.data import load_training_data, train_on_data
    from .training.distributed import init_from_env, is_main_process, main_process_first

    config = _config(config)
    refusal = ssl_refusal(config, "train", from_run=init_from is not None)
    if refusal:
        raise ConfigError(f"the config {refusal}")
    with main_process_first(init_from_env(config.device, config.dist_backend)):  # rank 0 builds the cache
        data, labels = load_training_data(config, progress=progress and is_main_process())
    if on_data is not None and is_main_process():
        on_data(data)
    result = train_on_data(config, data, labels, run_dir, resume=resume, init_from=init_from, progress=progress)
    if model_card and is_main_process():
        write_model_card_after_run(result.run_dir)
    return result


def _from_scratch(command: str, config: ConfigLike) -> RunConfig:
    config = _config(config)
    if config.finetune.pretrained_run is not None:
        raise ConfigError(f"{command} starts from random weights: drop finetune.pretrained_run from the config")
    return config


def pretrain(config: ConfigLike, run_dir: str | Path, *, resume: bool = False, progress: bool = False) -> RunResult:
    """Pre-train from random weights (``ecg-transfer pretrain``): supervised on the ``[task]``
    labels, or self-supervised with an ``[ssl]`` table. Fine-tune the result with :func:`finetune`."""
    return train(_from_scratch("pretrain", config), run_dir, resume=resume, progress=progress)


def standalone(config: ConfigLike, run_dir: str | Path, *, resume: bool = False, progress: bool = False) -> RunResult:
    """The comparison arm (``ecg-transfer standalone``): the target task from random weights, with
    the same split, preprocessing and evaluation as a fine-tuned run of the same config."""
    return train(_from_scratch("standalone", config), run_dir, resume=resume, progress=progress)


def finetune(
    config: ConfigLike, run_dir: str | Path, from_run: str | Path, *, resume: bool = False, progress: bool = False
) -> RunResult:
    """Fine-tune a finished run (``ecg-transfer finetune CONFIG --from RUN``): its body, a new head
    for the config's labels, then the ``[finetune]`` policy's stages (``head-then-all`` when the
    config names none -- its preset epochs, so the config must not set a top-level ``epochs``)."""
    config = _config(config)
    refusal = ssl_refusal(config, "finetune")
    if refusal:
        raise ConfigError(f"the config {refusal}")

    return train(finetune_default(config), run_dir, init_from=from_run, resume=resume, progress=progress)


def predict(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    *,
    fs: float | None = None,
    calibrate: str | None = None,
    threshold: str | float | None = "fmax",
    out: str | Path | None = None,
    batch_size: int = 128,
    device: str = "cpu",
) -> PredictionResult:
    """Probabilities and decisions of a run for WFDB / CinC records, folders of them or ``.npy``
    arrays (``ecg-transfer predict``). ``calibrate``: a calibrator fitted by
    :func:`~ecg_transfer.evaluation.evaluate_run`; ``threshold``: ``"fmax"``, ``"sensitivity:0.9"``,
    a number, or None (0.5). Records that cannot be used are in the result's ``errors``, named
    with what is wrong. ``out``: also write the CSV and its sidecars (as the command does)."""
    from .inference.predict import Predictor, write_outputs

    predictor = Predictor.from_run(
        run_dir, calibrate=calibrate, threshold=threshold, batch_size=batch_size, device=device
    )
    result = predictor.predict_paths(inputs, fs=fs)
    if out is not None and result.record_ids:
        write_outputs(out, result, predictor)
    return result


def explain(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    *,
    labels: Sequence[str] | None = None,
    method: str = "ig",
    steps: int = 50,
    top: int = 3,
    fs: float | None = None,
    out: str | Path | None = None,
    on_error: Callable[[RecordProblem], None] | None = None,
) -> Explained:
    """Per-lead, per-time attributions of a run's record probabilities (``ecg-transfer explain``):
    ``method`` ``"ig"`` (integrated gradients, ``steps`` points) or ``"gradcam"``, for ``labels``
    (default: each record's ``top`` most probable). ``out``: also write a JSON per record and a
    PNG per record and label. Needs captum (``pip install 'ecg-transfer[explain]'``)."""
    from .inference.explain import explain_inputs

    return explain_inputs(
        run_dir, inputs, labels=labels, method=method, steps=steps, top=top, fs=fs, out=out, on_error=on_error
    )


def __getattr__(name: str) -> Any:
    """``ecg_transfer.api.Explained`` (now :class:`ecg_transfer.inference.explain.Explained`),
    imported on first use so that importing this module does not load torch."""
    if name == "Explained":
        from .inference.explain import Explained

        return Explained
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ConfigLike", "Explained", "explain", "finetune", "predict", "pretrain", "standalone", "train"]
