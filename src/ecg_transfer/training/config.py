"""A run's settings, validated: defaults are the PTB-XL benchmark recipe, mistakes fail loudly.

Load from TOML or JSON with :func:`load_config`, or build with ``RunConfig.from_dict``. Every key
is checked: an unknown key or a wrong value raises :class:`ecg_transfer.errors.ConfigError`
naming the key (dotted, e.g. ``schedule.max_lr``) and the allowed values or type, so a typo can
never silently fall back to a default. Example (every key optional)::

    model = "xresnet1d101"
    fs = 100.0
    crop_seconds = 2.5            # random crop per record per epoch
    stride_seconds = 1.25         # evaluation windows
    aggregate = "max"             # or "mean"
    input = "time"                # or spectrum | log-spectrum | stft: what the network sees of a window
    batch_size = 128
    epochs = 50
    validate_every = 1            # validation AUC every N epochs (always after the last)
    seed = 0
    dist_backend = "auto"         # under torchrun: nccl on CUDA, gloo on CPU
    sync_batchnorm = true         # under torchrun: BN statistics over the global batch
    memory_format = "auto"        # speed only: channels-last 2-D convolutions where possible
    compile = "none"              # speed only: or default | max-autotune-no-cudagraphs (torch.compile)
    optimizer_impl = "auto"       # speed only: AdamW kernel, fused where available | foreach | for-loop
    [task]                        # opaque: resolved by the data layer
    labels = "diagnostic"
    [optimizer]                   # AdamW
    betas = [0.9, 0.99]
    weight_decay = 0.01
    [schedule]                    # one-cycle; momentum cycles over beta1
    max_lr = 0.01
    div_factor = 25.0
    pct_start = 0.3
    max_momentum = 0.95
    base_momentum = 0.85
    [finetune]
    policy = "none"               # none | head-then-all | gradual | all | linear-probe
    pretrained_run = "runs/ptbxl-diag-500hz"

Fine-tuning keys and their presets are documented in :mod:`ecg_transfer.training.finetune`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..atomic import atomic_write_json
from ..errors import ConfigError
from ..signal import INPUT_KINDS, transformed_shape

POLICIES = ("none", "head-then-all", "gradual", "all", "linear-probe")
_STAGE_TRAIN = re.compile(r"^(all|head|last:[1-9][0-9]*)$")


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null/omitted"
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
    if dataclasses.is_dataclass(tp):
        return f"a table with keys {', '.join(f.name for f in dataclasses.fields(tp))}"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string",
            dict: "a table"}.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        specific = None  # the error from the alternative shaped like the value: the useful one
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                shaped = ((typing.get_origin(arg) is tuple and isinstance(value, (list, tuple)))
                          or (dataclasses.is_dataclass(arg) and isinstance(value, dict)))
                if shaped or len([a for a in args if a is not type(None)]) == 1:
                    specific = exc
        if specific is not None:
            raise specific
        raise ConfigError(f"config key {key!r}: expected {_describe(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r}: expected {_describe(tp)}, got {value!r}")
        return _build(tp, value, key + ".")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r}: expected {_describe(tp)}, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"config key {key!r}: expected {_describe(tp)}, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"config key {key!r}: must be a finite number, got {value!r}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is dict:
        if isinstance(value, dict):
            return dict(value)
    else:  # pragma: no cover - a programming error in this module
        raise TypeError(f"unsupported config type {tp!r} for {key}")
    raise ConfigError(f"config key {key!r}: expected {_describe(tp)}, got {value!r}")


def _check_meta(value: Any, meta: typing.Mapping[str, Any], key: str) -> None:
    if value is None:
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"config key {key!r}: {value!r} is not allowed; allowed values: {', '.join(map(str, choices))}")
    for bound, ok, word in (("min", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
                            ("max", lambda v, b: v <= b, "<="), ("lt", lambda v, b: v < b, "<")):
        if bound in meta:
            vals = value if isinstance(value, tuple) else (value,)
            if not all(ok(v, meta[bound]) for v in vals):
                raise ConfigError(f"config key {key!r}: must be {word} {meta[bound]}, got {value!r}")
    pattern = meta.get("pattern")
    if pattern is not None and not pattern.match(value):
        raise ConfigError(f"config key {key!r}: {value!r} is not allowed; allowed: {meta['pattern_doc']}")


def _build(cls: type, data: dict, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or '<root>'!r}: expected a table, got {data!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix + unknown[0]!r}; allowed keys"
            f"{' in ' + repr(prefix.rstrip('.')) if prefix else ''}: {', '.join(sorted(names))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            key = prefix + f.name
            value = _coerce(data[f.name], hints[f.name], key)
            _check_meta(value, f.metadata, key)
            kwargs[f.name] = value
    return cls(**kwargs)


class _Validated:
    """Re-validates fields on construction so ``RunConfig(max_lr="x")`` fails like a bad file."""

    _SECTION: ClassVar[str] = ""

    def _validate(self, prefix: str | None = None) -> None:
        prefix = self._SECTION if prefix is None else prefix
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            key = prefix + f.name
            value = _coerce(getattr(self, f.name), hints[f.name], key)
            _check_meta(value, f.metadata, key)
            object.__setattr__(self, f.name, value)

    def to_dict(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            if dataclasses.is_dataclass(v):
                return v.to_dict()
            if isinstance(v, (tuple, list)):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> Any:
        return _build(cls, data, cls._SECTION)


@dataclass(frozen=True)
class StageSpec(_Validated):
    """One fine-tuning stage: train which layer groups, for how long, at which peak learning rate.

    ``train``: ``"head"`` (last layer group), ``"last:N"`` (last N groups) or ``"all"``.
    ``lr``: one peak lr for every group, or ``[low, high]``: geometric from the first layer
    group (``low``) to the head (``high``), fastai's ``slice(low, high)``.
    ``frozen_bn``: ``"train"`` (fastai's ``train_bn``: BatchNorm layers of frozen groups keep
    learning) or ``"frozen"`` (frozen groups are fixed entirely, BN statistics included).
    """

    _SECTION: ClassVar[str] = "finetune.stages[]."
    epochs: int = field(default=1, metadata={"min": 1})
    train: str = field(default="all", metadata={"pattern": _STAGE_TRAIN, "pattern_doc": "all, head, last:N"})
    lr: float | tuple[float, float] = field(default=1e-2, metadata={"gt": 0.0})
    name: str = ""
    frozen_bn: str | None = field(default=None, metadata={"choices": ("train", "frozen")})

    def __post_init__(self) -> None:
        self._validate()


# Speed settings (ecg_transfer.training.speed): they change how fast a run goes, never its maths
# beyond float rounding.
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
COMPILE_MODES = ("none", "default", "max-autotune-no-cudagraphs")
OPTIMIZER_IMPLS = ("auto", "fused", "foreach", "for-loop")
# RunConfig keys that may change between a run and its resumption, and that a study leaves out of
# its run keys: they do not change the maths (with several processes, sync_batchnorm = true is the
# one-process maths; each session's choice is recorded in environment.json).
RESUMABLE_KEYS = ("device", "num_threads", "dist_backend", "sync_batchnorm", "validate_every", "memory_format",
                  "compile", "optimizer_impl")


@dataclass(frozen=True)
class OptimizerConfig(_Validated):
    """AdamW as in the benchmark. beta1 is driven by the one-cycle momentum schedule."""

    _SECTION: ClassVar[str] = "optimizer."
    name: str = field(default="adamw", metadata={"choices": ("adamw",)})
    betas: tuple[float, float] = field(default=(0.9, 0.99), metadata={"gt": 0.0, "lt": 1.0})
    weight_decay: float = field(default=1e-2, metadata={"min": 0.0})
    eps: float = field(default=1e-8, metadata={"gt": 0.0})

    def __post_init__(self) -> None:
        self._validate()


@dataclass(frozen=True)
class ScheduleConfig(_Validated):
    """One-cycle (``torch.optim.lr_scheduler.OneCycleLR``), fastai v1's ``fit_one_cycle`` settings.

    Starts at ``max_lr / div_factor``, rises (cosine) over ``pct_start`` of the steps to
    ``max_lr`` and anneals to ``max_lr / div_factor / final_div_factor`` (fastai's default
    ``div_factor * 1e4``); beta1 goes ``max_momentum -> base_momentum -> max_momentum``.
    """

    _SECTION: ClassVar[str] = "schedule."
    name: str = field(default="one-cycle", metadata={"choices": ("one-cycle",)})
    max_lr: float = field(default=1e-2, metadata={"gt": 0.0})
    div_factor: float = field(default=25.0, metadata={"gt": 0.0})
    final_div_factor: float = field(default=1e4, metadata={"gt": 0.0})
    pct_start: float = field(default=0.3, metadata={"gt": 0.0, "lt": 1.0})
    max_momentum: float = field(default=0.95, metadata={"gt": 0.0, "lt": 1.0})
    base_momentum: float = field(default=0.85, metadata={"gt": 0.0, "lt": 1.0})

    def __post_init__(self) -> None:
        self._validate()
        if self.base_momentum > self.max_momentum:
            raise ConfigError(
                f"config key 'schedule.base_momentum': must be <= schedule.max_momentum "
                f"({self.max_momentum}), got {self.base_momentum}"
            )


@dataclass(frozen=True)
class FinetuneConfig(_Validated):
    """Transfer settings; ``policy = "none"`` trains from scratch (the standalone arm)."""

    _SECTION: ClassVar[str] = "finetune."
    policy: str = field(default="none", metadata={"choices": POLICIES})
    pretrained_run: str | None = None
    scaler: str = field(default="refit", metadata={"choices": ("refit", "pretrained")})
    new_head: str = field(default="output", metadata={"choices": ("output", "full")})
    lr: float | None = field(default=None, metadata={"gt": 0.0})
    epochs: int | None = field(default=None, metadata={"min": 1})
    head_epochs: int | None = field(default=None, metadata={"min": 1})
    all_epochs: int | None = field(default=None, metadata={"min": 1})
    frozen_bn: str | None = field(default=None, metadata={"choices": ("train", "frozen")})
    stages: tuple[StageSpec, ...] | None = None

    def __post_init__(self) -> None:
        self._validate()
        p = self.policy
        knobs = {"lr": ("head-then-all", "all", "linear-probe"), "epochs": ("all", "linear-probe"),
                 "head_epochs": ("head-then-all",), "all_epochs": ("head-then-all",),
                 "frozen_bn": ("head-then-all", "gradual", "linear-probe"),
                 "stages": ("head-then-all", "gradual", "all", "linear-probe")}
        for key, policies in knobs.items():
            if getattr(self, key) is not None and p not in policies:
                raise ConfigError(
                    f"config key 'finetune.{key}' does not apply to finetune.policy={p!r}; "
                    f"it applies to: {', '.join(policies)}"
                )
        if self.stages is not None:
            if not self.stages:
                raise ConfigError("config key 'finetune.stages': needs at least one stage")
            for key in ("lr", "epochs", "head_epochs", "all_epochs"):
                if getattr(self, key) is not None:
                    raise ConfigError(f"config key 'finetune.{key}': set it inside finetune.stages instead "
                                      "(explicit stages replace the policy's preset)")
        if p == "none" and self.pretrained_run is not None:
            raise ConfigError("config key 'finetune.pretrained_run' is set but finetune.policy='none'; "
                              f"allowed policies for a pre-trained start: {', '.join(POLICIES[1:])}")


@dataclass(frozen=True)
class RunConfig(_Validated):
    """Everything that determines a training run (besides the data arrays and the split)."""

    _SECTION: ClassVar[str] = ""
    model: str = "xresnet1d101"
    model_kwargs: dict = field(default_factory=dict)
    task: dict = field(default_factory=dict)
    fs: float = field(default=100.0, metadata={"gt": 0.0})
    crop_seconds: float = field(default=2.5, metadata={"gt": 0.0})
    stride_seconds: float = field(default=1.25, metadata={"gt": 0.0})
    aggregate: str = field(default="max", metadata={"choices": ("max", "mean")})
    # What the network sees of each (standardised) window: the samples, or a frequency-domain view
    # computed per window (ecg_transfer.signal.input_transform). It changes the maths, so it is part
    # of the run's definition (never a resumable change); files written without it mean "time".
    input: str = field(default="time", metadata={"choices": INPUT_KINDS})
    short_records: str = field(default="error", metadata={"choices": ("error", "pad")})
    batch_size: int = field(default=128, metadata={"min": 2})
    epochs: int = field(default=50, metadata={"min": 1})
    # Validate every N epochs (and always after the last): validation is not part of the recipe
    # (no early stopping), it only feeds the progress bar and metrics.jsonl; on a CPU it costs
    # about a fifth of an epoch at 100 Hz.
    validate_every: int = field(default=1, metadata={"min": 1})
    loss: str = field(default="bce-with-logits", metadata={"choices": ("bce-with-logits",)})
    grad_clip: float | None = field(default=None, metadata={"gt": 0.0})
    drop_last: bool = True
    seed: int = field(default=0, metadata={"min": 0})
    num_threads: int = field(default=0, metadata={"min": 0})
    device: str = field(default="auto", metadata={
        "pattern": re.compile(r"^(auto|cpu|cuda(:[0-9]+)?|mps)$"), "pattern_doc": "auto, cpu, cuda, cuda:N, mps"})
    deterministic: bool = True
    # How the training step runs (training.speed; measured in BENCHMARKS.md): "auto" runs
    # convolutional networks as 2-D convolutions on channels-last batches (1.2-1.4x on a CPU; the
    # same function up to float rounding), "contiguous" as written; compile: torch.compile mode.
    memory_format: str = field(default="auto", metadata={"choices": MEMORY_FORMATS})
    compile: str = field(default="none", metadata={"choices": COMPILE_MODES})
    # AdamW's kernel: "auto" = fused (one kernel over all parameters; the optimizer step 4-7x
    # faster on a CPU) where torch has it for the parameters' device, else foreach.
    optimizer_impl: str = field(default="auto", metadata={"choices": OPTIMIZER_IMPLS})
    # Several processes (torchrun); see ecg_transfer.training.distributed. Neither changes a
    # one-process run, and sync_batchnorm keeps a multi-process run the one-process maths.
    dist_backend: str = field(default="auto", metadata={"choices": ("auto", "nccl", "gloo")})
    sync_batchnorm: bool = True
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def __post_init__(self) -> None:
        self._validate()
        try:
            from ..models import MODEL_NAMES
        except ImportError:  # pragma: no cover - models package missing
            MODEL_NAMES = None
        if MODEL_NAMES is not None and self.model not in MODEL_NAMES:
            raise ConfigError(f"config key 'model': {self.model!r} is not allowed; allowed values: {', '.join(MODEL_NAMES)}")
        for key in ("crop_seconds", "stride_seconds"):
            n = getattr(self, key) * self.fs
            if abs(n - round(n)) > 1e-6 * max(1.0, n) or round(n) < 1:
                raise ConfigError(f"config key {key!r}: {getattr(self, key)} s at fs={self.fs} Hz is {n} "
                                  "samples; must be a positive whole number of samples")
        transformed_shape(self.input, self.fs, 1, self.crop_len)  # e.g. a crop shorter than the STFT window
        if self.stride_seconds > self.crop_seconds:
            raise ConfigError(f"config key 'stride_seconds': must be <= crop_seconds ({self.crop_seconds}), "
                              f"got {self.stride_seconds}; windows would skip signal")
        try:
            json.dumps(self.model_kwargs), json.dumps(self.task)
        except TypeError as exc:
            raise ConfigError(f"config keys 'model_kwargs'/'task' must hold plain values: {exc}") from None

    @property
    def crop_len(self) -> int:
        return int(round(self.crop_seconds * self.fs))

    @property
    def stride(self) -> int:
        return int(round(self.stride_seconds * self.fs))

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with top-level keys changed (nested sections: pass a dict or a section object)."""
        data = self.to_dict()
        for k, v in changes.items():
            data[k] = v.to_dict() if dataclasses.is_dataclass(v) else v
        return RunConfig.from_dict(data)


def load_config(path: str | Path) -> RunConfig:
    """Read a run config from ``.toml`` or ``.json``."""
    path = Path(path)
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
        else:
            raise ConfigError(f"{path}: config files must end in .toml or .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from None
    try:
        return RunConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the resolved config as JSON (atomically); :func:`load_config` reads it back equal."""
    atomic_write_json(path, config.to_dict())
