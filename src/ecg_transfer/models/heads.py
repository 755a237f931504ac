"""Classification heads of the PTB-XL benchmark (fastai's ``create_head1d``), shared by all models.

With the benchmark's settings (``hidden=(128,)``, ``dropout=0.5``) a head is::

    pool -> flatten -> BN(F) -> dropout 0.25 -> linear F->128 -> ReLU
                    -> BN(128) -> dropout 0.5 -> linear 128->n_classes

Earlier dropouts get half the final rate, as fastai does. The final linear layer is named ``out``
so that a new task can replace just that layer, the way the benchmark fine-tunes.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, Sequence

import torch
from torch import nn

from .layers import init_weights_


class ConcatPool1d(nn.Module):
    """Global max and average pooling side by side, ``(B, C, T) -> (B, 2C, 1)`` (max first).

    Max pooling keeps short, localised findings (a single ectopic beat); average pooling keeps
    what holds across the whole window. The benchmark uses both.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.amax(dim=-1, keepdim=True), x.mean(dim=-1, keepdim=True)], dim=1)


class RnnConcatPool(nn.Module):
    """Average, max and final state of a recurrent output ``(B, D*H, T) -> (B, 3*D*H)``.

    For a bidirectional layer the "final state" is the forward direction at the last step and the
    backward direction at the first step, i.e. each direction after it has read the whole window.
    The benchmark's code slices with the full channel count and so takes both directions at the
    last step (the backward one has then read a single sample); ``as_benchmark=True`` reproduces
    that. The feature width is the same either way.
    """

    def __init__(self, bidirectional: bool, as_benchmark: bool = False):
        super().__init__()
        self.bidirectional = bidirectional
        self.as_benchmark = as_benchmark

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bidirectional and not self.as_benchmark:
            h = x.shape[1] // 2
            last = torch.cat([x[:, :h, -1], x[:, h:, 0]], dim=1)
        else:
            last = x[:, :, -1]
        return torch.cat([x.mean(dim=-1), x.amax(dim=-1), last], dim=1)

    def extra_repr(self) -> str:
        return f"bidirectional={self.bidirectional}, as_benchmark={self.as_benchmark}"


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "elu":
        return nn.ELU(inplace=True)
    raise ValueError(f"head activation must be 'relu' or 'elu', not {name!r}")


class ClassifierHead(nn.Sequential):
    """Pool, then BN-dropout-linear blocks down to ``n_classes`` logits."""

    pool: nn.Module  # the named children that transfer learning and the channels-last twin replace
    out: nn.Linear

    def __init__(
        self,
        pool: nn.Module,
        in_features: int,
        n_classes: int,
        hidden: Sequence[int] = (128,),
        dropout: float = 0.5,
        bn: bool = True,
        act: str = "relu",
    ):
        widths = [in_features, *hidden, n_classes]
        n_blocks = len(widths) - 1
        drops = [dropout / 2] * (n_blocks - 1) + [dropout]
        layers: list[tuple[str, nn.Module]] = [("pool", pool), ("flatten", nn.Flatten())]
        for i, (ni, no, p) in enumerate(zip(widths[:-1], widths[1:], drops)):
            last = i == n_blocks - 1
            if bn:
                layers.append((f"bn{i}", nn.BatchNorm1d(ni)))
            if p > 0:
                layers.append((f"drop{i}", nn.Dropout(p)))
            layers.append(("out" if last else f"fc{i}", nn.Linear(ni, no)))
            if not last:
                layers.append((f"act{i}", _activation(act)))
        super().__init__(OrderedDict(layers))
        self.config: dict[str, Any] = dict(
            in_features=in_features, hidden=tuple(hidden), dropout=dropout, bn=bn, act=act
        )

    @property
    def n_classes(self) -> int:
        return self.out.out_features

    def replace_output(self, n_classes: int) -> None:
        """Swap only the final linear layer for a freshly initialised one (the benchmark's way)."""
        new = nn.Linear(self.out.in_features, n_classes)
        nn.init.kaiming_normal_(new.weight)
        nn.init.zeros_(new.bias)
        self.out = new.to(self.out.weight.device, self.out.weight.dtype)

    def fresh(self, n_classes: int) -> "ClassifierHead":
        """A new head of the same shape and pooling, every layer newly initialised."""
        head = ClassifierHead(copy.deepcopy(self.pool), n_classes=n_classes, **self.config)
        init_weights_(head)
        return head.to(self.out.weight.device, self.out.weight.dtype)
