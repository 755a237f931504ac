"""Small building blocks shared by the models: a convolution block, and the benchmark's initialisation."""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

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


_M = TypeVar("_M", bound=nn.Module)


def init_weights_(module: _M) -> _M:
    """Initialise like the benchmark's training script does before training from scratch.

    The PTB-XL benchmark calls ``model.apply(weight_init)`` on every model: Kaiming-normal
    (fan-in, ReLU gain) weights and zero biases for convolutions and linear layers, BN weight 1 and
    bias 0. Recurrent layers keep PyTorch's default initialisation, as in the benchmark.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module
