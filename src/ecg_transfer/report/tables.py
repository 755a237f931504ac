"""The report's tables, built once from results.json and rendered twice (HTML and Markdown).

A table is headers plus rows of cells; a cell is its main text, an optional second line (the CI),
and a kind that the renderers turn into a style: ``better`` (the winning arm of a pair, bold /
highlighted), ``missing`` (not run / pending / failed), ``num`` (right-aligned figures), ``ref``
(the original study's numbers, greyed). Keeping this separate from the renderers guarantees that
the page and the Markdown summary show the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .data import (Interval, fmt, fmt_ci, fmt_p, fmt_seconds, interval, missing_word, num, ref_value, row_missing,
                   rows, section, seeds_note, share_key)

ARM = {"finetuned": "fine-tuned", "standalone": "standalone", "pretrain": "pre-training"}
#: secondary metrics of the headline; True where lower is better
SECONDARY = {"macro_auprc": ("macro AUPRC", False), "challenge": ("challenge metric", False),
             "brier": ("Brier", True), "ece": ("ECE", True)}


@dataclass
class Cell:
    text: str
    sub: str = ""
    kind: str = ""  # space-separated: num, better, missing, label, good, bad, mono
    ref: str = ""  # the original study's number for this cell, shown beneath it


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    caption: str = ""
    note: str = ""
    #: columns to right-align (indices); the rest are left-aligned
    numeric: tuple[int, ...] = ()


def value_cell(iv: Interval, missing: str, *, digits: int = 3, sign: bool = False, seeds: bool = True,
               ref: float | None = None) -> Cell:
    """A value with its CI below it (and the spread over runs), or the missing word; ``ref``: the
    original study's number, shown beneath."""
    r = f"original {fmt(ref, 3, sign)}" if ref is not None else ""
    if not iv.ok:
        return Cell(missing, kind="num missing", ref=r)
    sub = fmt_ci(iv, digits, sign)
    note = seeds_note(iv) if seeds else ""
    if note:
        sub = f"{sub} · {note}" if sub else note
    return Cell(fmt(iv.value, digits, sign), sub, "num", r)


def mark_better(a: Cell, b: Cell, va: float | None, vb: float | None, lower_is_better: bool = False,
                digits: int = 3) -> None:
    """Tag the better of two cells (nothing on a missing value or a tie at the shown precision)."""
    if va is None or vb is None or round(va, digits) == round(vb, digits):
        return
    win = a if (va < vb) == lower_is_better else b
    win.kind += " better"


def _diff_cell(d: Interval, missing: str, ref: float | None = None) -> Cell:
    c = value_cell(d, missing, sign=True, seeds=False, ref=ref)
    if not d.ok:
        return c
    p = fmt_p(d.p)
    c.sub = f"{c.sub} · {p}" if c.sub and p else (c.sub or p)
    if d.has_ci:
        c.kind += " good" if d.lo > 0 else (" bad" if d.hi < 0 else "")
    return c


def _signed(x: float) -> str:
    """A difference to 3 decimals, without a "-0.000"."""
    return "0.000" if abs(x) < 0.0005 else fmt(x, 3, True)


def _int(x: Any) -> str:
    v = num(x)
    return f"{int(v):,}" if v is not None else "—"


# ---------------------------------------------------------------------------------------------
# headline


def headline_table(results: Mapping[str, Any]) -> Table | None:
    hl = rows(section(results, "headline"))
    if not hl:
        return None
    miss = missing_word(results)
    rf, rs = ref_value(results, "headline", "finetuned"), ref_value(results, "headline", "standalone")
    rd = rf - rs if rf is not None and rs is not None else None
    t = Table(["protocol", "records train / val / test", "fine-tuned", "standalone", "difference (paired)"],
              numeric=(2, 3, 4),
              caption="Macro AUC on the G12EC test split: value, 95 % bootstrap CI below (multi-seed arms: mean over "
                      "seeds, pooled CI, sd over seeds); difference: paired bootstrap on the same test records; "
                      "grey: the original study's single-run numbers.")
    for row in hl:
        m = row_missing(row, miss)
        ft, sa = interval(row.get("finetuned")), interval(row.get("standalone"))
        cf, cs = value_cell(ft, m, ref=rf), value_cell(sa, m, ref=rs)
        mark_better(cf, cs, ft.value, sa.value)
        labels = row.get("labels") if isinstance(row.get("labels"), list) else []
        n = [row.get(k) for k in ("n_train", "n_val", "n_test")]
        t.rows.append([
            Cell(str(row.get("protocol", "?")), f"{len(labels)} labels" if labels else "", kind="label"),
            Cell(" / ".join(_int(x) for x in n), kind="nowrap"),
            cf, cs, _diff_cell(interval(row.get("difference")), m, rd),
        ])
    return t


def headline_cards(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One summary per protocol: both arms, the difference and a one-line verdict."""
    miss = missing_word(results)
    out = []
    for row in rows(section(results, "headline")):
        m = row_missing(row, miss)
        ft, sa, d = (interval(row.get(k)) for k in ("finetuned", "standalone", "difference"))
        if d.ok and d.has_ci:
            verdict, tone = ((f"pre-training helps: {fmt(d.value, 3, True)} AUC", "good") if d.lo > 0 else
                             (f"pre-training hurts: {fmt(d.value, 3, True)} AUC", "bad") if d.hi < 0 else
                             ("no clear difference (CI includes 0)", "neutral"))
        elif d.ok:
            verdict, tone = f"difference {fmt(d.value, 3, True)} (no CI)", "neutral"
        else:
            verdict, tone = f"difference {m}", "missing"
        labels = row.get("labels") if isinstance(row.get("labels"), list) else []
        out.append({"protocol": str(row.get("protocol", "?")), "n_labels": len(labels),
                    "n_test": num(row.get("n_test")), "finetuned": ft, "standalone": sa, "difference": d,
                    "verdict": verdict, "tone": tone, "missing": m})
    return out


def secondary_table(results: Mapping[str, Any]) -> Table | None:
    hl = [r for r in rows(section(results, "headline")) if isinstance(r.get("metrics"), dict) and r["metrics"]]
    if not hl:
        return None
    miss = missing_word(results)
    t = Table(["protocol", "metric", "fine-tuned", "standalone"], numeric=(2, 3),
              caption="Other metrics of the same test predictions (95 % CI). AUPRC and the challenge metric: "
                      "higher is better (↑); Brier score and ECE: lower is better (↓).")
    for row in hl:
        m = row_missing(row, miss)
        met = row["metrics"]
        for key, (name, lower) in SECONDARY.items():
            a = interval((met.get("finetuned") or {}).get(key))
            b = interval((met.get("standalone") or {}).get(key))
            if not a.ok and not b.ok and key == "challenge":
                continue
            digits = 4 if lower else 3
            ca, cb = value_cell(a, m, seeds=False, digits=digits), value_cell(b, m, seeds=False, digits=digits)
            mark_better(ca, cb, a.value, b.value, lower, digits)
            t.rows.append([Cell(str(row.get("protocol", "?")), kind="label"),
                           Cell(name + (" ↓" if lower else " ↑")), ca, cb])
    return t


def pretrain_summary(results: Mapping[str, Any]) -> dict[str, Any] | None:
    pre = section(results, "pretrain")
    if not isinstance(pre, dict):
        return None
    fs = num(pre.get("fs"))
    return {"labels": str(pre.get("labels", "?")), "fs": f"{fs:g} Hz" if fs else "?",
            "test": interval(pre.get("test_macro_auc")), "val": num(pre.get("val_macro_auc")),
            "ref": ref_value(results, "headline", "pretrain"), "run": pre.get("run"),
            "n_train": num(pre.get("n_train")), "missing": row_missing(pre, missing_word(results))}


def pretrain_per_class_table(results: Mapping[str, Any]) -> Table | None:
    pre = section(results, "pretrain")
    pcs = rows(pre.get("per_class")) if isinstance(pre, dict) else []
    if not pcs:
        return None
    miss = missing_word(results)
    t = Table(["label", "positives (test)", "AUC"], numeric=(1, 2),
              caption="PTB-XL pre-training, test fold, per label.")
    for p in sorted(pcs, key=lambda p: -(num(p.get("n_pos")) or 0)):
        auc = num(p.get("auc"))
        t.rows.append([Cell(str(p.get("label", "?")), kind="label"), Cell(_int(p.get("n_pos")), kind="num"),
                       Cell(fmt(auc), kind="num") if auc is not None
                       else Cell(row_missing(p, miss), kind="num missing")])
    return t


# ---------------------------------------------------------------------------------------------
# experiments


def exp1_table(results: Mapping[str, Any]) -> Table | None:
    e1 = section(results, "exp1")
    if not isinstance(e1, dict):
        return None
    miss = missing_word(results)
    t = Table(["test split", "share of G12EC", "test records", "fine-tuned", "standalone", "difference"],
              numeric=(1, 2, 3, 4, 5),
              caption="Macro AUC (95 % CI) per share of G12EC used for training: mean over runs (repeats / seeds), "
                      "sd over runs; grey: the original study.")
    names = {"rest": "the rest", "fixed_test": "fixed test fold"}
    for variant in ("rest", "fixed_test"):
        vrows = rows(e1.get(variant))
        shares = sorted({s for s in (share_key(r.get("share")) for r in vrows) if s is not None})
        for s in shares:
            at = {r.get("arm"): r for r in vrows if share_key(r.get("share")) == s}
            ft, sa = at.get("finetuned", {}), at.get("standalone", {})
            a, b = interval(ft), interval(sa)
            ca = value_cell(a, row_missing(ft, miss) if ft else "not run",
                            ref=ref_value(results, "exp1", s, "finetuned"))
            cb = value_cell(b, row_missing(sa, miss) if sa else "not run",
                            ref=ref_value(results, "exp1", s, "standalone"))
            mark_better(ca, cb, a.value, b.value)
            n_test = next((r.get("n_test") for r in (ft, sa) if num(r.get("n_test")) is not None), None)
            t.rows.append([Cell(names[variant], kind="label"), Cell(f"{s:g} %", kind="num"),
                           Cell(_int(n_test), kind="num"), ca, cb,
                           Cell(_signed(a.value - b.value), kind="num") if a.ok and b.ok else Cell("—", kind="num")])
    return t if t.rows else None


def exp2_table(results: Mapping[str, Any]) -> Table | None:
    e2 = rows(section(results, "exp2"))
    if not e2:
        return None
    miss = missing_word(results)
    ts = next((share_key(r.get("target_share")) for r in e2 if share_key(r.get("target_share")) is not None), None)
    on = f"{ts:g} % of G12EC" if ts is not None else "a small G12EC share"
    t = Table(["share of PTB-XL", "pre-training records", "PTB-XL test AUC", "G12EC fine-tuned AUC",
               "G12EC standalone AUC"], numeric=(1, 2, 3, 4),
              caption=f"Macro AUC (95 % CI). PTB-XL: the same test fold for every share. G12EC: fine-tuned on {on}; "
                      "standalone: trained from scratch on the same records (does not depend on the PTB-XL share).")
    for r in sorted(e2, key=lambda r: share_key(r.get("share")) or 0):
        m = row_missing(r, miss)
        s = share_key(r.get("share"))
        t.rows.append([Cell(f"{s:g} %" if s is not None else str(r.get("share")), kind="label"),
                       Cell(_int(r.get("n_pretrain_records")), kind="num"),
                       value_cell(interval(r.get("pretrain_test_auc")), m,
                                  ref=ref_value(results, "exp2", s, "pretrain")),
                       value_cell(interval(r.get("finetuned")), m, ref=ref_value(results, "exp2", s, "target")),
                       value_cell(interval(r.get("standalone_reference")), "—")])
    return t


def _grouped_table(results: Mapping[str, Any], data: list[dict], key: str, label, exp: str, first: str,
                   sub) -> Table:
    miss = missing_word(results)
    t = Table([first, "pre-training (PTB-XL test)", "fine-tuned (G12EC test)", "standalone (G12EC test)"],
              numeric=(1, 2, 3))
    for r in data:
        m = row_missing(r, miss)
        cat = r.get(key)
        a, b = interval(r.get("finetuned")), interval(r.get("standalone"))
        ca = value_cell(a, m, ref=ref_value(results, exp, cat, "finetuned"))
        cb = value_cell(b, m, ref=ref_value(results, exp, cat, "standalone"))
        mark_better(ca, cb, a.value, b.value)
        t.rows.append([Cell(label(cat), sub(r), kind="label"),
                       value_cell(interval(r.get("pretrain")), m, ref=ref_value(results, exp, cat, "pretrain")),
                       ca, cb])
    return t


def _hz(x: Any) -> str:
    v = share_key(x)
    return f"{v:g} Hz" if v is not None else str(x)


def exp3_table(results: Mapping[str, Any]) -> Table | None:
    data = sorted(rows(section(results, "exp3")), key=lambda r: share_key(r.get("fs")) or 0.0)
    if not data:
        return None

    def sub(r: dict) -> str:
        parts = []
        if share_key(r.get("source_fs")) is not None:
            parts.append(f"PTB-XL read at {_hz(r.get('source_fs'))}")
        if num(r.get("n_pretrain_records")) is not None:
            parts.append(f"{_int(r.get('n_pretrain_records'))} pre-training records")
        return " · ".join(parts)

    t = _grouped_table(results, data, "fs", _hz, "exp3", "sampling rate", sub)
    t.caption = ("Macro AUC (95 % CI) with every arm at one sampling rate (resampled polyphase, anti-aliased); grey: "
                 "the original study (its 100 Hz G12EC records were mis-ordered).")
    return t


def exp5_table(results: Mapping[str, Any]) -> Table | None:
    data = rows(section(results, "exp5"))
    if not data:
        return None
    t = _grouped_table(results, data, "input", str, "exp5", "input", lambda r: "")
    t.caption = ("Macro AUC (95 % CI) per input representation; grey: the original study, which cropped 2.5 s out "
                 "of an unshifted whole-record spectrum.")
    return t


CAL_METRICS = (("ece", "ECE"), ("ece_macro", "ECE (macro)"), ("brier", "Brier"))


def exp4_tables(results: Mapping[str, Any]) -> list[Table]:
    """One table per protocol: ECE (pooled, macro) and Brier per calibrator for both arms, with
    CIs; the lowest of each column highlighted; the largest AUC change of any label as a note
    (calibration keeps the ranking, so it should be ~0)."""
    miss = missing_word(results)
    e4 = rows(section(results, "exp4"))
    out = []
    for protocol in dict.fromkeys(str(e.get("protocol", "?")) for e in e4):
        group = sorted((e for e in e4 if str(e.get("protocol", "?")) == protocol),
                       key=lambda e: (str(e.get("arm")) != "finetuned", str(e.get("arm"))))
        arms = [(e, e.get("methods") if isinstance(e.get("methods"), dict) else {}) for e in group]
        methods = list(dict.fromkeys(m for _, ms in arms for m in ms)) or ["uncalibrated"]
        cols = [(e, ms, key, f"{name} {ARM.get(str(e.get('arm')), str(e.get('arm')))}")
                for key, name in CAL_METRICS for e, ms in arms]
        t = Table(["calibration", *[c[3] for c in cols]], numeric=tuple(range(1, len(cols) + 1)))
        best = []
        for _, ms, key, _ in cols:
            vals = [interval((ms.get(m) or {}).get(key)).value for m in methods]
            vals = [v for v in vals if v is not None]
            best.append(min(vals) if len(vals) > 1 else None)
        for m in methods:
            cells = []
            for (e, ms, key, _), b in zip(cols, best):
                iv = interval((ms.get(m) or {}).get(key))
                c = value_cell(iv, row_missing(e, miss), digits=4, seeds=False)
                if iv.ok and b is not None and round(iv.value, 4) == round(b, 4):
                    c.kind += " better"
                cells.append(c)
            t.rows.append([Cell(m, kind="label"), *cells])
        changes = [num((ms.get(m) or {}).get("max_auc_change")) for _, ms in arms for m in ms
                   if isinstance(ms.get(m), dict)]
        changes = [c for c in changes if c is not None]
        fitted = {str(e.get("fitted_on")) for e, _ in arms if e.get("fitted_on")}
        fit = f", calibrators fitted on the {'/'.join(sorted(fitted))} split" if fitted else ""
        t.caption = f"{protocol}: test split{fit}; lower is better, best per column highlighted; 95 % CI below."
        if changes:
            t.note = (f"Largest change of any label's AUC through calibration: {max(changes):.4f} (calibrators keep "
                      "the ranking up to ties).")
        out.append(t)
    return out


def per_class_tables(results: Mapping[str, Any]) -> list[tuple[str, Table]]:
    """Per protocol: each label's positives and both arms' AUC, the better highlighted, sorted by
    positives (most first)."""
    miss = missing_word(results)
    out = []
    for row in rows(section(results, "headline")):
        pcs = rows(row.get("per_class"))
        if not pcs:
            continue
        m = row_missing(row, miss)
        t = Table(["label", "positives (test)", "fine-tuned", "standalone", "difference"], numeric=(1, 2, 3, 4))
        wins = [0, 0]
        for p in sorted(pcs, key=lambda p: (-(num(p.get("n_pos")) or 0), str(p.get("label")))):
            a, b = num(p.get("finetuned")), num(p.get("standalone"))
            status = str(p.get("status") or "ok")
            pm = status if status != "ok" else m
            ca = Cell(fmt(a), kind="num") if a is not None else Cell(pm, kind="num missing")
            cb = Cell(fmt(b), kind="num") if b is not None else Cell(pm, kind="num missing")
            mark_better(ca, cb, a, b)
            if a is not None and b is not None and round(a, 3) != round(b, 3):
                wins[0 if a > b else 1] += 1
            t.rows.append([Cell(str(p.get("label", "?")), kind="label"), Cell(_int(p.get("n_pos")), kind="num"), ca, cb,
                           Cell(_signed(a - b) if a is not None and b is not None else "—", kind="num")])
        t.caption = (f"AUC per label on the test split: fine-tuned better on {wins[0]}, standalone better on "
                     f"{wins[1]} label(s).")
        out.append((str(row.get("protocol", "?")), t))
    return out


# ---------------------------------------------------------------------------------------------
# status and metadata


def status_summary(results: Mapping[str, Any]) -> dict[str, Any] | None:
    st = section(results, "status")
    if not isinstance(st, dict):
        return None
    counts = {k: int(num(st.get(k)) or 0) for k in ("total", "done", "failed", "running", "left")}
    if not counts["total"]:
        counts["total"] = counts["done"] + counts["failed"] + counts["running"] + counts["left"]
    return {**counts, "failed_runs": rows(st.get("failed_runs"))}


def failed_runs_table(results: Mapping[str, Any]) -> Table | None:
    st = status_summary(results)
    if not st or not st["failed_runs"]:
        return None
    t = Table(["run", "key", "error"], caption="Failed runs (their log is in the run directory).")
    for r in st["failed_runs"]:
        t.rows.append([Cell(str(r.get("name", "?")), kind="label"), Cell(str(r.get("key", "—")), kind="mono"),
                       Cell(str(r.get("error", "—")), kind="mono bad")])
    return t


def metadata_items(results: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, value) pairs describing the study: spec, profile, digest, data, model, seeds,
    environment, wall time."""
    st = results.get("study") if isinstance(results.get("study"), dict) else {}
    items: list[tuple[str, str]] = [
        ("study", str(st.get("name", "—"))), ("spec", str(st.get("spec", "—"))),
        ("profile", str(st.get("profile") or "full (no profile)")), ("spec digest", str(st.get("spec_digest", "—"))),
        ("generated", str(st.get("generated", "—"))), ("model", str(st.get("model", "—"))),
    ]
    src = st.get("source") if isinstance(st.get("source"), dict) else {}
    if src:
        fs = num(src.get("fs"))
        parts = [str(src.get("dataset", "?")), f"labels {src.get('labels', '?')}"]
        if fs:
            parts.append(f"{fs:g} Hz")
        for key, name in (("n_train", "training"), ("n_val", "validation"), ("n_test", "test")):
            if num(src.get(key)) is not None:
                parts.append(f"{_int(src.get(key))} {name} records")
        for key, name in (("train_fraction", "train fraction"), ("epochs", "epochs")):
            if src.get(key) is not None:
                parts.append(f"{name} {src[key]}")
        items.append(("source", ", ".join(parts)))
    tgt = st.get("target") if isinstance(st.get("target"), dict) else {}
    if tgt:
        prot = tgt.get("protocols")
        parts = [f"{tgt.get('name') or tgt.get('dataset', '?')} ({tgt.get('dataset', '?')})"]
        if num(tgt.get("n_records")) is not None:
            parts.append(f"{_int(tgt.get('n_records'))} records")
        parts.append("protocols " + (", ".join(map(str, prot)) if isinstance(prot, list) and prot else "—"))
        items.append(("target", ", ".join(parts)))
        for key, name in (("finetune", "fine-tuning"), ("standalone_epochs", "standalone epochs")):
            if tgt.get(key) is not None:
                items.append((name, _compact(tgt[key])))
    seeds = st.get("seeds")
    items.append(("seeds", ", ".join(map(str, seeds)) if isinstance(seeds, list) and seeds else "—"))
    wall = fmt_seconds(num(st.get("wall_seconds")))
    items.append(("wall time", wall + (f" ({st['wall_seconds_note']})" if st.get("wall_seconds_note") else "")))
    if st.get("bootstrap") is not None:
        items.append(("bootstrap resamples", str(st["bootstrap"])))
    env = st.get("environment") if isinstance(st.get("environment"), dict) else {}
    if env:
        items.append(("environment", ", ".join(f"{k} {v}" for k, v in env.items())))
    note = (results.get("reference") or {}).get("note") if isinstance(results.get("reference"), dict) else None
    if note:
        items.append(("reference note", str(note)))
    return items


def _compact(x: Any) -> str:
    """A config value on one line: ``a=1, b=[...]`` for a dict, JSON otherwise."""
    import json

    if isinstance(x, dict):
        return ", ".join(f"{k}={json.dumps(v, separators=(',', ':'), default=str)}" for k, v in x.items())
    return json.dumps(x, default=str) if not isinstance(x, str) else x
