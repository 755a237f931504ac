"""One mean and one standard deviation for the whole input, fitted on the training records only.

The PTB-XL benchmark standardises with a single scalar mean/std computed over every sample of
every lead of the training folds (scikit-learn's ``StandardScaler`` on the flattened array, i.e.
population std, ``ddof=0``). A global scalar keeps the relative amplitudes of the leads -- which
carry diagnostic meaning (e.g. low QRS voltage, hypertrophy criteria) -- where per-lead scaling
would erase them. Fitting on anything but the training split leaks validation/test statistics.

The fit streams over the records in chunks (Chan et al.'s pairwise mean/variance merge in
float64), so a memory-mapped cache is never loaded whole. Records count at their own lengths
(:class:`~ecg_transfer.ragged.RaggedSignals`); zero padding of a padded array is left out when
per-record valid lengths are given.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np

from ..ragged import RaggedSignals, as_signals, chunk_by_size


class GlobalStandardScaler:
    """``(x - mean) / std`` with scalar ``mean``/``std``; scikit-learn-like ``fit``/``transform``."""

    def __init__(self, mean: float | None = None, std: float | None = None, n_samples: int = 0):
        self.mean_ = None if mean is None else float(mean)
        self.std_ = None if std is None else float(std)
        self.n_samples_ = int(n_samples)

    @property
    def fitted(self) -> bool:
        return self.mean_ is not None and self.std_ is not None

    def fit(
        self,
        X: np.ndarray | RaggedSignals,
        indices: Sequence[int] | np.ndarray | None = None,
        lengths: Sequence[int] | np.ndarray | None = None,
        chunk_records: int = 256,
        chunk_values: int = 1 << 24,
    ) -> "GlobalStandardScaler":
        """Fit on the records ``indices`` of ``X`` (all when None).

        ``X`` is a :class:`~ecg_transfer.ragged.RaggedSignals` or an ``(N, C, T)`` array (memmap
        welcome); ``lengths`` (one per row) restricts each record to its first ``lengths[i]``
        samples, so padding does not pull the mean towards 0. Records are read ``chunk_records``
        at a time, fewer where that would exceed ``chunk_values`` samples (long records).
        """
        if not isinstance(X, RaggedSignals) and np.ndim(X) != 3:
            raise ValueError(f"expected X of shape (N, C, T), got {np.shape(X)}")
        sig = as_signals(X, lengths)
        idx = np.arange(len(sig)) if indices is None else np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            raise ValueError("cannot fit the scaler on zero training records")
        # Sorted reads are sequential on a memmap; the statistics do not depend on order.
        idx = np.sort(idx)
        count, mean, m2 = 0, 0.0, 0.0
        for part in chunk_by_size(sig.lengths[idx] * sig.n_leads, chunk_values, chunk_records):
            rows = idx[part]
            values = np.concatenate([sig.record(int(r)).ravel() for r in rows]).astype(np.float64)
            n_b = values.size
            if n_b == 0:
                continue
            mean_b = float(values.mean())
            m2_b = float(np.square(values - mean_b).sum())
            delta = mean_b - mean
            total = count + n_b
            mean += delta * n_b / total
            m2 += m2_b + delta * delta * count * n_b / total
            count = total
        if count == 0:
            raise ValueError("the training records hold no valid samples to fit the scaler on")
        if not math.isfinite(mean) or not math.isfinite(m2):
            raise ValueError("training signals contain NaN or infinite values; cannot standardise")
        std = math.sqrt(m2 / count)
        if std == 0.0:
            # scikit-learn's convention: a constant input is centred, not divided by zero.
            warnings.warn("training signals are constant; the scaler uses std = 1", RuntimeWarning, stacklevel=2)
            std = 1.0
        self.mean_, self.std_, self.n_samples_ = mean, std, count
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Standardise a batch (any shape) to float32."""
        if not self.fitted:
            raise RuntimeError("GlobalStandardScaler.transform called before fit")
        x = np.asarray(x, dtype=np.float32)
        return (x - np.float32(self.mean_)) / np.float32(self.std_)

    def inverse_transform(self, x: np.ndarray) -> np.ndarray:
        if not self.fitted:
            raise RuntimeError("GlobalStandardScaler.inverse_transform called before fit")
        return np.asarray(x, dtype=np.float32) * np.float32(self.std_) + np.float32(self.mean_)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "global-standard", "mean": self.mean_, "std": self.std_, "n_samples": self.n_samples_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GlobalStandardScaler":
        if d.get("type", "global-standard") != "global-standard":
            raise ValueError(f"not a GlobalStandardScaler dict: type={d.get('type')!r}")
        return cls(d["mean"], d["std"], d.get("n_samples", 0))

    # fitted state changes: unhashable, like scikit-learn's estimators (equality compares the fit)
    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GlobalStandardScaler) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"GlobalStandardScaler(mean={self.mean_!r}, std={self.std_!r}, n_samples={self.n_samples_})"
