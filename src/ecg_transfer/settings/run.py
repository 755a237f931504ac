"""A run's settings: defaults are the PTB-XL benchmark recipe, mistakes fail loudly, and the
resolved config says what actually runs.

Load from TOML or JSON with :func:`load_config`, or build with ``RunConfig.from_dict``. Every key is
checked (strict types, unknown keys refused), and a :class:`ConfigError` names the dotted key and
what is allowed. Example (every key optional)::

    model = "xresnet1d101"
    fs = 100.0
    crop_seconds = 2.5            # random crop per record per epoch
    stride_seconds = 1.25         # evaluation windows
    aggregate = "max"             # or "mean"
    input = "time"                # or spectrum | log-spectrum | stft: what the network sees of a window
    batch_size = 128
    epochs = 50                   # policy none / all / linear-probe; staged policies derive it
    validate_every = 1            # validation AUC every N epochs (always after the last)
    keep = "last"                 # or "best-val": the validated epoch of the best validation macro AUC
    seed = 0
    memory_format = "auto"        # speed only: channels-last 2-D convolutions where possible
    compile = "none"              # speed only: or default | max-autotune-no-cudagraphs (torch.compile)
    optimizer_impl = "auto"       # speed only: AdamW kernel, fused where available | foreach | for-loop
    [task]                        # settings.task.TaskSettings: which data, labels, folds
    [optimizer]                   # AdamW
    betas = [0.9, 0.99]
    weight_decay = 0.01
    [schedule]                    # one-cycle; momentum cycles over beta1
    max_lr = 0.01
    [finetune]
    policy = "none"               # none | head-then-all | gradual | all | linear-probe
    pretrained_run = "runs/ptbxl-diag-500hz"
    [ssl]                         # optional: self-supervised pre-training instead of BCE (SslConfig)
    method = "cpc"                # or "contrastive" or "masked"
    [tracking]                    # optional: metrics also to TensorBoard or MLflow (TrackingConfig)
    backend = "tensorboard"       # or "mlflow"; needs pip install "ecg-transfer[track]"

Presets never silently override a key: a staged policy (``head-then-all``, ``gradual``, explicit
``stages``) sets its own epochs and learning rates, so a top-level ``epochs`` that disagrees with
the stages' total, or a ``schedule.max_lr`` the stages do not use, is refused with a message that
names the keys the preset does read. The resolved ``epochs`` is always the number of epochs the run
trains (the stages' total), so ``config.json`` says what ran.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema, model_serializer, model_validator

from ..atomic import atomic_write_json
from ..errors import ConfigError
from .base import KeyedValueError, ListedPair, ListedTuple, Settings, TopSettings, is_plain
from .names import (
    AGGREGATES,
    COMPILE_MODES,
    DATASET_ALIASES,
    DIST_BACKENDS,
    INPUT_KINDS,
    MEMORY_FORMATS,
    MODEL_NAMES,
    OPTIMIZER_IMPLS,
    POLICIES,
    PRECISIONS,
    SSL_AUGMENTATIONS,
    SSL_METHODS,
    STAGED_POLICIES,
    STFT_WINDOW_SECONDS,
)
from .task import FoldList, TaskSettings, _non_empty, empty_as_none

_STAGE_TRAIN = re.compile(r"^(all|head|last:[1-9][0-9]*)$")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?|mps)$")
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
UnitInterval = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]


def _lr(value: Any) -> Any:
    """One peak lr, or ``[low, high]`` (geometric from the first layer group to the head)."""

    def number(v: Any, where: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v == v or v in (float("inf"), float("-inf")):
            raise KeyedValueError(where, f"expected a number, got {v!r}")
        if v <= 0:
            raise KeyedValueError(where, f"must be > 0, got {v!r}")
        return float(v)

    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"expected a number or a list of 2 numbers [low, high], got {list(value)!r}")
        return (number(value[0], "[0]"), number(value[1], "[1]"))
    return number(value, "")


LearningRate = Annotated[
    Any,
    BeforeValidator(_lr),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 2, "maxItems": 2},
            ]
        }
    ),
]


def _stage_train(value: str) -> str:
    if not _STAGE_TRAIN.match(value):
        raise ValueError(f"{value!r} is not allowed; allowed: all, head, last:N")
    return value


def _device(value: str) -> str:
    if not _DEVICE.match(value):
        raise ValueError(f"{value!r} is not allowed; allowed: auto, cpu, cuda, cuda:N, mps")
    return value


def _plain_table(value: dict[str, Any]) -> dict[str, Any]:
    if not is_plain(value):
        raise ValueError("must hold plain values (numbers, strings, booleans, lists, tables)")
    return value


class StageSpec(Settings):
    """One fine-tuning stage: train which layer groups, for how long, at which peak learning rate.

    ``train``: ``"head"`` (last layer group), ``"last:N"`` (last N groups) or ``"all"``.
    ``lr``: one peak lr for every group, or ``[low, high]``: geometric from the first layer group
    (``low``) to the head (``high``), fastai's ``slice(low, high)``. ``frozen_bn``: ``"train"``
    (BatchNorm layers of frozen groups keep learning, fastai's ``train_bn``) or ``"frozen"``.
    """

    SECTION = "finetune.stages[]"
    epochs: Annotated[int, Field(ge=1)] = 1
    """Epochs of this stage."""
    train: Annotated[str, AfterValidator(_stage_train)] = "all"
    """Which layer groups train: head, last:N (the last N groups) or all."""
    lr: LearningRate = 1e-2
    """Peak learning rate: one number, or [low, high] geometric from the first layer group to the head."""
    name: str = ""
    """A name for logs and the model card (default stage-N)."""
    frozen_bn: Literal["train", "frozen"] | None = None
    """BatchNorm of frozen groups: train (fastai's train_bn) or frozen (statistics fixed too)."""


class OptimizerConfig(Settings):
    """AdamW as in the benchmark. beta1 is driven by the one-cycle momentum schedule."""

    SECTION = "optimizer"
    name: Literal["adamw"] = "adamw"
    """The optimizer (AdamW, as the PTB-XL benchmark)."""
    betas: ListedPair[UnitInterval] = (0.9, 0.99)
    """AdamW betas; beta1 follows the one-cycle momentum schedule."""
    weight_decay: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1e-2
    """Decoupled weight decay."""
    eps: PositiveFloat = 1e-8
    """AdamW epsilon."""


class ScheduleConfig(Settings):
    """One-cycle (``torch.optim.lr_scheduler.OneCycleLR``), fastai v1's ``fit_one_cycle`` settings:
    from ``max_lr / div_factor`` up (cosine) over ``pct_start`` of the steps to ``max_lr``, then down
    to ``max_lr / div_factor / final_div_factor``; beta1 goes max -> base -> max momentum."""

    SECTION = "schedule"
    name: Literal["one-cycle"] = "one-cycle"
    """The learning-rate schedule (one-cycle)."""
    max_lr: PositiveFloat = 1e-2
    """Peak learning rate (policy none / all / linear-probe without finetune.lr)."""
    div_factor: PositiveFloat = 25.0
    """Start at max_lr / div_factor."""
    final_div_factor: PositiveFloat = 1e4
    """End at max_lr / div_factor / final_div_factor."""
    pct_start: UnitInterval = 0.3
    """Share of the steps spent rising to max_lr."""
    max_momentum: UnitInterval = 0.95
    """beta1 at the start and end of a cycle."""
    base_momentum: UnitInterval = 0.85
    """beta1 at the peak learning rate."""

    @model_validator(mode="after")
    def _momentum_order(self) -> "ScheduleConfig":
        if self.base_momentum > self.max_momentum:
            raise KeyedValueError(
                "base_momentum", f"must be <= schedule.max_momentum ({self.max_momentum}), got {self.base_momentum}"
            )
        return self


#: Which finetune keys each policy reads (any other set key is refused, never ignored).
_POLICY_KNOBS = {
    "lr": ("head-then-all", "all", "linear-probe"),
    "epochs": ("all", "linear-probe"),
    "head_epochs": ("head-then-all",),
    "all_epochs": ("head-then-all",),
    "frozen_bn": ("head-then-all", "gradual", "linear-probe"),
    "stages": ("head-then-all", "gradual", "all", "linear-probe"),
}


class FinetuneConfig(Settings):
    """Transfer settings; ``policy = "none"`` trains from scratch (the standalone arm). The presets
    are documented in ``training.finetune``."""

    SECTION = "finetune"
    policy: Literal[POLICIES] = "none"  # type: ignore[valid-type]
    """none (random weights), head-then-all, gradual, all or linear-probe (see training.finetune)."""
    pretrained_run: str | None = None
    """The pre-trained run directory (or its model.pt) to start from; the CLI's --from sets it."""
    scaler: Literal["refit", "pretrained"] = "refit"
    """refit: standardise with the target's own training split (as the standalone arm); pretrained: reuse the pre-training's."""
    new_head: Literal["output", "full"] = "output"
    """output: replace only the final linear layer; full: a new head of the same shape."""
    lr: PositiveFloat | None = None
    """Peak learning rate of head-then-all (default 1e-2), all / linear-probe (default schedule.max_lr)."""
    epochs: Annotated[int, Field(ge=1)] | None = None
    """Epochs of all / linear-probe (default: the top-level epochs)."""
    head_epochs: Annotated[int, Field(ge=1)] | None = None
    """head-then-all: epochs training the head only (default 30)."""
    all_epochs: Annotated[int, Field(ge=1)] | None = None
    """head-then-all: epochs training everything with discriminative rates (default 30)."""
    frozen_bn: Literal["train", "frozen"] | None = None
    """BatchNorm of frozen groups in every stage: train (default) or frozen (default of linear-probe)."""
    stages: ListedTuple[StageSpec] | None = None
    """Explicit stages, replacing the policy's preset."""

    @model_validator(mode="after")
    def _knobs_apply(self) -> "FinetuneConfig":
        p = self.policy
        for key, policies in _POLICY_KNOBS.items():
            if getattr(self, key) is not None and p not in policies:
                raise KeyedValueError(
                    key, f"does not apply to finetune.policy={p!r}; it applies to: {', '.join(policies)}"
                )
        if self.stages is not None:
            if not self.stages:
                raise KeyedValueError("stages", "needs at least one stage")
            for key in ("lr", "epochs", "head_epochs", "all_epochs"):
                if getattr(self, key) is not None:
                    raise KeyedValueError(
                        key, "set it inside finetune.stages instead (explicit stages replace the policy's preset)"
                    )
        if p == "none" and self.pretrained_run is not None:
            raise KeyedValueError(
                "pretrained_run",
                f"is set but finetune.policy='none'; allowed policies for a "
                f"pre-trained start: {', '.join(POLICIES[1:])}",
            )
        return self

    @property
    def staged(self) -> bool:
        """True when the stages (not the top-level ``epochs``/``max_lr``) decide the schedule."""
        return self.stages is not None or self.policy in STAGED_POLICIES


_GRADUAL = (
    ("head-1", 10, "head", 1e-2),
    ("head-2", 10, "head", 1e-2),
    ("last-two", 10, "last:2", 1e-3),
    ("all", 10, "all", (1e-6, 1e-4)),
)


def preset_stages(ft: FinetuneConfig, epochs: int, max_lr: float) -> tuple[StageSpec, ...]:
    """The stages a finetune table asks for, presets filled in and ``frozen_bn`` resolved.

    ``epochs`` / ``max_lr`` are the top-level values, read by ``none``, ``all`` and ``linear-probe``.
    """
    bn = ft.frozen_bn or ("frozen" if ft.policy == "linear-probe" else "train")
    if ft.stages is not None:
        return tuple(
            StageSpec(
                name=s.name or f"stage-{i + 1}", epochs=s.epochs, train=s.train, lr=s.lr, frozen_bn=s.frozen_bn or bn
            )
            for i, s in enumerate(ft.stages)
        )
    if ft.policy == "none":
        return (StageSpec(name="train", epochs=epochs, train="all", lr=max_lr, frozen_bn=bn),)
    if ft.policy in ("all", "linear-probe"):
        train = "all" if ft.policy == "all" else "head"
        return (StageSpec(name=train, epochs=ft.epochs or epochs, train=train, lr=ft.lr or max_lr, frozen_bn=bn),)
    if ft.policy == "head-then-all":
        lr = ft.lr or 1e-2
        return (
            StageSpec(name="head", epochs=ft.head_epochs or 30, train="head", lr=lr, frozen_bn=bn),
            StageSpec(name="all", epochs=ft.all_epochs or 30, train="all", lr=(lr / 1000, lr / 10), frozen_bn=bn),
        )
    return tuple(StageSpec(name=n, epochs=e, train=t, lr=lr, frozen_bn=bn) for n, e, t, lr in _GRADUAL)


def _preset_keys(ft: FinetuneConfig) -> str:
    if ft.stages is not None:
        return "finetune.stages (each stage's epochs and lr)"
    if ft.policy == "head-then-all":
        return "finetune.head_epochs, finetune.all_epochs, finetune.lr (or finetune.stages)"
    return "finetune.stages (the gradual preset is 10+10+10+10 epochs at 1e-2, 1e-2, 1e-3, 1e-6..1e-4)"


class SslSource(Settings):
    """One more set of unlabelled records for self-supervised pre-training (``[ssl] extra_tasks``).

    Only the signals of ``train_folds`` (training) and ``val_folds`` (the SSL validation loss) are
    read; ``test_folds`` are never read. A CinC-format set's folds are made as for a ``[task]``
    (``n_folds`` seeded, stratified folds, ``fold_seed``): give the values of the task you will
    fine-tune and test on, so its test fold is the one left out. A set used for pre-training only
    may use every fold: ``train_folds = [1, ..., 10]``, ``test_folds = []``. Leads, rate and the
    part of long records used are the ``[task]``'s.
    """

    SECTION = "ssl.extra_tasks[]"
    dataset: Literal["ptbxl", "cinc", "g12ec"]
    """ptbxl, or cinc (alias g12ec): any PhysioNet/CinC-format folder."""
    root: Annotated[str, AfterValidator(_non_empty)]
    """The dataset's own folder."""
    source_fs: Literal[100, 500] | None = None
    """PTB-XL only: read records100 (100) or records500 (500)."""
    allow_missing: bool = False
    """PTB-XL at 500 Hz: use the records present when some are missing."""
    cache_dir: str | None = None
    """Where the signal cache lives (default $ECG_TRANSFER_CACHE or ~/.cache/ecg-transfer)."""
    train_folds: FoldList = (1, 2, 3, 4, 5, 6, 7, 8)
    """Folds whose signals are pre-trained on."""
    val_folds: FoldList = (9,)
    """Folds whose signals give the SSL validation loss."""
    test_folds: FoldList = (10,)
    """Folds never read (must not overlap the others)."""
    n_folds: Annotated[int, Field(ge=3)] = 10
    """CinC-format sets: number of seeded stratified folds (as the [task] that is tested on)."""
    fold_seed: Annotated[int, Field(ge=0)] = 0
    """CinC-format sets: seed of those folds (as the [task] that is tested on)."""

    @property
    def adapter(self) -> str:
        return DATASET_ALIASES.get(self.dataset, self.dataset)

    @model_validator(mode="after")
    def _consistent(self) -> "SslSource":
        if self.source_fs is not None and self.adapter != "ptbxl":
            raise KeyedValueError("source_fs", "only PTB-XL has several record folders (records100/records500)")
        train, val, test = set(self.train_folds), set(self.val_folds), set(self.test_folds)
        if not train:
            raise KeyedValueError("train_folds", "needs at least one fold to pre-train on")
        if (train | val) & test or train & val:
            raise KeyedValueError(
                "train_folds",
                "train_folds / val_folds / test_folds must not overlap, got "
                f"{list(self.train_folds)} / {list(self.val_folds)} / {list(self.test_folds)}",
            )
        beyond = sorted(f for f in train | val | test if f > self.n_folds) if self.adapter == "cinc" else []
        if beyond:
            raise KeyedValueError("train_folds", f"fold(s) {beyond} beyond n_folds = {self.n_folds}")
        return self


#: ``[ssl]`` keys that belong to one method (and, for the contrastive one, to one augmentation),
#: with the value used when the key is left out. A key set for another method or for an
#: augmentation that is not listed is refused, never ignored.
_SSL_KNOBS: dict[str, tuple[str, str | None, Any]] = {
    "temperature": ("contrastive", None, 0.5),
    "projection_dim": ("contrastive", None, 128),
    "augmentations": ("contrastive", None, SSL_AUGMENTATIONS),
    "crop_scale": ("contrastive", "random-resized-crop", (0.5, 1.0)),
    "time_out": ("contrastive", "time-out", (0.2, 0.4)),
    "baseline_wander_mv": ("contrastive", "baseline-wander", 0.2),
    "gaussian_noise_mv": ("contrastive", "gaussian-noise", 0.02),
    "powerline_noise_mv": ("contrastive", "powerline-noise", 0.05),
    "lead_dropout": ("contrastive", "lead-dropout", 0.1),
    "mask_ratio": ("masked", None, 0.5),
    "mask_seconds": ("masked", None, 0.25),
    "patch_seconds": ("cpc", None, 0.5),
    "predict_steps": ("cpc", None, 2),
    "context_dim": ("cpc", None, 256),
}
_Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
_Amplitude = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class SslConfig(Settings):
    """Self-supervised pre-training (``[ssl]``): the objective that replaces BCE, and more data.

    ``method``: ``"contrastive"`` (SimCLR's NT-Xent between two augmented views of each crop:
    ``temperature``, ``projection_dim``, ``augmentations`` in order, each with its strength) or
    ``"masked"`` (spans of ``mask_seconds`` covering ``mask_ratio`` of each crop are zeroed in
    every lead and reconstructed, squared error on the masked samples). Amplitudes are in mV;
    ``crop_scale`` / ``time_out`` are shares of the crop (random-resized-crop keeps a random
    [low, high] share of it, stretched back; time-out zeroes a random [low, high] share);
    ``lead_dropout`` is each lead's chance to be zeroed (one lead is always kept). ``"cpc"``
    (contrastive predictive coding): each crop is cut into patches of ``patch_seconds``, each
    encoded on its own; a GRU of ``context_dim`` over the patches so far predicts the next
    ``predict_steps`` patches' encodings among all patches of the batch (the crop must hold more
    than ``predict_steps`` patches: the defaults fit the 2.5 s crop; longer crops, e.g.
    ``crop_seconds = 5`` with ``predict_steps = 4``, give the context more to predict). Keys of the
    method not chosen are refused. See ``training.ssl`` for what each does and why.

    ``extra_tasks``: further sets of unlabelled records (:class:`SslSource`), read beside the
    ``[task]`` table's; the ``[task]`` names the main data (its train folds are pre-trained on,
    its val folds give the SSL validation loss, its test folds are never read; its ``labels`` are
    not used).
    """

    SECTION = "ssl"
    method: Literal[SSL_METHODS] = "cpc"  # type: ignore[valid-type]
    """cpc (predict the next patches; chosen on PTB-XL fold 9, see BENCHMARKS.md), contrastive (NT-Xent between two augmented views) or masked (reconstruct zeroed spans)."""
    extra_tasks: ListedTuple[SslSource] = ()
    """More sets of unlabelled records, beside the [task]'s (see [[ssl.extra_tasks]])."""
    temperature: PositiveFloat | None = None
    """contrastive: NT-Xent temperature (default 0.5)."""
    projection_dim: Annotated[int, Field(ge=1)] | None = None
    """contrastive: output width of the projection MLP (default 128)."""
    augmentations: ListedTuple[Literal[SSL_AUGMENTATIONS]] | None = None  # type: ignore[valid-type]
    """contrastive: augmentations applied to each view, in order (default all six)."""
    crop_scale: ListedPair[_Share] | None = None
    """random-resized-crop: [low, high] share of the crop kept, stretched back (default [0.5, 1.0])."""
    time_out: ListedPair[_Share] | None = None
    """time-out: [low, high] share of the crop zeroed in every lead (default [0.2, 0.4])."""
    baseline_wander_mv: _Amplitude | None = None
    """baseline-wander: largest amplitude, mV, of a 0.05-0.5 Hz drift per lead (default 0.2)."""
    gaussian_noise_mv: _Amplitude | None = None
    """gaussian-noise: standard deviation, mV (default 0.02)."""
    powerline_noise_mv: _Amplitude | None = None
    """powerline-noise: largest amplitude, mV, of a 50 or 60 Hz hum (default 0.05)."""
    lead_dropout: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] | None = None
    """lead-dropout: each lead's chance to be zeroed; one lead is always kept (default 0.1)."""
    mask_ratio: UnitInterval | None = None
    """masked: share of each crop masked (default 0.5)."""
    mask_seconds: PositiveFloat | None = None
    """masked: length of one masked span, s (default 0.25)."""
    patch_seconds: PositiveFloat | None = None
    """cpc: length of one patch, s, encoded on its own (default 0.5)."""
    predict_steps: Annotated[int, Field(ge=1)] | None = None
    """cpc: how many patches ahead the context predicts (default 2)."""
    context_dim: Annotated[int, Field(ge=1)] | None = None
    """cpc: width of the GRU that summarises the patches so far (default 256)."""

    @model_validator(mode="after")
    def _knobs_apply(self) -> "SslConfig":
        augs = self.augmentations if self.augmentations is not None else _SSL_KNOBS["augmentations"][2]
        if len(set(augs)) != len(augs) or (self.method == "contrastive" and not augs):
            raise KeyedValueError("augmentations", f"a non-empty list of distinct names, got {list(augs)!r}")
        for key, (method, augmentation, default) in _SSL_KNOBS.items():
            value = getattr(self, key)
            if value is not None and method != self.method:
                raise KeyedValueError(key, f"applies to ssl.method = {method!r}, not {self.method!r}")
            if value is not None and augmentation is not None and augmentation not in augs:
                raise KeyedValueError(
                    key,
                    f"sets the {augmentation!r} augmentation, which ssl.augmentations "
                    f"does not list ({', '.join(augs)})",
                )
            if value is None and method == self.method and (augmentation is None or augmentation in augs):
                object.__setattr__(self, key, default)  # resolved: config.json says what ran
        for key in ("crop_scale", "time_out"):
            pair = getattr(self, key)
            if pair is not None and pair[0] > pair[1]:
                raise KeyedValueError(key, f"[low, high] with low <= high, got {list(pair)!r}")
        if self.crop_scale is not None and self.crop_scale[0] == 0:
            raise KeyedValueError("crop_scale", "must keep a share > 0 of the crop")
        if self.time_out is not None and self.time_out[1] >= 1:
            raise KeyedValueError("time_out", "must leave a share of the crop, got high = 1")
        return self


class TrackingConfig(Settings):
    """Experiment tracking: each epoch's metrics (and the run's settings, once) also go to
    TensorBoard or MLflow, where users compare runs. ``metrics.jsonl`` stays the record of truth;
    tracking never changes a result, so it is left out of the run key and may change on resume.
    Needs the ``track`` extra: ``pip install "ecg-transfer[track]"``."""

    SECTION = "tracking"
    backend: Literal["none", "tensorboard", "mlflow"] = "none"
    """none, tensorboard (event files) or mlflow (an MLflow tracking store). Only rank 0 of a torchrun job logs."""
    log_dir: str | None = None
    """tensorboard: the run logs into `<log_dir>/<run directory name>`, so one `tensorboard --logdir` compares runs (default: `<run_dir>/tensorboard`)."""
    uri: str | None = None
    """mlflow: tracking URI (`http://server`, `sqlite:///path.db`, ...; default: MLflow's own, `$MLFLOW_TRACKING_URI`, else `sqlite:///mlflow.db` in the working directory, where `mlflow ui` looks)."""
    experiment: str | None = None
    """mlflow: experiment name, created when missing (default ecg-transfer)."""

    @model_validator(mode="after")
    def _knobs_apply(self) -> "TrackingConfig":
        for key, backend in (("log_dir", "tensorboard"), ("uri", "mlflow"), ("experiment", "mlflow")):
            if getattr(self, key) is not None and self.backend != backend:
                raise KeyedValueError(key, f"applies to tracking.backend = {backend!r}, not {self.backend!r}")
            if getattr(self, key) == "":
                raise KeyedValueError(key, "must not be empty (leave it out for the default)")
        return self


class RunConfig(TopSettings):
    """Everything that determines a training run (besides the data arrays and the split)."""

    SECTION = ""
    model: Literal[MODEL_NAMES] = "xresnet1d101"  # type: ignore[valid-type]
    """The network (models registry)."""
    model_kwargs: Annotated[dict[str, Any], AfterValidator(_plain_table)] = Field(default_factory=dict)
    """Arguments of the network's builder (widths, kernel sizes, ...); empty: the benchmark's."""
    task: Annotated[TaskSettings | None, BeforeValidator(empty_as_none)] = None
    """Which data, labels, leads and folds (see [task]); needed by the CLI, not when arrays are passed in Python."""
    fs: PositiveFloat = 100.0
    """Sampling rate the network sees, in Hz (records are resampled in the cache)."""
    crop_seconds: PositiveFloat = 2.5
    """Training crop and evaluation window length, in seconds."""
    stride_seconds: PositiveFloat = 1.25
    """Stride of the evaluation windows, in seconds (<= crop_seconds)."""
    aggregate: Literal[AGGREGATES] = "max"  # type: ignore[valid-type]
    """How window outputs become a record's: max (the benchmark) or mean."""
    # What the network sees of each (standardised) window; part of the run's definition.
    input: Literal[INPUT_KINDS] = "time"  # type: ignore[valid-type]
    """What the network sees of a window: time, spectrum, log-spectrum or stft (part of the run's definition)."""
    short_records: Literal["error", "pad"] = "error"
    """A record shorter than one crop: error, or pad with zeros."""
    batch_size: Annotated[int, Field(ge=2)] = 128
    """Records per training batch (the global batch under torchrun)."""
    # None: derived (50 for policy none; the stages' total for staged policies): always resolved.
    epochs: Annotated[int, Field(ge=1)] | None = None
    """Epochs (policy none / all / linear-probe); staged policies derive it from their stages. Always resolved to what trains."""
    validate_every: Annotated[int, Field(ge=1)] = 1
    """Validation AUC every N epochs and after the last (no early stopping: it feeds progress, metrics.jsonl and, with keep = best-val, the choice of epoch)."""
    keep: Literal["last", "best-val"] = "last"
    """Which weights the run keeps: the last epoch's (the benchmark protocol), or best-val: those of the validated epoch with the best validation macro AUC (selection on the validation folds, never the test folds; the S4 ECG work's protocol). Part of the run's definition."""
    loss: Literal["bce-with-logits"] = "bce-with-logits"
    """The loss (binary cross-entropy on logits, multi-label)."""
    grad_clip: PositiveFloat | None = None
    """Clip the gradient norm to this value (none: no clipping)."""
    drop_last: bool = True
    """Drop the last incomplete training batch of an epoch."""
    seed: Annotated[int, Field(ge=0)] = 0
    """Seeds weight initialisation, crops and batch order."""
    num_threads: Annotated[int, Field(ge=0)] = 0
    """CPU threads for torch (0: torch's default)."""
    device: Annotated[str, AfterValidator(_device)] = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    deterministic: bool = True
    """Deterministic kernels (CUDA: no autotuning or atomics)."""
    precision: Literal[PRECISIONS] = "fp32"  # type: ignore[valid-type]
    """Forward pass in fp32, or bf16 autocast (loss and optimizer state in fp32); auto: bf16 where the hardware has it natively (AVX512-BF16/AMX CPUs, CUDA with bf16), else fp32. Part of the run's definition (bf16 changes results beyond rounding); a checkpoint never resumes under another precision. Default fp32 until bf16 is measured to match fp32 (BENCHMARKS.md)."""
    memory_format: Literal[MEMORY_FORMATS] = "auto"  # type: ignore[valid-type]
    """Speed only: auto runs CNNs as 2-D convolutions on channels-last batches; contiguous as written."""
    compile: Literal[COMPILE_MODES] = "none"  # type: ignore[valid-type]
    """Speed only: torch.compile mode (none, default, max-autotune-no-cudagraphs)."""
    optimizer_impl: Literal[OPTIMIZER_IMPLS] = "auto"  # type: ignore[valid-type]
    """Speed only: AdamW kernel (auto = fused where torch has it, fused, foreach, for-loop)."""
    dist_backend: Literal[DIST_BACKENDS] = "auto"  # type: ignore[valid-type]
    """Under torchrun: auto (nccl on CUDA, gloo on CPU), nccl or gloo."""
    sync_batchnorm: bool = True
    """Under torchrun: BatchNorm statistics over the global batch (the one-process maths)."""
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    """AdamW settings."""
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    """One-cycle schedule settings."""
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    """Transfer settings (policy none: train from random weights)."""
    ssl: SslConfig | None = None
    """Self-supervised pre-training: the [ssl] table's objective replaces BCE, labels are not read (none: supervised)."""
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    """Where the run's metrics are also logged (TensorBoard, MLflow); not part of the run's definition."""

    @model_serializer(mode="wrap")
    def _absent_ssl_unwritten(self, handler: Any) -> dict[str, Any]:
        """A supervised run's settings are written as before ``[ssl]`` existed (no ``ssl: null``),
        so its config.json, checkpoint meta and study run key do not change."""
        data = handler(self)
        if self.ssl is None:
            data.pop("ssl", None)
        if self.tracking.backend == "none":  # likewise for runs that track nothing
            data.pop("tracking", None)
        if self.keep == "last":  # and for runs that keep the last epoch, as every run did before `keep`
            data.pop("keep", None)
        return data

    @model_validator(mode="after")
    def _resolve(self) -> "RunConfig":
        for key in ("crop_seconds", "stride_seconds"):
            n = getattr(self, key) * self.fs
            if abs(n - round(n)) > 1e-6 * max(1.0, n) or round(n) < 1:
                raise KeyedValueError(
                    key,
                    f"{getattr(self, key)} s at fs={self.fs} Hz is {n:g} samples; must be "
                    "a positive whole number of samples",
                )
        if self.stride_seconds > self.crop_seconds:
            raise KeyedValueError(
                "stride_seconds",
                f"must be <= crop_seconds ({self.crop_seconds}), got {self.stride_seconds}; windows would skip signal",
            )
        if self.input == "stft" and self.crop_len < round(STFT_WINDOW_SECONDS * self.fs):
            raise KeyedValueError(
                "crop_seconds",
                f"a {self.crop_len}-sample window is shorter than the "
                f"{STFT_WINDOW_SECONDS} s STFT window of input='stft'",
            )
        self._resolve_epochs()
        if self.ssl is not None:
            self._check_ssl(self.ssl)
        return self

    def _check_ssl(self, ssl: SslConfig) -> None:
        """What a self-supervised run cannot combine with: it starts from random weights, learns
        from raw time signals, and uses every record of the train folds."""
        if self.keep != "last":
            raise KeyedValueError("keep", f"{self.keep!r}, but an [ssl] run has no validation AUC to choose by")
        if self.finetune.policy != "none":
            raise KeyedValueError(
                "finetune.policy",
                f"{self.finetune.policy!r}, but an [ssl] run pre-trains from "
                "random weights (policy 'none'); fine-tune its result in a second run",
            )
        if self.input != "time":
            raise KeyedValueError(
                "input", f"{self.input!r}, but [ssl] augments and reconstructs time signals; use input = 'time'"
            )
        if self.task is not None and (self.task.train_fraction < 1 or self.task.test_on_rest):
            raise KeyedValueError(
                "task.train_fraction",
                "an [ssl] run learns from every record of "
                "task.train_folds (no labels needed): leave train_fraction and test_on_rest out",
            )
        if ssl.patch_seconds is not None:
            self._check_cpc_patches(ssl)
        if ssl.mask_seconds is not None:
            span = round(ssl.mask_seconds * self.fs)
            if not 1 <= span < self.crop_len:
                raise KeyedValueError(
                    "ssl.mask_seconds",
                    f"{ssl.mask_seconds} s at fs={self.fs} Hz is {span} "
                    f"sample(s); must be >= 1 sample and shorter than the {self.crop_len}-sample crop",
                )

    def _check_cpc_patches(self, ssl: SslConfig) -> None:
        """CPC needs patches of at least one sample and a crop with more patches than steps ahead."""
        patch = round(cast(float, ssl.patch_seconds) * self.fs)
        if patch < 1:
            raise KeyedValueError("ssl.patch_seconds", f"{ssl.patch_seconds} s at fs={self.fs} Hz is no sample")
        patches, steps = self.crop_len // patch, cast(int, ssl.predict_steps)
        if patches < 2:
            raise KeyedValueError(
                "ssl.patch_seconds",
                f"{ssl.patch_seconds} s: the {self.crop_seconds} s crop holds {patches} patch(es), "
                "CPC needs at least 2 (one to predict from, one to predict)",
            )
        if patches <= steps:
            raise KeyedValueError(
                "ssl.predict_steps",
                f"{steps} patch(es) ahead need a crop of at least {steps + 1} patches of {ssl.patch_seconds} s; "
                f"the {self.crop_seconds} s crop holds {patches}: raise crop_seconds, shorten "
                "ssl.patch_seconds or lower ssl.predict_steps",
            )

    def _resolve_epochs(self) -> None:
        ft, given = self.finetune, self.epochs
        if ft.staged:
            sched_given = "max_lr" in self.schedule.model_fields_set
            if sched_given and self.schedule.max_lr != ScheduleConfig().max_lr:
                raise KeyedValueError(
                    "schedule.max_lr",
                    f"is not used by finetune.policy={ft.policy!r}"
                    f"{' with explicit stages' if ft.stages is not None else ''}: its learning "
                    f"rates come from {_preset_keys(ft)}",
                )
            total = sum(s.epochs for s in preset_stages(ft, 1, 1.0))
            if given is not None and given != total:
                raise KeyedValueError(
                    "epochs",
                    f"{given}, but finetune.policy={ft.policy!r} trains {total} epochs "
                    f"as its stages say; set {_preset_keys(ft)} to change them, or leave "
                    "epochs out",
                )
            object.__setattr__(self, "epochs", total)
            return
        if ft.policy in ("all", "linear-probe") and ft.epochs is not None and given is not None and given != ft.epochs:
            raise KeyedValueError(
                "epochs",
                f"{given}, but finetune.epochs = {ft.epochs} decides how long "
                f"policy {ft.policy!r} trains; set one of them",
            )
        if ft.lr is not None and self.schedule.max_lr != ScheduleConfig().max_lr:
            raise KeyedValueError(
                "schedule.max_lr",
                f"is not used: finetune.lr = {ft.lr} is the policy's peak learning rate; set one of them",
            )
        object.__setattr__(self, "epochs", ft.epochs or given or 50)

    @property
    def crop_len(self) -> int:
        return int(round(self.crop_seconds * self.fs))

    @property
    def stride(self) -> int:
        return int(round(self.stride_seconds * self.fs))

    def stages(self) -> tuple[StageSpec, ...]:
        """The stages this config trains (presets resolved): what actually runs."""
        assert self.epochs is not None
        return preset_stages(self.finetune, self.epochs, self.schedule.max_lr)

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with top-level keys changed (nested sections: pass a dict or a section object).
        Keys the original did not set stay unset, so presets still derive them."""
        data = self.explicit()
        for k, v in changes.items():
            data[k] = v.explicit() if isinstance(v, Settings) else v
        return RunConfig.from_dict(data)


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """A ``.toml`` or ``.json`` file as a dict; a clear error for a missing or broken file."""
    path = Path(path)
    if path.suffix not in (".toml", ".json"):
        raise ConfigError(f"{path}: config files must end in .toml or .json")
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        text = path.read_text(encoding="utf-8")
        return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from None


def load_config(path: str | Path) -> RunConfig:
    """Read a run config from ``.toml`` or ``.json``."""
    data = read_settings_file(path)
    try:
        return RunConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the resolved config as JSON (atomically); :func:`load_config` reads it back equal."""
    atomic_write_json(path, config.to_dict())


def finetune_default(config: RunConfig) -> RunConfig:
    """What ``finetune`` (command and API) trains ``config`` as: policy none -- one file for
    standalone and finetune, as the guide's ``my_cinc_set.toml`` -- becomes the head-then-all preset
    (its epochs, so the config must not set a top-level ``epochs``); any other policy is kept."""
    if config.finetune.policy != "none":
        return config
    return config.replace(finetune={**config.finetune.to_dict(), "policy": "head-then-all"})


def ssl_refusal(config: RunConfig, command: str, *, from_run: bool = False) -> str | None:
    """Why ``command`` (``pretrain``, ``train``, ``standalone``, ``finetune``; command line or API)
    refuses a config with an ``[ssl]`` table, None where it does not: an [ssl] run pre-trains,
    from random weights (``from_run``: a pre-trained start was given), and only ``pretrain`` and
    ``train`` run it. One text for every caller, so the command, the API and ``config show`` say
    the same thing."""
    if config.ssl is None:
        return None
    if command not in ("pretrain", "train"):
        return (
            "has an [ssl] table: self-supervised pre-training runs with "
            f"`ecg-transfer pretrain`, not `{command}`; fine-tune its result with --from"
        )
    if from_run:
        return "has an [ssl] table, which pre-trains from random weights: drop --from (init_from)"
    return None


__all__ = [
    "FinetuneConfig",
    "OptimizerConfig",
    "RunConfig",
    "ScheduleConfig",
    "SslConfig",
    "SslSource",
    "StageSpec",
    "TrackingConfig",
    "finetune_default",
    "load_config",
    "preset_stages",
    "read_settings_file",
    "save_config",
    "ssl_refusal",
]
