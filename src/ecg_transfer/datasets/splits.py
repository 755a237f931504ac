"""Folds for the records in a cache: PTB-XL's own ``strat_fold``, or seeded folds for CinC sets.

CinC-format sets ship no folds, so they are made here once, deterministically, from the cached
signals and a label protocol: iterative stratification on the protocol's classes, with records
that hold the very same signal (G12EC's E07509/E07510) kept in one fold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .cache import CachedSignals
from .folds import duplicate_signal_groups, signal_hash, stratified_folds


def record_folds(cached: CachedSignals, *, protocol: str = "cinc2020", n_folds: int = 10, seed: int = 0) -> pd.Series:
    """Fold number (1..n_folds) per record id for the good records of ``cached``."""
    table = cached.table
    if "fold" in table.columns:
        return pd.Series(table["fold"].to_numpy(dtype=int), index=table["record_id"], name="fold")
    from ..labels import get_protocol

    y = get_protocol(protocol).encode_table(table)
    hashes = [signal_hash(np.asarray(cached.signals[r])) for r in table["row"]]
    groups = duplicate_signal_groups(hashes)
    folds = stratified_folds(y, n_folds=n_folds, seed=seed, groups=groups)
    return pd.Series(folds, index=table["record_id"], name="fold")
