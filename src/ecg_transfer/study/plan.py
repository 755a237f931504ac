"""From a study spec to the list of training runs it needs, each keyed by what defines it.

A run is defined by its resolved run config (model, rate, input, labels, split, seed, recipe) and
the key of the pre-training run it starts from, never by the experiment that asks for it: the
headline's fine-tuned runs at the base rate *are* experiment 3's base-rate runs and experiment 5's
time-domain runs, so they are trained once and shared. A run's key is a hash of that definition;
settings that do not change the result (device, threads, how often validation AUC is printed) are
left out of it, so a study can be resumed on another machine.

Splits (all expressed in the run's ``[task]`` table, so ``ecg-transfer train`` can redo any run):

- headline (and experiments 3, 4, 5): target folds ``train_folds`` / ``val_folds`` / ``test_folds``;
- experiment 1, "test on the rest": validation = ``val_folds``; the other folds are the pool; a
  stratified share of the pool trains, the rest of the pool is the test set; repeat ``r`` draws
  other folds (``fold_seed + r``) and another subset (``fraction_seed = r``);
- experiment 1, "fixed test fold": the headline split with a stratified share of ``train_folds``;
  subsets of one repeat are nested as the share grows;
- experiment 2: the source's ``train_folds`` subset (patients kept together), target as experiment
  1 "rest" at ``target_share``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Iterable

from ..errors import ConfigError
from ..settings.names import RESUMABLE_KEYS
from ..settings.base import non_default
from ..settings.run import RunConfig
from ..settings.study import PROTOCOL_RUN_KEYS
from .lengths import LENGTH_KEY, LR_KEY, scale_length, scale_lr, slot, use_factors
from .spec import StudySpec

# RunConfig keys that never change a run's result (device, threads, speed settings): left out of
# run keys so a study can be resumed on another machine or with other speed settings.
NON_DEFINING = RESUMABLE_KEYS
ARMS = ("finetuned", "standalone")


@dataclass
class RunDef:
    """One training run of the study: its config, the run it starts from, and every use of it."""

    key: str
    kind: str  # "pretrain" | "finetuned" | "standalone"
    config: dict[str, Any]  # a RunConfig dict; finetune.pretrained_run is filled in when it runs
    depends: str | None  # key of the pre-training run (fine-tuned runs)
    uses: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.uses[0]["name"] if self.uses else self.key

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "name": self.name,
            "depends": self.depends,
            "config": self.config,
            "uses": self.uses,
        }


def resolve_config(config: dict[str, Any], name: str = "") -> dict[str, Any]:
    """The complete, validated settings of a run (every default filled in, presets resolved), as
    plain values; a wrong key or value raises ConfigError naming the run and the key."""
    try:
        return RunConfig.from_dict(config).to_dict()
    except ConfigError as exc:
        raise ConfigError(f"run {name or '?'}: {exc}") from None


#: Bumped when a default of the settings changes what a run computes: keys are made of the values
#: a run sets away from the defaults (so adding a key with a neutral default keeps every study's
#: keys), and this number stands for the defaults themselves.
RECIPE_VERSION = 1
#: Defaults changed since studies were first keyed, at their value then: a key leaves such a value
#: out when it equals the *old* default and keeps it otherwise, so a run keeps the key it was
#: stored under whichever default it met (``[ssl] method``: "contrastive" until 2026-11-30, then
#: "cpc"; without the pin every finished SSL run, and each run fine-tuned from one, would be
#: trained again).
KEYED_DEFAULTS: dict[tuple[str, str], Any] = {("ssl", "method"): "contrastive"}


def run_key(config: dict[str, Any], depends: str | None) -> str:
    """16 hex digits of sha256 over the run's resolved settings -- the defining part (speed,
    device and thread settings left out), in canonical form (values at their default omitted,
    see :func:`ecg_transfer.settings.base.non_default`) -- the recipe version and the parent key."""
    resolved = {k: v for k, v in resolve_config(config).items() if k not in NON_DEFINING}
    resolved["finetune"] = {k: v for k, v in resolved["finetune"].items() if k != "pretrained_run"}
    defining = _pin_changed_defaults(resolved, non_default(RunConfig, resolved))
    blob = json.dumps({"config": defining, "depends": depends, "recipe": RECIPE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _pin_changed_defaults(resolved: dict[str, Any], defining: dict[str, Any]) -> dict[str, Any]:
    """``defining`` with each of :data:`KEYED_DEFAULTS` left out or kept as against its old default."""
    for (section, key), then in KEYED_DEFAULTS.items():
        table = resolved.get(section)
        if not isinstance(table, dict) or key not in table:
            continue
        kept = {k: v for k, v in (defining.get(section) or {}).items() if k != key}
        if table[key] != then:
            kept[key] = table[key]
        defining = {k: v for k, v in defining.items() if k != section} | ({section: kept} if kept else {})
    return defining


def fraction_parts(percentages: Iterable[float]) -> int:
    """The fewest equal parts in which every share is a whole number of parts (10 % and 30 %: 10)."""
    parts = 1
    for p in percentages:
        f = Fraction(p).limit_denominator(10_000) / 100
        if f < 1:
            parts = math.lcm(parts, f.denominator)
    return max(parts, 2)


class _Planner:
    def __init__(self, spec: StudySpec):
        self.spec = spec
        self.d = spec.data
        self.runs: dict[str, RunDef] = {}
        st, ex = self.d["study"], self.d["experiments"]
        src_shares = [100 * self.d["source"]["train_fraction"]]
        if ex["source_share"]["enabled"]:
            src_shares += list(ex["source_share"]["shares"])
        self.source_parts = fraction_parts(src_shares)
        tgt_shares = list(ex["target_share"]["shares"]) if ex["target_share"]["enabled"] else []
        if ex["source_share"]["enabled"]:
            tgt_shares.append(ex["source_share"]["target_share"])
        if ex["strategy"]["enabled"]:
            tgt_shares += list(ex["strategy"]["shares"] or ex["target_share"]["shares"])
        self.target_parts = fraction_parts(tgt_shares or [50])
        self.seeds = list(st["seeds"])

    # ----- configs -----------------------------------------------------------------------------
    def _common(self, fs: float, seed: int, inp: str, model: str | None = None) -> dict[str, Any]:
        st = self.d["study"]
        kwargs = dict(st["model_kwargs"]) if model in (None, st["model"]) else {}  # other backbones: their defaults
        cfg: dict[str, Any] = {
            "model": model or st["model"],
            "model_kwargs": kwargs,
            "fs": float(fs),
            "seed": int(seed),
            "num_threads": st["threads"],
            "device": st["device"],
        }
        if inp != "time":
            cfg["input"] = inp
        half = math.floor(2.5 * fs / 2)  # windows at half a crop: 1.25 s where that is whole samples
        if abs(half / fs - 1.25) > 1e-9:
            cfg["stride_seconds"] = half / fs  # 250 Hz: 312 samples, 50 Hz: 62
        return cfg

    def pretrain(
        self,
        *,
        share: float | None = None,
        fs: float | None = None,
        inp: str = "time",
        epochs: int | None = None,
        model: str | None = None,
        labels: str | None = None,
        ssl: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """A source run: supervised on ``labels`` (default source.labels), or self-supervised with
        the ``ssl`` table; ``extra``: run-config keys of this backbone (experiment 6)."""
        src, st = self.d["source"], self.d["study"]
        epochs = int(src["epochs"] if epochs is None else epochs)
        labels = labels or src["labels"]
        fs = float(st["fs"] if fs is None else fs)
        fraction = src["train_fraction"] if share is None else share / 100
        if ssl:  # self-supervised: every signal of the training folds, labelled or not (no label subset)
            fraction = 1.0
        source_fs = 500 if fs > 100 else 100
        task: dict[str, Any] = {
            "dataset": src["dataset"],
            "root": src["root"],
            "labels": labels,
            "source_fs": source_fs,
            "allow_missing": bool(src["allow_missing"] and source_fs == 500),
        }
        if st["cache_dir"]:
            task["cache_dir"] = st["cache_dir"]
        if fraction < 1:
            task.update(train_fraction=float(fraction), fraction_parts=self.source_parts, fraction_seed=0)
        cfg = {
            **self._common(fs, self.seeds[0], inp, model),
            "epochs": epochs,
            "batch_size": src["batch_size"],
            "validate_every": min(src["validate_every"], epochs),
            "task": task,
            **copy.deepcopy(src["run"]),
            **copy.deepcopy(extra or {}),
        }
        if ssl:  # no validation AUC to choose an epoch by: a self-supervised run keeps its last epoch,
            cfg["ssl"] = copy.deepcopy(ssl)  # whatever keep the supervised pre-training runs were given
            cfg.pop("keep", None)
        name = f"pretrain/{'ssl' if ssl else labels}/fs{_num(fs)}/share{_num(100 * fraction)}/{inp}"
        if epochs != src["epochs"]:
            name += f"/{epochs}ep"
        if model not in (None, st["model"]):
            name += f"/{model}"
        return self._add(
            "pretrain",
            cfg,
            None,
            {
                "name": name,
                "experiment": "pretrain",
                "arm": "pretrain",
                "fs": fs,
                "share": 100 * fraction,
                "input": inp,
            },
        )

    def target(
        self,
        arm: str,
        *,
        protocol: str,
        seed: int,
        fs: float | None = None,
        inp: str = "time",
        pretrain: str | None = None,
        split: dict[str, Any] | None = None,
        use: dict[str, Any],
        model: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """A target run of ``arm`` at each of ``study.lengths`` and ``study.lr_factors`` (see :mod:`.lengths`)."""
        tgt, st = self.d["target"], self.d["study"]
        fs = float(st["fs"] if fs is None else fs)
        task: dict[str, Any] = {
            "dataset": tgt["dataset"],
            "root": tgt["root"],
            "labels": f"protocol:{protocol}",
            "n_folds": tgt["n_folds"],
            "fold_seed": tgt["fold_seed"],
            "train_folds": list(tgt["train_folds"]),
            "val_folds": list(tgt["val_folds"]),
            "test_folds": list(tgt["test_folds"]),
        }
        if st["cache_dir"]:
            task["cache_dir"] = st["cache_dir"]
        task.update(split or {})
        cfg = {
            **self._common(fs, seed, inp, model),
            "batch_size": tgt["batch_size"],
            "validate_every": tgt["validate_every"],
            "short_records": "pad",
            "task": task,
            **copy.deepcopy(tgt["run"]),
        }
        if arm == "finetuned":  # the policy's stages decide its epochs
            cfg["finetune"] = {k: v for k, v in self.d["finetune"].items() if v is not None}
            # the backbone's evaluation protocol, as its from-scratch arm has it; not its recipe
            cfg.update(copy.deepcopy({k: v for k, v in (extra or {}).items() if k in PROTOCOL_RUN_KEYS}))
            depends = pretrain
        else:
            cfg.update(epochs=self.d["standalone"]["epochs"], finetune={"policy": "none"})
            cfg.update(copy.deepcopy(self.d["standalone"]["run"]))
            cfg.update(copy.deepcopy(extra or {}))
            depends = None
        use = {**use, "arm": arm, "protocol": protocol, "seed": seed, "fs": fs, "input": inp}
        for factor in st["lengths"]:  # each arm at every (length, rate); results take the best on validation
            for lr in st["lr_factors"]:
                named = {**use, LENGTH_KEY: factor, LR_KEY: lr}
                if "name" in named:
                    named["name"] = named["name"] + _factors_suffix(named)
                self._add(arm, scale_lr(scale_length(cfg, factor), lr), depends, named)

    def _add(self, kind: str, cfg: dict[str, Any], depends: str | None, use: dict[str, Any]) -> str:
        resolved = resolve_config(cfg, use.get("name") or f"{use.get('experiment')}/{use.get('arm', kind)}")
        key = run_key(resolved, depends)
        run = self.runs.get(key)
        if run is None:
            run = self.runs[key] = RunDef(key=key, kind=kind, config=resolved, depends=depends)
        if "name" not in use:
            parts = [use["experiment"], *(f"{k}{_num(use[k])}" for k in ("share", "repeat") if k in use)]
            if use.get("fs") != float(self.d["study"]["fs"]) or use["experiment"] == "exp3":
                parts.append(f"fs{_num(use['fs'])}")
            if use.get("input", "time") != "time":
                parts.append(use["input"])
            parts += [use["protocol"], use["arm"], f"s{use['seed']}"]
            use = {**use, "name": "/".join(parts) + _factors_suffix(use)}
        run.uses.append(use)
        return key

    # ----- experiments -------------------------------------------------------------------------
    def both_arms(self, *, pretrain: str, use: dict[str, Any], **kw: Any) -> None:
        for arm in ARMS:
            self.target(arm, pretrain=pretrain if arm == "finetuned" else None, use=dict(use), **kw)

    def rest_split(self, share: float, repeat: int) -> dict[str, Any]:
        tgt = self.d["target"]
        pool = sorted(set(tgt["train_folds"]) | set(tgt["test_folds"]))
        return {
            "train_folds": pool,
            "test_folds": [],
            "test_on_rest": True,
            "train_fraction": share / 100,
            "fraction_parts": self.target_parts,
            "fraction_seed": repeat,
            "fold_seed": tgt["fold_seed"] + repeat,
        }

    def build(self) -> list[RunDef]:
        st, ex = self.d["study"], self.d["experiments"]
        base = self.pretrain()
        for protocol in st["protocols"]:
            for seed in self.seeds:
                self.both_arms(pretrain=base, protocol=protocol, seed=seed, use={"experiment": "headline"})
        primary = self.spec.primary_protocol
        e1 = ex["target_share"]
        if e1["enabled"]:
            for share in e1["shares"]:
                for r in range(e1["repeats"]):
                    seed = self.seeds[r % len(self.seeds)]
                    self.both_arms(
                        pretrain=base,
                        protocol=primary,
                        seed=seed,
                        split=self.rest_split(share, r),
                        use={"experiment": "exp1-rest", "share": share, "repeat": r},
                    )
                    if e1["fixed_test"]:
                        split = {"train_fraction": share / 100, "fraction_parts": self.target_parts, "fraction_seed": r}
                        self.both_arms(
                            pretrain=base,
                            protocol=primary,
                            seed=seed,
                            split=split,
                            use={"experiment": "exp1-fixed", "share": share, "repeat": r},
                        )
        e2 = ex["source_share"]
        if e2["enabled"]:
            repeats = e1["repeats"] if e1["enabled"] else len(self.seeds)
            for share in e2["shares"]:
                pre = self.pretrain(share=share, epochs=e2["source_epochs"])
                self.runs[pre].uses.append(
                    {
                        "name": f"exp2/pretrain/share{_num(share)}",
                        "experiment": "exp2",
                        "arm": "pretrain",
                        "share": share,
                    }
                )
                for r in range(repeats):
                    seed = self.seeds[r % len(self.seeds)]
                    self.target(
                        "finetuned",
                        pretrain=pre,
                        protocol=primary,
                        seed=seed,
                        split=self.rest_split(e2["target_share"], r),
                        use={"experiment": "exp2", "share": share, "repeat": r, "target_share": e2["target_share"]},
                    )
        e3 = ex["sampling_rate"]
        if e3["enabled"]:
            for fs in e3["rates"]:
                pre = self.pretrain(fs=fs, epochs=e3["source_epochs"])
                self.runs[pre].uses.append(
                    {"name": f"exp3/pretrain/fs{_num(fs)}", "experiment": "exp3", "arm": "pretrain", "fs": float(fs)}
                )
                for seed in self.seeds:
                    self.both_arms(pretrain=pre, protocol=primary, seed=seed, fs=fs, use={"experiment": "exp3"})
        e5 = ex["frequency"]
        if e5["enabled"]:
            for inp in ["time", *e5["inputs"]]:
                pre = self.pretrain(inp=inp, epochs=e5["source_epochs"])
                self.runs[pre].uses.append(
                    {"name": f"exp5/pretrain/{inp}", "experiment": "exp5", "arm": "pretrain", "input": inp}
                )
                for seed in self.seeds:
                    self.both_arms(pretrain=pre, protocol=primary, seed=seed, inp=inp, use={"experiment": "exp5"})
        if ex["strategy"]["enabled"]:
            self.strategies(ex["strategy"], ex["target_share"]["shares"], primary)
        # pre-training runs first (everything else waits for them), then in the order planned
        runs = list(self.runs.values())
        return [r for r in runs if r.kind == "pretrain"] + [r for r in runs if r.kind != "pretrain"]

    def strategies(self, e6: dict[str, Any], default_shares: list[float], protocol: str) -> None:
        """Experiment 6: per backbone and strategy, a source run (none for "none"), then the target
        at each share ("test on the rest"), fine-tuned -- or from random weights for "none"."""
        st = self.d["study"]
        for model in e6["models"] or [st["model"]]:
            extra = e6["model_runs"].get(model, {})
            for strategy in e6["strategies"]:
                pre = None
                if strategy.startswith("supervised:"):
                    pre = self.pretrain(
                        model=model, labels=strategy.split(":", 1)[1], epochs=e6["source_epochs"], extra=extra
                    )
                elif strategy == "self-supervised":
                    pre = self.pretrain(model=model, ssl=e6["ssl"], epochs=e6["source_epochs"], extra=extra)
                if pre is not None:
                    self.runs[pre].uses.append(
                        {
                            "name": f"exp6/{model}/{strategy}/pretrain",
                            "experiment": "exp6",
                            "arm": "pretrain",
                            "strategy": strategy,
                            "model": model,
                        }
                    )
                for share in e6["shares"] or default_shares:
                    for r in range(e6["repeats"]):
                        seed = self.seeds[r % len(self.seeds)]
                        arm = "standalone" if pre is None else "finetuned"
                        name = f"exp6/{model}/{strategy}/share{_num(share)}/repeat{r}/{protocol}/{arm}/s{seed}"
                        self.target(
                            arm,
                            pretrain=pre,
                            protocol=protocol,
                            seed=seed,
                            split=self.rest_split(share, r),
                            model=model,
                            extra=extra,
                            use={
                                "name": name,
                                "experiment": "exp6",
                                "strategy": strategy,
                                "model": model,
                                "share": share,
                                "repeat": r,
                            },
                        )


def _num(x: float) -> str:
    return f"{x:g}"


def _factors_suffix(use: dict[str, Any]) -> str:
    """A target run's name ending: ``/x2`` for twice its arm's epochs, ``/lr3`` for three times its
    peak rates (nothing at factor 1: the names runs had before either was chosen)."""
    length, lr = use_factors(use)
    return (f"/x{_num(length)}" if length != 1 else "") + (f"/lr{_num(lr)}" if lr != 1 else "")


def plan_study(spec: StudySpec) -> list[RunDef]:
    """Every run the study needs, each once, pre-training runs first."""
    return _Planner(spec).build()


def check_data_roots(runs: list[RunDef]) -> list[tuple[str, str]]:
    """Every dataset root the runs read exists and is a dataset folder (see
    :func:`ecg_transfer.datasets.registry.check_dataset_root`); raises DatasetError naming the
    first that is not. Returns the (dataset, root) pairs checked."""
    from ..datasets.registry import check_dataset_root

    roots = sorted(
        {(str(r.config["task"]["dataset"]), str(r.config["task"]["root"])) for r in runs if r.config.get("task")}
    )
    for dataset, root in roots:
        check_dataset_root(dataset, root)
    return roots


def select_shard(runs: list[RunDef], shard: tuple[int, int]) -> list[RunDef]:
    """Runs of shard ``i`` of ``n`` (1-based): every n-th pre-training run, and every n-th
    comparison with all of its training lengths (:mod:`.lengths`), so that each shard gets a share
    of the pre-training runs and of every length -- the plan lists a comparison's lengths one after
    another, and every n-th *run* would give one shard all the 1x runs and another all the 4x ones
    -- and a comparison is chosen as soon as its shard is done. Dependencies are not part of the
    selection: a shard that needs a missing pre-training run trains it (or waits for the shard that
    holds it)."""
    i, n = shard
    comparisons: dict[str, int] = {}
    mine, n_pretrain = [], 0
    for r in runs:
        if r.kind == "pretrain":
            index, n_pretrain = n_pretrain, n_pretrain + 1
        else:
            first = slot(r.key, r.uses[0]) if r.uses else r.key
            index = comparisons.setdefault(first, len(comparisons))
        if index % n == i - 1:
            mine.append(r)
    return mine


__all__ = [
    "ARMS",
    "NON_DEFINING",
    "RunDef",
    "check_data_roots",
    "resolve_config",
    "fraction_parts",
    "plan_study",
    "run_key",
    "select_shard",
]
