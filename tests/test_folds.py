"""Seeded multilabel-stratified folds and the duplicate-signal leakage guard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecg_transfer.datasets.folds import duplicate_signal_groups, signal_hash, stratified_folds

G12EC = Path(__file__).resolve().parents[2] / "shared" / "data" / "g12ec"


def synthetic_labels(n=600, c=10, seed=123, frac_unlabelled=0.0):
    rng = np.random.default_rng(seed)
    y = rng.random((n, c)) < np.linspace(0.02, 0.4, c)
    y[rng.random(n) < frac_unlabelled] = False
    return y


def imbalance(y: np.ndarray, folds: np.ndarray, k: int) -> float:
    """Mean over labels of the standard deviation of the per-fold positive count."""
    counts = np.stack([y[folds == f].sum(axis=0) for f in range(1, k + 1)])
    return float(counts.std(axis=0).mean())


def random_equal_split(n: int, k: int, seed: int) -> np.ndarray:
    folds = np.empty(n, dtype=int)
    for i, idx in enumerate(np.array_split(np.random.default_rng(seed).permutation(n), k)):
        folds[idx] = i + 1
    return folds


def test_fold_numbers_and_sizes():
    y = synthetic_labels()
    f = stratified_folds(y, n_folds=10, seed=0)
    assert f.shape == (600,) and np.issubdtype(f.dtype, np.integer)
    assert set(np.unique(f)) == set(range(1, 11))
    sizes = np.bincount(f)[1:]
    assert sizes.max() - sizes.min() <= 0.2 * sizes.mean()


def test_deterministic_for_a_seed_and_different_across_seeds():
    y = synthetic_labels()
    a = stratified_folds(y, 10, seed=0)
    np.testing.assert_array_equal(a, stratified_folds(y.copy(), 10, seed=0))
    assert not np.array_equal(a, stratified_folds(y, 10, seed=1))


def test_label_balance_beats_random_split():
    y = synthetic_labels()
    strat = imbalance(y, stratified_folds(y, 10, seed=0), 10)
    rand = np.mean([imbalance(y, random_equal_split(len(y), 10, s), 10) for s in range(20)])
    assert strat < 0.5 * rand, (strat, rand)


def test_records_without_labels_are_spread_evenly():
    y = synthetic_labels(n=300, c=4, frac_unlabelled=0.3)
    none = ~y.any(axis=1)
    f = stratified_folds(y, 10, seed=3)
    per_fold = np.bincount(f[none], minlength=11)[1:]
    assert per_fold.max() - per_fold.min() <= 1, per_fold


def test_no_label_columns_at_all():
    f = stratified_folds(np.zeros((25, 0)), 5, seed=0)
    np.testing.assert_array_equal(np.bincount(f)[1:], [5] * 5)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n", [10, 11, 13])
def test_every_fold_non_empty_when_enough_records(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.random((n, 6)) < 0.3
    y[0] = True  # one record with every label
    f = stratified_folds(y, 10, seed=seed)
    assert set(np.unique(f)) == set(range(1, 11))


def test_empty_fold_from_the_splitter_is_refilled(monkeypatch):
    """Iterative stratification does not promise non-empty folds; the safety net must hold."""
    import ecg_transfer.datasets.folds as folds_mod

    class AllInFirstFold:
        def __init__(self, n_splits, **kw):
            self.n_splits = n_splits

        def split(self, x, y):
            n = len(y)
            yield np.arange(0), np.arange(n)
            for _ in range(self.n_splits - 1):
                yield np.arange(n), np.arange(0)

    monkeypatch.setattr(folds_mod, "MultilabelStratifiedKFold", AllInFirstFold)
    groups = np.repeat(np.arange(6), 2)
    f = folds_mod.stratified_folds(np.ones((12, 2)), 5, groups=groups)
    assert set(np.unique(f)) == set(range(1, 6))
    assert all(len(set(f[groups == g])) == 1 for g in range(6))


def test_groups_stay_together_and_are_balanced():
    rng = np.random.default_rng(7)
    n_groups = 200
    sizes = rng.integers(1, 4, size=n_groups)
    groups = np.repeat(np.arange(n_groups) * 7 + 3, sizes)  # arbitrary ids, not 0..G-1
    y = rng.random((len(groups), 5)) < np.array([0.05, 0.1, 0.2, 0.3, 0.4])
    f = stratified_folds(y, 5, seed=0, groups=groups)
    for g in np.unique(groups):
        assert len(set(f[groups == g])) == 1
    assert set(np.unique(f)) == set(range(1, 6))
    # balance at group level (OR of members) against random group assignment
    uniq, inv = np.unique(groups, return_inverse=True)
    gy = np.zeros((len(uniq), 5), bool)
    np.logical_or.at(gy, inv, y)
    gf = np.array([f[inv == i][0] for i in range(len(uniq))])
    strat = imbalance(gy, gf, 5)
    rand = np.mean([imbalance(gy, random_equal_split(len(uniq), 5, s), 5) for s in range(20)])
    assert strat < 0.5 * rand, (strat, rand)


def test_bad_inputs():
    with pytest.raises(ValueError, match="cannot make 10 folds from 9 records"):
        stratified_folds(np.ones((9, 2)), 10)
    with pytest.raises(ValueError, match="groups"):
        stratified_folds(np.ones((20, 2)), 10, groups=np.array([0, 1] * 5 + [2] * 5 + [3] * 5))  # 4 groups
    with pytest.raises(ValueError, match="binary"):
        stratified_folds(np.full((20, 2), 2), 5)
    with pytest.raises(ValueError, match="one entry per record"):
        stratified_folds(np.ones((20, 2)), 5, groups=np.arange(19))
    with pytest.raises(ValueError, match="2-D"):
        stratified_folds(np.ones(20), 5)
    with pytest.raises(ValueError, match="n_folds"):
        stratified_folds(np.ones((20, 2)), 1)


def test_signal_hash():
    x = np.random.default_rng(0).normal(size=(500, 12))
    assert signal_hash(x) == signal_hash(x.copy())
    assert signal_hash(x) == signal_hash(np.asfortranarray(x))  # layout does not matter
    y = x.copy()
    y[250, 7] += 1e-12
    assert signal_hash(x) != signal_hash(y)
    assert signal_hash(x) != signal_hash(x.reshape(12, 500))  # same bytes, other shape
    assert signal_hash(x) != signal_hash(x.astype(np.float32))
    assert signal_hash(np.array([0.0, 1.0])) == signal_hash(np.array([-0.0, 1.0]))


def test_duplicate_signal_groups():
    np.testing.assert_array_equal(duplicate_signal_groups(["a", "b", "a", "c"]), [0, 1, 0, 2])
    # patients join records transitively with the hashes; missing patient ids join nothing
    np.testing.assert_array_equal(
        duplicate_signal_groups(["a", "b", "a", "c", "d", "e"], [None, "p", None, "p", "q", float("nan")]),
        [0, 1, 0, 1, 2, 3],
    )
    np.testing.assert_array_equal(duplicate_signal_groups(["x", "y", "z"], ["p", "q", "p"]), [0, 1, 0])
    # chain: 0~1 by hash, 1~2 by patient, 2~3 by hash
    np.testing.assert_array_equal(duplicate_signal_groups(["a", "a", "b", "b"], [None, "p", "p", None]), [0, 0, 0, 0])


@pytest.mark.realdata
@pytest.mark.skipif(not G12EC.is_dir(), reason=f"real G12EC sample not found at {G12EC}")
def test_real_g12ec_duplicate_signals_share_a_fold():
    from ecg_transfer.datasets.cinc import CinCDataset

    ds = CinCDataset(G12EC, unknown_codes=lambda codes: [])
    df = ds.index()
    ids = df.record_id.tolist()
    hashes = [signal_hash(sig) for _, sig in ds.iter_signals(ids)]
    groups = duplicate_signal_groups(hashes)
    dup = {ids[i] for i in range(len(ids)) if (groups == groups[i]).sum() > 1}
    assert dup == {"E07509", "E07510"}
    codes = sorted({c for dx in df.dx for c in dx})
    y = np.array([[c in dx for c in codes] for dx in df.dx])
    f = stratified_folds(y, 10, seed=0, groups=groups)
    assert f[ids.index("E07509")] == f[ids.index("E07510")]
    assert set(np.unique(f)) == set(range(1, 11))
