"""The shape every model in this package shares: a body that extracts features, a head that classifies.

Keeping the two as separate submodules (``model.body``, ``model.head``) is what makes transfer
learning simple: a new task swaps the head, gradual unfreezing walks the body's layer groups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import nn

from .layers import init_weights_ as init_weights_  # the models' builders import it from here

if TYPE_CHECKING:
    from .heads import ClassifierHead


class EcgClassifier(nn.Module):
    """``head(body(x))`` for inputs ``(batch, leads, time)`` and logits ``(batch, n_classes)``.

    ``body`` is an ``nn.Sequential`` with named children; ``body_groups`` lists, input to output,
    which of those children form one layer group for discriminative learning rates. The head is
    always one more group, the last. ``spec`` records how the model was built (registry name and
    keyword arguments) so a checkpoint can be rebuilt from it; the weights live elsewhere.
    """

    def __init__(
        self,
        body: nn.Sequential,
        head: ClassifierHead,
        body_groups: Sequence[Sequence[str]],
        spec: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.body = body
        self.head = head
        names = [n for group in body_groups for n in group]
        children = [n for n, _ in body.named_children()]
        if sorted(names) != sorted(children) or len(set(names)) != len(names):
            raise ValueError(f"body_groups {body_groups} must name each body child once: {children}")
        self.body_groups: tuple[tuple[str, ...], ...] = tuple(tuple(g) for g in body_groups)
        self.spec: dict[str, Any] = dict(spec or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def group_modules(self) -> list[list[nn.Module]]:
        """Layer groups as modules, input to head; the head is the last group."""
        groups = [[self.body.get_submodule(n) for n in names] for names in self.body_groups]
        return groups + [[self.head]]
