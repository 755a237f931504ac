"""A run's ``[task]`` table: which data, labels, leads and folds -- validated before anything is read.

The data layer (``datasets.task.load_task``) turns it into arrays; here only what can be checked
without reading a record: names, ranges, fold lists that do not overlap, a training fraction that
is a whole number of parts. Example::

    [task]
    dataset = "ptbxl"              # ptbxl | cinc (g12ec: an alias of cinc)
    root = "data/ptbxl"            # the dataset's own folder (the one holding ptbxl_database.csv)
    labels = "diagnostic"          # a PTB-XL task, "protocol:seed18" / "protocol:cinc2020", or "dx"
    min_likelihood = 50            # optional (PTB-XL): keep statements with likelihood >= 50
    min_count = 10                 # optional: drop classes with fewer positives
    source_fs = 100                # PTB-XL: read records100 (100) or records500 (500)
    train_folds = [1, 2, 3, 4, 5, 6, 7, 8]
    val_folds = [9]                # tune here
    test_folds = [10]              # report here, never tune
    train_fraction = 1.0           # optional: train on this share of the train_folds records
    fraction_parts = 20            # optional: train_fraction must be a multiple of 1/fraction_parts
    fraction_seed = 0              # optional: which subset (one seed: nested subsets)
    test_on_rest = false           # optional: test on the train_folds records not trained on
    leads = ["I", "II"]            # optional: a lead subset (default: the 12 standard leads)
    long_records = "whole"         # optional: "whole", or only the "first" / "centre" max_seconds
    max_seconds = 60               #   of each record (see datasets.task)

See ``datasets.task`` for what each split option means.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from .base import KeyedValueError, ListedTuple, Settings
from .names import DATASET_ALIASES, DX_LABEL_SET, PROTOCOLS, PTBXL_TASKS, STANDARD_LEADS

_FRACTION_TOL = 1e-9
_LEAD_ALIASES = {name.upper(): name for name in STANDARD_LEADS}


def label_set_error(labels: str, dataset: str) -> str | None:
    """Why ``labels`` is not a label set for ``dataset`` (None when it is)."""
    if labels.startswith("protocol:"):
        name = labels.split(":", 1)[1]
        return None if name in PROTOCOLS else f"unknown protocol {name!r}; allowed: {', '.join(PROTOCOLS)}"
    if labels in PTBXL_TASKS:
        if dataset != "ptbxl":
            return (
                f"{labels!r} is a PTB-XL task; for a {dataset} set use protocol:seed18, protocol:cinc2020 "
                f"or {DX_LABEL_SET}"
            )
        return None
    if labels == DX_LABEL_SET:
        return None if dataset == "cinc" else f"{DX_LABEL_SET!r} (every SNOMED code of the set) is for CinC-format sets"
    return (
        f"{labels!r} is neither a PTB-XL task ({', '.join(PTBXL_TASKS)}), a protocol "
        f"({', '.join('protocol:' + p for p in PROTOCOLS)}) nor {DX_LABEL_SET!r}"
    )


def _standard_leads(leads: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if leads is None:
        return None
    names = []
    for lead in leads:
        name = _LEAD_ALIASES.get(str(lead).strip().upper())
        if name is None:
            raise ValueError(f"{lead!r} is not a standard lead; allowed: {', '.join(STANDARD_LEADS)}")
        names.append(name)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"a non-empty list of distinct standard leads, got {list(leads)!r}")
    return tuple(n for n in STANDARD_LEADS if n in names)  # always in standard order


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


FoldList = Annotated[ListedTuple[Annotated[int, Field(ge=1)]], Field()]


class TaskSettings(Settings):
    """The ``[task]`` table of a run config (see the module docstring)."""

    SECTION = "task"
    dataset: Literal["ptbxl", "cinc", "g12ec"]
    """ptbxl, or cinc (g12ec: an alias) for any PhysioNet/CinC 2020/2021-format folder."""
    root: Annotated[str, AfterValidator(_non_empty)]
    """The dataset's own folder (the one holding ptbxl_database.csv, or the CinC records)."""
    labels: str
    """A PTB-XL task (all, diagnostic, subdiagnostic, superdiagnostic, form, rhythm), protocol:seed18 / protocol:cinc2020, or dx (every SNOMED code of a CinC set)."""
    source_fs: Literal[100, 500] | None = None
    """PTB-XL: read records100 (100) or records500 (500); default 100."""
    allow_missing: bool = False
    """PTB-XL: use the records present when some are missing at this rate (says how many)."""
    cache_dir: str | None = None
    """Where signal caches live (default $ECG_TRANSFER_CACHE or ~/.cache/ecg-transfer)."""
    seconds: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    """Seconds of every record kept in the cache (default: the longest record)."""
    min_count: Annotated[int, Field(ge=0)] = 0
    """Drop classes with fewer positive records than this."""
    min_likelihood: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    """PTB-XL: keep statements with at least this likelihood (default: every statement, as the benchmark)."""
    train_folds: FoldList = (1, 2, 3, 4, 5, 6, 7, 8)
    """Folds that train (PTB-XL strat_fold; CinC: seeded stratified folds)."""
    val_folds: FoldList = (9,)
    """Folds that validate (tune here)."""
    test_folds: FoldList = (10,)
    """Folds that test (report here, never tune)."""
    n_folds: Annotated[int, Field(ge=3)] = 10
    """CinC: number of seeded, label-stratified folds (identical signals kept together)."""
    fold_seed: Annotated[int, Field(ge=0)] = 0
    """CinC: seed of the folds."""
    train_fraction: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 1.0
    """Train on this share of the train_folds records (label-stratified, patients kept together)."""
    fraction_parts: Annotated[int, Field(ge=2)] = 20
    """train_fraction must be a multiple of 1/fraction_parts (subsets are unions of parts: nested)."""
    fraction_seed: Annotated[int, Field(ge=0)] = 0
    """Which stratified subset (one seed: nested subsets as the fraction grows)."""
    test_on_rest: bool = False
    """Test on the train_folds records not trained on (needs test_folds = [] and train_fraction < 1)."""
    leads: Annotated[ListedTuple[str] | None, AfterValidator(_standard_leads)] = None
    """A subset of the standard leads (e.g. [\"I\", \"II\"]) for a 1-, 2- or 6-lead model; default all twelve."""
    long_records: Literal["whole", "first", "centre"] = "whole"
    max_seconds: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None

    @property
    def adapter(self) -> str:
        """The adapter's name (``g12ec`` -> ``cinc``)."""
        return DATASET_ALIASES.get(self.dataset, self.dataset)

    @model_validator(mode="after")
    def _consistent(self) -> "TaskSettings":
        problem = label_set_error(self.labels, self.adapter)
        if problem:
            raise KeyedValueError("labels", problem)
        if self.source_fs is not None and self.adapter != "ptbxl":
            raise KeyedValueError("source_fs", "only PTB-XL has several record folders (records100/records500)")
        if self.min_likelihood is not None and self.adapter != "ptbxl":
            raise KeyedValueError("min_likelihood", "only PTB-XL statements carry a likelihood")
        folds = [set(self.train_folds), set(self.val_folds), set(self.test_folds)]
        if folds[0] & folds[1] or folds[0] & folds[2] or folds[1] & folds[2]:
            raise KeyedValueError(
                "train_folds",
                "train_folds / val_folds / test_folds must not overlap, got "
                f"{list(self.train_folds)} / {list(self.val_folds)} / {list(self.test_folds)}",
            )
        if self.adapter == "cinc":
            beyond = sorted(f for f in set().union(*folds) if f > self.n_folds)
            if beyond:
                raise KeyedValueError("train_folds", f"fold(s) {beyond} beyond n_folds = {self.n_folds}")
        self._check_fraction()
        if self.long_records == "whole" and self.max_seconds is not None:
            raise KeyedValueError(
                "max_seconds",
                'needs task.long_records = "first" or "centre" ("whole", the default, uses every record entirely)',
            )
        if self.long_records != "whole" and self.max_seconds is None:
            raise KeyedValueError(
                "long_records", f"{self.long_records!r} needs task.max_seconds (the seconds of each record to use)"
            )
        return self

    def _check_fraction(self) -> None:
        f, parts = self.train_fraction, self.fraction_parts
        if f < 1:
            k = f * parts
            if abs(k - round(k)) > _FRACTION_TOL or round(k) < 1:
                raise KeyedValueError("train_fraction", _fraction_hint(f, parts))
        if self.test_on_rest:
            if f >= 1:
                raise KeyedValueError(
                    "test_on_rest",
                    "true needs task.train_fraction < 1 (the rest of the "
                    f"train_folds records is the test set), got train_fraction = {f!r}",
                )
            if self.test_folds:
                raise KeyedValueError(
                    "test_on_rest",
                    "true needs task.test_folds = [] (the test set is the rest "
                    f"of the train_folds records), got test_folds = {list(self.test_folds)!r}",
                )


def _fraction_hint(f: float, parts: int) -> str:
    shown = [f"{i / parts:g}" for i in range(1, parts + 1)]
    if len(shown) > 8:
        shown = shown[:3] + ["..."] + shown[-2:]
    hint = "set task.fraction_parts so that train_fraction * fraction_parts is a whole number"
    exact = Fraction(f).limit_denominator(10_000)
    if exact.denominator >= 2 and abs(float(exact) - f) <= _FRACTION_TOL:
        hint = f"for {f:g} set task.fraction_parts = {exact.denominator} (or a multiple of it)"
    return (
        f"{f!r} is not a multiple of 1/{parts} (task.fraction_parts = {parts}); possible values: "
        f"{', '.join(shown)} (k/{parts}, k = 1..{parts}); {hint}"
    )


def empty_as_none(value: Any) -> Any:
    """Configs written before the task was validated stored ``task = {}`` for "no task"."""
    return None if value == {} else value


__all__ = ["TaskSettings", "empty_as_none", "label_set_error"]
