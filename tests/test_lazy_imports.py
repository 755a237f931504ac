"""One lazy-import convention (issue 15 §2; docs/architecture.md, "Imports").

Every package ``__init__.py`` exports its public names through ``ecg_transfer._lazy.lazy_exports``
(imported on first use) and imports the same names under ``TYPE_CHECKING`` for mypy and IDEs. The
two lists are read from the source here and must agree, so they cannot drift; every name must
resolve; and importing the packages must not load torch or the scientific stack.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ecg_transfer._lazy import lazy_exports

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ecg_transfer"
# packages with modules of their own to export from (a package that is one file, such as
# ``templates`` -- its ``__init__`` and data files --, defines its names itself)
INITS = sorted(
    p
    for p in PACKAGE.rglob("__init__.py")
    if any(q.name != "__init__.py" for q in p.parent.glob("*.py")) or any(p.parent.glob("*/__init__.py"))
)
HEAVY = ("torch", "numpy", "scipy", "sklearn", "pandas", "pyarrow", "matplotlib", "captum", "wfdb", "pydantic")


def _package_name(init: Path) -> str:
    return ".".join(("ecg_transfer", *init.parent.relative_to(PACKAGE).parts))


def _type_checking_block(tree: ast.Module, where: str) -> ast.If:
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return node
    raise AssertionError(f"{where}: no `if TYPE_CHECKING:` block importing the public names")


def _type_checking_imports(block: ast.If, where: str) -> dict[str, str]:
    """``{name: submodule}`` of the ``from .x import a as a`` lines under ``if TYPE_CHECKING:``."""
    found: dict[str, str] = {}
    for imp in block.body:
        assert isinstance(imp, ast.ImportFrom) and imp.level == 1, f"{where}:{imp.lineno}: not `from .x import`"
        for alias in imp.names:
            assert alias.asname == alias.name, (
                f"{where}:{imp.lineno}: write `{alias.name} as {alias.name}` (the re-export form mypy and "
                "pyright recognise)"
            )
            found[alias.name] = imp.module or ""
    return found


def _lazy_mapping(block: ast.If, where: str) -> dict[str, str]:
    """``{name: submodule}`` of the ``else: __getattr__, __dir__, __all__ = lazy_exports(__name__, {...})``
    (under ``else``, so that mypy sees no ``__getattr__`` and reports a misspelt name)."""
    for node in block.orelse:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", None) == "lazy_exports"
        ):
            mapping = ast.literal_eval(node.value.args[1])
            return {name: module for module, names in mapping.items() for name in names}
    raise AssertionError(
        f"{where}: no `else: __getattr__, __dir__, __all__ = lazy_exports(__name__, {{...}})` "
        "after the TYPE_CHECKING imports"
    )


def check_init(source: str, where: str) -> list[str]:
    """What is wrong with one package ``__init__``'s exports ([] when it follows the convention)."""
    tree = ast.parse(source)
    block = _type_checking_block(tree, where)
    static, lazy = _type_checking_imports(block, where), _lazy_mapping(block, where)
    problems = [
        f"{where}: {name} is imported under TYPE_CHECKING from .{static[name]} but lazily from "
        f".{lazy.get(name, '(nowhere)')}"
        for name in sorted(static)
        if static[name] != lazy.get(name)
    ]
    problems += [
        f"{where}: {name} is exported lazily from .{lazy[name]} but not imported under TYPE_CHECKING"
        for name in sorted(set(lazy) - set(static))
    ]
    allowed = {"_lazy", "_version"}  # the helper itself, and the version string (no import of its own)
    eager = [
        n.lineno
        for n in tree.body
        if isinstance(n, ast.ImportFrom) and n.level and (n.module or "").rsplit(".", 1)[-1] not in allowed
    ]
    problems += [f"{where}:{line}: an eager import of the package's own modules (use lazy_exports)" for line in eager]
    return problems


@pytest.mark.parametrize("init", INITS, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_package_follows_the_lazy_convention(init: Path) -> None:
    assert check_init(init.read_text(encoding="utf-8"), str(init.relative_to(PACKAGE))) == []


def test_the_drift_check_can_fail() -> None:
    """A name added to the mapping but not to the TYPE_CHECKING imports (or the other way) is named."""
    good = (
        "from typing import TYPE_CHECKING\nfrom .._lazy import lazy_exports\n"
        "if TYPE_CHECKING:\n    from .runs import evaluate_run as evaluate_run\n"
        'else:\n    __getattr__, __dir__, __all__ = lazy_exports(__name__, {"runs": ("evaluate_run",)})\n'
    )
    assert check_init(good, "x") == []
    assert check_init(good.replace('("evaluate_run",)', '("evaluate_run", "load_run")'), "x") == [
        "x: load_run is exported lazily from .runs but not imported under TYPE_CHECKING"
    ]
    assert "from .(nowhere)" in check_init(good.replace('("evaluate_run",)', "()"), "x")[0]
    assert "lazily from .metrics" in check_init(good.replace('{"runs"', '{"metrics"'), "x")[0]
    with pytest.raises(AssertionError, match="as evaluate_run"):
        check_init(good.replace(" as evaluate_run", ""), "x")
    assert "eager import" in check_init(good + "from .runs import load_run\n", "x")[0]


@pytest.mark.parametrize("init", INITS, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_exported_name_resolves(init: Path) -> None:
    pkg = importlib.import_module(_package_name(init))
    mapping = _lazy_mapping(_type_checking_block(ast.parse(init.read_text(encoding="utf-8")), str(init)), str(init))
    assert pkg.__all__ == sorted(mapping)
    submodules = {p.stem for p in init.parent.glob("*.py")} | {p.parent.name for p in init.parent.glob("*/__init__.py")}
    assert not set(mapping) & submodules, "an exported name that is also a submodule is replaced by it on import"
    for name, module in mapping.items():
        value = getattr(pkg, name)
        source = importlib.import_module(f"{pkg.__name__}.{module}")
        assert value is getattr(source, name), f"{pkg.__name__}.{name}"
    assert set(mapping) <= set(dir(pkg))
    with pytest.raises(AttributeError, match=f"module '{pkg.__name__}' has no attribute 'no_such_name'"):
        pkg.no_such_name  # noqa: B018


def test_importing_the_packages_and_the_cli_parser_stays_light() -> None:
    """Every package imports without torch or the scientific stack; ``ecg-transfer --help`` (the
    parser) without torch, matplotlib, scikit-learn, captum, scipy or pandas (it took 3.8 s when the
    audit's defaults pulled in scipy.signal, 1.0 s without)."""
    packages = ", ".join(_package_name(p) for p in INITS)
    code = (
        f"import sys, json, {packages}\n"
        f"first = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "from ecg_transfer.cli import build_parser\n"
        "try:\n    build_parser().parse_args(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(json.dumps([first, [m for m in ('torch', 'matplotlib', 'sklearn', 'captum', 'scipy', 'pandas') if m in sys.modules]]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    packages_loaded, help_loaded = json.loads(out.strip().splitlines()[-1])
    assert packages_loaded == [], f"importing the packages loaded {packages_loaded}"
    assert help_loaded == [], f"`ecg-transfer --help` loaded {help_loaded}"


def test_lazy_exports_refuses_ambiguous_mappings() -> None:
    with pytest.raises(ValueError, match="'x' exported from both .a and .b"):
        lazy_exports("ecg_transfer", {"a": ("x",), "b": ("x",)})
    with pytest.raises(ValueError, match=r"\['settings'\] are also submodule names"):
        lazy_exports("ecg_transfer", {"settings": ("settings",)})
