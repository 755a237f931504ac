"""The study spec: one TOML file that defines a whole transfer study, validated before anything runs.

A study compares two arms on a small target set -- fine-tuned from a source pre-training, and
standalone from random weights -- with the corrected protocol of ``REFERENCE.md`` (same
preprocessing, split, windows and test records for both arms; a separate validation split; the
source's standard folds with one fixed test fold; equivalent SNOMED classes merged; several seeds,
bootstrap CIs and paired tests). Layout (every key optional except the dataset roots; see
``studies/ptbxl_to_g12ec.toml``)::

    [study]        name, out, model, model_kwargs, fs, seeds, protocols, bootstrap, threads,
                   cache_dir, device, machinery_check, lengths, lr_factors
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
    [experiments.strategy]       6: pre-training strategy (none / supervised per task / self-supervised)
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
from .base import KeyedValueError, ListedTuple, Settings, TopSettings
from .names import CALIBRATORS, INPUT_KINDS, MODEL_NAMES, PROTOCOLS, PTBXL_TASKS
from .run import FinetuneConfig, PositiveFloat, _device, _plain_table, read_settings_file

# ``Literal[NAMES]`` of a tuple defined once in .names: pydantic reads it, mypy cannot (hence each
# such field's ``type: ignore[valid-type]``); the tuple stays the one list of the allowed names.
Percent = Annotated[float, Field(gt=0, lt=100, allow_inf_nan=False)]
FREQUENCY_INPUTS = tuple(k for k in INPUT_KINDS if k != "time")
PlainTable = Annotated[dict[str, Any], AfterValidator(_plain_table)]


def _distinct(values: tuple[Any, ...]) -> tuple[Any, ...]:
    if not values:
        raise ValueError("must not be empty")
    if len(set(values)) != len(values):
        raise ValueError(f"must not repeat a value, got {list(values)!r}")
    return values


def _increasing(values: tuple[float, ...]) -> tuple[float, ...]:
    """Distinct factors, kept in increasing order (the last is the longest: "at the cap")."""
    return tuple(sorted(_distinct(values)))


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty string")
    return value


class StudySection(Settings):
    name: Annotated[str, AfterValidator(_non_empty)] = "study"
    """The study's name (its output folder is studies/out/<name>[-<profile>])."""
    out: str | None = None
    """The study folder (default studies/out/<name>[-<profile>])."""
    model: Literal[MODEL_NAMES] = "xresnet1d101"  # type: ignore[valid-type]
    """The network of every run (models registry)."""
    model_kwargs: PlainTable = Field(default_factory=dict)
    """Arguments of the network's builder; empty: the benchmark's."""
    fs: PositiveFloat = 500.0
    """Sampling rate of the headline and of experiments 1, 2, 4 and 5, in Hz."""
    seeds: Annotated[ListedTuple[Annotated[int, Field(ge=0)]], AfterValidator(_distinct)] = (0, 1, 2)
    """Training seeds of every arm (experiment 1: one per repeat)."""
    protocols: Annotated[ListedTuple[Literal[PROTOCOLS]], AfterValidator(_distinct)] = PROTOCOLS  # type: ignore[valid-type]
    """Label protocols of the target; the first is used by experiments 1, 2, 3 and 5."""
    bootstrap: Annotated[int, Field(ge=50)] = 1000
    """Bootstrap resamples of test records for every confidence interval."""
    threads: Annotated[int, Field(ge=0)] = 0
    """CPU threads per run (0: torch's default)."""
    cache_dir: str | None = None
    """Where signal caches live (default $ECG_TRANSFER_CACHE or ~/.cache/ecg-transfer)."""
    device: Annotated[str, AfterValidator(_device)] = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    leakage: Literal["warn", "strict", "off"] = "warn"
    """Before training, audit source and target for duplicate signals: warn with the count of target records that copy a pre-training record, refuse to start (strict), or skip the audit (off)."""
    machinery_check: bool = False
    """This profile checks the machinery and answers nothing: the report says so in its header."""
    lengths: Annotated[ListedTuple[PositiveFloat], AfterValidator(_increasing)] = (1.0, 2.0, 4.0)
    """Training lengths of every target run, as multiples of its arm's epochs ([standalone] epochs, each [finetune] stage's epochs): each comparison takes, per arm, the length with the best validation macro AUC (a tie keeps the shorter; the test folds never choose). [1] is one fixed length for both arms, the original's protocol, which credits pre-training with its head start (the arm from random weights is often still learning)."""
    lr_factors: Annotated[ListedTuple[PositiveFloat], AfterValidator(_increasing)] = (1.0,)
    """Peak learning rates of every target run, as multiples of its arm's own ([standalone] run's schedule.max_lr; each [finetune] stage's lr, both ends of a discriminative range): every run is trained at each (length, rate) and each comparison takes, per arm, the pair with the best validation macro AUC. [1] trains each arm at its configured rate, not chosen: a rate that suits one arm better than the other moves the difference as a fixed length does (on PTB-XL the arm from random weights learnt best at 3x its rate, and choosing both arms' rates shrank a measured gain from +0.019 to +0.002). Each factor multiplies the target runs' cost."""


class SourceSection(Settings):
    dataset: Literal["ptbxl"] = "ptbxl"
    """The pre-training set (PTB-XL)."""
    root: Annotated[str, AfterValidator(_non_empty)]
    """PTB-XL's folder (holding ptbxl_database.csv)."""
    labels: Literal[PTBXL_TASKS] = "diagnostic"  # type: ignore[valid-type]
    """The PTB-XL task pre-trained on."""
    allow_missing: bool = False
    """Above 100 Hz: use the PTB-XL records present at 500 Hz when some are missing (the study says how many)."""
    train_fraction: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 1.0
    """Share of folds 1-8 pre-trained on (patients kept together)."""
    epochs: Annotated[int, Field(ge=1)] = 50
    """Pre-training epochs."""
    validate_every: Annotated[int, Field(ge=1)] = 5
    """Validation AUC every N epochs."""
    batch_size: Annotated[int, Field(ge=2)] = 128
    """Records per batch."""
    run: PlainTable = Field(default_factory=dict)
    """Extra run-config keys of every pre-training run (checked when the plan is built), e.g. {keep = "best-val"} (which a self-supervised pre-training, with no validation AUC, leaves out: it keeps its last epoch)."""


class TargetSection(Settings):
    dataset: Literal["cinc", "g12ec"] = "cinc"
    """The target set: any CinC-format folder (g12ec: an alias)."""
    root: Annotated[str, AfterValidator(_non_empty)]
    """The target's folder (holding the CinC records)."""
    name: str = "G12EC"
    """The target's name in the report."""
    n_folds: Annotated[int, Field(ge=3)] = 10
    """Seeded, label-stratified folds (identical signals kept together)."""
    fold_seed: Annotated[int, Field(ge=0)] = 0
    """Seed of the folds."""
    train_folds: ListedTuple[Annotated[int, Field(ge=1)]] = (1, 2, 3, 4, 5, 6, 7, 8)
    """Folds that train (headline and experiments 3-5)."""
    val_folds: ListedTuple[Annotated[int, Field(ge=1)]] = (9,)
    """Folds that validate (tuning, calibration fits)."""
    test_folds: ListedTuple[Annotated[int, Field(ge=1)]] = (10,)
    """Folds that test."""
    batch_size: Annotated[int, Field(ge=2)] = 128
    """Records per batch."""
    validate_every: Annotated[int, Field(ge=1)] = 1
    """Validation AUC every N epochs."""
    run: PlainTable = Field(default_factory=dict)
    """Extra run-config keys of every target run (checked when the plan is built)."""

    @model_validator(mode="after")
    def _folds(self) -> "TargetSection":
        named = {"train_folds": self.train_folds, "val_folds": self.val_folds, "test_folds": self.test_folds}
        for key, folds in named.items():
            if not folds or any(f > self.n_folds for f in folds):
                raise KeyedValueError(key, f"a non-empty list of fold numbers 1..{self.n_folds}, got {list(folds)}")
        sets = [set(v) for v in named.values()]
        if sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2]:
            raise KeyedValueError(
                "*_folds", f"must be disjoint fold lists, got { ({k: list(v) for k, v in named.items()}) }"
            )
        return self


class StandaloneSection(Settings):
    epochs: Annotated[int, Field(ge=1)] = 40
    """Epochs of the arm trained from random weights (at length 1: study.lengths multiplies them)."""
    run: PlainTable = Field(default_factory=dict)
    """Extra run-config keys of the standalone arm."""


class TargetShareExperiment(Settings):
    enabled: bool = True
    """Run experiment 1."""
    shares: Annotated[ListedTuple[Percent], AfterValidator(_distinct)] = (10, 20, 30, 50, 70, 80, 90)
    """Target training shares in percent, tested on the rest."""
    repeats: Annotated[int, Field(ge=1)] = 3
    """Repeats per share (other folds, subsets and seeds)."""
    fixed_test: bool = True
    """Also: a fixed test fold with growing, nested training subsets."""


class SourceShareExperiment(Settings):
    enabled: bool = True
    """Run experiment 2."""
    source_epochs: Annotated[int, Field(ge=1)] | None = None
    """Pre-training epochs of this experiment's source runs (default: source.epochs); a reduced experiment compares its points among themselves."""
    shares: Annotated[
        ListedTuple[Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]], AfterValidator(_distinct)
    ] = (25, 50, 75, 100)
    """PTB-XL pre-training shares in percent (patients kept together), tested on fold 10."""
    target_share: Percent = 10
    """Each fine-tuned on this target share, tested on the rest."""


class SamplingRateExperiment(Settings):
    enabled: bool = True
    """Run experiment 3."""
    source_epochs: Annotated[int, Field(ge=1)] | None = None
    """Pre-training epochs of this experiment's source runs (default: source.epochs); a reduced experiment compares its points among themselves."""
    rates: Annotated[ListedTuple[PositiveFloat], AfterValidator(_distinct)] = (500, 250, 100, 50)
    """Sampling rates in Hz, the same 2.5 s of context, both arms."""


class CalibrationExperiment(Settings):
    enabled: bool = True
    """Run experiment 4."""
    methods: ListedTuple[Literal[CALIBRATORS]] = CALIBRATORS  # type: ignore[valid-type]
    """Calibrators fitted on validation predictions, measured on test."""


class FrequencyExperiment(Settings):
    enabled: bool = True
    """Run experiment 5."""
    source_epochs: Annotated[int, Field(ge=1)] | None = None
    """Pre-training epochs of this experiment's source runs (default: source.epochs); a reduced experiment compares its points among themselves."""
    inputs: Annotated[ListedTuple[Literal[FREQUENCY_INPUTS]], AfterValidator(_distinct)] = FREQUENCY_INPUTS  # type: ignore[valid-type]
    """Frequency-domain inputs per 2.5 s window, against the time domain."""


STRATEGIES = ("none", *(f"supervised:{t}" for t in PTBXL_TASKS), "self-supervised")


def _strategy(value: str) -> str:
    if value not in STRATEGIES:
        raise ValueError(f"{value!r} is not a strategy; allowed: {', '.join(STRATEGIES)}")
    return value


#: Keys of a backbone's ``model_runs`` that say how a target run is evaluated (its windows and how
#: their outputs become a record's) and which epoch it keeps. Both arms of a paired comparison
#: take them, or the difference measures the protocol as well as the pre-training.
PROTOCOL_RUN_KEYS = ("crop_seconds", "stride_seconds", "aggregate", "short_records", "keep")
#: Run-config keys that experiment 6 sets itself for each run (refused in ``model_runs``).
STUDY_SET_RUN_KEYS = ("model", "fs", "task", "finetune", "ssl", "seed", "input", "epochs")


class StrategyExperiment(Settings):
    enabled: bool = False
    """Run experiment 6 (off unless a spec turns it on)."""
    strategies: Annotated[ListedTuple[Annotated[str, AfterValidator(_strategy)]], AfterValidator(_distinct)] = (
        STRATEGIES
    )
    """none (random weights), supervised:TASK (pre-trained on a PTB-XL task), self-supervised (the [ssl] table below)."""
    models: Annotated[ListedTuple[Literal[MODEL_NAMES]], AfterValidator(_distinct)] | None = None  # type: ignore[valid-type]
    """Backbones compared (default: study.model)."""
    shares: Annotated[ListedTuple[Percent], AfterValidator(_distinct)] | None = None
    """Target training shares, tested on the rest (default: experiment 1's shares)."""
    repeats: Annotated[int, Field(ge=1)] = 1
    """Repeats per share (other folds, subsets and seeds)."""
    source_epochs: Annotated[int, Field(ge=1)] | None = None
    """Pre-training epochs of every strategy's source run (default: source.epochs)."""
    ssl: PlainTable = Field(default_factory=dict)
    """The [ssl] table of the self-supervised pre-training (see the run config reference)."""
    model_runs: dict[str, PlainTable] = Field(default_factory=dict)
    """Extra run-config keys per backbone, e.g. {s4 = {batch_size = 64, schedule = {max_lr = 0.001},
    keep = "best-val", aggregate = "mean"}}: the recipe (batch size, optimizer, schedule, ...) for its
    pre-training and from-scratch runs (fine-tuned runs train by [finetune]); the evaluation protocol
    (crop_seconds, stride_seconds, aggregate, short_records, keep) for every run of the backbone, the
    fine-tuned ones too, so that a strategy's difference to no pre-training measures the
    pre-training, not another protocol (a self-supervised pre-training leaves keep out: it keeps
    its last epoch). Keys the study sets itself (model, fs, task, finetune, ssl, seed, input,
    epochs) are refused."""

    @model_validator(mode="after")
    def _known_models(self) -> "StrategyExperiment":
        unknown = sorted(set(self.model_runs) - set(MODEL_NAMES))
        if unknown:
            raise KeyedValueError("model_runs", f"{unknown[0]!r} is not a model; allowed: {', '.join(MODEL_NAMES)}")
        for model, table in self.model_runs.items():
            set_here = sorted(set(table) & set(STUDY_SET_RUN_KEYS))
            if set_here:
                raise KeyedValueError(
                    "model_runs",
                    f"{model}.{set_here[0]}: the study sets it for every run of experiment 6 "
                    "(epochs: source_epochs, [standalone] and [finetune])",
                )
        if self.enabled and "self-supervised" in self.strategies and not self.ssl:
            raise KeyedValueError("ssl", "the self-supervised strategy needs its [ssl] table")
        return self


class Experiments(Settings):
    target_share: TargetShareExperiment = Field(default_factory=TargetShareExperiment)
    """1: target training share."""
    source_share: SourceShareExperiment = Field(default_factory=SourceShareExperiment)
    """2: PTB-XL pre-training share."""
    sampling_rate: SamplingRateExperiment = Field(default_factory=SamplingRateExperiment)
    """3: sampling rate."""
    calibration: CalibrationExperiment = Field(default_factory=CalibrationExperiment)
    """4: calibration."""
    frequency: FrequencyExperiment = Field(default_factory=FrequencyExperiment)
    """5: frequency-domain inputs."""
    strategy: StrategyExperiment = Field(default_factory=StrategyExperiment)
    """6: the pre-training strategy (none, supervised on each PTB-XL task, self-supervised), per backbone."""


def _transfer_policy(ft: FinetuneConfig) -> FinetuneConfig:
    if ft.policy == "none":
        raise KeyedValueError(
            "policy", "a transfer policy (head-then-all, gradual, all, linear-probe); 'none' is the standalone arm"
        )
    return ft


class StudySettings(TopSettings):
    """A whole study spec (profiles already merged)."""

    study: StudySection = Field(default_factory=StudySection)
    """What every run shares: network, rate, seeds, protocols, bootstrap."""
    source: SourceSection
    """The pre-training data and recipe."""
    target: TargetSection
    """The target data and its folds."""
    finetune: Annotated[FinetuneConfig, AfterValidator(_transfer_policy)] = Field(
        default_factory=lambda: FinetuneConfig(policy="gradual")
    )
    """The fine-tuned arm's transfer policy (a run config's [finetune] table)."""
    standalone: StandaloneSection = Field(default_factory=StandaloneSection)
    """The arm trained from random weights."""
    experiments: Experiments = Field(default_factory=Experiments)
    """Experiments 1-5."""


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
            raise ConfigError(
                f"unknown config key {where!r}; allowed keys here: {', '.join(sorted(model.model_fields))}"
            )
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


__all__ = ["FREQUENCY_INPUTS", "STRATEGIES", "StudySettings", "StudySpec", "load_spec", "spec_from_dict"]
