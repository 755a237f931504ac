"""Reading a run's ``metrics.jsonl`` history (light: no torch), for the run's own outputs and for
the model card and the CLI, which describe a run after the fact."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def kept_epoch(history: Sequence[dict[str, Any]], keep: str) -> int | None:
    """The epoch whose weights a run with this ``metrics.jsonl`` history kept: the last, or for
    ``best-val`` the first validated epoch of the best validation macro AUC (as
    :class:`~ecg_transfer.training.loop.BestEpoch` chooses; the last when no epoch had an AUC). None for an empty history."""
    if not history:
        return None
    scored = [r for r in history if r.get("val_macro_auc") is not None]
    if keep != "best-val" or not scored:
        return int(history[-1]["epoch"])
    return int(max(scored, key=lambda r: (r["val_macro_auc"], -r["epoch"]))["epoch"])


__all__ = ["kept_epoch"]
