"""Reading STUDY_DIR/results.json for the report: loading with clear errors, and the small value
helpers that the figures, the HTML page and the Markdown summary share.

The study writes results.json while it runs, so every section may be missing (experiment
disabled) and every value may be null (run failed or not done yet). Everything here therefore
accepts missing or malformed pieces and turns them into ``None``; only a file that is not a study
result at all (missing, not JSON, wrong ``format``, a section of the wrong type) is an error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..errors import EcgTransferError
from ..evaluation.bootstrap import outside_interval
from ..evaluation.caveats import FEW_TEST_POSITIVES
from ..runfiles import FEW_TRAINING_POSITIVES
from ..study.resultsfile import FORMAT, RESULTS_FILE, SMALL_TEST, is_machinery_check

#: Top-level sections and the JSON type each must have when present (null counts as absent).
SECTION_TYPES: dict[str, type] = {
    "study": dict,
    "status": dict,
    "statistics": dict,
    "reference": dict,
    "headline": list,
    "pretrain": dict,
    "exp1": dict,
    "exp2": list,
    "exp3": list,
    "exp4": list,
    "exp5": list,
    "exp6": list,
    "gallery": dict,
}
#: The label protocol of the original study's numbers when results.json does not say (its 18 classes).
REFERENCE_PROTOCOL = "seed18"

#: A per-label difference on fewer positive test records than this is marked (:data:`MARK_FEW_POSITIVES`),
#: never highlighted as a winner and left out of the count of labels where an arm is better: with one
#: or two positives the paired bootstrap can return p = 0.007 for a difference that one record decides.
MIN_LABEL_POSITIVES = FEW_TEST_POSITIVES  # the model card's and evaluate's rule for a fragile interval
#: Marks beside a number, each explained in a note under its table (:data:`MARK_NOTES`).
MARK_OUTSIDE = "†"  # the point estimate lies outside its own bootstrap interval
MARK_SEEDS = "‡"  # a run's own value lies outside the interval of the runs' mean
MARK_FEW_POSITIVES = "§"  # a per-label difference on fewer than MIN_LABEL_POSITIVES positive test records
MARK_NOTES: dict[str, str] = {
    MARK_OUTSIDE: (
        "† the point estimate lies outside its bootstrap interval: the test set is too small for this interval "
        "to mean much (on a few records the resamples describe other numbers than the one they surround, e.g. "
        "those that lack a rare label's positive records change which labels enter a macro mean)"
    ),
    MARK_SEEDS: (
        "‡ seeds differ by more than the interval: between-seed variation dominates (a run's own value lies "
        "outside the interval of the mean, which covers the resampling of test records only; the sd beside it "
        "is the spread between runs)"
    ),
    MARK_FEW_POSITIVES: (
        f"§ fewer than {MIN_LABEL_POSITIVES} positive test records: the difference, its interval and its "
        "p-value rest on a handful of records; not highlighted and not counted as a label where an arm is better"
    ),
}

#: What the original study's protocol got wrong (REFERENCE.md), shown beside its numbers.
ORIGINAL_FLAWS: tuple[str, ...] = (
    "Unequal arms: the standalone baseline got raw ADC integers, unstandardised, leads scrambled by a "
    "reshape, and was tested on a different fold than the fine-tuned model.",
    "G12EC RBBB (542 records) was not merged into CRBBB (28 records).",
    "The test fold doubled as validation set and as the temperature-scaling fit set.",
    "PTB-XL pre-training used random folds and a different test set for each data fraction.",
    "Training used centre crops only (the recipe uses random crops).",
    "The 100 Hz G12EC conversion mis-ordered records (chance AUC); the FFT input cropped an unshifted spectrum.",
    "Single runs: no seeds, no confidence intervals, no paired test.",
)


class ReportError(EcgTransferError):
    """STUDY_DIR does not hold a readable study result; the message names the file and the problem."""


def load_results(study_dir: str | Path) -> dict[str, Any]:
    """STUDY_DIR/results.json, checked for its format and section types (values are not checked:
    missing or null values are expected while a study runs)."""
    study_dir = Path(study_dir)
    path = study_dir / RESULTS_FILE
    if not study_dir.is_dir():
        raise ReportError(f"{study_dir}: not a directory (expected a study directory holding {RESULTS_FILE})")
    if not path.is_file():
        raise ReportError(
            f"{path}: not found; is {study_dir} a study directory? (`ecg-transfer study` writes results.json there)"
        )
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot be read ({exc})") from None
    if not isinstance(results, dict):
        raise ReportError(f"{path}: expected a JSON object, found {type(results).__name__}")
    fmt = results.get("format")
    if fmt != FORMAT:
        raise ReportError(f'{path}: "format" is {fmt!r}; this report reads {FORMAT!r}')
    for key, kind in SECTION_TYPES.items():
        value = results.get(key)
        if value is not None and not isinstance(value, kind):
            raise ReportError(
                f'{path}: section "{key}" must be a JSON {"object" if kind is dict else "array"} '
                f"or null, found {type(value).__name__}"
            )
    return results


# ---------------------------------------------------------------------------------------------
# values


def num(x: Any) -> float | None:
    """A finite float, or None (null, NaN, a string, ...)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class Interval:
    """A point value with its CI and, for multi-seed arms, the spread over seeds."""

    value: float | None
    lo: float | None = None
    hi: float | None = None
    sd: float | None = None
    values: list[float] = field(default_factory=list)
    p: float | None = None
    n: int | None = None  # runs finished
    n_planned: int | None = None  # runs planned
    n_test: int | None = None  # test records (mean over test sets)
    n_test_min: int | None = None  # the smallest test set it was computed on
    n_test_max: int | None = None  # the largest test set it was computed on (when recorded)
    labels_scored: int | None = None  # labels its macro mean averaged (min over test sets)
    labels_scored_max: int | None = None  # ... max over test sets, when they differ
    n_labels: int | None = None  # labels of the task
    labels_few_train: int | None = None  # labels learnt from < FEW_TRAINING_POSITIVES positives (max over runs)
    ties: float | None = None  # share of resamples whose difference is exactly 0 (paired differences)
    test_sets: int | None = None  # independent test sets the mean's CI resampled (repeats); None/1: one

    @property
    def ok(self) -> bool:
        return self.value is not None

    def _outside(self, v: float) -> bool:
        return outside_interval(v, self.lo, self.hi)

    @property
    def point_outside(self) -> bool:
        """The value lies outside its own CI (a percentile interval on a tiny test set can exclude the
        point estimate: see :data:`MARK_NOTES`). Read from the numbers (results.json's
        ``point_outside_ci`` is the same test on the same unrounded numbers, for readers of the file)."""
        return self.value is not None and self.has_ci and self._outside(self.value)

    @property
    def runs_outside(self) -> int:
        """How many of several runs' own values lie outside the CI of their mean (0 for a single run):
        the CI resamples test records only, so runs that differ more than it are not covered by it.
        Never for runs on different test sets (repeats): the mean of K independent test sets has a
        CI about sqrt(K) narrower than one run's spread, so runs outside it are expected there."""
        if len(self.values) < 2 or not self.has_ci or (self.test_sets or 1) > 1:
            return 0
        return sum(1 for v in self.values if self._outside(v))

    @property
    def marks(self) -> str:
        """:data:`MARK_OUTSIDE` and :data:`MARK_SEEDS` where they apply (see :data:`MARK_NOTES`)."""
        if not self.ok:
            return ""
        return (MARK_OUTSIDE if self.point_outside else "") + (MARK_SEEDS if self.runs_outside else "")

    @property
    def has_ci(self) -> bool:
        return self.lo is not None and self.hi is not None

    @property
    def above_zero(self) -> bool:
        """The CI lies entirely above 0 (a paired difference in favour of its first arm), and holds
        its own point: an interval that excludes its point (†) names no winner."""
        return self.lo is not None and self.hi is not None and self.lo > 0 and not self.point_outside

    @property
    def below_zero(self) -> bool:
        """The CI lies entirely below 0 (and holds its own point, as for :attr:`above_zero`)."""
        return self.lo is not None and self.hi is not None and self.hi < 0 and not self.point_outside

    @property
    def excludes_zero(self) -> bool:
        """The CI lies entirely on one side of 0 (a paired difference that names a winner)."""
        return self.above_zero or self.below_zero

    @property
    def small_test(self) -> bool:
        """Computed on fewer than :data:`SMALL_TEST` test records (on its smallest test set)."""
        n = self.n_test_min if self.n_test_min is not None else self.n_test
        return n is not None and n < SMALL_TEST


def interval(x: Any) -> Interval:
    """An interval from ``{"value", "ci", "sd", "values", "p"}``, a bare number, or nothing."""
    if isinstance(x, Mapping):
        ci = x.get("ci")
        lo = hi = None
        if isinstance(ci, Sequence) and not isinstance(ci, str) and len(ci) == 2:
            lo, hi = num(ci[0]), num(ci[1])
        vals = x.get("values")
        values = [v for v in (num(v) for v in vals) if v is not None] if isinstance(vals, list) else []
        ints = {
            k: _int_or_none(x.get(k))
            for k in (
                "n",
                "n_planned",
                "n_test",
                "n_test_min",
                "n_test_max",
                "labels_scored",
                "labels_scored_max",
                "n_labels",
                "labels_few_train",
                "test_sets",
            )
        }
        return Interval(
            num(x.get("value")),
            lo,
            hi,
            num(x.get("sd")),
            values,
            num(x.get("p")),
            ties=num(x.get("ties_at_zero")),
            **ints,
        )
    return Interval(num(x))


def _int_or_none(x: Any) -> int | None:
    v = num(x)
    return None if v is None else int(round(v))


def fmt(x: float | None, digits: int = 3, sign: bool = False) -> str:
    if x is None:
        return "—"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def fmt_ci(iv: Interval, digits: int = 3, sign: bool = False) -> str:
    """``[0.890, 0.930]`` or an empty string."""
    if not iv.has_ci:
        return ""
    return f"[{fmt(iv.lo, digits, sign)}, {fmt(iv.hi, digits, sign)}]"


def fmt_interval(iv: Interval, missing: str, digits: int = 3, sign: bool = False) -> str:
    """``0.910 [0.890, 0.930]``, or ``missing`` when there is no value."""
    if not iv.ok:
        return missing
    ci = fmt_ci(iv, digits, sign)
    return fmt(iv.value, digits, sign) + (f" {ci}" if ci else "")


def fmt_p(p: float | None, ties: float | None = None) -> str:
    """``p = 0.012``; with the share of resamples that tie at exactly 0 when there are any to speak of
    (they keep 0 inside the interval, so a large p beside a CI touching 0 reads as it should)."""
    if p is None:
        return ""
    text = "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
    if ties is not None and ties >= 0.01:
        text += f" ({100 * ties:.0f} % of resamples tie at 0)"
    return text


def labels_text(iv: Interval) -> str:
    """``3 of 18 labels scored`` (``3–5 of 18`` over several test sets), or "" when not recorded."""
    if iv.labels_scored is None or iv.n_labels is None:
        return ""
    k = str(iv.labels_scored)
    if iv.labels_scored_max is not None and iv.labels_scored_max != iv.labels_scored:
        k += f"–{iv.labels_scored_max}"
    return f"{k} of {iv.n_labels} labels scored"


def few_training_text(iv: Interval) -> str:
    """``7 of 18 labels learnt from < 10 training positives``, or "" when none was (or not recorded)."""
    if not iv.labels_few_train:
        return ""
    of = f" of {iv.n_labels}" if iv.n_labels is not None else ""
    return f"{iv.labels_few_train}{of} labels learnt from < {FEW_TRAINING_POSITIVES} training positives"


def records_text(iv: Interval) -> str:
    """``1,034 test records``; over test sets of different sizes (repeats) ``27–28 test records``, or,
    where only the smallest and the mean are recorded, ``at least 27 test records, mean 28``, so that
    the count agrees with the small-test warning (which names the smallest); "" when not recorded."""
    n = iv.n_test
    if n is None:
        return ""
    lo = min(n, iv.n_test_min) if iv.n_test_min is not None else n
    hi = max(n, iv.n_test_max) if iv.n_test_max is not None else None
    if hi is not None and hi > lo:
        return f"{lo:,}–{hi:,} test records"
    if lo < n:
        return f"at least {lo:,} test record{'' if lo == 1 else 's'}, mean {n:,}"
    return f"{n:,} test record{'' if n == 1 else 's'}"


def scope_text(iv: Interval, labels: bool = True) -> str:
    """What a value was computed on: ``1,034 test records · 16 of 18 labels scored`` (and, where a
    run learnt labels from a handful of records, ``· 7 of 18 labels learnt from < 10 training positives``)."""
    parts = (records_text(iv), labels_text(iv) if labels else "", few_training_text(iv) if labels else "")
    return " · ".join(t for t in parts if t)


def small_test_text(n: int | None, short: bool = False) -> str:
    """The warning shown beside every number computed on fewer than :data:`SMALL_TEST` test records
    (``short``: the form for a table cell, where the table says the rest)."""
    if n is None or n >= SMALL_TEST:
        return ""
    text = f"⚠ only {n} test record{'' if n == 1 else 's'} (< {SMALL_TEST})"
    return text if short else text + ": this number can move a lot"


def _length_section(results: Mapping[str, Any]) -> Mapping[str, Any] | None:
    value = results.get("lengths")
    return value if isinstance(value, Mapping) else None


def _arm_name(arm: str) -> str:
    return "the fine-tuned arm" if arm == "finetuned" else "the arm from random weights"


def _won(choices: list[dict], arm: str) -> list[dict]:
    """The finished choices of ``arm`` among ``choices``."""
    return [c for c in choices if c.get("arm") == arm and c.get("chosen") is not None]


def _count(won: list[dict], flag: str) -> int:
    """How many of ``won`` carry ``flag`` (at_cap, at_floor, lr_at_top, lr_at_bottom)."""
    return sum(1 for c in won if c.get(flag))


def mark_notes(marks: str) -> list[str]:
    """The explanations (:data:`MARK_NOTES`, in its order) of the marks found in ``marks``."""
    return [note for mark, note in MARK_NOTES.items() if mark in marks]


def left_out_text(row: Mapping[str, Any]) -> str:
    """Beside a headline: the test records are those with at least one of the protocol's labels;
    how many of the test folds' records had none and were left out (of training and validation
    too: the benchmark's rule). Empty when nothing was left out or the runs did not record it."""
    left = row.get("left_out") or {}
    dropped, folds = left.get("dropped_unlabelled") or {}, left.get("fold_records") or {}
    if not dropped.get("test"):
        return ""
    n_labels = row.get("n_labels")
    labels = f"the {n_labels} labels" if n_labels else "the labels"
    others = sum(dropped.values()) - dropped["test"]
    return (
        f"ⓘ tested on the records with at least one of {labels}: {dropped['test']} of the test folds' "
        f"{folds.get('test', '?')} records had none and were left out"
        + (f" (and {others} more from training and validation)" if others else "")
    )


#: Beside a headline difference when each arm kept its configured peak rate ([study] lr_factors = [1]).
FIXED_LR_WARNING = (
    "⚠ each arm at its configured peak learning rate, not chosen on validation: a rate that suits one "
    "arm better moves the difference ([study] lr_factors chooses it)"
)


def _headline_choices(lengths: Mapping[str, Any], protocol: str | None) -> list[dict]:
    return [
        c
        for c in rows(lengths.get("comparisons"))
        if "headline" in (c.get("experiments") or []) and (protocol is None or c.get("protocol") == protocol)
    ]


def _edge_warnings(mine: list[dict]) -> list[str]:
    """The lengths either arm won at an end of its grid, and the peak rates the arm from random
    weights won at an end of its grid (see :func:`length_warning`)."""
    parts = []
    won = {arm: _won(mine, arm) for arm in ("standalone", "finetuned")}
    for arm, effect in (("standalone", "overstate"), ("finetuned", "understate")):
        capped, floored, n_won = _count(won[arm], "at_cap"), _count(won[arm], "at_floor"), len(won[arm])
        if capped:
            parts.append(
                f"⚠ {_arm_name(arm)} did best at its longest training length in {capped} of {n_won} "
                f"runs: it may still have been learning, so the difference may {effect} pre-training's gain"
            )
        if floored and arm == "standalone":
            parts.append(
                f"⚠ {_arm_name(arm)} did best at its shortest training length in {floored} of {n_won} "
                "runs: it may do better shorter still, so the difference may overstate pre-training's gain"
            )
    alone = won["standalone"]
    for flag, side, more in (("lr_at_top", "highest", "higher"), ("lr_at_bottom", "lowest", "lower")):
        if n := _count(alone, flag):
            parts.append(
                f"⚠ {_arm_name('standalone')} did best at its {side} peak learning rate in {n} of {len(alone)} "
                f"runs: it may learn better at a {more} one, so the difference may overstate pre-training's gain"
            )
    return parts


def length_warning(results: Mapping[str, Any], protocol: str | None = None) -> str:
    """Beside a headline difference: each arm at one fixed length, or at its configured peak rate;
    an arm that did best at its longest length in the headline's choices of ``protocol`` (it may
    still have been learning: from random weights, the difference may overstate pre-training's gain;
    fine-tuned, understate it); the arm from random weights best at its shortest length or at the
    highest or lowest peak rate tried (it may do better beyond: overstate -- the fine-tuned arm's
    ends, which would understate, are counted in the method text); a choice made on a small
    validation set. Empty for results written before lengths were chosen (nothing recorded)."""
    lengths = _length_section(results)
    if lengths is None:
        return ""
    parts = []
    if lengths.get("fixed"):
        parts.append("⚠ each arm at one fixed training length: the difference may be pre-training's head start")
    if lengths.get("lr_fixed"):  # absent in results written before rates could be chosen: not claimed
        parts.append(FIXED_LR_WARNING)
    mine = _headline_choices(lengths, protocol)
    parts += _edge_warnings(mine)
    n_val = [int(c["n_val"]) for c in mine if c.get("n_val") is not None]
    if n_val and min(n_val) < SMALL_TEST:
        what = "rates" if lengths.get("fixed") else "lengths" if lengths.get("lr_fixed", True) else "lengths and rates"
        parts.append(f"⚠ {what} chosen on {min(n_val)} validation records: the choice is close to chance")
    return "; ".join(parts)


def longest_note(results: Mapping[str, Any], experiment: str, share: float | None, **match: Any) -> str:
    """Beside one row of an experiment's table (``share``; ``match``: e.g. strategy, model): each arm
    whose longest training length won some of the row's choices, "k of n" -- where the arm from
    random weights may still have been learning. Empty when none did or nothing was recorded."""
    lengths = _length_section(results)
    if lengths is None or lengths.get("fixed"):
        return ""
    mine = [
        c
        for c in rows(lengths.get("comparisons"))
        if experiment in (c.get("experiments") or [])
        and share_key(c.get("share")) == share
        and all(c.get(k) == v for k, v in match.items())
    ]
    parts = []
    for arm, who in (("standalone", "from random weights"), ("finetuned", "fine-tuned")):
        won = _won(mine, arm)
        if capped := _count(won, "at_cap"):
            parts.append(f"{who} {capped} of {len(won)}")
    return f"⚠ longest length best: {', '.join(parts)}" if parts else ""


def _arm_length_text(arm: str, a: Mapping[str, Any]) -> str:
    won = ", ".join(f"{f}× {n}" for f, n in (a.get("chosen") or {}).items())
    where = ", ".join(f"{x} {k} of {n}" for x, (k, n) in (a.get("at_cap_by_experiment") or {}).items() if k)
    extra = [f"the longest {a['at_cap']} times: {where}" if a.get("at_cap") else ""]
    extra.append(f"the shortest best against every longer {a['at_floor']} times" if a.get("at_floor") else "")
    extra.append(f"{a['unfinished']} unfinished (a candidate waiting or failed)" if a.get("unfinished") else "")
    extra.append(f"at least {a['n_val_min']} validation records" if a.get("n_val_min") is not None else "")
    detail = "; ".join(e for e in extra if e)
    return f"{_arm_name(arm)}: {won}{f' ({detail})' if detail else ''}"


def length_text(results: Mapping[str, Any]) -> str | None:
    """How each arm's training length was chosen and what was chosen (``results["lengths"]``)."""
    lengths = _length_section(results)
    if lengths is None:
        return None
    if lengths.get("fixed"):
        return str(lengths.get("note") or "each arm at one fixed training length")
    factors = ", ".join(f"{float(f):g}×" for f in lengths.get("factors") or [])
    arms = [_arm_length_text(arm, a) for arm, a in (lengths.get("arms") or {}).items() if a.get("comparisons")]
    chosen = f". Chosen: {'; '.join(arms)}" if arms else ""
    rule = lengths.get("rule", "each arm at several lengths, the best on validation kept")
    return f"lengths {factors}: {rule}{chosen}"


def lr_text(results: Mapping[str, Any]) -> str | None:
    """How each arm's peak learning rate was chosen (``results["lengths"]``, with the lengths):
    None when the rates were not (one factor, or results written before rates could be chosen)."""
    lengths = _length_section(results)
    if lengths is None or lengths.get("lr_fixed", True):
        return None
    factors = ", ".join(f"{float(f):g}×" for f in lengths.get("lr_factors") or [])
    arms = []
    for arm, a in (lengths.get("arms") or {}).items():
        if not a.get("comparisons"):
            continue
        won = ", ".join(f"{f}× {n}" for f, n in (a.get("chosen_lr") or {}).items())
        ends = [f"the highest {a['lr_at_top']} times" if a.get("lr_at_top") else ""]
        ends.append(f"the lowest {a['lr_at_bottom']} times" if a.get("lr_at_bottom") else "")
        detail = "; ".join(e for e in ends if e)
        arms.append(f"{_arm_name(arm)}: {won}{f' ({detail})' if detail else ''}")
    chosen = f". Chosen: {'; '.join(arms)}" if arms else ""
    return (
        f"peak rates {factors} each arm's own, chosen with the length on validation (a rate at either "
        f"end of the grid may not be the arm's best){chosen}"
    )


#: Calibration states in report order: before, then the calibrators from the simplest.
METHOD_ORDER = ("uncalibrated", "temperature", "class-temperature", "platt", "isotonic")


def method_order(methods: Iterable[Any]) -> list[str]:
    """Calibration states, each once, in :data:`METHOD_ORDER` (unknown ones after, as they came)."""
    seen = list(dict.fromkeys(str(m) for m in methods))
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(seen, key=lambda m: (rank.get(m, len(rank)), seen.index(m)))


def plural(n: int, word: str) -> str:
    """``1 positive``, ``3 positives``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "—"
    s = float(s)
    if s < 60:
        return f"{s:.1f} s"
    h, rem = divmod(int(round(s)), 3600)
    m, sec = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {sec:02d} s"


def seeds_note(iv: Interval) -> str:
    """``sd 0.004, 3 runs`` for a multi-run value; ``2 of 3 runs`` while some are missing."""
    n = iv.n if iv.n is not None else len(iv.values)
    parts = []
    if n > 1 and iv.sd is not None:
        parts.append(f"sd {fmt(iv.sd)}")
    if iv.n_planned is not None and n < iv.n_planned:
        parts.append(f"{n} of {iv.n_planned} runs")
    elif n > 1:
        parts.append(f"{n} runs")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# sections


def section(results: Mapping[str, Any], key: str) -> Any:
    """The section, or None when it is missing, null or empty (the experiment was not run)."""
    value = results.get(key)
    return value if value else None


def json_object(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (a section or field missing, null or of the
    wrong type reads as empty)."""
    return value if isinstance(value, dict) else {}


def rows(value: Any) -> list[dict]:
    """The dict rows of a list (anything else is skipped)."""
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def missing_word(results: Mapping[str, Any]) -> str:
    """What a null value most likely means, from the study's status: runs still to do → "pending";
    nothing left but failures → "failed"; both → "pending or failed"."""
    st = json_object(results.get("status"))
    left = (num(st.get("left")) or 0) + (num(st.get("running")) or 0)
    failed = (num(st.get("failed")) or 0) > 0 or bool(st.get("failed_runs"))
    if left and failed:
        return "pending or failed"
    if left:
        return "pending"
    if failed:
        return "failed"
    return "n/a" if st else "pending"


def row_missing(row: Mapping[str, Any], default: str) -> str:
    """A row's own status word when it carries one (``"status": "failed"``), else ``default``."""
    st = row.get("status")
    if isinstance(st, str) and st and st != "ok":
        return st
    if row.get("error"):
        return "failed"
    return default


def share_key(x: Any) -> float | None:
    """A data share (10, "10", 10.0) as a number for sorting and plotting."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


#: Display names of the datasets a study can name (a CinC-format target has none: it is the user's own set).
DATASET_NAMES = {"ptbxl": "PTB-XL", "g12ec": "G12EC"}


def target_name(results: Mapping[str, Any], default: str = "target") -> str:
    """The target's name in every caption, axis label and table header of the report: the spec's
    ``[target] name`` (results.json ``study.target.name``; a user's own set, e.g. "Leipzig"), else
    the name of its dataset, else ``default``. Texts about the original study's numbers do not use
    it: they mean that study's G12EC records, whatever the target of this one."""
    tgt = json_object(json_object(results.get("study")).get("target"))
    name = tgt.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    return DATASET_NAMES.get(str(tgt.get("dataset")), default)


def source_name(results: Mapping[str, Any], default: str = "PTB-XL") -> str:
    """The source's name (results.json ``study.source.dataset``): "PTB-XL", the only source a spec can name."""
    dataset = json_object(json_object(results.get("study")).get("source")).get("dataset")
    return DATASET_NAMES.get(str(dataset), str(dataset)) if dataset else default


def target_pool(results: Mapping[str, Any]) -> tuple[int, int] | None:
    """(folds, of all folds) of the target's training pool, from results.json ``study.target``: the
    training and test folds together, which "test on the rest" (experiments 1, 2 and 6) splits into
    a training share and the rest; None when the folds are not recorded."""
    tgt = json_object(json_object(results.get("study")).get("target"))
    train, test, n = tgt.get("train_folds"), tgt.get("test_folds"), num(tgt.get("n_folds"))
    if n is None or not isinstance(train, list) or not isinstance(test, list):
        return None
    return len({str(x) for x in train + test}), int(n)


def pool_text(results: Mapping[str, Any], share: float | None = None) -> str:
    """What "the pool" of "test on the rest" is, for a caption: ``the training and test folds, 9 of 10
    folds; 10 % of the pool is about 9 % of all Leipzig records``, the fold counts only where
    results.json records them (the validation folds, and folds in no list, are outside the pool)."""
    text = "the training and test folds"
    pool = target_pool(results)
    if pool is None or not pool[1]:
        return text
    k, n = pool
    text += f", {k} of {n} folds"
    if share is None:
        return text
    return f"{text}; {share:g} % of the pool is about {share * k / n:.2g} % of all {target_name(results)} records"


def first_share(value: Any) -> float | None:
    """The smallest data share of some result rows (None when none has one)."""
    return min((s for s in (share_key(r.get("share")) for r in rows(value)) if s is not None), default=None)


def reference(results: Mapping[str, Any]) -> dict:
    ref = results.get("reference")
    return ref if isinstance(ref, dict) else {}


def beside_original(results: Mapping[str, Any], text: str) -> str:
    """``text`` (words about the original study's numbers) when the results carry them, else "":
    they are there only for a study of G12EC (``study.results.original_reference``)."""
    return text if reference(results) else ""


def reference_protocol(results: Mapping[str, Any]) -> str:
    """The label protocol the original study's numbers belong to."""
    return str(reference(results).get("protocol") or REFERENCE_PROTOCOL)


def ref_value(results: Mapping[str, Any], *keys: Any, protocol: Any = None) -> float | None:
    """The original study's number at reference[k1][k2]..., keys compared as strings
    (``exp1 → "10" → "finetuned"``; a share 10.0 matches "10"). With ``protocol``: None unless it is
    the protocol those numbers belong to (they stand only beside it)."""
    if protocol is not None and str(protocol) != reference_protocol(results):
        return None
    node: Any = reference(results)
    for key in keys:
        if not isinstance(node, dict):
            return None
        hit = None
        for k, v in node.items():
            if str(k) == str(key) or (share_key(k) is not None and share_key(k) == share_key(key)):
                hit = v
                break
        node = hit
    return num(node)


def machinery_check(results: Mapping[str, Any]) -> bool:
    """Whether the study's numbers are a machinery check (e.g. the ``smoke`` profile), not an answer:
    results.json's ``study.machinery_check``, else the rule of :func:`is_machinery_check`."""
    st = json_object(results.get("study"))
    flag = st.get("machinery_check")
    return flag if isinstance(flag, bool) else is_machinery_check(st.get("profile"))


def experiment_protocol(results: Mapping[str, Any], row: Mapping[str, Any] | None = None) -> str | None:
    """The label protocol of an experiment's row: its own, else experiment 1's, else the first headline's
    (experiments 1, 2, 3 and 5 use the study's first protocol)."""
    if isinstance(row, Mapping) and row.get("protocol"):
        return str(row["protocol"])
    e1 = results.get("exp1")
    if isinstance(e1, dict) and e1.get("protocol"):
        return str(e1["protocol"])
    head = rows(results.get("headline"))
    return str(head[0]["protocol"]) if head and head[0].get("protocol") else None
