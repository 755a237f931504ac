"""The one way a package of ``ecg_transfer`` exports its public names: imported on first use.

Every package ``__init__.py`` has the same three parts::

    from typing import TYPE_CHECKING

    from .._lazy import lazy_exports

    if TYPE_CHECKING:  # what mypy and IDEs read
        from .runs import (EvaluationError as EvaluationError, evaluate_run as evaluate_run)
    else:  # what runs
        __getattr__, __dir__, __all__ = lazy_exports(__name__, {
            "runs": ("EvaluationError", "evaluate_run"),
        })

Why: ``ecg-transfer --help``, ``import ecg_transfer.settings`` and ``study plan`` must not pay for
torch, scipy or matplotlib, so nothing is imported until a name is used (PEP 562 module
``__getattr__``). Static tools do not run ``__getattr__``, so they read the same names as imports
under ``TYPE_CHECKING``, written with the redundant ``as`` alias that marks a re-export for mypy's
``no_implicit_reexport`` and for pyright in a ``py.typed`` package; the lazy part sits under
``else`` so that mypy sees no ``__getattr__`` (which would make every misspelt name pass as
``Any``). ``tests/test_lazy_imports.py`` holds the mapping and the imports equal for every package, so they
cannot drift, and ``tests/test_architecture.py`` walks the imports (the lazy names included,
through their ``TYPE_CHECKING`` twins). See docs/architecture.md, "Imports".
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``, whose public names are
    ``exports[submodule]`` (submodule relative to the package, e.g. ``"runs"`` or ``"ssl.data"``).

    A name is imported from its submodule when first asked for and then kept in the package's
    namespace, so ``__getattr__`` runs once per name. A name listed twice, or one that shadows a
    submodule, is refused here: after ``import pkg.sub`` the attribute ``pkg.sub`` is the module.
    """
    where: dict[str, str] = {}
    for module, names in exports.items():
        for name in names:
            if name in where:
                raise ValueError(f"{package}: {name!r} exported from both .{where[name]} and .{module}")
            where[name] = module
    shadowing = sorted(set(where) & {m.split(".")[0] for m in exports})
    if shadowing:
        raise ValueError(f"{package}: exported names {shadowing} are also submodule names")
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value  # the next access is an ordinary attribute lookup
        return value

    def __dir__() -> list[str]:  # what tab completion offers: the public names and loaded subpackages
        submodules = {
            n
            for n, v in list(namespace.items())
            if isinstance(v, ModuleType) and v.__name__ == f"{package}.{n}" and not n.startswith("_")
        }
        return sorted(set(where) | submodules | ({"__version__"} & set(namespace)))

    return __getattr__, __dir__, sorted(where)
