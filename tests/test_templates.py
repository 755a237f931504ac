"""The package's document templates (``ecg_transfer.templates``): shipped as package data, loaded
through the package, escaped by output format (HTML yes, Markdown no), and the Markdown filters."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.resources import files
from pathlib import Path

import pytest

from ecg_transfer.templates import TEMPLATES, environment, md_cell, md_code, render

ROOT = Path(__file__).resolve().parents[1]


def test_every_template_loads_through_the_package():
    import jinja2

    here = files("ecg_transfer.templates")
    shipped = sorted(p.name for p in here.iterdir() if p.is_file() and not p.name.endswith((".py", ".pyc")))
    assert shipped == sorted(TEMPLATES)  # a new template file is listed (and so checked below)
    env = environment()
    assert isinstance(env.loader, jinja2.PackageLoader)  # never a path into the source tree
    for name in TEMPLATES:
        source, _, _ = env.loader.get_source(env, name)
        assert source == here.joinpath(name).read_text(encoding="utf-8")
        env.get_template(name)  # parses


def test_pyproject_ships_every_template():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = data["tool"]["setuptools"]["package-data"]["ecg_transfer"]
    for name in TEMPLATES:
        assert any(fnmatch.fnmatch(f"templates/{name}", g) for g in globs), name
    assert any(dep.lower().startswith("jinja2") for dep in data["project"]["dependencies"])


@pytest.mark.slow
def test_wheel_contains_the_templates(tmp_path):
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools")
    src = tmp_path / "src"
    shutil.copytree(
        ROOT / "src" / "ecg_transfer",
        src / "src" / "ecg_transfer",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path / "out"),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "out").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"ecg_transfer/templates/{n}" for n in TEMPLATES} <= names


def test_autoescape_by_file_name():
    env = environment()
    assert env.autoescape("report.html.j2") and env.autoescape("page.html")
    assert not env.autoescape("model_card.md.j2") and not env.autoescape("notes.md")
    assert env.autoescape("report.css") and env.autoescape("unknown.txt")  # safe by default


def test_undefined_values_raise():
    import jinja2

    with pytest.raises(jinja2.UndefinedError):
        render("model_card.md.j2", run={"name": "x"})


@pytest.mark.parametrize(
    "text,want",
    [("AFIB", "`AFIB`"), ("a`b", "``a`b``"), ("`x", "`` `x ``"), ("a``b`", "``` a``b` ```"), ("a|b", "`a|b`")],
)
def test_md_code_shows_the_text_verbatim(text, want):
    assert md_code(text) == want


def test_md_cell_keeps_the_row_together():
    assert md_cell("a|b\nc") == "a\\|b c"
    assert md_cell(3) == "3"
