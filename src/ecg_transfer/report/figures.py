"""The study report's figures, drawn from results.json with matplotlib (Agg) and returned as PNG bytes.

One style throughout, so that the page reads as one document: fine-tuned blue, standalone orange,
PTB-XL pre-training green, the same colour in every chart; our numbers are filled markers with 95 %
CI bands or bars, the original study's numbers are dashed lines / hollow diamonds in the same colour
(single runs of a flawed protocol, drawn for orientation only). A figure whose data is entirely
missing is ``None`` (the page says "not run"); points with a null value are left out of the line.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from .data import (
    Interval,
    experiment_protocol,
    first_share,
    interval,
    method_order,
    missing_word,
    num,
    plural,  # noqa: E402
    pool_text,
    beside_original,
    ref_value,
    reference_protocol,
    rows,
    section,
    share_key,
    target_name,
)

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

COLORS = {"finetuned": "#2563eb", "standalone": "#ea580c", "pretrain": "#059669"}
ARM_NAMES = {"finetuned": "fine-tuned", "standalone": "standalone", "pretrain": "PTB-XL pre-training"}
METHOD_COLORS = {
    "uncalibrated": "#111827",
    "temperature": "#2563eb",
    "class-temperature": "#7c3aed",
    "platt": "#db2777",
    "isotonic": "#059669",
}
REF_STYLE: dict[str, Any] = dict(ls=(0, (4, 3)), lw=1.3, alpha=0.75)
DPI = 144

_RC: dict[RcKeyType, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10.5,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.titlepad": 8,
    "axes.labelsize": 9,
    "axes.labelcolor": "#374151",
    "axes.edgecolor": "#9ca3af",
    "axes.linewidth": 0.8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.8,
    "xtick.color": "#4b5563",
    "ytick.color": "#4b5563",
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "legend.frameon": False,
    "legend.fontsize": 8.5,
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "text.color": "#111827",
}


@dataclass
class Figure:
    """One figure of the report: its file stem, caption and PNG bytes (None: no data)."""

    name: str
    caption: str
    png: bytes | None
    error: str | None = None
    group: str = ""  # the label protocol of a per-protocol figure


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.12, metadata={"Software": None})
    finally:
        plt.close(fig)
    return buf.getvalue()


def _not_run(ax, text: str = "not run") -> None:
    ax.text(
        0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=11, color="#9ca3af", style="italic"
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for s in ax.spines.values():
        s.set_visible(False)


def _ref_handle(color: str = "#6b7280", label: str = "original study (single run, flawed protocol)") -> Line2D:
    return Line2D([], [], color=color, marker="D", mfc="white", ms=5, label=label, **REF_STYLE)


def _half_widths(iv: Interval) -> tuple[float, float]:
    """How far the CI reaches below and above the point (0 where the point or the CI is missing)."""
    if iv.value is None or iv.lo is None or iv.hi is None:
        return 0.0, 0.0
    return max(iv.value - iv.lo, 0.0), max(iv.hi - iv.value, 0.0)


def _ci_err(ivs: Sequence[Interval]) -> np.ndarray:
    """matplotlib's (2, n) yerr from intervals (0 where a CI is missing)."""
    widths = [_half_widths(iv) for iv in ivs]
    return np.array([[w[0] for w in widths], [w[1] for w in widths]])


def _far_end(value: float, iv: Interval, *others: float | None, seeds: bool = True) -> float:
    """The far end of everything drawn on a point's line: the point, its seeds, its CI's upper end and
    ``others`` (the original study's marker), so that a label placed beyond it never sits on a marker."""
    upper = iv.hi if iv.has_ci else None
    return max([value, *(iv.values if seeds else []), *(o for o in (upper, *others) if o is not None)])


# ---------------------------------------------------------------------------------------------
# headline


def _value_label(ax, text: str, x: float, y: float, color: str, size: float = 8.5, above: bool = False) -> None:
    """A value written to the right of ``x`` (the right end of everything drawn on that line), so it
    never sits on a marker; ``above``: just above its own point instead (a difference: beside the CI's
    end it sat next to the original study's diamond whenever that lay beyond the interval, and read as
    the diamond's value)."""
    ax.annotate(
        text,
        (x, y),
        xytext=(0, 8) if above else (7, 0),
        textcoords="offset points",
        ha="center" if above else "left",
        va="bottom" if above else "center",
        fontsize=size,
        color=color,
        weight="bold",
    )


def _headline_arm(ax, iv: Interval, y: float, color: str, ref: float | None) -> None:
    if iv.ok:
        ax.errorbar([iv.value], [y], xerr=_ci_err([iv]), fmt="o", color=color, ms=7, capsize=4, lw=2)
        ax.scatter(iv.values, [y] * len(iv.values), s=9, color=color, alpha=0.45, zorder=3, lw=0)
    if ref is not None:
        ax.plot([ref], [y], marker="D", mfc="white", mec=color, ms=6.5, mew=1.4, ls="none")
    if iv.value is not None:
        _value_label(ax, f"{iv.value:.3f}", _far_end(iv.value, iv, ref), y, color, 8)


def headline_figure(results: Mapping[str, Any]) -> bytes | None:
    """Left: macro AUC of both arms per protocol (CI bars, seeds as dots, the original's diamonds
    beside its own protocol only). Right: the paired difference fine-tuned − standalone with its CI
    against zero. Arms' values are written right of everything on their line, differences above their point."""
    hl = rows(section(results, "headline"))
    if not any(interval(r.get(k)).ok for r in hl for k in ("finetuned", "standalone", "difference")):
        return None  # nothing measured yet: the page says pending rather than showing the original alone
    n = len(hl)
    with plt.rc_context(_RC):
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(10.5, 1.3 + 1.05 * n), gridspec_kw={"width_ratios": [1.35, 1]})
        yt, yl, any_ref = [], [], False
        for i, row in enumerate(hl):
            base, prot = n - 1 - i, row.get("protocol", "?")
            ref_ft = ref_value(results, "headline", "finetuned", protocol=prot)
            ref_sa = ref_value(results, "headline", "standalone", protocol=prot)
            any_ref |= ref_ft is not None or ref_sa is not None
            _headline_arm(ax, interval(row.get("finetuned")), base + 0.18, COLORS["finetuned"], ref_ft)
            _headline_arm(ax, interval(row.get("standalone")), base - 0.18, COLORS["standalone"], ref_sa)
            yt.append(base)
            yl.append(str(prot))
            d = interval(row.get("difference"))
            ref_d = ref_ft - ref_sa if ref_ft is not None and ref_sa is not None else None
            if ref_d is not None:
                bx.plot([ref_d], [base], marker="D", mfc="white", mec="#6b7280", ms=7, mew=1.4, ls="none")
            if d.value is not None:
                col = "#15803d" if d.above_zero else ("#b91c1c" if d.below_zero else "#4b5563")
                bx.errorbar([d.value], [base], xerr=_ci_err([d]), fmt="o", color=col, ms=8, capsize=5, lw=2.2)
                _value_label(bx, f"{d.value:+.3f}", d.value, base, col, above=True)
        for a in (ax, bx):
            a.set_yticks(yt, yl)
            a.set_ylim(-0.6, n - 0.4)
            a.grid(axis="y", visible=False)
            a.tick_params(axis="y", length=0, labelsize=9.5)
            a.margins(x=0.12)
        ax.set_xlabel(f"macro AUC on the {target_name(results)} test split (95 % CI)")
        ax.set_title("Fine-tuned vs standalone")
        bx.axvline(0, color="#9ca3af", lw=1)
        bx.set_xlabel("paired difference, fine-tuned − standalone")
        bx.set_title("Gain from PTB-XL pre-training")
        bx.set_yticklabels([])
        handles = [
            Line2D([], [], color=COLORS["finetuned"], marker="o", ls="none", label="fine-tuned"),
            Line2D([], [], color=COLORS["standalone"], marker="o", ls="none", label="standalone"),
            Line2D([], [], color="#6b7280", marker="o", ls="none", ms=3, alpha=0.5, label="single seeds"),
        ]
        if any_ref:
            handles.append(
                Line2D(
                    [],
                    [],
                    color="#6b7280",
                    marker="D",
                    mfc="white",
                    ls="none",
                    label=f"original study ({reference_protocol(results)} only)",
                )
            )
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, -0.02 - 0.06 / n))
        fig.tight_layout(rect=(0, 0.1 / max(1, n) + 0.04, 1, 1))
        return _png(fig)


# ---------------------------------------------------------------------------------------------
# experiment 1


def _curve(ax, points: Sequence[tuple[float | None, Interval]], color: str, label: str) -> bool:
    """One arm's line over the data shares (points without a share or a value left out), its CI band
    and its seeds; False when there is nothing to draw."""
    pts = sorted(((x, iv) for x, iv in points if x is not None and iv.ok), key=lambda p: p[0])
    if not pts:
        return False
    x = np.array([p[0] for p in pts])
    v = np.array([p[1].value for p in pts])
    ax.plot(x, v, "-o", color=color, lw=2, ms=5, label=label, zorder=4)
    ci = [(xx, iv) for xx, iv in pts if iv.has_ci]
    if ci:
        ax.fill_between(
            [c[0] for c in ci], [c[1].lo for c in ci], [c[1].hi for c in ci], color=color, alpha=0.16, lw=0, zorder=2
        )
    for xx, iv in pts:
        if len(iv.values) > 1:
            ax.scatter([xx] * len(iv.values), iv.values, s=8, color=color, alpha=0.4, lw=0, zorder=3)
    return True


def _mark_missing(ax, pts: list[tuple[float | None, Interval]], word: str) -> None:
    """Write ``word`` (pending / failed) at the foot of the axis where a point has no value."""
    xs = sorted({x for x, iv in pts if x is not None and not iv.ok})
    for x in xs:
        ax.annotate(
            word,
            (x, 0.03),
            xycoords=("data", "axes fraction"),
            rotation=90,
            ha="center",
            va="bottom",
            fontsize=7.5,
            color="#9ca3af",
            style="italic",
        )


def _ref_points(results: Mapping[str, Any], exp: str, key: str, protocol: Any = None) -> list[tuple[float, float]]:
    """The original study's (share, value) points of one curve; none beside another label protocol."""
    ref = results.get("reference", {}).get(exp) if isinstance(results.get("reference"), dict) else None
    if not isinstance(ref, dict):
        return []
    pts = sorted((share_key(k), ref_value(results, exp, k, key, protocol=protocol)) for k in ref)
    return [(x, v) for x, v in pts if x is not None and v is not None]


def _ref_curve(ax, pts: list[tuple[float, float]], color: str) -> bool:
    if not pts:
        return False
    ax.plot(
        [p[0] for p in pts],
        [p[1] for p in pts],
        marker="D",
        mfc="white",
        mec=color,
        ms=5,
        color=color,
        zorder=3,
        **REF_STYLE,
    )
    return True


def exp1_figure(results: Mapping[str, Any]) -> bytes | None:
    """Macro AUC against the share used for training, both arms, both test variants; the axis says
    what each share is of: the pool (training + test folds) of "test on the rest", the training folds
    of the fixed test fold."""
    e1 = section(results, "exp1")
    if not isinstance(e1, dict) or not any(interval(r).ok for v in ("rest", "fixed_test") for r in rows(e1.get(v))):
        return None
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.1), sharey=True)
        t = target_name(results)
        titles = {"rest": f"Test on the rest of the {t} pool", "fixed_test": "Fixed test fold"}
        xlabels = {
            "rest": f"share of the {t} pool (training + test folds)",
            "fixed_test": f"share of the {t} training folds",
        }
        any_ref = False
        word = missing_word(results)
        for ax, variant in zip(axes, ("rest", "fixed_test")):
            vrows = rows(e1.get(variant))
            drawn = False
            for arm in ("finetuned", "standalone"):
                pts = [(share_key(r.get("share")), interval(r)) for r in vrows if r.get("arm") == arm]
                drawn |= _curve(ax, pts, COLORS[arm], ARM_NAMES[arm])
                any_ref |= _ref_curve(
                    ax, _ref_points(results, "exp1", arm, experiment_protocol(results, e1)), COLORS[arm]
                )
            _mark_missing(ax, [(share_key(r.get("share")), interval(r)) for r in vrows], word)
            ax.set_title(titles[variant])
            if not drawn:
                ax.text(
                    0.5,
                    0.5,
                    "not run" if not vrows else word,
                    transform=ax.transAxes,
                    ha="center",
                    va="center",
                    fontsize=11,
                    color="#9ca3af",
                    style="italic",
                )
            shares = sorted({s for s in (share_key(r.get("share")) for r in vrows) if s is not None})
            if shares:
                ax.set_xticks(shares, [f"{s:g} %" for s in shares])
            ax.set_xlabel(xlabels[variant])
        axes[0].set_ylabel("macro AUC (95 % CI band)")
        handles = [
            Line2D([], [], color=COLORS[a], marker="o", lw=2, label=ARM_NAMES[a]) for a in ("finetuned", "standalone")
        ]
        if any_ref:
            handles.append(_ref_handle())
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, -0.01))
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        return _png(fig)


# ---------------------------------------------------------------------------------------------
# experiment 2


def _on(pos: Mapping[float, int], pts: list) -> list:
    """Points with their share replaced by its position on a categorical axis."""
    return [(pos[x], v) for x, v in pts if x in pos]


def exp2_figure(results: Mapping[str, Any]) -> bytes | None:
    """PTB-XL share → PTB-XL test AUC (left) and the target's fine-tuned AUC (right). The shares are
    evenly spaced categories (ours and the original's), so that close shares never overlap."""
    e2 = rows(section(results, "exp2"))
    if not any(interval(r.get(k)).ok for r in e2 for k in ("pretrain_test_auc", "finetuned")):
        return None
    word, t = missing_word(results), target_name(results)
    with plt.rc_context(_RC):
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(10.5, 3.9))
        pts_pre = [(share_key(r.get("share")), interval(r.get("pretrain_test_auc"))) for r in e2]
        pts_ft = [(share_key(r.get("share")), interval(r.get("finetuned"))) for r in e2]
        ref_pre = _ref_points(results, "exp2", "pretrain")  # PTB-XL itself: no label protocol
        ref_ft = _ref_points(results, "exp2", "target", experiment_protocol(results, e2[0]))
        shares = sorted({s for s, _ in pts_pre if s is not None} | {s for s, _ in ref_pre + ref_ft})
        pos = {s: i for i, s in enumerate(shares)}
        if not _curve(ax, _on(pos, pts_pre), COLORS["pretrain"], "pre-training"):
            _not_run(ax, word)
        if not _curve(bx, _on(pos, pts_ft), COLORS["finetuned"], "fine-tuned"):
            _not_run(bx, word)
        drew_ref = _ref_curve(ax, _on(pos, ref_pre), COLORS["pretrain"]) | _ref_curve(
            bx, _on(pos, ref_ft), COLORS["finetuned"]
        )
        _mark_missing(ax, _on(pos, pts_pre), word)
        _mark_missing(bx, _on(pos, pts_ft), word)
        sa = next((iv for iv in (interval(r.get("standalone_reference")) for r in e2) if iv.ok), None)
        if sa is not None and shares:
            bx.axhline(sa.value, color=COLORS["standalone"], lw=1.6, zorder=3)
            if sa.has_ci:
                bx.axhspan(sa.lo, sa.hi, color=COLORS["standalone"], alpha=0.12, lw=0)
            bx.text(
                0,
                sa.value,
                f"  standalone (same {t} split) {sa.value:.3f}",
                va="bottom",
                fontsize=8,
                color=COLORS["standalone"],
            )
        for a in (ax, bx):
            if shares:
                a.set_xticks(range(len(shares)), [f"{s:g} %" for s in shares])
                a.set_xlim(-0.4, len(shares) - 0.6)
            a.set_xlabel("share of PTB-XL used for pre-training")
        ax.set_title("PTB-XL test fold")
        ax.set_ylabel("macro AUC (95 % CI band)")
        bx.set_title(f"{t} after fine-tuning")
        handles = [
            Line2D([], [], color=COLORS["pretrain"], marker="o", lw=2, label="pre-training (PTB-XL test)"),
            Line2D([], [], color=COLORS["finetuned"], marker="o", lw=2, label=f"fine-tuned ({t} test)"),
        ]
        if sa is not None:
            handles.append(Line2D([], [], color=COLORS["standalone"], lw=1.6, label="standalone"))
        if drew_ref:
            handles.append(_ref_handle())
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, -0.01))
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        return _png(fig)


# ---------------------------------------------------------------------------------------------
# experiments 3 and 5: grouped point ranges


def _grouped(
    results: Mapping[str, Any],
    data: list[dict],
    cat_key: str,
    cat_label: Callable[[dict], str],
    exp: str,
    title: str,
    xlabel: str,
) -> bytes | None:
    series = [s for s in ("pretrain", "finetuned", "standalone") if any(interval(r.get(s)).ok for r in data)]
    if not series:
        return None
    target = target_name(results)
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(10.5, 3.9))
        cats = [r.get(cat_key) for r in data]
        offsets = {s: (i - (len(series) - 1) / 2) * 0.22 for i, s in enumerate(series)}
        any_ref = False
        for j, row in enumerate(data):
            for s in series:
                iv, x = interval(row.get(s)), j + offsets[s]
                prot = None if s == "pretrain" else experiment_protocol(results, row)  # PTB-XL: no protocol
                ref = ref_value(results, exp, cats[j], s, protocol=prot)
                if ref is not None:
                    any_ref = True
                    ax.plot(
                        [x + 0.07], [ref], marker="D", mfc="white", mec=COLORS[s], ms=6.5, mew=1.4, ls="none", zorder=5
                    )
                if iv.value is not None:
                    ax.errorbar(
                        [x], [iv.value], yerr=_ci_err([iv]), fmt="o", color=COLORS[s], ms=7, capsize=4, lw=2, zorder=4
                    )
                    ax.scatter([x] * len(iv.values), iv.values, s=9, color=COLORS[s], alpha=0.45, lw=0, zorder=3)
                    top = _far_end(iv.value, iv, ref)  # above everything drawn at this x
                    ax.annotate(
                        f"{iv.value:.3f}",
                        (x, top),
                        xytext=(0, 6),
                        textcoords="offset points",
                        ha="center",
                        fontsize=7.5,
                        color=COLORS[s],
                    )
        ax.set_xticks(range(len(data)), [cat_label(r) for r in data])
        ax.set_xlim(-0.6, len(data) - 0.4)
        ax.grid(axis="x", visible=False)
        ax.tick_params(axis="x", length=0, labelsize=9.5)
        ax.set_ylabel("macro AUC (95 % CI)")
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        handles = [
            Line2D(
                [],
                [],
                color=COLORS[s],
                marker="o",
                ls="none",
                ms=7,
                label="pre-training (PTB-XL test)" if s == "pretrain" else f"{ARM_NAMES[s]} ({target} test)",
            )
            for s in series
        ]
        if any_ref:
            handles.append(
                Line2D(
                    [],
                    [],
                    color="#6b7280",
                    marker="D",
                    mfc="white",
                    ls="none",
                    label=f"original study (flawed protocol; {reference_protocol(results)} only)",
                )
            )
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, -0.01))
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        return _png(fig)


def _rate_label(row: Mapping[str, Any], target: str) -> str:
    """``250 Hz`` and, beneath, the test records of that rate (PTB-XL above 100 Hz: only the records
    present at 500 Hz) and of the target (named ``target``)."""
    fs = share_key(row.get("fs"))
    lines = [f"{fs:g} Hz" if fs is not None else str(row.get("fs"))]
    n_pre = interval(row.get("pretrain")).n_test
    n_tgt = next(
        (iv.n_test for iv in (interval(row.get(k)) for k in ("finetuned", "standalone")) if iv.n_test is not None), None
    )
    if n_pre is not None:
        lines.append(f"PTB-XL test {n_pre:,}")
    if n_tgt is not None:
        lines.append(f"{target} test {n_tgt:,}")
    return "\n".join(lines)


def exp3_figure(results: Mapping[str, Any]) -> bytes | None:
    """Sampling rate: pre-training, fine-tuned and standalone AUC per rate, with each rate's test records."""
    data = sorted(rows(section(results, "exp3")), key=lambda r: share_key(r.get("fs")) or 0.0)
    label = partial(_rate_label, target=target_name(results))
    return _grouped(results, data, "fs", label, "exp3", "Sampling rate", "sampling rate of every arm")


def exp5_figure(results: Mapping[str, Any]) -> bytes | None:
    """Input representation: pre-training, fine-tuned and standalone AUC per input kind."""
    return _grouped(
        results,
        rows(section(results, "exp5")),
        "input",
        lambda r: str(r.get("input")),
        "exp5",
        "Input representation",
        "network input",
    )


# ---------------------------------------------------------------------------------------------
# experiment 4


def _positives(b: Mapping[str, Any]) -> float:
    """Positives in a label's test split from its bins (count × observed frequency, summed)."""
    total = 0.0
    for c, f in zip(b.get("count") or [], b.get("frac_pos") or []):
        count, frac = num(c), num(f)
        if count is not None and frac is not None:
            total += count * frac
    return total


def top_labels(entry: Mapping[str, Any], k: int = 4) -> list[tuple[str, int]]:
    """The ``k`` labels with most positives (from the uncalibrated bins), with their positives; labels
    without a positive test record are left out (their reliability curve says nothing)."""
    rel = entry.get("reliability")
    bins = rel.get("uncalibrated") if isinstance(rel, dict) else None
    if not isinstance(bins, dict):
        return []
    pos = [(name, int(round(_positives(b)))) for name, b in bins.items() if isinstance(b, dict)]
    return sorted([t for t in pos if t[1] > 0], key=lambda t: (-t[1], t[0]))[:k]


#: line style of each calibration state: the uncalibrated curve solid and heavier, calibrators dashed
UNCALIBRATED_STYLE = dict(ls="-", lw=2.0)
CALIBRATED_STYLE = dict(ls=(0, (4, 2)), lw=1.3)


def _method_style(method: str) -> dict[str, Any]:
    return UNCALIBRATED_STYLE if method == "uncalibrated" else CALIBRATED_STYLE


def _rel_curve(ax, b: Mapping[str, Any], color: str, style: Mapping[str, Any]) -> None:
    pairs = [(num(m), num(f)) for m, f in zip(b.get("mean_pred") or [], b.get("frac_pos") or [])]
    pairs = [(m, f) for m, f in pairs if m is not None and f is not None]
    if pairs:
        ax.plot([p[0] for p in pairs], [p[1] for p in pairs], marker="o", ms=3, color=color, zorder=4, **style)


def _count_bars(ax, unc: Any, right_label: bool) -> None:
    """The uncalibrated records per bin as bars on their own axis (right), scaled so that the largest
    bar fills a quarter of the panel; the axis says how many records that is."""
    if not isinstance(unc, dict) or not unc.get("count"):
        return
    lo = np.array([num(x) or 0.0 for x in unc.get("lower", [])])
    hi = np.array([num(x) or 0.0 for x in unc.get("upper", [])])
    cnt = np.array([num(x) or 0.0 for x in unc["count"]])
    if not len(lo) == len(cnt) == len(hi):
        return
    top = max(float(cnt.max(initial=0)), 1.0)
    cx = ax.twinx()
    cx.bar(lo, cnt, width=np.maximum(hi - lo, 0.01), align="edge", color="#fbbf24", alpha=0.35, lw=0, zorder=0)
    cx.set_ylim(0, 4 * top)
    cx.set_yticks([0, top], ["0", f"{int(top):,}"])
    cx.tick_params(axis="y", labelsize=7, colors="#b45309", length=2)
    cx.spines["right"].set_visible(True)
    cx.spines["right"].set_color("#fbbf24")
    cx.spines["right"].set_bounds(0, top)
    cx.grid(False)
    if right_label:
        cx.set_ylabel("records per bin", fontsize=7.5, color="#b45309", labelpad=1)
    ax.set_zorder(cx.get_zorder() + 1)  # curves above the bars
    ax.patch.set_visible(False)


def _reliability_panel(ax, rel: Mapping[str, Any], name: str, methods: Sequence[str], last_col: bool) -> None:
    ax.plot([0, 1], [0, 1], color="#9ca3af", lw=0.9, ls=":", zorder=1)
    _count_bars(ax, (rel.get("uncalibrated") or {}).get(name), last_col)
    for m in methods:
        b = (rel.get(m) or {}).get(name)
        if isinstance(b, dict):
            _rel_curve(ax, b, METHOD_COLORS.get(m, "#6b7280"), _method_style(m))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_box_aspect(1)  # square on equal [0, 1] ranges (set_aspect would fight the twin axis)
    ax.tick_params(labelsize=7.5)


def reliability_figure(entries: Sequence[Mapping[str, Any]], k: int = 4) -> bytes | None:
    """Rows: the arms of one protocol; columns: the ``k`` labels with most positives. Each panel:
    the uncalibrated curve (black, solid) and every calibrator's curve (dashed), the diagonal, and
    the uncalibrated records per bin as bars on their own axis (right)."""
    entries = [e for e in entries if isinstance(e.get("reliability"), dict) and e["reliability"]]
    if not entries:
        return None
    labels = top_labels(entries[0], k) or top_labels(entries[-1], k)
    if not labels:
        return None
    methods = method_order(m for e in entries for m in e["reliability"])
    with plt.rc_context({**_RC, "axes.titlesize": 9, "axes.titlelocation": "center"}):
        size = (2.85 * len(labels) + 0.6, 2.6 * len(entries) + 0.8)
        fig, axes = plt.subplots(len(entries), len(labels), figsize=size, squeeze=False)
        for i, e in enumerate(entries):
            arm = str(e.get("arm"))
            seed = f" (seed {e['reliability_seed']})" if e.get("reliability_seed") is not None else ""
            for j, (name, npos) in enumerate(labels):
                ax = axes[i, j]
                _reliability_panel(ax, e["reliability"], name, methods, j == len(labels) - 1)
                ax.set_title(f"{name} · {plural(npos, 'positive')}", color="#111827")
                if j == 0:
                    ax.set_ylabel(
                        f"{ARM_NAMES.get(arm, arm)}{seed}\nobserved frequency",
                        fontsize=9,
                        weight="bold",
                        color=COLORS.get(arm, "#111827"),
                    )
                if i == len(entries) - 1:
                    ax.set_xlabel("mean predicted probability", fontsize=8.5)
                else:
                    ax.tick_params(labelbottom=False)
        handles = [
            Line2D([], [], color=METHOD_COLORS.get(m, "#6b7280"), marker="o", ms=3, label=m, **_method_style(m))
            for m in methods
        ]
        handles += [
            Line2D([], [], color="#fbbf24", alpha=0.6, lw=6, label="records per bin (uncalibrated, right axis)")
        ]
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, -0.01), fontsize=8)
        fig.tight_layout(rect=(0, 0.06, 1, 1), h_pad=1.6, w_pad=1.8)
        return _png(fig)


def calibration_metrics_figure(results: Mapping[str, Any]) -> bytes | None:
    """ECE and Brier score (95 % CI) per calibrator, one colour per arm, one marker per protocol."""
    e4 = [e for e in rows(section(results, "exp4")) if isinstance(e.get("methods"), dict) and e["methods"]]
    if not e4:
        return None
    methods = method_order(m for e in e4 for m in e["methods"])
    protocols = list(dict.fromkeys(str(e.get("protocol")) for e in e4))
    markers = ["o", "s", "^", "v", "P"]
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(1, 2, figsize=(10.5, 1.2 + 0.3 * len(methods) * max(1, len(e4)) ** 0.5), sharey=True)
        n = len(e4)
        for ax, metric, title in zip(axes, ("ece", "brier"), ("ECE (pooled, 10 bins)", "Brier score")):
            for i, e in enumerate(e4):
                dy = (i - (n - 1) / 2) * (0.7 / max(n, 1))
                arm = str(e.get("arm"))
                mk = markers[protocols.index(str(e.get("protocol"))) % len(markers)]
                for j, m in enumerate(methods):
                    iv = interval((e["methods"].get(m) or {}).get(metric))
                    if iv.ok:
                        ax.errorbar(
                            [iv.value],
                            [len(methods) - 1 - j + dy],
                            xerr=_ci_err([iv]),
                            fmt=mk,
                            color=COLORS.get(arm, "#6b7280"),
                            ms=5.5,
                            capsize=2.5,
                            lw=1.5,
                        )
            ax.set_title(title + " — lower is better")
            ax.set_yticks(range(len(methods)), list(reversed(methods)))
            ax.grid(axis="y", visible=False)
            ax.tick_params(axis="y", length=0, labelsize=9)
        handles = [
            Line2D([], [], color=COLORS.get(a, "#6b7280"), marker="o", ls="none", label=ARM_NAMES.get(a, a))
            for a in dict.fromkeys(str(e.get("arm")) for e in e4)
        ]
        if len(protocols) > 1:
            handles += [
                Line2D([], [], color="#4b5563", marker=markers[i % len(markers)], ls="none", label=p)
                for i, p in enumerate(protocols)
            ]
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, -0.01))
        fig.tight_layout(rect=(0, 0.1, 1, 1))
        return _png(fig)


# ---------------------------------------------------------------------------------------------
# per class


def per_class_figure(row: Mapping[str, Any], target: str) -> bytes | None:
    """Per label AUC of both arms on the test split of ``target`` (its name) as a dumbbell, labels
    sorted by positives (most at the top)."""
    pcs = rows(row.get("per_class"))
    pcs = [p for p in pcs if num(p.get("finetuned")) is not None or num(p.get("standalone")) is not None]
    if not pcs:
        return None
    pcs.sort(key=lambda p: (-(num(p.get("n_pos")) or 0), str(p.get("label"))))
    n = len(pcs)
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(4.8, 1.4 + 0.25 * n))
        for i, p in enumerate(pcs):
            y = n - 1 - i
            ft, sa = num(p.get("finetuned")), num(p.get("standalone"))
            if ft is not None and sa is not None:
                ax.plot([ft, sa], [y, y], color="#d1d5db", lw=2.2, zorder=2)
            if sa is not None:
                ax.plot([sa], [y], "o", color=COLORS["standalone"], ms=6, zorder=3)
            if ft is not None:
                ax.plot([ft], [y], "o", color=COLORS["finetuned"], ms=6, zorder=4)
        ax.set_yticks(range(n), [f"{p.get('label')}  ({int(num(p.get('n_pos')) or 0)})" for p in reversed(pcs)])
        ax.set_ylim(-0.7, n - 0.3)
        ax.margins(x=0.05)
        ax.grid(axis="y", visible=False)
        ax.tick_params(axis="y", length=0, labelsize=8)
        ax.axvline(0.5, color="#e5e7eb", lw=1)
        ax.set_xlabel(f"AUC on the {target} test split")
        ax.set_title(f"Per label, {row.get('protocol', '?')} (positives in test)", fontsize=9.5)
        handles = [
            Line2D([], [], color=COLORS[a], marker="o", ls="none", label=ARM_NAMES[a])
            for a in ("finetuned", "standalone")
        ]
        # below the figure, outside the axis: a legend inside would cover points
        fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.32 / fig.get_figheight(), 1, 1))
        return _png(fig)


# ---------------------------------------------------------------------------------------------
# experiment 6

STRATEGY_COLORS = ("#6b7280", "#2563eb", "#059669", "#9333ea", "#ea580c", "#0891b2", "#be123c")


def exp6_figure(results: Mapping[str, Any]) -> bytes | None:
    """Macro AUC against the share of the target's pool (training + test folds; tested on the rest),
    one line per pre-training strategy with its CI band, one panel per backbone."""
    from .tables import strategy_name

    e6 = rows(section(results, "exp6"))
    if not any(interval(r).ok for r in e6):
        return None
    models = list(dict.fromkeys(str(r.get("model")) for r in e6))
    strategies = list(dict.fromkeys(str(r.get("strategy")) for r in e6))
    colors = {s: STRATEGY_COLORS[i % len(STRATEGY_COLORS)] for i, s in enumerate(strategies)}
    word, t = missing_word(results), target_name(results)
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(1, len(models), figsize=(5.4 * len(models), 4.1), sharey=True, squeeze=False)
        for ax, model in zip(axes[0], models):
            mrows = [r for r in e6 if str(r.get("model")) == model]
            drawn = False
            for strategy in strategies:
                pts = [(share_key(r.get("share")), interval(r)) for r in mrows if str(r.get("strategy")) == strategy]
                drawn |= _curve(ax, pts, colors[strategy], strategy_name(strategy))
            _mark_missing(ax, [(share_key(r.get("share")), interval(r)) for r in mrows], word)
            if not drawn:
                _not_run(ax, word)
            shares = sorted({s for s in (share_key(r.get("share")) for r in mrows) if s is not None})
            if shares:
                ax.set_xticks(shares, [f"{s:g} %" for s in shares])
            ax.set_title(model)
            ax.set_xlabel(f"share of the {t} pool (training + test folds)")
        axes[0][0].set_ylabel("macro AUC (95 % CI band)")
        handles = [Line2D([], [], color=colors[s], marker="o", lw=2, label=strategy_name(s)) for s in strategies]
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=min(len(handles), 4),
            bbox_to_anchor=(0.5, -0.01),
            fontsize=8,
            frameon=False,
        )
        rows_of_legend = math.ceil(len(handles) / 4)
        fig.tight_layout(rect=(0, 0.07 * rows_of_legend, 1, 1))
        return _png(fig)


# ---------------------------------------------------------------------------------------------


def safe_name(name: str) -> str:
    """A figure file stem from a protocol name."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "x"


def captions(results: Mapping[str, Any]) -> dict[str, str]:
    """Each figure's caption, naming the study's target (``[target] name``) and saying what a data
    share is a share of."""
    from .tables import exp1_shares_text, exp6_records_text

    t = target_name(results)
    e6_share = first_share(section(results, "exp6"))
    return {
        "headline": "Left: macro AUC of each arm, mean over seeds with its 95 % CI (small dots: single seeds)"
        + beside_original(results, "; hollow diamonds: the original study (beside its own label protocol only)")
        + ". Right: the paired difference fine-tuned − standalone with its 95 % CI, green when the CI excludes zero.",
        "exp1": "Lines: mean over runs; bands: 95 % CI; small dots: single runs (repeats × seeds)"
        + beside_original(
            results, "; dashed lines with hollow diamonds: the original study (single runs, tested on the rest)"
        )
        + ". "
        + exp1_shares_text(results),
        "exp2": "Left: pre-training on a share of PTB-XL, scored on the same PTB-XL test fold for every share. Right: "
        f"those networks fine-tuned on a share of the {t} pool and tested on the rest of it, as experiment 1; "
        f"orange line and band: the standalone network trained from scratch on the same {t} records."
        + beside_original(results, " Dashed, hollow diamonds: the original study."),
        "exp3": "Mean over seeds with 95 % CI (small dots: single seeds)"
        + beside_original(results, "; hollow diamonds: the original study")
        + ".",
        "exp5": "Mean over seeds with 95 % CI (small dots: single seeds)"
        + beside_original(results, "; hollow diamonds: the original study")
        + ".",
        "exp6": "One line per pre-training strategy: mean over runs with its 95 % CI band (small dots: single runs); "
        "grey: no pre-training (random weights), the reference of every paired difference in the table. "
        f"Share: of the {t} pool ({pool_text(results, e6_share)}); the rest of the pool is the test set. "
        + exp6_records_text(results),
        "exp4_metrics": "Expected calibration error and Brier score on the test split, before (uncalibrated) and after "
        "each calibrator, with 95 % CIs; colour: arm; marker: label protocol.",
        "exp4_reliability": "Observed frequency of the label against the mean predicted probability in 10 equal-width "
        "bins (test split) of one run per arm (its first seed); a calibrated model follows the dotted "
        "diagonal. Solid black: uncalibrated; dashed: each calibrator. Bars: records per bin "
        "(uncalibrated), on their own axis at the right. Rows: arms; columns: the labels with most "
        "positives.",
        "per_class": "Labels sorted by positives in the test split (in brackets).",
    }


def make_figures(results: Mapping[str, Any]) -> dict[str, Figure]:
    """Every figure of the report, keyed by name. A figure that fails to draw (data of an
    unexpected shape) carries the error instead of stopping the report."""
    caption = captions(results)
    jobs: list[tuple[str, str, Callable[[], bytes | None], str]] = [
        ("headline", caption["headline"], lambda: headline_figure(results), ""),
        ("exp1", caption["exp1"], lambda: exp1_figure(results), ""),
        ("exp2", caption["exp2"], lambda: exp2_figure(results), ""),
        ("exp3", caption["exp3"], lambda: exp3_figure(results), ""),
        ("exp5", caption["exp5"], lambda: exp5_figure(results), ""),
        ("exp6", caption["exp6"], lambda: exp6_figure(results), ""),
        ("exp4_metrics", caption["exp4_metrics"], lambda: calibration_metrics_figure(results), ""),
    ]
    e4 = rows(section(results, "exp4"))
    for protocol in dict.fromkeys(str(e.get("protocol", "?")) for e in e4):
        group = sorted(
            (e for e in e4 if str(e.get("protocol", "?")) == protocol),
            key=lambda e: (str(e.get("arm")) != "finetuned", str(e.get("arm"))),
        )
        jobs.append(
            (
                f"exp4_reliability_{safe_name(protocol)}",
                caption["exp4_reliability"],
                partial(reliability_figure, group),
                protocol,
            )
        )
    target = target_name(results)
    for row in rows(section(results, "headline")):
        p = str(row.get("protocol", "?"))
        jobs.append((f"per_class_{safe_name(p)}", caption["per_class"], partial(per_class_figure, row, target), p))
    out: dict[str, Figure] = {}
    for name, text, draw, figure_group in jobs:
        try:
            out[name] = Figure(name, text, draw(), group=figure_group)
        except Exception as exc:  # a figure is not worth losing the whole report over
            plt.close("all")
            out[name] = Figure(name, text, None, error=f"{type(exc).__name__}: {exc}", group=figure_group)
    return out


__all__ = [
    "Figure",
    "make_figures",
    "headline_figure",
    "exp1_figure",
    "exp2_figure",
    "exp3_figure",
    "exp5_figure",
    "exp6_figure",
    "reliability_figure",
    "calibration_metrics_figure",
    "per_class_figure",
    "top_labels",
    "safe_name",
]
