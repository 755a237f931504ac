"""``write_report``: STUDY_DIR/results.json → STUDY_DIR/report/{index.html, report.md, *.png}.

The figures are drawn once and used twice: embedded in the HTML page (base64) and written as PNG
files beside report.md. Every file is written atomically, figures first, so report.md never
points at a figure that is not there, and a report being rewritten is never half a page.
"""

from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_write_bytes, atomic_write_text
from .data import load_results
from .figures import Figure, make_figures
from .html import render_html
from .markdown import render_markdown

REPORT_DIR = "report"


def gallery_figures(results: dict, study_dir: Path) -> dict[str, Figure]:
    """The explained test records (``results["gallery"]``, PNGs the study wrote under
    ``STUDY_DIR/explain/``) as figures named ``gallery_<i>``, grouped by label; a missing PNG
    is carried as an error, not a crash."""
    from .data import num, rows, section

    figs: dict[str, Figure] = {}
    for i, e in enumerate(rows((section(results, "gallery") or {}).get("entries"))):
        p, t = num(e.get("probability")), num(e.get("threshold"))
        at = f" (threshold {t:.2f}, {e.get('threshold_rule', '?')})" if t is not None else ""
        caption = (
            f"{e.get('example', '?')}: {e.get('kind', '?')}, record {e.get('record', '?')}, p = {p:.3f}{at}"
            if p is not None
            else f"{e.get('example', '?')}: record {e.get('record', '?')}"
        )
        try:
            png = (study_dir / str(e.get("png"))).read_bytes()
            figs[f"gallery_{i}"] = Figure(f"gallery_{i}", caption, png, group=str(e.get("label", "?")))
        except OSError as exc:
            figs[f"gallery_{i}"] = Figure(f"gallery_{i}", caption, None, error=str(exc), group=str(e.get("label")))
    return figs


def write_report(study_dir: str | Path) -> dict[str, Path]:
    """Write the report of a study; returns ``{"html", "markdown", "dir", <figure name>: png path}``.

    Raises ``ReportError`` (naming the file) when STUDY_DIR holds no readable results.json of the
    expected format. Missing sections and null values are rendered as "not run" / "pending" /
    "failed", never an error.
    """
    study_dir = Path(study_dir)
    results = load_results(study_dir)
    out = study_dir / REPORT_DIR
    figs = {**make_figures(results), **gallery_figures(results, study_dir)}
    paths: dict[str, Path] = {"dir": out}
    files: dict[str, str] = {}
    for name, fig in figs.items():
        if fig.png is not None:
            files[name] = f"{name}.png"
            atomic_write_bytes(out / files[name], fig.png)
            paths[name] = out / files[name]
    atomic_write_text(out / "report.md", render_markdown(results, figs, files))
    atomic_write_text(out / "index.html", render_html(results, figs))
    paths["markdown"] = out / "report.md"
    paths["html"] = out / "index.html"
    return paths
