"""PTB-XL adapter, the fast WFDB reader and the signal cache: fixtures first, then the real data."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb
from scipy.signal import resample_poly

from ecg_transfer.datasets import cache as cache_mod
from ecg_transfer.datasets.cache import load_or_build
from ecg_transfer.datasets.ptbxl import PTBXL
from ecg_transfer.datasets.wfdb_fast import read_block
from ecg_transfer.errors import DatasetError, RecordError

from wfdb_fixtures import make_ptbxl_tree, write_record


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    return make_ptbxl_tree(tmp_path / "ptbxl", n_records=12, rates=(100,))


def _rec(tree: Path, i: int, fs: int = 100) -> Path:
    sub, suf = ("records100", "lr") if fs == 100 else ("records500", "hr")
    return tree / sub / "00000" / f"{i:05d}_{suf}"


# -- reading ---------------------------------------------------------------------------------------
def test_read_equals_wfdb_rdsamp_bit_for_bit(tree: Path) -> None:
    ds = PTBXL(tree)
    for rid in ds.index()["record_id"]:
        ours = ds.read(rid)
        theirs, _ = wfdb.rdsamp(str(_rec(tree, int(rid))))
        assert ours.dtype == theirs.dtype == np.float64
        assert np.array_equal(ours, theirs)


def test_read_block_equals_rdsamp_cast_to_float32(tree: Path) -> None:
    paths = [_rec(tree, i) for i in range(1, 13)]
    block, problems = read_block(paths, 1000, 12, 100.0)
    assert problems == []
    for i, p in enumerate(paths):
        assert np.array_equal(block[i], wfdb.rdsamp(str(p))[0].T.astype(np.float32))


def test_index_columns_and_folds(tree: Path) -> None:
    idx = PTBXL(tree).index()
    assert list(idx["record_id"][:3]) == ["00001", "00002", "00003"]
    assert set(idx["fold"]) == set(range(1, 11))
    assert {"patient_id", "age", "sex", "scp_codes", "fs", "n_samples", "n_leads"} <= set(idx.columns)
    assert idx["sex"].iloc[0] == "Female" and idx["sex"].iloc[1] == "Male"  # PTB-XL: 0 male, 1 female


def test_missing_index_files_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="ptbxl_database.csv"):
        PTBXL(tmp_path)


# -- bad input ---------------------------------------------------------------------------------------
def test_truncated_dat_is_named(tree: Path) -> None:
    dat = _rec(tree, 3).with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:-100])
    with pytest.raises(RecordError, match=r"00003_lr\.dat.*truncated"):
        PTBXL(tree).read("00003")


def test_header_sample_count_disagrees(tree: Path) -> None:
    hea = _rec(tree, 4).with_suffix(".hea")
    lines = hea.read_text().splitlines()
    lines[0] = lines[0].replace(" 1000", " 900", 1)
    hea.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordError, match=r"00004_lr.*900 samples"):
        PTBXL(tree).read("00004")


def test_header_lead_count_disagrees(tree: Path) -> None:
    hea = _rec(tree, 5).with_suffix(".hea")
    lines = hea.read_text().splitlines()
    first = lines[0].split()
    first[1] = "11"
    hea.write_text("\n".join([" ".join(first)] + lines[1:12]) + "\n")
    with pytest.raises(RecordError, match=r"00005_lr.*11 leads"):
        PTBXL(tree).read("00005")


def test_header_not_text(tree: Path) -> None:
    _rec(tree, 6).with_suffix(".hea").write_bytes(b"\x00\xff\xfe binary \x89PNG")
    with pytest.raises(RecordError, match=r"00006_lr\.hea.*not valid text"):
        PTBXL(tree).read("00006")


def test_corrupt_samples_fail_checksum(tree: Path) -> None:
    dat = _rec(tree, 7).with_suffix(".dat")
    raw = bytearray(dat.read_bytes())
    raw[5000] ^= 0x55
    dat.write_bytes(bytes(raw))
    with pytest.raises(RecordError, match="checksum"):
        PTBXL(tree).read("00007")


def test_nan_marker_is_an_error(tree: Path) -> None:
    sig = np.zeros((1000, 12))
    write_record(_rec(tree, 8).parent, "00008_lr", sig, 100)
    dat = _rec(tree, 8).with_suffix(".dat")
    raw = np.fromfile(dat, dtype="<i2")
    raw[100] = -32768
    raw.tofile(dat)
    hea = _rec(tree, 8).with_suffix(".hea")  # keep the checksum consistent so only the NaN is wrong
    lines = hea.read_text().splitlines()
    f = lines[1 + 100 % 12].split()
    f[6] = str((int(f[6]) - 32768) % 65536)
    lines[1 + 100 % 12] = " ".join(f)
    hea.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordError, match="missing samples"):
        PTBXL(tree).read("00008")
    _, problems = read_block([_rec(tree, 8)], 1000, 12, 100.0)
    assert problems and "missing samples" in problems[0][1]


def test_bad_records_skipped_and_listed_or_strict(tree: Path, cache_dir: Path) -> None:
    dat = _rec(tree, 2).with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:1000])
    cached = load_or_build(PTBXL(tree), cache_dir=cache_dir, progress=False)
    assert len(cached.table) == 11 and "00002" not in set(cached.table["record_id"])
    assert [p.record for p in cached.problems] == ["00002"]
    assert "truncated" in cached.problems[0].problem
    assert not cached.signals[1].any()  # the bad slot is zero, and no table row points at it
    with pytest.raises(RecordError, match="00002"):
        load_or_build(PTBXL(tree), cache_dir=cache_dir / "strict", progress=False, strict=True)


# -- 500 Hz with records missing -----------------------------------------------------------------------
def test_missing_500hz_records_counted_and_optional(tmp_path: Path) -> None:
    tree = make_ptbxl_tree(tmp_path / "ptbxl", n_records=6, rates=(100, 500))
    for i in (2, 5):
        for ext in (".hea", ".dat"):
            _rec(tree, i, 500).with_suffix(ext).unlink()
    with pytest.raises(DatasetError, match=r"2 of 6 .* missing at 500 Hz.*4 are present.*allow-missing"):
        PTBXL(tree, fs=500).index()
    ds = PTBXL(tree, fs=500, allow_missing=True)
    assert len(ds.index()) == 4 and ds.missing == ["00002", "00005"]


# -- the cache -------------------------------------------------------------------------------------------
def test_cache_equals_reads_and_is_reused(tree: Path, cache_dir: Path) -> None:
    ds = PTBXL(tree)
    c1 = load_or_build(ds, cache_dir=cache_dir, progress=False, workers=2)
    assert c1.signals.shape == (12, 12, 1000) and c1.signals.dtype == np.float32
    for rid, row in zip(c1.table["record_id"], c1.table["row"]):
        assert np.array_equal(c1.signals[row], ds.read(rid).T.astype(np.float32))
    assert (c1.table["n_valid"] == 1000).all()
    stamp = (c1.path / cache_mod.SIGNALS).stat().st_mtime_ns
    c2 = load_or_build(PTBXL(tree), cache_dir=cache_dir, progress=False)
    assert c2.path == c1.path and (c2.path / cache_mod.SIGNALS).stat().st_mtime_ns == stamp
    assert c1.built and not c2.built


def test_cache_rebuilds_when_inputs_or_settings_change(tree: Path, cache_dir: Path) -> None:
    c1 = load_or_build(PTBXL(tree), cache_dir=cache_dir, progress=False)
    c50 = load_or_build(PTBXL(tree), fs=50, cache_dir=cache_dir, progress=False)
    assert c50.path != c1.path and c50.signals.shape == (12, 12, 500)
    # change one record's samples (a valid file with other content): the key must change
    new = np.full((1000, 12), 0.25)
    write_record(_rec(tree, 1).parent, "00001_lr", new, 100)
    os.utime(_rec(tree, 1).with_suffix(".dat"), ns=(time.time_ns(), time.time_ns() + 10**9))
    c3 = load_or_build(PTBXL(tree), cache_dir=cache_dir, progress=False)
    assert c3.path != c1.path
    assert np.allclose(c3.signals[0], 0.25)


def test_resampling_is_polyphase(tree: Path, cache_dir: Path) -> None:
    ds = PTBXL(tree)
    c = load_or_build(ds, fs=50, cache_dir=cache_dir, progress=False)
    x = ds.read("00003").T.astype(np.float32)
    expected = resample_poly(x, 1, 2, axis=-1).astype(np.float32)
    assert np.allclose(c.signals[2], expected, atol=1e-6)
    assert c.meta["settings"]["fs"] == 50.0


def test_killed_build_leaves_nothing_trusted(tree: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = cache_mod._work
    calls = {"n": 0}

    def dying(job):
        calls["n"] += 1
        raise KeyboardInterrupt("killed mid-build")

    monkeypatch.setattr(cache_mod, "_work", dying)
    with pytest.raises(KeyboardInterrupt):
        load_or_build(PTBXL(tree), cache_dir=cache_dir, progress=False, workers=1)
    assert calls["n"] == 1
    assert not [p for p in cache_dir.iterdir() if (p / "meta.json").exists()]
    # a stale half-built folder from a process that no longer exists is cleaned up, never opened
    stale = cache_dir / ".ptbxl-100hz-10s-deadbeef.building-999999999"
    (stale).mkdir()
    (stale / "signals.npy").write_bytes(b"garbage")
    monkeypatch.setattr(cache_mod, "_work", real)
    c = load_or_build(PTBXL(tree), cache_dir=cache_dir, progress=False)
    assert not stale.exists() and len(c.table) == 12


def test_cache_meta_records_problems_and_settings(tree: Path, cache_dir: Path) -> None:
    c = load_or_build(PTBXL(tree), cache_dir=cache_dir, progress=False)
    meta = json.loads((c.path / "meta.json").read_text())
    assert meta["settings"]["fs"] == 100.0 and meta["settings"]["seconds"] is None
    assert meta["samples_per_lead"] == 12 * 1000 and meta["store"]["bytes"] == 12 * 12 * 1000 * 4
    assert meta["records"] == 12 and meta["problems"] == []


# -- real data ----------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_real_ptbxl_index(ptbxl_meta_root: Path) -> None:
    db = pd.read_csv(ptbxl_meta_root / "ptbxl_database.csv")
    assert len(db) == 21837
    assert sorted(db["strat_fold"].unique()) == list(range(1, 11))


@pytest.mark.realdata
def test_real_ptbxl_100_records_equal_rdsamp(ptbxl_root: Path, cache_dir: Path) -> None:
    ds = PTBXL(ptbxl_root)
    idx = ds.index()
    assert len(idx) == 21837 and sorted(idx["fold"].unique()) == list(range(1, 11))
    rng = np.random.default_rng(0)
    picks = sorted(rng.choice(len(idx), 100, replace=False))
    paths = [ptbxl_root / idx["path"].iloc[i] for i in picks]
    block, problems = read_block(paths, 1000, 12, 100.0)
    assert problems == []
    for k, i in enumerate(picks):
        theirs, _ = wfdb.rdsamp(str(paths[k]))
        ours = ds.read(idx["record_id"].iloc[i])
        assert np.array_equal(ours, theirs), idx["record_id"].iloc[i]
        assert np.array_equal(block[k], theirs.T.astype(np.float32))


@pytest.mark.realdata
def test_real_ptbxl_500hz_missing_count(ptbxl_root: Path) -> None:
    with pytest.raises(DatasetError, match=r"21306 of 21837 .*531 are present"):
        PTBXL(ptbxl_root, fs=500).index()
    assert len(PTBXL(ptbxl_root, fs=500, allow_missing=True).index()) == 531


@pytest.mark.realdata
def test_real_ptbxl_in_the_cinc2020_label_space(ptbxl_meta_root: Path) -> None:
    """PTB-XL mapped through the protocol gives the challenge's own per-code PTB-XL counts."""
    from ecg_transfer.labels import get_protocol, snomed_lookup

    table = PTBXL(ptbxl_meta_root, allow_missing=True).database  # scp_codes parsed
    y = get_protocol("cinc2020").encode_table(table)
    counts = dict(zip(get_protocol("cinc2020").class_names, y.sum(axis=0)))
    published = pd.read_csv(
        Path(__file__).resolve().parents[2]
        / "shared"
        / "data"
        / "cinc_labels"
        / "evaluation-2020"
        / "dx_mapping_scored.csv"
    )
    by_abbrev = dict(zip(published["Abbreviation"], published["PTB-XL"]))
    assert counts["NSR"] == by_abbrev["NSR"] == 18092
    assert counts["LAD"] == by_abbrev["LAD"]  # needs heart_axis, not scp_codes
    assert counts["AF"] == by_abbrev["AF"]
    assert snomed_lookup()  # the lookup loads from package data


@pytest.mark.parametrize("fs_out,n_out", [(250, 2500), (100, 1000), (50, 500)])
def test_500hz_records_resampled_down(tmp_path: Path, fs_out: int, n_out: int) -> None:
    tree = make_ptbxl_tree(tmp_path / "ptbxl", n_records=3, rates=(500,))
    ds = PTBXL(tree, fs=500)
    c = load_or_build(ds, fs=fs_out, cache_dir=tmp_path / "c", progress=False, workers=1)
    assert c.signals.shape == (3, 12, n_out) and c.fs == fs_out
    x = ds.read("00002").T.astype(np.float32)
    up, down = (1, 500 // fs_out) if 500 % fs_out == 0 else (1, 2)
    expected = resample_poly(x, up, down, axis=-1).astype(np.float32)
    assert np.allclose(c.signals[1], expected, atol=1e-6)
    # anti-aliased: a tone above the new Nyquist frequency is removed, not folded back
    t = np.arange(5000) / 500
    tone = np.tile(np.sin(2 * np.pi * (0.8 * fs_out) * t), (12, 1))
    from ecg_transfer.signal import resample

    assert np.abs(resample(tone, 500, fs_out)[:, 50:-50]).max() < 0.05
