"""lstm and lstm_bidir of the PTB-XL benchmark: two stacked LSTM layers of 256 units on raw leads.

The LSTM reads the 12 leads sample by sample; the head pools its outputs over time by average,
max and final state (3 x 256 features, 6 x 256 when bidirectional) before the usual
BN-dropout-linear blocks. The benchmark trains these at lr 1e-3 with gradient clipping at 0.25
(see ``registry.TRAINING_HINTS``).

Layer groups, as the benchmark splits it: ``[rnn]``, ``[head]``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

from .base import EcgClassifier, init_weights_
from .heads import ClassifierHead, RnnConcatPool


class RnnEncoder(nn.Module):
    """``(B, C, T) -> (B, D*H, T)``: a recurrent layer behind the channels-first convention."""

    def __init__(self, in_channels: int, hidden: int, num_layers: int, bidirectional: bool, cell: str = "lstm"):
        super().__init__()
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn_cls(
            input_size=in_channels,
            hidden_size=hidden,
            num_layers=num_layers,
            bidirectional=bidirectional,
            batch_first=True,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x.transpose(1, 2))
        return out.transpose(1, 2)


def rnn1d(
    in_channels: int = 12,
    n_classes: int = 71,
    bidirectional: bool = False,
    hidden: int = 256,
    num_layers: int = 2,
    cell: str = "lstm",
    benchmark_pooling: bool = False,
    head_hidden: Sequence[int] = (128,),
    head_dropout: float = 0.5,
) -> EcgClassifier:
    """Stacked LSTM (or GRU) classifier; ``benchmark_pooling`` see :class:`heads.RnnConcatPool`."""
    if cell not in ("lstm", "gru"):
        raise ValueError(f"cell must be 'lstm' or 'gru', not {cell!r}")
    body = nn.Sequential(OrderedDict(rnn=RnnEncoder(in_channels, hidden, num_layers, bidirectional, cell)))
    n_dir = 2 if bidirectional else 1
    head = ClassifierHead(
        RnnConcatPool(bidirectional, benchmark_pooling),
        3 * n_dir * hidden,
        n_classes,
        hidden=head_hidden,
        dropout=head_dropout,
    )
    init_weights_(head)  # the recurrent layer keeps PyTorch's init, as in the benchmark
    return EcgClassifier(body, head, [("rnn",)])


def lstm(**kwargs) -> EcgClassifier:
    return rnn1d(bidirectional=False, **kwargs)


def lstm_bidir(**kwargs) -> EcgClassifier:
    return rnn1d(bidirectional=True, **kwargs)
