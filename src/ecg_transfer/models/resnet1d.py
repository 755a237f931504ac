"""resnet1d_wang of the PTB-XL benchmark: the shallow ResNet of Wang et al. (2017) for time series.

Stem conv(k7, stride 1)-BN-ReLU to 128 channels, no pooling, then three basic residual blocks
(conv k5 - BN - ReLU - conv k3 - BN, + shortcut, ReLU), all 128 wide, strides 1, 2, 2. A
downsampling block's shortcut is a strided 1x1 conv-BN (the torchvision ResNet way).

Layer groups: ``[stem, stage1..stage3]``, ``[head]`` -- the benchmark's split point for this model
is the head itself, so the body is one group.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

from .base import EcgClassifier, init_weights_
from .heads import ClassifierHead, ConcatPool1d
from .layers import ConvBnAct


class BasicBlock1d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, kernel_sizes: Sequence[int] = (5, 3)):
        super().__init__()
        k1, k2 = kernel_sizes
        self.convs = nn.Sequential(
            ConvBnAct(in_channels, out_channels, k1, stride=stride),
            ConvBnAct(out_channels, out_channels, k2, act=False),
        )
        self.shortcut = (
            nn.Sequential(
                nn.Conv1d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm1d(out_channels)
            )
            if stride != 1 or in_channels != out_channels
            else nn.Identity()
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + self.shortcut(x))


def resnet1d_wang(
    in_channels: int = 12,
    n_classes: int = 71,
    kernel_sizes: Sequence[int] = (5, 3),
    kernel_size_stem: int = 7,
    width: int = 128,
    layers: Sequence[int] = (1, 1, 1),
    head_hidden: Sequence[int] = (128,),
    head_dropout: float = 0.5,
) -> EcgClassifier:
    parts: list[tuple[str, nn.Module]] = [("stem", ConvBnAct(in_channels, width, kernel_size_stem))]
    for i, n_blocks in enumerate(layers):
        stride = 1 if i == 0 else 2
        # Only a stage's first block gets the configured kernels and stride; later blocks use
        # 3/3, as in the benchmark (irrelevant for the default one block per stage).
        blocks = [BasicBlock1d(width, width, stride, kernel_sizes)] + [
            BasicBlock1d(width, width, 1, (3, 3)) for _ in range(n_blocks - 1)
        ]
        parts.append((f"stage{i + 1}", nn.Sequential(*blocks)))
    body = nn.Sequential(OrderedDict(parts))
    head = ClassifierHead(ConcatPool1d(), 2 * width, n_classes, hidden=head_hidden, dropout=head_dropout)
    model = EcgClassifier(body, head, [tuple(n for n, _ in parts)])
    return init_weights_(model)
