"""The study report as one self-contained HTML page: CSS inline, figures as base64 PNG data URIs,
no script and no external reference, so the file can be mailed, archived or opened offline.

The page's skeleton, header and CSS are the package's templates ``report.html.j2`` and ``report.css``
(see :mod:`ecg_transfer.templates`), rendered with autoescape on, so every value the template places is
escaped. The sections are built here from the table model of :mod:`.tables` (which the Markdown report
renders too), each value through ``html.escape`` (``_e``), and handed to the template as markup.
Sections whose data is missing say "not run"; null values say "pending" / "failed" (see
``data.missing_word``).
"""

from __future__ import annotations

import base64
from html import escape
from typing import Any, Mapping

from . import tables as T
from .data import (
    MARK_NOTES,
    ORIGINAL_FLAWS,
    Interval,
    fmt,
    fmt_ci,
    fmt_p,
    machinery_check,
    missing_word,
    beside_original,
    pool_text,
    reference,
    reference_protocol,
    section,
    seeds_note,
    source_name,
    target_name,
)
from ..templates import render
from .figures import Figure

#: The page's sections and their titles in the navigation (``{target}``: the target's name).
SECTIONS = [
    ("headline", "Headline"),
    ("exp1", "1 · {target} share"),
    ("exp2", "2 · PTB-XL share"),
    ("exp3", "3 · Sampling rate"),
    ("exp4", "4 · Calibration"),
    ("exp5", "5 · Input"),
    ("exp6", "6 · Strategy"),
    ("per-class", "Per label"),
    ("gallery", "Why"),
    ("status", "Status"),
    ("metadata", "Metadata"),
]


def _e(x: Any) -> str:
    return escape(str(x), quote=True)


def _img(fig: Figure | None, empty: str = "not run") -> str:
    """The figure as a data URI; ``empty`` when it has no data (pending / failed / not run)."""
    if fig is not None and fig.error:
        return f'<div class="empty bad">figure could not be drawn: {_e(fig.error)}</div>'
    if fig is None or fig.png is None:
        return f'<div class="empty">{_e(empty)}</div>'
    data = base64.b64encode(fig.png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_e(fig.caption)}">'
        f"<figcaption>{_e(fig.caption)}</figcaption></figure>"
    )


def render_table(t: T.Table | None, empty: str = "not run") -> str:
    if t is None:
        return f'<div class="empty">{_e(empty)}</div>'
    out = []
    if t.warn:
        out.append(f'<div class="banner-warn">{_e(t.warn)}</div>')
    if t.caption:
        out.append(f'<p class="caption">{_e(t.caption)}</p>')
    head = "".join(
        f'<th class="num">{_e(h)}</th>' if i in t.numeric else f"<th>{_e(h)}</th>" for i, h in enumerate(t.headers)
    )
    body = []
    for row in t.rows:
        cells = []
        for c in row:
            sub = f'<span class="ci">{_e(c.sub)}</span>' if c.sub else ""
            if c.scope:
                sub += f'<span class="scope">{_e(c.scope)}</span>'
            if c.warn and not t.warn:
                sub += f'<span class="warn">{_e(c.warn)}</span>'
            if c.ref:
                sub += f'<span class="orig">◇ {_e(c.ref)}</span>'
            cls = f' class="{_e(c.kind.strip())}"' if c.kind.strip() else ""
            cells.append(f"<td{cls}>{_e(c.text)}{_mark(c.mark)}{sub}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    out.append(
        f'<div class="tablewrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
    )
    if t.note:
        out.append(f'<p class="caption">{_e(t.note)}</p>')
    out += [f'<p class="caption mark-note">{_e(n)}</p>' for n in t.mark_notes]
    return "".join(out)


def _mark(mark: str) -> str:
    """The marks beside a number (:data:`.data.MARK_NOTES`), each with its explanation as a tooltip."""
    return "".join(f'<sup class="mark" title="{_e(MARK_NOTES[m])}">{_e(m)}</sup>' for m in mark if m in MARK_NOTES)


def _details(summary: str, inner: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{_e(summary)}</summary>{inner}</details>"


def _section(sid: str, title: str, tag: str, lead: str, body: str) -> str:
    tag_html = f'<span class="tag">{_e(tag)}</span>' if tag else ""
    return f'<section class="card" id="{sid}"><h2>{_e(title)}{tag_html}</h2><p class="lead">{lead}</p>{body}</section>'


# ---------------------------------------------------------------------------------------------


def _hero_context(results: Mapping[str, Any]) -> dict[str, Any]:
    """The page's header as facts for ``report.html.j2``: the study's name, source and target, its
    chips (model, profile, seeds, date), the run-status bar and the machinery-check banner."""
    st: dict[str, Any] = v if isinstance(v := results.get("study"), dict) else {}
    src: dict[str, Any] = v if isinstance(v := st.get("source"), dict) else {}
    tgt: dict[str, Any] = v if isinstance(v := st.get("target"), dict) else {}
    s_name, t_name = source_name(results, "the source"), target_name(results, "the target")
    chips = [
        f"model {st['model']}" if st.get("model") else None,
        f"profile {st['profile']}" if st.get("profile") else "full study",
        f"seeds {', '.join(map(str, st['seeds']))}" if isinstance(st.get("seeds"), list) and st["seeds"] else None,
        f"generated {st['generated']}" if st.get("generated") else None,
    ]
    stat = T.status_summary(results)
    progress = None
    if stat and stat["total"]:
        progress = {
            "parts": [
                {"kind": k, "width": f"{100 * stat[k] / stat['total']:.2f}"}
                for k in ("done", "failed", "running", "left")
                if stat[k]
            ],
            "text": f"{stat['done']} of {stat['total']} runs done · {stat['failed']} failed · "
            f"{stat['running']} running · {stat['left']} left",
        }
    machinery = None
    if machinery_check(results):
        head, rest = T.machinery_text(results)
        machinery = {"head": head, "rest": rest}
    return {
        "hero": {
            "name": st.get("name", "study"),
            "source": s_name,
            "target": t_name,
            "chips": [c for c in chips if c],
            "title": f"{s_name} → {t_name}" if src or tgt else "Transfer study",
        },
        "progress": progress,
        "status_recorded": bool(stat),
        "machinery": machinery,
    }


def _num_block(label: str, iv: Interval, cls: str, missing: str, sign: bool = False, mark: str = "") -> str:
    """One big number of a KPI card: label, value, CI and the spread over runs (or the p-value)."""
    if not iv.ok:
        return (
            f'<div><div class="lbl">{label}</div><div class="big missing">{_e(missing)}</div>'
            f'<div class="ci">&nbsp;</div><div class="ci">&nbsp;</div></div>'
        )
    extra = fmt_p(iv.p, iv.ties) if label == "difference" else seeds_note(iv)
    return (
        f'<div><div class="lbl">{label}</div><div class="big {cls}">{fmt(iv.value, 3, sign)}{_mark(mark)}</div>'
        f'<div class="ci">{_e(fmt_ci(iv, 3, sign)) or "&nbsp;"}</div>'
        f'<div class="ci">{_e(extra) or "&nbsp;"}</div></div>'
    )


def _kpi_cards(results: Mapping[str, Any]) -> str:
    cards = []
    for c in T.headline_cards(results):

        def num_block(label: str, iv: Interval, cls: str, sign: bool = False, m: str = c["missing"]) -> str:
            return _num_block(label, iv, cls, m, sign, iv.marks)

        d = c["difference"]
        dcls = "good" if c["tone"] == "good" else ("bad" if c["tone"] == "bad" else "")
        info = [c["labels"]] if c["labels"] else []
        if c["n_test"] is not None:
            info.append(f"{int(c['n_test']):,} test records")
        warn = f'<div class="banner-warn">{_e(c["warn"])}</div>' if c["warn"] else ""
        cards.append(
            f'<div class="kpi"><div class="kpi-head">{_e(c["protocol"])}</div>'
            f'<div class="scope">macro AUC over {_e(" · ".join(info))}</div>{warn}<div class="kpi-nums">'
            f"{num_block('fine-tuned', c['finetuned'], 'ft')}"
            f"{num_block('standalone', c['standalone'], 'sa')}{num_block('difference', d, dcls, True)}</div>"
            f'<div class="verdict {c["tone"]}">{_e(c["verdict"])}</div>'
            + "".join(f'<div class="ci mark-note">{_e(n)}</div>' for n in c["mark_notes"])
            + "</div>"
        )
    return f'<div class="kpis">{"".join(cards)}</div>' if cards else ""


def _pretrain_line(results: Mapping[str, Any]) -> str:
    p = T.pretrain_summary(results)
    if p is None:
        return '<div class="pre-line"><strong>PTB-XL pre-training</strong><span class="muted">not run</span></div>'
    iv = p["test"]
    value = (
        f'<span class="big">{fmt(iv.value)}{_mark(iv.marks)}</span><span class="muted">{_e(fmt_ci(iv))}</span>'
        if iv.ok
        else f'<span class="muted"><em>{_e(p["missing"])}</em></span>'
    )
    ref = (
        f'<span class="muted">original study: {fmt(p["ref"])} (500 Hz, random folds, test set differs)</span>'
        if p["ref"] is not None
        else ""
    )
    val = f'<span class="muted">validation {fmt(p["val"])}</span>' if p["val"] is not None else ""
    scope = f'<span class="muted">{_e(p["scope"])}</span>' if p["scope"] else ""
    warn = f'<span class="warn">{_e(p["warn"])}</span>' if p["warn"] and iv.ok else ""
    return (
        f'<div class="pre-line"><strong>PTB-XL pre-training</strong><span class="muted">{_e(p["labels"])} labels, '
        f"{_e(p['fs'])}, test fold 10 macro AUC</span>{value}{scope}{val}{ref}{warn}</div>"
    )


def _flaws(results: Mapping[str, Any]) -> str:
    if not reference(results):  # another target than G12EC: no original numbers to qualify
        return ""
    items = "".join(f"<li>{_e(f)}</li>" for f in ORIGINAL_FLAWS)
    return (
        '<div class="callout"><strong>The original study\'s numbers (grey, dashed, hollow diamonds) are not '
        "directly comparable.</strong> They are single runs of a flawed protocol on its 18 classes, shown for "
        f"orientation only and only beside results of that label protocol ({_e(reference_protocol(results))}):"
        f"<ol>{items}</ol></div>"
    )


def _method(results: Mapping[str, Any]) -> str:
    items = "".join(f"<li><strong>{_e(k)}</strong>: {_e(v)}</li>" for k, v in T.method_items(results))
    return f'<div class="method"><strong>How the numbers are made</strong><ul>{items}</ul></div>'


def _headline(results: Mapping[str, Any], figs: Mapping[str, Figure]) -> str:
    if not section(results, "headline"):
        body = '<div class="empty">not run</div>' + _pretrain_line(results) + _flaws(results)
    else:
        body = (
            _kpi_cards(results)
            + _img(figs.get("headline"), missing_word(results))
            + render_table(T.headline_table(results))
            + _pretrain_line(results)
            + _method(results)
            + _flaws(results)
            + _details(
                "Other metrics: AUPRC, challenge metric, Brier, ECE",
                render_table(T.secondary_table(results), "not recorded"),
            )
        )
    return _section(
        "headline",
        "Headline: fine-tuned vs standalone",
        "per label protocol",
        "Does starting from a PTB-XL pre-trained network beat training from scratch on the target? "
        "Both arms share the split, preprocessing and test records; the difference is a paired bootstrap.",
        body,
    )


def _exp(results: Mapping[str, Any], figs: Mapping[str, Figure], key: str, title: str, lead: str, table) -> str:
    if not section(results, key):
        return _section(key, title, "", lead, '<div class="empty">not run</div>')
    t = table(results)
    n = len(t.rows) if t else 0
    body = _img(figs.get(key), missing_word(results)) + _details(f"Numbers ({n} rows)", render_table(t), open_=n <= 8)
    return _section(key, title, "", lead, body)


def _exp4(results: Mapping[str, Any], figs: Mapping[str, Figure]) -> str:
    lead = (
        "Are the predicted probabilities trustworthy, before and after calibration? Calibrators are fitted on "
        "the validation split only and applied to the test split (the original fitted on the test fold)."
    )
    if not section(results, "exp4"):
        return _section("exp4", "Experiment 4: calibration", "", lead, '<div class="empty">not run</div>')
    parts = [_img(figs.get("exp4_metrics"), missing_word(results))]
    tables = T.exp4_tables(results)
    parts.append(
        _details(
            f"ECE and Brier per calibrator ({len(tables)} table(s))",
            "".join(render_table(t) for t in tables) or '<div class="empty">not run</div>',
            open_=True,
        )
    )
    for f in (f for name, f in figs.items() if name.startswith("exp4_reliability_")):
        parts.append(f"<h3>Reliability diagrams, {_e(f.group)} (one run per arm: its first seed)</h3>")
        parts.append(_img(f, missing_word(results)))
    return _section("exp4", "Experiment 4: calibration", "", lead, "".join(parts))


def _gallery(results: Mapping[str, Any], figs: Mapping[str, Figure]) -> str:
    lead = T.gallery_lead(results)
    if not lead:
        return _section(
            "gallery",
            "Why the model decided",
            "",
            "Explained test records of the headline's fine-tuned network.",
            "<div class=\"empty\">not run (needs captum: pip install 'ecg-transfer[explain]')</div>",
        )
    parts = []
    for label in dict.fromkeys(f.group for n, f in figs.items() if n.startswith("gallery_")):
        parts.append(f"<h3>{_e(label)}</h3>")
        parts += [_img(f) for n, f in figs.items() if n.startswith("gallery_") and f.group == label]
    return _section("gallery", "Why the model decided", "", lead, "".join(parts))


def _per_class(results: Mapping[str, Any], figs: Mapping[str, Figure]) -> str:
    lead = (
        "Which labels gain from pre-training? Per-label AUC on the test split, labels with most positives first, "
        "with the paired difference; the better arm highlighted only where that difference's 95 % CI excludes 0. "
        "Labels with few positives have wide uncertainty."
    )
    tabs = T.per_class_tables(results)
    parts = []
    for protocol, t in tabs:
        fig = next((f for n, f in figs.items() if n.startswith("per_class_") and f.group == protocol), None)
        img = f'<div class="perclass-fig">{_img(fig)}</div>' if fig and fig.png else ""
        parts.append(f"<h3>{_e(protocol)}</h3>{img}{render_table(t)}")
    if not parts:
        parts.append('<div class="empty">not run</div>')
    pre = T.pretrain_per_class_table(results)
    if pre is not None:
        parts.append(_details(f"PTB-XL pre-training per label ({len(pre.rows)} labels)", render_table(pre)))
    return _section("per-class", "Per-label AUC", "", lead, "".join(parts))


def _status(results: Mapping[str, Any]) -> str:
    st = T.status_summary(results)
    if st is None:
        return _section("status", "Status", "", "Runs of this study.", '<div class="empty">not recorded</div>')
    colors = {"done": "#34d399", "failed": "#f87171", "running": "#fbbf24", "left": "#e5e7eb"}
    stats = "".join(
        f'<div class="stat {k}"><div class="n">{st[k]}</div><div class="lbl">{k}</div></div>'
        for k in ("total", "done", "failed", "running", "left")
    )
    bar = ""
    if st["total"]:
        bar = (
            '<div class="bar">'
            + "".join(
                f'<span style="width:{100 * st[k] / st["total"]:.2f}%;background:{c}" title="{k}"></span>'
                for k, c in colors.items()
                if st[k]
            )
            + "</div>"
        )
    ft = T.failed_runs_table(results)
    fails = render_table(ft) if ft else '<p class="lead">No run failed.</p>'
    word = missing_word(results)
    lead = (
        "All runs done."
        if not st["left"] and not st["running"] and not st["failed"]
        else f"Values that are not there yet read “{word}” throughout the report."
    )
    return _section("status", "Status", "", _e(lead), f'<div class="stats">{stats}</div>{bar}{fails}')


def _metadata(results: Mapping[str, Any]) -> str:
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in T.metadata_items(results))
    return _section(
        "metadata",
        "Study metadata",
        "",
        "What was run, where, and with which code and data.",
        f'<dl class="meta">{items}</dl>',
    )


def _exp2_target(results: Mapping[str, Any]) -> str:
    from .data import rows, share_key

    ts = next(
        (
            share_key(r.get("target_share"))
            for r in rows(section(results, "exp2"))
            if share_key(r.get("target_share")) is not None
        ),
        None,
    )
    pool = f"the {target_name(results)} pool"
    return (
        f"{ts:g} % of {pool}, tested on the rest of it (as in experiment 1)"
        if ts is not None
        else f"a small share of {pool}"
    )


def _exp1_protocol(results: Mapping[str, Any]) -> str:
    e1 = section(results, "exp1")
    return f"; labels: {e1['protocol']}" if isinstance(e1, dict) and e1.get("protocol") else ""


def render_html(results: Mapping[str, Any], figs: Mapping[str, Figure]) -> str:
    """The complete page."""
    st: dict[str, Any] = v if isinstance(v := results.get("study"), dict) else {}
    t = target_name(results)
    body = [
        _headline(results, figs),
        _exp(
            results,
            figs,
            "exp1",
            "Experiment 1: how much target data?",
            f"Macro AUC against the share of {_e(t)} data used for training, fine-tuned and standalone, in two "
            f"variants: a share of the pool ({_e(pool_text(results))}; the validation folds stay outside) "
            "trains and the rest of the pool tests (as the original did, the test set shrinks as the share "
            "grows), or a share of the training folds trains and the test folds test (comparable across "
            "shares)" + _e(_exp1_protocol(results)) + ".",
            T.exp1_table,
        ),
        _exp(
            results,
            figs,
            "exp2",
            "Experiment 2: how much source data?",
            "Pre-training on a share of PTB-XL (the test fold fixed for every share), then fine-tuning on "
            f"{_e(_exp2_target(results))}.",
            T.exp2_table,
        ),
        _exp(
            results,
            figs,
            "exp3",
            "Experiment 3: sampling rate",
            "Every arm at one sampling rate (PTB-XL records at their native rate where available, "
            f"{_e(t)} resampled polyphase)."
            + beside_original(results, " The original's 100 Hz G12EC result (≈ 0.49) came from mis-ordered records."),
            T.exp3_table,
        ),
        _exp4(results, figs),
        _exp(
            results,
            figs,
            "exp5",
            "Experiment 5: input representation",
            "Time-domain input against frequency-domain inputs defined per window (spectrum, log-spectrum, "
            "spectrogram).",
            T.exp5_table,
        ),
        _exp(
            results,
            figs,
            "exp6",
            "Experiment 6: how best to use PTB-XL",
            "No pre-training, supervised pre-training on a PTB-XL task, or self-supervised pre-training on "
            f"PTB-XL's signals, each fine-tuned on a share of the {_e(t)} pool and tested on the rest of it; per "
            "backbone.",
            T.exp6_table,
        ),
        _per_class(results, figs),
        _gallery(results, figs),
        _status(results),
        _metadata(results),
    ]
    from markupsafe import Markup  # jinja2's own; imported with the template engine, when a page is made

    return render(
        "report.html.j2",
        title=f"Study report: {st.get('name', 'study')}",
        **_hero_context(results),
        nav=[(sid, title.format(target=t)) for sid, title in SECTIONS],
        sections=[Markup(b) for b in body],  # built with every value escaped (_e)
        digest=str(st.get("spec_digest") or "")[:16],
    )
