"""Data flows one way: no module of a lower layer imports a higher one (issue 15 §1).

Every import of every module is read from its source -- those inside functions too, which is
where an upward import hides -- and each module's layer compared with the layer it imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ecg_transfer"

# Lowest first: raw files -> adapters -> cache -> split -> training -> saved predictions ->
# evaluation -> inference -> study -> report -> the command line. Same number: may not import
# each other either way unless listed in SIDEWAYS.
LAYERS: dict[str, int] = {
    "errors": 0,
    "atomic": 0,
    "ragged": 0,
    "runfiles": 0,
    "templates": 0,
    "_lazy": 0,
    "_version": 0,
    "settings": 1,
    "signal": 2,
    "labels": 2,
    "predictions": 2,
    "models": 3,
    "datasets": 3,
    "training": 4,
    "evaluation": 5,
    "inference": 6,
    "study": 7,
    "report": 8,
    "cli": 9,
    "__main__": 9,
    "__init__": 9,
    "api": 9,
}
SIDEWAYS: set[tuple[str, str]] = set()


def _imports(path: Path) -> list[tuple[str, int]]:
    """(top-level part of the package imported, line) for every relative or absolute import."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    here = parts[:-1]  # the package holding the module
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                target = base + (node.module.split(".") if node.module else [])
                if not target:  # "from . import x" at the top of the package
                    target = [_top_level_name(node.names[0].name)]
            elif node.module and node.module.split(".")[0] == "ecg_transfer":
                target = node.module.split(".")[1:] or [_top_level_name(node.names[0].name)]
            else:
                continue
            found.append((target[0], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ecg_transfer."):
                    found.append((alias.name.split(".")[1], node.lineno))
    return found


def _top_level_name(name: str) -> str:
    """What ``from ecg_transfer import name`` imports: the submodule ``name``, or else a name the
    package's ``__init__`` defines (``__version__``), i.e. an import of ``__init__``."""
    return name if (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name).is_dir() else "__init__"


def _layer_of(path: Path) -> str:
    first = path.relative_to(PACKAGE).parts[0]
    return first.removesuffix(".py")


def test_every_module_has_a_layer():
    names = {_layer_of(p) for p in PACKAGE.rglob("*.py")}
    assert names <= set(LAYERS), f"modules without a layer: {sorted(names - set(LAYERS))}"


def test_no_import_runs_back_up_the_pipeline():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        src = _layer_of(path)
        for dst, line in _imports(path):
            dst = dst.removesuffix(".py")
            if dst == src or dst not in LAYERS:
                continue
            if LAYERS[dst] > LAYERS[src] or (
                LAYERS[dst] == LAYERS[src] and (src, dst) not in SIDEWAYS and src not in ("cli", "__main__", "__init__")
            ):
                upward.append(
                    f"{path.relative_to(PACKAGE)}:{line} imports {dst} (layer {LAYERS[dst]}) "
                    f"from {src} (layer {LAYERS[src]})"
                )
    assert not upward, "imports that run back up the pipeline:\n" + "\n".join(upward)


def test_the_walker_sees_imports_inside_functions(tmp_path):
    """A check that cannot fail is no check: the walker must find a function-level upward import."""
    probe = PACKAGE / "training" / "_probe_for_test.py"
    probe.write_text("def f():\n    from ..report import write_report\n    return write_report\n")
    try:
        assert ("report", 2) in _imports(probe)
        # a name of the package's __init__ (the version string once was): an import of __init__, the top
        probe.write_text("from .. import __version__\nfrom .. import models\n")
        assert _imports(probe) == [("__init__", 1), ("models", 2)]
    finally:
        probe.unlink()
