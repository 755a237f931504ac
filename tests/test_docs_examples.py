"""The documentation runs: every command of docs/guide.md and every ```python block of docs/api.md
is executed here, on synthetic PTB-XL and CinC-format folders laid out as the docs describe, with
the repository's own configs made tiny: their task, labels and folds as written, a small network
and one epoch. A config that leaves its epochs to ``finetune``'s head-then-all preset (30 + 30) gets
one epoch of policy ``all`` instead, which both ``finetune`` and ``standalone`` accept (the preset
itself is tested in test_task_cli.py). The TOML of the guide must be the example config's, and every
config in configs/ must validate."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import numpy as np
import pytest

from ecg_transfer.settings import RunConfig, load_config

from wfdb_fixtures import make_ptbxl_tree, write_cinc

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
TINY = {
    "model": "fcn_wang",
    "batch_size": 8,
    "model_kwargs": {"filters": [8, 8], "kernel_sizes": [5, 3], "head_hidden": [8], "head_dropout": 0.0},
}
NEEDS_CAPTUM = "the docs explain a prediction, which needs captum (pip install 'ecg-transfer[explain]')"
CODES = ["426783006", "164889003", "59118001", "270492004"]  # NSR, AF, RBBB, IAVB


def blocks(doc: Path, lang: str) -> list[str]:
    """The fenced ```lang blocks of a Markdown file, in order."""
    return re.findall(rf"^```{lang}\n(.*?)^```", doc.read_text(encoding="utf-8"), flags=re.S | re.M)


def shell_commands(doc: Path) -> list[list[str]]:
    """The ``ecg-transfer ...`` lines of the ```bash blocks, as argument lists (without the program)."""
    lines = [line for block in blocks(doc, "bash") for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("ecg-transfer ")]


def _write_tiny(config: Path, dest: Path) -> None:
    """``config`` with a tiny network and one epoch (see the module docstring)."""
    cfg = tomllib.loads(config.read_text(encoding="utf-8"))
    if "epochs" not in cfg and "finetune" not in cfg:
        cfg["finetune"] = {"policy": "all"}
    cfg.update(TINY, epochs=1)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(_toml(cfg))
    assert load_config(dest).model == "fcn_wang"


def _toml(cfg: dict) -> str:
    """A flat TOML writer for run configs (top-level keys, then one table per dict)."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return repr(v)

    top = [f"{k} = {value(v)}" for k, v in cfg.items() if not isinstance(v, dict) or k == "model_kwargs"]
    tables = [
        f"[{k}]\n" + "\n".join(f"{kk} = {value(vv)}" for kk, vv in v.items())
        for k, v in cfg.items()
        if isinstance(v, dict) and k != "model_kwargs"
    ]
    return "\n".join(top) + "\n\n" + "\n\n".join(tables) + "\n"


def _cinc_folder(root: Path, n: int, prefix: str, seed: int) -> None:
    """``n`` CinC records (10 s at 500 Hz, 12 leads) over two sub-folders, labels cycling through CODES."""
    rng = np.random.default_rng(seed)
    t = np.arange(5000) / 500
    for i in range(1, n + 1):
        beat = np.sin(2 * np.pi * (1.0 + 0.3 * (i % 4)) * t)[None, :] * rng.uniform(200, 600, (12, 1))
        val = (beat + rng.normal(0, 40, (12, 5000))).astype(np.int16)
        dx = CODES[i % 4] + ("," + CODES[(i + 1) % 4] if i % 5 == 0 else "")
        write_cinc(root / ("site_a" if i % 2 else "site_b"), f"{prefix}{i:04d}", val, dx)


@pytest.fixture()
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder laid out as the docs assume: data/ptbxl, data/my_ecgs, data/new_ecgs and configs/
    (the repository's configs, made tiny), as the working directory; caches inside it."""
    make_ptbxl_tree(tmp_path / "data" / "ptbxl", n_records=40)
    _cinc_folder(tmp_path / "data" / "my_ecgs", 60, "A", seed=1)
    _cinc_folder(tmp_path / "data" / "new_ecgs", 2, "N", seed=2)
    for config in (REPO / "configs").glob("*.toml"):
        _write_tiny(config, tmp_path / "configs" / config.name)
    monkeypatch.setenv("ECG_TRANSFER_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_example_config_validates() -> None:
    configs = sorted((REPO / "configs").glob("*.toml"))
    assert REPO / "configs" / "my_cinc_set.toml" in configs
    for config in configs:
        load_config(config)  # raises ConfigError naming the key


def test_the_guide_shows_the_example_config() -> None:
    """The guide's TOML is configs/my_cinc_set.toml's settings (its comments may be shorter)."""
    (shown,) = blocks(DOCS / "guide.md", "toml")
    assert tomllib.loads(shown) == tomllib.loads((REPO / "configs" / "my_cinc_set.toml").read_text())
    RunConfig.from_dict(tomllib.loads(shown))


def test_the_guide_runs_end_to_end(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("captum", reason=NEEDS_CAPTUM)
    from ecg_transfer.cli import main

    commands = shell_commands(DOCS / "guide.md")
    assert [c[0] for c in commands][:3] == ["data", "data", "config"] and len(commands) >= 9
    for argv in commands:
        assert main(argv) == 0, " ".join(argv) + "\n" + capsys.readouterr().err[-3000:]
    run = workspace / "runs" / "my_set_finetuned"
    assert (run / "evaluation" / "metrics.json").is_file()
    assert (run / "evaluation" / "comparison_my_set_standalone.json").is_file()
    assert (run / "evaluation" / "calibrator_temperature.json").is_file()
    assert "## " in (run / "MODEL_CARD.md").read_text()
    assert len((run / "new_predictions.csv").read_text().splitlines()) == 1 + 2
    assert [p.name for p in (run / "explanations").glob("*.json")] == ["N0001.json"]
    assert len(list((run / "explanations").glob("N0001__*.png"))) == 2


def test_the_api_examples_run(workspace: Path) -> None:
    pytest.importorskip("captum", reason=NEEDS_CAPTUM)
    code = blocks(DOCS / "api.md", "python")
    assert len(code) >= 5
    namespace: dict = {"__name__": "docs_api"}
    for i, block in enumerate(code):
        try:
            exec(compile(block, f"docs/api.md, python block {i + 1}", "exec"), namespace)
        except Exception as exc:  # name the block, not this line
            raise AssertionError(f"docs/api.md python block {i + 1} failed:\n{block}") from exc
