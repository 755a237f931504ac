"""The leakage audit: exact and near duplicates within and across sets, the same recording at two
rates, what is not audited, the CLI, leaked_records, and the real data (G12EC's known copy,
PTB-XL's 100 Hz and 500 Hz copies of the same recordings)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.signal import resample_poly

from ecg_transfer.cli import main as cli_main
from ecg_transfer.datasets.audit import (
    AUDIT_LEADS,
    AuditSettings,
    _lowpass,
    candidate_pairs,
    find_duplicates,
    leaked_records,
    load_audit,
    set_name,
)

from wfdb_fixtures import STANDARD_NAMES, ecg_like, make_ptbxl_tree, write_cinc_record, write_wfdb_record


def _digital(mv: np.ndarray) -> np.ndarray:
    """(samples, leads) mV -> (leads, samples) int16 at 1000 adu/mV, as the .mat files hold it."""
    return np.round(mv * 1000).astype(np.int16).T


def _analog(seed: int, seconds: float, fs: int = 1000) -> np.ndarray:
    return ecg_like(int(seconds * fs), fs, seed=seed)


def _at(mv_1000hz: np.ndarray, fs: int) -> np.ndarray:
    """The 1 kHz 'analog' signal as another device would have stored it at ``fs``."""
    return mv_1000hz if fs == 1000 else resample_poly(mv_1000hz, fs, 1000, axis=0)


@pytest.fixture()
def collection(tmp_path: Path) -> tuple[Path, Path, dict]:
    """Two CinC-format sets with planted duplicates; returns (set A, set B, what was planted)."""
    a, b = tmp_path / "A", tmp_path / "B"
    for i in range(12):
        write_cinc_record(a, f"A{i:03d}", _digital(_at(_analog(i, 10), 500)))
    copy = _digital(_at(_analog(100, 10), 500))
    write_cinc_record(a, "A100", copy)
    write_cinc_record(a, "A101", copy)  # exact, within A
    x = _analog(200, 12)
    write_cinc_record(a, "A200", _digital(_at(x, 500)))
    write_cinc_record(b, "B200", _digital(_at(x, 1000)), fs=1000)  # near, across: 500 vs 1000 Hz
    write_cinc_record(b, "B201", _digital(_at(x, 257)[: 257 * 8]), fs=257)  # and at 257 Hz, 8 s
    y = _analog(300, 60)
    write_cinc_record(a, "A300", _digital(_at(y, 500)))  # 60 s ...
    write_cinc_record(b, "B300", _digital(_at(y[:10_000], 500)))  # ... and its first 10 s
    write_cinc_record(b, "B400", _digital(0.2 * _at(_analog(400, 10), 500)))  # low voltage, unrelated
    write_cinc_record(b, "B401", _digital(0.2 * _at(_analog(401, 10), 500)))
    write_cinc_record(b, "B500", np.zeros((12, 5000), np.int16))  # flat
    write_cinc_record(b, "B600", _digital(_at(_analog(600, 4), 500)))  # 4 s: too short
    write_cinc_record(b, "B700", _digital(_at(_analog(700, 10), 500))[:10], leads=STANDARD_NAMES[:10])
    planted = {
        ("A", "A100", "A", "A101"): ("exact", False),
        ("A", "A200", "B", "B200"): ("near", True),
        ("A", "A200", "B", "B201"): ("near", True),
        ("B", "B200", "B", "B201"): ("near", False),
        ("A", "A300", "B", "B300"): ("near", True),
    }
    return a, b, planted


def _found(result, a: Path, b: Path) -> dict:
    name = {set_name(a): "A", set_name(b): "B"}
    return {(name[p.set_a], p.record_a, name[p.set_b], p.record_b): (p.kind, p.across) for p in result.pairs}


def test_finds_exactly_the_planted_duplicates(collection):
    a, b, planted = collection
    result = find_duplicates([a, b], workers=2)
    assert _found(result, a, b) == planted
    for p in result.pairs:
        assert p.rms_mv <= 0.1 and p.relative <= 0.3
        assert p.kind != "exact" or p.rms_mv == p.max_abs_mv == 0
    groups = {frozenset(r for _, r in g) for g in result.groups}
    assert groups == {frozenset({"A100", "A101"}), frozenset({"A200", "B200", "B201"}), frozenset({"A300", "B300"})}
    assert result.flat == [(set_name(b), "B500")]
    skipped = {s["record"]: s["problem"] for s in result.skipped}
    assert "shorter than the audit's 6 s" in skipped["B600"]
    assert any("B700" in r and "missing lead(s) V5, V6" in t for r, t in skipped.items())
    assert result.sets == [
        {"set": set_name(a), "kind": "cinc", "records": 16, "audited": 16},
        {"set": set_name(b), "kind": "cinc", "records": 7, "audited": 6},
    ]  # B700: not indexed


def test_same_answer_with_one_worker_and_tolerance_is_applied(collection):
    a, b, planted = collection
    two = find_duplicates([a, b], workers=2)
    one = find_duplicates([a, b], workers=1)
    assert one.pairs == two.pairs
    strict = find_duplicates([a, b], settings=AuditSettings(tolerance=1e-4), workers=1)
    # identical samples in the window stay; copies at another rate differ by more than 0.1 uV
    assert set(_found(strict, a, b)) == {("A", "A100", "A", "A101"), ("A", "A300", "B", "B300")}


def test_leaked_records_follow_chains_of_copies(collection):
    a, b, _ = collection
    result = find_duplicates([a, b], workers=1)
    source = [(a, f"A{i:03d}") for i in range(12)] + [(a, "A200")]
    test = [(b, "B201"), (b, "B300"), (b, "B400")]
    assert leaked_records(source, test, result) == [((set_name(a), "A200"), (set_name(b), "B201"))]
    assert leaked_records([(str(a) + "/", "A300")], test, result) == [((set_name(a), "A300"), (set_name(b), "B300"))]


def test_ptbxl_records_redistributed_in_cinc_format_are_found(tmp_path):
    """CinC 2021's HR records are PTB-XL's 500 Hz records; the audit reads PTB-XL's 100 Hz copies."""
    ptbxl = make_ptbxl_tree(tmp_path / "ptbxl", n_records=8)
    folder = ptbxl / "records100" / "00000"
    for i in range(1, 9):
        x = _analog(1000 + i, 10)
        write_wfdb_record(folder, f"{i:05d}_lr", _at(x, 100), 100, STANDARD_NAMES)
        if i % 2:
            write_cinc_record(tmp_path / "cinc", f"HR{i:05d}", _digital(_at(x, 500)))
    result = find_duplicates([ptbxl, tmp_path / "cinc"], workers=1)
    across = {frozenset((p.record_a, p.record_b)) for p in result.pairs if p.across}
    assert across == {frozenset((f"{i:05d}", f"HR{i:05d}")) for i in (1, 3, 5, 7)}
    assert result.sets[0]["kind"] == "ptbxl" and result.sets[0]["audited"] == 8


def test_candidates_keep_every_pair_within_the_tolerance():
    """The sketch filter's recall: copies perturbed up to the tolerance are always candidates."""
    settings = AuditSettings()
    rng = np.random.default_rng(0)
    n, planted = 3000, 300
    base = rng.normal(0, 1, (n, 250, 8)) * rng.uniform(0.05, 0.6, (n, 1, 8))
    noise = rng.normal(0, 1, (planted, 250, 8))
    noise *= 0.099 / np.sqrt((noise**2).mean(axis=1, keepdims=True))  # every lead just under 0.1 mV RMS
    windows = np.concatenate([base, base[:planted] + noise])
    from ecg_transfer.datasets.audit import projection

    proj = projection(settings)
    sketch = (windows.reshape(len(windows), -1) / np.sqrt(250 * 8)) @ proj
    r = np.sqrt((windows**2).mean(axis=(1, 2)))
    pairs = {tuple(p) for p in candidate_pairs(r, sketch, settings).tolist()}
    lead_rms_ok = r[:planted] >= 0.099 / settings.relative  # pairs the relative test can also accept
    expected = {(i, n + i) for i in range(planted) if lead_rms_ok[i]}
    assert expected and expected <= pairs
    assert len(pairs) < 20 * planted  # and few others


def test_lowpass_is_scipys_own_design():
    x = np.random.default_rng(1).normal(size=(3000, 8))
    for up, down in [(1, 10), (1, 2), (50, 257), (1, 20)]:
        expected = resample_poly(x, up, down, axis=0)
        for _ in range(2):  # the cached filter is not modified by use
            np.testing.assert_array_equal(resample_poly(x, up, down, axis=0, window=_lowpass(up, down)), expected)


def test_cli_writes_json_and_csv(collection, tmp_path, capsys):
    a, b, planted = collection
    out = tmp_path / "audit.json"
    assert cli_main(["data", "audit", str(a), str(b), "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "duplicate pairs: 5" in printed and "exact within 1" in printed and "near across 3" in printed
    data = json.loads(out.read_text())
    assert data["summary"]["pairs"] == 5 and data["settings"]["leads"] == list(AUDIT_LEADS)
    assert load_audit(out).pairs == find_duplicates([a, b], workers=1).pairs
    out_csv = tmp_path / "pairs.csv"
    assert (
        cli_main(["data", "audit", str(a), str(b), "--out", str(out_csv), "--workers", "1", "--tolerance", "0.0001"])
        == 0
    )
    rows = list(csv.DictReader(out_csv.open()))
    assert [(r["record_a"], r["record_b"], r["kind"]) for r in rows] == [
        ("A100", "A101", "exact"),
        ("A300", "B300", "near"),
    ]


# -- real data ---------------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_real_g12ec_known_copy_is_the_only_pair(g12ec_root):
    result = find_duplicates([g12ec_root], workers=2)
    assert [(p.record_a, p.record_b, p.kind) for p in result.pairs] == [("E07509", "E07510", "exact")]
    assert result.sets[0]["audited"] == 74 and result.skipped == [] and result.flat == []


@pytest.mark.realdata
@pytest.mark.slow
def test_real_ptbxl_500hz_records_match_their_100hz_copies(ptbxl_root, tmp_path):
    """The PTB-XL records present at 500 Hz, written as CinC 2021 writes them (HR*.mat), against a
    PTB-XL tree of the same records at 100 Hz: every recording pairs across with its copy, and the
    pairs found inside one set are identical recordings (PTB-XL's own duplicates), not look-alikes."""
    from ecg_transfer.datasets.ptbxl import PTBXL

    hi = PTBXL(ptbxl_root, fs=500, allow_missing=True)
    ids = hi.index()["record_id"].tolist()
    assert len(ids) >= 500
    db = pd.read_csv(ptbxl_root / "ptbxl_database.csv")
    sub = tmp_path / "ptbxl"
    (sub / "records100").mkdir(parents=True)
    db[db["ecg_id"].isin([int(i) for i in ids])].to_csv(sub / "ptbxl_database.csv", index=False)
    shutil.copy(ptbxl_root / "scp_statements.csv", sub)
    for folder in {Path(f).parent.name for f in db["filename_lr"]}:
        (sub / "records100" / folder).symlink_to(ptbxl_root / "records100" / folder)
    for rid in ids:
        write_cinc_record(tmp_path / "cinc", f"HR{rid}", _digital(hi.read(rid)))
    result = find_duplicates([sub, tmp_path / "cinc"], workers=2)
    group_of = {k: n for n, g in enumerate(result.groups) for k in g}
    for rid in ids:
        assert group_of[(set_name(sub), rid)] == group_of[(set_name(tmp_path / "cinc"), f"HR{rid}")], rid
    cross = [p for p in result.pairs if p.across]
    assert max(p.rms_mv for p in cross) <= 0.07 and max(p.relative for p in cross) <= 0.12
    within = [p for p in result.pairs if not p.across]
    assert within  # PTB-XL holds copies of its own (e.g. 00137 = 00138, 00145 = 00463, another patient id)
    assert max(p.rms_mv for p in within) < 0.005  # sample for sample: copies, not look-alikes
