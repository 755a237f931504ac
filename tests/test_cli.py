"""The command line: summary output and JSON, bad records listed or fatal, --help everywhere."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from ecg_transfer.cli import build_parser, main

from wfdb_fixtures import make_ptbxl_tree


def run_cli(*args: str, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def write_cinc_record(folder: Path, name: str, dx: str, n_samples: int = 5000, nan: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    val = rng.integers(-500, 500, size=(12, n_samples)).astype(np.int16)
    if nan:
        val = val.astype(np.float64)
        val[3, 10] = np.nan
    scipy.io.savemat(folder / f"{name}.mat", {"val": val}, format="4")
    leads = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    lines = [f"{name} 12 500 {n_samples} 05-Feb-2020 11:39:16"]
    for lead, row in zip(leads, val):
        first = 0 if nan else int(row[0])
        lines.append(f"{name}.mat 16+24 1000/mV 16 0 {first} 0 0 {lead}")
    lines += ["#Age: 56", "#Sex: Female", f"#Dx: {dx}", "#Rx: Unknown", "#Hx: Unknown", "#Sx: Unknown"]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")


def test_ptbxl_summary_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = make_ptbxl_tree(tmp_path / "ptbxl", n_records=12)
    dat = root / "records100" / "00000" / "00004_lr.dat"
    dat.write_bytes(dat.read_bytes()[:500])
    code, out, _ = run_cli(
        "data",
        "summary",
        "--dataset",
        "ptbxl",
        "--root",
        str(root),
        "--signals",
        "--cache-dir",
        str(tmp_path / "c"),
        "--json",
        "--no-progress",
        capsys=capsys,
    )
    assert code == 0
    s = json.loads(out)
    assert s["records"] == 11 and s["records_indexed"] == 12
    assert s["tasks"]["superdiagnostic"] == 4 and s["tasks"]["rhythm"] == 2  # NORM CD HYP STTC; SR AFIB
    assert s["tasks"]["protocol:seed18"] == 18 and s["tasks"]["protocol:cinc2020"] == 24
    assert s["problems"] == [{"record": "00004", "problem": s["problems"][0]["problem"]}]
    assert "truncated" in s["problems"][0]["problem"]
    assert sum(s["folds"].values()) == 11


def test_ptbxl_summary_text_and_strict(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = make_ptbxl_tree(tmp_path / "ptbxl", n_records=12)
    (root / "records100" / "00000" / "00007_lr.hea").write_bytes(b"\xff\xfe\x00garbage")
    code, out, _ = run_cli(
        "data",
        "summary",
        "--dataset",
        "ptbxl",
        "--root",
        str(root),
        "--signals",
        "--cache-dir",
        str(tmp_path / "c"),
        "--no-progress",
        capsys=capsys,
    )
    assert code == 0 and "problems: 1" in out and "00007" in out and "not valid text" in out
    code, _, err = run_cli(
        "data",
        "summary",
        "--dataset",
        "ptbxl",
        "--root",
        str(root),
        "--signals",
        "--cache-dir",
        str(tmp_path / "c2"),
        "--no-progress",
        "--strict",
        capsys=capsys,
    )
    assert code == 2 and "00007" in err and "not valid text" in err


def test_cinc_summary_lists_every_kind_of_problem(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "cinc"
    for i in range(1, 13):
        write_cinc_record(root / "g1", f"E{i:05d}", "426783006,164873001" if i % 2 else "713427006")
    write_cinc_record(root / "g2", "E00100", "999999999")  # unknown code
    write_cinc_record(root / "g2", "E00101", "")  # empty Dx
    write_cinc_record(root / "g2", "E00102", "426783006", nan=True)  # NaN in signal
    write_cinc_record(root / "g2", "E00103", "426783006")
    (root / "g2" / "E00103.mat").unlink()  # missing .mat
    code, out, _ = run_cli(
        "data",
        "summary",
        "--dataset",
        "cinc",
        "--root",
        str(root),
        "--signals",
        "--cache-dir",
        str(tmp_path / "c"),
        "--json",
        "--no-progress",
        capsys=capsys,
    )
    assert code == 0
    s = json.loads(out)
    by_record = {}
    for p in s["problems"]:
        by_record.setdefault(Path(p["record"]).stem, []).append(p["problem"])
    assert set(by_record) == {"E00100", "E00101", "E00102", "E00103"}
    assert "999999999" in " ".join(by_record["E00100"])
    assert "Dx" in " ".join(by_record["E00101"])
    assert "float64, not integer ADC units" in " ".join(by_record["E00102"])  # float val (here with NaN): refused
    assert ".mat" in " ".join(by_record["E00103"])
    assert s["records"] == 14  # 12 good + unknown/empty Dx kept (labels flagged), NaN and missing .mat skipped
    assert s["tasks"] == {"protocol:seed18": 18, "protocol:cinc2020": 24, "dx": 4}  # dx: every code, 999999999 too
    assert s["class_counts"]["protocol:seed18"]["CRBBB"] == 6
    assert sum(s["folds"].values()) == 14


def test_every_subcommand_has_help() -> None:
    parser = build_parser()
    for argv in (
        ["--help"],
        ["download", "--help"],
        ["data", "--help"],
        ["data", "summary", "--help"],
        ["data", "cache", "--help"],
    ):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(argv)
        assert exc.value.code == 0


def test_training_help_points_to_the_reference_not_to_source_modules(capsys: pytest.CaptureFixture) -> None:
    for command in ("train", "pretrain", "finetune", "standalone"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        text = "".join(capsys.readouterr().out.split())  # argparse wraps lines at the terminal's width
        assert "ecg-transferconfigreference" in text and "docs/configuration.md" in text, command
        assert "ecg_transfer." not in text, command  # a user reads the docs, not the package's modules


def test_console_script_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "ecg_transfer", "--help"], capture_output=True, text=True, check=True)
    assert "download" in out.stdout and "data" in out.stdout


def test_unknown_root_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli(
        "data", "summary", "--dataset", "ptbxl", "--root", str(tmp_path / "nope"), "--no-progress", capsys=capsys
    )
    assert code == 2 and f"ptbxl root {tmp_path / 'nope'} does not exist" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(
        "data", "summary", "--dataset", "ptbxl", "--root", str(tmp_path / "empty"), "--no-progress", capsys=capsys
    )
    assert code == 2 and "ptbxl_database.csv" in err  # a folder that is not PTB-XL: what it lacks is named
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    code, _, err = run_cli(
        "data", "summary", "--dataset", "cinc", "--root", str(tmp_path / "link"), "--no-progress", capsys=capsys
    )
    assert code == 2 and f"broken symbolic link to {tmp_path / 'gone'}" in err  # not "is not a directory"


@pytest.mark.realdata
def test_real_g12ec_summary(g12ec_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(
        "data",
        "summary",
        "--dataset",
        "cinc",
        "--root",
        str(g12ec_root),
        "--signals",
        "--cache-dir",
        str(tmp_path / "c"),
        "--json",
        "--no-progress",
        capsys=capsys,
    )
    assert code == 0
    s = json.loads(out)
    assert s["records"] == 74 and s["sampling_rates_hz"] == [500.0] and s["seconds"] == [10.0]
    assert s["cache"]["fs"] == 500.0 and s["cache"]["samples_per_lead"] == 74 * 5000
    assert s["tasks"] == {"protocol:seed18": 18, "protocol:cinc2020": 24, "dx": 28}  # dx: counted in test_labels
    assert sum(s["folds"].values()) == 74 and len(s["folds"]) == 10


def test_train_without_a_task_table_names_the_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "notask.toml"
    config.write_text('model = "xresnet1d18"\nepochs = 1\n')
    code, _, err = run_cli("train", str(config), "--run-dir", str(tmp_path / "run"), capsys=capsys)
    assert code != 0
    assert str(config) in err and "no [task] table" in err
