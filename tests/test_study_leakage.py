"""`study run` audits source and target first: a target record that copies a PTB-XL pre-training
record is counted in a warning, refused with [study] leakage = "strict", and the audit is kept."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import resample_poly

from ecg_transfer.errors import DatasetError
from ecg_transfer.study.leakage import check_leakage
from ecg_transfer.study.spec import spec_from_dict
from wfdb_fixtures import STANDARD_NAMES, ecg_like, make_ptbxl_tree, write_cinc_record, write_wfdb_record


def _sets(tmp_path, copy_of: int | None):
    """PTB-XL (fold of record i: (i - 1) % 10 + 1) and a CinC set; record ``copy_of`` re-distributed."""
    ptbxl = make_ptbxl_tree(tmp_path / "ptbxl", n_records=10)
    for i in range(1, 11):
        x = ecg_like(10_000, 1000, seed=1000 + i)
        write_wfdb_record(
            ptbxl / "records100" / "00000", f"{i:05d}_lr", resample_poly(x, 1, 10, axis=0), 100, STANDARD_NAMES
        )
        if i == copy_of:
            write_cinc_record(
                tmp_path / "cinc", "HR00001", np.round(resample_poly(x, 1, 2, axis=0) * 1000).astype(np.int16).T
            )
    for j in range(6):
        x = ecg_like(5000, 500, seed=j)
        write_cinc_record(tmp_path / "cinc", f"E{j:05d}", np.round(x * 1000).astype(np.int16).T)
    return ptbxl, tmp_path / "cinc"


def _spec(ptbxl, cinc, leakage="warn"):
    return spec_from_dict(
        {"source": {"root": str(ptbxl)}, "target": {"root": str(cinc), "name": "T"}, "study": {"leakage": leakage}}
    )


def test_a_copied_pretraining_record_is_warned_refused_or_ignored(tmp_path):
    ptbxl, cinc = _sets(tmp_path, copy_of=3)  # record 3: fold 3, a pre-training fold
    said: list[str] = []
    leaks = check_leakage(_spec(ptbxl, cinc), tmp_path / "study", echo=said.append)
    assert [(s[1], t[1]) for s, t in leaks] == [("00003", "HR00001")]
    assert any(
        m.startswith("WARNING: 1 T record(s) are copies of PTB-XL pre-training records (HR00001 = PTB-XL 00003")
        for m in said
    )
    assert (tmp_path / "study" / "audit" / "audit.json").exists()
    said.clear()
    with pytest.raises(DatasetError, match="1 T record"):
        check_leakage(_spec(ptbxl, cinc, "strict"), tmp_path / "study", echo=said.append)
    assert not any("leakage audit:" in m for m in said)  # the kept audit answered: nothing read again
    assert check_leakage(_spec(ptbxl, cinc, "off"), tmp_path / "study", echo=said.append) == []


def test_a_copy_of_a_test_fold_record_is_not_a_pretraining_leak(tmp_path):
    ptbxl, cinc = _sets(tmp_path, copy_of=10)  # record 10: fold 10, never pre-trained on
    said: list[str] = []
    assert check_leakage(_spec(ptbxl, cinc, "strict"), tmp_path / "study", echo=said.append) == []
    assert said[-1] == "leakage audit: no T record duplicates a PTB-XL pre-training record"
