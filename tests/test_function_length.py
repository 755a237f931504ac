"""No function or method of the package is longer than 80 lines (issue 15 §4).

A long function does several jobs; the next reader has to hold all of them at once. Every
function and method (nested ones too) in src/ecg_transfer is read with ``ast`` and measured from
its ``def`` line to its last line (decorators not counted).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ecg_transfer"
MAX_LINES = 80

# Functions known to be too long while someone is shortening them: "path.py::qualified.name".
# Empty since issue 15 §4 landed; keep it that way. Each entry must still exist and still be too
# long: the second test fails as soon as one is shortened, so the list cannot go stale.
PENDING: set[str] = set()


def function_lengths(source: str) -> dict[str, int]:
    """Qualified name (``Class.method``, ``outer.<locals>.inner``) -> lines from ``def`` to the end."""
    lengths: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                lengths[name] = child.end_lineno - child.lineno + 1
                visit(child, name + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)  # functions defined under if/try/with blocks

    visit(ast.parse(source), "")
    return lengths


def package_function_lengths() -> dict[str, int]:
    """``path/under/ecg_transfer.py::qualified.name`` -> length, for every function of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for name, n in function_lengths(path.read_text(encoding="utf-8")).items():
            found[f"{rel}::{name}"] = n
    return found


def test_no_function_is_longer_than_80_lines():
    too_long = {name: n for name, n in package_function_lengths().items() if n > MAX_LINES and name not in PENDING}
    assert not too_long, (
        f"functions longer than {MAX_LINES} lines (split each into functions with one job): "
        + ", ".join(f"{name} ({n} lines)" for name, n in sorted(too_long.items()))
    )


def test_pending_list_is_not_stale():
    lengths = package_function_lengths()
    missing = sorted(name for name in PENDING if name not in lengths)
    short = sorted(
        f"{name} ({lengths[name]} lines)" for name in PENDING if name in lengths and lengths[name] <= MAX_LINES
    )
    assert not missing, f"PENDING names functions that no longer exist; remove them: {missing}"
    assert not short, f"now at most {MAX_LINES} lines; remove them from PENDING in {Path(__file__).name}: {short}"


def test_function_lengths_measures_methods_nested_and_conditional_functions():
    def function(name: str, n: int, indent: str = "", inner: str = "") -> str:
        """Source of a function of exactly n lines (plus ``inner``'s lines, nested in it)."""
        lines = [f"def {name}():", *inner.splitlines(), *["    x = 1"] * (n - 1 - len(inner.splitlines()))]
        return "".join(indent + line + "\n" for line in lines)

    source = (
        "import sys\n"
        + function("short", 80)
        + "class A:\n    @staticmethod\n"
        + function("long", 81, indent="    ")
        + "if sys:\n"
        + function("outer", 90, indent="    ", inner=function("inner", 82, indent="    "))
    )
    lengths = function_lengths(source)
    assert lengths == {"short": 80, "A.long": 81, "outer": 90, "outer.<locals>.inner": 82}  # decorators not counted
