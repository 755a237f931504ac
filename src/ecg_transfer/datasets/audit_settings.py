"""What the leakage audit counts as a duplicate, in a module of its own: ``ecg-transfer --help``
shows these defaults, and importing :mod:`.audit` for them cost 1.9 s of scipy.signal."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DatasetError


@dataclass(frozen=True)
class AuditSettings:
    """What counts as a duplicate (the measured defaults: see the docstring of :mod:`.audit`)."""

    rate: float = 50.0
    window: tuple[float, float] = (0.5, 5.5)
    tolerance: float = 0.1
    relative: float = 0.3
    flat_mv: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        lo, hi = self.window
        if not (self.rate > 0 and 0 <= lo < hi and self.tolerance > 0 and 0 < self.relative < 2):
            raise DatasetError(f"audit settings out of range: {self}")

    @property
    def min_seconds(self) -> float:
        """A record must cover the window and as much again as its start offset (filter edges)."""
        return self.window[1] + self.window[0]

    @property
    def samples(self) -> tuple[int, int]:
        return int(round(self.window[0] * self.rate)), int(round(self.window[1] * self.rate))
