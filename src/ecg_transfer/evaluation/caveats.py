"""Why an interval says less than it seems, in words beside the number: the ``evaluate`` console
and the model card put the same caveats beside the same intervals (few test positives or
negatives, undefined resamples, zero width, a value outside its own interval, plain-fallback
resampling, the challenge metric's scope)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

#: A label with fewer test positives (or negatives) than this has its intervals flagged beside the
#: number (here and in ``MODEL_CARD.md``): a resample then often holds none of them, and the interval
#: rests on a record or two (one positive: an AUC interval of zero width, 1.000 [1.000, 1.000]).
FEW_TEST_POSITIVES = 5
#: The mark put before what makes a number fragile.
WARN = "⚠"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def interval_caveats(
    entry: Mapping[str, Any] | None,
    n_resamples: int | None,
    level: float = 0.95,
    n_pos: int | None = None,
    n_neg: int | None = None,
) -> list[str]:
    """Why an interval ``{"value", "ci", "n_undefined"}`` says less than it seems, as short phrases:
    fewer than :data:`FEW_TEST_POSITIVES` test positives or negatives; more undefined resamples
    (dropped from the interval, e.g. those that drew no positive) than the share its two tails hold,
    ``1 - level`` (the interval then describes only the resamples where the metric exists); a
    zero-width interval (flagged on many positives too: a perfect separation of the test records
    gives every resample the same score, and the interval shows none of the uncertainty another
    sample of records would); a value outside its own interval (``point_outside_ci``). Empty for
    an undefined value ("n/a") or a sound interval."""
    if not entry or entry.get("value") is None:
        return []
    out = []
    for n, word in ((n_pos, "test positive"), (n_neg, "test negative")):
        if n is not None and 0 < n < FEW_TEST_POSITIVES:
            out.append(_plural(int(n), word))
    undefined = int(entry.get("n_undefined") or 0)
    if n_resamples and undefined > (1.0 - level) * n_resamples:
        out.append(f"{undefined} of {n_resamples} resamples undefined")
    lo, hi = (list(entry.get("ci") or []) + [None, None])[:2]
    if lo is not None and lo == hi and (n_resamples or 0) > 1:
        out.append("interval of zero width")
    from .bootstrap import outside_interval  # numpy: not at import, the CLI's parser imports this module

    if outside_interval(entry.get("value"), lo, hi):  # as results.json's point_outside_ci, from the numbers
        out.append("value outside its interval")
    return out


def with_caveats(text: str, caveats: Sequence[str]) -> str:
    """``1.000 [1.000, 1.000] ⚠ 1 test positive; 340 of 1000 resamples undefined`` (``text`` alone
    without caveats)."""
    return f"{text} {WARN} {'; '.join(caveats)}" if caveats else text


def resampling_caveat(settings: Mapping[str, Any]) -> str | None:
    """A line on intervals from plain resampling because the rare-class redraw rule was not applied
    (``settings.resampling.rule == "plain-fallback"``), with the evaluation's reason; None otherwise."""
    r = settings.get("resampling") or {}
    if r.get("rule") != "plain-fallback":
        return None
    why = r.get("note") or r.get("description") or "see settings.resampling in metrics.json"
    return f"{WARN} intervals from plain resampling of the test records, not the rare-class redraw rule: {why}"


def challenge_caveat(challenge: Mapping[str, Any] | None) -> list[str]:
    """The challenge metric's scope beside its number: its note when the run's labels are not the
    challenge's 24 scored classes one to one (not the official challenge metric)."""
    ch = challenge or {}
    return [str(ch["note"])] if ch.get("note") and not ch.get("complete") else []


__all__ = ["FEW_TEST_POSITIVES", "WARN", "challenge_caveat", "interval_caveats", "resampling_caveat", "with_caveats"]
