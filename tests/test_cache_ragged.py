"""Ragged collections: the cache stores every record at its own length, and training reads it.

Fixtures are CinC-format records at 257 / 500 / 1000 Hz and 3-40 s written here (scipy writes the
.mat files), plus in-memory adapters whose headers claim absurd sizes.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ecg_transfer.datasets import cache as cache_mod
from ecg_transfer.datasets.cache import load_or_build
from ecg_transfer.datasets.cinc import CinCDataset
from ecg_transfer.ragged import RaggedSignals, as_signals, chunk_by_size
from ecg_transfer.signal import resample
from ecg_transfer.training import GlobalStandardScaler, train_run
from ecg_transfer.training.predict import predict_records
from ecg_transfer.training.windows import sliding_windows

from training_synth import LABELS, make_data, tiny_config
from wfdb_fixtures import CINC_CODES as CODES, write_cinc_record


def write_cinc(folder: Path, name: str, fs: int, seconds: float, dx: str, seed: int) -> np.ndarray:
    """One CinC-format record at ``fs`` Hz; returns its ADC values (leads, samples)."""
    val = np.random.default_rng(seed).integers(-800, 800, size=(12, int(round(fs * seconds)))).astype(np.int16)
    write_cinc_record(folder, name, val, fs=fs, dx=dx)
    return val


MIXED = [(500, 6.0), (500, 14.0), (1000, 12.0), (257, 40.0), (500, 10.0), (1000, 3.0), (257, 9.0), (500, 30.0)]


@pytest.fixture()
def mixed_tree(tmp_path: Path) -> Path:
    root = tmp_path / "mixed"
    for i, (fs, sec) in enumerate(MIXED * 3):
        write_cinc(root / f"g{fs}", f"R{i:04d}", fs, sec, CODES[i % 4], seed=i)
    return root


def test_store_holds_each_record_at_its_own_length(mixed_tree: Path, tmp_path: Path) -> None:
    ds = CinCDataset(mixed_tree)
    c = load_or_build(ds, fs=500, cache_dir=tmp_path / "c", progress=False, workers=2)
    own = 0
    for rid, row in zip(c.table["record_id"], c.table["row"]):
        x = ds.read(rid).T.astype(np.float32)
        fs_in = float(ds.index().set_index("record_id").loc[rid, "fs"])
        expected = resample(x, fs_in, 500.0, axis=-1).astype(np.float32) if fs_in != 500 else x
        got = c.signals.record(int(row))
        assert got.shape == expected.shape and np.allclose(got, expected, atol=1e-5), rid
        own += expected.size
    on_disk = (c.path / cache_mod.SIGNALS).stat().st_size
    assert on_disk == own * 4  # exactly the records' own samples: <= 1.2x asked, 1.0x delivered
    assert isinstance(c.signals, RaggedSignals) and len(c.signals) == len(MIXED) * 3
    assert sorted(set(c.signals.lengths.tolist())) == sorted({int(round(500 * s)) for _, s in MIXED})


class ClaimingAdapter:
    """Headers that lie about size: the claims must never size an allocation."""

    name = "claims"

    def __init__(self, claims: list[tuple[float, int]], true_samples: int = 700):
        self.claims, self.true_samples = claims, true_samples

    def index(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "record_id": [f"r{i}" for i in range(len(self.claims))],
                "fs": [float(fs) for fs, _ in self.claims],
                "n_samples": [n for _, n in self.claims],
                "n_leads": 12,
            }
        )

    def read(self, rid: str) -> np.ndarray:
        i = int(rid[1:])
        return np.random.default_rng(i).normal(size=(self.true_samples, 12))

    def iter_signals(self, ids):
        for rid in ids:
            yield rid, self.read(rid)

    def fingerprint(self) -> dict:
        return {"claims": [list(c) for c in self.claims]}


def test_a_header_claim_never_sizes_an_allocation(tmp_path: Path) -> None:
    # 2^40 samples claimed (the old cache mapped n x 12 x 2^40 floats), and a record at "1 Hz"
    adapter = ClaimingAdapter([(500.0, 2**40), (500.0, 5000), (500.0, 2**40 - 1), (500.0, 5000)])
    c = load_or_build(adapter, fs=500, cache_dir=tmp_path / "c", progress=False, workers=1)
    assert (c.path / cache_mod.SIGNALS).stat().st_size == 4 * 12 * 700 * 4
    assert c.signals.lengths.tolist() == [700] * 4


def test_build_chunks_are_bounded_whatever_the_claims() -> None:
    index = pd.DataFrame(
        {
            "fs": [1000.0] * 3000 + [257.0] * 75,
            "n_samples": [30_000] * 3000 + [462_600] * 75,
            "n_leads": 12,
            "record_id": [str(i) for i in range(3075)],
        }
    )
    settings = {"fs": 500.0, "seconds": None, "n_leads": 12}
    for workers in (1, 2, 16):
        budget = int(np.clip(cache_mod.MEMORY_BUDGET // (4 * workers), 4 << 20, 64 << 20))
        claimed = (index["n_samples"] * 500.0 / index["fs"] * 12 * 4).to_numpy()
        for part in cache_mod._plan(index, settings, workers):
            assert part.stop - part.start <= cache_mod.MAX_CHUNK_RECORDS
            assert claimed[part].sum() <= budget or part.stop - part.start == 1
        assert budget * workers <= cache_mod.MEMORY_BUDGET


def test_chunk_by_size_groups_consecutive_items() -> None:
    assert chunk_by_size([3, 3, 3, 10, 1, 1], 6) == [slice(0, 2), slice(2, 3), slice(3, 4), slice(4, 6)]
    assert chunk_by_size([1] * 5, 100, max_items=2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert chunk_by_size([], 5) == []


# -- the RaggedSignals type ---------------------------------------------------------------------------
def test_ragged_views_first_centre_and_padded_arrays() -> None:
    recs = [np.arange(24, dtype=np.float32).reshape(2, 12) + 100 * i for i in range(3)]
    recs[1] = recs[1][:, :5]
    r = RaggedSignals.from_records(recs, leads=["I", "II"])
    assert len(r) == 3 and r.lengths.tolist() == [12, 5, 12] and r.shape == (3, 2, 12) and r.leads == ("I", "II")
    assert np.array_equal(r.record(1), recs[1])
    first, centre = r.limit(4, "first"), r.limit(4, "centre")
    assert np.array_equal(first.record(0), recs[0][:, :4]) and np.array_equal(centre.record(0), recs[0][:, 4:8])
    assert np.array_equal(centre.record(1), recs[1][:, 0:4])  # (5 - 4) // 2 = 0: the start rounded down
    assert np.shares_memory(centre.record(2), r.data)  # views, not copies
    X = np.stack([np.pad(x, ((0, 0), (0, 12 - x.shape[1]))) for x in recs])
    p = as_signals(X, lengths=[12, 5, 12])
    for i in range(3):
        assert np.array_equal(p.record(i), r.record(i))
    with pytest.raises(ValueError, match="lengths"):
        as_signals(X, lengths=[13, 5, 12])


def test_scaler_on_ragged_equals_numpy_over_the_records() -> None:
    rng = np.random.default_rng(0)
    recs = [rng.normal(0.3, 1.7, size=(3, n)).astype(np.float32) for n in (50, 7, 300, 1, 90)]
    r = RaggedSignals.from_records(recs)
    values = np.concatenate([recs[i].ravel() for i in (0, 2, 3)]).astype(np.float64)
    for chunk_values in (1, 100, 1 << 24):
        s = GlobalStandardScaler().fit(r, [3, 0, 2], chunk_values=chunk_values, chunk_records=2)
        assert s.mean_ == pytest.approx(values.mean(), rel=1e-12) and s.std_ == pytest.approx(values.std(), rel=1e-12)
        assert s.n_samples_ == values.size


# -- the training engine reads it ---------------------------------------------------------------------
def test_train_run_gives_the_same_run_for_a_padded_array_and_ragged_records(tmp_path: Path) -> None:
    X, Y, ids, splits = make_data(n=32, t=400)
    lengths = np.random.default_rng(1).integers(260, 401, size=len(X))
    ragged = RaggedSignals.from_records([X[i, :, :n] for i, n in enumerate(lengths)])
    cfg = tiny_config(epochs=2)
    a = train_run(cfg, X, Y, ids, splits, LABELS, tmp_path / "a", lengths=lengths, progress=False)
    b = train_run(cfg, ragged, Y, ids, splits, LABELS, tmp_path / "b", progress=False)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    for name in ("val", "test"):
        assert (tmp_path / "a" / f"predictions_{name}.csv").read_text() == (
            tmp_path / "b" / f"predictions_{name}.csv"
        ).read_text()


def test_evaluation_of_a_30_minute_record_holds_one_batch_of_windows() -> None:
    fs, crop, stride, batch = 500, 1250, 625, 32
    long = np.random.default_rng(0).normal(size=(12, 30 * 60 * fs)).astype(np.float32)  # 43 MB
    short = np.random.default_rng(1).normal(size=(12, 10 * fs)).astype(np.float32)
    sig = RaggedSignals.from_records([short, long, short])
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv1d(12, 4, 9, stride=8), torch.nn.AdaptiveMaxPool1d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3)
    )
    scaler = GlobalStandardScaler(0.0, 1.0)
    tracemalloc.start()
    probs, _ = predict_records(model, sig, [0, 1, 2], scaler=scaler, crop_len=crop, stride=stride, batch_size=batch)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    window_bytes = 12 * crop * 4
    assert peak < 8 * batch * window_bytes  # the old path cut all 1,439 windows at once (86 MB)
    windows, counts = sliding_windows(sig, np.array([1]), crop, stride)
    assert counts.tolist() == [1439]
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.from_numpy(windows))).max(dim=0).values.numpy()
    assert np.allclose(probs[1], expected, atol=1e-6)


# -- data summary reads headers only ------------------------------------------------------------------
def test_data_summary_reads_headers_unless_signals_are_asked_for(
    mixed_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from ecg_transfer.cli import main

    cache_dir = tmp_path / "c"
    assert (
        main(
            [
                "data",
                "summary",
                "--dataset",
                "cinc",
                "--root",
                str(mixed_tree),
                "--cache-dir",
                str(cache_dir),
                "--json",
                "--no-progress",
            ]
        )
        == 0
    )
    s = json.loads(capsys.readouterr().out)
    assert not cache_dir.exists() and s["cache"] is None  # no signal was read
    assert s["records_indexed"] == len(MIXED) * 3 and s["sampling_rates_hz"] == [257.0, 500.0, 1000.0]
    assert max(s["seconds"]) == 40.0
    assert (
        main(
            [
                "data",
                "summary",
                "--dataset",
                "cinc",
                "--root",
                str(mixed_tree),
                "--cache-dir",
                str(cache_dir),
                "--json",
                "--no-progress",
                "--signals",
            ]
        )
        == 0
    )
    s = json.loads(capsys.readouterr().out)
    assert cache_dir.exists() and s["cache"]["fs"] == 257.0 and s["records"] == len(MIXED) * 3
    assert s["signals"]["records_read"] == len(MIXED) * 3 and s["signals"]["std_mv"] > 0


# -- [task] long_records / max_seconds -----------------------------------------------------------------
def test_long_records_are_views_of_one_cache_and_train(mixed_tree: Path, tmp_path: Path) -> None:
    from ecg_transfer.datasets.task import load_task
    from ecg_transfer.errors import ConfigError

    base = {"dataset": "cinc", "root": str(mixed_tree), "labels": "protocol:cinc2020", "cache_dir": str(tmp_path / "c")}
    whole = load_task(base, 100.0, progress=False)
    first = load_task({**base, "long_records": "first", "max_seconds": 5}, 100.0, progress=False)
    centre = load_task({**base, "long_records": "centre", "max_seconds": 5}, 100.0, progress=False)
    assert isinstance(whole.X, RaggedSignals) and int(whole.X.lengths.max()) == 4000  # 40 s at 100 Hz
    assert first.cache.path == centre.cache.path == whole.cache.path  # one cache, three views
    assert first.X.lengths.tolist() == np.minimum(whole.X.lengths, 500).tolist() == centre.X.lengths.tolist()
    for i in range(len(whole.X)):
        n, m = int(whole.X.lengths[i]), int(centre.X.lengths[i])
        assert np.array_equal(first.X.record(i), whole.X.record(i)[:, :m])
        assert np.array_equal(centre.X.record(i), whole.X.record(i)[:, (n - m) // 2 : (n - m) // 2 + m])
    with pytest.raises(ConfigError, match="max_seconds"):
        load_task({**base, "long_records": "first"}, 100.0, progress=False)
    with pytest.raises(ConfigError, match="long_records"):
        load_task({**base, "max_seconds": 5}, 100.0, progress=False)
    result = train_run(
        tiny_config(epochs=1),
        centre.X,
        centre.Y,
        centre.record_ids,
        centre.splits,
        centre.label_names,
        tmp_path / "run",
        lengths=centre.lengths,
        progress=False,
    )
    assert result.predictions["test"].exists()
