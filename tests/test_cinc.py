"""CinC-format adapter: header quirks, unit conversion, every bad-input case, and the real G12EC files."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
import wfdb
import wfdb.io._header as wfdb_header

from ecg_transfer.datasets.base import STANDARD_LEADS
from ecg_transfer.datasets.cinc import CinCDataset, parse_header_text
from ecg_transfer.errors import DatasetError, RecordError

LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
G12EC = SHARED_DATA / "g12ec"
KNOWN_CODES = {"426783006", "164889003", "59118001", "270492004"}


def fake_unknown_codes(codes):
    """Stand-in for ecg_transfer.labels.unknown_codes with a fixed, test-controlled vocabulary."""
    return [c for c in codes if c not in KNOWN_CODES]


def make_ds(root, strict=False):
    return CinCDataset(root, strict=strict, unknown_codes=fake_unknown_codes)


def checksum16(row: np.ndarray) -> int:
    return int((int(row.astype(np.int64).sum()) + 32768) % 65536 - 32768)


def write_header(
    path: Path,
    val: np.ndarray,
    *,
    record_name: str | None = None,
    gains: list[str] | None = None,
    n_sig: int | None = None,
    n_samples: int | None = None,
    age: str = "NaN",
    sex: str = "Female",
    dx: str | None = "426783006",
) -> None:
    """A header in the exact G12EC layout (record line, 16+24 signal lines, #-comments)."""
    rid = path.stem
    n_leads, n = val.shape
    name = record_name if record_name is not None else f"{rid}.mat"  # the E00271.mat quirk
    lines = [f"{name} {n_sig or n_leads} 500 {n_samples or n} 05-May-2020 14:50:55"]
    for i in range(n_leads):
        gain = gains[i] if gains else "1000/mV"
        lines.append(f"{rid}.mat 16+24 {gain} 16 0 {int(val[i, 0])} {checksum16(val[i])} 0 {LEADS[i]}")
    lines += [f"#Age: {age}", f"#Sex: {sex}"]
    if dx is not None:
        lines.append(f"#Dx: {dx}")
    lines += ["#Rx: Unknown", "#Hx: Unknown", "#Sx: Unknown"]
    path.write_text("\n".join(lines) + "\n")


def write_record(folder: Path, rid: str, val: np.ndarray | None = None, seed: int = 0, **header_kw) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    if val is None:
        val = np.random.default_rng(seed).integers(-3000, 3000, size=(12, 200)).astype(np.int16)
    scipy.io.savemat(folder / f"{rid}.mat", {"val": val}, format="4")
    write_header(folder / f"{rid}.hea", val, **header_kw)
    return val


# --- parsing and conversion -------------------------------------------------------------------


def test_read_converts_adc_to_mv_per_lead_with_gain_and_baseline(tmp_path):
    val = np.random.default_rng(1).integers(-2000, 2000, size=(12, 300)).astype(np.int16)
    gains = ["1000/mV"] * 6 + ["4880/mV", "1000.0(0)/mV", "1000(-25)/mV", "500(7)/mV", "2(3)/uV", "0.5/V"]
    write_record(tmp_path, "E00271", val, gains=gains)
    x = make_ds(tmp_path).read("E00271")
    # expected (gain per mV, baseline) written out by hand from the gain strings above
    per_mv = [1000] * 6 + [4880, 1000, 1000, 500, 2 * 1000, 0.5 / 1000]
    base = [0] * 6 + [0, 0, -25, 7, 3, 0]
    expected = np.stack([(val[i].astype(float) - base[i]) / per_mv[i] for i in range(12)], axis=1)
    assert x.shape == (300, 12) and x.dtype == np.float64
    np.testing.assert_array_equal(x, expected)


def test_header_quirks_and_index_columns(tmp_path):
    write_record(tmp_path / "g1", "E00002", seed=2, age="56", sex="Male", dx="426783006,164889003,426783006")
    write_record(tmp_path / "g2", "E00001", seed=1, age="NaN", sex="Female", dx="59118001")
    write_record(tmp_path / "g2", "E00003", seed=3, record_name="E00003", age="NaN", sex="Unknown")
    ds = make_ds(tmp_path)
    df = ds.index()
    assert list(df.columns) == [
        "record_id",
        "path",
        "mat_path",
        "fs",
        "n_samples",
        "n_leads",
        "leads",
        "age",
        "sex",
        "dx",
    ]
    assert df.record_id.tolist() == ["E00001", "E00002", "E00003"]  # found recursively, sorted
    r1, r2, r3 = (df.set_index("record_id").loc[r] for r in ["E00001", "E00002", "E00003"])
    assert r1.path == str(tmp_path / "g2" / "E00001.hea") and r1.mat_path == str(tmp_path / "g2" / "E00001.mat")
    assert (r1.fs, r1.n_samples, r1.n_leads, r1.leads) == (500.0, 200, 12, list(STANDARD_LEADS))
    assert np.isnan(r1.age) and r1.sex == "Female" and r1.dx == ["59118001"]
    assert r2.age == 56.0 and r2.sex == "Male" and r2.dx == ["426783006", "164889003"]  # repeat dropped
    assert r3.sex is None
    assert ds.problems == []


@pytest.mark.parametrize(
    "gain_field", ["1000/mV", "1000.0(0)/mV", "4880/mV", "1000(-25)/mV", "200(12)/uV", "2.5e2/mV", "1000", "0.5(3)/V"]
)
def test_gain_and_baseline_match_wfdb_header_parsing(tmp_path, gain_field):
    sig_line = f"E00001.mat 16+24 {gain_field} 16 9 -12 0 0 I"
    text = f"E00001 1 500 10\n{sig_line}\n#Dx: 426783006\n"
    ours = parse_header_text(text, tmp_path / "E00001.hea")
    ref = wfdb_header._parse_signal_lines([sig_line])
    to_mv = {"mV": 1.0, "uV": 1e-3, "V": 1e3}[ref["units"][0]]
    assert ours.baselines[0] == ref["baseline"][0]  # absent baseline -> ADC zero (9), as in wfdb
    assert ours.gains[0] == pytest.approx(ref["adc_gain"][0] / to_mv)


def test_gain_zero_is_refused_where_wfdb_would_assume_200(tmp_path):
    """wfdb reads gain 0 as 200 (WFDB: uncalibrated); the millivolts would be a guess, so refused."""
    sig_line = "E00001.mat 16+24 0/mV 16 9 -12 0 0 I"
    assert wfdb_header._parse_signal_lines([sig_line])["adc_gain"][0] == 200.0
    with pytest.raises(RecordError, match="gain 0 means the signal is uncalibrated.*200"):
        parse_header_text(f"E00001 1 500 10\n{sig_line}\n#Dx: 426783006\n", tmp_path / "E00001.hea")


def test_read_equals_wfdb_rdsamp_on_fixture(tmp_path):
    val = np.random.default_rng(4).integers(-5000, 5000, size=(12, 250)).astype(np.int16)
    gains = ["1000/mV"] * 4 + ["4880/mV", "1000.0(3)/mV"] * 4
    write_record(tmp_path, "E00005", val, gains=gains, record_name="E00005")  # wfdb needs the plain name
    sig, fields = wfdb.rdsamp(str(tmp_path / "E00005"))
    np.testing.assert_array_equal(make_ds(tmp_path).read("E00005"), sig)
    assert fields["sig_name"] == LEADS


# --- dataset-level errors ---------------------------------------------------------------------


def test_duplicate_record_ids_in_different_folders(tmp_path):
    write_record(tmp_path / "g1", "E00001")
    write_record(tmp_path / "g2", "E00001")
    with pytest.raises(DatasetError) as exc:
        make_ds(tmp_path).index()
    assert str(tmp_path / "g1" / "E00001.hea") in str(exc.value)
    assert str(tmp_path / "g2" / "E00001.hea") in str(exc.value)


def test_missing_root_and_empty_root(tmp_path):
    with pytest.raises(DatasetError, match="not a directory"):
        make_ds(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no \\*.hea"):
        make_ds(tmp_path).index()


# --- bad records --------------------------------------------------------------------------------


def _read_error(tmp_path, rid) -> RecordError:
    ds = make_ds(tmp_path)
    with pytest.raises(RecordError) as exc:
        ds.read(rid)
    assert exc.value.record == str(tmp_path / f"{rid}.hea")
    return exc.value


def test_missing_mat(tmp_path):
    write_record(tmp_path, "E00001")
    (tmp_path / "E00001.mat").unlink()
    err = _read_error(tmp_path, "E00001")
    assert "E00001.mat" in err.problem and "does not exist" in err.problem


def test_truncated_mat(tmp_path):
    write_record(tmp_path, "E00001")
    mat = tmp_path / "E00001.mat"
    mat.write_bytes(mat.read_bytes()[:-100])
    err = _read_error(tmp_path, "E00001")
    assert "E00001.mat" in err.problem and "truncated or corrupt" in err.problem


def test_corrupt_mat(tmp_path):
    write_record(tmp_path, "E00001")
    (tmp_path / "E00001.mat").write_bytes(b"this is not a MATLAB file at all" * 4)
    err = _read_error(tmp_path, "E00001")
    assert "cannot read MATLAB file" in err.problem


def test_mat_without_val(tmp_path):
    write_record(tmp_path, "E00001")
    scipy.io.savemat(tmp_path / "E00001.mat", {"data": np.zeros((12, 200), np.int16)}, format="4")
    err = _read_error(tmp_path, "E00001")
    assert "no 'val'" in err.problem and "data" in err.problem


def test_lead_count_disagrees_with_header(tmp_path):
    val = write_record(tmp_path, "E00001")
    scipy.io.savemat(tmp_path / "E00001.mat", {"val": val[:11]}, format="4")
    err = _read_error(tmp_path, "E00001")
    assert "12 leads" in err.problem and "11" in err.problem


def test_sample_count_disagrees_with_header(tmp_path):
    write_record(tmp_path, "E00001", n_samples=5000)  # header says 5000, file holds 200
    err = _read_error(tmp_path, "E00001")
    assert "5000 samples" in err.problem and "200" in err.problem


def test_transposed_val_is_named(tmp_path):
    val = write_record(tmp_path, "E00001")
    scipy.io.savemat(tmp_path / "E00001.mat", {"val": val.T.copy()}, format="4")
    assert "transposed" in _read_error(tmp_path, "E00001").problem


@pytest.mark.parametrize("with_nan", [False, True], ids=["float", "float-with-nan"])
def test_float_val_is_refused(tmp_path, with_nan):
    """A float ``val`` may already be millivolts; dividing it by the gain again would be silently wrong."""
    val = write_record(tmp_path, "E00001").astype(np.float64)
    if with_nan:
        val[3, 17] = np.nan
    scipy.io.savemat(tmp_path / "E00001.mat", {"val": val}, format="4")
    err = _read_error(tmp_path, "E00001")
    assert "float64" in err.problem and "refused" in err.problem


def test_header_signal_count_disagrees_with_signal_lines(tmp_path):
    write_record(tmp_path, "E00001", n_sig=13)
    ds = make_ds(tmp_path)
    assert ds.index().empty
    [p] = ds.problems
    assert p.record == str(tmp_path / "E00001.hea")
    assert "13 signals" in p.problem and "12 signal lines" in p.problem and "skipped" in p.problem


@pytest.mark.parametrize(
    "payload",
    [b"\x00\x00\x00\x00\x03\x00\x00\x00val\x00\x01\x02", "E00001 12 500 5000\n#Sex: Fémale\n".encode("latin-1")],
    ids=["binary", "not-utf8"],
)
def test_header_not_text(tmp_path, payload):
    write_record(tmp_path, "E00001")
    write_record(tmp_path, "E00002")
    (tmp_path / "E00001.hea").write_bytes(payload)
    ds = make_ds(tmp_path)
    assert ds.index().record_id.tolist() == ["E00002"]
    [p] = ds.problems
    assert p.record == str(tmp_path / "E00001.hea") and "not text" in p.problem
    with pytest.raises(RecordError, match="not text"):
        ds.read("E00001")
    with pytest.raises(RecordError, match="not text"):
        make_ds(tmp_path, strict=True).index()


@pytest.mark.parametrize(
    "gain, msg", [("abc/mV", "gain field"), ("1000/mmHg", "not a voltage")], ids=["garbage", "units"]
)
def test_malformed_gain_is_refused_not_defaulted(tmp_path, gain, msg):
    write_record(tmp_path, "E00001", gains=["1000/mV"] * 11 + [gain])
    ds = make_ds(tmp_path)
    assert ds.index().empty
    assert msg in ds.problems[0].problem and "signal line 12" in ds.problems[0].problem


def test_header_naming_another_record(tmp_path):
    write_record(tmp_path, "E00001", record_name="E00009.mat")
    ds = make_ds(tmp_path)
    assert ds.index().empty and "'E00009'" in ds.problems[0].problem


def test_empty_dx_and_unknown_code_are_flagged_but_kept(tmp_path):
    write_record(tmp_path, "E00001", dx="")
    write_record(tmp_path, "E00002", dx="426783006,999999999")
    write_record(tmp_path, "E00003", dx=None)
    write_record(tmp_path, "E00004", age="abc")
    ds = make_ds(tmp_path)
    df = ds.index().set_index("record_id")
    assert df.index.tolist() == ["E00001", "E00002", "E00003", "E00004"]
    assert df.loc["E00001", "dx"] == [] and df.loc["E00002", "dx"] == ["426783006", "999999999"]
    problems = {Path(p.record).stem: p.problem for p in ds.problems}
    assert set(problems) == {"E00001", "E00002", "E00003", "E00004"}
    assert "empty #Dx" in problems["E00001"] and "kept" in problems["E00001"]
    assert "999999999" in problems["E00002"] and "426783006" not in problems["E00002"]
    assert "no #Dx" in problems["E00003"]
    assert "'abc'" in problems["E00004"] and np.isnan(df.loc["E00004", "age"])
    # signals of label-flagged records are fine
    assert ds.read("E00001").shape == (200, 12)


@pytest.mark.parametrize("dx, msg", [("", "empty #Dx"), ("999999999", "999999999")])
def test_strict_raises_on_label_problems(tmp_path, dx, msg):
    write_record(tmp_path, "E00001", dx=dx)
    with pytest.raises(RecordError, match=msg) as exc:
        make_ds(tmp_path, strict=True).index()
    assert exc.value.record == str(tmp_path / "E00001.hea")


def test_default_unknown_codes_comes_from_labels_module(tmp_path):
    labels = pytest.importorskip("ecg_transfer.labels")
    if not hasattr(labels, "unknown_codes"):
        pytest.skip("ecg_transfer.labels.unknown_codes not written yet")
    write_record(tmp_path, "E00001", dx="426783006,999999999")  # sinus rhythm (scored) + a made-up code
    ds = CinCDataset(tmp_path)
    ds.index()
    [p] = ds.problems
    assert "999999999" in p.problem and "426783006" not in p.problem


def test_codes_of_the_2021_mapping_are_not_flagged(tmp_path):
    """55827005 (LVHV), 251223006 (TPW), 733534002 (CLBBB) came with CinC 2021; they were 'unknown'."""
    write_record(tmp_path, "E00001", dx="55827005,251223006,733534002,426783006")
    ds = CinCDataset(tmp_path)
    ds.index()
    assert ds.problems == []


@pytest.mark.parametrize("fs, seconds", [(257, 1800), (500, 10), (1000, 115)], ids=["incart", "chapman", "ptb"])
def test_2021_headers_and_long_records_equal_wfdb_rdsamp(tmp_path, fs, seconds):
    """2021 headers write the format as 16x1+24; INCART is 30 min at 257 Hz, PTB up to 115 s at 1 kHz."""
    from wfdb_fixtures import write_cinc_record

    n = int(fs * seconds)
    val = np.random.default_rng(fs).integers(-4000, 4000, size=(12, n)).astype(np.int16)
    hea = write_cinc_record(tmp_path, "I0001", val, fs=fs, fmt="16x1+24")
    assert " 16x1+24 " in hea.read_text()
    ds = CinCDataset(tmp_path)
    row = ds.index().iloc[0]
    assert (row.fs, row.n_samples) == (float(fs), n) and ds.problems == []
    sig, fields = wfdb.rdsamp(str(tmp_path / "I0001"))
    assert fields["fs"] == fs
    np.testing.assert_array_equal(ds.read("I0001"), sig)


def test_iter_signals_yields_errors_instead_of_raising(tmp_path):
    good = write_record(tmp_path, "E00001")
    write_record(tmp_path, "E00002")
    (tmp_path / "E00002.mat").unlink()
    out = list(make_ds(tmp_path).iter_signals(["E00001", "E00002", "E99999"]))
    assert [rid for rid, _ in out] == ["E00001", "E00002", "E99999"]
    np.testing.assert_array_equal(out[0][1], good.T / 1000.0)
    assert isinstance(out[1][1], RecordError) and "does not exist" in out[1][1].problem
    assert isinstance(out[2][1], RecordError) and "no header" in out[2][1].problem


def test_fingerprint_tracks_files_by_stat(tmp_path):
    write_record(tmp_path / "g1", "E00001")
    fp1 = make_ds(tmp_path).fingerprint()
    assert fp1 == make_ds(tmp_path).fingerprint()
    assert fp1["version"] and fp1["n_files"] == 2 and len(fp1["files_sha256"]) == 16
    mat = tmp_path / "g1" / "E00001.mat"
    st = mat.stat()
    os.utime(mat, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    fp2 = make_ds(tmp_path).fingerprint()
    assert fp2["files_sha256"] != fp1["files_sha256"]
    write_record(tmp_path / "g2", "E00002")
    fp3 = make_ds(tmp_path).fingerprint()
    assert fp3["n_files"] == 4 and fp3["files_sha256"] not in (fp1["files_sha256"], fp2["files_sha256"])


# --- real data ------------------------------------------------------------------------------------

needs_g12ec = pytest.mark.skipif(not G12EC.is_dir(), reason=f"real G12EC sample not found at {G12EC}")


def _dx_by_simple_parse(hea: Path) -> list[str]:
    m = re.search(r"^#Dx:(.*)$", hea.read_text(), flags=re.M)
    return list(dict.fromkeys(c.strip() for c in m.group(1).split(",") if c.strip()))


def _csv_unknown_codes():
    known: set[str] = set()
    for year in ("2020", "2021"):
        for kind in ("scored", "unscored"):
            csv = SHARED_DATA / "cinc_labels" / f"evaluation-{year}" / f"dx_mapping_{kind}.csv"
            table = pd.read_csv(csv)
            column = "SNOMED CT Code" if "SNOMED CT Code" in table else "SNOMEDCTCode"  # 2020 vs 2021
            known |= set(table[column].astype(str))
    return lambda codes: [c for c in codes if c not in known]


@pytest.mark.realdata
@needs_g12ec
def test_real_g12ec_all_records_load_with_their_dx():
    ds = CinCDataset(G12EC, unknown_codes=_csv_unknown_codes())
    df = ds.index()
    heas = sorted(G12EC.rglob("*.hea"))
    assert len(df) == len(heas) == 74 and ds.problems == []
    assert (df.fs == 500).all() and (df.n_samples == 5000).all() and (df.n_leads == 12).all()
    for rid, path, dx in zip(df.record_id, df.path, df.dx):
        assert dx == _dx_by_simple_parse(Path(path)), rid
    for _, sig in ds.iter_signals(df.record_id.tolist()):
        assert not isinstance(sig, Exception), sig
        assert sig.shape == (5000, 12) and np.isfinite(sig).all()
    np.testing.assert_array_equal(ds.read("E07509"), ds.read("E07510"))
    assert not np.array_equal(ds.read("E07509"), ds.read("E07511"))


@pytest.mark.realdata
@needs_g12ec
def test_real_g12ec_read_equals_wfdb_rdsamp(tmp_path):
    """wfdb refuses the 'E00271.mat' record line, so it reads a copy of each header with that one
    token fixed, against the original .mat (format 16 at byte offset 24, read by wfdb as raw bytes)."""
    ds = CinCDataset(G12EC, unknown_codes=lambda codes: [])
    for hea in sorted(G12EC.rglob("*.hea")):
        lines = hea.read_text().splitlines()
        lines[0] = re.sub(r"^(\S+?)\.mat\b", r"\1", lines[0])
        (tmp_path / hea.name).write_text("\n".join(lines) + "\n")
        (tmp_path / f"{hea.stem}.mat").symlink_to(hea.with_suffix(".mat"))
        sig, _ = wfdb.rdsamp(str(tmp_path / hea.stem))
        np.testing.assert_array_equal(ds.read(hea.stem), sig, err_msg=hea.stem)
