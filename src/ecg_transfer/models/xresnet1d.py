"""XResNet1d of the PTB-XL benchmark: a 1-D "bag of tricks" ResNet (He et al. 2019) for 12-lead ECG.

Differences from a plain ResNet, all taken from the benchmark's definition:

* stem of three conv(k5)-BN-ReLU layers (in -> 32, stride 2 -> 32 -> 64) and max-pool 3/2;
* every stage has the same width (64; 256 after the bottleneck expansion of 4), strides 1,2,2,2,
  because ECG classes depend on morphology at every depth rather than on ever more channels;
* the shortcut first average-pools (2, ceil) when the block downsamples, then adds a 1x1
  conv-BN when the channel count changes, so no information is skipped by a strided 1x1 conv;
* the last BN of every residual branch starts at zero, so each block starts as the identity.

Layer groups (for discriminative learning rates / gradual unfreezing), as the benchmark splits
it: ``[stem]``, ``[max-pool, stage1..stage4]``, ``[head]``.

xresnet1d101 with 12 leads and 71 classes has 1,880,775 parameters (body 1,804,672, head 76,103).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

from .base import EcgClassifier, init_weights_
from .heads import ClassifierHead, ConcatPool1d
from .layers import ConvBnAct


class XResBlock(nn.Module):
    """Residual block; ``expansion == 1`` is the basic block (two k-convs), 4 the bottleneck."""

    def __init__(self, in_channels: int, width: int, expansion: int, stride: int, kernel_size: int):
        super().__init__()
        out_channels = width * expansion
        if expansion == 1:
            convs = [
                ConvBnAct(in_channels, width, kernel_size, stride=stride),
                ConvBnAct(width, out_channels, kernel_size, act=False),
            ]
        else:
            convs = [
                ConvBnAct(in_channels, width, 1),
                ConvBnAct(width, width, kernel_size, stride=stride),
                ConvBnAct(width, out_channels, 1, act=False),
            ]
        self.convs = nn.Sequential(*convs)
        shortcut: list[nn.Module] = []
        if stride != 1:
            shortcut.append(nn.AvgPool1d(2, ceil_mode=True))
        if in_channels != out_channels:
            shortcut.append(ConvBnAct(in_channels, out_channels, 1, act=False))
        self.shortcut = nn.Sequential(*shortcut)  # empty Sequential = identity
        self.act = nn.ReLU(inplace=True)

    @property
    def last_bn(self) -> nn.BatchNorm1d:
        """The BN that closes the residual branch; zero-initialised so the block starts as identity."""
        last = self.convs[-1]
        assert isinstance(last, ConvBnAct)  # every branch of __init__ ends with one
        return last.bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + self.shortcut(x))


def _stage(in_channels: int, width: int, expansion: int, n_blocks: int, stride: int, kernel_size: int) -> nn.Sequential:
    blocks = [
        XResBlock(in_channels if i == 0 else width * expansion, width, expansion, stride if i == 0 else 1, kernel_size)
        for i in range(n_blocks)
    ]
    return nn.Sequential(*blocks)


def xresnet1d(
    expansion: int,
    layers: Sequence[int],
    in_channels: int = 12,
    n_classes: int = 71,
    kernel_size: int = 5,
    kernel_size_stem: int = 5,
    stem_widths: Sequence[int] = (32, 32, 64),
    width: int = 64,
    head_hidden: Sequence[int] = (128,),
    head_dropout: float = 0.5,
    zero_init_last_bn: bool = True,
) -> EcgClassifier:
    """Build an XResNet1d with ``len(layers)`` stages of ``layers[i]`` blocks each.

    ``zero_init_last_bn=False`` gives every BN weight 1, which is what the benchmark's
    training script actually trained from (it re-initialises the model with ``weight_init``
    after construction, overwriting the zero init of the model definition).
    """
    widths = [in_channels, *stem_widths]
    stem = nn.Sequential(
        *[
            ConvBnAct(widths[i], widths[i + 1], kernel_size_stem, stride=2 if i == 0 else 1)
            for i in range(len(stem_widths))
        ]
    )
    parts: list[tuple[str, nn.Module]] = [("stem", stem), ("pool", nn.MaxPool1d(kernel_size=3, stride=2, padding=1))]
    channels = stem_widths[-1]
    for i, n_blocks in enumerate(layers):
        parts.append((f"stage{i + 1}", _stage(channels, width, expansion, n_blocks, 1 if i == 0 else 2, kernel_size)))
        channels = width * expansion
    body = nn.Sequential(OrderedDict(parts))
    head = ClassifierHead(ConcatPool1d(), 2 * channels, n_classes, hidden=head_hidden, dropout=head_dropout)
    groups = [("stem",), tuple(name for name, _ in parts[1:])]
    model = EcgClassifier(body, head, groups)
    init_weights_(model)
    if zero_init_last_bn:
        for m in model.modules():
            if isinstance(m, XResBlock):
                nn.init.zeros_(m.last_bn.weight)
    return model
