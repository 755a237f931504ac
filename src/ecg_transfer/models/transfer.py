"""What fine-tuning needs from a model: a new head, layer groups, freezing, per-group learning rates.

The benchmark (fastai v1) fine-tunes by (1) replacing only the final linear layer, (2) training
the last layer group (the head) with the body frozen -- BatchNorm layers stay trainable
(``train_bn=True``) -- and (3) unfreezing everything with geometrically spaced learning rates,
``slice(lr/1000, lr/10)`` over the layer groups. These helpers reproduce those pieces.
"""

from __future__ import annotations

import math

from torch import nn

from .base import EcgClassifier
from .heads import ClassifierHead


def _check(model: nn.Module) -> EcgClassifier:
    if not isinstance(model, EcgClassifier) or not isinstance(model.head, ClassifierHead):
        raise TypeError(f"expected a model built by ecg_transfer.models.build, got {type(model).__name__}")
    return model


def replace_head(model: nn.Module, n_classes: int, *, keep_hidden: bool = True) -> EcgClassifier:
    """Give ``model`` a freshly initialised output for ``n_classes``, keeping the body (in place).

    ``keep_hidden=True`` swaps only the final linear layer, as the benchmark and the original
    transfer study did, so the pretrained pooling-BN-linear(128) part of the head is kept.
    ``keep_hidden=False`` replaces the whole head with a new one of the same shape.
    """
    model = _check(model)
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    if keep_hidden:
        model.head.replace_output(n_classes)
    else:
        model.head = model.head.fresh(n_classes)
    model.spec["n_classes"] = n_classes
    return model


def layer_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """Parameters split into layer groups, input to head, the head last; each parameter once.

    Groupings (see each model module): xresnet1d* [stem] [pool+stages] [head];
    inception1d [stage1] [stage2] [head]; resnet1d_wang [body] [head];
    fcn_wang [conv1+conv2] [conv3] [head]; lstm, lstm_bidir [lstm] [head];
    s4 [encoder] [block1] ... [blockN] [head] (one group per residual S4 block).
    """
    model = _check(model)
    groups: list[list[nn.Parameter]] = []
    seen: set[int] = set()
    for modules in model.group_modules():
        params = []
        for m in modules:
            for p in m.parameters():
                if id(p) in seen:
                    raise ValueError("a parameter belongs to two layer groups")
                seen.add(id(p))
                params.append(p)
        groups.append(params)
    missing = [n for n, p in model.named_parameters() if id(p) not in seen]
    if missing:
        raise ValueError(f"parameters outside every layer group: {missing[:5]}")
    return groups


def freeze_to(model: nn.Module, n_trainable: int, *, train_bn: bool = True) -> EcgClassifier:
    """Train only the last ``n_trainable`` layer groups (``-1`` or >= number of groups: all).

    With ``train_bn`` (fastai's default, used by the benchmark) BatchNorm weights in frozen
    groups still train, which lets normalisation adapt to a new dataset's amplitude statistics.
    """
    model = _check(model)
    groups = model.group_modules()
    n_frozen = 0 if n_trainable < 0 else max(len(groups) - n_trainable, 0)
    for i, modules in enumerate(groups):
        for top in modules:
            for m in top.modules():
                is_bn = isinstance(m, nn.modules.batchnorm._BatchNorm)
                trainable = i >= n_frozen or (train_bn and is_bn)
                for p in m.parameters(recurse=False):
                    p.requires_grad_(trainable)
    return model


def discriminative_lrs(low: float, high: float, n_groups: int) -> list[float]:
    """Learning rates from ``low`` (first group) to ``high`` (head), evenly spaced in log scale.

    ``discriminative_lrs(lr / 1000, lr / 10, 3)`` is the benchmark's ``slice(lr/1000, lr/10)``.
    """
    if n_groups < 1 or low <= 0 or high <= 0:
        raise ValueError("need n_groups >= 1 and positive learning rates")
    if n_groups == 1:
        return [high]
    step = math.log(high / low) / (n_groups - 1)
    return [low * math.exp(step * i) for i in range(n_groups)]
