"""Training throughput of xresnet1d101 (samples/s): the engine's step against a plain eager PyTorch loop.

    python benchmarks/train_throughput.py [--batches 2] [--warmup 3] [--rounds 8] [--out FILE.json]
    python benchmarks/train_throughput.py --batches 1 --rounds 12 --variants matmul eager engine engine_cl eager_cl2d
    python benchmarks/train_throughput.py --variants all          # every contender below
    python benchmarks/train_throughput.py --model fcn_wang --batches 2 --rounds 1   # does it run?

Every contender (a "variant") lives in its own worker process, so process-wide settings (threads,
allocator, compiled graphs, oneDNN switches) cannot leak from one to another. All workers are
built and warmed up first (compiling included, timed apart as "first call"); then ``--rounds``
rounds each ask every worker in turn (rotated order) to run ``--batches`` training steps. Timings on
a shared machine are noisy, so compare the per-round ratios to ``eager`` (same round, seconds
apart) rather than figures across runs.

Contenders (``--variants``):

- ``matmul``: ``torch.mm`` of square float32 matrices (2048 and 4096, twice each per round), best
  over all rounds: this machine's measured matmul peak at the same thread count.
- ``eager``: the way the benchmark trains: a plain loop on ready tensors -- forward,
  ``BCEWithLogitsLoss``, ``zero_grad``, backward, ``AdamW.step``.
- ``fit``: the engine itself, :func:`ecg_transfer.training.loop.fit`, one epoch of ``--batches``
  batches over a memmapped ``(records, 12, 1000)`` signal file, no validation.
- ``engine``: the same step as ``fit`` written out (crops from the memmap, scaler, tensors, model,
  loss, AdamW, one-cycle), so that speed options can be switched per worker; ``fit`` checks it.
- ``engine_cl``: ``engine`` through :func:`ecg_transfer.training.speed.prepare_for_training` with
  ``memory_format="channels_last"`` (the network run as 2-D convolutions on channels-last batches);
  ``engine_cl_compile`` / ``engine_cl_keepheap``: that plus ``torch.compile`` / ``keepheap``.
- ``engine_compile`` / ``engine_compile_max``: ``engine`` through ``prepare_for_training`` with
  ``compile`` (``torch.compile``, inductor) ``default`` / ``max-autotune-no-cudagraphs``.
- ``engine_keepheap``: ``engine`` with glibc told to keep freed memory (``mallopt``) rather than
  return and re-fault it every step.
- ``eager_1thread``, ``eager_interop1``: thread settings; ``eager_bf16``: bfloat16 autocast;
  ``eager_nomkldnn``: ``torch.backends.mkldnn.enabled = False``; ``eager_fused``:
  ``AdamW(fused=True)``; ``eager_cl2d``: the same network as 2-D convolutions on a
  channels-last ``(N, C, 1, T)`` batch, written the plain PyTorch way (a converted copy).

Reported: samples/s per round (median, min-max), ratio to ``eager`` per round, fraction of the
measured matmul peak (measured FLOPs of one forward+backward, ``FlopCounterMode``: convolutions
and matrix products), first-call time (compilation), peak RSS of each worker, and for the engine the
data path alone (the same ``extract_crops`` + scaler + tensor conversion calls) as a share of a step.
Each timing also records the CPU time other processes used meanwhile (``/proc/stat``); timings
where that exceeded 5 % of the machine are marked ``*`` and left out of the summaries (two
OpenMP threads on two cores slow down many-fold when a third busy process shares a core).

``--before-timing CMD`` / ``--after-timing CMD``: shell commands run just before the timed rounds
and after them (also on errors), e.g. to pause other work on a shared machine; ``--time-limit S``
ends the rounds after the first one that finishes past S seconds.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Variant:
    name: str
    loop: str  # "matmul" | "plain" | "engine" | "fit"
    threads: int | None = None  # None: the --threads value
    interop: int | None = None
    compile: str = "none"  # speed.COMPILE_MODES
    autocast: str | None = None  # "bf16"
    mkldnn: bool = True
    keep_heap: bool = False
    fused_adamw: bool = False
    layout: str = "ncl"  # "ncl"; "cl2d" (plain loop: a 2-D copy); "channels_last" (engine: speed.py)


VARIANTS = {
    v.name: v
    for v in [
        Variant("matmul", "matmul"),
        Variant("eager", "plain"),
        Variant("fit", "fit"),
        Variant("engine", "engine"),
        Variant("engine_compile", "engine", compile="default"),
        Variant("engine_compile_max", "engine", compile="max-autotune-no-cudagraphs"),
        Variant("engine_keepheap", "engine", keep_heap=True),
        Variant("engine_compile_keepheap", "engine", compile="default", keep_heap=True),
        Variant("eager_1thread", "plain", threads=1),
        Variant("eager_interop1", "plain", interop=1),
        Variant("eager_bf16", "plain", autocast="bf16"),
        Variant("eager_nomkldnn", "plain", mkldnn=False),
        Variant("eager_fused", "plain", fused_adamw=True),
        Variant("eager_cl2d", "plain", layout="cl2d"),
        Variant("engine_cl", "engine", layout="channels_last"),
        Variant("engine_cl_compile", "engine", compile="default", layout="channels_last"),
        Variant("engine_cl_keepheap", "engine", layout="channels_last", keep_heap=True),
    ]
}
DEFAULT_VARIANTS = ["matmul", "eager", "fit", "engine", "engine_cl"]
N_RECORDS_MIN, RECORD_LEN, LEADS = 2048, 1000, 12
DISTURBED = 0.05  # a timing during which other processes used more than this share of the CPUs


# ----- machine ------------------------------------------------------------------------------


def machine() -> dict:
    import torch

    cpu, flags = platform.processor() or "unknown", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    simd = [f for f in flags if f in ("avx", "avx2", "fma") or f.startswith(("avx512", "amx"))]
    return {
        "cpu": cpu,
        "simd_flags": simd,
        "nproc": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def train_flops_per_sample(model_name: str, n_classes: int, batch: int, crop: int) -> float:
    """FLOPs of one forward+backward (``FlopCounterMode``: convolutions and matrix products)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ecg_transfer import models

    model = models.build(model_name, LEADS, n_classes).train()
    x, y = torch.randn(batch, LEADS, crop), torch.rand(batch, n_classes).round()
    with FlopCounterMode(display=False) as fc:
        torch.nn.functional.binary_cross_entropy_with_logits(model(x), y).backward()
    return fc.get_total_flops() / batch


def matmul_peak(reps: int = 2) -> float:
    """Best GFLOP/s of ``torch.mm`` of square float32 matrices (2048 and 4096), ``reps`` each."""
    import torch

    best = 0.0
    for n in (2048, 4096):
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


# ----- workers ------------------------------------------------------------------------------


def _keep_heap() -> None:
    """glibc: serve large blocks from the heap and never trim it, so freed activations are reused."""
    libc = ctypes.CDLL("libc.so.6")
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    if not (libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)):
        raise RuntimeError("mallopt failed")


def _to_2d(model):
    """A copy of ``model`` computing the same function with 2-D layers on ``(N, C, 1, T)`` inputs."""
    import torch
    from torch import nn

    from ecg_transfer.models.heads import ConcatPool1d

    class ConcatPool2d(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x.amax(dim=(2, 3), keepdim=True), x.mean(dim=(2, 3), keepdim=True)], 1).flatten(2)

    def convert(mod: nn.Module) -> None:
        for name, c in mod.named_children():
            new = None
            if isinstance(c, nn.Conv1d):
                new = nn.Conv2d(
                    c.in_channels,
                    c.out_channels,
                    (1, c.kernel_size[0]),
                    (1, c.stride[0]),
                    (0, c.padding[0]),
                    bias=c.bias is not None,
                )
                new.weight.data = c.weight.data.unsqueeze(2).clone()
                if c.bias is not None:
                    new.bias.data = c.bias.data.clone()
            elif isinstance(c, nn.BatchNorm1d) and name == "bn":  # ConvBnAct's; the head's stay 1-D
                new = nn.BatchNorm2d(c.num_features)
                new.load_state_dict(c.state_dict())
            elif isinstance(c, nn.MaxPool1d):
                new = nn.MaxPool2d((1, c.kernel_size), (1, c.stride), (0, c.padding))
            elif isinstance(c, nn.AvgPool1d):
                new = nn.AvgPool2d((1, c.kernel_size[0]), (1, c.stride[0]), ceil_mode=c.ceil_mode)
            elif isinstance(c, ConcatPool1d):
                new = ConcatPool2d()
            if new is None:
                convert(c)
            else:
                setattr(mod, name, new)

    model = copy.deepcopy(model)
    convert(model)
    return model.to(memory_format=torch.channels_last)


class Worker:
    """One variant: its model, optimizer and data, and ``steps(n) -> seconds``."""

    def __init__(self, v: Variant, cfg: dict):
        import torch

        if v.keep_heap:
            _keep_heap()
        torch.set_num_threads(v.threads or cfg["threads"])
        if v.interop:
            torch.set_num_interop_threads(v.interop)
        torch.backends.mkldnn.enabled = v.mkldnn
        self.v, self.cfg, self.torch = v, cfg, torch
        if v.loop == "matmul":
            return
        from torch import nn

        from ecg_transfer import models

        torch.manual_seed(0)
        self.model = models.build(cfg["model"], LEADS, cfg["classes"]).train()
        B, C = cfg["batch"], cfg["crop"]
        if v.loop == "plain":
            g = torch.Generator().manual_seed(1)
            self.x = torch.randn(B, LEADS, C, generator=g)
            self.y = (torch.rand(B, cfg["classes"], generator=g) < 0.1).float()
            if v.layout == "cl2d":
                self.model = _to_2d(self.model)
                self.x = self.x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
            self.loss_fn = nn.BCEWithLogitsLoss()
            self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3, fused=v.fused_adamw or None)
            return
        # the engine: as train_run / fit set it up
        from ecg_transfer.training import RunConfig, Stage
        from ecg_transfer.training.loop import batch_slices, configure_stage, make_generators
        from ecg_transfer.training.scaler import GlobalStandardScaler
        from ecg_transfer.training.speed import prepare_for_training

        torch.use_deterministic_algorithms(True, warn_only=True)  # train_run's default (deterministic = true)
        self.X = np.load(cfg["signals"], mmap_mode="r")
        self.Y = np.load(cfg["labels"])
        self.config = RunConfig(model=cfg["model"], batch_size=B, crop_seconds=C / 100.0, fs=100.0)
        self.train_idx = np.arange(self.X.shape[0] - self.X.shape[0] % B)
        self.lens = np.full(self.X.shape[0], self.X.shape[2], dtype=np.int64)
        self.scaler = GlobalStandardScaler().fit(self.X, self.train_idx[:256])
        self.slices = batch_slices(len(self.train_idx), B, True)
        self.gens = make_generators(0)
        if v.loop == "engine":
            self.opt, self.sched = configure_stage(self.model, Stage("bench", 10_000), self.config, len(self.slices))
            self.net = prepare_for_training(
                self.model, "channels_last" if v.layout == "channels_last" else "contiguous", v.compile
            )
            self.loss_fn = nn.BCEWithLogitsLoss()
        self._plan: list = []

    # -- one batch of each kind --

    def _plain_step(self) -> None:
        torch = self.torch
        self.opt.zero_grad(set_to_none=True)
        if self.v.autocast == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = self.loss_fn(self.model(self.x).float(), self.y)
        else:
            loss = self.loss_fn(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()
        loss.item()

    def _next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        from ecg_transfer.training.loop import epoch_plan

        if not self._plan:
            order, starts = epoch_plan(
                self.train_idx, self.lens, self.cfg["crop"], self.gens["order"], self.gens["crop"], "error"
            )
            self._plan = [(order[sl], starts[sl]) for sl in self.slices]
        return self._plan.pop()

    def _data(self, rows: np.ndarray, starts: np.ndarray):
        """loop.py's data path, line for line."""
        from ecg_transfer.training.windows import extract_crops

        torch = self.torch
        xb = self.scaler.transform(extract_crops(self.X, rows, starts, self.cfg["crop"], self.lens))
        xb = torch.from_numpy(xb)
        yb = torch.from_numpy(np.asarray(self.Y[rows], dtype=np.float32))
        return xb, yb

    def _engine_step(self) -> None:
        """loop.py's step (one process), line for line."""
        xb, yb = self._data(*self._next_batch())
        loss = self.loss_fn(self.net(xb), yb)
        batch_loss = loss.item()
        if not np.isfinite(batch_loss):
            raise RuntimeError(f"training loss is {batch_loss}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()

    def _fit(self, n: int) -> float:
        from ecg_transfer.training import Stage
        from ecg_transfer.training.loop import fit
        from ecg_transfer.training.scaler import GlobalStandardScaler

        rows = self.train_idx[: n * self.cfg["batch"]]
        res = fit(
            self.model,
            self.X,
            self.Y,
            rows,
            np.array([], dtype=np.int64),
            config=self.config,
            stages=[Stage("bench", 1)],
            scaler=GlobalStandardScaler(self.scaler.mean_, self.scaler.std_),
            progress=False,
        )
        return float(res.history[-1]["seconds"])

    def _matmul(self) -> float:
        return matmul_peak()

    # -- commands --

    def steps(self, n: int) -> float:
        if self.v.loop == "fit":
            return self._fit(n)
        step = self._plain_step if self.v.loop == "plain" else self._engine_step
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        return time.perf_counter() - t0

    def data_path(self, n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            self._data(*self._next_batch())
        return time.perf_counter() - t0


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all processes; /proc/stat, Linux)."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (f + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _measured(fn):
    """``(fn(), share)``: share = CPU time of other processes during the call / (wall time x cores).

    Two busy threads on two cores leave no room: a share of a few % means the timing was
    disturbed by other work, which the report flags.
    """
    b0, t0, c0 = _busy_seconds(), time.perf_counter(), sum(os.times()[:2])
    out = fn()
    wall = time.perf_counter() - t0
    others = (_busy_seconds() - b0) - (sum(os.times()[:2]) - c0)
    return out, max(0.0, others) / (wall * (os.cpu_count() or 1))


def _peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM; ``ru_maxrss`` would include the parent's from before exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker_main(v: Variant, cfg: dict, conn) -> None:
    try:
        t0 = time.perf_counter()
        w = Worker(v, cfg)
        conn.send(("ok", time.perf_counter() - t0))
        while True:
            cmd, arg = conn.recv()
            if cmd == "quit":
                break
            if cmd == "steps":
                out = _measured(w._matmul if v.loop == "matmul" else lambda n=arg: w.steps(n))
            elif cmd == "data":
                out = w.data_path(arg)
            elif cmd == "rss":
                out = _peak_rss_mib()
            else:
                raise ValueError(cmd)
            conn.send(("ok", out))
    except BaseException as exc:  # report, do not hang the parent
        import traceback

        conn.send(("error", f"{v.name}: {exc!r}\n{traceback.format_exc()}"))


class Pool:
    """The variants' worker processes; each is built and warmed up alone, so builds do not compete."""

    def __init__(self) -> None:
        self.ctx = mp.get_context("spawn")
        self.procs: dict = {}
        self.conns: dict = {}

    def start(self, v: Variant, cfg: dict) -> float:
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=_worker_main, args=(v, cfg, child), daemon=True)
        p.start()
        self.procs[v.name], self.conns[v.name] = p, parent
        return self.call(v.name, None)  # seconds to build

    def call(self, name: str, cmd: tuple | None):
        if cmd is not None:
            self.conns[name].send(cmd)
        status, out = self.conns[name].recv()
        if status != "ok":
            raise RuntimeError(out)
        return out

    def close(self) -> None:
        for c in self.conns.values():
            try:
                c.send(("quit", None))
            except OSError:
                pass
        for p in self.procs.values():
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()


def _spread(xs: list[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "all": xs}


@dataclass
class Timings:
    """What the timed rounds measured, one entry per round, kept together for the summary and the table."""

    samples: dict[str, list[float]]  # per variant: samples/s (matmul: GFLOP/s)
    others: dict[str, list[float]]  # per variant: other processes' CPU share during that timing
    data_s: list[float]  # the engine's data path alone, seconds per batch (empty without "engine")


def _variant_names(requested: list[str]) -> list[str]:
    """The variants to run, ``all`` expanded and checked; ``eager`` is added in front (every ratio is to it)."""
    names = list(VARIANTS) if requested == ["all"] else list(requested)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from: {', '.join(VARIANTS)} or all")
    if "eager" not in names:
        names.insert(0, "eager")
    return names


def _run_info(args: argparse.Namespace, threads: int, flops: float) -> dict:
    """The machine and the settings of this run, saved with the figures so that runs can be compared."""
    return {
        **machine(),
        "model": args.model,
        "classes": args.classes,
        "batch_size": args.batch_size,
        "crop": args.crop,
        "threads": threads,
        "batches_per_round": args.batches,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "train_gflop_per_sample": flops / 1e9,
    }


def _print_header(info: dict, flops: float) -> None:
    """What is measured, on what, before the (long) build and timing starts."""
    print(
        f"{info['model']}, batch {info['batch_size']} x {LEADS} x {info['crop']}, {info['threads']} threads, "
        f"{info['cpu']} ({', '.join(info['simd_flags'])}), torch {info['torch']}"
    )
    print(f"forward+backward: {flops / 1e9:.4f} GFLOP per sample (FlopCounterMode)")


def _write_fixture(folder: Path, n_rec: int, classes: int) -> tuple[Path, Path]:
    """A synthetic memmapped ``(n_rec, 12, 1000)`` signal file and its labels (seeded), for the engine's data path.

    Written in blocks of 256 records so that a large fixture never sits in memory whole.
    """
    rng = np.random.default_rng(0)
    signals, labels = folder / "signals.npy", folder / "labels.npy"
    sig = np.lib.format.open_memmap(signals, "w+", np.float32, (n_rec, LEADS, RECORD_LEN))
    for i in range(0, n_rec, 256):
        sig[i : i + 256] = rng.normal(0.0, 0.3, (min(256, n_rec - i), LEADS, RECORD_LEN))
    sig.flush()
    del sig
    np.save(labels, (rng.random((n_rec, classes)) < 0.1).astype(np.uint8))
    return signals, labels


def _warm_up(pool: Pool, variants: list[Variant], cfg: dict, warmup: int) -> tuple[dict[str, float], dict[str, float]]:
    """Start and warm up each variant's worker, one at a time so builds and compiles do not compete.

    Returns the seconds to build each worker and those of its first step (compiling; not for matmul).
    """
    first: dict[str, float] = {}
    build: dict[str, float] = {}
    for v in variants:
        build[v.name] = pool.start(v, cfg)
        if v.loop != "matmul":
            first[v.name] = pool.call(v.name, ("steps", 1))[0]
            if warmup:
                pool.call(v.name, ("steps", warmup))
        print(
            f"  ready: {v.name:<24} build {build[v.name]:6.1f} s, first step {first.get(v.name, 0):7.1f} s", flush=True
        )
    return build, first


def _rotated(names: list[str], r: int) -> list[str]:
    """Round ``r``'s order: the variants rotated by ``r``, so that none always runs first (or last)."""
    return names[r % len(names) :] + names[: r % len(names)]


def _time_rounds(
    pool: Pool, names: list[str], batches: int, batch_size: int, rounds: int, time_limit: float | None
) -> Timings:
    """The timed rounds: each asks every worker in turn (rotated order) for ``batches`` steps, and the engine's
    worker for its data path alone; after ``time_limit`` seconds no new round starts."""
    t = Timings({n: [] for n in names}, {n: [] for n in names}, [])
    t_start = time.perf_counter()
    for r in range(rounds):
        if time_limit and r and time.perf_counter() - t_start > time_limit:
            print(f"  --time-limit {time_limit:g} s reached after {r} round(s)")
            break
        for n in _rotated(names, r):
            out, share = pool.call(n, ("steps", batches))
            t.samples[n].append(out if n == "matmul" else batches * batch_size / out)
            t.others[n].append(share)
        if "engine" in names:
            t.data_s.append(pool.call("engine", ("data", batches)) / batches)
        print(
            f"  round {r + 1}: "
            + ", ".join(f"{n} {t.samples[n][-1]:.1f}{'*' if t.others[n][-1] > DISTURBED else ''}" for n in names),
            flush=True,
        )
    return t


def _time_between_hooks(pool: Pool, names: list[str], args: argparse.Namespace) -> Timings:
    """The timed rounds between ``--before-timing`` and ``--after-timing`` (the latter also on errors), e.g. to
    pause other work on a shared machine for exactly that long."""
    if args.before_timing:
        subprocess.run(args.before_timing, shell=True, check=True)
    try:
        return _time_rounds(pool, names, args.batches, args.batch_size, args.rounds, args.time_limit)
    finally:
        if args.after_timing:
            subprocess.run(args.after_timing, shell=True, check=False)


def _measure(
    names: list[str], cfg: dict, args: argparse.Namespace
) -> tuple[dict[str, float], dict[str, float], Timings, dict[str, float]]:
    """Everything the worker processes measure: build and first-step seconds, the timed rounds, peak RSS.

    The workers are closed whatever happens.
    """
    pool = Pool()
    try:
        build, first = _warm_up(pool, [VARIANTS[n] for n in names], cfg, args.warmup)
        timings = _time_between_hooks(pool, names, args)
        rss = {n: pool.call(n, ("rss", None)) for n in names}
    finally:
        pool.close()
    return build, first, timings, rss


def _clean(names: list[str], t: Timings) -> dict[str, list[float]]:
    """Per variant, the undisturbed timings (others' CPU share <= DISTURBED), or all of them if none is."""
    return {n: [x for x, o in zip(t.samples[n], t.others[n]) if o <= DISTURBED] or t.samples[n] for n in names}


def _ratios_to_eager(t: Timings, name: str) -> list[float]:
    """``name``'s samples/s over eager's in the same round (seconds apart), from rounds where neither timing was
    disturbed, or from all rounds if there is no such round."""
    pairs = [
        (a, b)
        for a, b, oa, ob in zip(t.samples[name], t.samples["eager"], t.others[name], t.others["eager"])
        if oa <= DISTURBED and ob <= DISTURBED
    ]
    return [a / b for a, b in pairs] or [a / b for a, b in zip(t.samples[name], t.samples["eager"])]


def _summarise(
    names: list[str],
    t: Timings,
    build: dict[str, float],
    first: dict[str, float],
    rss: dict[str, float],
    flops: float,
    batch_size: int,
) -> tuple[dict, float | None]:
    """The results per variant as saved (summaries from the undisturbed timings only; all are kept in "all"),
    and the matmul peak in GFLOP/s (None without the matmul variant)."""
    clean = _clean(names, t)
    peak = max(clean["matmul"]) if "matmul" in clean else None
    results = {}
    for n in names:
        if n == "matmul":
            results[n] = {
                "gflops": _spread(clean[n]),
                "all": t.samples[n],
                "peak_rss_mib": rss[n],
                "others_cpu_share": t.others[n],
            }
            continue
        med = statistics.median(clean[n])
        results[n] = {
            "variant": asdict(VARIANTS[n]),
            "samples_per_s": _spread(clean[n]),
            "all": t.samples[n],
            "ratio_to_eager": _spread(_ratios_to_eager(t, n)),
            "first_step_s": first[n],
            "build_s": build[n],
            "peak_rss_mib": rss[n],
            "others_cpu_share": t.others[n],
            "gflops": med * flops / 1e9,
            "fraction_of_matmul_peak": None if peak is None else med * flops / 1e9 / peak,
        }
    if t.data_s:
        step_s = batch_size / statistics.median(clean["engine"])
        results["engine"]["data_path_s_per_batch"] = _spread(t.data_s)
        results["engine"]["data_path_fraction"] = statistics.median(t.data_s) / step_s
    return results, peak


def _print_table(names: list[str], results: dict, others: dict[str, list[float]]) -> None:
    """One line per variant: samples/s, ratio to eager, share of the matmul peak, first step, RSS, others' CPU."""
    print(
        f"\n{'variant':<24} {'samples/s (median, min-max)':>28} {'x eager (median, min-max)':>26} "
        f"{'% peak':>7} {'1st step s':>10} {'RSS MiB':>8} {'others':>7}"
    )
    for n in names:
        r = results[n]
        if n == "matmul":
            g = r["gflops"]
            print(
                f"{'matmul (GFLOP/s)':<24} {g['median']:>12.1f} ({g['min']:6.1f}-{g['max']:6.1f})"
                f"{'':>26} {'':>7} {'':>10} {r['peak_rss_mib']:>8.0f} {100 * max(others[n]):>6.1f}%"
            )
            continue
        s, q = r["samples_per_s"], r["ratio_to_eager"]
        frac = "" if r["fraction_of_matmul_peak"] is None else f"{100 * r['fraction_of_matmul_peak']:.0f} %"
        print(
            f"{n:<24} {s['median']:>12.1f} ({s['min']:6.1f}-{s['max']:6.1f}) "
            f"{q['median']:>12.3f} ({q['min']:.3f}-{q['max']:.3f}) {frac:>7} {r['first_step_s']:>10.1f} "
            f"{r['peak_rss_mib']:>8.0f} {100 * max(others[n]):>6.1f}%"
        )


def _print_notes(out: dict, t: Timings, flops: float) -> None:
    """Below the table: how disturbed the timings were, the matmul peak, and the engine's data-path share."""
    shares = [x for xs in t.others.values() for x in xs]
    print(
        f"other processes' CPU share while timing: median {100 * statistics.median(shares):.1f} %, "
        f"max {100 * max(shares):.1f} %; {out['disturbed_timings']} timing(s) over {100 * DISTURBED:.0f} % "
        "(marked *, left out of the summaries)"
    )
    peak = out["matmul_peak_gflops"]
    if peak is not None:
        print(f"matmul peak (best torch.mm): {peak:.1f} GFLOP/s; training: {flops / 1e9:.4f} GFLOP/sample")
    if t.data_s:
        e = out["results"]["engine"]
        print(
            f"engine data path (extract_crops + scaler + tensors): {1e3 * statistics.median(t.data_s):.2f} ms/batch "
            f"= {100 * e['data_path_fraction']:.2f} % of an engine step; model {100 * (1 - e['data_path_fraction']):.2f} %"
        )


def run(args: argparse.Namespace) -> dict:
    """The whole benchmark: fixture, workers, timed rounds, summary and table; returns what ``--out`` saves."""
    names = _variant_names(args.variants)
    import torch

    threads = args.threads or torch.get_num_threads()
    B = args.batch_size
    flops = train_flops_per_sample(args.model, args.classes, B, args.crop)
    info = _run_info(args, threads, flops)
    _print_header(info, flops)
    with tempfile.TemporaryDirectory(prefix="train_throughput_") as tmp:
        signals, labels = _write_fixture(Path(tmp), max(N_RECORDS_MIN, (args.batches + 1) * B), args.classes)
        cfg = {
            "model": args.model,
            "classes": args.classes,
            "batch": B,
            "crop": args.crop,
            "threads": threads,
            "signals": str(signals),
            "labels": str(labels),
        }
        build, first, timings, rss = _measure(names, cfg, args)
    results, peak = _summarise(names, timings, build, first, rss, flops, B)
    out = {"machine": info, "matmul_peak_gflops": peak, "results": results}
    out["disturbed_timings"] = sum(x > DISTURBED for xs in timings.others.values() for x in xs)
    _print_table(names, results, timings.others)
    _print_notes(out, timings, flops)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=2, help="timed training steps per variant per round (default 2)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per variant after the first (default 3)")
    ap.add_argument("--rounds", type=int, default=8, help="timed rounds, variants interleaved (default 8)")
    ap.add_argument(
        "--variants",
        nargs="+",
        default=DEFAULT_VARIANTS,
        help=f"default: {' '.join(DEFAULT_VARIANTS)}; 'all' or any of: {' '.join(VARIANTS)}",
    )
    ap.add_argument("--model", default="xresnet1d101")
    ap.add_argument("--classes", type=int, default=71, help="outputs (71: all PTB-XL statements)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--crop", type=int, default=250, help="samples per crop (250: 2.5 s at 100 Hz)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--before-timing", default=None, help="shell command run just before the timed rounds")
    ap.add_argument("--after-timing", default=None, help="shell command run after them (also on errors)")
    ap.add_argument("--time-limit", type=float, default=None, help="end the rounds after this many seconds")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    for k in ("batches", "rounds"):
        if getattr(args, k) < 1:
            ap.error(f"--{k} must be >= 1")
    out = run(args)
    if args.out is not None:
        from ecg_transfer.atomic import atomic_write_json

        atomic_write_json(args.out, out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
