"""Leads by name: every record is read in the standard order whatever its file's order, aliases
folded, records missing a wanted lead skipped and listed, lead subsets read in standard order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb

from ecg_transfer.datasets.base import STANDARD_LEADS
from ecg_transfer.datasets.cache import load_or_build
from ecg_transfer.datasets.cinc import CinCDataset
from ecg_transfer.datasets.leads import LIMB_LEADS, canonical_lead, lead_columns, parse_leads
from ecg_transfer.datasets.ptbxl import PTBXL
from ecg_transfer.datasets.wfdb_fast import read_block, read_physical
from ecg_transfer.errors import ConfigError, RecordError

from wfdb_fixtures import STANDARD_NAMES, ecg_like, make_ptbxl_tree, write_cinc_record, write_wfdb_record

V1_FIRST = STANDARD_NAMES[6:] + STANDARD_NAMES[:6]


def _val(seed: int, n: int = 500, n_leads: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).integers(-3000, 3000, size=(n_leads, n)).astype(np.int16)


def _by_name(val: np.ndarray, names: list[str], wanted=STANDARD_LEADS) -> np.ndarray:
    """Expected (samples, leads) mV: the file's rows picked by name, written out independently."""
    upper = [n.upper() for n in names]
    return np.stack([val[upper.index(w)] for w in wanted], axis=1) / 1000.0


# -- names -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, lead",
    [
        ("aVR", "AVR"),
        ("AVR", "AVR"),
        ("avr", "AVR"),
        (" aVl ", "AVL"),
        ("Lead aVF", "AVF"),
        ("LEAD_II", "II"),
        ("i", "I"),
        ("DII", "II"),
        ("DIII", "III"),
        ("v6", "V6"),
        ("vx", None),
        ("MLII", None),
        ("-aVR", None),
    ],
)
def test_lead_aliases(name, lead):
    assert canonical_lead(name) == lead


def test_parse_leads_returns_standard_order_and_names_bad_values():
    assert parse_leads(None) == STANDARD_LEADS
    assert parse_leads(["II", "i"]) == ("I", "II")
    assert parse_leads(["avf", "avl", "avr", "III", "II", "I"]) == LIMB_LEADS
    for bad, msg in [
        (["I", "I"], "twice"),
        (["I", "X1"], "not a standard lead"),
        ([], "non-empty"),
        ("I", "non-empty"),
        ([1], "not a standard lead"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            parse_leads(bad)


def test_lead_columns_names_missing_and_ambiguous_leads():
    assert lead_columns(V1_FIRST, STANDARD_LEADS, "r").tolist() == list(range(6, 12)) + list(range(6))
    with pytest.raises(RecordError, match="missing lead.*V5, V6"):
        lead_columns(STANDARD_NAMES[:10], STANDARD_LEADS, "r")
    with pytest.raises(RecordError, match="'aVR' and 'AVR' both name lead aVR"):
        lead_columns(STANDARD_NAMES + ["AVR"], STANDARD_LEADS, "r")
    assert lead_columns(STANDARD_NAMES[:10], ("I", "II"), "r").tolist() == [0, 1]


# -- CinC ----------------------------------------------------------------------------------------------
def test_v1_first_record_sorting_first_keeps_every_record(tmp_path, cache_dir):
    """The issue's case: the first record decided the order and every other record was dropped."""
    odd = _val(0)
    write_cinc_record(tmp_path, "A0001", odd, leads=V1_FIRST)
    vals = {f"A{i:04d}": _val(i) for i in range(2, 7)}
    for name, val in vals.items():
        write_cinc_record(tmp_path, name, val)
    ds = CinCDataset(tmp_path)
    cached = load_or_build(ds, cache_dir=cache_dir, progress=False)
    assert sorted(cached.table["record_id"]) == ["A0001", *sorted(vals)]
    assert cached.problems == []
    np.testing.assert_array_equal(ds.read("A0001"), _by_name(odd, V1_FIRST))
    np.testing.assert_array_equal(ds.read("A0002"), vals["A0002"].T / 1000.0)


def test_aliases_and_extra_leads_in_cinc(tmp_path):
    """PTB in CinC 2021: 15 lower-case leads at 1000 Hz (i ... v6, vx, vy, vz); extras ignored."""
    names = [n.lower() for n in STANDARD_NAMES] + ["vx", "vy", "vz"]
    val = _val(1, n=2000, n_leads=15)
    write_cinc_record(tmp_path, "S0001", val, leads=names, fs=1000)
    ds = CinCDataset(tmp_path)
    row = ds.index().iloc[0]
    assert (row.fs, row.n_leads, row.leads) == (1000.0, 12, list(STANDARD_LEADS))
    np.testing.assert_array_equal(ds.read("S0001"), _by_name(val, names))


def test_record_missing_a_lead_is_skipped_and_listed_unless_a_subset_is_asked(tmp_path):
    write_cinc_record(tmp_path, "A0001", _val(1))
    short = _val(2, n_leads=10)
    write_cinc_record(tmp_path, "A0002", short, leads=STANDARD_NAMES[:10])
    ds = CinCDataset(tmp_path)
    assert ds.index()["record_id"].tolist() == ["A0001"]
    [p] = ds.problems
    assert p.record.endswith("A0002.hea") and "missing lead(s) V5, V6" in p.problem and "skipped" in p.problem
    two = CinCDataset(tmp_path, leads=("I", "II"))
    assert two.index()["record_id"].tolist() == ["A0001", "A0002"] and two.problems == []
    np.testing.assert_array_equal(two.read("A0002"), short[:2].T / 1000.0)


def test_two_names_for_one_lead_is_refused(tmp_path):
    names = STANDARD_NAMES + ["DI"]
    write_cinc_record(tmp_path, "A0001", _val(1, n_leads=13), leads=names)
    write_cinc_record(tmp_path, "A0002", _val(2))
    ds = CinCDataset(tmp_path)
    assert ds.index()["record_id"].tolist() == ["A0002"]
    assert "'I' and 'DI' both name lead I" in ds.problems[0].problem


@pytest.mark.parametrize("subset", [("I",), ("I", "II"), LIMB_LEADS, STANDARD_LEADS])
def test_lead_subsets_read_only_those_in_standard_order(tmp_path, cache_dir, subset):
    val = _val(3)
    write_cinc_record(tmp_path, "A0001", val, leads=V1_FIRST)
    ds = CinCDataset(tmp_path, leads=parse_leads(list(reversed(subset))))
    cached = load_or_build(ds, cache_dir=cache_dir, progress=False)
    assert cached.table["n_leads"].tolist() == [len(subset)]
    np.testing.assert_array_equal(ds.read("A0001"), _by_name(val, V1_FIRST, subset))
    assert ds.fingerprint()["leads"] == list(subset)  # a subset is a different cache


# -- WFDB / PTB-XL --------------------------------------------------------------------------------------
@pytest.fixture()
def reordered_tree(tmp_path: Path) -> Path:
    """A PTB-XL tree whose record 3 is written V1-first."""
    root = make_ptbxl_tree(tmp_path / "ptbxl", n_records=6)
    sig = ecg_like(1000, 100, seed=3)
    write_wfdb_record(
        root / "records100" / "00000", "00003_lr", sig[:, list(range(6, 12)) + list(range(6))], 100, V1_FIRST
    )
    return root


def test_ptbxl_record_with_another_order_is_read_by_name(reordered_tree):
    base = reordered_tree / "records100" / "00000" / "00003_lr"
    file_order, fields = wfdb.rdsamp(str(base))
    assert fields["sig_name"] == V1_FIRST
    expected = file_order[:, [fields["sig_name"].index(n) for n in STANDARD_NAMES]]
    ds = PTBXL(reordered_tree)
    np.testing.assert_array_equal(ds.read("00003"), expected)
    block, problems = ds.read_block(["00001", "00003"])
    assert problems == []
    np.testing.assert_array_equal(block[1], expected.T.astype(np.float32))
    np.testing.assert_array_equal(block[0], wfdb.rdsamp(str(base.with_name("00001_lr")))[0].T.astype(np.float32))


def test_ptbxl_lead_subset_and_missing_lead(reordered_tree, cache_dir):
    base = reordered_tree / "records100" / "00000"
    write_wfdb_record(base, "00005_lr", ecg_like(1000, 100, n_leads=11, seed=5), 100, STANDARD_NAMES[:11])
    ds = PTBXL(reordered_tree)
    cached = load_or_build(ds, cache_dir=cache_dir, progress=False)
    assert "00005" not in set(cached.table["record_id"]) and len(cached.table) == 5
    [p] = [p for p in cached.problems if p.record == "00005"]
    assert "missing lead(s) V6" in p.problem
    sub = PTBXL(reordered_tree, leads=("II", "V1"))
    block, problems = sub.read_block(["00003", "00005"])
    assert problems == [] and block.shape == (2, 2, 1000)
    full, _, _ = read_physical(base / "00003_lr")
    np.testing.assert_array_equal(block[0], full[:, [7, 0]].T.astype(np.float32))  # file: V1..V6, I, II, ...


def test_read_block_keeps_file_order_when_no_leads_are_named(reordered_tree):
    base = reordered_tree / "records100" / "00000" / "00003_lr"
    block, _ = read_block([base], 1000, 12, 100.0)
    np.testing.assert_array_equal(block[0], wfdb.rdsamp(str(base))[0].T.astype(np.float32))


# -- real data -------------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_real_g12ec_single_lead_subset(g12ec_root):
    full = CinCDataset(g12ec_root)
    lead_ii = CinCDataset(g12ec_root, leads=("II",))
    assert len(lead_ii.index()) == len(full.index()) == 74
    for rid in ["E00001", "E07509"]:
        np.testing.assert_array_equal(lead_ii.read(rid), full.read(rid)[:, [1]])
    names = pd.Series([tuple(full.header(r).leads) for r in full.index()["record_id"]]).unique()
    assert list(names) == [tuple(STANDARD_NAMES)]  # the real files already come in standard order


def test_task_reads_the_configured_leads_and_the_dx_label_set(tmp_path, cache_dir):
    """[task] leads = ["II", "I"] and labels = "dx" through load_task (the hooks in datasets.task)."""
    from ecg_transfer.datasets.task import load_task

    codes = ["426783006", "59118001", "713427006", "55827005"]  # NSR, RBBB = CRBBB, LVHV (2021)
    for i in range(30):
        write_cinc_record(
            tmp_path / "set",
            f"A{i:04d}",
            _val(i),
            leads=V1_FIRST if i == 0 else None,
            dx=codes[i % 4] + ("," + codes[3] if i % 5 == 0 else ""),
        )
    task = {
        "dataset": "cinc",
        "root": str(tmp_path / "set"),
        "labels": "dx",
        "leads": ["II", "I"],
        "cache_dir": str(cache_dir),
        "min_count": 9,
        "n_folds": 3,
        "train_folds": [1],
        "val_folds": [2],
        "test_folds": [3],
    }
    data = load_task(task, 500, progress=False)
    assert data.label_names == ["CRBBB|RBBB", "LVHV"]  # 15 and 12 records; NSR (8) is under min_count
    assert set(data.table["n_leads"]) == {2}
    assert data.cache.problems == []


def test_cache_refuses_an_adapter_that_mixes_lead_orders(tmp_path, cache_dir):
    """The cache used to keep the first record's order and drop the rest; readers now return one
    order, so a mix is a reader's bug and stops the build instead of silently losing records."""
    from ecg_transfer.errors import DatasetError

    class Mixed:
        name = "mixed"
        problems: list = []

        def index(self):
            return pd.DataFrame(
                {
                    "record_id": ["a", "b"],
                    "fs": [500.0, 500.0],
                    "n_samples": [5000, 5000],
                    "n_leads": [2, 2],
                    "leads": [["I", "II"], ["II", "I"]],
                }
            )

        def fingerprint(self):
            return {"adapter": "mixed"}

        def iter_signals(self, ids):  # pragma: no cover - never reached
            raise AssertionError("signals read despite mixed lead orders")

    with pytest.raises(DatasetError, match="different lead orders"):
        load_or_build(Mixed(), cache_dir=cache_dir, progress=False)
