"""The study report as one self-contained HTML page: CSS inline, figures as base64 PNG data URIs,
no script and no external reference, so the file can be mailed, archived or opened offline.

Every value goes through ``html.escape``; the structure is plain string building (no template
engine dependency). Sections whose data is missing say "not run"; null values say "pending" /
"failed" (see ``data.missing_word``).
"""

from __future__ import annotations

import base64
from html import escape
from typing import Any, Mapping

from . import tables as T
from .data import (ORIGINAL_FLAWS, Interval, fmt, fmt_ci, fmt_p, machinery_check, missing_word, reference_protocol,
                   section, seeds_note)
from .figures import Figure

CSS = """
:root{--ft:#2563eb;--sa:#ea580c;--pre:#059669;--ink:#111827;--muted:#6b7280;--line:#e5e7eb;--bg:#f3f5f9;
--good:#15803d;--bad:#b91c1c;--warn:#b45309}
*{box-sizing:border-box}
html{scroll-behavior:smooth}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.55 -apple-system,BlinkMacSystemFont,"Segoe UI",
Roboto,"Helvetica Neue",Arial,"DejaVu Sans",sans-serif;-webkit-font-smoothing:antialiased}
.wrap{max-width:1180px;margin:0 auto;padding:0 28px}
.hero{background:linear-gradient(120deg,#0f172a 0%,#1e3a8a 60%,#1d4ed8 100%);color:#fff;padding:34px 0 30px}
.eyebrow{text-transform:uppercase;letter-spacing:.12em;font-size:12px;opacity:.7;font-weight:600}
.hero h1{margin:6px 0 4px;font-size:34px;line-height:1.15;font-weight:750;letter-spacing:-.01em}
.hero .sub{opacity:.85;margin:0 0 18px;font-size:15px}
.chips{display:flex;flex-wrap:wrap;gap:8px;margin:0 0 16px}
.chip{background:rgba(255,255,255,.12);border:1px solid rgba(255,255,255,.22);border-radius:999px;padding:3px 11px;
font-size:13px}
.progress{height:9px;background:rgba(255,255,255,.18);border-radius:99px;overflow:hidden;display:flex;max-width:620px}
.progress span{display:block;height:100%}
.p-done{background:#34d399}.p-failed{background:#f87171}.p-running{background:#fbbf24}.p-left{background:transparent}
.progress-text{font-size:13px;opacity:.9;margin-top:7px}
nav.toc{position:sticky;top:0;z-index:5;background:rgba(243,245,249,.92);backdrop-filter:blur(6px);
border-bottom:1px solid var(--line)}
nav.toc .wrap{display:flex;flex-wrap:wrap;gap:4px;padding-top:9px;padding-bottom:9px}
nav.toc a{color:#374151;text-decoration:none;font-size:13.5px;padding:4px 11px;border-radius:999px;font-weight:550}
nav.toc a:hover{background:#e0e7ff;color:#1e3a8a}
main{padding:24px 0 50px}
section.card{background:#fff;border:1px solid var(--line);border-radius:14px;padding:24px 28px;margin:0 0 22px;
box-shadow:0 1px 2px rgba(15,23,42,.04),0 6px 18px rgba(15,23,42,.04)}
section.card>h2{margin:0 0 4px;font-size:22px;letter-spacing:-.01em;display:flex;align-items:center;gap:10px}
h2 .tag{font-size:12px;font-weight:650;color:#4338ca;background:#eef2ff;border-radius:6px;padding:2px 8px;
letter-spacing:.02em}
h3{font-size:16px;margin:22px 0 6px}
.lead{color:#4b5563;margin:0 0 16px;max-width:880px}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(330px,1fr));gap:16px;margin:16px 0 20px}
.kpi{border:1px solid var(--line);border-radius:12px;padding:16px 18px;background:linear-gradient(180deg,#fff,#fafbff)}
.kpi-head{font-weight:700;font-size:16px;margin-bottom:10px}
.kpi-head span{font-weight:500;color:var(--muted);font-size:13px;margin-left:6px}
.kpi-nums{display:grid;grid-template-columns:repeat(3,1fr);gap:10px}
.kpi .lbl{font-size:12px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);font-weight:600}
.kpi .big{font-size:29px;font-weight:750;font-variant-numeric:tabular-nums;line-height:1.2}
.kpi .ci{font-size:12.5px;color:var(--muted);font-variant-numeric:tabular-nums}
.big.ft{color:var(--ft)}.big.sa{color:var(--sa)}.big.pre{color:var(--pre)}
.big.good{color:var(--good)}.big.bad{color:var(--bad)}.big.missing{color:#9ca3af;font-size:20px;font-style:italic}
.verdict{margin-top:12px;font-size:13.5px;font-weight:600;border-radius:8px;padding:6px 10px;display:inline-block}
.verdict.good{background:#dcfce7;color:#166534}.verdict.bad{background:#fee2e2;color:#991b1b}
.verdict.neutral{background:#f3f4f6;color:#374151}.verdict.missing{background:#fef3c7;color:#92400e}
figure{margin:14px 0 6px}
figure img{width:100%;height:auto;display:block;border-radius:8px}
figcaption{font-size:13px;color:var(--muted);margin-top:4px}
.tablewrap{overflow-x:auto;margin:8px 0 4px}
table{border-collapse:collapse;width:100%;font-size:13.5px}
th{text-align:left;font-weight:650;color:#374151;background:#f9fafb;border-bottom:2px solid var(--line);
padding:8px 10px;font-size:12.5px;white-space:nowrap}
td{padding:7px 10px;border-bottom:1px solid #f0f1f4;vertical-align:top}
tr:hover td{background:#fafbff}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
th.num{white-space:nowrap}
td .ci{display:block;font-size:11.5px;color:var(--muted);font-weight:400}
td .orig{display:block;font-size:11.5px;color:#9ca3af;font-weight:400;font-style:normal}
td.label{font-weight:600}
td.better{background:#ecfdf5;font-weight:700;color:#065f46}
tr:hover td.better{background:#d1fae5}
td.ref{color:#9ca3af}
td.missing{color:#b45309;font-style:italic}
td.good{color:var(--good);font-weight:700}td.bad{color:var(--bad)}
td.nowrap{white-space:nowrap}
td.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
p.caption{font-size:13px;color:var(--muted);margin:14px 0 2px}
details{margin:12px 0 0}
details>summary{cursor:pointer;color:#1d4ed8;font-weight:600;font-size:14px}
.callout{border-left:4px solid #f59e0b;background:#fffbeb;border-radius:8px;padding:12px 18px;margin:18px 0 2px;
font-size:13.5px;color:#78350f}
.callout strong{color:#78350f}
.callout ol{margin:6px 0 0;padding-left:20px}
.callout li{margin:1px 0}
.empty{border:2px dashed #e5e7eb;border-radius:10px;padding:26px;text-align:center;color:#9ca3af;font-style:italic;
font-size:16px;margin:10px 0}
.empty.bad{color:var(--bad);border-color:#fecaca}
.pre-line{display:flex;flex-wrap:wrap;align-items:baseline;gap:8px 22px;border:1px solid var(--line);border-radius:12px;
padding:12px 18px;margin:16px 0 4px;background:#f8fffb}
.pre-line .big{font-size:24px;font-weight:750;color:var(--pre);font-variant-numeric:tabular-nums}
.pre-line .muted{color:var(--muted);font-size:13px}
.grid2{display:grid;grid-template-columns:minmax(0,1.1fr) minmax(0,1fr);gap:22px;align-items:start}
@media (max-width:900px){.grid2{grid-template-columns:1fr}}
.stats{display:grid;grid-template-columns:repeat(5,1fr);gap:12px;margin:14px 0}
.stat{border:1px solid var(--line);border-radius:10px;padding:10px 14px}
.stat .n{font-size:26px;font-weight:750;font-variant-numeric:tabular-nums}
.stat .lbl{font-size:12px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);font-weight:600}
.stat.done .n{color:var(--good)}.stat.failed .n{color:var(--bad)}.stat.running .n{color:var(--warn)}
.bar{height:12px;background:#f3f4f6;border-radius:99px;overflow:hidden;display:flex}
.bar span{display:block;height:100%}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:6px 20px;margin:10px 0 0;font-size:14px}
dl.meta dt{color:var(--muted);font-weight:600}
dl.meta dd{margin:0;word-break:break-all}
footer{color:var(--muted);font-size:12.5px;text-align:center;padding:0 0 30px}
.machinery{background:#7f1d1d;color:#fff;border:3px solid #fecaca;border-radius:12px;padding:14px 20px;margin:0 0 18px;
font-size:17px;line-height:1.45}
.machinery strong{font-size:21px;display:block;letter-spacing:.02em;text-transform:uppercase}
.warn{display:block;font-size:11.5px;font-weight:650;color:#92400e;background:#fef3c7;border-radius:5px;
padding:1px 6px;margin-top:3px;white-space:normal}
td .scope{display:block;font-size:11px;color:#6b7280;font-weight:400;white-space:nowrap}
.kpi .scope{font-size:12.5px;color:var(--muted);margin:-4px 0 10px}
.banner-warn{border-left:4px solid #d97706;background:#fffbeb;color:#92400e;font-weight:650;border-radius:8px;
padding:8px 14px;margin:10px 0;font-size:13.5px}
.method{border:1px solid var(--line);border-radius:10px;background:#f9fafb;padding:10px 16px;margin:16px 0 2px;
font-size:13px;color:#374151}
.method ul{margin:4px 0 0;padding-left:18px}
.perclass-fig{max-width:640px}
"""

SECTIONS = [("headline", "Headline"), ("exp1", "1 · G12EC share"), ("exp2", "2 · PTB-XL share"),
            ("exp3", "3 · Sampling rate"), ("exp4", "4 · Calibration"), ("exp5", "5 · Input"),
            ("exp6", "6 · Strategy"),
            ("per-class", "Per label"), ("gallery", "Why"), ("status", "Status"), ("metadata", "Metadata")]


def _e(x: Any) -> str:
    return escape(str(x), quote=True)


def _img(fig: Figure | None, empty: str = "not run") -> str:
    """The figure as a data URI; ``empty`` when it has no data (pending / failed / not run)."""
    if fig is not None and fig.error:
        return f'<div class="empty bad">figure could not be drawn: {_e(fig.error)}</div>'
    if fig is None or fig.png is None:
        return f'<div class="empty">{_e(empty)}</div>'
    data = base64.b64encode(fig.png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(fig.caption)}">'
            f"<figcaption>{_e(fig.caption)}</figcaption></figure>")


def render_table(t: T.Table | None, empty: str = "not run") -> str:
    if t is None:
        return f'<div class="empty">{_e(empty)}</div>'
    out = []
    if t.warn:
        out.append(f'<div class="banner-warn">{_e(t.warn)}</div>')
    if t.caption:
        out.append(f'<p class="caption">{_e(t.caption)}</p>')
    head = "".join(f'<th class="num">{_e(h)}</th>' if i in t.numeric else f"<th>{_e(h)}</th>"
                   for i, h in enumerate(t.headers))
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
            cells.append(f"<td{cls}>{_e(c.text)}{sub}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    out.append(f'<div class="tablewrap"><table><thead><tr>{head}</tr></thead>'
               f'<tbody>{"".join(body)}</tbody></table></div>')
    if t.note:
        out.append(f'<p class="caption">{_e(t.note)}</p>')
    return "".join(out)


def _details(summary: str, inner: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{_e(summary)}</summary>{inner}</details>"


def _section(sid: str, title: str, tag: str, lead: str, body: str) -> str:
    tag_html = f'<span class="tag">{_e(tag)}</span>' if tag else ""
    return (f'<section class="card" id="{sid}"><h2>{_e(title)}{tag_html}</h2>'
            f'<p class="lead">{lead}</p>{body}</section>')


# ---------------------------------------------------------------------------------------------


def _hero(results: Mapping[str, Any]) -> str:
    st = results.get("study") if isinstance(results.get("study"), dict) else {}
    src = st.get("source") if isinstance(st.get("source"), dict) else {}
    tgt = st.get("target") if isinstance(st.get("target"), dict) else {}
    s_name = {"ptbxl": "PTB-XL"}.get(str(src.get("dataset", "")), str(src.get("dataset") or "the source"))
    t_name = str(tgt.get("name") or tgt.get("dataset") or "the target")
    title = f"{s_name} → {t_name}" if src or tgt else "Transfer study"
    chips = [f"model {st['model']}" if st.get("model") else None,
             f"profile {st['profile']}" if st.get("profile") else "full study",
             f"seeds {', '.join(map(str, st['seeds']))}" if isinstance(st.get("seeds"), list) and st["seeds"] else None,
             f"generated {st['generated']}" if st.get("generated") else None]
    chips_html = "".join(f'<span class="chip">{_e(c)}</span>' for c in chips if c)
    stat = T.status_summary(results)
    prog = ""
    if stat and stat["total"]:
        parts = "".join(f'<span class="p-{k}" style="width:{100 * stat[k] / stat["total"]:.2f}%"></span>'
                        for k in ("done", "failed", "running", "left") if stat[k])
        text = (f"{stat['done']} of {stat['total']} runs done · {stat['failed']} failed · "
                f"{stat['running']} running · {stat['left']} left")
        prog = f'<div class="progress">{parts}</div><div class="progress-text">{_e(text)}</div>'
    elif not stat:
        prog = '<div class="progress-text">run status: not recorded</div>'
    banner = ""
    if machinery_check(results):
        head, rest = T.machinery_text(results)
        banner = f'<div class="machinery" role="alert"><strong>{_e(head)}</strong>{_e(rest)}</div>'
    return (f'<header class="hero"><div class="wrap">{banner}<div class="eyebrow">ecg-transfer · study report · '
            f'{_e(st.get("name", "study"))}</div><h1>{_e(title)}: does pre-training help?</h1>'
            f'<p class="sub">Fine-tuned from {_e(s_name)} vs trained from scratch on {_e(t_name)}, same split, same '
            f"preprocessing, same test records; 95 % bootstrap confidence intervals throughout.</p>"
            f'<div class="chips">{chips_html}</div>{prog}</div></header>')


def _nav() -> str:
    links = "".join(f'<a href="#{sid}">{_e(name)}</a>' for sid, name in SECTIONS)
    return f'<nav class="toc"><div class="wrap">{links}</div></nav>'


def _num_block(label: str, iv: Interval, cls: str, missing: str, sign: bool = False) -> str:
    """One big number of a KPI card: label, value, CI and the spread over runs (or the p-value)."""
    if not iv.ok:
        return (f'<div><div class="lbl">{label}</div><div class="big missing">{_e(missing)}</div>'
                f'<div class="ci">&nbsp;</div><div class="ci">&nbsp;</div></div>')
    extra = fmt_p(iv.p, iv.ties) if label == "difference" else seeds_note(iv)
    return (f'<div><div class="lbl">{label}</div><div class="big {cls}">{fmt(iv.value, 3, sign)}</div>'
            f'<div class="ci">{_e(fmt_ci(iv, 3, sign)) or "&nbsp;"}</div>'
            f'<div class="ci">{_e(extra) or "&nbsp;"}</div></div>')


def _kpi_cards(results: Mapping[str, Any]) -> str:
    cards = []
    for c in T.headline_cards(results):
        def num_block(label: str, iv: Interval, cls: str, sign: bool = False, m: str = c["missing"]) -> str:
            return _num_block(label, iv, cls, m, sign)

        d = c["difference"]
        dcls = "good" if c["tone"] == "good" else ("bad" if c["tone"] == "bad" else "")
        info = [c["labels"]] if c["labels"] else []
        if c["n_test"] is not None:
            info.append(f"{int(c['n_test']):,} test records")
        warn = f'<div class="banner-warn">{_e(c["warn"])}</div>' if c["warn"] else ""
        cards.append(f'<div class="kpi"><div class="kpi-head">{_e(c["protocol"])}</div>'
                     f'<div class="scope">macro AUC over {_e(" · ".join(info))}</div>{warn}<div class="kpi-nums">'
                     f'{num_block("fine-tuned", c["finetuned"], "ft")}'
                     f'{num_block("standalone", c["standalone"], "sa")}{num_block("difference", d, dcls, True)}</div>'
                     f'<div class="verdict {c["tone"]}">{_e(c["verdict"])}</div></div>')
    return f'<div class="kpis">{"".join(cards)}</div>' if cards else ""


def _pretrain_line(results: Mapping[str, Any]) -> str:
    p = T.pretrain_summary(results)
    if p is None:
        return '<div class="pre-line"><strong>PTB-XL pre-training</strong><span class="muted">not run</span></div>'
    iv = p["test"]
    value = (f'<span class="big">{fmt(iv.value)}</span><span class="muted">{_e(fmt_ci(iv))}</span>' if iv.ok
             else f'<span class="muted"><em>{_e(p["missing"])}</em></span>')
    ref = (f'<span class="muted">original study: {fmt(p["ref"])} (500 Hz, random folds, test set differs)</span>'
           if p["ref"] is not None else "")
    val = f'<span class="muted">validation {fmt(p["val"])}</span>' if p["val"] is not None else ""
    scope = f'<span class="muted">{_e(p["scope"])}</span>' if p["scope"] else ""
    warn = f'<span class="warn">{_e(p["warn"])}</span>' if p["warn"] and iv.ok else ""
    return (f'<div class="pre-line"><strong>PTB-XL pre-training</strong><span class="muted">{_e(p["labels"])} labels, '
            f'{_e(p["fs"])}, test fold 10 macro AUC</span>{value}{scope}{val}{ref}{warn}</div>')


def _flaws(results: Mapping[str, Any]) -> str:
    items = "".join(f"<li>{_e(f)}</li>" for f in ORIGINAL_FLAWS)
    return ('<div class="callout"><strong>The original study\'s numbers (grey, dashed, hollow diamonds) are not '
            "directly comparable.</strong> They are single runs of a flawed protocol on its 18 classes, shown for "
            f"orientation only and only beside results of that label protocol ({_e(reference_protocol(results))}):"
            f"<ol>{items}</ol></div>")


def _method(results: Mapping[str, Any]) -> str:
    items = "".join(f"<li><strong>{_e(k)}</strong>: {_e(v)}</li>" for k, v in T.method_items(results))
    return f'<div class="method"><strong>How the numbers are made</strong><ul>{items}</ul></div>'


def _headline(results: Mapping[str, Any], figs: Mapping[str, Figure]) -> str:
    if not section(results, "headline"):
        body = '<div class="empty">not run</div>' + _pretrain_line(results) + _flaws(results)
    else:
        body = (_kpi_cards(results) + _img(figs.get("headline"), missing_word(results)) +
                render_table(T.headline_table(results)) +
                _pretrain_line(results) + _method(results) + _flaws(results) +
                _details("Other metrics: AUPRC, challenge metric, Brier, ECE",
                         render_table(T.secondary_table(results), "not recorded")))
    return _section("headline", "Headline: fine-tuned vs standalone", "per label protocol",
                    "Does starting from a PTB-XL pre-trained network beat training from scratch on the target? "
                    "Both arms share the split, preprocessing and test records; the difference is a paired bootstrap.",
                    body)


def _exp(results: Mapping[str, Any], figs: Mapping[str, Figure], key: str, title: str, lead: str, table) -> str:
    if not section(results, key):
        return _section(key, title, "", lead, '<div class="empty">not run</div>')
    t = table(results)
    n = len(t.rows) if t else 0
    body = _img(figs.get(key), missing_word(results)) + _details(f"Numbers ({n} rows)", render_table(t), open_=n <= 8)
    return _section(key, title, "", lead, body)


def _exp4(results: Mapping[str, Any], figs: Mapping[str, Figure]) -> str:
    lead = ("Are the predicted probabilities trustworthy, before and after calibration? Calibrators are fitted on "
            "the validation split only and applied to the test split (the original fitted on the test fold).")
    if not section(results, "exp4"):
        return _section("exp4", "Experiment 4: calibration", "", lead, '<div class="empty">not run</div>')
    parts = [_img(figs.get("exp4_metrics"), missing_word(results))]
    tables = T.exp4_tables(results)
    parts.append(_details(f"ECE and Brier per calibrator ({len(tables)} table(s))",
                          "".join(render_table(t) for t in tables) or '<div class="empty">not run</div>', open_=True))
    for f in (f for name, f in figs.items() if name.startswith("exp4_reliability_")):
        parts.append(f"<h3>Reliability diagrams, {_e(f.group)} (one run per arm: its first seed)</h3>")
        parts.append(_img(f, missing_word(results)))
    return _section("exp4", "Experiment 4: calibration", "", lead, "".join(parts))


def _gallery(results: Mapping[str, Any], figs: Mapping[str, Figure]) -> str:
    lead = T.gallery_lead(results)
    if not lead:
        return _section("gallery", "Why the model decided", "", "Explained test records of the headline's "
                        "fine-tuned network.", '<div class="empty">not run (needs captum: pip install '
                        "'ecg-transfer[explain]')</div>")
    parts = []
    for label in dict.fromkeys(f.group for n, f in figs.items() if n.startswith("gallery_")):
        parts.append(f"<h3>{_e(label)}</h3>")
        parts += [_img(f) for n, f in figs.items() if n.startswith("gallery_") and f.group == label]
    return _section("gallery", "Why the model decided", "", lead, "".join(parts))


def _per_class(results: Mapping[str, Any], figs: Mapping[str, Figure]) -> str:
    lead = ("Which labels gain from pre-training? Per-label AUC on the test split, labels with most positives first, "
            "with the paired difference; the better arm highlighted only where that difference's 95 % CI excludes 0. "
            "Labels with few positives have wide uncertainty.")
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
    stats = "".join(f'<div class="stat {k}"><div class="n">{st[k]}</div><div class="lbl">{k}</div></div>'
                    for k in ("total", "done", "failed", "running", "left"))
    bar = ""
    if st["total"]:
        bar = '<div class="bar">' + "".join(
            f'<span style="width:{100 * st[k] / st["total"]:.2f}%;background:{c}" title="{k}"></span>'
            for k, c in colors.items() if st[k]) + "</div>"
    ft = T.failed_runs_table(results)
    fails = render_table(ft) if ft else '<p class="lead">No run failed.</p>'
    word = missing_word(results)
    lead = ("All runs done." if not st["left"] and not st["running"] and not st["failed"] else
            f"Values that are not there yet read “{word}” throughout the report.")
    return _section("status", "Status", "", _e(lead), f'<div class="stats">{stats}</div>{bar}{fails}')


def _metadata(results: Mapping[str, Any]) -> str:
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in T.metadata_items(results))
    return _section("metadata", "Study metadata", "", "What was run, where, and with which code and data.",
                    f'<dl class="meta">{items}</dl>')


def _exp2_target(results: Mapping[str, Any]) -> str:
    from .data import rows, share_key

    ts = next((share_key(r.get("target_share")) for r in rows(section(results, "exp2"))
               if share_key(r.get("target_share")) is not None), None)
    return f"{ts:g} % of G12EC (as in experiment 1)" if ts is not None else "a small share of G12EC"


def _exp1_protocol(results: Mapping[str, Any]) -> str:
    e1 = section(results, "exp1")
    return f"; labels: {e1['protocol']}" if isinstance(e1, dict) and e1.get("protocol") else ""


def render_html(results: Mapping[str, Any], figs: Mapping[str, Figure]) -> str:
    """The complete page."""
    st = results.get("study") if isinstance(results.get("study"), dict) else {}
    body = [
        _headline(results, figs),
        _exp(results, figs, "exp1", "Experiment 1: how much target data?",
             "Macro AUC against the share of G12EC used for training, fine-tuned and standalone, in two variants: "
             "testing on all the records not used for training (as the original did, the test set shrinks as the "
             "share grows) and on one fixed test fold (comparable across shares)" + _e(_exp1_protocol(results)) + ".",
             T.exp1_table),
        _exp(results, figs, "exp2", "Experiment 2: how much source data?",
             "Pre-training on a share of PTB-XL (the test fold fixed for every share), then fine-tuning on "
             f"{_e(_exp2_target(results))}.", T.exp2_table),
        _exp(results, figs, "exp3", "Experiment 3: sampling rate",
             "Every arm at one sampling rate (PTB-XL records at their native rate where available, G12EC resampled "
             "polyphase). The original's 100 Hz G12EC result (≈ 0.49) came from mis-ordered records.", T.exp3_table),
        _exp4(results, figs),
        _exp(results, figs, "exp5", "Experiment 5: input representation",
             "Time-domain input against frequency-domain inputs defined per window (spectrum, log-spectrum, "
             "spectrogram).", T.exp5_table),
        _exp(results, figs, "exp6", "Experiment 6: how best to use PTB-XL",
             "No pre-training, supervised pre-training on a PTB-XL task, or self-supervised pre-training on "
             "PTB-XL's signals, each fine-tuned on a share of G12EC and tested on the rest; per backbone.",
             T.exp6_table),
        _per_class(results, figs),
        _gallery(results, figs),
        _status(results),
        _metadata(results),
    ]
    title = f"Study report: {st.get('name', 'study')}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
            f"{_hero(results)}{_nav()}<main class=\"wrap\">{''.join(body)}</main>"
            f"<footer>Generated by <code>ecg-transfer report</code> from results.json · "
            f"{_e(str(st.get('spec_digest') or '')[:16])}</footer></body></html>\n")
