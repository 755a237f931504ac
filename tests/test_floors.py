"""The floor-version CI step's constraints (.ci/floors.txt) are pyproject.toml's floors, pinned, so
what .ci/floors.sh proves is what pyproject declares; a dependency without a floor is refused."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _floors_module():
    spec = importlib.util.spec_from_file_location("ci_floors", ROOT / ".ci" / "floors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


floors = _floors_module()


def test_committed_constraints_match_pyproject() -> None:
    assert (ROOT / ".ci" / "floors.txt").read_text() == floors.render(floors.floor_pins()), (
        "regenerate: python .ci/floors.py > .ci/floors.txt"
    )
    assert floors.main(["--check", str(ROOT / ".ci" / "floors.txt")]) == 0


def write_pyproject(tmp_path: Path, deps: list[str], extras: dict[str, list[str]] | None = None) -> Path:
    lines = ["[project]", 'name = "x"', f"dependencies = {deps!r}".replace("'", '"'), "[project.optional-dependencies]"]
    lines += [f"{name} = {reqs!r}".replace("'", '"') for name, reqs in (extras or {}).items()]
    path = tmp_path / "pyproject.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pins_every_floor_of_the_dependencies_and_extras(tmp_path: Path) -> None:
    path = write_pyproject(
        tmp_path,
        ["numpy>=1.24.2", "Torch>=2.13,<3"],
        {"export": ["onnx>=1.17"], "explain": ["captum>=0.7"], "test": ["pytest>=7"]},
    )
    assert floors.floor_pins(path) == ["numpy==1.24.2", "Torch==2.13", "onnx==1.17", "captum==0.7"]


@pytest.mark.parametrize("dep", ["numpy", "numpy<2", "numpy>1.24", "numpy>=1.24,>=1.25"])
def test_a_dependency_without_one_floor_is_refused(tmp_path: Path, dep: str) -> None:
    path = write_pyproject(tmp_path, [dep], {"export": [], "explain": []})
    with pytest.raises(ValueError, match="exactly one floor"):
        floors.floor_pins(path)


def test_two_floors_of_one_package_are_refused(tmp_path: Path) -> None:
    path = write_pyproject(tmp_path, ["onnx>=1.16"], {"export": ["onnx>=1.17"], "explain": [], "test": ["onnx>=1.16"]})
    with pytest.raises(ValueError, match="two floors"):
        floors.floor_pins(path)


def test_a_stale_constraints_file_fails_the_check(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    stale = tmp_path / "floors.txt"
    stale.write_text(floors.render(floors.floor_pins()).replace("numpy==", "numpy==0."))
    assert floors.main(["--check", str(stale)]) == 1
    assert "regenerate" in capsys.readouterr().err
