"""A run's reliability diagrams (``ecg-transfer evaluate``): one PNG grid per calibration state and bin strategy.

Drawn with matplotlib's Agg backend (no display needed, same output on every machine) and written
atomically, so an interrupted evaluation never leaves a truncated PNG next to a good metrics.json.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..atomic import atomic_path  # noqa: E402
from .calibration import ReliabilityBins  # noqa: E402


def _draw(ax, bins: ReliabilityBins, title: str) -> None:
    """Curve, diagonal, and the bin counts as bars along the bottom (a quarter of the height is
    the largest count, which is printed; every count is in reliability.json)."""
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
    x = [m for m in bins.mean_pred if m is not None]
    y = [f for m, f in zip(bins.mean_pred, bins.frac_pos) if m is not None]
    ax.plot(x, y, marker="o", ms=2.5, lw=1.0, color="C0")
    lo, hi = np.asarray(bins.lower), np.asarray(bins.upper)
    width = np.maximum(hi - lo, 0.01)
    top = max(max(bins.count, default=0), 1)
    ax.bar(lo, 0.25 * np.asarray(bins.count) / top, width=width, align="edge", color="C1", alpha=0.35, lw=0)
    ax.text(0.99, 0.26, f"max n={top}", fontsize=4.5, ha="right", va="bottom", color="C1")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=6, pad=2)
    ax.tick_params(labelsize=5, length=2, pad=1)


def reliability_grid(
    bins_per_label: Sequence[ReliabilityBins],
    labels: Sequence[str],
    path: str | Path,
    *,
    title: str = "",
    notes: Sequence[str] | None = None,
) -> Path:
    """One reliability diagram per label in a grid: observed frequency against mean prediction per
    bin, the diagonal, and each bin's record count (bars, largest count printed). ``notes`` (per
    label) are appended to the subplot titles, e.g. the number of positives."""
    n = len(labels)
    if n != len(bins_per_label):
        raise ValueError("one set of bins per label")
    cols = max(1, min(8, math.ceil(math.sqrt(n))))
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 2.1 * rows + 0.5), squeeze=False)
    try:
        for i, ax in enumerate(axes.ravel()):
            if i >= n:
                ax.axis("off")
                continue
            label = str(labels[i]) + (f"\n{notes[i]}" if notes else "")
            _draw(ax, bins_per_label[i], label)
        if title:
            fig.suptitle(title, fontsize=9)
        fig.supxlabel("mean predicted probability", fontsize=7)
        fig.supylabel("observed frequency", fontsize=7)
        # leave a fixed 0.5 inch band above the grid for the title, whatever the number of rows
        top = 1 - (0.5 if title else 0.15) / fig.get_figheight()
        fig.subplots_adjust(left=0.07, right=0.99, bottom=0.07, top=top, wspace=0.3, hspace=0.6)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)
    return Path(path)
