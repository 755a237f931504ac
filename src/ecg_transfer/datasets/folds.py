"""Seeded multilabel-stratified folds for sets that ship none (G12EC), with a leakage guard.

Iterative stratification (Sechidis et al. 2011, the ``iterstrat`` package) keeps every label's
prevalence close to equal across folds, which matters for rare G12EC classes with a few dozen
positives. Records that must not be split across folds (one patient's records, or records that
hold the very same signal, such as G12EC's E07509/E07510) are given one group id and stratified as
one unit, so a test fold never contains a copy of a training record.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold


def signal_hash(signal: np.ndarray) -> str:
    """sha256 (hex) of an array's dtype, shape and values: equal signals <=> equal hashes.

    Hash the same representation for every record (e.g. the float64 mV array from ``read``);
    -0.0 and 0.0 hash alike.
    """
    a = np.ascontiguousarray(signal)
    if a.dtype.kind == "f":
        a = a + a.dtype.type(0)  # -0.0 -> 0.0
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}|{a.shape}|".encode("ascii"))
    h.update(a.tobytes())
    return h.hexdigest()


def duplicate_signal_groups(signal_hashes: Sequence[str], patient_ids: Sequence | None = None) -> np.ndarray:
    """Group ids (0..G-1, in order of first appearance) joining records that share a signal hash
    or (when given) a patient id, transitively: pass the result as ``groups`` to
    :func:`stratified_folds`. Missing patient ids (None/NaN) join nothing.
    """
    n = len(signal_hashes)
    if patient_ids is not None and len(patient_ids) != n:
        raise ValueError(f"{len(patient_ids)} patient ids for {n} signal hashes")
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join_equal(keys: Sequence) -> None:
        first: dict = {}
        for i, key in enumerate(keys):
            if key is None or (isinstance(key, float) and np.isnan(key)):
                continue
            if key in first:
                a, b = find(first[key]), find(i)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                first[key] = i

    join_equal(list(signal_hashes))
    if patient_ids is not None:
        join_equal(list(patient_ids))
    roots = [find(i) for i in range(n)]
    _, first_idx, inverse = np.unique(roots, return_index=True, return_inverse=True)
    # Renumber by first appearance so ids do not depend on union-find internals.
    order = np.argsort(np.argsort(first_idx))
    return order[inverse].astype(np.int64)


def stratified_folds(
    labels: np.ndarray, n_folds: int = 10, seed: int = 0, groups: np.ndarray | None = None
) -> np.ndarray:
    """Fold number (1..n_folds) per record, label-balanced by iterative stratification.

    ``labels`` is a binary (N, C) matrix. Records without any label are stratified as a class of
    their own ("no label"), so they spread evenly too. With ``groups``, each group is one unit:
    its label row is the OR of its members' rows, and all its records land in the same fold
    (balance is then over groups, not records). Deterministic for a given input and ``seed``.
    Every fold is non-empty when there are at least ``n_folds`` units.
    """
    y = np.asarray(labels)
    if y.ndim != 2:
        raise ValueError(f"labels must be a 2-D (records, classes) matrix, got shape {y.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be binary (0/1 or bool)")
    y = y.astype(bool)
    n = y.shape[0]
    if int(n_folds) != n_folds or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds}")
    n_folds = int(n_folds)

    if groups is None:
        unit_of = np.arange(n)
        unit_y = y
    else:
        g = np.asarray(groups)
        if g.shape != (n,):
            raise ValueError(f"groups must have one entry per record ({n}), got shape {g.shape}")
        _, unit_of = np.unique(g, return_inverse=True)
        unit_y = np.zeros((unit_of.max() + 1 if n else 0, y.shape[1]), dtype=bool)
        np.logical_or.at(unit_y, unit_of, y)

    n_units = unit_y.shape[0]
    if n_units < n_folds:
        what = "groups" if groups is not None else "records"
        raise ValueError(f"cannot make {n_folds} folds from {n_units} {what}")

    # Extra column: "has no label", so unlabelled units are stratified like a class. A zero column
    # pads to >= 2 columns, which iterstrat needs to recognise a multilabel target.
    extra = [~unit_y.any(axis=1, keepdims=True)]
    if unit_y.shape[1] + 1 < 2:
        extra.append(np.zeros((n_units, 1), dtype=bool))
    target = np.hstack([unit_y, *extra]).astype(int)

    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    unit_fold = np.empty(n_units, dtype=np.int64)
    for fold, (_, test_idx) in enumerate(splitter.split(np.zeros((n_units, 1)), target)):
        unit_fold[test_idx] = fold

    # Iterative stratification does not promise non-empty folds; refill any empty one from the
    # largest fold (lowest-index unit first: deterministic).
    counts = np.bincount(unit_fold, minlength=n_folds)
    for empty in np.flatnonzero(counts == 0):
        donor = int(np.argmax(counts))
        unit = int(np.flatnonzero(unit_fold == donor)[0])
        unit_fold[unit] = empty
        counts[donor] -= 1
        counts[empty] += 1

    return unit_fold[unit_of] + 1
