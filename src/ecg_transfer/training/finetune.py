"""Transfer learning: start from a pre-trained run's ``model.pt``, new head, a named stage policy.

Both arms of a comparison go through :func:`ecg_transfer.training.run.train_run`; the standalone
arm simply has no pre-trained start (``policy = "none"``), so with the default scaler choice the
two arms share split, preprocessing, windows and evaluation and differ only in initial weights
(and in the stage schedule the policy prescribes).

Policies (``[finetune] policy``) and their presets; each stage is its own one-cycle run with a
fresh AdamW (``schedule.*`` shapes every cycle, ``lr`` is its peak):

``none``
    Train from scratch: one stage, all layers, ``epochs`` at ``schedule.max_lr`` (the benchmark).
``head-then-all`` (the PTB-XL benchmark's fine-tuning, fastai v1)
    New output layer; ``head_epochs`` (30) training only the head at ``lr`` (1e-2), then
    ``all_epochs`` (30) training everything with discriminative rates ``slice(lr/1000, lr/10)``:
    geometric from ``lr/1000`` for the first layer group to ``lr/10`` for the head (fastai's
    ``even_mults``; with 3 groups: lr/1000, lr/100, lr/10).
``gradual`` (the original transfer study)
    10 epochs head only at 1e-2; 10 more head only at 1e-2; 10 epochs the last two layer groups
    at 1e-3; 10 epochs the whole network at 1e-6 ... 1e-4. Change it with explicit ``stages``.
``all``
    Everything at one ``lr`` (default ``schedule.max_lr``) for ``epochs`` (default ``epochs``).
``linear-probe``
    Only the head, ``epochs`` at ``lr``; the body is fixed entirely (``frozen_bn = "frozen"``:
    BatchNorm weights and running statistics too), so it measures the pre-trained features.

``frozen_bn``: in fastai, and so in the benchmark, BatchNorm layers of frozen groups keep
training (``train_bn=True``); that is the default (``"train"``) of head-then-all and gradual.
``"frozen"`` fixes them too. ``stages = [{epochs=..., train="head"|"last:N"|"all", lr=x or
[low, high], frozen_bn=...}, ...]`` replaces any preset. Layer groups come from
``ecg_transfer.models.layer_groups`` (xresnet1d: stem / stages / head).

``new_head``: ``"output"`` (default, as the benchmark and the study did) replaces only the final
linear layer, keeping the pre-trained pooling-BN-linear(128) part of the head; ``"full"`` a new
head of the same shape. The head is replaced even when the label sets coincide: it is a new task.

Scaler (``[finetune] scaler``): ``"refit"`` (default) fits the global mean/std on the target's
own training split -- exactly as the standalone arm does, so the arms see identical inputs and the
target's test data never informs preprocessing. ``"pretrained"`` reuses the pre-training scaler
so the network sees inputs distributed as in pre-training (then the arms' preprocessing differs).
For one global mean/std of two mV-calibrated 12-lead sets the difference is small either way.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import ConfigError
from .. import models
from ..signal import transformed_shape
from .config import RunConfig
from .loop import Stage
from .modelfile import LoadedModel, load_model_file


def _plain(v: object) -> object:
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


def resolve_stages(config: RunConfig) -> list[Stage]:
    """The concrete stages a config trains (presets filled in, frozen_bn resolved): the settings
    layer's :meth:`RunConfig.stages` as the loop's :class:`Stage` records."""
    return [
        Stage(name=s.name, epochs=s.epochs, train=s.train, lr=s.lr, frozen_bn=s.frozen_bn or "train")
        for s in config.stages()
    ]


def check_policy(config: RunConfig, pretrained: bool) -> None:
    """Refuse combinations that make no sense: a head-only stage on random weights, or a
    pre-trained start under ``policy = "none"``."""
    policy = config.finetune.policy
    if pretrained and policy == "none":
        raise ConfigError(
            "a pre-trained start was given but config key 'finetune.policy' is 'none'; "
            "allowed values: head-then-all, gradual, all, linear-probe"
        )
    if not pretrained:
        partial = [s.name for s in resolve_stages(config) if s.train != "all"]
        if partial:
            raise ConfigError(
                f"finetune.policy={policy!r} freezes layers (stages {', '.join(partial)}) but no "
                "pre-trained run was given (finetune.pretrained_run or init_from)"
            )


def init_model(
    config: RunConfig, in_channels: int, n_classes: int, init_from: str | Path | None
) -> tuple[nn.Module, LoadedModel | None]:
    """A freshly initialised model, or the pre-trained one with a new head for ``n_classes``.

    ``in_channels`` is the data's leads; the network takes what ``config.input`` makes of them
    (:func:`ecg_transfer.signal.transformed_shape`: 12 leads of ``"stft"`` at 100 Hz are 132
    channels). A pre-trained start must have been trained on the same ``input``.
    Call after seeding the global RNG: initialisation (and the new head's) draws from it.
    """
    channels = transformed_shape(config.input, config.fs, in_channels, config.crop_len)[0]
    if init_from is None:
        return models.build(config.model, channels, n_classes, **config.model_kwargs), None
    pre = load_model_file(init_from, encoder_ok=True)  # a self-supervised run's encoder is a start too
    if pre.input != config.input:
        raise ConfigError(
            f"config key 'input': {config.input!r}, but the pre-trained run {init_from} was trained on "
            f"input={pre.input!r}; fine-tune with input = {pre.input!r} (the network's first layer "
            "only knows that input)"
        )
    name = pre.spec["name"]
    if name != config.model:
        raise ConfigError(f"config key 'model': {config.model!r}, but the pre-trained run {init_from} is a {name!r}")
    if abs(pre.fs - config.fs) > 1e-9:
        raise ConfigError(
            f"config key 'fs': {config.fs} Hz, but the pre-trained run {init_from} was trained at "
            f"{pre.fs} Hz; resample the target data to the pre-training rate"
        )
    if pre.n_leads != in_channels or int(pre.spec["in_channels"]) != channels:
        raise ConfigError(f"the pre-trained run {init_from} takes {pre.n_leads} leads; the data has {in_channels}")
    pre_kwargs = {
        **models.model_kwargs(name),
        **{k: v for k, v in pre.spec.items() if k not in ("name", "in_channels", "n_classes")},
    }
    differing = sorted(k for k, v in config.model_kwargs.items() if _plain(v) != _plain(pre_kwargs.get(k)))
    if differing:
        raise ConfigError(
            f"config key 'model_kwargs.{differing[0]}': {config.model_kwargs[differing[0]]!r} differs "
            f"from the pre-trained model's {pre_kwargs.get(differing[0])!r}; leave model_kwargs "
            "empty to use the pre-trained architecture"
        )
    model = models.replace_head(pre.model, n_classes, keep_hidden=config.finetune.new_head == "output")
    return model, pre
