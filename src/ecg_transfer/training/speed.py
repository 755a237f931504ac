"""Training-step speed options, kept because ``benchmarks/train_throughput.py`` measured them to help.

Measured on a 2-core AMD EPYC (AVX2, no AVX-512), xresnet1d101, batch 128, 2.5 s crops at 100 Hz
(figures and commands in ``BENCHMARKS.md``):

* ``memory_format="channels_last"``: the 1-D convolutional network runs as 2-D convolutions over
  ``(N, C, 1, T)`` batches in channels-last memory. oneDNN then convolves in its native
  ``nhwc`` layout instead of reordering every activation in and out of a blocked layout, and
  BatchNorm uses PyTorch's channels-last kernel (vectorised over channels rather than over short
  time axes). 1.2-1.4x the samples/s of the 1-D engine step, 1.4x the plain eager loop; the same
  function, float32 rounding aside.
* ``compile``: ``torch.compile`` (inductor) fuses BatchNorm/ReLU/additions; alone about 1.1x,
  on top of channels-last nothing measurable, and it costs minutes of compilation per process.
  Kept as an option (default off) for machines where it pays, e.g. GPUs.
* ``optimizer_impl``: AdamW's fused kernel (:func:`optimizer_kernel`), 4-7x faster optimizer
  steps here, about 5 % of a training step.

Nothing is changed in the model itself: :class:`ChannelsLast2d` computes the forward pass of a
2-D twin of the network with the model's own parameters and buffers (``torch.func.functional_call``;
convolution weights enter as ``weight.unsqueeze(2)`` views, so gradients land in the 1-D
parameters, and BatchNorm running statistics are updated in the model's own buffers). The
optimizer, checkpoints (``model.state_dict()``, unchanged keys and shapes) and exported models
keep using the plain module.

Prediction stays in the 1-D layout: measured, the twin's forward pass alone is no faster (eval-mode
BatchNorm is a cheap affine map), and a real epoch's validation took 20-26 s either way.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
from typing import TYPE_CHECKING, ContextManager, Sequence, TypedDict, cast

import torch
from torch import nn

if TYPE_CHECKING:
    import numpy as np

from ..errors import ConfigError
from ..settings.names import PRECISIONS
from .config import COMPILE_MODES, MEMORY_FORMATS, OPTIMIZER_IMPLS

log = logging.getLogger(__name__)


class ConcatPool2d(nn.Module):
    """:class:`~ecg_transfer.models.heads.ConcatPool1d` for ``(N, C, 1, T)``: ``(N, 2C, 1)``, max first."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.amax(dim=(2, 3), keepdim=True), x.mean(dim=(2, 3), keepdim=True)], dim=1).flatten(2)


def _layout_agnostic() -> tuple[type, ...]:
    """Body modules whose own forward only adds, concatenates on dim 1 or calls children."""
    from ..models.inception1d import InceptionBlock1d, InceptionStage
    from ..models.layers import ConvBnAct
    from ..models.resnet1d import BasicBlock1d
    from ..models.xresnet1d import XResBlock

    return (
        nn.Sequential,
        nn.ModuleList,
        nn.ReLU,
        nn.Dropout,
        nn.Identity,
        ConvBnAct,
        XResBlock,
        BasicBlock1d,
        InceptionBlock1d,
        InceptionStage,
    )


def channels_last_unsupported(model: nn.Module) -> str | None:
    """Why ``model`` cannot run as :class:`ChannelsLast2d` (None: it can)."""
    from ..models.base import EcgClassifier
    from ..models.heads import ClassifierHead, ConcatPool1d

    if not isinstance(model, EcgClassifier) or not isinstance(model.head, ClassifierHead):
        return f"{type(model).__name__} is not a model built by ecg_transfer.models.build"
    known = _layout_agnostic() + (nn.Conv1d, nn.modules.batchnorm._BatchNorm, nn.MaxPool1d, nn.AvgPool1d)
    for name, m in model.body.named_modules():
        if not isinstance(m, known):
            return f"body module {name!r} is a {type(m).__name__}, which has no 2-D channels-last twin here"
        if isinstance(m, nn.Conv1d) and m.padding_mode != "zeros":
            return f"body convolution {name!r} pads with {m.padding_mode!r}"
        if isinstance(m, nn.MaxPool1d) and m.return_indices:
            return f"body max-pool {name!r} returns indices"
    if not isinstance(model.head.pool, ConcatPool1d):
        return f"its head pools with {type(model.head.pool).__name__}, not ConcatPool1d"
    return None


def _first(v: int | tuple[int, ...]) -> int:
    """A 1-D layer's size argument as one int (torch stores ints or 1-tuples)."""
    return v if isinstance(v, int) else v[0]


def _twin(m: nn.Module) -> nn.Module | None:
    """The 2-D layer computing what the 1-D layer ``m`` computes on ``(N, C, 1, T)`` (None: keep m)."""
    if isinstance(m, nn.Conv1d):
        pad = m.padding if isinstance(m.padding, str) else (0, m.padding[0])
        return nn.Conv2d(
            m.in_channels,
            m.out_channels,
            (1, m.kernel_size[0]),
            (1, m.stride[0]),
            pad,
            (1, m.dilation[0]),
            m.groups,
            m.bias is not None,
            device="meta",
        )
    if type(m) is nn.BatchNorm1d:  # SyncBatchNorm takes any rank as it is
        return nn.BatchNorm2d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats, device="meta")
    if isinstance(m, nn.MaxPool1d):
        return nn.MaxPool2d(
            (1, _first(m.kernel_size)),
            (1, _first(m.stride)),
            (0, _first(m.padding)),
            (1, _first(m.dilation)),
            ceil_mode=m.ceil_mode,
        )
    if isinstance(m, nn.AvgPool1d):
        return nn.AvgPool2d(
            (1, _first(m.kernel_size)), (1, _first(m.stride)), (0, _first(m.padding)), m.ceil_mode, m.count_include_pad
        )
    return None


class ChannelsLast2d(nn.Module):
    """Runs an ``EcgClassifier`` (1-D convolutions) as 2-D convolutions on channels-last batches.

    ``forward(x)`` takes and returns what ``model`` does (``(N, C, T)`` -> logits) and computes
    the same function; parameters, buffers and training flags are the model's own (see the
    module docstring). ``state_dict`` keys carry a ``model.`` prefix: save ``model``, not this.
    """

    _twin: nn.Module  # set with object.__setattr__: not a submodule

    def __init__(self, model: nn.Module):
        super().__init__()
        from ..models.base import EcgClassifier

        why = channels_last_unsupported(model)
        if why is not None:
            raise ValueError(f"cannot run this model channels-last: {why}")
        assert isinstance(model, EcgClassifier)  # channels_last_unsupported checked it
        self.model = model
        twin = copy.deepcopy(model).to("meta")  # structure only: every tensor comes from `model`
        for _, m in list(twin.body.named_modules()):
            for child_name, child in list(m.named_children()):
                new = _twin(child)
                if new is not None:
                    setattr(m, child_name, new)
        twin.head.pool = ConcatPool2d()
        self._conv_weights = {f"body.{n}.weight" for n, m in model.body.named_modules() if isinstance(m, nn.Conv1d)}
        mods = dict(model.named_modules())
        self._pairs = [(mods[n], t) for n, t in twin.named_modules()]  # to copy training flags
        object.__setattr__(self, "_twin", twin)  # not a submodule: no parameters of its own

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for orig, t in self._pairs:
            t.training = orig.training
        tensors = {n: (p.unsqueeze(2) if n in self._conv_weights else p) for n, p in self.model.named_parameters()}
        tensors.update(self.model.named_buffers())
        x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        return torch.func.functional_call(self._twin, tensors, (x,), strict=True)


def prepare_for_training(model: nn.Module, memory_format: str = "auto", compile: str = "none") -> nn.Module:
    """The module the training step sends batches through; shares all parameters with ``model``.

    ``memory_format``: ``"channels_last"`` (:class:`ChannelsLast2d`; an error for models it cannot
    run), ``"contiguous"`` (``model`` as it is) or ``"auto"`` (channels-last where possible,
    else the model as it is, with a log line). ``compile``: one of :data:`COMPILE_MODES`.
    Wrap the result in DDP, not the other way round; keep optimizing and saving ``model``.
    """
    if memory_format not in MEMORY_FORMATS:
        raise ConfigError(
            f"config key 'memory_format': {memory_format!r} is not allowed; allowed values: {', '.join(MEMORY_FORMATS)}"
        )
    if compile not in COMPILE_MODES:
        raise ConfigError(
            f"config key 'compile': {compile!r} is not allowed; allowed values: {', '.join(COMPILE_MODES)}"
        )
    net = model
    if memory_format != "contiguous":
        why = channels_last_unsupported(model)
        if why is None:
            net = ChannelsLast2d(model)
        elif memory_format == "channels_last":
            raise ConfigError(
                f"config key 'memory_format': 'channels_last' cannot be used with this model: {why}; "
                "use 'auto' or 'contiguous'"
            )
        else:
            log.info("memory_format 'auto': training in the default layout (%s)", why)
    if compile != "none":  # compiling a module returns a module (torch types it as any callable)
        net = cast(nn.Module, torch.compile(net, mode=None if compile == "default" else compile, dynamic=False))
    return net


class KernelArgs(TypedDict, total=False):
    """AdamW's keyword arguments that choose its kernel."""

    fused: bool
    foreach: bool


def optimizer_kernel(impl: str, params: Sequence[torch.Tensor]) -> KernelArgs:
    """AdamW's ``fused`` / ``foreach`` arguments for the config's ``optimizer_impl``.

    The fused kernel updates every parameter in one pass instead of a dozen tensor-list
    operations; measured on a 2-core CPU, the xresnet1d101 optimizer step took 5-9 ms instead of
    21-46 ms (BENCHMARKS.md). ``auto`` uses it where torch has it for the parameters' device and
    dtype (CPU, CUDA, MPS; floating point), else foreach.
    """
    if impl not in OPTIMIZER_IMPLS:
        raise ConfigError(
            f"config key 'optimizer_impl': {impl!r} is not allowed; allowed values: {', '.join(OPTIMIZER_IMPLS)}"
        )
    if impl == "for-loop":
        return {"foreach": False}
    if impl == "foreach":
        return {"foreach": True}
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices

        devices = set(_get_fused_kernels_supported_devices())
    except ImportError:  # a torch without the helper: the devices every recent torch fuses on
        devices = {"cuda"}
    ok = bool(params) and all(p.is_floating_point() and p.device.type in devices for p in params)
    if impl == "fused" and not ok:
        where = sorted({f"{p.device.type} {p.dtype}" for p in params})
        raise ConfigError(
            f"config key 'optimizer_impl': 'fused' is not available for parameters on "
            f"{', '.join(where)}; use 'auto' or 'foreach'"
        )
    return {"fused": True} if ok else {"foreach": True}


# ----- precision ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16 in this CPU's flags (Linux /proc/cpuinfo): bf16 matrix products
    run natively there (about 4x fp32 on a Zen 5); elsewhere oneDNN emulates them, far slower
    (measured ~10x slower than fp32 on an AVX2 machine, BENCHMARKS.md)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"fp32"`` or ``"bf16"`` for the config's ``precision`` on ``device``: ``auto`` picks bf16
    only where the hardware runs it natively (see :func:`cpu_has_native_bf16`; CUDA devices that
    report bf16 support)."""
    if precision not in PRECISIONS:
        raise ConfigError(
            f"config key 'precision': {precision!r} is not allowed; allowed values: {', '.join(PRECISIONS)}"
        )
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def autocast(precision: str, device: torch.device) -> ContextManager[object]:
    """The forward pass's context: bf16 autocast for a resolved ``"bf16"``, else nothing. Losses
    are computed on ``logits.float()`` and parameters and optimizer state stay fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(array: "np.ndarray", device: torch.device) -> torch.Tensor:
    """A batch for ``device``: on CUDA through pinned memory with a non-blocking copy (the copy
    overlaps the previous step's kernels), elsewhere a plain view of the array."""
    tensor = torch.from_numpy(array)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
