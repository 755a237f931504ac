"""Whether a saved run and a new request are the same run: which settings differ.

A run's settings are compared key by key, except those that name a place on disk (its data
folder, the run it was pre-trained from): those are compared as the place, so a relative and an
absolute spelling, a folder reached through a symbolic link, or a run folder and the ``model.pt``
in it are one setting. Resuming an interrupted run and finishing a trained one use the same
comparison: a run started from one working directory can be continued from another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .modelfile import MODEL_FILE

#: Settings that name a place on disk: compared as the place, not its spelling.
PLACE_KEYS = ("task.root", "finetune.pretrained_run")


def diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The dotted keys at which two nested dicts hold different values (a key missing on one side
    differs from any value on the other)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def same_place(a: str | None, b: str | None) -> bool:
    """Whether two spellings name one folder: relative or absolute, through a symbolic link or not,
    or a run folder and the ``model.pt`` in it (a run stores its pre-trained run as the resolved
    model.pt)."""

    def folder(path: str) -> Path:
        p = Path(path).resolve()
        return p.parent if p.name == MODEL_FILE else p

    return a is not None and b is not None and folder(a) == folder(b)


def value_at(tree: Any, dotted: str) -> Any:
    """The value at a dotted key of nested dicts, or None where the path is missing."""
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def _names_a_place(key: str) -> bool:
    return any(key == p or key.endswith("." + p) for p in PLACE_KEYS)


def differing_settings(saved: Any, asked: Any) -> list[str]:
    """``diff_keys(saved, asked)`` less the place settings (at any depth: a checkpoint's meta nests
    the config) whose two values name the same place."""
    return [
        key
        for key in diff_keys(saved, asked)
        if not (_names_a_place(key) and same_place(value_at(saved, key), value_at(asked, key)))
    ]
