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
        "description": [
            "normal ECG",
            "complete right bundle branch block",
            "left ventricular hypertrophy",
            "sinus rhythm",
            "atrial fibrillation",
            "non-specific ST changes",
        ],
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
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * 12,
        sig_name=LEADS,
        d_signal=digital.astype(np.int64),
        fmt=["16"] * 12,
        adc_gain=[1000.0] * 12,
        baseline=[0] * 12,
        write_dir=str(folder),
    )


def make_ptbxl_tree(root: Path, n_records: int = 12, rates: tuple[int, ...] = (100,), seed: int = 0) -> Path:
    """A PTB-XL-shaped tree with ``n_records`` records at the given rates; returns its root."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(1, n_records + 1):
        folder = f"{(i // 1000) * 1000:05d}"
        for fs in rates:
            t = np.arange(10 * fs) / fs
            sig = 0.5 * np.sin(2 * np.pi * 1.2 * t)[:, None] * rng.uniform(0.5, 1.5, 12) + rng.normal(
                0, 0.05, (10 * fs, 12)
            )
            sub = "records100" if fs == 100 else "records500"
            write_record(root / sub / folder, f"{i:05d}_{'lr' if fs == 100 else 'hr'}", sig, fs)
        rows.append(
            {
                "ecg_id": i,
                "patient_id": float(1000 + i // 2),
                "age": float(30 + i),
                "sex": i % 2,
                "scp_codes": repr(CODE_SETS[i % len(CODE_SETS)]),
                "strat_fold": (i - 1) % 10 + 1,
                "filename_lr": f"records100/{folder}/{i:05d}_lr",
                "filename_hr": f"records500/{folder}/{i:05d}_hr",
            }
        )
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    STATEMENTS.to_csv(root / "scp_statements.csv")
    return root


CINC_LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
CINC_CODES = ["426783006", "164889003", "59118001", "270492004"]  # NSR, AF, RBBB, IAVB (cinc2020 classes)


def write_cinc(folder: Path, name: str, val: np.ndarray, dx: str) -> None:
    """One G12EC-layout record (.mat with ``val`` + header with checksums; the record line names
    the record ``E00001.mat``, G12EC's quirk)."""
    write_cinc_record(folder, name, val, leads=CINC_LEADS, fmt="16+24", dx=dx, record_line_name=f"{name}.mat")


def make_cinc_tree(root: Path, n_records: int = 80, n_samples: int = 5000, seed: int = 0) -> Path:
    """``n_records`` G12EC-like records (10 s at 500 Hz) with labels cycling through CINC_CODES."""
    rng = np.random.default_rng(seed)
    for i in range(1, n_records + 1):
        val = rng.integers(-800, 800, size=(12, n_samples)).astype(np.int16)
        dx = CINC_CODES[i % 4] + ("," + CINC_CODES[(i + 1) % 4] if i % 5 == 0 else "")
        write_cinc(root, f"E{i:05d}", val, dx)
    return root


# -- general writers for the lead, hostile-input and audit tests ------------------------------------
STANDARD_NAMES = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def checksum16(row: np.ndarray) -> int:
    """WFDB's signed 16-bit checksum of one lead's samples."""
    return int((int(row.astype(np.int64).sum()) + 32768) % 65536 - 32768)


def write_cinc_record(
    folder: Path,
    name: str,
    val: np.ndarray,
    *,
    leads: list[str] | None = None,
    fs: float = 500,
    fmt: str = "16x1+24",
    gains: list[str] | None = None,
    dx: str = "426783006",
    n_samples: int | None = None,
    mat_format: str = "4",
    do_compression: bool = False,
    file_name: str | None = None,
    record_line_name: str | None = None,
) -> Path:
    """A CinC 2021-style record: ``val`` (leads x samples) in a .mat and a header naming ``leads``.

    ``fmt`` is the header's format field (``16x1+24`` as in the 2021 sets, ``16+24`` in 2020);
    ``n_samples`` / ``file_name`` override what the header claims, for tests of broken headers.
    """
    import scipy.io

    folder.mkdir(parents=True, exist_ok=True)
    leads = leads or STANDARD_NAMES[: val.shape[0]]
    kwargs = {"do_compression": do_compression} if mat_format == "5" else {}
    scipy.io.savemat(folder / f"{name}.mat", {"val": val}, format=mat_format, **kwargs)
    n = val.shape[1] if n_samples is None else n_samples
    target = file_name or f"{name}.mat"
    lines = [f"{record_line_name or name} {len(leads)} {fs:g} {n} 05-May-2020 14:50:55"]
    for i, lead in enumerate(leads):
        row = np.asarray(val[i]).real.astype(np.int64)
        gain = gains[i] if gains else "1000/mV"
        lines.append(f"{target} {fmt} {gain} 16 0 {int(row[0])} {checksum16(row)} 0 {lead}")
    lines += ["#Age: 50", "#Sex: Female", f"#Dx: {dx}", "#Rx: Unknown", "#Hx: Unknown", "#Sx: Unknown"]
    hea = folder / f"{name}.hea"
    hea.write_text("\n".join(lines) + "\n")
    return hea


def write_wfdb_record(
    folder: Path, name: str, signal_mv: np.ndarray, fs: float, leads: list[str], fmt: str = "16", gain: float = 1000.0
) -> Path:
    """A WFDB record (.hea + .dat) with any lead names and order, written by wfdb itself."""
    folder.mkdir(parents=True, exist_ok=True)
    digital = np.round(signal_mv * gain).astype(np.int64)
    n = len(leads)
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * n,
        sig_name=list(leads),
        d_signal=digital,
        fmt=[fmt] * n,
        adc_gain=[gain] * n,
        baseline=[0] * n,
        write_dir=str(folder),
    )
    return folder / f"{name}.hea"


def ecg_like(n_samples: int, fs: float, n_leads: int = 12, seed: int = 0) -> np.ndarray:
    """A cheap ECG-shaped signal in mV (samples, leads): beats at a random rate plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / fs
    rate = rng.uniform(0.8, 1.8)
    beat = np.exp(-(((t * rate) % 1.0 - 0.3) ** 2) / 0.0008)
    wave = 0.25 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 6))
    amp = rng.uniform(-1.5, 1.5, n_leads)
    return (
        beat[:, None] * amp + wave[:, None] * rng.uniform(0.2, 1, n_leads) + rng.normal(0, 0.02, (n_samples, n_leads))
    )
