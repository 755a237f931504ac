"""fcn_wang of the PTB-XL benchmark: the fully convolutional network of Wang et al. (2017).

Three conv-BN-ReLU layers, 128 (k8) -> 256 (k5) -> 128 (k3), stride 1, no pooling; the benchmark
pads the even kernel with ``(8 - 1) // 2 = 3``, so the sequence loses one sample.

Layer groups, as the benchmark splits it: ``[conv1, conv2]``, ``[conv3]``, ``[head]``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from torch import nn

from .base import EcgClassifier, init_weights_
from .heads import ClassifierHead, ConcatPool1d
from .layers import ConvBnAct


def fcn_wang(
    in_channels: int = 12,
    n_classes: int = 71,
    filters: Sequence[int] = (128, 256, 128),
    kernel_sizes: Sequence[int] = (8, 5, 3),
    head_hidden: Sequence[int] = (128,),
    head_dropout: float = 0.5,
) -> EcgClassifier:
    if len(filters) != len(kernel_sizes) or len(filters) < 2:
        raise ValueError("fcn_wang needs as many kernel_sizes as filters, at least two")
    widths = [in_channels, *filters]
    parts = [(f"conv{i + 1}", ConvBnAct(widths[i], widths[i + 1], k)) for i, k in enumerate(kernel_sizes)]
    body = nn.Sequential(OrderedDict(parts))
    head = ClassifierHead(ConcatPool1d(), 2 * filters[-1], n_classes, hidden=head_hidden, dropout=head_dropout)
    names = [n for n, _ in parts]
    model = EcgClassifier(body, head, [tuple(names[:-1]), (names[-1],)])
    return init_weights_(model)
