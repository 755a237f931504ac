"""``STUDY_DIR/results.json``: every number of the report, recomputed from the runs' saved predictions.

Nothing here trains or predicts: it reads each finished run's ``predictions_test.csv`` (and its
``evaluation/`` files for calibration) and computes intervals, so the report can be rebuilt at any
time -- also while a study is still running, with what is done so far.

How intervals are made (95 %, percentile, ``study.bootstrap`` resamples of test records):

- several seeds of one arm on the same test records: the value is the mean over seeds, the CI the
  bootstrap interval of that mean (all seeds on the same resamples), ``sd`` the spread over seeds;
- repeats with *different* test records (experiment 1, "test on the rest"): the value is the mean
  over repeats and the CI comes from resampling each repeat's test records independently and
  averaging -- the uncertainty from the test records given those partitions;
- fine-tuned minus standalone: the paired bootstrap on the same test records (both arms scored on
  the very same resamples), with its two-sided p-value.
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
from ..evaluation.bootstrap import metric_values, paired_bootstrap, percentile_ci, resample_counts, seed_summary
from ..evaluation.runs import EVAL_DIR, RunPredictions, align_runs, load_run
from .plan import RunDef
from .store import RunStore

FORMAT = "ecg_transfer.study-results/1"

#: The original study's numbers (REFERENCE.md), drawn beside ours. Its protocol had the errors
#: listed there, so they are context, not a target.
REFERENCE: dict[str, Any] = {
    "headline": {"finetuned": 0.919, "standalone": 0.843, "pretrain": 0.947},
    "exp1": {"10": {"standalone": 0.655, "finetuned": 0.840}, "20": {"standalone": 0.736, "finetuned": 0.875},
             "30": {"standalone": 0.794, "finetuned": 0.890}, "50": {"standalone": 0.806, "finetuned": 0.902},
             "70": {"standalone": 0.831, "finetuned": 0.912}, "80": {"standalone": 0.838, "finetuned": 0.915},
             "90": {"standalone": 0.848, "finetuned": 0.918}},
    "exp2": {"25": {"pretrain": 0.907, "target": 0.832}, "50": {"pretrain": 0.929, "target": 0.843},
             "75": {"pretrain": 0.936, "target": 0.844}, "100": {"pretrain": 0.947, "target": 0.840}},
    "exp3": {"100": {"pretrain": 0.930, "finetuned": 0.49, "standalone": 0.48},
             "500": {"pretrain": 0.947, "finetuned": 0.92, "standalone": 0.84}},
    "exp5": {"spectrum": {"pretrain": 0.668, "finetuned": 0.555}},
    "note": ("The original study's protocol had errors (REFERENCE.md): the standalone arm got unstandardised, "
             "lead-scrambled input and another test fold; RBBB was not merged into CRBBB; the test fold also "
             "served for validation and temperature fitting; PTB-XL used random folds and a different test set "
             "per share; centre crops only; a broken 100 Hz conversion; an FFT cropped from an unshifted "
             "spectrum; single runs. Its numbers are context, not directly comparable."),
}


class _Ctx:
    def __init__(self, study_dir: Path, runs: Sequence[RunDef], spec: dict[str, Any]):
        self.study_dir = study_dir
        self.spec_source, self.spec_study = spec["source"], spec["study"]
        self.store = RunStore(study_dir)
        self.runs = list(runs)
        self.B = int(spec["study"]["bootstrap"])
        self._preds: dict[str, RunPredictions | None] = {}
        self.states = {r.key: self.store.state(r.key) for r in self.runs}

    def done(self, key: str) -> bool:
        return self.states[key]["state"] == "done"

    def preds(self, key: str) -> RunPredictions | None:
        if key not in self._preds:
            try:
                self._preds[key] = load_run(self.store.run_dir(key)) if self.done(key) else None
            except EcgTransferError:
                self._preds[key] = None
        return self._preds[key]

    def find(self, **match: Any) -> list[tuple[RunDef, dict[str, Any]]]:
        """(run, use) pairs whose use has every ``match`` item."""
        out = []
        for r in self.runs:
            for u in r.uses:
                if all(u.get(k) == v for k, v in match.items()):
                    out.append((r, u))
        return out

    def rel(self, key: str) -> str:
        return str(Path("runs") / key)


def _num(x: Any) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _interval(value: float | None, ci: Sequence[float | None] | None, **extra: Any) -> dict[str, Any]:
    return {"value": _num(value), "ci": None if ci is None or ci[0] is None else [float(ci[0]), float(ci[1])], **extra}


def _empty(**extra: Any) -> dict[str, Any]:
    return {"value": None, "ci": None, **extra}


def _test_digest(p: RunPredictions) -> str:
    return hashlib.sha256("\n".join(sorted(p.test.record_ids)).encode()).hexdigest()


def arm_interval(ctx: _Ctx, keys: Sequence[str], metric: str = "macro_auc") -> dict[str, Any]:
    """Mean of ``metric`` over the finished runs in ``keys`` with a bootstrap CI (see module docs)."""
    preds = [p for p in (ctx.preds(k) for k in keys) if p is not None]
    out = {"n": len(preds), "n_planned": len(keys)}
    if not preds:
        return _empty(sd=None, values=[], **out)
    digests = {_test_digest(p) for p in preds}
    if len(digests) == 1:
        y, probs, _ = align_runs(preds)
        s = seed_summary(y, probs, n_resamples=ctx.B, include=(metric,))["metrics"][metric]
        return _interval(s["mean"], s["pooled_ci"], sd=s["sd"], values=s["values"], n_test=int(y.shape[0]), **out)
    points, samples = [], []
    for p in preds:  # independent resamples of each repeat's own test records
        y, pr = p.test.y_true, p.test.probs
        seed = int(_test_digest(p)[:8], 16)
        counts = resample_counts(y.shape[0], ctx.B, seed)
        points.append(metric_values(y, pr, None, include=(metric,)).headline[metric][0])
        samples.append(metric_values(y, pr, counts, include=(metric,)).headline[metric])
    points_arr = np.array(points, dtype=np.float64)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample where every repeat is undefined: NaN, dropped
        mean_samples = np.nanmean(np.vstack(samples), axis=0)
    lo, hi, _ = percentile_ci(mean_samples)
    ok = points_arr[~np.isnan(points_arr)]
    return _interval(float(ok.mean()) if ok.size else None, [lo, hi],
                     sd=_num(ok.std(ddof=1)) if ok.size > 1 else None, values=[_num(v) for v in points_arr],
                     n_test=int(np.mean([len(p.test.record_ids) for p in preds])), **out)


def _run_metric(ctx: _Ctx, key: str) -> dict[str, Any]:
    """A single run's test macro AUC with its CI (from its evaluation/metrics.json when present)."""
    if not ctx.done(key):
        return _empty()
    path = ctx.store.run_dir(key) / EVAL_DIR / "metrics.json"
    if path.exists():
        m = json.loads(path.read_text())["headline"]["macro_auc"]
        return _interval(m["value"], m["ci"])
    return arm_interval(ctx, [key])


def _n_train(ctx: _Ctx, key: str) -> int | None:
    path = ctx.store.run_dir(key) / "splits.json"
    if not path.exists():
        return None
    return len(json.loads(path.read_text()).get("train", []))


def _keys(pairs: list[tuple[RunDef, dict[str, Any]]]) -> list[str]:
    seen: dict[str, None] = {}
    for r, _ in pairs:
        seen.setdefault(r.key, None)
    return list(seen)


def _headline(ctx: _Ctx, protocol: str, metrics_all: Sequence[str]) -> dict[str, Any]:
    arms = {arm: _keys(ctx.find(experiment="headline", protocol=protocol, arm=arm)) for arm in ("finetuned", "standalone")}
    row: dict[str, Any] = {"protocol": protocol, "runs": {a: [ctx.rel(k) for k in ks] for a, ks in arms.items()}}
    preds = {a: [p for p in (ctx.preds(k) for k in ks) if p is not None] for a, ks in arms.items()}
    row["metrics"] = {}
    ref = next((p for ps in preds.values() for p in ps), None)
    if ref is not None:
        row["labels"] = list(ref.test.label_names)
        row["n_test"] = len(ref.test.record_ids)
        row["n_val"] = len(ref.val.record_ids) if ref.val is not None else None
        row["n_train"] = _n_train(ctx, (arms["finetuned"] or arms["standalone"])[0])
    for arm, ps in preds.items():  # one bootstrap per arm for every headline metric
        if not ps:
            row[arm] = arm_interval(ctx, arms[arm])  # nothing finished: the empty entry
            continue
        y, probs, _ = align_runs(ps)
        s = seed_summary(y, probs, n_resamples=ctx.B, include=metrics_all)["metrics"]
        auc = s["macro_auc"]
        row[arm] = _interval(auc["mean"], auc["pooled_ci"], sd=auc["sd"], values=auc["values"],
                             n_test=int(y.shape[0]), n=len(ps), n_planned=len(arms[arm]))
        row["metrics"][arm] = {k: _interval(v["mean"], v["pooled_ci"], sd=v["sd"]) for k, v in s.items()
                               if k != "macro_auc"}
    if preds["finetuned"] and preds["standalone"]:
        y, probs, _ = align_runs(preds["finetuned"] + preds["standalone"])
        nf = len(preds["finetuned"])
        d = paired_bootstrap(y, probs[:nf], probs[nf:], n_resamples=ctx.B, include=("macro_auc",))
        dm = d["difference"]["macro_auc"]
        row["difference"] = _interval(dm["value"], dm["ci"], p=dm["p_value"])
        per_class = []
        for k, label in enumerate(ref.test.label_names):
            entry = {"label": label, "n_pos": int(y[:, k].sum()), "status": M.class_status(y[:, [k]])[0] or "ok"}
            for arm, lo, hi in (("finetuned", 0, nf), ("standalone", nf, len(probs))):
                aucs = [M.roc_auc(y[:, [k]], p[:, [k]])[0, 0] for p in probs[lo:hi]]
                entry[arm] = _num(np.nanmean(aucs)) if np.isfinite(aucs).any() else None
            per_class.append(entry)
        row["per_class"] = per_class
    else:
        row["difference"] = _empty(p=None)
        row["per_class"] = []
    return row


def _pretrain(ctx: _Ctx) -> dict[str, Any] | None:
    pairs = ctx.find(experiment="pretrain")
    if not pairs:
        return None
    base = next((r for r, u in pairs if u["name"].endswith("/time")
                 and abs(u["share"] - 100 * ctx.spec_source["train_fraction"]) < 1e-9
                 and u["fs"] == float(ctx.spec_study["fs"])), pairs[0][0])
    out = {"labels": ctx.spec_source["labels"], "fs": float(ctx.spec_study["fs"]), "run": ctx.rel(base.key),
           "test_macro_auc": _run_metric(ctx, base.key), "val_macro_auc": None, "per_class": [],
           "n_train": _n_train(ctx, base.key)}
    path = ctx.store.run_dir(base.key) / EVAL_DIR / "metrics.json"
    if ctx.done(base.key) and path.exists():
        m = json.loads(path.read_text())
        out["per_class"] = [{"label": k, "n_pos": v["n_pos"], "auc": (v.get("auc") or {}).get("value")}
                            for k, v in m["per_class"].items()]
    return out


def _exp1(ctx: _Ctx, spec_ex: dict[str, Any], protocol: str) -> dict[str, Any] | None:
    if not spec_ex["target_share"]["enabled"]:
        return None
    out: dict[str, Any] = {"protocol": protocol, "rest": [], "fixed_test": []}
    for variant, exp in (("rest", "exp1-rest"), ("fixed_test", "exp1-fixed")):
        for share in spec_ex["target_share"]["shares"]:
            for arm in ("finetuned", "standalone"):
                keys = _keys(ctx.find(experiment=exp, share=share, arm=arm))
                if keys:
                    out[variant].append({"share": share, "arm": arm, **arm_interval(ctx, keys)})
    return out


def _exp2(ctx: _Ctx, spec_ex: dict[str, Any]) -> list[dict[str, Any]] | None:
    e2 = spec_ex["source_share"]
    if not e2["enabled"]:
        return None
    rows = []
    standalone = _keys(ctx.find(experiment="exp1-rest", share=e2["target_share"], arm="standalone"))
    for share in e2["shares"]:
        pre = _keys(ctx.find(experiment="exp2", arm="pretrain", share=share))
        fine = _keys(ctx.find(experiment="exp2", arm="finetuned", share=share))
        rows.append({"share": share, "target_share": e2["target_share"],
                     "pretrain_test_auc": _run_metric(ctx, pre[0]) if pre else _empty(),
                     "n_pretrain_records": _n_train(ctx, pre[0]) if pre else None,
                     "finetuned": arm_interval(ctx, fine),
                     "standalone_reference": arm_interval(ctx, standalone) if standalone else None,
                     "runs": {"pretrain": [ctx.rel(k) for k in pre], "finetuned": [ctx.rel(k) for k in fine]}})
    return rows


def _exp3(ctx: _Ctx, spec_ex: dict[str, Any]) -> list[dict[str, Any]] | None:
    if not spec_ex["sampling_rate"]["enabled"]:
        return None
    rows = []
    for fs in spec_ex["sampling_rate"]["rates"]:
        pre = _keys(ctx.find(experiment="exp3", arm="pretrain", fs=float(fs)))
        row: dict[str, Any] = {"fs": float(fs), "source_fs": 500 if fs > 100 else 100,
                               "pretrain": _run_metric(ctx, pre[0]) if pre else _empty(),
                               "n_pretrain_records": _n_train(ctx, pre[0]) if pre else None}
        for arm in ("finetuned", "standalone"):
            row[arm] = arm_interval(ctx, _keys(ctx.find(experiment="exp3", fs=float(fs), arm=arm)))
        rows.append(row)
    return rows


def _exp5(ctx: _Ctx, spec_ex: dict[str, Any]) -> list[dict[str, Any]] | None:
    if not spec_ex["frequency"]["enabled"]:
        return None
    rows = []
    for inp in ["time", *spec_ex["frequency"]["inputs"]]:
        pre = _keys(ctx.find(experiment="exp5", arm="pretrain", input=inp))
        row: dict[str, Any] = {"input": inp, "pretrain": _run_metric(ctx, pre[0]) if pre else _empty()}
        for arm in ("finetuned", "standalone"):
            row[arm] = arm_interval(ctx, _keys(ctx.find(experiment="exp5", input=inp, arm=arm)))
        rows.append(row)
    return rows


def _exp4(ctx: _Ctx, spec: dict[str, Any]) -> list[dict[str, Any]] | None:
    cal = spec["experiments"]["calibration"]
    if not cal["enabled"]:
        return None
    rows = []
    for protocol in spec["study"]["protocols"]:
        for arm in ("finetuned", "standalone"):
            keys = _keys(ctx.find(experiment="headline", protocol=protocol, arm=arm))
            row: dict[str, Any] = {"protocol": protocol, "arm": arm, "methods": {}, "reliability": {}}
            key = next((k for k in keys if ctx.done(k)), None)
            rows.append(row)
            if key is None:
                continue
            ev = ctx.store.run_dir(key) / EVAL_DIR
            if not (ev / "metrics.json").exists():
                continue
            m = json.loads((ev / "metrics.json").read_text())
            row["run"] = ctx.rel(key)
            row["seed"] = m.get("config_seed")
            row["fitted_on"] = "validation"
            calib = m.get("calibration") or {}
            row["n_val"] = calib.get("n_val_records")
            for method in ["uncalibrated", *cal["methods"]]:
                if method in calib:
                    e = calib[method]
                    row["methods"][method] = {k: _interval(e[k]["value"], e[k]["ci"]) for k in ("ece", "ece_macro", "brier")
                                              if k in e}
                    row["methods"][method]["max_auc_change"] = e.get("max_auc_change", 0.0)
            rel = ev / "reliability.json"
            if rel.exists():
                table = json.loads(rel.read_text())
                row["reliability"] = {state: v.get("equal-width", {}) for state, v in table.items()}
    return rows


def _status(ctx: _Ctx) -> dict[str, Any]:
    counts = {s: 0 for s in ("done", "failed", "running", "interrupted", "missing")}
    failed = []
    for r in ctx.runs:
        st = ctx.states[r.key]
        counts[st["state"]] += 1
        if st["state"] == "failed":
            failed.append({"key": r.key, "name": r.name, "error": str(st.get("error", ""))[-500:]})
    return {"total": len(ctx.runs), "done": counts["done"], "failed": counts["failed"], "running": counts["running"],
            "left": counts["missing"] + counts["interrupted"], "interrupted": counts["interrupted"],
            "failed_runs": failed}


def _environment(threads: int) -> dict[str, Any]:
    import importlib.metadata as md

    def ver(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    return {"python": platform.python_version(), "torch": ver("torch"), "numpy": ver("numpy"),
            "ecg_transfer": ver("ecg-transfer"), "host": socket.gethostname(), "platform": platform.platform(),
            "threads": threads}


def collect_results(study_dir: str | Path) -> dict[str, Any]:
    """Everything ``results.json`` holds, from ``study.json``, ``plan.json`` and the runs."""
    study_dir = Path(study_dir)
    for name in ("study.json", "plan.json"):
        if not (study_dir / name).exists():
            raise EcgTransferError(f"{study_dir / name} is missing: is {study_dir} a study directory "
                                   "(made by `ecg-transfer study run`)?")
    study = json.loads((study_dir / "study.json").read_text())
    plan = json.loads((study_dir / "plan.json").read_text())
    runs = [RunDef(key=r["key"], kind=r["kind"], config=r["config"], depends=r["depends"], uses=r["uses"])
            for r in plan["runs"]]
    spec = study["resolved"]
    ctx = _Ctx(study_dir, runs, spec)
    seconds = [ctx.states[r.key].get("seconds") for r in runs if ctx.states[r.key]["state"] == "done"]
    pre = _pretrain(ctx)
    from ..evaluation.bootstrap import HEADLINE

    results: dict[str, Any] = {
        "format": FORMAT,
        "study": {"name": study["name"], "profile": study["profile"], "spec": study["spec"],
                  "spec_digest": study["spec_digest"], "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "model": spec["study"]["model"], "seeds": spec["study"]["seeds"],
                  "source": {"dataset": spec["source"]["dataset"], "labels": spec["source"]["labels"],
                             "fs": float(spec["study"]["fs"]), "train_fraction": spec["source"]["train_fraction"],
                             "epochs": spec["source"]["epochs"], "n_train": pre["n_train"] if pre else None},
                  "target": {"dataset": spec["target"]["dataset"], "name": spec["target"]["name"],
                             "protocols": spec["study"]["protocols"], "finetune": spec["finetune"],
                             "standalone_epochs": spec["standalone"]["epochs"]},
                  "bootstrap": spec["study"]["bootstrap"],
                  "wall_seconds": float(sum(s for s in seconds if s)) if seconds else None,
                  "wall_seconds_note": "sum of the finished runs' training + evaluation times",
                  "environment": _environment(int(spec["study"]["threads"]))},
        "status": _status(ctx),
        "reference": REFERENCE,
        "headline": [_headline(ctx, p, HEADLINE) for p in spec["study"]["protocols"]],
        "pretrain": pre,
        "exp1": _exp1(ctx, spec["experiments"], spec["study"]["protocols"][0]),
        "exp2": _exp2(ctx, spec["experiments"]),
        "exp3": _exp3(ctx, spec["experiments"]),
        "exp4": _exp4(ctx, spec),
        "exp5": _exp5(ctx, spec["experiments"]),
    }
    return results


def write_results(study_dir: str | Path) -> Path:
    """Recompute and atomically write ``STUDY_DIR/results.json``."""
    study_dir = Path(study_dir)
    path = study_dir / "results.json"
    atomic_write_json(path, collect_results(study_dir))
    return path


__all__ = ["FORMAT", "REFERENCE", "arm_interval", "collect_results", "write_results"]
