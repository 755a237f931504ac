"""The study report as Markdown (report.md), with its figures as PNG files beside it.

Same tables and figures as the HTML page (built by ``tables`` and ``figures``), for a repository,
a pull request or a notebook. Better arms are bold, missing values italic, CIs in brackets.
"""

from __future__ import annotations

from typing import Any, Mapping

from . import tables as T
from .data import (
    ORIGINAL_FLAWS,
    fmt,
    fmt_ci,
    fmt_p,
    json_object,
    machinery_check,
    missing_word,
    reference,
    reference_protocol,
    section,
    target_name,
)
from .figures import Figure


def _md(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_table(t: T.Table | None, empty: str = "not run") -> str:
    if t is None:
        return f"*{empty}*\n"
    lines = []
    if t.warn:
        lines += [f"**{_md(t.warn)}**", ""]
    if t.caption:
        lines += [f"*{_md(t.caption)}*", ""]
    lines.append("| " + " | ".join(_md(h) for h in t.headers) + " |")
    lines.append("|" + "|".join("---:" if i in t.numeric else "---" for i in range(len(t.headers))) + "|")
    for row in t.rows:
        cells = []
        for c in row:
            text = _md(c.text)
            kinds = c.kind.split()
            if "missing" in kinds:
                text = f"*{text}*"
            elif "better" in kinds or "good" in kinds:
                text = f"**{text}**"
            text += _md(c.mark)
            if c.sub:
                text += f" ({_md(c.sub)})" if "label" in kinds else f" {_md(c.sub)}"
            if c.scope:
                text += f" ({_md(c.scope)})"
            if c.warn and not t.warn:
                text += f" **{_md(c.warn)}**"
            if c.ref:
                text += f" ({_md(c.ref)})"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    if t.note:
        lines += ["", f"*{_md(t.note)}*"]
    notes = t.mark_notes
    if notes:
        lines += ["", *(f"*{_md(n)}*  " for n in notes)]
    return "\n".join(lines) + "\n"


def _fig(fig: Figure | None, files: Mapping[str, str], empty: str = "not run") -> str:
    if fig is not None and fig.error:
        return f"*figure could not be drawn: {_md(fig.error)}*\n"
    if fig is None or fig.png is None:
        return f"*{empty}*\n"
    alt = fig.name.replace("_", " ")
    return f"![{alt}]({files[fig.name]})\n\n*{_md(fig.caption)}*\n"


def _header(results: Mapping[str, Any]) -> list[str]:
    st = json_object(results.get("study"))
    out: list[str] = [f"# Study report: {st.get('name', 'study')}", ""]
    if machinery_check(results):
        head, rest = T.machinery_text(results)
        out += [f"> ## ⚠ {head.upper()}", ">", f"> **{rest}**", ""]
    meta = [
        f"model {st['model']}" if st.get("model") else None,
        f"profile {st['profile']}" if st.get("profile") else "full study",
        f"generated {st['generated']}" if st.get("generated") else None,
    ]
    stat = T.status_summary(results)
    if stat:
        meta.append(
            f"{stat['done']} of {stat['total']} runs done, {stat['failed']} failed, "
            f"{stat['running']} running, {stat['left']} left"
        )
    return out + ["> " + " · ".join(m for m in meta if m), ""]


def _headline_lines(results: Mapping[str, Any]) -> list[str]:
    """One line per protocol: both arms, the difference, its p-value, the verdict and the scope."""
    out = []
    for c in T.headline_cards(results):
        ft, sa, d = c["finetuned"], c["standalone"], c["difference"]

        def v(iv, sign: bool = False, m: str = c["missing"]) -> str:
            return f"{fmt(iv.value, 3, sign)}{iv.marks} {fmt_ci(iv, 3, sign)}".strip() if iv.ok else f"*{m}*"

        scope = " · ".join(
            x for x in (c["labels"], f"{int(c['n_test']):,} test records" if c["n_test"] is not None else "") if x
        )
        warn = f" **{c['warn']}**" if c["warn"] else ""
        warn += "".join(f" *{n}*" for n in c["mark_notes"])
        out.append(
            f"- **{c['protocol']}** (macro AUC over {scope}): fine-tuned {v(ft)} vs standalone {v(sa)}; "
            f"difference {v(d, True)}{', ' + fmt_p(d.p, d.ties) if d.p is not None else ''} → "
            f"{c['verdict']}{warn}"
        )
    return out


def _pretrain_lines(results: Mapping[str, Any]) -> list[str]:
    p = T.pretrain_summary(results)
    if p is None:
        return ["**PTB-XL pre-training**: *not run*", ""]
    iv = p["test"]
    val = f"{fmt(iv.value)}{iv.marks} {fmt_ci(iv)}".strip() if iv.ok else f"*{p['missing']}*"
    ref = f" (original study: {fmt(p['ref'])}, 500 Hz, random folds)" if p["ref"] is not None else ""
    scope = f" ({p['scope']})" if p["scope"] and iv.ok else ""
    warn = f" **{p['warn']}**" if p["warn"] and iv.ok else ""
    return [f"**PTB-XL pre-training** ({p['labels']} labels, {p['fs']}): test macro AUC {val}{scope}{ref}{warn}", ""]


def _headline(results: Mapping[str, Any], figs: Mapping[str, Figure], files: Mapping[str, str], miss: str) -> list[str]:
    out = ["## Headline: fine-tuned vs standalone", ""]
    if not section(results, "headline"):
        out += ["*not run*", ""]
    else:
        out += _headline_lines(results)
        out += ["", _fig(figs.get("headline"), files, miss), render_table(T.headline_table(results))]
    out += _pretrain_lines(results)
    out += ["**How the numbers are made**", ""]
    out += [f"- **{k}**: {v}" for k, v in T.method_items(results)]
    out.append("")
    if reference(results):  # a study of G12EC: the original's numbers stand beside ours
        out += [
            "> **The original study's numbers are not directly comparable**: single runs of a flawed protocol on "
            f"its 18 classes, shown only beside that label protocol ({reference_protocol(results)}).",
            ">",
        ]
        out += [f"> {i}. {f}" for i, f in enumerate(ORIGINAL_FLAWS, 1)]
        out.append("")
    if section(results, "headline"):
        out += [
            "### Other metrics: AUPRC, challenge metric, Brier, ECE",
            "",
            render_table(T.secondary_table(results), "not recorded"),
        ]
    return out


def _experiments(
    results: Mapping[str, Any], figs: Mapping[str, Figure], files: Mapping[str, str], miss: str
) -> list[str]:
    out: list[str] = []
    for key, title, table in (
        ("exp1", f"Experiment 1: share of the {target_name(results)} data for training", T.exp1_table),
        ("exp2", "Experiment 2: share of PTB-XL for pre-training", T.exp2_table),
        ("exp3", "Experiment 3: sampling rate", T.exp3_table),
    ):
        out += [f"## {title}", ""]
        out += (
            [_fig(figs.get(key), files, miss), render_table(table(results))]
            if section(results, key)
            else ["*not run*", ""]
        )
    out += ["## Experiment 4: calibration", ""]
    if not section(results, "exp4"):
        out += ["*not run*", ""]
    else:
        out += [_fig(figs.get("exp4_metrics"), files, miss)]
        for name, f in figs.items():
            if name.startswith("exp4_reliability_"):
                out += [f"Reliability diagrams, {f.group} (one run per arm: its first seed)", "", _fig(f, files, miss)]
        for t in T.exp4_tables(results):
            out.append(render_table(t))
    out += ["## Experiment 5: input representation", ""]
    out += (
        [_fig(figs.get("exp5"), files, miss), render_table(T.exp5_table(results))]
        if section(results, "exp5")
        else ["*not run*", ""]
    )
    out += ["## Experiment 6: pre-training strategy", ""]
    out += (
        [_fig(figs.get("exp6"), files, miss), render_table(T.exp6_table(results))]
        if section(results, "exp6")
        else ["*not run*", ""]
    )
    return out


def _per_class(
    results: Mapping[str, Any], figs: Mapping[str, Figure], files: Mapping[str, str], miss: str
) -> list[str]:
    out = ["## Per-label AUC", ""]
    tabs = T.per_class_tables(results)
    if not tabs:
        out += ["*not run*", ""]
    for protocol, t in tabs:
        fig = next((f for n, f in figs.items() if n.startswith("per_class_") and f.group == protocol), None)
        out += [f"### {protocol}", "", render_table(t)]
        if fig is not None and fig.png is not None:
            out.append(_fig(fig, files, miss))
    pre = T.pretrain_per_class_table(results)
    if pre is not None:
        out += ["### PTB-XL pre-training", "", render_table(pre)]
    return out


def _gallery(results: Mapping[str, Any], figs: Mapping[str, Figure], files: Mapping[str, str]) -> list[str]:
    out = ["## Why the model decided", ""]
    lead = T.gallery_lead(results)
    if not lead:
        return out + ["*not run* (needs captum: `pip install 'ecg-transfer[explain]'`)", ""]
    out += [_md(lead), ""]
    for label in dict.fromkeys(f.group for n, f in figs.items() if n.startswith("gallery_")):
        out += [f"### {_md(label)}", ""]
        out += [_fig(f, files) for n, f in figs.items() if n.startswith("gallery_") and f.group == label]
    return out


def _status_and_metadata(results: Mapping[str, Any]) -> list[str]:
    out = ["## Status", ""]
    stat = T.status_summary(results)
    if stat is None:
        out += ["*not recorded*", ""]
    else:
        out += [
            f"- total {stat['total']}, done {stat['done']}, failed {stat['failed']}, running {stat['running']}, "
            f"left {stat['left']}"
        ]
        if stat["left"] or stat["running"] or stat["failed"]:
            out.append(f"- values not there yet read *{missing_word(results)}*")
        out.append("")
        ft = T.failed_runs_table(results)
        out.append(render_table(ft) if ft else "No run failed.\n")
    out += ["## Study metadata", ""]
    out += [f"- **{k}**: {v}" for k, v in T.metadata_items(results)]
    out.append("")
    return out


def render_markdown(results: Mapping[str, Any], figs: Mapping[str, Figure], files: Mapping[str, str]) -> str:
    """The Markdown report; ``files`` maps a figure name to its file name beside report.md."""
    miss = missing_word(results)
    out = (
        _header(results)
        + _headline(results, figs, files, miss)
        + _experiments(results, figs, files, miss)
        + _per_class(results, figs, files, miss)
        + _gallery(results, figs, files)
        + _status_and_metadata(results)
    )
    return "\n".join(out)


__all__ = ["render_markdown", "render_table"]
