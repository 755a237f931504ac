"""Tiny PTB-XL-shaped WFDB trees written with wfdb itself, for tests that must not need real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

LEADS = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]

# A few real statements (from PTB-XL's scp_statements.csv layout) so the label tasks have content.
STATEMENTS = pd.DataFrame(
    {
        "description": ["normal ECG", "complete right bundle branch block", "left ventricular hypertrophy",
                        "sinus rhythm", "atrial fibrillation", "non-specific ST changes"],
        "diagnostic": [1.0, 1.0, 1.0, np.nan, np.nan, 1.0],
        "form": [np.nan, np.nan, np.nan, np.nan, np.nan, 1.0],
        "rhythm": [np.nan, np.nan, np.nan, 1.0, 1.0, np.nan],
        "diagnostic_class": ["NORM", "CD", "HYP", np.nan, np.nan, "STTC"],
        "diagnostic_subclass": ["NORM", "CRBBB", "LVH", np.nan, np.nan, "NST_"],
    },
    index=pd.Index(["NORM", "CRBBB", "LVH", "SR", "AFIB", "NST_"]),
)
CODE_SETS = [
    {"NORM": 100.0, "SR": 0.0},
    {"CRBBB": 100.0, "SR": 0.0},
    {"LVH": 50.0, "AFIB": 0.0},
    {"NST_": 100.0, "NORM": 0.0, "SR": 0.0},
]


def write_record(folder: Path, name: str, signal_mv: np.ndarray, fs: int) -> None:
    """Write one format-16 record with gain 1000/mV, as PTB-XL's are."""
    folder.mkdir(parents=True, exist_ok=True)
    digital = np.round(signal_mv * 1000).astype(np.int16)
    wfdb.wrsamp(name, fs=fs, units=["mV"] * 12, sig_name=LEADS, d_signal=digital.astype(np.int64),
                fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(folder))


def make_ptbxl_tree(root: Path, n_records: int = 12, rates: tuple[int, ...] = (100,), seed: int = 0) -> Path:
    """A PTB-XL-shaped tree with ``n_records`` records at the given rates; returns its root."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(1, n_records + 1):
        folder = f"{(i // 1000) * 1000:05d}"
        for fs in rates:
            t = np.arange(10 * fs) / fs
            sig = 0.5 * np.sin(2 * np.pi * 1.2 * t)[:, None] * rng.uniform(0.5, 1.5, 12) + rng.normal(0, 0.05, (10 * fs, 12))
            sub = "records100" if fs == 100 else "records500"
            write_record(root / sub / folder, f"{i:05d}_{'lr' if fs == 100 else 'hr'}", sig, fs)
        rows.append(
            {
                "ecg_id": i, "patient_id": float(1000 + i // 2), "age": float(30 + i), "sex": i % 2,
                "scp_codes": repr(CODE_SETS[i % len(CODE_SETS)]), "strat_fold": (i - 1) % 10 + 1,
                "filename_lr": f"records100/{folder}/{i:05d}_lr", "filename_hr": f"records500/{folder}/{i:05d}_hr",
            }
        )
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    STATEMENTS.to_csv(root / "scp_statements.csv")
    return root


CINC_LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
CINC_CODES = ["426783006", "164889003", "59118001", "270492004"]  # NSR, AF, RBBB, IAVB (cinc2020 classes)


def write_cinc(folder: Path, name: str, val: np.ndarray, dx: str) -> None:
    """One G12EC-layout record (.mat with ``val`` + header with checksums)."""
    import scipy.io

    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / f"{name}.mat", {"val": val}, format="4")
    lines = [f"{name}.mat 12 500 {val.shape[1]} 05-May-2020 14:50:55"]
    for lead, row in zip(CINC_LEADS, val):
        check = int((int(row.astype(np.int64).sum()) + 32768) % 65536 - 32768)
        lines.append(f"{name}.mat 16+24 1000/mV 16 0 {int(row[0])} {check} 0 {lead}")
    lines += ["#Age: 50", "#Sex: Female", f"#Dx: {dx}", "#Rx: Unknown", "#Hx: Unknown", "#Sx: Unknown"]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")


def make_cinc_tree(root: Path, n_records: int = 80, n_samples: int = 5000, seed: int = 0) -> Path:
    """``n_records`` G12EC-like records (10 s at 500 Hz) with labels cycling through CINC_CODES."""
    rng = np.random.default_rng(seed)
    for i in range(1, n_records + 1):
        val = rng.integers(-800, 800, size=(12, n_samples)).astype(np.int16)
        dx = CINC_CODES[i % 4] + ("," + CINC_CODES[(i + 1) % 4] if i % 5 == 0 else "")
        write_cinc(root, f"E{i:05d}", val, dx)
    return root
