"""The study spec: one TOML file that defines a whole transfer study, validated before anything runs.

A study compares two arms on a small target set -- fine-tuned from a source pre-training, and
standalone from random weights -- with the corrected protocol of ``REFERENCE.md``: both arms get the
same preprocessing (global standardisation refitted on the target's training split), the same
split, windows and test records; validation is its own split (calibration is fitted there, never
on test); the source uses its standard folds (PTB-XL 1-8 / 9 / 10) with one fixed test fold for
every share; equivalent SNOMED classes are merged by the label protocol; several seeds with
bootstrap CIs and paired tests.

Layout (every key optional except the dataset roots; see ``studies/ptbxl_to_g12ec.toml``)::

    [study]        name, out, model, model_kwargs, fs, seeds, protocols, bootstrap, threads
    [source]       the pre-training data: dataset, root, labels, allow_missing, train_fraction,
                   epochs, validate_every, batch_size, run (extra RunConfig keys)
    [target]       the target data: dataset, root, n_folds, fold_seed, train/val/test_folds,
                   batch_size, validate_every, run
    [finetune]     the fine-tuned arm's RunConfig ``finetune`` table (policy, stages, ...)
    [standalone]   epochs (and run: extra RunConfig keys) of the arm trained from scratch
    [experiments.target_share]   1: G12EC training share, "test on the rest" and "fixed test fold"
    [experiments.source_share]   2: PTB-XL pre-training share, fine-tuned on a small target share
    [experiments.sampling_rate]  3: rates in Hz, both arms, pre-training at each rate
    [experiments.calibration]    4: calibrators fitted on validation, before/after on test
    [experiments.frequency]      5: frequency-domain inputs for pre-training and fine-tuning
    [profiles.NAME]              tables merged over the above with ``--profile NAME``

Shares are percentages. A wrong key or value raises :class:`ConfigError` naming the dotted key and
what is allowed, before any data is read.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError

PROTOCOLS = ("seed18", "cinc2020")
INPUTS = ("spectrum", "log-spectrum", "stft")
CALIBRATORS = ("temperature", "class-temperature", "platt", "isotonic")
SOURCE_DATASETS = ("ptbxl",)
TARGET_DATASETS = ("cinc", "g12ec")

# Every key a spec may hold, with its default. ``None`` defaults are required or resolved later.
DEFAULTS: dict[str, Any] = {
    "study": {
        "name": "study", "out": None, "model": "xresnet1d101", "model_kwargs": {}, "fs": 500.0,
        "seeds": [0, 1, 2], "protocols": ["seed18", "cinc2020"], "bootstrap": 1000, "threads": 0,
        "cache_dir": None, "device": "auto",
    },
    "source": {
        "dataset": "ptbxl", "root": None, "labels": "diagnostic", "allow_missing": False,
        "train_fraction": 1.0, "epochs": 50, "validate_every": 5, "batch_size": 128,
        "run": {},
    },
    "target": {
        "dataset": "cinc", "root": None, "name": "G12EC", "n_folds": 10, "fold_seed": 0,
        "train_folds": [1, 2, 3, 4, 5, 6, 7, 8], "val_folds": [9], "test_folds": [10],
        "batch_size": 128, "validate_every": 1, "run": {},
    },
    "finetune": {"policy": "gradual"},
    "standalone": {"epochs": 40, "run": {}},
    "experiments": {
        "target_share": {"enabled": True, "shares": [10, 20, 30, 50, 70, 80, 90], "repeats": 3,
                         "fixed_test": True},
        "source_share": {"enabled": True, "shares": [25, 50, 75, 100], "target_share": 10},
        "sampling_rate": {"enabled": True, "rates": [500, 250, 100, 50]},
        "calibration": {"enabled": True, "methods": list(CALIBRATORS)},
        "frequency": {"enabled": True, "inputs": list(INPUTS)},
    },
}
# Tables whose content is passed through to another validator (RunConfig), not checked here.
_OPAQUE = {("study", "model_kwargs"), ("source", "run"), ("target", "run"), ("standalone", "run"), ("finetune",)}


@dataclass(frozen=True)
class StudySpec:
    """A validated spec: ``data`` holds every key (defaults filled in, profile merged)."""

    path: Path
    profile: str | None
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.data["study"]["name"])

    @property
    def digest(self) -> str:
        """sha256 of the resolved spec: two specs that define the same study share it."""
        return hashlib.sha256(json.dumps(self.data, sort_keys=True).encode()).hexdigest()

    def out_dir(self, override: str | Path | None = None) -> Path:
        """Where the study is written: ``--out``, else ``study.out``, else ``studies/out/<name>[-<profile>]``."""
        if override is not None:
            return Path(override)
        out = self.data["study"]["out"]
        if out:
            return Path(out)
        return Path("studies") / "out" / (self.name + (f"-{self.profile}" if self.profile else ""))

    @property
    def primary_protocol(self) -> str:
        return self.data["study"]["protocols"][0]


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict) and k not in ("model_kwargs", "run"):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _check_keys(data: Mapping[str, Any], defaults: Mapping[str, Any], prefix: tuple[str, ...],
                path: tuple[str, ...] = ()) -> None:
    """Unknown keys fail. ``prefix`` is how the table is named to the user (``profiles.quick.study``),
    ``path`` where it sits in the spec (``study``): opaque tables are found by path."""
    for k, v in data.items():
        where = ".".join((*prefix, k))
        if k not in defaults:
            raise ConfigError(f"spec key {where!r}: unknown; allowed keys here: {', '.join(sorted(defaults))}")
        if (*path, k) in _OPAQUE:
            if not isinstance(v, Mapping):
                raise ConfigError(f"spec key {where!r}: must be a table")
            continue
        if isinstance(defaults[k], dict):
            if not isinstance(v, Mapping):
                raise ConfigError(f"spec key {where!r}: must be a table with keys {', '.join(sorted(defaults[k]))}")
            _check_keys(v, defaults[k], (*prefix, k), (*path, k))


def _need(cond: bool, key: str, what: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"spec key {key!r}: {what}, got {value!r}")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)


def _validate(d: dict[str, Any]) -> None:
    st, src, tgt, ex = d["study"], d["source"], d["target"], d["experiments"]
    _need(isinstance(st["name"], str) and st["name"].strip() != "", "study.name", "a non-empty string", st["name"])
    _need(st["out"] is None or isinstance(st["out"], str), "study.out", "a path (string)", st["out"])
    from ..models import MODEL_NAMES

    _need(st["model"] in MODEL_NAMES, "study.model", f"one of {', '.join(MODEL_NAMES)}", st["model"])
    _need(_is_num(st["fs"]) and st["fs"] > 0, "study.fs", "a positive sampling rate in Hz", st["fs"])
    _need(_int_list(st["seeds"]) and len(st["seeds"]) >= 1 and len(set(st["seeds"])) == len(st["seeds"])
          and min(st["seeds"]) >= 0, "study.seeds", "a non-empty list of distinct integers >= 0", st["seeds"])
    _need(isinstance(st["protocols"], list) and st["protocols"] and all(p in PROTOCOLS for p in st["protocols"])
          and len(set(st["protocols"])) == len(st["protocols"]),
          "study.protocols", f"a non-empty list of distinct protocols from {', '.join(PROTOCOLS)}", st["protocols"])
    _need(isinstance(st["bootstrap"], int) and st["bootstrap"] >= 50, "study.bootstrap",
          "an integer >= 50 (bootstrap resamples)", st["bootstrap"])
    _need(isinstance(st["threads"], int) and st["threads"] >= 0, "study.threads", "an integer >= 0 (0: torch's default)",
          st["threads"])
    _need(st["cache_dir"] is None or isinstance(st["cache_dir"], str), "study.cache_dir", "a path (string)",
          st["cache_dir"])
    _need(isinstance(st["device"], str), "study.device", "auto, cpu, cuda, cuda:N or mps", st["device"])

    _need(src["dataset"] in SOURCE_DATASETS, "source.dataset", f"one of {', '.join(SOURCE_DATASETS)}", src["dataset"])
    _need(tgt["dataset"] in TARGET_DATASETS, "target.dataset", f"one of {', '.join(TARGET_DATASETS)}", tgt["dataset"])
    for sec, name in ((src, "source"), (tgt, "target")):
        _need(isinstance(sec["root"], str) and sec["root"] != "", f"{name}.root", "the dataset's folder (required)",
              sec["root"])
        _need(isinstance(sec["batch_size"], int) and sec["batch_size"] >= 2, f"{name}.batch_size", "an integer >= 2",
              sec["batch_size"])
        _need(isinstance(sec["validate_every"], int) and sec["validate_every"] >= 1, f"{name}.validate_every",
              "an integer >= 1", sec["validate_every"])
    from ..labels import PTBXL_TASKS

    _need(src["labels"] in PTBXL_TASKS, "source.labels", f"a PTB-XL task ({', '.join(PTBXL_TASKS)})", src["labels"])
    _need(isinstance(src["allow_missing"], bool), "source.allow_missing", "true or false", src["allow_missing"])
    _need(_is_num(src["train_fraction"]) and 0 < src["train_fraction"] <= 1, "source.train_fraction",
          "a number in (0, 1]", src["train_fraction"])
    _need(isinstance(src["epochs"], int) and src["epochs"] >= 1, "source.epochs", "an integer >= 1", src["epochs"])
    _need(isinstance(tgt["n_folds"], int) and tgt["n_folds"] >= 3, "target.n_folds", "an integer >= 3", tgt["n_folds"])
    _need(isinstance(tgt["fold_seed"], int) and tgt["fold_seed"] >= 0, "target.fold_seed", "an integer >= 0",
          tgt["fold_seed"])
    folds = {}
    for key in ("train_folds", "val_folds", "test_folds"):
        v = tgt[key]
        _need(_int_list(v) and v and all(1 <= f <= tgt["n_folds"] for f in v), f"target.{key}",
              f"a non-empty list of fold numbers 1..{tgt['n_folds']}", v)
        folds[key] = set(v)
    _need(not (folds["train_folds"] & folds["val_folds"] or folds["train_folds"] & folds["test_folds"]
               or folds["val_folds"] & folds["test_folds"]), "target.*_folds", "disjoint fold lists",
          {k: sorted(v) for k, v in folds.items()})
    _need(isinstance(d["standalone"]["epochs"], int) and d["standalone"]["epochs"] >= 1, "standalone.epochs",
          "an integer >= 1", d["standalone"]["epochs"])
    _need(d["finetune"].get("policy", "gradual") not in ("none",), "finetune.policy",
          "a transfer policy (head-then-all, gradual, all, linear-probe); 'none' is the standalone arm", "none")

    for name, e in ex.items():
        _need(isinstance(e["enabled"], bool), f"experiments.{name}.enabled", "true or false", e["enabled"])
    ts = ex["target_share"]
    _need(isinstance(ts["shares"], list) and ts["shares"] and all(_is_num(s) and 0 < s < 100 for s in ts["shares"]),
          "experiments.target_share.shares", "a non-empty list of percentages in (0, 100)", ts["shares"])
    _need(isinstance(ts["repeats"], int) and ts["repeats"] >= 1, "experiments.target_share.repeats",
          "an integer >= 1", ts["repeats"])
    _need(isinstance(ts["fixed_test"], bool), "experiments.target_share.fixed_test", "true or false", ts["fixed_test"])
    ss = ex["source_share"]
    _need(isinstance(ss["shares"], list) and ss["shares"] and all(_is_num(s) and 0 < s <= 100 for s in ss["shares"]),
          "experiments.source_share.shares", "a non-empty list of percentages in (0, 100]", ss["shares"])
    _need(_is_num(ss["target_share"]) and 0 < ss["target_share"] < 100, "experiments.source_share.target_share",
          "a percentage in (0, 100)", ss["target_share"])
    sr = ex["sampling_rate"]
    _need(isinstance(sr["rates"], list) and sr["rates"] and all(_is_num(r) and r > 0 for r in sr["rates"]),
          "experiments.sampling_rate.rates", "a non-empty list of rates in Hz", sr["rates"])
    cal = ex["calibration"]
    _need(isinstance(cal["methods"], list) and all(m in CALIBRATORS for m in cal["methods"]),
          "experiments.calibration.methods", f"a list from {', '.join(CALIBRATORS)}", cal["methods"])
    fr = ex["frequency"]
    _need(isinstance(fr["inputs"], list) and fr["inputs"] and all(i in INPUTS for i in fr["inputs"]),
          "experiments.frequency.inputs", f"a non-empty list from {', '.join(INPUTS)}", fr["inputs"])


def spec_from_dict(raw: Mapping[str, Any], *, path: str | Path = "<spec>", profile: str | None = None) -> StudySpec:
    """Validate ``raw`` (a parsed TOML document) and merge ``profile`` over it."""
    raw = dict(raw)
    profiles = raw.pop("profiles", {}) or {}
    if not isinstance(profiles, Mapping):
        raise ConfigError("spec key 'profiles': must be a table of named profiles")
    _check_keys(raw, DEFAULTS, (), ())
    for pname, ptable in profiles.items():
        if not isinstance(ptable, Mapping):
            raise ConfigError(f"spec key 'profiles.{pname}': must be a table")
        _check_keys(ptable, DEFAULTS, ("profiles", pname), ())
    if profile is not None and profile not in profiles:
        known = ", ".join(sorted(profiles)) or "none defined"
        raise ConfigError(f"profile {profile!r} is not in {path} (profiles: {known})")
    data = _merge(DEFAULTS, raw)
    if profile is not None:
        data = _merge(data, profiles[profile])
    _validate(data)
    return StudySpec(path=Path(path), profile=profile, data=data)


def load_spec(path: str | Path, profile: str | None = None) -> StudySpec:
    """Read and validate a study spec (TOML). Relative dataset roots are taken from the current directory."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such study spec file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return spec_from_dict(raw, path=path, profile=profile)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


__all__ = ["CALIBRATORS", "DEFAULTS", "INPUTS", "PROTOCOLS", "StudySpec", "load_spec", "spec_from_dict"]
