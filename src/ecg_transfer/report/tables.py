"""The report's tables, built once from results.json and rendered twice (HTML and Markdown).

A table is headers plus rows of cells; a cell is its main text, an optional second line (the CI),
its scope (test records, labels scored), a warning (fewer than 30 test records) and a kind that the
renderers turn into a style: ``better`` (the winning arm of a pair, bold / highlighted -- only when
the pair's paired CI excludes 0), ``missing`` (not run / pending / failed), ``num`` (right-aligned
figures), ``ref`` (the original study's numbers, greyed). Keeping this separate from the renderers
guarantees that the page and the Markdown summary show the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .data import (
    MARK_FEW_POSITIVES,
    MARK_NOTES,
    MARK_OUTSIDE,
    MARK_SEEDS,
    MIN_LABEL_POSITIVES,
    SMALL_TEST,
    Interval,
    experiment_protocol,
    first_share,
    fmt,
    fmt_ci,
    fmt_p,
    fmt_seconds,
    interval,
    json_object,
    labels_text,
    length_text,
    left_out_text,
    length_warning,
    longest_note,
    lr_text,
    mark_notes,
    method_order,
    missing_word,
    num,
    plural,
    pool_text,
    beside_original,
    ref_value,
    reference_protocol,
    row_missing,
    rows,
    scope_text,
    section,
    seeds_note,
    share_key,
    small_test_text,
    target_name,
)

ARM = {"finetuned": "fine-tuned", "standalone": "standalone", "pretrain": "pre-training"}
#: secondary metrics of the headline: name, lower is better
SECONDARY = {
    "macro_auprc": ("macro AUPRC", False),
    "challenge": ("challenge metric", False),
    "brier": ("Brier", True),
    "ece": ("ECE", True),
}
WINNER_RULE = "highlighted: the better arm, only where the paired 95 % CI of the difference excludes 0"


@dataclass
class Cell:
    text: str
    sub: str = ""
    kind: str = ""  # space-separated: num, better, missing, label, good, bad, mono
    ref: str = ""  # the original study's number for this cell, shown beneath it
    scope: str = ""  # what the value was computed on: test records, labels scored
    warn: str = ""  # fewer than 30 test records
    mark: str = ""  # beside the main text: the marks of MARK_NOTES that apply to it, explained under the table


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    caption: str = ""
    note: str = ""
    #: columns to right-align (indices); the rest are left-aligned
    numeric: tuple[int, ...] = ()
    #: a warning that holds for every number of the table (shown above it)
    warn: str = ""

    @property
    def mark_notes(self) -> list[str]:
        """The explanation of each mark of :data:`MARK_NOTES` that a cell of the table carries (beside
        its value, or in its second line), in the order of :data:`MARK_NOTES`: shown under the table."""
        return mark_notes("".join(c.mark + c.sub for row in self.rows for c in row))


def value_cell(
    iv: Interval,
    missing: str,
    *,
    digits: int = 3,
    sign: bool = False,
    seeds: bool = True,
    ref: float | None = None,
    labels: bool = True,
) -> Cell:
    """A value with its CI below it (and the spread over runs), its scope and the small-test warning,
    or the missing word; ``ref``: the original study's number, shown beneath. Marked (``mark``) where
    the value lies outside its own CI, or a run's own value outside the CI of the runs' mean."""
    r = f"original {fmt(ref, 3, sign)}" if ref is not None else ""
    if not iv.ok:
        return Cell(missing, kind="num missing", ref=r)
    sub = fmt_ci(iv, digits, sign)
    note = seeds_note(iv) if seeds else ""
    if note:
        sub = f"{sub} · {note}" if sub else note
    warn = small_test_text(iv.n_test_min if iv.n_test_min is not None else iv.n_test, short=True)
    return Cell(fmt(iv.value, digits, sign), sub, "num", r, scope_text(iv, labels), warn, iv.marks)


def mark_better(a: Cell, b: Cell, diff: Interval, lower_is_better: bool = False) -> None:
    """Tag the better of two cells from their paired difference ``a - b``: only when its CI excludes
    0 (a difference the test records do not support names no winner)."""
    if not diff.ok or not diff.excludes_zero or "missing" in a.kind.split() or "missing" in b.kind.split():
        return
    a_higher = diff.above_zero
    (a if a_higher != lower_is_better else b).kind += " better"


def diff_cell(d: Interval, missing: str, ref: float | None = None, digits: int = 3, verdict: bool = True) -> Cell:
    """A paired difference: value, CI, p-value (with the share of ties at 0); green / red when the CI
    excludes 0 (the sign says which arm) and ``verdict`` (False: too few records to name a winner)."""
    c = value_cell(d, missing, sign=True, seeds=False, ref=ref, digits=digits)
    if not d.ok:
        return c
    p = fmt_p(d.p, d.ties)
    c.sub = f"{c.sub} · {p}" if c.sub and p else (c.sub or p)
    if verdict:
        c.kind += " good" if d.above_zero else (" bad" if d.below_zero else "")
    return c


def _signed(x: float) -> str:
    """A difference to 3 decimals, without a "-0.000"."""
    return "0.000" if abs(x) < 0.0005 else fmt(x, 3, True)


def _int(x: Any) -> str:
    v = num(x)
    return f"{int(v):,}" if v is not None else "—"


def _ref(results: Mapping[str, Any], protocol: Any, *keys: Any) -> float | None:
    return ref_value(results, *keys, protocol=protocol)


# ---------------------------------------------------------------------------------------------
# headline


def headline_table(results: Mapping[str, Any]) -> Table | None:
    hl = rows(section(results, "headline"))
    if not hl:
        return None
    miss = missing_word(results)
    t = Table(
        ["protocol", "records train / val / test", "fine-tuned", "standalone", "difference (paired)"],
        numeric=(2, 3, 4),
        caption=f"Macro AUC on the {target_name(results)} test split: value, 95 % bootstrap CI below (multi-seed "
        "arms: mean over seeds, pooled CI, sd over seeds), then what it was computed on; difference: paired "
        f"bootstrap on the same test records; {WINNER_RULE}"
        + beside_original(
            results, f"; grey: the original study's single-run numbers ({reference_protocol(results)} only)"
        )
        + ".",
    )
    for row in hl:
        m = row_missing(row, miss)
        prot = row.get("protocol", "?")
        rf, rs = _ref(results, prot, "headline", "finetuned"), _ref(results, prot, "headline", "standalone")
        rd = rf - rs if rf is not None and rs is not None else None
        ft, sa, d = (interval(row.get(k)) for k in ("finetuned", "standalone", "difference"))
        cf, cs = value_cell(ft, m, ref=rf), value_cell(sa, m, ref=rs)
        mark_better(cf, cs, d)
        n = [row.get(k) for k in ("n_train", "n_val", "n_test")]
        t.rows.append(
            [
                Cell(str(prot), labels_text(_row_scope(row)), kind="label"),
                Cell(" / ".join(_int(x) for x in n), kind="nowrap"),
                cf,
                cs,
                diff_cell(d, m, rd),
            ]
        )
    return t


def _row_scope(row: Mapping[str, Any]) -> Interval:
    """A headline row's scope (its test records and labels scored), from the row or its arms."""
    iv = interval({k: row.get(k) for k in ("n_test", "labels_scored", "n_labels")})
    for arm in ("finetuned", "standalone"):
        a = interval(row.get(arm))
        if iv.labels_scored is None and a.labels_scored is not None:
            iv.labels_scored, iv.n_labels = a.labels_scored, a.n_labels
    if iv.n_labels is None and isinstance(row.get("labels"), list):
        iv.n_labels = len(row["labels"])
    return iv


def headline_cards(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One summary per protocol: both arms, the difference, a one-line verdict, the scope
    (``labels`` "3 of 18 labels scored", ``n_test``), the small-test warning and each number's marks
    (``marks`` by arm, ``mark_notes`` their explanations)."""
    miss = missing_word(results)
    out = []
    for row in rows(section(results, "headline")):
        m = row_missing(row, miss)
        ft, sa, d = (interval(row.get(k)) for k in ("finetuned", "standalone", "difference"))
        if d.ok and d.has_ci and d.point_outside:
            verdict, tone = f"no verdict: the difference lies outside its own interval ({MARK_OUTSIDE})", "neutral"
        elif d.ok and d.has_ci:
            verdict, tone = (
                (f"pre-training helps: {fmt(d.value, 3, True)} AUC", "good")
                if d.above_zero
                else (f"pre-training hurts: {fmt(d.value, 3, True)} AUC", "bad")
                if d.below_zero
                else ("no clear difference (CI includes 0)", "neutral")
            )
        elif d.ok:
            verdict, tone = f"difference {fmt(d.value, 3, True)} (no CI)", "neutral"
        else:
            verdict, tone = f"difference {m}", "missing"
        scope = _row_scope(row)
        marks = {k: iv.marks for k, iv in (("finetuned", ft), ("standalone", sa), ("difference", d))}
        out.append(
            {
                "protocol": str(row.get("protocol", "?")),
                "n_labels": scope.n_labels,
                "labels": labels_text(scope) or (f"{scope.n_labels} labels" if scope.n_labels else ""),
                "n_test": num(row.get("n_test")),
                "finetuned": ft,
                "standalone": sa,
                "difference": d,
                "verdict": verdict,
                "tone": tone,
                "missing": m,
                "marks": marks,
                "mark_notes": mark_notes("".join(marks.values())),
                "warn": "; ".join(
                    w
                    for w in (
                        small_test_text(scope.n_test),
                        length_warning(results, row.get("protocol")),
                        left_out_text(row),
                    )
                    if w
                ),
            }
        )
    return out


def _secondary_row(
    prot: str, key: str, met: Mapping[str, Any], diffs: Mapping[str, Any], m: str, note: str
) -> list[Cell]:
    name, lower = SECONDARY[key]
    a = interval((met.get("finetuned") or {}).get(key))
    b = interval((met.get("standalone") or {}).get(key))
    d = interval(diffs.get(key))
    digits = 4 if lower else 3
    if not a.ok and not b.ok and key == "challenge":
        why = f"not computed: {note}" if note else "not recorded"
        return [
            Cell(prot, kind="label"),
            Cell(name + " ↑"),
            Cell(why, kind="num missing"),
            Cell(why, kind="num missing"),
            Cell("—", kind="num"),
        ]
    ca = value_cell(a, m, seeds=False, digits=digits)
    cb = value_cell(b, m, seeds=False, digits=digits)
    mark_better(ca, cb, d, lower)
    label = Cell(name + (" ↓" if lower else " ↑"), note if key == "challenge" and note else "")
    return [Cell(prot, kind="label"), label, ca, cb, diff_cell(d, m, digits=digits)]


def secondary_table(results: Mapping[str, Any]) -> Table | None:
    hl = [r for r in rows(section(results, "headline")) if isinstance(r.get("metrics"), dict) and r["metrics"]]
    if not hl:
        return None
    miss = missing_word(results)
    t = Table(
        ["protocol", "metric", "fine-tuned", "standalone", "difference (paired)"],
        numeric=(2, 3, 4),
        caption="Other metrics of the same test predictions (95 % CI). AUPRC and the challenge metric: "
        f"higher is better (↑); Brier score and ECE: lower is better (↓); {WINNER_RULE}.",
    )
    for row in hl:
        diffs = json_object(row.get("metric_differences"))
        note = str(row.get("challenge_note") or "")
        for key in SECONDARY:
            t.rows.append(
                _secondary_row(str(row.get("protocol", "?")), key, row["metrics"], diffs, row_missing(row, miss), note)
            )
    return t


def pretrain_summary(results: Mapping[str, Any]) -> dict[str, Any] | None:
    pre = section(results, "pretrain")
    if not isinstance(pre, dict):
        return None
    fs = num(pre.get("fs"))
    test = interval(pre.get("test_macro_auc"))
    return {
        "labels": str(pre.get("labels", "?")),
        "fs": f"{fs:g} Hz" if fs else "?",
        "test": test,
        "val": num(pre.get("val_macro_auc")),
        "scope": scope_text(test),
        "warn": "; ".join(
            w for w in (small_test_text(test.n_test), MARK_NOTES[MARK_OUTSIDE] if test.point_outside else "") if w
        ),
        "ref": ref_value(results, "headline", "pretrain"),
        "run": pre.get("run"),
        "n_train": num(pre.get("n_train")),
        "missing": row_missing(pre, missing_word(results)),
    }


def pretrain_per_class_table(results: Mapping[str, Any]) -> Table | None:
    pre = section(results, "pretrain")
    pcs = rows(pre.get("per_class")) if isinstance(pre, dict) else []
    if not pcs:
        return None
    miss = missing_word(results)
    t = Table(
        ["label", "positives (test)", "AUC"], numeric=(1, 2), caption="PTB-XL pre-training, test fold, per label."
    )
    t.warn = small_test_text(interval(pre.get("test_macro_auc")).n_test)
    for p in sorted(pcs, key=lambda p: -(num(p.get("n_pos")) or 0)):
        auc = num(p.get("auc"))
        t.rows.append(
            [
                Cell(str(p.get("label", "?")), kind="label"),
                Cell(_int(p.get("n_pos")), kind="num"),
                Cell(fmt(auc), kind="num") if auc is not None else Cell(row_missing(p, miss), kind="num missing"),
            ]
        )
    return t


# ---------------------------------------------------------------------------------------------
# experiments


def _pair_cells(
    a_row: Mapping[str, Any],
    b_row: Mapping[str, Any],
    d_row: Mapping[str, Any] | None,
    miss: str,
    refs: tuple[float | None, float | None],
) -> list[Cell]:
    """Both arms and their paired difference, the winner highlighted by the difference's CI."""
    a, b = interval(a_row), interval(b_row)
    d = interval(d_row) if d_row else Interval(None)
    ca = value_cell(a, row_missing(a_row, miss) if a_row else "not run", ref=refs[0])
    cb = value_cell(b, row_missing(b_row, miss) if b_row else "not run", ref=refs[1])
    mark_better(ca, cb, d)
    if d.ok:
        return [ca, cb, diff_cell(d, miss)]
    text = _signed(a.value - b.value) if a.value is not None and b.value is not None else "—"
    return [ca, cb, Cell(text, "point values only (no paired CI recorded)" if a.ok and b.ok else "", kind="num")]


def exp1_table(results: Mapping[str, Any]) -> Table | None:
    e1 = section(results, "exp1")
    if not isinstance(e1, dict):
        return None
    miss = missing_word(results)
    prot = experiment_protocol(results, e1)
    t = Table(
        ["test split", "share used for training", "fine-tuned", "standalone", "difference (paired)"],
        numeric=(1, 2, 3, 4),
        caption="Macro AUC (95 % CI) per share used for training: mean over runs (repeats / seeds), "
        "sd over runs; difference: paired on each repeat's test records, mean over repeats; "
        f"{WINNER_RULE}"
        + beside_original(results, f"; grey: the original study ({reference_protocol(results)} only)")
        + ". "
        + exp1_shares_text(results),
    )
    names = {"rest": "the rest of the pool", "fixed_test": "fixed test fold"}
    experiment = {"rest": "exp1-rest", "fixed_test": "exp1-fixed"}  # results.json's use names
    of = {"rest": "of the pool", "fixed_test": "of the training folds"}
    diffs = json_object(e1.get("difference"))
    for variant in ("rest", "fixed_test"):
        vrows = rows(e1.get(variant))
        shares = sorted({s for s in (share_key(r.get("share")) for r in vrows) if s is not None})
        for s in shares:
            at = {r.get("arm"): r for r in vrows if share_key(r.get("share")) == s}
            d = next((r for r in rows(diffs.get(variant)) if share_key(r.get("share")) == s), None)
            refs = (_ref(results, prot, "exp1", s, "finetuned"), _ref(results, prot, "exp1", s, "standalone"))
            t.rows.append(
                [
                    Cell(names[variant], kind="label"),
                    Cell(f"{s:g} %", of[variant], kind="num", warn=longest_note(results, experiment[variant], s)),
                    *_pair_cells(at.get("finetuned", {}), at.get("standalone", {}), d, miss, refs),
                ]
            )
    return t if t.rows else None


def exp1_shares_text(results: Mapping[str, Any]) -> str:
    """What experiment 1's shares are shares of, which differs between its two test splits."""
    t = target_name(results)
    e1 = section(results, "exp1")
    share = first_share(e1.get("rest")) if isinstance(e1, dict) else None
    return (
        f"Test on the rest: a share of the {t} pool ({pool_text(results, share)}) trains; the rest of the "
        "pool is the test set, the validation folds stay the validation set. Fixed test fold: a share of "
        f"the {t} training folds trains; the test folds test every share."
    )


def exp2_table(results: Mapping[str, Any]) -> Table | None:
    e2 = rows(section(results, "exp2"))
    if not e2:
        return None
    miss = missing_word(results)
    ts = next((share_key(r.get("target_share")) for r in e2 if share_key(r.get("target_share")) is not None), None)
    tgt = target_name(results)
    on = f"{ts:g} % of the {tgt} pool" if ts is not None else f"a small share of the {tgt} pool"
    t = Table(
        [
            "share of PTB-XL",
            "pre-training records",
            "PTB-XL test AUC",
            f"{tgt} fine-tuned AUC",
            f"{tgt} standalone AUC",
            "difference (paired)",
        ],
        numeric=(1, 2, 3, 4, 5),
        caption=f"Macro AUC (95 % CI). PTB-XL: the same test fold for every share. {tgt}: fine-tuned on {on} "
        f"({pool_text(results, ts)}), tested on the rest of the pool, as experiment 1; standalone: trained "
        "from scratch on the same records (does not depend on the PTB-XL share); "
        f"{WINNER_RULE}.",
    )
    for r in sorted(e2, key=lambda r: share_key(r.get("share")) or 0):
        m = row_missing(r, miss)
        s = share_key(r.get("share"))
        prot = experiment_protocol(results, r)
        pair = _pair_cells(
            r.get("finetuned") or {},
            r.get("standalone_reference") or {},
            r.get("difference"),
            m,
            (_ref(results, prot, "exp2", s, "target"), None),
        )
        t.rows.append(
            [
                Cell(f"{s:g} %" if s is not None else str(r.get("share")), kind="label"),
                Cell(_int(r.get("n_pretrain_records")), kind="num"),
                value_cell(interval(r.get("pretrain_test_auc")), m, ref=ref_value(results, "exp2", s, "pretrain")),
                *pair,
            ]
        )
    return t


def _grouped_table(results: Mapping[str, Any], data: list[dict], key: str, label, exp: str, first: str, sub) -> Table:
    miss, target = missing_word(results), target_name(results)
    t = Table(
        [
            first,
            "pre-training (PTB-XL test)",
            f"fine-tuned ({target} test)",
            f"standalone ({target} test)",
            "difference (paired)",
        ],
        numeric=(1, 2, 3, 4),
    )
    for r in data:
        m = row_missing(r, miss)
        cat, prot = r.get(key), experiment_protocol(results, r)
        refs = (_ref(results, prot, exp, cat, "finetuned"), _ref(results, prot, exp, cat, "standalone"))
        t.rows.append(
            [
                Cell(label(cat), sub(r), kind="label"),
                value_cell(interval(r.get("pretrain")), m, ref=ref_value(results, exp, cat, "pretrain")),
                *_pair_cells(r.get("finetuned") or {}, r.get("standalone") or {}, r.get("difference"), m, refs),
            ]
        )
    return t


def _hz(x: Any) -> str:
    v = share_key(x)
    return f"{v:g} Hz" if v is not None else str(x)


def coverage_text(results: Mapping[str, Any]) -> str:
    """How many PTB-XL records the 500 Hz reads lacked (experiment 3's pre-training above 100 Hz)."""
    st = json_object(results.get("study"))
    src = json_object(st.get("source"))
    cov = json_object(src.get("coverage"))
    at500, at100 = cov.get("records_at_500hz") or {}, cov.get("records_at_100hz") or {}
    missing = cov.get("missing_at_500hz") or {}
    if num(at500.get("test")) is None:
        return ""
    text = f"PTB-XL above 100 Hz is read from its 500 Hz records: {_int(at500.get('test'))} test records"
    if num(at100.get("test")) is not None:
        text += (
            f" of the {_int(at100.get('test'))} at 100 Hz ({_int(missing.get('test'))} test and "
            f"{_int(missing.get('val'))} validation records missing at 500 Hz here)"
        )
    return text + "."


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
    t.caption = (
        "Macro AUC (95 % CI) with every arm at one sampling rate (resampled polyphase, anti-aliased); "
        f"the test records of each value are below it; {WINNER_RULE}"
        + beside_original(results, "; grey: the original study (its 100 Hz G12EC records were mis-ordered)")
        + "."
    )
    t.note = coverage_text(results)
    return t


def exp5_table(results: Mapping[str, Any]) -> Table | None:
    data = rows(section(results, "exp5"))
    if not data:
        return None
    t = _grouped_table(results, data, "input", str, "exp5", "input", lambda r: "")
    t.caption = (
        f"Macro AUC (95 % CI) per input representation; {WINNER_RULE}"
        + beside_original(
            results, "; grey: the original study, which cropped 2.5 s out of an unshifted whole-record spectrum"
        )
        + "."
    )
    return t


def strategy_name(strategy: Any) -> str:
    """ "supervised:rhythm" -> "supervised (rhythm)"; "none" -> "none (random weights)"."""
    text = str(strategy)
    if text == "none":
        return "none (random weights)"
    kind, _, task = text.partition(":")
    return f"{kind} ({task})" if task else text


def exp6_records_text(results: Mapping[str, Any]) -> str:
    """How many PTB-XL records each strategy of experiment 6 pre-trained on, and a warning where they
    differ: a self-supervised pre-training reads every record of the training folds, a supervised one
    only ``[source] train_fraction`` of them (and only those with a label of its task), so a difference
    between strategies can be one of data, not of strategy. "" without a pre-training strategy."""
    data = [r for r in rows(section(results, "exp6")) if str(r.get("strategy")) != "none"]
    if not data:
        return ""
    counts: dict[str, set[int]] = {}
    for r in data:
        n = num(r.get("n_pretrain_records"))
        if n is not None:
            counts.setdefault(strategy_name(r.get("strategy")), set()).add(int(n))
    text = "Pre-training records: the PTB-XL training records each strategy pre-trained on"
    if any(str(r.get("strategy")) == "self-supervised" for r in data):
        src = json_object(json_object(results.get("study")).get("source"))
        tf = num(src.get("train_fraction"))
        part = f"{100 * tf:g} %" if tf is not None else "the share [source] train_fraction sets"
        text += (
            f" (self-supervised: every record of the training folds; supervised: {part} of those with a "
            "label of its task)"
        )
    text += "."
    if len({n for ns in counts.values() for n in ns}) > 1:
        listed = "; ".join(f"{s} {' / '.join(f'{n:,}' for n in sorted(ns))}" for s, ns in counts.items())
        text += (
            f" The strategies pre-trained on different numbers of records ({listed}): a difference between "
            "them mixes the strategy with the amount of PTB-XL data it saw."
        )
    elif not counts:
        text += " Not recorded in this results.json (written before the count was)."
    return text


def _exp6_pretrain_cells(r: Mapping[str, Any], m: str) -> list[Cell]:
    """A strategy's pre-training: its records, and its own PTB-XL test AUC (supervised strategies only:
    a self-supervised pre-training has no labels to score, "none" no pre-training)."""
    strategy = str(r.get("strategy"))
    if strategy == "none":
        return [Cell("—", "no pre-training", kind="num"), Cell("—", kind="num")]
    n = num(r.get("n_pretrain_records"))
    records = (
        Cell(f"{int(n):,}", kind="num")
        if n is not None
        else Cell(m if "n_pretrain_records" in r else "not recorded", kind="num missing")
    )
    if strategy == "self-supervised":
        return [records, Cell("n/a", "self-supervised: no labels to score", kind="num")]
    return [records, value_cell(interval(r.get("pretrain")), m)]  # supervised: its own task's test AUC


def exp6_table(results: Mapping[str, Any]) -> Table | None:
    data = rows(section(results, "exp6"))
    if not data:
        return None
    miss = missing_word(results)
    several = len({r.get("model") for r in data}) > 1
    tgt = target_name(results)
    t = Table(
        [
            "backbone",
            "strategy",
            f"share of the {tgt} pool",
            "pre-training records",
            "pre-training (PTB-XL test, its task)",
            f"{tgt} macro AUC",
            "difference to none (paired)",
        ],
        numeric=(2, 3, 4, 5, 6),
        caption=f"Macro AUC (95 % CI) of the target network per pre-training strategy and share of the {tgt} "
        f"pool used for training ({pool_text(results, first_share(data))}), tested on the rest of the pool: "
        "fine-tuned from the strategy's pre-training, or trained from random weights (none), on the same "
        "records; difference: paired on the same test records; green / red: the difference's 95 % CI "
        "excludes 0. A supervised pre-training's own PTB-XL AUC is on its task's labels. " + exp6_records_text(results),
    )
    order = {s: i for i, s in enumerate(dict.fromkeys(str(r.get("strategy")) for r in data))}
    for r in sorted(
        data, key=lambda r: (str(r.get("model")), order[str(r.get("strategy"))], share_key(r.get("share")) or 0.0)
    ):
        m = row_missing(r, miss)
        s = share_key(r.get("share"))
        d = interval(r.get("difference_to_none"))
        diff = diff_cell(d, m) if r.get("strategy") != "none" else Cell("reference", kind="num")
        t.rows.append(
            [
                Cell(str(r.get("model")) if several or not t.rows else "", kind="label"),
                Cell(strategy_name(r.get("strategy")), kind="label"),
                Cell(
                    f"{s:g} %" if s is not None else str(r.get("share")),
                    kind="num",
                    warn=longest_note(results, "exp6", s, strategy=r.get("strategy"), model=r.get("model")),
                ),
                *_exp6_pretrain_cells(r, m),
                value_cell(interval(r), m),
                diff,
            ]
        )
    return t


def gallery_lead(results: Mapping[str, Any]) -> str:
    """What the gallery shows, from ``results["gallery"]`` ("" without one)."""
    g = section(results, "gallery")
    if not isinstance(g, dict) or not rows(g.get("entries")):
        return ""
    n = num(g.get("n_test"))
    size = f" of its {int(n):,} test records" if n is not None else ""
    warn = f" {small_test_text(int(n))}" if n is not None and small_test_text(int(n)) else ""
    return (
        f"Why the network decided: for the labels with most test positives, the positive record the headline's "
        f"fine-tuned run ({g.get('protocol')}, seed {g.get('seed')}; {g.get('run')}) is most sure of when it decides "
        f"it right, and one it gets wrong (a missed positive, else a false alarm), deciding at "
        f"{g.get('threshold', 0.5)}{size}. Shading: "
        f"{g.get('method', 'integrated gradients')} attribution of the label's probability per lead and "
        f"sample (red: evidence for the label, blue: against). Uncalibrated probabilities.{warn}"
    )


CAL_METRICS = (("ece", "ECE"), ("ece_macro", "ECE (macro)"), ("brier", "Brier"))


def _cal_cell(e: Mapping[str, Any], ms: Mapping[str, Any], method: str, key: str, miss: str) -> Cell:
    """One calibration state's value; a calibrator's paired difference against the uncalibrated
    predictions beneath it, highlighted when its CI lies below 0 (it really lowered the error)."""
    entry = ms.get(method) or {}
    c = value_cell(interval(entry.get(key)), row_missing(e, miss), digits=4, seeds=False)
    vs = json_object(entry.get("vs_uncalibrated"))
    d = interval(vs.get(key))
    if d.ok and c.text != row_missing(e, miss):
        c.sub = f"{c.sub} · Δ {fmt(d.value, 4, True)}{d.marks} {fmt_ci(d, 4, True)}".strip(" ·")
        if d.below_zero:
            c.kind += " better"
    return c


def _exp4_caption(protocol: str, arms: list) -> str:
    fitted = {str(e.get("fitted_on")) for e, _ in arms if e.get("fitted_on")}
    fit = f", calibrators fitted on the {'/'.join(sorted(fitted))} split" if fitted else ""
    seeds = {int(num(e.get("n_seeds")) or 0) for e, _ in arms if num(e.get("n_seeds"))}
    pooled = (
        f"; mean over {'/'.join(str(s) for s in sorted(seeds))} seeds with the pooled CI, as the headline"
        if seeds
        else ""
    )
    return (
        f"{protocol}: test split{fit}{pooled}; lower is better; Δ: calibrated − uncalibrated, paired on the "
        "same test records (95 % CI); highlighted: a calibrator whose Δ CI lies below 0."
    )


def exp4_tables(results: Mapping[str, Any]) -> list[Table]:
    """One table per protocol, a row per arm and calibration state: ECE (pooled, macro) and Brier with CIs,
    pooled over seeds as the headline pools them; a calibrator highlighted only where its paired
    difference against the uncalibrated predictions excludes 0; the largest AUC change of any label
    as a note (calibration keeps the ranking, so it should be ~0)."""
    miss = missing_word(results)
    e4 = rows(section(results, "exp4"))
    out = []
    for protocol in dict.fromkeys(str(e.get("protocol", "?")) for e in e4):
        group = sorted(
            (e for e in e4 if str(e.get("protocol", "?")) == protocol),
            key=lambda e: (str(e.get("arm")) != "finetuned", str(e.get("arm"))),
        )
        arms = [(e, json_object(e.get("methods"))) for e in group]
        t = Table(
            ["arm", "calibration", *[name for _, name in CAL_METRICS]], numeric=tuple(range(2, 2 + len(CAL_METRICS)))
        )
        for e, ms in arms:
            arm = ARM.get(str(e.get("arm")), str(e.get("arm")))
            for i, m in enumerate(method_order(ms) or ["uncalibrated"]):
                t.rows.append(
                    [
                        Cell(arm if i == 0 else "", kind="label"),
                        Cell(m, kind="label"),
                        *[_cal_cell(e, ms, m, key, miss) for key, _ in CAL_METRICS],
                    ]
                )
        changes = [
            c
            for c in (num(json_object(ms.get(m)).get("max_auc_change")) for _, ms in arms for m in ms)
            if c is not None
        ]
        t.caption = _exp4_caption(protocol, arms)
        n_test = next((int(n) for n in (num(e.get("n_test")) for e, _ in arms) if n is not None), None)
        t.warn = small_test_text(n_test)
        if changes:
            t.note = (
                f"Largest change of any label's AUC through calibration: {max(changes):.4f} (calibrators keep "
                "the ranking up to ties)."
            )
        out.append(t)
    return out


def _per_class_row(p: Mapping[str, Any], m: str, wins: list[int]) -> list[Cell]:
    """A label's row; ``wins`` counts [fine-tuned better, standalone better, no clear difference,
    left out: fewer than :data:`MIN_LABEL_POSITIVES` positive test records (marked, never highlighted)]."""
    a, b = num(p.get("finetuned")), num(p.get("standalone"))
    status = str(p.get("status") or "ok")
    pm = status if status != "ok" else m
    ca = Cell(fmt(a), kind="num") if a is not None else Cell(pm, kind="num missing")
    cb = Cell(fmt(b), kind="num") if b is not None else Cell(pm, kind="num missing")
    d = interval(p.get("difference"))
    npos = int(num(p.get("n_pos")) or 0)
    few = npos < MIN_LABEL_POSITIVES
    if d.ok:
        dc = diff_cell(d, pm, verdict=not few)
        if few:  # one record can decide it: no winner named, not counted
            wins[3] += 1
            dc.mark += MARK_FEW_POSITIVES
        else:
            mark_better(ca, cb, d)
            wins[0 if d.above_zero else 1 if d.below_zero else 2] += 1
    else:
        dc = Cell(_signed(a - b) if a is not None and b is not None else "—", kind="num")
    n_cell = Cell(f"{npos:,}", kind="num", mark=MARK_FEW_POSITIVES if few and d.ok else "")
    return [Cell(str(p.get("label", "?")), kind="label"), n_cell, ca, cb, dc]


def _per_class_caption(wins: list[int]) -> str:
    left_out = (
        f"; left out of these counts: {plural(wins[3], 'label')} with a paired difference but fewer than "
        f"{MIN_LABEL_POSITIVES} positive test records ({MARK_FEW_POSITIVES}), too few for a per-label "
        "difference to mean much"
        if wins[3]
        else ""
    )
    return (
        f"AUC per label on the test split; paired difference with its 95 % CI: fine-tuned better on "
        f"{plural(wins[0], 'label')}, standalone better on {plural(wins[1], 'label')}, no clear "
        f"difference on {plural(wins[2], 'label')} (CI includes 0), counting labels with at least "
        f"{MIN_LABEL_POSITIVES} positive test records{left_out}; labels without a positive test record "
        "have no AUC."
    )


def per_class_tables(results: Mapping[str, Any]) -> list[tuple[str, Table]]:
    """Per protocol: each label's positives, both arms' AUC and their paired difference (winner
    highlighted only where its CI excludes 0 and the label has at least :data:`MIN_LABEL_POSITIVES`
    positive test records), sorted by positives (most first)."""
    miss = missing_word(results)
    out = []
    for row in rows(section(results, "headline")):
        pcs = rows(row.get("per_class"))
        if not pcs:
            continue
        m = row_missing(row, miss)
        t = Table(
            ["label", "positives (test)", "fine-tuned", "standalone", "difference (paired)"], numeric=(1, 2, 3, 4)
        )
        wins = [0, 0, 0, 0]
        for p in sorted(pcs, key=lambda p: (-(num(p.get("n_pos")) or 0), str(p.get("label")))):
            t.rows.append(_per_class_row(p, m, wins))
        t.caption = _per_class_caption(wins)
        t.warn = small_test_text(_row_scope(row).n_test)
        out.append((str(row.get("protocol", "?")), t))
    return out


# ---------------------------------------------------------------------------------------------
# how the numbers are made; machinery checks


def machinery_text(results: Mapping[str, Any]) -> tuple[str, str]:
    """The header banner of a machinery-check study: a headline and the sentence under it."""
    st = json_object(results.get("study"))
    prof = f" (profile {st['profile']})" if st.get("profile") else ""
    return (
        "Machinery check — not an answer",
        f"This study{prof} checks that every step runs end to end, on small data and short training. Its "
        "numbers say nothing about whether pre-training helps: do not read, quote or compare them. Run the "
        "full study (or a profile that is not a machinery check) for results.",
    )


DEFAULT_METHOD = {
    "interval": "95 % percentile bootstrap interval over resampled test records",
    "resampling": "not recorded (results written before the rare-class rule: an interval of a macro metric may sit "
    "off-centre when test labels are rare)",
    "p_value": "two-sided paired bootstrap",
}


def method_items(results: Mapping[str, Any]) -> list[tuple[str, str]]:
    """How the intervals, the resampling and the p-values were made (results.json's ``statistics``),
    and where the resampling rule could not be applied."""
    st = section(results, "statistics")
    st = st if isinstance(st, dict) else {}
    items = [
        (name, str(st.get(key) or DEFAULT_METHOD[key]))
        for key, name in (("interval", "intervals"), ("resampling", "resampling"), ("p_value", "p-values"))
    ]
    items.append(("winners", WINNER_RULE))
    items.append(("means over runs", SEED_MEAN_NOTE))
    items.append(("marks", "; ".join(MARK_NOTES.values())))
    items.append(
        (
            "scope",
            "beside every macro value: its test records and how many labels it averaged (labels "
            "with a positive and a negative test record); ⚠ marks fewer than "
            f"{int(num(st.get('small_test')) or SMALL_TEST)} test records",
        )
    )
    lengths = length_text(results)
    if lengths:
        items.append(("training length", lengths))
        items.append(("learning rate", lr_text(results) or RATE_NOTE))
    fallbacks = rows(st.get("fallbacks"))
    if fallbacks:
        items.append(
            (
                f"rule not applied to {plural(len(fallbacks), 'test set')}",
                FALLBACK_TEXT + "; ".join(_fallback_text(f) for f in fallbacks) + ".",
            )
        )
    return items


#: What the interval of a mean over several runs (seeds, repeats) covers, in "How the numbers are made".
SEED_MEAN_NOTE = (
    "a value over several runs is their mean; its 95 % CI comes from resampling the test records (seeds on "
    "one test set: all runs on the same resamples; repeats on their own test sets: each resampled on its "
    "own), so it covers the resampling of test records, not the variation between seeds (training "
    "randomness): the sd shown beside it does. Where a seed's own value lies outside the CI of the mean "
    f"on one test set, the cell is marked {MARK_SEEDS}"
)


#: Beside the length rule when the rates were not chosen ([study] lr_factors = [1]; measured on
#: PTB-XL: BENCHMARKS.md, "The peak rate too" -- choosing both arms' rates as well shrank a measured
#: benefit again).
RATE_NOTE = (
    "each arm trains at its configured peak learning rate, not one chosen on validation: a rate that "
    "suits one arm better than the other moves the difference as a fixed length would, so read it as "
    "'at these rates' ([standalone] run's schedule.max_lr, [finetune] lr; [study] lr_factors = [1, 3] "
    "chooses each arm's rate with its length)"
)


FALLBACK_TEXT = (
    "where it would pin the test set (every resample it keeps nearly the test set itself, so the interval "
    "would shrink towards the point) or could not be met; their intervals come from plain resampling, "
    "where a resample that lacks a label leaves it out of the macro means: "
)


def _fallback_text(f: Mapping[str, Any]) -> str:
    """``headline seed18 (3 records, 35 values): the rule would keep 32 % of the variation``."""
    n, used, kept = num(f.get("n_test")), int(num(f.get("values")) or 1), num(f.get("variation_kept"))
    size = ", ".join(
        x for x in (f"{int(n):,} records" if n is not None else "", plural(used, "value") if used > 1 else "") if x
    )
    why = (
        f"the rule would keep {100 * kept:.0f} % of the variation"
        if f.get("reason") == "pinned" and kept is not None
        else "the rule could not be met"
        if f.get("reason") == "impossible"
        else str(f.get("note") or "not applied")
    )
    return f"{f.get('where', '?')}{f' ({size})' if size else ''}: {why}"


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
        t.rows.append(
            [
                Cell(str(r.get("name", "?")), kind="label"),
                Cell(str(r.get("key", "—")), kind="mono"),
                Cell(str(r.get("error", "—")), kind="mono bad"),
            ]
        )
    return t


def metadata_items(results: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, value) pairs describing the study: spec, profile, digest, data, model, seeds,
    environment, wall time."""
    st = json_object(results.get("study"))
    items: list[tuple[str, str]] = [
        ("study", str(st.get("name", "—"))),
        ("spec", str(st.get("spec", "—"))),
        ("profile", str(st.get("profile") or "full (no profile)")),
        ("spec digest", str(st.get("spec_digest", "—"))),
        ("generated", str(st.get("generated", "—"))),
        ("model", str(st.get("model", "—"))),
    ]
    src = json_object(st.get("source"))
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
    tgt = json_object(st.get("target"))
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
    env = json_object(st.get("environment"))
    if env:
        items.append(("environment", ", ".join(f"{k} {_env_value(k, v)}" for k, v in env.items())))
    note = (results.get("reference") or {}).get("note") if isinstance(results.get("reference"), dict) else None
    if note:
        items.append(("reference note", str(note)))
    return items


def _compact(x: Any) -> str:
    """A config value on one line: ``a=1, b=[...]`` for a dict (unset keys, null, left out: they
    are the defaults, and a row of ``x=null`` hid what was set), JSON otherwise."""
    import json

    if isinstance(x, dict):
        return ", ".join(
            f"{k}={json.dumps(_without_nulls(v), separators=(',', ':'), default=str)}"
            for k, v in x.items()
            if v is not None
        )
    return json.dumps(x, default=str) if not isinstance(x, str) else x


def _without_nulls(x: Any) -> Any:
    """``x`` with its unset (None) dict entries dropped, at any depth (stages' ``frozen_bn=null``)."""
    if isinstance(x, dict):
        return {k: _without_nulls(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_without_nulls(v) for v in x]
    return x


def _env_value(key: str, value: Any) -> Any:
    """An environment entry as a reader takes it: ``threads 0`` is torch's own default, not none."""
    return "torch's default" if key == "threads" and value == 0 else value
