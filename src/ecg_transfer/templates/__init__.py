"""The package's documents as jinja2 templates, shipped as package data beside this module.

One place for every template: ``model_card.md.j2`` (``RUN_DIR/MODEL_CARD.md``, filled by
:mod:`ecg_transfer.inference.modelcard`), ``report.html.j2`` and ``report.css`` (the study report's
page, filled by :mod:`ecg_transfer.report.html`). The Python side prepares the facts (numbers
formatted, tables as rows); a template only lays them out.

Templates are loaded through the package (``jinja2.PackageLoader``), never from a path in the source
tree, so an installed wheel renders what a checkout renders (``pyproject.toml`` ships them as
package data; ``tests/test_templates.py`` checks both).

Escaping follows the output format, chosen from the file name by ``jinja2.select_autoescape``:
``*.html.j2`` is autoescaped, so a label or study name such as ``<script>`` arrives as text, never as
markup; ``*.md.j2`` is not, because HTML entities are Markdown's wrong escape -- inside a code span
and in the raw file ``&lt;`` stays ``&lt;`` -- so a label ``a<b`` would be mangled. Markdown has hazards
of its own, handled by filters where they arise: ``code`` (a code span that survives backticks in its
text) and ``cell`` (a table cell that survives ``|`` and newlines). Any other extension is escaped
(safe by default). An undefined variable raises (``StrictUndefined``): a template asking for a fact
its Python side did not prepare is a bug, not an empty string.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # jinja2 is imported when a document is rendered, not when the package is
    import jinja2

#: the template files, all under this package (what the package data must include)
TEMPLATES = ("model_card.md.j2", "report.html.j2", "report.css")


def md_cell(text: Any) -> str:
    """Text safe inside a Markdown table cell: a ``|`` would end the cell, a newline the row."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_code(text: Any) -> str:
    """``text`` as a Markdown code span that shows it verbatim: the fence is one backtick longer than
    the longest run of backticks inside (CommonMark), padded with spaces when the text starts or
    ends with one (a label like ``a`b`` would otherwise close the span early)."""
    text = str(text)
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The one jinja2 environment of the package (built once; see the module docstring for why
    escaping depends on the file name). Blocks leave no blank lines (``trim_blocks``,
    ``lstrip_blocks``) and a file's last newline is kept, so the template's lines are the
    document's lines."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ecg_transfer", "templates"),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html.j2", "html"), disabled_extensions=("md.j2", "md"), default=True
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["code"] = md_code
    env.filters["cell"] = md_cell
    return env


def render(name: str, **context: Any) -> str:
    """The template ``name`` (one of :data:`TEMPLATES`) filled with ``context``."""
    return environment().get_template(name).render(**context)


__all__ = ["TEMPLATES", "environment", "md_cell", "md_code", "render"]
