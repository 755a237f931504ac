"""Model names -> builders, so configs and checkpoints name a model by a string.

Each builder takes ``in_channels`` and ``n_classes`` plus its own keyword arguments (kernel sizes,
widths, head shape); the defaults are the PTB-XL benchmark's settings. A built model carries
``model.spec`` (name + arguments), enough to rebuild it before loading saved weights.
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Any, Callable

from ..errors import ConfigError
from ..settings.names import MODEL_NAMES as SETTINGS_MODEL_NAMES
from .base import EcgClassifier
from .fcn import fcn_wang
from .inception1d import inception1d
from .resnet1d import resnet1d_wang
from .rnn import rnn1d
from .s4 import s4
from .xresnet1d import xresnet1d

_BUILDERS: dict[str, Callable[..., EcgClassifier]] = {
    "xresnet1d18": partial(xresnet1d, 1, (2, 2, 2, 2)),
    "xresnet1d34": partial(xresnet1d, 1, (3, 4, 6, 3)),
    "xresnet1d50": partial(xresnet1d, 4, (3, 4, 6, 3)),
    "xresnet1d101": partial(xresnet1d, 4, (3, 4, 23, 3)),
    "xresnet1d152": partial(xresnet1d, 4, (3, 8, 36, 3)),
    "inception1d": inception1d,
    "resnet1d_wang": resnet1d_wang,
    "fcn_wang": fcn_wang,
    "lstm": partial(rnn1d, bidirectional=False),
    "lstm_bidir": partial(rnn1d, bidirectional=True),
    "s4": s4,
}

# The names are the settings layer's (one list of allowed models; a test keeps the two equal).
MODEL_NAMES: tuple[str, ...] = SETTINGS_MODEL_NAMES
if set(_BUILDERS) != set(MODEL_NAMES):  # pragma: no cover - a model added in one place only
    raise RuntimeError(f"models.registry builds {sorted(_BUILDERS)} but settings.names lists {sorted(MODEL_NAMES)}")

# Per-model training settings that differ between models in the benchmark's configs
# (fastai_configs.py / fastai_model.py): max learning rate and gradient-norm clipping. s4: the S4
# ECG work's AdamW learning rate (1e-3; AI4HealthUOL/ecg-fm-benchmarking's defaults), no clipping.
TRAINING_HINTS: dict[str, dict[str, Any]] = {
    name: (
        {"lr": 1e-3, "grad_clip": 0.25}
        if name.startswith("lstm")
        else {"lr": 1e-3, "grad_clip": None}
        if name == "s4"
        else {"lr": 1e-2, "grad_clip": None}
    )
    for name in MODEL_NAMES
}


def model_kwargs(name: str) -> dict[str, Any]:
    """Keyword arguments ``build(name, ...)`` accepts besides in_channels/n_classes, with defaults."""
    builder = _builder(name)
    bound = builder.keywords if isinstance(builder, partial) else {}
    return {
        p.name: p.default
        for p in inspect.signature(builder).parameters.values()
        if p.name not in ("in_channels", "n_classes")
        and p.name not in bound
        and p.default is not inspect.Parameter.empty
    }


def _builder(name: str) -> Callable[..., EcgClassifier]:
    try:
        return _BUILDERS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown model {name!r}; allowed: {', '.join(MODEL_NAMES)}") from None


def build(name: str, in_channels: int = 12, n_classes: int = 71, **kwargs: Any) -> EcgClassifier:
    """Build model ``name`` for inputs ``(batch, in_channels, time)`` and ``n_classes`` logits."""
    builder = _builder(name)
    for key, value in (("in_channels", in_channels), ("n_classes", n_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"model {name}: {key} must be a positive integer, got {value!r}")
    allowed = model_kwargs(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ConfigError(f"model {name}: unknown argument(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    try:
        model = builder(in_channels=in_channels, n_classes=n_classes, **kwargs)
    except ValueError as exc:
        raise ConfigError(f"model {name}: {exc}") from exc
    model.spec = {"name": name, "in_channels": in_channels, "n_classes": n_classes, **kwargs}
    return model
