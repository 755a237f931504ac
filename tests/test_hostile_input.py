"""Broken and hostile input: each case names the file and the problem, skips the record and lists
it, and the rest of the set is read -- never a traceback, a hang, an allocation sized from a
header's claim, or a silently wrong array.

The corpus is built by the tests (wfdb, scipy and raw bytes); every case is next to good records
so that "the rest of the set is read" is checked too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io

from ecg_transfer.cli import main as cli_main
from ecg_transfer.datasets.cache import load_or_build
from ecg_transfer.datasets.cinc import CinCDataset
from ecg_transfer.datasets.ptbxl import PTBXL
from ecg_transfer.datasets.wfdb_fast import read_physical
from ecg_transfer.errors import DatasetError, RecordError

from wfdb_fixtures import ecg_like, make_ptbxl_tree, write_cinc_record, write_wfdb_record

HAS_FIFO = hasattr(os, "mkfifo")


@contextlib.contextmanager
def no_hang(seconds: int = 30):
    """Fail (instead of blocking the suite) if the body takes longer than ``seconds``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum, frame):
        raise TimeoutError(f"hung for {seconds} s (blocking open of a FIFO?)")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _val(seed: int, n: int = 500) -> np.ndarray:
    return np.random.default_rng(seed).integers(-3000, 3000, size=(12, n)).astype(np.int16)


def _v4_header(rows: int, cols: int, type_code: int = 30, name: bytes = b"val\0") -> bytes:
    return np.array([type_code, rows, cols, 0, len(name)], dtype="<i4").tobytes() + name


# -- the CinC corpus -----------------------------------------------------------------------------------
def _cinc_corpus(root: Path, outside: Path) -> dict[str, str]:
    """Write good records and one record per hostile case; return {record: expected problem text}."""
    expect: dict[str, str] = {}
    for i in range(3):
        write_cinc_record(root, f"G{i:04d}", _val(i))
    write_cinc_record(outside, "X0001", _val(9))  # a real record outside the set
    write_cinc_record(root, "B_abs", _val(10), file_name=str(outside / "X0001.mat"))
    expect["B_abs"] = "not a file name beside the header"
    write_cinc_record(root, "B_up", _val(11), file_name="../outside/X0001.mat")
    expect["B_up"] = "not a file name beside the header"
    for name, kind in [("B_fifo", "FIFO"), ("B_dir", "directory"), ("B_dev", "character device")]:
        write_cinc_record(root, name, _val(12))
        (root / f"{name}.mat").unlink()
        expect[name] = kind
    if HAS_FIFO:
        os.mkfifo(root / "B_fifo.mat")
    else:
        del expect["B_fifo"]
    (root / "B_dir.mat").mkdir()
    (root / "B_dev.mat").symlink_to("/dev/zero")
    for name, fs, text in [
        ("B_fs0", 0, "not a positive number"),
        ("B_fsneg", -500, "not a positive number"),
        ("B_fs1", 1, "outside 50-10000 Hz"),
        ("B_fs20k", 20000, "outside 50-10000 Hz"),
    ]:
        write_cinc_record(root, name, _val(13), fs=fs)
        expect[name] = text
    write_cinc_record(root, "B_long", _val(14), n_samples=2**40)
    expect["B_long"] = "header has 1099511627776 samples but B_long.mat has 500"
    write_cinc_record(root, "B_more", _val(15), n_samples=5000)
    expect["B_more"] = "header has 5000 samples but B_more.mat has 500"
    write_cinc_record(root, "B_gain0", _val(16), gains=["1000/mV"] * 11 + ["0/mV"])
    expect["B_gain0"] = "gain 0 means the signal is uncalibrated"
    write_cinc_record(root, "B_gainneg", _val(17), gains=["-1000/mV"] + ["1000/mV"] * 11)
    expect["B_gainneg"] = "is negative"
    write_cinc_record(root, "B_float", _val(18).astype(np.float64))
    expect["B_float"] = "float64, not integer ADC units"
    write_cinc_record(root, "B_complex", _val(19) + 1j * _val(20))
    expect["B_complex"] = "complex"
    write_cinc_record(root, "B_cell", _val(21))
    cell = np.empty((1, 2), dtype=object)
    cell[0, 0], cell[0, 1] = _val(21), "x"
    scipy.io.savemat(root / "B_cell.mat", {"val": cell}, format="5")
    expect["B_cell"] = "MATLAB cell array"
    write_cinc_record(root, "B_claim", _val(22))  # the .mat's own header claims 12 x 2^31-1
    (root / "B_claim.mat").write_bytes(_v4_header(12, 2**31 - 1) + _val(22).T.tobytes())
    expect["B_claim"] = "claims 12 x 2147483647"
    write_cinc_record(root, "B_hdf5", _val(23))
    (root / "B_hdf5.mat").write_bytes(b"MATLAB 7.3 MAT-file, Platform: x".ljust(512, b"\0"))
    expect["B_hdf5"] = "v7.3 (HDF5)"
    write_cinc_record(root, "B_bighea", _val(24))
    with open(root / "B_bighea.hea", "a") as fh:
        fh.write("#" + "x" * (2 << 20) + "\n")
    expect["B_bighea"] = "a header is a few kB"
    if HAS_FIFO:
        os.mkfifo(root / "B_heafifo.hea")
        expect["B_heafifo"] = "FIFO"
    return expect


@pytest.fixture()
def cinc_corpus(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "set"
    return root, _cinc_corpus(root, tmp_path / "outside")


def test_cinc_corpus_every_case_named_and_skipped_rest_read(cinc_corpus, cache_dir):
    root, expect = cinc_corpus
    with no_hang():
        ds = CinCDataset(root)
        index = ds.index()
        cached = load_or_build(ds, cache_dir=cache_dir, progress=False)
    assert index["record_id"].tolist() == ["G0000", "G0001", "G0002"]
    assert sorted(cached.table["record_id"]) == ["G0000", "G0001", "G0002"]
    listed = {Path(p.record).stem: p.problem for p in ds.problems}
    assert set(listed) == set(expect)
    for name, text in expect.items():
        assert text in listed[name], (name, listed[name])
        assert "skipped" in listed[name]
    problem_records = {p.record for p in ds.problems}
    assert str(root / "B_abs.hea") in problem_records  # the file named: the header that points away


@pytest.mark.parametrize("case", ["B_fifo", "B_dir", "B_dev", "B_abs", "B_up", "B_claim", "B_float"])
def test_cinc_read_refuses_without_reading_anything_else(cinc_corpus, case):
    root, expect = cinc_corpus
    if case not in expect:
        pytest.skip("no FIFOs on this system")
    with no_hang():
        with pytest.raises(RecordError) as exc:
            CinCDataset(root).read(case)
    assert expect[case] in exc.value.problem


def test_cinc_header_claiming_2_to_the_40_allocates_nothing_big(cinc_corpus):
    root, _ = cinc_corpus
    ds = CinCDataset(root)
    tracemalloc.start()
    try:
        ds.index()
        for rid in ["B_long", "B_claim"]:
            with pytest.raises(RecordError):
                ds.read(rid)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"peak {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize(
    "dtype, mat_format",
    [(np.int32, "4"), (np.uint16, "4"), (np.uint8, "4"), (np.int8, "5"), (np.int64, "5"), (np.uint32, "5")],
)  # MATLAB v4 has no int8/int64/uint32 (scipy writes them as double), v5 has
def test_cinc_integer_types_are_converted_with_a_note(tmp_path, dtype, mat_format):
    val = np.random.default_rng(1).integers(0, 100, size=(12, 300)).astype(dtype)
    write_cinc_record(tmp_path, "A0001", val, mat_format=mat_format)
    ds = CinCDataset(tmp_path)
    assert ds.index()["record_id"].tolist() == ["A0001"]
    [p] = ds.problems
    assert f"is {np.dtype(dtype).name}, not int16: converted" in p.problem and "kept" in p.problem
    np.testing.assert_array_equal(ds.read("A0001"), val.T.astype(np.float64) / 1000.0)


@pytest.mark.parametrize("compress", [False, True], ids=["v5", "v5-compressed"])
def test_cinc_matlab_v5_files_read(tmp_path, compress):
    val = _val(2)
    write_cinc_record(tmp_path, "A0001", val, mat_format="5", do_compression=compress)
    ds = CinCDataset(tmp_path)
    assert ds.index()["record_id"].tolist() == ["A0001"] and ds.problems == []
    np.testing.assert_array_equal(ds.read("A0001"), val.T / 1000.0)


def test_cinc_v5_claim_beyond_what_the_file_can_hold(tmp_path):
    val = _val(3)
    write_cinc_record(tmp_path, "A0001", val, mat_format="5")
    mat = tmp_path / "A0001.mat"
    mat.write_bytes(mat.read_bytes()[:400])  # the variable's header stays, its data is gone
    ds = CinCDataset(tmp_path)
    assert ds.index().empty
    assert "A0001.mat" in ds.problems[0].problem and "truncated or corrupt" in ds.problems[0].problem


def test_cli_summary_on_the_corpus_lists_and_exits_cleanly(cinc_corpus, cache_dir, capsys):
    root, expect = cinc_corpus
    with no_hang(60):
        rc = cli_main(
            [
                "data",
                "summary",
                "--dataset",
                "cinc",
                "--root",
                str(root),
                "--cache-dir",
                str(cache_dir),
                "--no-progress",
            ]
        )
    out = capsys.readouterr().out
    assert rc == 0
    for name in expect:
        assert name in out


# -- WFDB records ------------------------------------------------------------------------------------------
def _wfdb(folder: Path, name: str = "r1", fs: float = 500, fmt: str = "16") -> Path:
    return write_wfdb_record(
        folder,
        name,
        ecg_like(5000, 500, seed=1),
        fs,
        ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"],
        fmt,
    )


def _edit_header(hea: Path, line: int, field: int, value: str) -> None:
    lines = hea.read_text().splitlines()
    tokens = lines[line].split(" ")
    tokens[field] = value
    lines[line] = " ".join(tokens)
    hea.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("fmt", ["16", "212"])
@pytest.mark.parametrize(
    "case, line, field, value, text",
    [
        ("fs-low", 0, 2, "20", "outside 50-10000 Hz"),
        ("fs-high", 0, 2, "20000", "outside 50-10000 Hz"),
        ("fs-zero", 0, 2, "0", "not a positive number"),
        ("huge", 0, 3, str(2**40), "truncated or wrong header"),
        ("more", 0, 3, "6000", "truncated or wrong header"),
        ("gain0", 3, 2, "0/mV", "gain 0 means the signal is uncalibrated"),
        ("gainneg", 3, 2, "-200/mV", "is negative"),
        ("abs", 1, 0, "/etc/passwd", "not a file name beside the header"),
        ("up", 1, 0, "../r1.dat", "not a file name beside the header"),
    ],
)
def test_wfdb_header_cases(tmp_path, fmt, case, line, field, value, text):
    hea = _wfdb(tmp_path, fmt=fmt)
    _edit_header(hea, line, field, value)
    tracemalloc.start()
    try:
        with no_hang(), pytest.raises(RecordError) as exc:
            read_physical(hea.with_suffix(""))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert text in exc.value.problem
    assert peak < 64 << 20


@pytest.mark.skipif(not HAS_FIFO, reason="no FIFOs on this system")
@pytest.mark.parametrize("what", ["dat", "hea"])
def test_wfdb_fifo_is_refused_without_blocking(tmp_path, what):
    hea = _wfdb(tmp_path)
    target = hea.with_suffix(f".{what}")
    target.unlink()
    os.mkfifo(target)
    with no_hang(), pytest.raises(RecordError, match="FIFO"):
        read_physical(hea.with_suffix(""))


# -- PTB-XL ------------------------------------------------------------------------------------------------
def _rewrite_db(root: Path, edit) -> None:
    db = pd.read_csv(root / "ptbxl_database.csv", dtype=object)
    edit(db)
    db.to_csv(root / "ptbxl_database.csv", index=False)


@pytest.fixture()
def ptbxl_tree(tmp_path: Path) -> Path:
    return make_ptbxl_tree(tmp_path / "ptbxl", n_records=12)


def test_ptbxl_database_rows_named_skipped_rest_read(ptbxl_tree, tmp_path, cache_dir):
    outside = tmp_path / "elsewhere"
    write_wfdb_record(
        outside,
        "evil",
        ecg_like(1000, 100),
        100,
        ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"],
    )

    def edit(db):
        db.loc[1, "scp_codes"] = "{'NORM': 100.0,"  # ecg_id 2: malformed
        db.loc[2, "filename_lr"] = "../elsewhere/evil"  # ecg_id 3: outside the root
        db.loc[3, "filename_lr"] = str(outside / "evil")  # ecg_id 4: absolute
        db.loc[4, "strat_fold"] = "ten"  # ecg_id 5
        db.loc[5, "ecg_id"] = "7"  # ecg_id 6 -> a second 7
        db.loc[7, "ecg_id"] = "x8"  # not a number

    _rewrite_db(ptbxl_tree, edit)
    ds = PTBXL(ptbxl_tree)
    index = ds.index()
    assert index["record_id"].tolist() == ["00001", "00009", "00010", "00011", "00012"]
    by_row = {p.record.split(" row")[-1]: p.problem for p in ds.problems}
    csv = str(ptbxl_tree / "ptbxl_database.csv")
    assert all(p.record.startswith(csv) for p in ds.problems)
    assert "column scp_codes: malformed scp_codes" in by_row[" 2 (ecg_id 2)"]
    assert "column filename_lr: '../elsewhere/evil' is not a path inside the dataset" in by_row[" 3 (ecg_id 3)"]
    assert "is not a path inside the dataset" in by_row[" 4 (ecg_id 4)"]
    assert "column strat_fold: 'ten'" in by_row[" 5 (ecg_id 5)"]
    assert "ecg_id 7 appears 2 times" in by_row["s 6, 7"]
    assert "column ecg_id: 'x8'" in by_row[" 8 (ecg_id x8)"]
    cached = load_or_build(ds, cache_dir=cache_dir, progress=False)
    assert len(cached.table) == 5 and len(cached.problems) == len(ds.problems)


def test_ptbxl_missing_column_is_named(ptbxl_tree):
    _rewrite_db(ptbxl_tree, lambda db: db.drop(columns=["strat_fold"], inplace=True))
    with pytest.raises(DatasetError, match="ptbxl_database.csv: column\\(s\\) strat_fold missing"):
        PTBXL(ptbxl_tree).index()


def test_ptbxl_non_utf8_bytes_named_by_row_and_column(ptbxl_tree):
    csv = ptbxl_tree / "ptbxl_database.csv"
    lines = csv.read_bytes().split(b"\n")
    header = lines[0].split(b",")
    lines[0] = lines[0] + b",report"
    for i in range(1, len(lines)):
        if lines[i]:
            lines[i] = lines[i] + (b",sinusrhythmus \xfc" if i == 3 else b",ok")
    assert b"'SR'" in lines[5]
    lines[5] = lines[5].replace(b"'SR'", b"'S\xd6R'")  # ecg_id 5: in scp_codes, a column used
    csv.write_bytes(b"\n".join(lines))
    ds = PTBXL(ptbxl_tree)
    ids = ds.index()["record_id"].tolist()
    assert "00005" not in ids and "00003" in ids and len(ids) == 11
    problems = {p.record.split(" row ")[-1]: p.problem for p in ds.problems}
    assert "column report: bytes that are not UTF-8" in problems["3 (ecg_id 3)"] and "kept" in problems["3 (ecg_id 3)"]
    assert "column scp_codes: bytes that are not UTF-8" in problems["5 (ecg_id 5)"]
    assert "skipped" in problems["5 (ecg_id 5)"]
    assert header  # the file kept its columns


@pytest.mark.skipif(not HAS_FIFO, reason="no FIFOs on this system")
def test_ptbxl_fifo_header_and_signal(ptbxl_tree, cache_dir):
    rec = ptbxl_tree / "records100" / "00000"
    (rec / "00002_lr.hea").unlink()
    os.mkfifo(rec / "00002_lr.hea")
    (rec / "00003_lr.dat").unlink()
    os.mkfifo(rec / "00003_lr.dat")
    with no_hang(60):
        ds = PTBXL(ptbxl_tree)
        cached = load_or_build(ds, cache_dir=cache_dir, progress=False)
    assert sorted(cached.table["record_id"]) == [f"{i:05d}" for i in range(1, 13) if i not in (2, 3)]
    problems = {p.record: p.problem for p in cached.problems}
    assert any("00002_lr.hea" in r and "not a regular file" in t for r, t in problems.items())
    assert "FIFO" in problems["00003"]
    assert stat.S_ISFIFO(os.stat(rec / "00003_lr.dat").st_mode)
