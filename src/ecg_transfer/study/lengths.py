"""Each arm's training length, chosen on validation, never the same fixed length for both.

One number of epochs for both arms measures which arm learns *sooner* as much as which learns
*better*: a network from random weights on a few hundred records is often far from done when a
pre-trained one has converged, so the fixed-length comparison credits pre-training with its head
start (BENCHMARKS.md, "The fine-tuning length": with 10 % of PTB-XL's diagnostic labels the arm from
random weights gained 0.04 fold-9 AUC between 20 and 40 epochs, where the pre-trained arm had
stopped). The study therefore trains every target run at several lengths -- ``[study] lengths``,
multiples of the arm's own epochs (``[standalone] epochs``; each ``[finetune]`` stage's epochs) --
and each comparison takes, per arm, the length whose validation macro AUC is best (the target's
validation folds; a tie keeps the shorter). The test folds never take part in the choice.

A length is a *schedule* (the one-cycle or stage schedule stretched), not an epoch picked out of one
long run: the best epoch of a long one-cycle run is not what a shorter run reaches.

The peak learning rate is the second axis of the same choice (``[study] lr_factors``, multiples of each
arm's own peak rates): a rate that suits one arm better than the other moves the difference as a
fixed length does (BENCHMARKS.md, "The peak rate too": with 10 % of PTB-XL's diagnostic labels the
arm from random weights learnt best at three times its configured rate, the pre-trained arm at its
own, and choosing both took the measured gain from +0.019 to +0.002). Every target run is trained at
each (length, rate); each comparison takes, per arm, the pair with the best validation macro AUC.

:func:`scale_length` stretches a run config and :func:`scale_lr` multiplies its peak rates (the
planner); :func:`slot` names the comparison a run is a candidate of, and :func:`choose` picks a
slot's run (results, the gallery).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..errors import EcgTransferError
from ..settings.run import RunConfig

if TYPE_CHECKING:
    from ..evaluation.runs import RunPredictions

#: The key of a target run's use that holds its length factor (absent in studies planned before).
LENGTH_KEY = "length"
#: The key of a target run's use that holds its peak-rate factor (absent: 1, the configured rates).
LR_KEY = "lr_factor"
#: Use keys that do not name the comparison (the run's readable name carries its length and rate).
_NOT_SLOT = (LENGTH_KEY, LR_KEY, "name")


#: A staged policy's preset keys: the explicit stages that replace the preset carry what they set.
_PRESET_KEYS = ("lr", "epochs", "head_epochs", "all_epochs")


def _finetune_table(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config's ``finetune`` table without its unset (None) keys."""
    return {k: v for k, v in dict(config.get("finetune") or {}).items() if v is not None}


def _explicit_stages(
    config: Mapping[str, Any], rc: RunConfig, change: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    """The ``finetune`` table of a staged policy with its stages made explicit (the preset resolved,
    its keys dropped), each stage's dict passed through ``change`` (a longer or faster schedule)."""
    table = {k: v for k, v in _finetune_table(config).items() if k not in _PRESET_KEYS}
    table["stages"] = [change(stage.to_dict()) for stage in rc.stages()]
    return table


def use_factors(use: Mapping[str, Any]) -> tuple[float, float]:
    """(length factor, peak-rate factor) of a run's use; 1 where absent (pre-training runs, studies
    planned before either was chosen)."""
    return float(use.get(LENGTH_KEY, 1)), float(use.get(LR_KEY, 1))


def _scaled(epochs: int, factor: float) -> int:
    """``epochs * factor`` to the nearest whole epoch (halves up), at least one."""
    return max(1, math.floor(epochs * factor + 0.5))


def scale_length(config: dict[str, Any], factor: float) -> dict[str, Any]:
    """``config`` (a target run's RunConfig dict) trained ``factor`` times as long: the top-level
    epochs of a run from random weights; each stage's epochs of a staged transfer policy (its
    preset made explicit, the learning rates unchanged); ``finetune.epochs`` of all / linear-probe
    (the top-level epochs when they have none). Validation runs as often per schedule
    (``validate_every`` scaled too: the laptop profile's "at the end of each stage" stays that; it
    is not part of a run's key). Factor 1 returns the config unchanged (the run keeps its key)."""
    if factor == 1:
        return config
    rc = RunConfig.from_dict(config)
    ft, out = rc.finetune, dict(config)
    assert rc.epochs is not None, "a validated RunConfig has its epochs resolved"
    out["validate_every"] = _scaled(rc.validate_every, factor)
    if ft.policy == "none":
        out["epochs"] = _scaled(rc.epochs, factor)
        return out
    if ft.staged:
        table = _explicit_stages(config, rc, lambda st: {**st, "epochs": _scaled(st["epochs"], factor)})
        total = sum(st["epochs"] for st in table["stages"])
    elif ft.epochs is not None:
        table = {**_finetune_table(config), "epochs": _scaled(ft.epochs, factor)}
        total = table["epochs"]
    else:  # all / linear-probe without their own epochs train the top-level ones
        table = _finetune_table(config)
        total = out["epochs"] = _scaled(rc.epochs, factor)
    if "epochs" in out:  # a resolved config's top-level epochs are the schedule's total
        out["epochs"] = total
    out["finetune"] = table
    return out


def _times(lr: Any, factor: float) -> Any:
    """A learning rate (one rate, or a stage's discriminative ``[low, high]``) times ``factor``, to
    12 significant digits: 3 x 1e-4 is written 0.0003, not 0.00030000000000000003, in the run's
    config (and its key)."""
    if isinstance(lr, (list, tuple)):
        return [_times(v, factor) for v in lr]
    return float(f"{float(lr) * factor:.12g}")


def scale_lr(config: dict[str, Any], factor: float) -> dict[str, Any]:
    """``config`` (a target run's RunConfig dict) trained at ``factor`` times its peak learning
    rates: ``schedule.max_lr`` of a run from random weights; each stage's rate of a staged transfer
    policy (its preset made explicit; both ends of a discriminative ``[low, high]``, so the ratio
    between layer groups is kept); ``finetune.lr`` of all / linear-probe (``schedule.max_lr``, which
    they then train at, when they have none). The one-cycle shape (warm-up from ``max_lr / div_factor``) follows the peak.
    Factor 1 returns the config unchanged (the run keeps its key)."""
    if factor == 1:
        return config
    rc = RunConfig.from_dict(config)
    ft, out = rc.finetune, dict(config)
    if not ft.staged and ft.lr is None:  # from random weights; all / linear-probe at schedule.max_lr
        out["schedule"] = {**dict(config.get("schedule") or {}), "max_lr": _times(rc.schedule.max_lr, factor)}
        return out
    if ft.staged:
        out["finetune"] = _explicit_stages(config, rc, lambda st: {**st, "lr": _times(st["lr"], factor)})
    else:  # all / linear-probe with their own rate (schedule.max_lr is then refused as unused)
        out["finetune"] = {**_finetune_table(config), "lr": _times(ft.lr, factor)}
    return out


def slot(key: str, use: Mapping[str, Any]) -> str:
    """The comparison that run ``key``'s ``use`` is one candidate of: a target run's use without its
    length, rate and name. A use without a length (pre-training runs; studies planned before
    lengths) is its run's alone."""
    if LENGTH_KEY not in use:
        return f"{key}|{use.get('name')}"
    return repr(sorted((k, repr(v)) for k, v in use.items() if k not in _NOT_SLOT))


@dataclass(frozen=True)
class Choice:
    """A slot's candidates (keys, ordered by length, then by rate from the configured one outwards)
    and the one chosen.

    ``chosen`` is None while a candidate is unfinished (the choice would change as runs finish);
    ``waiting`` then holds the first unfinished key, which stands for the slot (not done)."""

    keys: tuple[str, ...]
    lengths: tuple[float, ...]
    lr_factors: tuple[float, ...]
    scores: tuple[float | None, ...]
    chosen: str | None
    waiting: str | None

    @property
    def key(self) -> str:
        """The run that stands for the slot: the chosen one, else the first unfinished."""
        return self.chosen or self.waiting or self.keys[0]

    def _of_chosen(self, values: tuple[float, ...]) -> float | None:
        return None if self.chosen is None else values[self.keys.index(self.chosen)]

    @property
    def chosen_length(self) -> float | None:
        return self._of_chosen(self.lengths)

    @property
    def chosen_lr(self) -> float | None:
        return self._of_chosen(self.lr_factors)

    def _at_edge(self, values: tuple[float, ...], edge: float) -> bool:
        """Several values were tried, every candidate was scored and the chosen one has ``edge``."""
        return len(set(values)) > 1 and None not in self.scores and self._of_chosen(values) == edge

    def _beats(self, values: tuple[float, ...], others: Callable[[float], bool]) -> bool:
        """The chosen candidate scored strictly above every candidate whose value ``others`` picks:
        a tie (a run that learnt nothing scores alike everywhere) claims no edge."""
        best = self.scores[self.keys.index(str(self.chosen))]
        picked = [s for s, v in zip(self.scores, values) if others(v)]
        return best is not None and all(s is not None and best > s for s in picked)

    @property
    def at_cap(self) -> bool:
        """The longest length was best against every shorter one: the arm may still have been
        learning (not claimed when a shorter length had no validation score to compare; a tie
        keeps the shorter, so a longest chosen beat every shorter strictly)."""
        return self._at_edge(self.lengths, max(self.lengths))

    @property
    def at_floor(self) -> bool:
        """The shortest length was strictly better than every longer one: the arm might have done
        better shorter still (over-trained at every length tried). A tie keeps the shorter length but
        is not this: a run scoring alike at every length (one that learnt nothing) says nothing of it."""
        shortest = min(self.lengths)
        return self._at_edge(self.lengths, shortest) and self._beats(self.lengths, lambda n: n > shortest)

    def _lr_edge(self, edge: float) -> bool:
        chosen = self.chosen_lr
        return self._at_edge(self.lr_factors, edge) and self._beats(self.lr_factors, lambda r: r != chosen)

    @property
    def lr_at_top(self) -> bool:
        """The highest peak rate was strictly better than every other rate: the arm might have learnt
        better at a higher one still (a tie, which keeps the rate nearer 1, claims nothing)."""
        return self._lr_edge(max(self.lr_factors))

    @property
    def lr_at_bottom(self) -> bool:
        """The lowest peak rate was strictly better than every other rate: the arm might have learnt
        better at a lower one still (with the grid [1, 3] a tie keeps 1, the lowest: not this)."""
        return self._lr_edge(min(self.lr_factors))


def val_macro_auc(run: "RunPredictions | None") -> float | None:
    """A run's validation macro AUC (mean over the labels scorable there) from its saved
    validation predictions; None without them or with no label scorable."""
    from ..evaluation.bootstrap import metric_values  # the planner imports this module: not before scoring

    if run is None or run.val is None:
        return None
    value = float(metric_values(run.val.y_true, run.val.probs, include=("macro_auc",)).headline["macro_auc"][0])
    return None if math.isnan(value) else value


def run_val_macro_auc(run_dir: Path) -> float | None:
    """:func:`val_macro_auc` of the run in ``run_dir`` (None when its predictions do not load)."""
    from ..evaluation.runs import load_run

    try:
        return val_macro_auc(load_run(run_dir))
    except EcgTransferError:
        return None


def _order(candidate: tuple[str, float, float]) -> tuple[float, float, float]:
    """Shorter first; at one length, the rate nearest the configured one (factor 1), then the lower."""
    _, length, rate = candidate
    return length, abs(math.log(rate)), rate


def choose(
    candidates: Sequence[tuple[str, float] | tuple[str, float, float]],
    done: Callable[[str], bool],
    val_score: Callable[[str], float | None],
) -> Choice:
    """Pick among ``candidates`` ((run key, length factor[, rate factor, default 1])) the finished
    run with the best ``val_score`` (higher is better; None: not scorable); a tie, or no scorable
    run, keeps the shorter length, then the rate nearer the configured one. Nothing is chosen
    while a candidate is unfinished."""
    full = [(c[0], float(c[1]), float(c[2]) if len(c) > 2 else 1.0) for c in candidates]
    ordered = sorted(full, key=_order)
    keys = tuple(k for k, _, _ in ordered)
    lengths = tuple(n for _, n, _ in ordered)
    rates = tuple(r for _, _, r in ordered)
    waiting = next((k for k in keys if not done(k)), None)
    if waiting is not None:
        return Choice(keys, lengths, rates, tuple(None for _ in keys), None, waiting)
    scores = tuple(val_score(k) for k in keys)
    best = keys[0]
    best_score = scores[0]
    for k, s in zip(keys[1:], scores[1:]):
        if s is not None and (best_score is None or s > best_score):
            best, best_score = k, s
    return Choice(keys, lengths, rates, scores, best, None)


__all__ = [
    "LENGTH_KEY",
    "LR_KEY",
    "Choice",
    "choose",
    "run_val_macro_auc",
    "scale_length",
    "scale_lr",
    "slot",
    "use_factors",
    "val_macro_auc",
]
