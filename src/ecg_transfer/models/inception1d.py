"""Inception1d of the PTB-XL benchmark (after InceptionTime, Fawaz et al. 2020).

Each block runs a 1x1 bottleneck (32 channels) into three parallel convolutions with long kernels
(39, 19, 9 samples: from ``kernel_size=40`` -> 40, 20, 10, made odd) plus a max-pool -> 1x1
branch, concatenated to 4 x 32 = 128 channels, then BN-ReLU. Long kernels see a whole QRS complex
or more at 100 Hz without downsampling; the time axis is never strided. Every three blocks a
residual shortcut (1x1 conv-BN from the stage input) is added, then ReLU.

Layer groups: ``[stage1]`` (blocks 1-3 + shortcut), ``[stage2, ...]``, ``[head]``. The benchmark
lists only the second half and the head, so its fine-tuning never updated the first three
blocks; here every parameter belongs to a group.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

from .base import EcgClassifier, init_weights_
from .heads import ClassifierHead, ConcatPool1d


def _conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv1d:
    return nn.Conv1d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2, bias=False)


class InceptionBlock1d(nn.Module):
    def __init__(self, in_channels: int, n_filters: int, kernel_sizes: Sequence[int], bottleneck: int = 32):
        super().__init__()
        self.bottleneck = _conv(in_channels, bottleneck, 1) if bottleneck > 0 else nn.Identity()
        branch_in = bottleneck if bottleneck > 0 else in_channels
        self.convs = nn.ModuleList([_conv(branch_in, n_filters, k) for k in kernel_sizes])
        self.pool_branch = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1), _conv(in_channels, n_filters, 1))
        self.bn = nn.BatchNorm1d(n_filters * (len(kernel_sizes) + 1))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bottleneck(x)
        out = torch.cat([c(b) for c in self.convs] + [self.pool_branch(x)], dim=1)
        return self.act(self.bn(out))


class InceptionStage(nn.Module):
    """Three inception blocks and, optionally, the residual shortcut around them."""

    def __init__(
        self,
        in_channels: int,
        n_filters: int,
        kernel_sizes: Sequence[int],
        bottleneck: int,
        n_blocks: int = 3,
        use_residual: bool = True,
    ):
        super().__init__()
        out_channels = n_filters * (len(kernel_sizes) + 1)
        self.blocks = nn.Sequential(
            *[
                InceptionBlock1d(in_channels if i == 0 else out_channels, n_filters, kernel_sizes, bottleneck)
                for i in range(n_blocks)
            ]
        )
        self.shortcut = (
            nn.Sequential(_conv(in_channels, out_channels, 1), nn.BatchNorm1d(out_channels)) if use_residual else None
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(x)
        if self.shortcut is not None:
            out = self.act(out + self.shortcut(x))
        return out


def inception1d(
    in_channels: int = 12,
    n_classes: int = 71,
    kernel_size: int = 40,
    depth: int = 6,
    bottleneck: int = 32,
    n_filters: int = 32,
    use_residual: bool = True,
    head_hidden: Sequence[int] = (128,),
    head_dropout: float = 0.5,
) -> EcgClassifier:
    """Build the benchmark's Inception1d (its training passed ``kernel_size = 8 * 5 = 40``)."""
    if kernel_size < 40:
        raise ValueError(f"inception1d needs kernel_size >= 40 (the benchmark's), got {kernel_size}")
    if depth % 3 != 0:
        raise ValueError(f"inception1d depth must be a multiple of 3, got {depth}")
    kernel_sizes = [k - 1 if k % 2 == 0 else k for k in (kernel_size, kernel_size // 2, kernel_size // 4)]
    out_channels = n_filters * (len(kernel_sizes) + 1)
    stages = [
        (
            f"stage{i + 1}",
            InceptionStage(
                in_channels if i == 0 else out_channels, n_filters, kernel_sizes, bottleneck, 3, use_residual
            ),
        )
        for i in range(depth // 3)
    ]
    body = nn.Sequential(OrderedDict(stages))
    head = ClassifierHead(ConcatPool1d(), 2 * out_channels, n_classes, hidden=head_hidden, dropout=head_dropout)
    names = [n for n, _ in stages]
    groups = [tuple(names[:1]), tuple(names[1:])] if len(names) > 1 else [tuple(names)]
    model = EcgClassifier(body, head, groups)
    return init_weights_(model)
