"""Data-parallel training over several processes: GPUs of one machine, or several machines.

Launch the ordinary command with ``torchrun`` (``torchrun --nproc_per_node=N -m ecg_transfer train
CONFIG --run-dir DIR``); torchrun sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/
``MASTER_PORT`` and :func:`init_from_env` (called by ``train_run``) joins the process group:
backend ``nccl`` when training on CUDA, ``gloo`` on CPU (``dist_backend`` in the config overrides
it). A process group the caller initialised already (``torch.distributed.init_process_group``,
e.g. under ``torch.multiprocessing.spawn``) is used as it is.

The convention, chosen so that N processes compute what one process computes:

- ``batch_size`` is the *global* batch. Every rank draws the same epoch order and the same crops
  from the shared seed (the loop's own generators), so global batch ``j`` holds exactly the
  records it holds in one process. Rank ``r`` of ``W`` takes the batch's rows ``r, r+W, r+2W,
  ...`` -- ``DistributedSampler``'s ``indices[rank::world]`` applied batch by batch, which for
  ``batch_size`` divisible by ``W`` is exactly DistributedSampler over the epoch order with a
  per-rank batch of ``batch_size / W``. A batch that does not divide evenly is split unevenly.
- Each rank's loss is its rows' mean BCE times ``W * n_rank / n_batch``; DDP averages the
  gradients over ranks, so the result is the gradient of the global batch's mean loss, as in one
  process, even for uneven splits. Learning rates therefore need no scaling with ``W``.
- BatchNorm: with ``sync_batchnorm = true`` (default) BN layers use the statistics of the whole
  global batch (``torch.nn.SyncBatchNorm`` on GPUs; on CPU, which torch's SyncBatchNorm and DDP
  refuse, an equivalent built from differentiable all-reduces, :class:`CpuSyncBatchNorm`), so training is the
  one-process maths up to floating-point summation order. ``sync_batchnorm = false`` keeps
  per-rank statistics (cheaper, slightly different results; running statistics follow rank 0).
- Dropout masks are drawn per rank (one stream per rank and epoch, seeded from ``(seed, epoch,
  rank)``), so a model with dropout is another equally valid random realisation, not bit-equal to
  one process; the stream is re-seeded each epoch so that a resume is still exact.
- Only rank 0 reads and writes the run directory (checkpoint, metrics, config, model.pt,
  predictions); it broadcasts what it read (the checkpoint on resume), so other machines need not
  see the run directory. Validation and test prediction run on rank 0 alone (the other ranks wait:
  it is a few seconds per epoch), so predictions are those of one process with the same weights.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError, EcgTransferError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "nccl", "gloo")
T = TypeVar("T")


class RankZeroError(EcgTransferError):
    """Rank 0 failed in a step it runs for everyone; raised on the other ranks with its message."""


def env_layout() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` from torchrun's environment, or None outside torchrun."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return None
    try:
        world = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ["RANK"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError as exc:
        raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers: {exc}") from None
    return rank, world, local


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among ``world_size`` and its training ``device``.

    With ``world_size == 1`` every collective is a no-op and :meth:`from_main` simply calls its
    function, so single-process code paths stay exactly what they were.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def comm_device(self) -> torch.device:
        """nccl moves CUDA tensors only; gloo is used with CPU tensors."""
        return self.device if self.backend == "nccl" else torch.device("cpu")

    # ----- collectives (no-ops on one process) ------------------------------------------------

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (pickled; for small objects and checkpoints)."""
        if not self.active:
            return obj
        box: list[Any] = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]  # rank 0's object on every rank

    def all_gather(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def all_sum(self, value: torch.Tensor | float) -> float:
        """Sum of a scalar over ranks (float64), the same on every rank."""
        t = torch.as_tensor(value, dtype=torch.float64).detach().reshape(1).to(self.comm_device)
        if self.active:
            dist.all_reduce(t)
        return float(t.item())

    def from_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and return its result everywhere; its error is raised everywhere.

        Used for everything that touches the run directory, so ranks agree on what they found
        (and other machines need no access to it).
        """
        if not self.active:
            return fn()
        payload: tuple[str, Any] | None = None
        if self.is_main:
            try:
                payload = ("ok", fn())
            except Exception as exc:  # re-raised below on every rank
                error = exc
                try:
                    pickle.loads(pickle.dumps(exc))
                    payload = ("error", exc)
                except Exception:
                    payload = ("error", RankZeroError(f"{type(exc).__name__}: {exc}"))
        received = self.broadcast(payload)
        if received is None:  # rank 0 always sends a payload
            raise RankZeroError("rank 0 sent no result")
        kind, value = received
        if kind == "error":
            if self.is_main:
                raise error  # the original, with its traceback
            raise value
        return value

    # ----- data and model -------------------------------------------------------------------------

    def shard(self, n: int) -> slice:
        """This rank's rows of a global batch of ``n`` rows: ``rank, rank + W, ...``."""
        return slice(self.rank, n, self.world_size)

    def shard_size(self, n: int) -> int:
        return len(range(*self.shard(n).indices(n)))

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in DistributedDataParallel (identity on one process).

        Wrap again whenever the set of trainable parameters changes: DDP registers its gradient
        hooks for the parameters that require gradients when it is built.
        """
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        if self.device.type == "cuda":
            return DistributedDataParallel(model, device_ids=[self.device.index], output_device=self.device.index)
        return DistributedDataParallel(model)

    def seed_dropout(self, seed: int, epoch: int) -> None:
        """Give this rank its own global torch stream for the epoch (dropout masks), reproducibly."""
        state = np.random.SeedSequence([int(seed), int(epoch), self.rank]).generate_state(1, dtype=np.uint64)[0]
        torch.manual_seed(int(state >> np.uint64(1)))


SINGLE = DistContext()


def resolve_device(name: str, local_rank: int = 0, distributed: bool = False) -> torch.device:
    """The training device for config key ``device``; under several processes ``cuda`` means
    ``cuda:LOCAL_RANK`` (one GPU per process)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if not distributed:
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        n = torch.cuda.device_count()
        if local_rank >= n:
            raise ConfigError(
                f"LOCAL_RANK {local_rank} but this machine has {n} CUDA device(s); start at most "
                f"{n} processes per node (torchrun --nproc_per_node={n})"
            )
        return torch.device("cuda", local_rank)
    raise ConfigError(
        f"config key 'device': {name!r} cannot be used by several processes; allowed under torchrun: "
        "auto, cuda (each process takes cuda:LOCAL_RANK), cpu"
    )


def _backend(requested: str, device: torch.device) -> str:
    if requested not in BACKENDS:
        raise ConfigError(
            f"config key 'dist_backend': {requested!r} is not allowed; allowed values: {', '.join(BACKENDS)}"
        )
    if requested == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if requested == "nccl" and device.type != "cuda":
        raise ConfigError("config key 'dist_backend': nccl needs CUDA devices; use gloo (or auto) for CPU training")
    return requested


def init_from_env(device: str = "auto", backend: str = "auto") -> DistContext:
    """This process's :class:`DistContext`, joining the process group torchrun describes if needed.

    Outside torchrun (or with ``WORLD_SIZE=1``) and without an initialised group: one process on
    ``device``. The group created here lives until the process exits.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        layout = env_layout()
        local = layout[2] if layout is not None else (rank % max(torch.cuda.device_count(), 1))
        dev = resolve_device(device, local, distributed=world > 1)
        backend_name = dist.get_backend()
        if backend_name == "nccl" and dev.type != "cuda":
            raise ConfigError(f"the process group uses nccl but config key 'device' gives {dev}; nccl needs CUDA")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return DistContext(rank, world, local, backend_name, dev)
    layout = env_layout()
    if layout is None or layout[1] <= 1:
        return DistContext(device=resolve_device(device))
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run with one process")
    rank, world, local = layout
    dev = resolve_device(device, local, distributed=True)
    name = _backend(backend, dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        dist.init_process_group(backend=name, device_id=dev)  # binds the group to this GPU
    else:
        dist.init_process_group(backend=name)
    atexit.register(_destroy)
    log.info("rank %d of %d on %s (%s), backend %s", rank, world, socket.gethostname(), dev, name)
    return DistContext(rank, world, local, name, dev)


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def main_process_first(ctx: DistContext) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. building the signal cache), then the others run it."""
    if ctx.active and not ctx.is_main:
        ctx.barrier()
    try:
        yield
    finally:
        if ctx.active and ctx.is_main:
            ctx.barrier()


def is_main_process() -> bool:
    """True on rank 0, and in any process that is not part of a group (for printing once)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    layout = env_layout()
    return layout is None or layout[0] == 0


# ----- BatchNorm over the global batch -----------------------------------------------------------


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose gradient is the sum over ranks of the incoming gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _AllReduceSum.apply(grad, ctx.group), None


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch for CPU processes (gloo): what ``torch.nn.SyncBatchNorm``
    does on GPUs, where torch refuses CPU modules (CUDA-only kernels; DDP rejects the module).

    In training mode across several ranks the batch mean and the biased variance are formed from
    all-reduced sums (accumulated in float64, two passes), and gradients flow back through the
    all-reduces, so forward, backward and running statistics equal one BatchNorm over the global
    batch. Otherwise (eval, or no process group) it is a plain BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        group = dist.group.WORLD
        self._check_input_dim(input)
        c = input.shape[1]
        dims = [0, *range(2, input.dim())]
        shape = [1, c] + [1] * (input.dim() - 2)
        n_local = input.numel() // c if c else 0
        local = torch.cat([input.sum(dims, dtype=torch.float64), torch.tensor([float(n_local)], dtype=torch.float64)])
        total = _AllReduceSum.apply(local, group)
        n = float(total[-1].detach())
        if n < 2:
            raise ValueError(f"Expected more than 1 value per channel when training, got {int(n)} over all ranks")
        mean = total[:-1] / n
        centred = input - mean.to(input.dtype).view(shape)
        var = _AllReduceSum.apply((centred.double() ** 2).sum(dims), group) / n
        out = centred * torch.rsqrt(var + self.eps).to(input.dtype).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        running_mean, running_var, tracked = self.running_mean, self.running_var, self.num_batches_tracked
        if self.track_running_stats and running_mean is not None and running_var is not None and tracked is not None:
            tracked.add_(1)
            f = 1.0 / float(tracked) if self.momentum is None else self.momentum
            with torch.no_grad():
                running_mean.mul_(1 - f).add_(mean.to(running_mean.dtype), alpha=f)
                running_var.mul_(1 - f).add_((var * (n / (n - 1))).to(running_var.dtype), alpha=f)
        return out


def _swap_bn(module: nn.Module, make: Callable[[nn.modules.batchnorm._BatchNorm], nn.Module | None]) -> nn.Module:
    new = make(module) if isinstance(module, nn.modules.batchnorm._BatchNorm) else None
    if new is not None:
        # the same Parameter and buffer objects: optimisers and param groups stay valid
        new.weight, new.bias = module.weight, module.bias
        new.running_mean, new.running_var = module.running_mean, module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        module = new
    for name, child in module.named_children():
        swapped = _swap_bn(child, make)
        if swapped is not child:
            setattr(module, name, swapped)
    return module


def convert_sync_batchnorm(model: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """Every BatchNorm of ``model`` synchronised over ranks, in place: ``torch.nn.SyncBatchNorm``
    for accelerators, :class:`CpuSyncBatchNorm` for CPU ``device``. The same parameter and buffer
    objects are kept, so state-dict keys do not change; :func:`revert_sync_batchnorm` undoes it."""
    cls = CpuSyncBatchNorm if torch.device(device).type == "cpu" else nn.SyncBatchNorm

    def make(bn: nn.modules.batchnorm._BatchNorm) -> nn.Module | None:
        if isinstance(bn, (nn.SyncBatchNorm, CpuSyncBatchNorm)):
            return None
        new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        object.__setattr__(new, "_plain_class", type(bn))  # a plain attribute: neither a tensor nor a module
        return new

    return _swap_bn(model, make)


def revert_sync_batchnorm(model: nn.Module) -> nn.Module:
    def make(bn: nn.Module) -> nn.Module | None:
        cls = getattr(bn, "_plain_class", None)
        if cls is None:
            return None
        return cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)

    return _swap_bn(model, make)


def rank_batches(slices: Sequence[slice], ctx: DistContext, min_rows: int) -> list[slice]:
    """Global batches every rank can train on: at least ``min_rows`` rows per rank.

    Only a short last batch can fall below (``drop_last = false``); it is dropped with a warning.
    """
    keep = [sl for sl in slices if (sl.stop - sl.start) >= min_rows * ctx.world_size]
    if len(keep) < len(slices) and ctx.is_main:
        log.warning(
            "dropping %d batch(es) smaller than %d rows (%d per rank on %d ranks)",
            len(slices) - len(keep),
            min_rows * ctx.world_size,
            min_rows,
            ctx.world_size,
        )
    if not keep:
        raise ConfigError(
            f"config key 'batch_size': a global batch must hold at least {min_rows} row(s) per "
            f"process ({min_rows * ctx.world_size} on {ctx.world_size} processes)"
        )
    return keep
