"""The study spec: one TOML file that defines a whole transfer study, validated before anything runs.

A study compares two arms on a small target set -- fine-tuned from a source pre-training, and
standalone from random weights -- with the corrected protocol of ``REFERENCE.md`` (same
preprocessing, split, windows and test records for both arms; a separate validation split; the
source's standard folds with one fixed test fold; equivalent SNOMED classes merged; several seeds,
bootstrap CIs and paired tests). Layout (every key optional except the dataset roots; see
``studies/ptbxl_to_g12ec.toml``)::

    [study]        name, out, model, model_kwargs, fs, seeds, protocols, bootstrap, threads,
                   cache_dir, device, machinery_check
    [source]       dataset, root, labels, allow_missing, train_fraction, epochs, validate_every,
                   batch_size, run (extra RunConfig keys)
    [target]       dataset, root, name, n_folds, fold_seed, train/val/test_folds, batch_size,
                   validate_every, run
    [finetune]     the fine-tuned arm's RunConfig ``finetune`` table (policy, stages, ...)
    [standalone]   epochs (and run: extra RunConfig keys) of the arm trained from scratch
    [experiments.target_share]   1: target training share, "test on the rest" and "fixed test fold"
    [experiments.source_share]   2: source pre-training share, fine-tuned on a small target share
    [experiments.sampling_rate]  3: rates in Hz, both arms, pre-training at each rate
    [experiments.calibration]    4: calibrators fitted on validation, before/after on test
    [experiments.frequency]      5: frequency-domain inputs for pre-training and fine-tuning
    [profiles.NAME]              tables merged over the above with ``--profile NAME``

Shares are percentages. ``study.machinery_check = true`` marks a profile whose numbers check the
machinery and answer nothing (the report says so in its header). The ``run`` tables are checked
when the plan builds every run's complete :class:`RunConfig`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

from pydantic import AfterValidator, BaseModel, Field, model_validator

from ..errors import ConfigError
from .base import KeyedValueError, Settings, TopSettings, tuple_of
from .names import CALIBRATORS, INPUT_KINDS, MODEL_NAMES, PROTOCOLS, PTBXL_TASKS
from .run import FinetuneConfig, PositiveFloat, _device, _plain_table, read_settings_file

Percent = Annotated[float, Field(gt=0, lt=100, allow_inf_nan=False)]
FREQUENCY_INPUTS = tuple(k for k in INPUT_KINDS if k != "time")
PlainTable = Annotated[dict[str, Any], AfterValidator(_plain_table)]


def _distinct(values: tuple[Any, ...]) -> tuple[Any, ...]:
    if not values:
        raise ValueError("must not be empty")
    if len(set(values)) != len(values):
        raise ValueError(f"must not repeat a value, got {list(values)!r}")
    return values


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty string")
    return value


class StudySection(Settings):
    name: Annotated[str, AfterValidator(_non_empty)] = "study"
    out: str | None = None
    model: Literal[MODEL_NAMES] = "xresnet1d101"  # type: ignore[valid-type]
    model_kwargs: PlainTable = Field(default_factory=dict)
    fs: PositiveFloat = 500.0
    seeds: Annotated[tuple_of(Annotated[int, Field(ge=0)]), AfterValidator(_distinct)] = (0, 1, 2)
    protocols: Annotated[tuple_of(Literal[PROTOCOLS]), AfterValidator(_distinct)] = PROTOCOLS  # type: ignore
    bootstrap: Annotated[int, Field(ge=50)] = 1000
    threads: Annotated[int, Field(ge=0)] = 0
    cache_dir: str | None = None
    device: Annotated[str, AfterValidator(_device)] = "auto"
    machinery_check: bool = False


class SourceSection(Settings):
    dataset: Literal["ptbxl"] = "ptbxl"
    root: Annotated[str, AfterValidator(_non_empty)]
    labels: Literal[PTBXL_TASKS] = "diagnostic"  # type: ignore[valid-type]
    allow_missing: bool = False
    train_fraction: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 1.0
    epochs: Annotated[int, Field(ge=1)] = 50
    validate_every: Annotated[int, Field(ge=1)] = 5
    batch_size: Annotated[int, Field(ge=2)] = 128
    run: PlainTable = Field(default_factory=dict)


class TargetSection(Settings):
    dataset: Literal["cinc", "g12ec"] = "cinc"
    root: Annotated[str, AfterValidator(_non_empty)]
    name: str = "G12EC"
    n_folds: Annotated[int, Field(ge=3)] = 10
    fold_seed: Annotated[int, Field(ge=0)] = 0
    train_folds: tuple_of(Annotated[int, Field(ge=1)]) = (1, 2, 3, 4, 5, 6, 7, 8)
    val_folds: tuple_of(Annotated[int, Field(ge=1)]) = (9,)
    test_folds: tuple_of(Annotated[int, Field(ge=1)]) = (10,)
    batch_size: Annotated[int, Field(ge=2)] = 128
    validate_every: Annotated[int, Field(ge=1)] = 1
    run: PlainTable = Field(default_factory=dict)

    @model_validator(mode="after")
    def _folds(self) -> "TargetSection":
        named = {"train_folds": self.train_folds, "val_folds": self.val_folds, "test_folds": self.test_folds}
        for key, folds in named.items():
            if not folds or any(f > self.n_folds for f in folds):
                raise KeyedValueError(key, f"a non-empty list of fold numbers 1..{self.n_folds}, got {list(folds)}")
        sets = [set(v) for v in named.values()]
        if sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2]:
            raise KeyedValueError("*_folds", f"must be disjoint fold lists, got {({k: list(v) for k, v in named.items()})}")
        return self


class StandaloneSection(Settings):
    epochs: Annotated[int, Field(ge=1)] = 40
    run: PlainTable = Field(default_factory=dict)


class TargetShareExperiment(Settings):
    enabled: bool = True
    shares: Annotated[tuple_of(Percent), AfterValidator(_distinct)] = (10, 20, 30, 50, 70, 80, 90)
    repeats: Annotated[int, Field(ge=1)] = 3
    fixed_test: bool = True


class SourceShareExperiment(Settings):
    enabled: bool = True
    # pre-training epochs of this experiment's source runs (default: source.epochs): a reduced
    # experiment in a small profile compares rates/shares/inputs at fewer epochs, among themselves
    source_epochs: Annotated[int, Field(ge=1)] | None = None
    shares: Annotated[tuple_of(Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]),
                      AfterValidator(_distinct)] = (25, 50, 75, 100)
    target_share: Percent = 10


class SamplingRateExperiment(Settings):
    enabled: bool = True
    # pre-training epochs of this experiment's source runs (default: source.epochs): a reduced
    # experiment in a small profile compares rates/shares/inputs at fewer epochs, among themselves
    source_epochs: Annotated[int, Field(ge=1)] | None = None
    rates: Annotated[tuple_of(PositiveFloat), AfterValidator(_distinct)] = (500, 250, 100, 50)


class CalibrationExperiment(Settings):
    enabled: bool = True
    methods: tuple_of(Literal[CALIBRATORS]) = CALIBRATORS  # type: ignore[valid-type]


class FrequencyExperiment(Settings):
    enabled: bool = True
    # pre-training epochs of this experiment's source runs (default: source.epochs): a reduced
    # experiment in a small profile compares rates/shares/inputs at fewer epochs, among themselves
    source_epochs: Annotated[int, Field(ge=1)] | None = None
    inputs: Annotated[tuple_of(Literal[FREQUENCY_INPUTS]), AfterValidator(_distinct)] = FREQUENCY_INPUTS  # type: ignore


class Experiments(Settings):
    target_share: TargetShareExperiment = Field(default_factory=TargetShareExperiment)
    source_share: SourceShareExperiment = Field(default_factory=SourceShareExperiment)
    sampling_rate: SamplingRateExperiment = Field(default_factory=SamplingRateExperiment)
    calibration: CalibrationExperiment = Field(default_factory=CalibrationExperiment)
    frequency: FrequencyExperiment = Field(default_factory=FrequencyExperiment)


def _transfer_policy(ft: FinetuneConfig) -> FinetuneConfig:
    if ft.policy == "none":
        raise KeyedValueError("policy", "a transfer policy (head-then-all, gradual, all, linear-probe); "
                              "'none' is the standalone arm")
    return ft


class StudySettings(TopSettings):
    """A whole study spec (profiles already merged)."""

    study: StudySection = Field(default_factory=StudySection)
    source: SourceSection
    target: TargetSection
    finetune: Annotated[FinetuneConfig, AfterValidator(_transfer_policy)] = Field(
        default_factory=lambda: FinetuneConfig(policy="gradual"))
    standalone: StandaloneSection = Field(default_factory=StandaloneSection)
    experiments: Experiments = Field(default_factory=Experiments)


# Tables that a profile replaces whole instead of merging key by key.
_REPLACED = ("model_kwargs", "run")


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) and k not in _REPLACED:
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _unknown_key(model: type[BaseModel], table: Mapping[str, Any], prefix: str) -> None:
    """Refuse a key the model does not have, naming it with ``prefix`` (``profiles.smoke.study``)."""
    for key, value in table.items():
        where = f"{prefix}.{key}" if prefix else key
        info = model.model_fields.get(key)
        if info is None:
            raise ConfigError(f"unknown config key {where!r}; allowed keys here: {', '.join(sorted(model.model_fields))}")
        sub = info.annotation
        sub = getattr(sub, "__origin__", sub)
        if isinstance(value, Mapping) and isinstance(sub, type) and issubclass(sub, BaseModel):
            _unknown_key(sub, value, where)


@dataclass(frozen=True)
class StudySpec:
    """A validated spec: ``settings`` is the typed model, ``data`` the same as plain values."""

    path: Path
    profile: str | None
    settings: StudySettings

    @property
    def data(self) -> dict[str, Any]:
        return self.settings.to_dict()

    @property
    def name(self) -> str:
        return self.settings.study.name

    @property
    def digest(self) -> str:
        """sha256 of the resolved spec: two specs that define the same study share it."""
        return hashlib.sha256(json.dumps(self.data, sort_keys=True).encode()).hexdigest()

    def out_dir(self, override: str | Path | None = None) -> Path:
        """Where the study is written: ``--out``, else ``study.out``, else ``studies/out/<name>[-<profile>]``."""
        if override is not None:
            return Path(override)
        if self.settings.study.out:
            return Path(self.settings.study.out)
        return Path("studies") / "out" / (self.name + (f"-{self.profile}" if self.profile else ""))

    @property
    def primary_protocol(self) -> str:
        return self.settings.study.protocols[0]


def spec_from_dict(raw: Mapping[str, Any], *, path: str | Path = "<spec>", profile: str | None = None) -> StudySpec:
    """Validate ``raw`` (a parsed TOML document) and merge ``profile`` over it."""
    raw = dict(raw)
    profiles = raw.pop("profiles", {}) or {}
    if not isinstance(profiles, Mapping):
        raise ConfigError("config key 'profiles': must be a table of named profiles")
    _unknown_key(StudySettings, raw, "")
    for pname, ptable in profiles.items():
        if not isinstance(ptable, Mapping):
            raise ConfigError(f"config key 'profiles.{pname}': must be a table")
        _unknown_key(StudySettings, ptable, f"profiles.{pname}")
    if profile is not None and profile not in profiles:
        known = ", ".join(sorted(profiles)) or "none defined"
        raise ConfigError(f"profile {profile!r} is not in {path} (profiles: {known})")
    data = _merge(raw, profiles[profile]) if profile is not None else raw
    for section in ("source", "target"):  # so that a missing root is named as such
        data.setdefault(section, {})
    try:
        settings = StudySettings.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{exc}{f' (with profile {profile!r})' if profile else ''}") from None
    return StudySpec(path=Path(path), profile=profile, settings=settings)


def load_spec(path: str | Path, profile: str | None = None) -> StudySpec:
    """Read and validate a study spec (TOML). Relative dataset roots are taken from the current directory."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such study spec file")
    try:
        return spec_from_dict(read_settings_file(path), path=path, profile=profile)
    except ConfigError as exc:
        text = str(exc)
        raise ConfigError(text if text.startswith(str(path)) else f"{path}: {text}") from None


__all__ = ["FREQUENCY_INPUTS", "StudySettings", "StudySpec", "load_spec", "spec_from_dict"]
