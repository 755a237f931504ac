"""``STUDY_DIR/results.json``: every number of the report, recomputed from the runs' saved predictions.

Nothing here trains or predicts: it reads each finished run's ``predictions_test.csv`` (and its
``evaluation/`` files for calibration) and computes intervals, so the report can be rebuilt at any
time -- also while a study is still running, with what is done so far.

How intervals are made (95 %, percentile, ``study.bootstrap`` resamples of test records, each
resample keeping a positive and a negative record of every label scored on the test set -- the
PTB-XL benchmark's rule, :func:`ecg_transfer.evaluation.bootstrap.draw_resamples`; written into
the ``statistics`` section, with every place where the rule could not be applied):

- several seeds of one arm on the same test records: the value is the mean over seeds, the CI the
  bootstrap interval of that mean (all seeds on the same resamples), ``sd`` the spread over seeds;
- repeats with *different* test records (experiment 1, "test on the rest"): the value is the mean
  over repeats and the CI comes from resampling each repeat's test records independently and
  averaging -- the uncertainty from the test records given those partitions;
- fine-tuned minus standalone (every experiment) and calibrated minus uncalibrated (experiment 4):
  the paired bootstrap on the same test records (both arms scored on the very same resamples), with
  its two-sided p-value (the inverse of the percentile interval: p < 0.05 exactly when the 95 %
  interval excludes 0).

Every macro value carries its scope: ``n_test`` (test records) and ``labels_scored`` of ``n_labels``
(labels with a positive and a negative test record, the ones its macro mean averages).
"""

from __future__ import annotations

import hashlib
import json
import platform
import socket
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..atomic import atomic_write_json
from ..errors import EcgTransferError
from ..evaluation import metrics as M
from ..evaluation.bootstrap import (
    HEADLINE,
    INTERVAL_METHOD,
    MAX_DRAWS_PER_RESAMPLE,
    MIN_VARIATION_KEPT,
    P_VALUE_METHOD,
    Resamples,
    difference_entry,
    difference_samples,
    draw_resamples,
    metric_values,
    outside_interval,
    paired_bootstrap,
    percentile_ci,
    seed_summary,
)
from ..evaluation.challenge import challenge_mapping
from ..evaluation.runs import EVAL_DIR, Predictions, RunPredictions, align_runs, load_run
from ..predictions import load_predictions
from ..runfiles import few_training_labels, read_label_counts, read_left_out
from .lengths import Choice, choose, slot, use_factors, val_macro_auc
from .plan import ARMS, RunDef
from .resultsfile import FORMAT, RESULTS_FILE, SMALL_TEST, is_machinery_check
from .store import RunStore

#: The original study's numbers (REFERENCE.md), drawn beside ours. Its protocol had the errors
#: listed there, so they are context, not a target. They belong to one label protocol (its 18
#: classes, ``seed18``) and are shown only beside results of that protocol.
REFERENCE: dict[str, Any] = {
    "protocol": "seed18",
    "headline": {"finetuned": 0.919, "standalone": 0.843, "pretrain": 0.947},
    "exp1": {
        "10": {"standalone": 0.655, "finetuned": 0.840},
        "20": {"standalone": 0.736, "finetuned": 0.875},
        "30": {"standalone": 0.794, "finetuned": 0.890},
        "50": {"standalone": 0.806, "finetuned": 0.902},
        "70": {"standalone": 0.831, "finetuned": 0.912},
        "80": {"standalone": 0.838, "finetuned": 0.915},
        "90": {"standalone": 0.848, "finetuned": 0.918},
    },
    "exp2": {
        "25": {"pretrain": 0.907, "target": 0.832},
        "50": {"pretrain": 0.929, "target": 0.843},
        "75": {"pretrain": 0.936, "target": 0.844},
        "100": {"pretrain": 0.947, "target": 0.840},
    },
    "exp3": {
        "100": {"pretrain": 0.930, "finetuned": 0.49, "standalone": 0.48},
        "500": {"pretrain": 0.947, "finetuned": 0.92, "standalone": 0.84},
    },
    "exp5": {"spectrum": {"pretrain": 0.668, "finetuned": 0.555}},
    "note": (
        "The original study's protocol had errors (REFERENCE.md): the standalone arm got unstandardised, "
        "lead-scrambled input and another test fold; RBBB was not merged into CRBBB; the test fold also "
        "served for validation and temperature fitting; PTB-XL used random folds and a different test set "
        "per share; centre crops only; a broken 100 Hz conversion; an FFT cropped from an unshifted "
        "spectrum; single runs. Its numbers are context, not directly comparable; they belong to its 18 "
        "classes (protocol seed18) and are shown only beside that protocol."
    ),
}


class _Ctx:
    def __init__(self, study_dir: Path, runs: Sequence[RunDef], spec: dict[str, Any]):
        self.study_dir = study_dir
        self.spec_source, self.spec_study = spec["source"], spec["study"]
        self.store = RunStore(study_dir)
        self.runs = list(runs)
        self.B = int(spec["study"]["bootstrap"])
        self._preds: dict[str, RunPredictions | None] = {}
        self._few_train: dict[Path, int | None] = {}  # per run folder, read once
        self.states = {r.key: self.store.state(r.key) for r in self.runs}
        #: test sets where the rare-class resampling rule was not applied, one entry per test set
        self._fallbacks: dict[str, dict[str, Any]] = {}
        #: each comparison's candidate runs, one per (training length, peak-rate factor)
        self._slots: dict[str, list[tuple[RunDef, dict[str, Any]]]] = {}
        #: every (run, use, its comparison), named once for all of find's calls
        self._uses = [(r, u, slot(r.key, u)) for r in self.runs for u in r.uses]
        for r, u, name in self._uses:  # a run twice in one comparison (two lengths rounding alike): one candidate
            pairs = self._slots.setdefault(name, [])
            if all(r.key != other.key for other, _ in pairs):
                pairs.append((r, u))
        self._choices: dict[str, Choice] = {}

    def done(self, key: str) -> bool:
        return self.states[key]["state"] == "done"

    def eval_dir(self, key: str) -> Path:
        """Where the study's evaluation of a run (metrics.json, calibrated predictions) is kept."""
        return self.store.run_dir(key) / EVAL_DIR

    def preds(self, key: str) -> RunPredictions | None:
        if key not in self._preds:
            try:
                self._preds[key] = load_run(self.store.run_dir(key)) if self.done(key) else None
            except EcgTransferError:
                self._preds[key] = None
        return self._preds[key]

    def few_training(self, run_dirs: Sequence[Path]) -> dict[str, Any]:
        """``labels_few_train``: the most labels any of the runs learnt from fewer than
        FEW_TRAINING_POSITIVES positive training records (a small target share leaves rare labels a
        handful of examples: their AUCs enter the macro mean unreliable). Nothing when no run
        recorded its counts (``label_counts.json``: runs trained before it was written)."""
        for d in run_dirs:
            if d not in self._few_train:
                train = (read_label_counts(d) or {}).get("train")
                self._few_train[d] = None if train is None else len(few_training_labels(train))
        few = [n for d in run_dirs if (n := self._few_train[d]) is not None]
        return {"labels_few_train": max(few)} if few else {}

    def finished(self, keys: Sequence[str]) -> list[tuple[str, RunPredictions]]:
        """The runs among ``keys`` whose predictions load, each with them (in ``keys``' order)."""
        return [(k, p) for k in keys if (p := self.preds(k)) is not None]

    def find(self, **match: Any) -> list[tuple[RunDef, dict[str, Any]]]:
        """(run, use) pairs whose use has every ``match`` item; of a comparison trained at several
        lengths, only the length chosen on validation (see :mod:`.lengths`), or while a length is
        unfinished, one unfinished run standing for it."""
        out: dict[str, tuple[RunDef, dict[str, Any]]] = {}
        for _, u, name in self._uses:
            if name not in out and all(u.get(k) == v for k, v in match.items()):
                out[name] = self._chosen_pair(name)
        return list(out.values())

    def choice(self, name: str) -> Choice:
        """The (length, rate) chosen for the comparison ``name`` (a :func:`.lengths.slot`)."""
        if name not in self._choices:
            pairs = self._slots[name]
            candidates = [(r.key, *use_factors(u)) for r, u in pairs]
            self._choices[name] = choose(candidates, self.done, self.val_auc)
        return self._choices[name]

    def _chosen_pair(self, name: str) -> tuple[RunDef, dict[str, Any]]:
        pairs = self._slots[name]
        if len(pairs) == 1:
            return pairs[0]
        key = self.choice(name).key
        return next(p for p in pairs if p[0].key == key)

    def val_auc(self, key: str) -> float | None:
        """A finished run's validation macro AUC (:func:`.lengths.val_macro_auc`)."""
        return val_macro_auc(self.preds(key))

    def length_choices(self) -> list[tuple[dict[str, Any], Choice]]:
        """(a use standing for it, its choice) of every comparison trained at several lengths or rates."""
        return [(pairs[0][1], self.choice(name)) for name, pairs in self._slots.items() if len(pairs) > 1]

    def rel(self, key: str) -> str:
        return str(Path("runs") / key)

    def name(self, key: str) -> str:
        """A run's readable name (its first use in the plan)."""
        run = next((r for r in self.runs if r.key == key), None)
        return run.uses[0]["name"] if run is not None and run.uses else key

    def note_fallback(self, test_id: str, where: str, n_test: int | None, rule: dict[str, Any]) -> None:
        """Record that a test set's intervals use plain resampling (once per test set; ``rule``: the
        ``settings.resampling`` of a result)."""
        entry = self._fallbacks.setdefault(
            test_id,
            {
                "where": where,
                "n_test": n_test,
                "reason": rule.get("reason"),
                "variation_kept": rule.get("variation_kept"),
                "note": rule.get("note"),
                "values": 0,
            },
        )
        entry["values"] += 1

    @property
    def fallbacks(self) -> list[dict[str, Any]]:
        return list(self._fallbacks.values())

    def resamples(self, run: RunPredictions, y: np.ndarray, seed: int, where: str) -> Resamples:
        """The study's resamples of one test set (``run``'s; rare-class rule), noting where the rule
        was not applied."""
        res = draw_resamples(y, self.B, seed)
        if res.note:
            self.note_fallback(_test_digest(run), where, int(y.shape[0]), res.describe())
        return res


def _num(x: Any) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _interval(value: float | None, ci: Sequence[float | None] | None, **extra: Any) -> dict[str, Any]:
    """``{"value", "ci", **extra}``, plus ``point_outside_ci: True`` where the percentile interval
    excludes its own point estimate (tiny test sets: see :mod:`..evaluation.bootstrap`)."""
    lo, hi = ci if ci is not None else (None, None)
    out = {"value": _num(value), "ci": None if lo is None or hi is None else [float(lo), float(hi)], **extra}
    if outside_interval(out["value"], lo, hi):
        out["point_outside_ci"] = True
    return out


def _empty(**extra: Any) -> dict[str, Any]:
    return {"value": None, "ci": None, **extra}


def _test_digest(p: RunPredictions) -> str:
    return hashlib.sha256("\n".join(sorted(p.test.record_ids)).encode()).hexdigest()


def _scope(ys: Sequence[np.ndarray], metric: str = "macro_auc") -> dict[str, Any]:
    """What a macro value averaged: test records and labels scored (min / max over test sets)."""
    kind = "auprc" if metric == "macro_auprc" else "auc"
    scored = [M.labels_scored(y)[kind] for y in ys]
    out: dict[str, Any] = {
        "n_test": int(round(np.mean([y.shape[0] for y in ys]))),
        "n_test_min": int(min(y.shape[0] for y in ys)),
        "n_test_max": int(max(y.shape[0] for y in ys)),
        "labels_scored": int(min(scored)),
        "n_labels": int(ys[0].shape[1]),
    }
    if max(scored) != min(scored):
        out["labels_scored_max"] = int(max(scored))
    return out


def _groups(preds: Sequence[RunPredictions]) -> list[list[RunPredictions]]:
    """Runs grouped by their test records (same set: one group), in order of first appearance."""
    by: dict[str, list[RunPredictions]] = {}
    for p in preds:
        by.setdefault(_test_digest(p), []).append(p)
    return list(by.values())


def _group_seed(group: Sequence[RunPredictions], n_groups: int) -> int:
    """Resampling seed of a test set: 0 when there is one (as every single-set interval), else
    derived from its records, so that independent test sets get independent resamples."""
    return 0 if n_groups == 1 else int(_test_digest(group[0])[:8], 16)


def arm_interval(ctx: _Ctx, keys: Sequence[str], metric: str = "macro_auc") -> dict[str, Any]:
    """Mean of ``metric`` over the finished runs in ``keys`` with a bootstrap CI (see module docs)."""
    preds = [p for _, p in ctx.finished(keys)]
    out = {"n": len(preds), "n_planned": len(keys)}
    if not preds:
        return _empty(sd=None, values=[], **out)
    groups = _groups(preds)
    if len(groups) == 1:
        y, probs, _ = align_runs(preds)
        ctx.resamples(preds[0], y, 0, ctx.name(keys[0]))
        s = seed_summary(y, probs, n_resamples=ctx.B, include=(metric,))["metrics"][metric]
        scope = {**_scope([y], metric), **ctx.few_training([p.run_dir for p in preds])}
        return _interval(s["mean"], s["pooled_ci"], sd=s["sd"], values=s["values"], **scope, **out)
    points, samples, ys = [], [], []
    for g in groups:  # independent resamples of each repeat's own test records
        y, pr, _ = align_runs(g)
        counts = ctx.resamples(g[0], y, _group_seed(g, len(groups)), ctx.name(g[0].run_dir.name)).counts
        points += [metric_values(y, p, None, include=(metric,)).headline[metric][0] for p in pr]
        samples += [metric_values(y, p, counts, include=(metric,)).headline[metric] for p in pr]
        ys.append(y)
    points_arr = np.array(points, dtype=np.float64)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample where every repeat is undefined: NaN, dropped
        mean_samples = np.nanmean(np.vstack(samples), axis=0)
    lo, hi, _ = percentile_ci(mean_samples)
    ok = points_arr[~np.isnan(points_arr)]
    return _interval(
        float(ok.mean()) if ok.size else None,
        [lo, hi],
        sd=_num(ok.std(ddof=1)) if ok.size > 1 else None,
        values=[_num(v) for v in points_arr],
        test_sets=len(groups),  # the CI is the mean's over independent test sets: narrower than one run's spread
        **_scope(ys, metric),
        **ctx.few_training([p.run_dir for p in preds]),
        **out,
    )


def paired_interval(
    ctx: _Ctx, keys_a: Sequence[str], keys_b: Sequence[str], metric: str = "macro_auc"
) -> dict[str, Any]:
    """A - B of ``metric`` over the finished runs, paired on each test set (both arms on the same
    resamples); several test sets (repeats): the mean of their differences, each resampled
    independently. Test sets with only one arm finished are left out (``n_pairs`` says how many
    entered). The p-value inverts the percentile interval (see the bootstrap module)."""
    a = [p for _, p in ctx.finished(keys_a)]
    b = [p for _, p in ctx.finished(keys_b)]
    in_a = {id(p) for p in a}
    groups = [g for g in _groups([*a, *b]) if any(id(p) in in_a for p in g) and not all(id(p) in in_a for p in g)]
    if not groups:
        return _empty(p=None, n_pairs=0)
    points, samples, ys = [], [], []
    for g in groups:
        y, probs, _ = align_runs(g)
        arm_a = [pr for p, pr in zip(g, probs) if id(p) in in_a]
        arm_b = [pr for p, pr in zip(g, probs) if id(p) not in in_a]
        counts = ctx.resamples(g[0], y, _group_seed(g, len(groups)), ctx.name(g[0].run_dir.name)).counts
        pa, pb, d = difference_samples(y, arm_a, arm_b, counts, include=(metric,))
        points.append(pa[metric] - pb[metric])
        samples.append(d[metric])
        ys.append(y)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_samples = np.nanmean(np.vstack(samples), axis=0)
        point = float(np.nanmean(points))
    e = difference_entry(point, mean_samples)
    scope = {**_scope(ys, metric), **ctx.few_training([p.run_dir for g in groups for p in g])}
    return _interval(e["value"], e["ci"], p=e["p_value"], ties_at_zero=e["ties_at_zero"], n_pairs=len(groups), **scope)


def _metrics_file(ctx: _Ctx, key: str) -> dict[str, Any] | None:
    path = ctx.eval_dir(key) / "metrics.json"
    if not ctx.done(key) or not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _run_metric(ctx: _Ctx, key: str) -> dict[str, Any]:
    """A single run's test macro AUC with its CI and scope (from its evaluation/metrics.json when present)."""
    if not ctx.done(key):
        return _empty()
    m = _metrics_file(ctx, key)
    if m is None:
        return arm_interval(ctx, [key])
    auc = m["headline"]["macro_auc"]
    used = auc.get("classes_used") or {}
    labels = m.get("labels") or []
    rule = (m.get("settings") or {}).get("resampling") or {}
    if rule.get("note"):
        ctx.note_fallback(f"run:{key}", ctx.name(key), m.get("n_records"), rule)
    return _interval(
        auc["value"],
        auc["ci"],
        n_test=m.get("n_records"),
        n_test_min=m.get("n_records"),
        labels_scored=used.get("test_set"),
        n_labels=len(labels) or None,
        resampling=rule.get("rule", "plain (evaluated before the rare-class rule)"),
        **ctx.few_training([ctx.store.run_dir(key)]),
    )


def _split_sizes(ctx: _Ctx, key: str) -> dict[str, int] | None:
    path = ctx.store.run_dir(key) / "splits.json"
    if not path.exists():
        return None
    splits = json.loads(path.read_text())
    return {k: len(v) for k, v in splits.items() if isinstance(v, list)}


def _n_train(ctx: _Ctx, key: str) -> int | None:
    sizes = _split_sizes(ctx, key)
    return None if sizes is None else sizes.get("train", 0)


def _keys(pairs: list[tuple[RunDef, dict[str, Any]]]) -> list[str]:
    seen: dict[str, None] = {}
    for r, _ in pairs:
        seen.setdefault(r.key, None)
    return list(seen)


def _arm_entry(y: np.ndarray, s: dict[str, Any], n: int, n_planned: int) -> dict[str, Any]:
    auc = s["macro_auc"]
    return _interval(
        auc["mean"], auc["pooled_ci"], sd=auc["sd"], values=auc["values"], n=n, n_planned=n_planned, **_scope([y])
    )


def _headline_pair(
    ctx: _Ctx,
    row: dict[str, Any],
    y: np.ndarray,
    ft: list[np.ndarray],
    sa: list[np.ndarray],
    labels: Sequence[str],
    mapping: Any,
    metrics_all: Sequence[str],
) -> None:
    """The paired differences of every headline metric and of each label's AUC, into ``row``."""
    d = paired_bootstrap(y, ft, sa, n_resamples=ctx.B, include=metrics_all, challenge=mapping, per_class=True)
    diff = d["difference"]
    dm = diff["macro_auc"]
    row["difference"] = _interval(
        dm["value"], dm["ci"], p=dm["p_value"], ties_at_zero=dm["ties_at_zero"], **_scope([y])
    )
    row["metric_differences"] = {
        k: _interval(v["value"], v["ci"], p=v["p_value"], ties_at_zero=v["ties_at_zero"])
        for k, v in diff.items()
        if k != "macro_auc"
    }
    per_class = []
    for k, label in enumerate(labels):
        entry = {"label": label, "n_pos": int(y[:, k].sum()), "status": M.class_status(y[:, [k]])[0] or "ok"}
        for arm, probs in (("finetuned", ft), ("standalone", sa)):
            aucs = [M.roc_auc(y[:, [k]], p[:, [k]])[0, 0] for p in probs]
            entry[arm] = _num(np.nanmean(aucs)) if np.isfinite(aucs).any() else None
        e = d["per_class"]["auc"][k]
        entry["difference"] = _interval(e["value"], e["ci"], p=e["p_value"])
        per_class.append(entry)
    row["per_class"] = per_class


def _headline(ctx: _Ctx, protocol: str, metrics_all: Sequence[str]) -> dict[str, Any]:
    arms = {
        arm: _keys(ctx.find(experiment="headline", protocol=protocol, arm=arm)) for arm in ("finetuned", "standalone")
    }
    row: dict[str, Any] = {"protocol": protocol, "runs": {a: [ctx.rel(k) for k in ks] for a, ks in arms.items()}}
    preds = {a: [p for _, p in ctx.finished(ks)] for a, ks in arms.items()}
    row["metrics"] = {}
    ref = next((p for ps in preds.values() for p in ps), None)
    mapping = None
    if ref is not None:
        sizes = _split_sizes(ctx, (arms["finetuned"] or arms["standalone"])[0]) or {}
        mapping = challenge_mapping(list(ref.test.label_names), ref.labels_spec)
        row.update(
            labels=list(ref.test.label_names),
            n_test=len(ref.test.record_ids),
            n_val=len(ref.val.record_ids) if ref.val is not None else None,
            n_train=sizes.get("train"),
            challenge_note=mapping.note,
            **{k: v for k, v in _scope([ref.test.y_true]).items() if k in ("labels_scored", "n_labels")},
        )
        recorded = read_left_out(ref.run_dir)  # records of the folds with none of the labels: not in any split
        if recorded is not None:
            row["left_out"] = {"dropped_unlabelled": recorded[0], "fold_records": recorded[1]}
        mapping = mapping if mapping.classes else None
    for arm, ps in preds.items():  # one bootstrap per arm for every headline metric
        if not ps:
            row[arm] = arm_interval(ctx, arms[arm])  # nothing finished: the empty entry
            continue
        y, probs, _ = align_runs(ps)
        ctx.resamples(ps[0], y, 0, f"headline {protocol}")
        s = seed_summary(y, probs, n_resamples=ctx.B, include=metrics_all, challenge=mapping)["metrics"]
        row[arm] = {**_arm_entry(y, s, len(ps), len(arms[arm])), **ctx.few_training([p.run_dir for p in ps])}
        row["metrics"][arm] = {
            k: _interval(v["mean"], v["pooled_ci"], sd=v["sd"], **(_scope([y], k) if k == "macro_auprc" else {}))
            for k, v in s.items()
            if k != "macro_auc"
        }
    if ref is not None and preds["finetuned"] and preds["standalone"]:
        y, probs, _ = align_runs(preds["finetuned"] + preds["standalone"])
        nf = len(preds["finetuned"])
        _headline_pair(ctx, row, y, probs[:nf], probs[nf:], ref.test.label_names, mapping, metrics_all)
        row["difference"].update(ctx.few_training([p.run_dir for ps in preds.values() for p in ps]))
    else:
        row["difference"] = _empty(p=None)
        row["per_class"] = []
    return row


def _pretrain(ctx: _Ctx) -> dict[str, Any] | None:
    pairs = ctx.find(experiment="pretrain")
    if not pairs:
        return None
    base = next(
        (
            r
            for r, u in pairs
            if u["name"].endswith("/time")
            and abs(u["share"] - 100 * ctx.spec_source["train_fraction"]) < 1e-9
            and u["fs"] == float(ctx.spec_study["fs"])
        ),
        pairs[0][0],
    )
    out = {
        "labels": ctx.spec_source["labels"],
        "fs": float(ctx.spec_study["fs"]),
        "run": ctx.rel(base.key),
        "test_macro_auc": _run_metric(ctx, base.key),
        "val_macro_auc": None,
        "per_class": [],
        "n_train": _n_train(ctx, base.key),
    }
    m = _metrics_file(ctx, base.key)
    if m is not None:
        out["per_class"] = [
            {"label": k, "n_pos": v["n_pos"], "auc": (v.get("auc") or {}).get("value")}
            for k, v in m["per_class"].items()
        ]
    return out


def _arms(ctx: _Ctx, **match: Any) -> tuple[list[str], list[str]]:
    return (_keys(ctx.find(arm="finetuned", **match)), _keys(ctx.find(arm="standalone", **match)))


def _exp1(ctx: _Ctx, spec_ex: dict[str, Any], protocol: str) -> dict[str, Any] | None:
    if not spec_ex["target_share"]["enabled"]:
        return None
    out: dict[str, Any] = {
        "protocol": protocol,
        "rest": [],
        "fixed_test": [],
        "difference": {"rest": [], "fixed_test": []},
    }
    for variant, exp in (("rest", "exp1-rest"), ("fixed_test", "exp1-fixed")):
        for share in spec_ex["target_share"]["shares"]:
            ft, sa = _arms(ctx, experiment=exp, share=share)
            for arm, keys in (("finetuned", ft), ("standalone", sa)):
                if keys:
                    out[variant].append({"share": share, "arm": arm, **arm_interval(ctx, keys)})
            if ft and sa:
                out["difference"][variant].append({"share": share, **paired_interval(ctx, ft, sa)})
    return out


def _exp2(ctx: _Ctx, spec_ex: dict[str, Any], protocol: str) -> list[dict[str, Any]] | None:
    e2 = spec_ex["source_share"]
    if not e2["enabled"]:
        return None
    rows = []
    standalone = _keys(ctx.find(experiment="exp1-rest", share=e2["target_share"], arm="standalone"))
    for share in e2["shares"]:
        pre = _keys(ctx.find(experiment="exp2", arm="pretrain", share=share))
        fine = _keys(ctx.find(experiment="exp2", arm="finetuned", share=share))
        rows.append(
            {
                "share": share,
                "target_share": e2["target_share"],
                "protocol": protocol,
                "pretrain_test_auc": _run_metric(ctx, pre[0]) if pre else _empty(),
                "n_pretrain_records": _n_train(ctx, pre[0]) if pre else None,
                "finetuned": arm_interval(ctx, fine),
                "standalone_reference": arm_interval(ctx, standalone) if standalone else None,
                "difference": paired_interval(ctx, fine, standalone) if standalone else _empty(p=None),
                "runs": {"pretrain": [ctx.rel(k) for k in pre], "finetuned": [ctx.rel(k) for k in fine]},
            }
        )
    return rows


def _exp3(ctx: _Ctx, spec_ex: dict[str, Any], protocol: str) -> list[dict[str, Any]] | None:
    if not spec_ex["sampling_rate"]["enabled"]:
        return None
    rows = []
    for fs in spec_ex["sampling_rate"]["rates"]:
        pre = _keys(ctx.find(experiment="exp3", arm="pretrain", fs=float(fs)))
        sizes = (_split_sizes(ctx, pre[0]) if pre else None) or {}
        row: dict[str, Any] = {
            "fs": float(fs),
            "source_fs": 500 if fs > 100 else 100,
            "protocol": protocol,
            "pretrain": _run_metric(ctx, pre[0]) if pre else _empty(),
            "n_pretrain_records": sizes.get("train"),
            "pretrain_split_sizes": sizes or None,
        }
        ft, sa = _arms(ctx, experiment="exp3", fs=float(fs))
        row["finetuned"], row["standalone"] = arm_interval(ctx, ft), arm_interval(ctx, sa)
        row["difference"] = paired_interval(ctx, ft, sa)
        rows.append(row)
    return rows


def source_coverage(exp3: Sequence[dict[str, Any]] | None) -> dict[str, Any] | None:
    """How many PTB-XL records the 500 Hz reads lack, from experiment 3's pre-training splits:
    validation and test folds are read whole at both rates, so their difference is exact."""
    by_fs: dict[Any, dict[str, int]] = {
        r["source_fs"]: r["pretrain_split_sizes"] for r in exp3 or [] if r.get("pretrain_split_sizes")
    }
    if 500 not in by_fs:
        return None
    out: dict[str, Any] = {"records_at_500hz": by_fs[500]}
    if 100 in by_fs:
        out["records_at_100hz"] = by_fs[100]
        out["missing_at_500hz"] = {k: by_fs[100][k] - by_fs[500].get(k, 0) for k in ("val", "test") if k in by_fs[100]}
    return out


def _exp5(ctx: _Ctx, spec_ex: dict[str, Any], protocol: str) -> list[dict[str, Any]] | None:
    if not spec_ex["frequency"]["enabled"]:
        return None
    rows = []
    for inp in ["time", *spec_ex["frequency"]["inputs"]]:
        pre = _keys(ctx.find(experiment="exp5", arm="pretrain", input=inp))
        row: dict[str, Any] = {
            "input": inp,
            "protocol": protocol,
            "pretrain": _run_metric(ctx, pre[0]) if pre else _empty(),
        }
        ft, sa = _arms(ctx, experiment="exp5", input=inp)
        row["finetuned"], row["standalone"] = arm_interval(ctx, ft), arm_interval(ctx, sa)
        row["difference"] = paired_interval(ctx, ft, sa)
        rows.append(row)
    return rows


def _exp6(ctx: _Ctx, spec_ex: dict[str, Any], protocol: str, model: str) -> list[dict[str, Any]] | None:
    """Experiment 6: per backbone, strategy and target share, the macro AUC of the arm (fine-tuned
    from the strategy's pre-training; from random weights for "none"), its pre-training's own
    test AUC (supervised strategies), the records it pre-trained on (a self-supervised one reads every
    training record, a supervised one ``[source] train_fraction`` of them), and the paired difference
    to "none" on the same records."""
    e6 = spec_ex["strategy"]
    if not e6["enabled"]:
        return None
    rows = []
    for backbone in e6["models"] or [model]:
        for strategy in e6["strategies"]:
            pre = _keys(ctx.find(experiment="exp6", arm="pretrain", strategy=strategy, model=backbone))
            # the strategy's pre-training, the same for every share: scored and counted once
            pre_metric = _run_metric(ctx, pre[0]) if pre and strategy.startswith("supervised:") else _empty()
            pre_records = _n_train(ctx, pre[0]) if pre else None
            for share in e6["shares"] or spec_ex["target_share"]["shares"]:
                keys = _keys(ctx.find(experiment="exp6", strategy=strategy, model=backbone, share=share))
                none = _keys(ctx.find(experiment="exp6", strategy="none", model=backbone, share=share))
                rows.append(
                    {
                        "model": backbone,
                        "strategy": strategy,
                        "share": share,
                        "protocol": protocol,
                        "arm": "standalone" if strategy == "none" else "finetuned",
                        **arm_interval(ctx, keys),
                        "pretrain": pre_metric,
                        "n_pretrain_records": pre_records,
                        "difference_to_none": (
                            paired_interval(ctx, keys, none) if strategy != "none" and none else _empty(p=None)
                        ),
                        "runs": {"pretrain": [ctx.rel(k) for k in pre], "target": [ctx.rel(k) for k in keys]},
                    }
                )
    return rows


CAL_METRICS = ("ece", "ece_macro", "brier")


def _calibrated(ctx: _Ctx, key: str, method: str, test: Predictions) -> np.ndarray | None:
    """A run's calibrated test probabilities, on the rows and columns of its own test predictions."""
    path = ctx.eval_dir(key) / f"predictions_test_{method}.csv"
    if not path.exists():
        return None
    try:
        ids, labels, y, p = load_predictions(path)
        q = Predictions(ids, labels, y, p).reorder(test.record_ids, test.label_names)
    except (ValueError, KeyError):
        return None
    return q.probs


def _exp4_methods(ctx: _Ctx, keys: list[str], methods: Sequence[str]) -> dict[str, Any]:
    """ECE / Brier of each calibration state, pooled over the arm's seeds exactly as the headline
    pools them (mean over seeds, the same resamples), and each calibrator's paired difference
    against the uncalibrated predictions. A state counts only when every seed has it."""
    runs = ctx.finished(keys)
    y, probs, ref = align_runs([p for _, p in runs])
    states: dict[str, list[np.ndarray]] = {"uncalibrated": probs}
    for m in methods:
        cal = [c for c in (_calibrated(ctx, k, m, ref) for k, _ in runs) if c is not None]
        if len(cal) == len(runs):
            states[m] = cal
    out: dict[str, Any] = {}
    for m, ps in states.items():
        s = seed_summary(y, ps, n_resamples=ctx.B, include=CAL_METRICS)["metrics"]
        out[m] = {k: _interval(v["mean"], v["pooled_ci"], sd=v["sd"]) for k, v in s.items()}
        auc_change = [np.abs(M.roc_auc(y, p)[0] - M.roc_auc(y, u)[0]) for p, u in zip(ps, probs)]
        out[m]["max_auc_change"] = float(max((np.nanmax(c) for c in auc_change if np.isfinite(c).any()), default=0.0))
        if m != "uncalibrated":
            d = paired_bootstrap(y, ps, probs, n_resamples=ctx.B, include=CAL_METRICS)["difference"]
            out[m]["vs_uncalibrated"] = {k: _interval(v["value"], v["ci"], p=v["p_value"]) for k, v in d.items()}
    return out


def _exp4(ctx: _Ctx, spec: dict[str, Any]) -> list[dict[str, Any]] | None:
    cal = spec["experiments"]["calibration"]
    if not cal["enabled"]:
        return None
    rows = []
    for protocol in spec["study"]["protocols"]:
        for arm in ("finetuned", "standalone"):
            keys = _keys(ctx.find(experiment="headline", protocol=protocol, arm=arm))
            row: dict[str, Any] = {
                "protocol": protocol,
                "arm": arm,
                "methods": {},
                "reliability": {},
                "fitted_on": "validation",
                "pooled": "mean over seeds, as the headline",
            }
            rows.append(row)
            finished = ctx.finished(keys)
            if not finished:
                continue
            done, first = [k for k, _ in finished], finished[0][1]
            row.update(
                runs=[ctx.rel(k) for k in done],
                n_seeds=len(done),
                n_planned=len(keys),
                n_test=len(first.test.record_ids),
            )
            val = first.val
            row["n_val"] = len(val.record_ids) if val is not None else None
            row["methods"] = _exp4_methods(ctx, done, cal["methods"])
            rel = ctx.eval_dir(done[0]) / "reliability.json"
            if rel.exists():  # the diagrams are one run's (the first seed's), and say so
                table = json.loads(rel.read_text())
                row["reliability"] = {state: v.get("equal-width", {}) for state, v in table.items()}
                row["reliability_run"] = ctx.rel(done[0])
                row["reliability_seed"] = (first.config or {}).get("seed")
    return rows


LENGTH_RULE = (
    "every target run trained at each length (a multiple of its arm's epochs); each comparison takes, "
    "per arm, the length with the best validation macro AUC (the target's validation folds, never "
    "the test; a tie keeps the shorter). The intervals hold the test records' variation given the "
    "chosen lengths, not the choice's own"
)
LR_RULE = (
    "every target run also trained at each peak-rate factor (a multiple of its arm's own peak learning "
    "rates); the length and the rate are chosen together, per arm, by validation macro AUC (a tie keeps "
    "the shorter length, then the rate nearer the configured one)"
)
FIXED_LENGTH_NOTE = (
    "each arm trained one fixed length (study.lengths has one value), not chosen on validation: an "
    "arm from random weights is often still learning when a pre-trained one has converged, so a "
    "difference measured at one length can be pre-training's head start rather than a better end point"
)
#: Use fields a length choice records (what it compared), besides its arm.
_CHOICE_FIELDS = ("protocol", "share", "repeat", "seed", "fs", "input", "strategy", "model")


def _choice_entry(ctx: _Ctx, uses: Sequence[dict[str, Any]], c: Choice) -> dict[str, Any]:
    """One (length, rate) choice: the comparisons it serves (experiments sharing its runs), each
    candidate's validation AUC, what won and on how many validation records and labels."""
    first = uses[0]
    chosen = ctx.preds(c.chosen) if c.chosen else None
    val = chosen.val if chosen is not None else None
    # the uses are one comparison (same split, seed, arm): a field any of them names is theirs
    # (experiment 6's strategy and backbone, on the runs it shares with experiment 1)
    fields = {k: u[k] for u in reversed(uses) for k in _CHOICE_FIELDS if k in u}
    return {
        "name": first["name"],
        "experiments": sorted({str(u.get("experiment")) for u in uses}),
        "arm": first["arm"],
        **fields,
        "lengths": list(c.lengths),
        "lr_factors": list(c.lr_factors),
        "val_macro_auc": [_num(v) for v in c.scores],
        "chosen": c.chosen_length,
        "chosen_lr": c.chosen_lr,
        "at_cap": c.at_cap,
        "at_floor": c.at_floor,
        "lr_at_top": c.lr_at_top,
        "lr_at_bottom": c.lr_at_bottom,
        "n_val": None if val is None else int(val.y_true.shape[0]),
        "val_labels_scored": None if val is None else int(M.labels_scored(val.y_true)["auc"]),
        "runs": [ctx.rel(k) for k in c.keys],
    }


def _wins(won: Sequence[dict[str, Any]], field: str, factors: Sequence[float]) -> dict[str, int]:
    """How often each factor (``field``: "chosen" length, "chosen_lr") won among ``won``."""
    return {f"{f:g}": sum(1 for e in won if e.get(field, 1.0) == f) for f in factors}


def _arm_summary(entries: Sequence[dict[str, Any]], factors: Sequence[float], lrs: Sequence[float]) -> dict[str, Any]:
    """Per arm: how often each length and each rate won, how often the longest length did (and the
    shortest against every longer one), the highest and the lowest rate, how many choices are
    unfinished (a candidate waiting or failed), the fewest validation records a choice had."""
    won = [e for e in entries if e["chosen"] is not None]
    n_val = [e["n_val"] for e in won if e["n_val"] is not None]
    by_experiment: dict[str, list[int]] = {}  # experiment: [longest won, chosen]
    for e in won:
        for x in e["experiments"]:
            counts = by_experiment.setdefault(x, [0, 0])
            counts[0] += int(e["at_cap"])
            counts[1] += 1
    return {
        "chosen": _wins(won, "chosen", factors),
        "chosen_lr": _wins(won, "chosen_lr", lrs),
        "at_cap": sum(1 for e in won if e["at_cap"]),
        "at_cap_by_experiment": by_experiment,
        "at_floor": sum(1 for e in won if e.get("at_floor")),
        "lr_at_top": sum(1 for e in won if e.get("lr_at_top")),
        "lr_at_bottom": sum(1 for e in won if e.get("lr_at_bottom")),
        "unfinished": len(entries) - len(won),
        "comparisons": len(entries),
        "n_val_min": min(n_val) if n_val else None,
    }


def _length_choices(ctx: _Ctx, factors: Sequence[float], lrs: Sequence[float]) -> dict[str, Any]:
    """How each arm's training length and peak rate were chosen (see :mod:`.lengths`): per arm a
    summary, and every choice with its candidates' validation AUCs. Runs shared by several
    experiments (the headline's and experiment 3's base rate) are one choice, listing every
    experiment. ``fixed``: one length (the rates may still be chosen); ``lr_fixed``: one rate."""
    out: dict[str, Any] = {
        "factors": [float(f) for f in factors],
        "fixed": len(factors) < 2,
        "lr_factors": [float(f) for f in lrs],
        "lr_fixed": len(lrs) < 2,
    }
    if out["fixed"]:
        out["note"] = FIXED_LENGTH_NOTE
    if out["fixed"] and out["lr_fixed"]:
        return {**out, "arms": {}, "comparisons": []}
    by_runs: dict[tuple[str, ...], tuple[list[dict[str, Any]], Choice]] = {}
    for use, c in ctx.length_choices():
        by_runs.setdefault(c.keys, ([], c))[0].append(use)
    entries = [_choice_entry(ctx, uses, c) for uses, c in by_runs.values()]
    arms = {arm: _arm_summary([e for e in entries if e["arm"] == arm], factors, lrs) for arm in ARMS}
    rule = LENGTH_RULE if out["lr_fixed"] else f"{LENGTH_RULE}; {LR_RULE}"
    return {**out, "rule": rule, "arms": arms, "comparisons": entries}


def _status(ctx: _Ctx) -> dict[str, Any]:
    counts = {s: 0 for s in ("done", "failed", "running", "interrupted", "missing")}
    failed = []
    for r in ctx.runs:
        st = ctx.states[r.key]
        counts[st["state"]] += 1
        if st["state"] == "failed":
            failed.append({"key": r.key, "name": r.name, "error": str(st.get("error", ""))[-500:]})
    return {
        "total": len(ctx.runs),
        "done": counts["done"],
        "failed": counts["failed"],
        "running": counts["running"],
        "left": counts["missing"] + counts["interrupted"],
        "interrupted": counts["interrupted"],
        "failed_runs": failed,
    }


def _environment(threads: int) -> dict[str, Any]:
    """Versions and host of the process that wrote the results, and ``[study] threads`` (0: torch's
    own default; the report says so in words). Each run's own machine is in its ``environment.json``."""
    import importlib.metadata as md

    def ver(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "torch": ver("torch"),
        "numpy": ver("numpy"),
        "ecg_transfer": ver("ecg-transfer"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "threads": threads,
    }


def _study_section(
    study: dict[str, Any],
    spec: dict[str, Any],
    pre: dict[str, Any] | None,
    seconds: Sequence[float | None],
    exp3: Sequence[dict[str, Any]] | None,
) -> dict[str, Any]:
    return {
        "name": study["name"],
        "profile": study["profile"],
        "spec": study["spec"],
        "machinery_check": is_machinery_check(study["profile"], spec["study"]),
        "spec_digest": study["spec_digest"],
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": spec["study"]["model"],
        "seeds": spec["study"]["seeds"],
        "source": {
            "dataset": spec["source"]["dataset"],
            "labels": spec["source"]["labels"],
            "fs": float(spec["study"]["fs"]),
            "train_fraction": spec["source"]["train_fraction"],
            "epochs": spec["source"]["epochs"],
            "n_train": pre["n_train"] if pre else None,
            "coverage": source_coverage(exp3),
        },
        "target": {
            "dataset": spec["target"]["dataset"],
            "name": spec["target"]["name"],
            **{k: spec["target"][k] for k in ("n_folds", "train_folds", "val_folds", "test_folds")},
            "protocols": spec["study"]["protocols"],
            "finetune": spec["finetune"],
            "standalone_epochs": spec["standalone"]["epochs"],
        },
        "bootstrap": spec["study"]["bootstrap"],
        "wall_seconds": float(sum(s for s in seconds if s)) if seconds else None,
        "wall_seconds_note": "sum of the finished runs' training + evaluation times",
        "environment": _environment(int(spec["study"]["threads"])),
    }


def _statistics(ctx: _Ctx) -> dict[str, Any]:
    """How every interval and p-value of the file was made, and where the resampling rule failed."""
    return {
        "interval": f"95 % {INTERVAL_METHOD} bootstrap interval, {ctx.B} resamples of the test records "
        "(seeded: the same resamples for every arm and metric on one test set)",
        "level": 0.95,
        "n_resamples": ctx.B,
        "resampling": (
            "PTB-XL benchmark rule: a resample in which a label scored on the test set (with a "
            "positive and a negative record) has no positive or no negative record is drawn again, "
            "so every resample averages the same labels as the value it surrounds; at most "
            f"{MAX_DRAWS_PER_RESAMPLE} draws per resample, and only where its resamples keep "
            f"{100 * MIN_VARIATION_KEPT:.0f} % of the plain bootstrap's variation (on a small test set "
            "it would pin every resample to the test set itself); else plain resampling (listed in "
            "fallbacks)"
        ),
        "p_value": P_VALUE_METHOD,
        "small_test": SMALL_TEST,
        "fallbacks": ctx.fallbacks,
    }


def original_reference(target: dict[str, Any]) -> dict[str, Any] | None:
    """The original study's numbers when the study's target is G12EC (``dataset = "g12ec"``, or
    the target named G12EC / Georgia, the default name), else None: they are its numbers on its
    G12EC records, and beside a user's own set they would read as a benchmark that set never had."""
    name = "".join(ch for ch in str(target.get("name") or "").lower() if ch.isalnum())
    return REFERENCE if target.get("dataset") == "g12ec" or name in ("g12ec", "georgia") else None


def collect_results(study_dir: str | Path) -> dict[str, Any]:
    """Everything ``results.json`` holds, from ``study.json``, ``plan.json`` and the runs."""
    study_dir = Path(study_dir)
    for name in ("study.json", "plan.json"):
        if not (study_dir / name).exists():
            raise EcgTransferError(
                f"{study_dir / name} is missing: is {study_dir} a study directory (made by `ecg-transfer study run`)?"
            )
    study = json.loads((study_dir / "study.json").read_text())
    plan = json.loads((study_dir / "plan.json").read_text())
    runs = [
        RunDef(key=r["key"], kind=r["kind"], config=r["config"], depends=r["depends"], uses=r["uses"])
        for r in plan["runs"]
    ]
    spec = study["resolved"]
    ctx = _Ctx(study_dir, runs, spec)
    seconds = [ctx.states[r.key].get("seconds") for r in runs if ctx.states[r.key]["state"] == "done"]
    primary, ex = spec["study"]["protocols"][0], spec["experiments"]
    pre = _pretrain(ctx)
    sections: dict[str, Any] = {
        "headline": [_headline(ctx, p, HEADLINE) for p in spec["study"]["protocols"]],
        "pretrain": pre,
        "exp1": _exp1(ctx, ex, primary),
        "exp2": _exp2(ctx, ex, primary),
        "exp3": _exp3(ctx, ex, primary),
        "exp4": _exp4(ctx, spec),
        "exp5": _exp5(ctx, ex, primary),
        "exp6": _exp6(ctx, ex, primary, spec["study"]["model"]),
    }
    sections["gallery"] = _gallery(study_dir)
    sections["lengths"] = _length_choices(
        ctx, spec["study"].get("lengths", [1.0]), spec["study"].get("lr_factors", [1.0])
    )
    return {
        "format": FORMAT,
        "study": _study_section(study, spec, pre, seconds, sections["exp3"]),
        "status": _status(ctx),
        "statistics": _statistics(ctx),
        "reference": original_reference(spec["target"]),
        **sections,
    }


def _gallery(study_dir: Path) -> dict[str, Any] | None:
    """``explain/gallery.json`` (the explained test records, :mod:`.gallery`) when the study has one."""
    from .gallery import GALLERY_DIR, GALLERY_FILE

    try:
        return json.loads((study_dir / GALLERY_DIR / GALLERY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_results(study_dir: str | Path) -> Path:
    """Recompute and atomically write ``STUDY_DIR/results.json``."""
    study_dir = Path(study_dir)
    path = study_dir / RESULTS_FILE
    atomic_write_json(path, collect_results(study_dir))
    return path


__all__ = [
    "FORMAT",
    "REFERENCE",
    "arm_interval",
    "collect_results",
    "original_reference",
    "paired_interval",
    "source_coverage",
    "write_results",
]
