"""What the data layer says about the records behind a number: those left out for having none of
the task's labels (counted, printed, saved with the run), the records a summary found, how the
docs name the label sets in a config, and the download / cache wording."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest

from ecg_transfer.cli import _announce, build_parser, main
from ecg_transfer.datasets.task import load_task
from ecg_transfer.settings import RunConfig

from wfdb_fixtures import CINC_CODES, make_cinc_tree, write_cinc, write_cinc_record

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {"filters": [8, 8], "kernel_sizes": [5, 3], "head_hidden": [8], "head_dropout": 0.1}


@pytest.fixture(scope="module")
def cinc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 records with labels cycling through NSR, AF, RBBB, IAVB; NSR and AF are not seed18 classes."""
    return make_cinc_tree(tmp_path_factory.mktemp("cinc") / "set", n_records=40, n_samples=1500)  # 3 s


def _task(root: Path, cache: Path, **extra) -> dict:
    return {"dataset": "cinc", "root": str(root), "labels": "protocol:seed18", "cache_dir": str(cache), **extra}


def _unlabelled_for_seed18(data) -> set[str]:
    """Record ids of the table whose only codes are NSR or AF (outside seed18): the rule's victims."""
    outside = set(CINC_CODES[:2])
    return {str(r) for r, dx in zip(data.table["record_id"], data.table["dx"]) if set(dx) <= outside}


# -- item 1: records with none of the task's labels ---------------------------------------------
def test_load_task_counts_the_records_left_out_for_having_no_label(cinc: Path, tmp_path: Path) -> None:
    data = load_task(_task(cinc, tmp_path), 100.0, progress=False)
    victims = _unlabelled_for_seed18(data)
    assert victims  # the fixture has NSR-only records
    used = {data.record_ids[r] for rows in data.splits.values() for r in rows}
    assert not used & victims  # the benchmark's rule is kept
    assert set(data.dropped_unlabelled) == set(data.fold_records) == {"train", "val", "test"}
    assert sum(data.dropped_unlabelled.values()) == len(victims)
    assert sum(data.fold_records.values()) == len(data.table) == 40
    for split, rows in data.splits.items():
        assert len(rows) + data.dropped_unlabelled[split] == data.fold_records[split], split
    n = sum(data.dropped_unlabelled.values())
    assert (
        data.left_out_line()
        == f"{n} of the folds' 40 records left out: none of the task's {len(data.label_names)} labels"
    )

    every = load_task(_task(cinc, tmp_path, labels="protocol:cinc2020"), 100.0, progress=False)
    assert sum(every.dropped_unlabelled.values()) == 0 and every.left_out_line() == ""  # all four are cinc2020's


def test_train_fraction_counts_the_training_folds_before_the_cut(cinc: Path, tmp_path: Path) -> None:
    full = load_task(_task(cinc, tmp_path), 100.0, progress=False)
    part = load_task(
        _task(cinc, tmp_path, train_fraction=0.5, fraction_parts=2, test_folds=[], test_on_rest=True),
        100.0,
        progress=False,
    )
    assert part.dropped_unlabelled["train"] == full.dropped_unlabelled["train"]
    assert part.fold_records["train"] == full.fold_records["train"]
    assert part.dropped_unlabelled["test"] == part.fold_records["test"] == 0  # no test folds: tested on the rest


def test_the_split_sizes_line_says_how_many_were_left_out(
    cinc: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = load_task(_task(cinc, tmp_path), 100.0, progress=False)
    config = RunConfig.from_dict({"model": "fcn_wang", "fs": 100.0, "task": _task(cinc, tmp_path)})
    _announce(config, data)
    err = capsys.readouterr().err
    n, k = sum(data.dropped_unlabelled.values()), len(data.label_names)
    sizes = ", ".join(f"{s} {len(data.splits[s])}" for s in ("train", "val", "test"))
    assert f"{sizes} records ({n} of the folds' 40 records left out: none of the task's {k} labels) at 100 Hz" in err


def test_a_run_saves_the_left_out_counts_in_label_counts_json(cinc: Path, tmp_path: Path) -> None:
    from ecg_transfer.training.data import load_training_data, train_on_data

    config = RunConfig.from_dict(
        {
            "model": "fcn_wang",
            "model_kwargs": TINY_MODEL,
            "fs": 100.0,
            "batch_size": 8,
            "epochs": 1,
            "device": "cpu",
            "seed": 0,
            "task": _task(cinc, tmp_path / "cache", min_count=1),
        }
    )
    data, labels = load_training_data(config)
    assert sum(data.dropped_unlabelled.values()) > 0
    train_on_data(config, data, labels, tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "label_counts.json").read_text())
    assert saved["dropped_unlabelled"] == data.dropped_unlabelled
    assert saved["fold_records"] == data.fold_records
    for split, n in saved["records"].items():
        assert n + saved["dropped_unlabelled"][split] == saved["fold_records"][split]
    from ecg_transfer.inference.modelcard import model_card_text

    card = model_card_text(tmp_path / "run", n_resamples=20)
    dropped, total = sum(data.dropped_unlabelled.values()), sum(data.fold_records.values())
    assert f"- Left out: {dropped} of {total} records of these folds carry none of the task's labels" in card
    assert f"test folds {data.dropped_unlabelled['test']}" in card


# -- item 2: how a config names a label protocol ---------------------------------------------------
def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end, text.index(start))]


def test_the_docs_name_protocols_as_a_config_takes_them() -> None:
    from ecg_transfer.settings.task import label_set_error

    assert label_set_error("seed18", "cinc") is not None  # a bare name is refused in a run config ...
    assert label_set_error("protocol:seed18", "cinc") is None  # ... the prefixed one is taken
    labels = _section((REPO / "README.md").read_text(encoding="utf-8"), "## Labels", "## The CLI")
    guide = _section((REPO / "docs" / "guide.md").read_text(encoding="utf-8"), "## 2.", "## 3.")
    for text in (labels, guide):
        assert '`labels = "protocol:seed18"`' in text and "protocol:cinc2020" in text
        assert "left out" in text and "dropped_unlabelled" in text and "label_counts.json" in text
        for value in re.findall(r'labels = "([^"]+)"', text):
            assert label_set_error(value, "cinc") is None, value


# -- item 3: the summary's record count and records without a Dx ----------------------------------
def _five_with_three_broken(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        write_cinc(root, f"E{i:05d}", rng.integers(-500, 500, size=(12, 1000)).astype(np.int16), CINC_CODES[1])
    write_cinc_record(root, "E00002", np.zeros((12, 1000), np.int16), n_samples=2000)  # header disagrees
    (root / "E00003.hea").write_text("E00003 twelve 500 1000\n")  # does not parse
    (root / "E00005.mat").unlink()  # no signal file
    write_cinc_record(root, "E00004", np.ones((12, 1000), np.int16), dx="")  # empty Dx: kept, no labels
    return root


@pytest.mark.parametrize("signals", [False, True])
def test_summary_counts_every_record_found(tmp_path: Path, capsys: pytest.CaptureFixture, signals: bool) -> None:
    root = _five_with_three_broken(tmp_path / "set")
    args = ["data", "summary", "--dataset", "cinc", "--root", str(root), "--no-progress"]
    args += ["--signals", "--cache-dir", str(tmp_path / "c")] if signals else []
    assert main([*args, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["records"] == 2 and s["records_found"] == 5
    assert s["records_without_labels"]["dx"] == 1  # E00004: kept, and a run would leave it out
    skipped = {Path(p["record"]).stem for p in s["problems"] if p["problem"].endswith("[record skipped]")}
    assert skipped == {"E00002", "E00003", "E00005"}
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "records: 2 usable of 5 found (3 skipped: see problems)" in out
    assert "E00004.hea: empty #Dx [record kept, no labels]" in out


def test_readme_says_a_record_without_dx_is_kept(tmp_path: Path) -> None:
    """The README's list of skipped records must not name what the loader keeps."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    para = readme[readme.index("Every subcommand has `--help`.") :].split("\n\n")[0]
    skipped = para[: para.index("skipped and listed")]
    assert "Dx" not in skipped
    assert "`#Dx` line" in para and "kept" in para


# -- items 4 and 5: download help, data cache wording ---------------------------------------------
def _download_help(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_help().split())


def test_download_help_says_root_is_the_datasets_own_folder(capsys: pytest.CaptureFixture) -> None:
    from ecg_transfer.datasets.download import add_download_arguments

    with pytest.raises(SystemExit):
        build_parser().parse_args(["download", "--help"])
    cli_help = " ".join(capsys.readouterr().out.split())
    for text in (cli_help, _download_help(add_download_arguments(argparse.ArgumentParser()))):
        assert "<dataset>" not in text and "ROOT/" not in text
        assert "DIR/ptbxl_database.csv" in text or "its own folder" in text
        assert "under DIR (where they land" in text


def test_data_cache_says_the_samples_are_a_total(cinc: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["data", "cache", "--dataset", "cinc", "--root", str(cinc), "--to-fs", "100"]
    assert main([*args, "--cache-dir", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "40 records, 12 leads, 12000 samples per lead summed over the records at 100 Hz" in out
