"""Small building blocks shared by the convolutional models."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


class ConvBnAct(nn.Sequential):
    """Conv1d ("same" padding for odd kernels, no bias) -> BatchNorm -> optional ReLU.

    The bias is dropped because the BatchNorm right after it has its own shift. Padding is
    ``(k - 1) // 2`` as in the benchmark, so an even kernel shortens the sequence by one sample.
    """

    conv: nn.Conv1d
    bn: nn.BatchNorm1d

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, act: bool = True):
        layers: list[tuple[str, nn.Module]] = [
            (
                "conv",
                nn.Conv1d(
                    in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, bias=False
                ),
            ),
            ("bn", nn.BatchNorm1d(out_channels)),
        ]
        if act:
            layers.append(("act", nn.ReLU(inplace=True)))
        super().__init__(OrderedDict(layers))
