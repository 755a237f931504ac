"""How long a study will take on this machine, before anything trains.

``study plan`` prints, for any spec, the number of runs, the work they hold (training samples =
epochs x training records; evaluation windows) and an expected wall time on *this* machine:

    seconds = sum over runs of  train_samples x t_train(model, window)  +  windows x t_predict(model, window)
              + a per-run overhead (evaluation with bootstrap CIs, files)   + one cache build per dataset/rate

``t_train`` and ``t_predict`` (seconds per training sample and per evaluation window) are measured
here, once per (model, window, input, threads, torch, CPU) with a few real training steps and a
prediction batch, and kept in the cache folder (``throughput.json``), so a second ``study plan`` is
instant. A kept measurement is checked against a probe of a fraction of a second (a fixed
convolution's training step, :func:`speed_probe`) taken with it and again at each plan: virtual
machines with the same CPU name ran the same training at speeds 2x apart (BENCHMARKS.md), so one
whose probe now runs more than :data:`SPEED_TOLERANCE` faster or slower is measured again. Record
counts come from the datasets' headers (PTB-XL: its database, with folds; CinC: one
header per record, folds assumed equal); a dataset that is not here (the full G12EC on a
developer's machine) is given with ``--assume-records target=10344``. What is approximated is said
in the printed estimate: every record is counted as labelled, CinC folds as equal, records as
their header's length. ``BENCHMARKS.md`` compares the estimate with measured wall times.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import ConfigError
from ..settings.run import RunConfig
from .plan import RunDef

#: Seconds per run beyond training, prediction and the bootstrap evaluation (which
#: :func:`evaluation_seconds` prices by test records): starting the run, reading the cache, the model
#: card, files. Measured on target runs with 74 G12EC records (BENCHMARKS.md): 1.4 s median in the
#: laptop profile, 1.7 s per run in the smoke profile (the 6 s used before also paid the bootstrap
#: a second time, and put the smoke profile at 36 min against 14 measured).
RUN_OVERHEAD_SECONDS = 2.0
#: Seconds per record to build a signal cache (read, resample, write), per adapter: PTB-XL at
#: 100 Hz 9.1 s cold for 21,837 records (0.0004 s), rounded up for resampling; CinC ``.mat``
#: records 27 ms each at CinC-2021 shape under load (BENCHMARKS.md, "Cache build at CinC-2021
#: shape"), rounded down for G12EC's 10 s records. Anything else: the CinC figure.
CACHE_SECONDS_PER_RECORD = {"ptbxl": 0.001, "cinc": 0.02}
#: Seconds per test record x scored label x bootstrap resample of a run's evaluation (all metrics
#: with CIs): 5.2 s for 1,000 records x 18 labels x 500 resamples, 64 s for 9,300 (BENCHMARKS.md,
#: "The laptop profile"); the full G12EC's test-on-the-rest sets make this a large part of a run.
EVAL_SECONDS_PER_RECORD_LABEL_RESAMPLE = 7e-7
#: Labels scored per PTB-XL task, for the evaluation's cost (the PTB-XL benchmark's counts: the
#: statements file is not read to plan); a protocol's come from its class list.
#: How far the CPUs other work keeps busy may exceed those a throughput measurement leaves free before the
#: machine counts as busy (see :func:`machine_busy`).
BUSY_LOAD_MARGIN = 0.5
#: How much faster or slower the speed probe may run now than when a kept measurement was taken
#: before that measurement is taken again: between the probe's own calls on one quiet machine here
#: up to 1.5x at one thread (1.15x at two), between sessions' machines of one CPU name 1.65x for the
#: measured training step and 2.1x for real epochs (BENCHMARKS.md, "The speed probe").
SPEED_TOLERANCE = 1.5
LABELS_PER_TASK = {"all": 71, "diagnostic": 44, "subdiagnostic": 23, "superdiagnostic": 5, "form": 19, "rhythm": 12}
THROUGHPUT_FILE = "throughput.json"


@dataclass(frozen=True)
class DataSize:
    """What the estimate needs of one dataset: records per fold (None: folds assumed equal) and
    the typical record length."""

    records: int
    fold_counts: dict[int, int] | None
    seconds: float
    assumed: bool = False

    def in_folds(self, folds: list[int], n_folds: int) -> float:
        if self.fold_counts is not None:
            return float(sum(self.fold_counts.get(int(f), 0) for f in folds))
        return self.records * len(folds) / n_folds


@dataclass
class RunEstimate:
    key: str
    name: str
    kind: str
    epochs: int
    train_records: float
    train_samples: float
    windows: float
    seconds: float


@dataclass
class StudyEstimate:
    runs: list[RunEstimate]
    cache_seconds: float
    throughput: dict[str, dict[str, float]]
    notes: list[str] = field(default_factory=list)
    #: the torch threads of each measured network (what a run here uses; OMP_NUM_THREADS or ``num_threads``)
    threads: list[int] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.runs) + self.cache_seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 1),
            "cache_seconds": round(self.cache_seconds, 1),
            "train_samples": round(sum(r.train_samples for r in self.runs)),
            "windows": round(sum(r.windows for r in self.runs)),
            "throughput": self.throughput,
            "notes": self.notes,
            "threads": sorted(set(self.threads)),
            "runs": [vars(r) for r in self.runs],
        }


def data_size(task: Mapping[str, Any], assumed: Mapping[str, int]) -> DataSize:
    """Records (per fold where the dataset has folds) of a run's ``[task]``, from headers only."""
    from ..datasets.registry import open_dataset

    dataset, root = str(task["dataset"]), str(task["root"])
    for name in (root, "source" if dataset == "ptbxl" else "target", dataset):
        if name in assumed:
            return DataSize(int(assumed[name]), None, 10.0, assumed=True)
    adapter = open_dataset(dataset, root, fs=task.get("source_fs"), allow_missing=bool(task.get("allow_missing")))
    index = adapter.index()
    if len(index) == 0:
        raise ConfigError(f"{dataset} at {root}: no records found")
    seconds = float((index["n_samples"] / index["fs"]).median())
    folds = None
    if "fold" in index.columns:
        folds = {int(k): int(v) for k, v in index["fold"].value_counts().items()}
    return DataSize(len(index), folds, seconds)


def _windows(seconds: float, cfg: RunConfig) -> int:
    n = int(round(seconds * cfg.fs))
    return 1 if n <= cfg.crop_len else (n - cfg.crop_len) // cfg.stride + 1


def _split_records(cfg: RunConfig, size: DataSize) -> tuple[float, float, float, float]:
    """(records of the training folds, training records, validation records, test records) of a run."""
    task = cfg.task
    assert task is not None
    pool = size.in_folds(list(task.train_folds), task.n_folds)
    train = pool * task.train_fraction
    test = pool - train if task.test_on_rest else size.in_folds(list(task.test_folds), task.n_folds)
    return pool, train, size.in_folds(list(task.val_folds), task.n_folds), test


def run_work(cfg: RunConfig, size: DataSize) -> tuple[float, float, float]:
    """(training records, training samples, evaluation windows) of one run."""
    pool, train, val, test = _split_records(cfg, size)
    epochs = cfg.epochs
    assert epochs is not None, "a validated RunConfig has its epochs resolved"
    validations = math.ceil(epochs / cfg.validate_every)
    if cfg.ssl is not None:  # every signal of the training folds, one crop each (the measured cost of
        return pool, pool * epochs, val * validations  # a crop is the objective's: views, patches)
    per_record = _windows(size.seconds, cfg)
    windows = per_record * (val * validations + test)
    return train, train * epochs, windows


def _labels_scored(task_labels: str) -> int:
    """Labels a task scores: a protocol's class list, the PTB-XL benchmark's counts, else 20."""
    from ..labels.protocols import get_protocol

    if task_labels.startswith("protocol:"):
        return len(get_protocol(task_labels.split(":", 1)[1]).classes)
    return LABELS_PER_TASK.get(task_labels, 20)


def evaluation_seconds(cfg: RunConfig, size: DataSize, n_resamples: int) -> float:
    """The bootstrap evaluation of a run's test predictions (none for a self-supervised run)."""
    if cfg.ssl is not None:
        return 0.0
    task = cfg.task
    assert task is not None, "every run of a study has a [task]"
    test = _split_records(cfg, size)[3]
    return test * _labels_scored(str(task.labels)) * n_resamples * EVAL_SECONDS_PER_RECORD_LABEL_RESAMPLE


@functools.lru_cache(maxsize=1)
def _cpu_name() -> str:
    """This machine's CPU model (read once: a study's plan asks for every run)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return cpu


def _threads(cfg: RunConfig) -> int:
    """The torch threads ``cfg``'s runs (and so its measurement) use here."""
    import torch

    return int(cfg.num_threads or torch.get_num_threads())


def usable_cpus() -> list[int] | None:
    """The CPUs this process may run on (its affinity: a SLURM job's allotment, ``taskset``), or
    None where the system does not say (then every CPU counts)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _cpu_count() -> int:
    cpus = usable_cpus()
    return len(cpus) if cpus else (os.cpu_count() or 1)


def _cpu_times(cpus: list[int] | None = None) -> tuple[float, float] | None:
    """(busy, total) jiffies from ``/proc/stat`` (Linux), summed over ``cpus`` (None: all CPUs),
    None elsewhere. Idle and iowait are not busy; guest time is already inside user time."""
    wanted = {"cpu"} if cpus is None else {f"cpu{c}" for c in cpus}  # "cpu": the machine's total line
    busy = total = 0.0
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            for name, *values in (line.split() for line in fh):
                if name in wanted:
                    f = [float(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
                    busy, total = busy + sum(f) - f[3] - f[4], total + sum(f)
    except (OSError, ValueError, IndexError):
        return None
    return (busy, total) if total > 0 else None


def busy_cpus(interval: float = 0.5) -> float | None:
    """How many of this process's usable CPUs (:func:`usable_cpus`) other work keeps busy now: on
    Linux the CPU time used over ``interval`` seconds (this process sleeps meanwhile, so it counts
    others only), elsewhere the 1-minute load average (which lags: a job that ended a minute ago
    still counts); None where neither exists."""
    cpus = usable_cpus()
    before = _cpu_times(cpus)
    if before is not None:
        time.sleep(interval)
        after = _cpu_times(cpus)
        if after is not None and after[1] > before[1]:
            return (after[0] - before[0]) / (after[1] - before[1]) * _cpu_count()
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def machine_busy(threads: int, load: float | None) -> bool:
    """Whether other work holds cores a measurement with ``threads`` threads needs: the CPUs it keeps
    busy (:func:`busy_cpus`) exceed those the measurement leaves free among this process's usable
    CPUs by more than ``BUSY_LOAD_MARGIN``. Such a measurement prices every run too high (a training
    beside it halves a 2-core machine's speed), so it is flagged, said beside the estimate, and taken
    again once the machine is quiet."""
    if load is None:
        return False
    return load > max(_cpu_count() - threads, 0) + BUSY_LOAD_MARGIN


def _signature(cfg: RunConfig) -> str:
    import torch

    cpu = _cpu_name()
    threads = _threads(cfg)
    return json.dumps(
        {
            "cpu": cpu,
            "torch": torch.__version__,
            "threads": threads,
            "model": cfg.model,
            "model_kwargs": cfg.model_kwargs,
            "crop_len": cfg.crop_len,
            "fs": cfg.fs,
            "input": cfg.input,
            "batch_size": cfg.batch_size,
            "memory_format": cfg.memory_format,
            **({"ssl": _objective(cfg)} if cfg.ssl is not None else {}),
        },
        sort_keys=True,
    )


def _objective(cfg: RunConfig) -> dict[str, Any]:
    """The ``[ssl]`` settings that change what a step costs (its data sources do not)."""
    assert cfg.ssl is not None
    return {k: v for k, v in cfg.ssl.to_dict().items() if k != "extra_tasks"}


def measure_throughput(cfg: RunConfig, n_leads: int = 12, n_classes: int = 20, steps: int = 3) -> dict[str, float]:
    """Seconds per training sample and per evaluation window of ``cfg``'s network here: a few
    real training steps (the engine's layout and optimizer) and one prediction batch. With
    ``[ssl]`` the step is the objective's (a sample is one crop, with its views or patches: CPC
    encodes each patch on its own, which costs more than the crop's classification) and the
    "prediction" is its validation loss."""
    import torch

    from .. import models
    from ..signal import transformed_shape
    from ..training.ssl.model import SslModel
    from ..training.speed import optimizer_kernel, prepare_for_training

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    channels, length = transformed_shape(cfg.input, cfg.fs, n_leads, cfg.crop_len)
    classifier = models.build(cfg.model, channels, n_classes, **cfg.model_kwargs)
    model: torch.nn.Module = classifier
    if cfg.ssl is not None:  # standardised signals: one unit is the amplitude scale of the augmentations
        model = SslModel(classifier, cfg.ssl, fs=cfg.fs, crop_len=cfg.crop_len, unit=1.0)
    net = prepare_for_training(model, cfg.memory_format, "none")
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, **optimizer_kernel(cfg.optimizer_impl, params))
    batch = max(8, min(cfg.batch_size, int(32_000 / max(length, 1))))  # keep one timing short at high rates
    x, y = torch.randn(batch, channels, length), (torch.rand(batch, n_classes) > 0.9).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        (net(x) if cfg.ssl is not None else loss_fn(net(x), y)).backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    train = (time.perf_counter() - t0) / steps / batch
    model.eval()
    with torch.no_grad():
        model(x)
        t0 = time.perf_counter()
        model(x)
        predict = (time.perf_counter() - t0) / batch
    return {"train_s_per_sample": train, "predict_s_per_window": predict}


def speed_probe(threads: int, repeats: int = 9) -> float:
    """Seconds of one training step of a fixed small convolution at ``threads`` torch threads (the
    median of ``repeats``, after one warm-up): a fraction of a second that says how fast this
    machine runs now, kept beside each measurement so a later plan can tell whether the machine
    still runs at the speed the measurement was taken at."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        gen = torch.Generator().manual_seed(0)
        conv = torch.nn.Conv1d(64, 64, 5, padding=2)
        x = torch.randn(32, 64, 1000, generator=gen)
        times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            conv.zero_grad(set_to_none=True)
            conv(x).square().mean().backward()
            times.append(time.perf_counter() - t0)
        return float(sorted(times[1:])[len(times[1:]) // 2])
    finally:
        torch.set_num_threads(before)


def speed_change(kept: Mapping[str, Any], probe_now: float) -> float | None:
    """How many times faster the machine runs now than when ``kept`` was measured (its probe over
    the probe now); None where the entry has no probe (kept before probes were taken)."""
    then = kept.get("probe_s")
    return None if not then or probe_now <= 0 else float(then) / probe_now


def _load_table(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def throughput(
    cfg: RunConfig,
    table_path: Path,
    *,
    measure: Callable[[RunConfig], dict[str, float]] | None = None,
    echo: Callable[[str], None] = lambda m: None,
    load: float | None = None,
    remeasure: bool = False,
    probe: Callable[[int], float] | None = None,
) -> dict[str, Any]:
    """The measured costs of ``cfg``'s network here, from the table or measured now (and kept).
    ``load`` is the CPUs other work kept busy as the plan started (None: unknown, never busy): a kept
    measurement taken on a busy machine is taken again once the machine is quiet; one whose speed
    probe (``probe(threads)``, :func:`speed_probe`) differs from the probe now by more than
    :data:`SPEED_TOLERANCE`, or that has none, is taken again unless the machine is busy (a busy
    machine's probe says nothing of its quiet speed); ``remeasure`` takes it again regardless."""
    from ..atomic import atomic_write_json

    sig, threads = _signature(cfg), _threads(cfg)
    probe = probe or speed_probe
    busy = machine_busy(threads, load)
    table = _load_table(table_path)
    kept = table.get(sig)
    why = _stale(kept, busy, load, lambda: probe(threads)) if kept is not None and not remeasure else None
    if kept is None or remeasure or why:
        why = f" again ({why})" if why else " again" if kept is not None else ""
        echo(
            f"measuring {cfg.model} at {cfg.fs:g} Hz ({cfg.crop_len}-sample windows, input {cfg.input}"
            f"{', ssl ' + cfg.ssl.method if cfg.ssl is not None else ''}) on this machine{why} ..."
        )
        cost = (measure or measure_throughput)(cfg)
        table[sig] = {**cost, "probe_s": probe(threads), "measured": time.strftime("%Y-%m-%d %H:%M")}
        if busy and load is not None:
            table[sig].update(busy=True, load=round(load, 2), cpus=_cpu_count())
        table_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(table_path, {**_load_table(table_path), sig: table[sig]})
    return table[sig]


def _stale(kept: Mapping[str, Any], busy: bool, load: float | None, probe_now: Callable[[], float]) -> str | None:
    """Why a kept measurement is taken again (None: it serves): it was taken on a busy machine and
    this one is quiet, or (quiet now) the machine runs at another speed than it did then."""
    if busy:
        return None
    if kept.get("busy") and load is not None:
        return "kept from a busy machine"
    change = speed_change(kept, probe_now())
    if change is None:
        return "kept without a speed probe"
    if not 1 / SPEED_TOLERANCE <= change <= SPEED_TOLERANCE:
        return f"this machine runs at {change:.2f}x the speed it was measured at"
    return None


def busy_note(flagged: Mapping[str, Mapping[str, Any]]) -> str | None:
    """One line beside an estimate naming the costs (``{name: cost}``) measured on a busy machine,
    each with the load and time it was measured at."""
    busy = [
        f"{name} ({c.get('load')} of {c.get('cpus')} CPUs busy, {c.get('measured')})"
        for name, c in flagged.items()
        if c.get("busy")
    ]
    if not busy:
        return None
    return (
        f"measured while other work kept CPUs busy: {', '.join(busy)}; their runs' times may be too long; "
        "`study plan` measures them again once the machine is quiet (--remeasure: now)"
    )


def estimate_study(
    runs: list[RunDef],
    *,
    assumed: Mapping[str, int] | None = None,
    cache_dir: Path | None = None,
    measure: Callable[[RunConfig], dict[str, float]] | None = None,
    echo: Callable[[str], None] = lambda m: None,
    n_resamples: int = 0,
    load: float | None = None,
    remeasure: bool = False,
    probe: Callable[[int], float] | None = None,
) -> StudyEstimate:
    """Expected wall time of ``runs`` on this machine (see the module docstring). ``load`` (the
    CPUs other work kept busy as the plan started; None: not judged), ``remeasure`` and ``probe``:
    see :func:`throughput` (the probe is taken once per thread count)."""
    from ..datasets.cache import default_cache_dir

    probe = functools.cache(probe or speed_probe)
    assumed = dict(assumed or {})
    table_path = (cache_dir or default_cache_dir()) / THROUGHPUT_FILE
    sizes: dict[str, DataSize] = {}
    caches: dict[tuple[str, float], float] = {}
    out: list[RunEstimate] = []
    costs: dict[str, dict[str, float]] = {}
    for run in runs:
        cfg = RunConfig.from_dict(run.config)
        task = cfg.task.to_dict() if cfg.task is not None else None
        if task is None:
            raise ConfigError(f"run {run.name}: has no [task]; cannot estimate its size")
        ident = json.dumps([task["dataset"], task["root"], task.get("source_fs")])
        if ident not in sizes:
            sizes[ident] = data_size(task, assumed)
        size = sizes[ident]
        caches[(ident, cfg.fs)] = size.records * CACHE_SECONDS_PER_RECORD.get(
            task["dataset"], CACHE_SECONDS_PER_RECORD["cinc"]
        )
        sig = _signature(cfg)
        if sig not in costs:
            cost = throughput(
                cfg,
                table_path,
                measure=measure or measure_throughput,
                echo=echo,
                load=load,
                remeasure=remeasure,
                probe=probe,
            )
            costs[sig] = dict(cost)
        cost = costs[sig]
        train_records, samples, windows = run_work(cfg, size)
        seconds = (
            samples * cost["train_s_per_sample"]
            + windows * cost["predict_s_per_window"]
            + RUN_OVERHEAD_SECONDS
            + evaluation_seconds(cfg, size, n_resamples)
        )
        out.append(
            RunEstimate(
                run.key,
                run.name,
                run.kind,
                int(cfg.epochs or 0),
                round(train_records, 1),
                round(samples),
                round(windows),
                round(seconds, 1),
            )
        )
    names = display_names(list(costs))
    notes = _approximations(sizes, n_resamples)
    notes += [n for n in [busy_note({names[sig]: c for sig, c in costs.items()})] if n]
    speeds = {names[sig]: {k: c[k] for k in ("train_s_per_sample", "predict_s_per_window")} for sig, c in costs.items()}
    threads = [int(json.loads(sig)["threads"]) for sig in costs]
    return StudyEstimate(out, sum(caches.values()), speeds, notes, threads)


def _approximations(sizes: Mapping[str, DataSize], n_resamples: int) -> list[str]:
    """What the estimate approximates, said beside it: the counts it assumes and what it leaves out."""
    notes = [
        "every record counted as labelled (records without a label in the task are dropped when run)",
        "records without folds (CinC) split into equal folds",
        f"evaluation: {n_resamples} bootstrap resamples per run; calibration's extra metrics not counted",
    ]
    return notes + [
        f"{json.loads(k)[0]} at {json.loads(k)[1]}: {v.records} records assumed (--assume-records)"
        for k, v in sizes.items()
        if v.assumed
    ]


def display_names(signatures: list[str]) -> dict[str, str]:
    """A printable name per measured cost: ``model@fs/input`` (and the SSL method), plus, where two
    signatures share that name, the settings that tell them apart (two CPC settings of one study, two
    widths of one model), so that neither line hides the other."""

    def flat(sig: str) -> dict[str, Any]:
        fields = json.loads(sig)
        ssl = fields.pop("ssl", None) or {}
        return {**fields, **{f"ssl.{k}": v for k, v in ssl.items()}}

    def base(fields: dict[str, Any]) -> str:
        method = f" ssl {fields['ssl.method']}" if "ssl.method" in fields else ""
        return f"{fields['model']}@{fields['fs']:g}Hz/{fields['input']}{method}"

    parsed = {sig: flat(sig) for sig in signatures}
    groups: dict[str, list[str]] = {}
    for sig, fields in parsed.items():
        groups.setdefault(base(fields), []).append(sig)
    names: dict[str, str] = {}
    for name, sigs in groups.items():
        keys = sorted({k for s in sigs for k in parsed[s]})
        differing = [k for k in keys if len({json.dumps(parsed[s].get(k), sort_keys=True) for s in sigs}) > 1]
        for sig in sigs:
            detail = ", ".join(f"{k}={json.dumps(parsed[sig].get(k), sort_keys=True)}" for k in differing)
            names[sig] = f"{name} ({detail})" if detail else name
    return names


def parse_assumptions(items: list[str] | None) -> dict[str, int]:
    """``["target=10344", "data/ptbxl=21837"]`` -> ``{"target": 10344, ...}``."""
    out: dict[str, int] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit() or int(value) < 1:
            raise ConfigError(
                f"--assume-records: expected NAME=COUNT (NAME: source, target or a dataset root), got {item!r}"
            )
        out[name.strip()] = int(value)
    return out


def format_duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def format_estimate(est: StudyEstimate) -> list[str]:
    """Lines for ``study plan``: totals, the biggest kinds of runs, and what is approximated."""
    by_kind: dict[str, list[RunEstimate]] = {}
    for r in est.runs:
        by_kind.setdefault(r.kind, []).append(r)
    threads = sorted(set(est.threads))
    per_run = "/".join(map(str, threads)) + f" torch thread{'' if threads == [1] else 's'} per run, " if threads else ""
    lines = [
        f"estimate on this machine ({per_run}{os.cpu_count()} CPU(s)): {format_duration(est.seconds)} "
        f"({sum(r.train_samples for r in est.runs) / 1e6:.2f} M training samples = epochs x records, "
        f"{sum(r.windows for r in est.runs) / 1e6:.2f} M evaluation windows, caches "
        f"{format_duration(est.cache_seconds)})"
    ]
    for kind, rs in by_kind.items():
        lines.append(
            f"  {kind:<11} {len(rs):>4} runs  {sum(r.seconds for r in rs) / 60:7.1f} min  "
            f"(epochs x records: {sum(r.train_samples for r in rs):,.0f})"
        )
    for name, c in est.throughput.items():
        lines.append(
            f"  measured here: {name}: {1 / c['train_s_per_sample']:.0f} training samples/s, "
            f"{1 / c['predict_s_per_window']:.0f} windows/s"
        )
    lines += [f"  approximated: {n}" for n in est.notes]
    return lines


__all__ = [
    "BUSY_LOAD_MARGIN",
    "DataSize",
    "RunEstimate",
    "StudyEstimate",
    "data_size",
    "busy_note",
    "usable_cpus",
    "display_names",
    "estimate_study",
    "evaluation_seconds",
    "format_estimate",
    "busy_cpus",
    "machine_busy",
    "measure_throughput",
    "speed_change",
    "speed_probe",
    "parse_assumptions",
    "run_work",
    "throughput",
]
