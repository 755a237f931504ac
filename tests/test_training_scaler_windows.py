"""Global scaler and crop/window helpers of the training engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecg_transfer.training import GlobalStandardScaler, train_run
from ecg_transfer.training.modelfile import load_model_file
from ecg_transfer.training.windows import (
    ShortRecordError,
    aggregate_windows,
    extract_crops,
    random_crop_starts,
    samples,
    sliding_windows,
    window_starts,
)
from training_synth import LABELS, make_data, tiny_config


# ----- scaler -----------------------------------------------------------------------------


def test_scaler_equals_numpy_over_train_rows_and_leads(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(0.4, 2.0, size=(23, 12, 50)).astype(np.float32)
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=X.shape)
    mm[:] = X
    mm.flush()
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    train = np.array([20, 3, 5, 7, 11, 13, 0])
    expected = X[train].astype(np.float64)
    for chunk in (1, 3, 1000):
        s = GlobalStandardScaler().fit(mm, train, chunk_records=chunk)
        assert s.mean_ == pytest.approx(expected.mean(), rel=1e-12, abs=1e-12)
        assert s.std_ == pytest.approx(expected.std(), rel=1e-12)
        assert s.n_samples_ == expected.size
    z = s.transform(X[train])
    assert z.dtype == np.float32
    assert z.astype(np.float64).mean() == pytest.approx(0.0, abs=1e-5)
    assert z.astype(np.float64).std() == pytest.approx(1.0, abs=1e-5)
    assert GlobalStandardScaler.from_dict(s.to_dict()) == s


def test_scaler_ignores_padding_beyond_lengths():
    rng = np.random.default_rng(4)
    X = np.zeros((4, 2, 10), dtype=np.float32)
    lengths = np.array([10, 6, 3, 8])
    for i, n in enumerate(lengths):
        X[i, :, :n] = rng.normal(5.0, 1.0, size=(2, n))
    valid = np.concatenate([X[i, :, :n].ravel() for i, n in enumerate(lengths)]).astype(np.float64)
    s = GlobalStandardScaler().fit(X, lengths=lengths, chunk_records=3)
    assert s.mean_ == pytest.approx(valid.mean(), rel=1e-12)
    assert s.std_ == pytest.approx(valid.std(), rel=1e-12)


def test_scaler_refuses_bad_input():
    with pytest.raises(RuntimeError):
        GlobalStandardScaler().transform(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        GlobalStandardScaler().fit(np.full((2, 1, 4), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="zero training records"):
        GlobalStandardScaler().fit(np.zeros((2, 1, 4)), indices=[])


def test_run_scaler_depends_on_training_rows_only(tmp_path):
    X, Y, ids, splits = make_data()
    cfg = tiny_config(epochs=1)
    r1 = train_run(cfg, X, Y, ids, splits, LABELS, tmp_path / "a", progress=False)
    X2 = X.copy()
    held_out = np.concatenate([splits["val"], splits["test"]])
    X2[held_out] = X2[held_out] * 7.0 + 3.0
    r2 = train_run(cfg, X2, Y, ids, splits, LABELS, tmp_path / "b", progress=False)
    s1, s2 = load_model_file(r1.model_path).scaler, load_model_file(r2.model_path).scaler
    assert s1 == s2
    expected = X[splits["train"]].astype(np.float64)
    assert s1.mean_ == pytest.approx(expected.mean(), rel=1e-10)
    assert s1.std_ == pytest.approx(expected.std(), rel=1e-10)


# ----- crops and windows ------------------------------------------------------------------


def test_samples_requires_whole_numbers():
    assert samples(2.5, 100) == 250
    assert samples(2.5, 500) == 1250
    with pytest.raises(ValueError):
        samples(2.5, 101)


def test_random_crops_in_range_vary_by_epoch_and_replay():
    lengths = np.array([300, 300, 260, 250, 1000] * 20)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    a = random_crop_starts(lengths, 250, g)
    b = random_crop_starts(lengths, 250, g)
    assert ((a >= 0) & (a + 250 <= lengths)).all()
    assert ((b >= 0) & (b + 250 <= lengths)).all()
    assert (a[lengths == 250] == 0).all()
    assert not np.array_equal(a, b)  # a new crop every epoch
    g.set_state(state)
    assert np.array_equal(random_crop_starts(lengths, 250, g), a)  # restorable
    # every start of a 300-sample record is reachable, including the last one (50)
    many = random_crop_starts(np.full(5000, 300), 250, torch.Generator().manual_seed(1))
    assert many.min() == 0 and many.max() == 50 and len(np.unique(many)) == 51


def test_short_records_error_or_pad():
    with pytest.raises(ShortRecordError, match="shorter than one crop"):
        random_crop_starts(np.array([300, 100]), 250, torch.Generator())
    starts = random_crop_starts(np.array([300, 100]), 250, torch.Generator(), short="pad")
    assert starts[1] == 0
    X = np.ones((2, 2, 300), dtype=np.float32)
    crops = extract_crops(X, np.array([1]), np.array([0]), 250, lengths=np.array([300, 100]))
    assert (crops[0, :, :100] == 1).all() and (crops[0, :, 100:] == 0).all()
    with pytest.raises(ShortRecordError):
        window_starts(100, 250, 125)
    assert window_starts(100, 250, 125, short="pad").tolist() == [0]


def test_extract_crops_reads_the_right_samples():
    X = np.arange(3 * 2 * 20, dtype=np.float32).reshape(3, 2, 20)
    crops = extract_crops(X, np.array([2, 0]), np.array([5, 12]), 8)
    assert np.array_equal(crops[0], X[2, :, 5:13])
    assert np.array_equal(crops[1], X[0, :, 12:20])


def test_window_starts_benchmark_convention():
    # 10 s at 100 Hz, 2.5 s windows at 1.25 s stride: 0, 125, ..., 750 -> 7 windows
    assert window_starts(1000, 250, 125).tolist() == [0, 125, 250, 375, 500, 625, 750]
    assert window_starts(5000, 1250, 625).size == 7
    assert window_starts(300, 250, 125).tolist() == [0]  # the 50-sample tail is not covered...
    assert window_starts(300, 250, 125, cover_end=True).tolist() == [0, 50]  # ...unless asked
    assert window_starts(250, 250, 125).tolist() == [0]


def test_sliding_windows_and_max_aggregation_by_hand():
    X = np.arange(2 * 1 * 10, dtype=np.float32).reshape(2, 1, 10)
    windows, counts = sliding_windows(X, np.array([1, 0]), crop_len=4, stride=3, lengths=np.array([10, 7]))
    # record 1 (length 7): starts 0, 3; record 0 (length 10): starts 0, 3, 6
    assert counts.tolist() == [2, 3]
    assert np.array_equal(windows[0, 0], [10, 11, 12, 13])
    assert np.array_equal(windows[1, 0], [13, 14, 15, 16])
    assert np.array_equal(windows[4, 0], [6, 7, 8, 9])
    probs = np.array(
        [
            [0.1, 0.9],
            [0.4, 0.2],  # record 1
            [0.3, 0.1],
            [0.2, 0.5],
            [0.8, 0.4],
        ],  # record 0
        dtype=np.float32,
    )
    assert np.allclose(aggregate_windows(probs, counts, "max"), [[0.4, 0.9], [0.8, 0.5]])
    assert np.allclose(aggregate_windows(probs, counts, "mean"), [[0.25, 0.55], [1.3 / 3, 1.0 / 3]])
    with pytest.raises(ValueError):
        aggregate_windows(probs, [2, 2], "max")
    with pytest.raises(ValueError):
        aggregate_windows(probs, counts, "median")
