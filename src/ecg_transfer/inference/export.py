"""Export a run's network for use outside this package: ONNX or TorchScript.

What is exported is the *window-level* network with the run's standardisation built in: the graph
takes raw millivolt windows ``(batch, leads, crop_len)`` float32 (batch axis dynamic) and returns
per-window sigmoid probabilities ``(batch, K)``. A run with a frequency-domain ``input`` (spectrum,
log-spectrum, stft; :func:`ecg_transfer.signal.input_transform`) has its transform in the graph too,
written as real matrix products and a strided convolution (:class:`InputTransform`: fixed cosine and
sine kernels, no complex tensors, so both ONNX exporters and TorchScript take it); the verification
then also compares the file with the package's numpy/scipy path. What the graph cannot hold -- resampling a record to
the model's rate, cutting it into windows, aggregating the windows of a record, calibration,
thresholds -- is written to a JSON file beside it (``<file>.json``) for the caller to do;
:func:`exported_record_probs` does exactly that, as reference code and for the tests.

After writing, the file is loaded back (onnxruntime for ONNX, ``torch.jit.load`` for TorchScript)
and its probabilities compared with PyTorch's on random windows; the largest difference is recorded
in the JSON (``verification``). ONNX needs the ``export`` extra (``pip install ecg-transfer[export]``:
onnx, onnxruntime, onnxscript). With onnxscript installed the ONNX file is made by torch's
``torch.export``-based exporter (its default since torch 2.9, at its default opset), else by the
legacy TorchScript-based one. TorchScript is deprecated by PyTorch in favour of ``torch.export``
but still the simplest file a C++ or Java caller can load; its deprecation warnings are silenced here.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path, atomic_write_json
from ..models.base import EcgClassifier
from ..errors import ConfigError
from ..signal import (
    LOG_FLOOR,
    describe_input,
    input_transform,
    stft_bins,
    stft_frames,
    stft_geometry,
    transformed_shape,
)

FORMATS = ("onnx", "torchscript")
EXPORTERS = ("auto", "dynamo", "legacy")
INPUT_NAME, OUTPUT_NAME = "windows", "probabilities"
DEFAULT_FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}


#: Smallest power :func:`magnitude` takes the root of: float32's smallest normal number, so a real
#: magnitude is unchanged (its square root, 1.1e-19, is far below float32 rounding of any bin of a
#: standardised signal) while the gradient stays finite.
POWER_FLOOR = float(torch.finfo(torch.float32).tiny)


def magnitude(re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
    """``|re + i im|`` with a finite gradient everywhere. ``sqrt(re^2 + im^2)`` has an infinite
    derivative at 0, and ``0 * inf`` is NaN: a flat or missing lead (all its bins but DC are 0)
    would give NaN gradients and so NaN attributions. The power is clamped at :data:`POWER_FLOOR`
    first; below it the clamp passes no gradient (the magnitude of a zero bin does not move)."""
    return torch.sqrt((re * re + im * im).clamp_min(POWER_FLOOR))


class InputTransform(nn.Module):
    """:func:`ecg_transfer.signal.input_transform` in torch, for the exported graph.

    ``spectrum`` / ``log-spectrum``: the real DFT as two matrix products with fixed cosine and sine
    tables scaled by ``1/sqrt(n)`` (``norm="ortho"``), then :func:`magnitude` (and
    ``log(. + LOG_FLOOR)``). ``stft``: a ``conv1d`` with stride ``hop`` whose kernels are the Hann
    window (scaled to unit energy) times cosine and sine -- the frames lying inside the window,
    as :func:`ecg_transfer.signal.stft_spectrogram` takes them -- magnitude, log, channels lead-major. Equal to the numpy path to float32 rounding
    (the tests bound it). ``"time"`` is the identity.
    """

    cos: torch.Tensor  # buffers (register_buffer), by kind
    sin: torch.Tensor
    kernels: torch.Tensor

    def __init__(self, kind: str, fs: float, channels: int, crop_len: int):
        super().__init__()
        self.kind, self.channels, self.crop_len = kind, int(channels), int(crop_len)
        self.out_shape = transformed_shape(kind, fs, channels, crop_len)
        if kind in ("spectrum", "log-spectrum"):
            n = crop_len
            ang = 2 * np.pi * np.outer(np.arange(n), np.arange(n // 2 + 1)) / n  # (n, F), exact in float64
            self.register_buffer("cos", torch.from_numpy((np.cos(ang) / np.sqrt(n)).astype(np.float32)))
            self.register_buffer("sin", torch.from_numpy((np.sin(ang) / np.sqrt(n)).astype(np.float32)))
        elif kind == "stft":
            nperseg, hop = stft_geometry(fs)
            n_bins, frames = stft_bins(fs), stft_frames(fs, crop_len)
            from scipy.signal import get_window

            win = get_window("hann", nperseg)
            ang = 2 * np.pi * np.outer(np.arange(n_bins), np.arange(nperseg)) / nperseg  # (F, m)
            kernels = np.concatenate([win * np.cos(ang), win * np.sin(ang)]) / np.sqrt(np.sum(win**2))  # (2F, m)
            self.register_buffer("kernels", torch.from_numpy(kernels[:, None, :].astype(np.float32)))
            self.hop, self.n_bins, self.frames = hop, n_bins, frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "time":
            return x
        if self.kind in ("spectrum", "log-spectrum"):
            mag = magnitude(x @ self.cos, x @ self.sin)
            return torch.log(mag + LOG_FLOOR) if self.kind == "log-spectrum" else mag
        z = torch.nn.functional.conv1d(x.reshape(-1, 1, self.crop_len), self.kernels, stride=self.hop)  # (B*C, 2F, N)
        out = torch.log(magnitude(z[:, : self.n_bins], z[:, self.n_bins :]) + LOG_FLOOR)
        return out.reshape(-1, self.channels * self.n_bins, self.frames)


class WindowProbabilities(nn.Module):
    """``sigmoid(model(transform((x - mean) / std)))``: raw mV windows in, per-window probabilities out.

    The standardisation is the scaler's own arithmetic (float32 subtract, float32 divide), so the
    exported graph reproduces :meth:`GlobalStandardScaler.transform`, the run's input transform
    (:class:`InputTransform`; identity for ``input = "time"``) and the network.
    """

    mean: torch.Tensor  # buffers (register_buffer)
    std: torch.Tensor

    def __init__(self, model: EcgClassifier, mean: float, std: float, transform: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.transform = transform if transform is not None else nn.Identity()
        self.register_buffer("mean", torch.tensor(np.float32(mean)))
        self.register_buffer("std", torch.tensor(np.float32(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(self.transform((x - self.mean) / self.std)))


def window_module(loaded: Any) -> WindowProbabilities:
    """The exportable module of a loaded run (eval mode, on CPU)."""
    transform = None
    if loaded.input != "time":
        transform = InputTransform(loaded.input, loaded.fs, loaded.n_leads, loaded.crop_len)
    return WindowProbabilities(loaded.model.cpu(), loaded.scaler.mean_, loaded.scaler.std_, transform).eval()


@torch.no_grad()
def package_window_probs(loaded: Any, windows: np.ndarray) -> np.ndarray:
    """Per-window probabilities the package's own way (scaler, numpy/scipy transform, network): the
    reference an exported file is checked against."""
    x = input_transform(loaded.input, loaded.fs)(loaded.scaler.transform(np.asarray(windows, dtype=np.float32)))
    return torch.sigmoid(loaded.model.cpu().eval()(torch.from_numpy(np.ascontiguousarray(x)))).numpy()


@dataclass
class ExportResult:
    path: Path
    metadata_path: Path
    metadata: dict[str, Any]


def metadata_path(path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _example_windows(loaded: Any, n: int, seed: int = 0) -> torch.Tensor:
    """Random windows on the scale of the training signals (the scaler's mean and std)."""
    g = np.random.default_rng(seed)
    x = g.normal(loaded.scaler.mean_, loaded.scaler.std_, size=(n, int(loaded.n_leads), loaded.crop_len))
    return torch.from_numpy(x.astype(np.float32))


def _pick_exporter(exporter: str) -> str:
    if exporter not in EXPORTERS:
        raise ConfigError(f"exporter {exporter!r} is not allowed; allowed: {', '.join(EXPORTERS)}")
    has_onnxscript = importlib.util.find_spec("onnxscript") is not None
    if exporter == "auto":
        return "dynamo" if has_onnxscript else "legacy"
    if exporter == "dynamo" and not has_onnxscript:
        raise ConfigError(
            "the dynamo ONNX exporter needs onnxscript: pip install 'ecg-transfer[export]', or use --exporter legacy"
        )
    return exporter


def _export_onnx(module: nn.Module, example: torch.Tensor, tmp: Path, exporter: str, opset: int | None) -> None:
    if importlib.util.find_spec("onnx") is None:
        raise ConfigError(
            "ONNX export needs the onnx package: pip install 'ecg-transfer[export]' (onnx, onnxruntime, onnxscript)"
        )
    kw: dict[str, Any] = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset)
    # torch's exporter logs a warning per torchvision operator it cannot register: noise for an ECG model
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                torch.onnx.export(
                    module,
                    (example,),
                    str(tmp),
                    dynamo=True,
                    external_data=False,
                    verbose=False,
                    dynamic_shapes=({0: torch.export.Dim("batch")},),
                    **kw,
                )
            else:
                torch.onnx.export(
                    module,
                    (example,),
                    str(tmp),
                    dynamo=False,
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                    **kw,
                )
    finally:
        registration.setLevel(level)


def _export_torchscript(module: nn.Module, example: torch.Tensor, tmp: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, example, check_trace=False)
        torch.jit.save(traced, str(tmp))


def load_exported(path: str | Path, fmt: str | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function from raw mV windows ``(batch, leads, crop_len)`` to per-window probabilities, running
    the exported file with onnxruntime (ONNX) or ``torch.jit.load`` (TorchScript). The format is
    ``fmt``, else the one its JSON names, else ``.onnx`` files are ONNX."""
    path = Path(path)
    if fmt is None:
        meta = metadata_path(path)
        fmt = json.loads(meta.read_text(encoding="utf-8")).get("format") if meta.exists() else None
        fmt = fmt or ("onnx" if path.suffix.lower() == ".onnx" else "torchscript")
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("running an ONNX file needs onnxruntime: pip install 'ecg-transfer[export]'") from None
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def run_onnx(windows: np.ndarray) -> np.ndarray:
            return session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(windows, dtype=np.float32)})[0]

        return run_onnx
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        script = torch.jit.load(str(path), map_location="cpu")
    script.eval()

    @torch.no_grad()
    def run_script(windows: np.ndarray) -> np.ndarray:
        return script(torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))).numpy()

    return run_script


def exported_record_probs(
    path: str | Path, X: np.ndarray, lengths: np.ndarray | None = None, batch_size: int = 256
) -> np.ndarray:
    """Record probabilities ``(n, K)`` from an exported file and its JSON, for ``X`` ``(n, leads, T)``
    mV already at the model's rate with leads in its order: windows and aggregation as the JSON says."""
    from ..training.windows import aggregate_windows, sliding_windows

    meta = json.loads(metadata_path(path).read_text(encoding="utf-8"))
    run = load_exported(path)
    rows = np.arange(X.shape[0])
    windows, counts = sliding_windows(X, rows, meta["crop_len"], meta["stride"], lengths=lengths)
    probs = np.concatenate([run(windows[i : i + batch_size]) for i in range(0, len(windows), batch_size)])
    return aggregate_windows(probs, counts, meta["aggregate"])


def _onnx_opset(path: Path) -> int | None:
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    except Exception:  # the opset is information, not a requirement
        return None


def _verify_export(loaded: Any, module: torch.nn.Module, out: Path, fmt: str, verify_windows: int) -> dict[str, Any]:
    """The exported file run by its runtime on fresh windows, against the PyTorch module (and, for a
    transformed input, against the package's own numpy/scipy transform)."""
    windows = _example_windows(loaded, verify_windows, seed=2)
    with torch.no_grad():
        ref = module(windows).numpy()
    try:
        got = load_exported(out, fmt)(windows.numpy())
        check = {
            "max_abs_diff": float(np.abs(got - ref).max()),
            "windows": verify_windows,
            "against": "PyTorch, the same module",
            "runtime": "onnxruntime" if fmt == "onnx" else "torch.jit",
        }
        if loaded.input != "time":  # the graph's transform against the numpy/scipy one the run used
            check["max_abs_diff_package"] = float(np.abs(got - package_window_probs(loaded, windows.numpy())).max())
    except ConfigError as exc:
        check = {"skipped": str(exc)}
    return check


def _export_metadata(
    loaded: Any, out: Path, fmt: str, used: str, run_dir: Path, cal: Any, thr: Any, check: dict[str, Any] | None
) -> dict[str, Any]:
    """``<out>.json``: everything a user of the file needs (input, output, the steps around the graph)."""
    C, L = int(loaded.n_leads), loaded.crop_len
    from .predict import expected_leads

    leads = expected_leads(C)
    meta: dict[str, Any] = {
        "format": fmt,
        "file": out.name,
        "exporter": used,
        "torch": torch.__version__,
        "opset": _onnx_opset(out) if fmt == "onnx" else None,
        "source_run": str(run_dir),
        "model": loaded.spec.get("name"),
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", C, L],
            "dtype": "float32",
            "units": "mV",
            "leads": list(leads) if leads else None,
            "note": "raw millivolts: the run's standardisation is inside the graph"
            + (f", and its input transform ({loaded.input})" if loaded.input != "time" else ""),
        },
        "network_input": {
            "kind": loaded.input,
            "description": describe_input(loaded.input, loaded.fs),
            "shape": ["batch", *transformed_shape(loaded.input, loaded.fs, C, L)],
            "in_graph": True,
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["batch", len(loaded.label_names)],
            "meaning": "per-window sigmoid probabilities, one column per label",
        },
        "labels": list(loaded.label_names),
        "fs": loaded.fs,
        "crop_len": L,
        "crop_seconds": L / loaded.fs,
        "stride": loaded.stride,
        "stride_seconds": loaded.stride / loaded.fs,
        "aggregate": loaded.aggregate,
        "scaler": {"mean": loaded.scaler.mean_, "std": loaded.scaler.std_, "applied_in_graph": True},
        "calibration": cal.to_dict() if cal is not None else None,
        "thresholds": thr.to_dict() if thr is not None else None,
        "steps": [
            f"resample each record to {loaded.fs:g} Hz (scipy.signal.resample_poly, polyphase anti-aliased)",
            f"put its leads in this order: {', '.join(leads) if leads else f'the training order ({C} leads)'}",
            f"cut windows of {L} samples starting at 0, {loaded.stride}, {2 * loaded.stride}, ... while a whole "
            f"window fits (records shorter than {L} samples cannot be predicted)",
            "run the windows through the graph (any batch size)"
            + (f"; it standardises and transforms them ({loaded.input}) itself" if loaded.input != "time" else ""),
            f"aggregate the windows of a record by their {loaded.aggregate}, per label",
            "calibration: apply 'calibration' (ecg_transfer.evaluation.calibration) to the record probabilities"
            if cal is not None
            else "calibration: none",
            "decision: probability >= the label's threshold" if thr is not None else "thresholds: none exported",
        ],
        "verification": check,
    }
    return meta


def export_model(
    run_dir: str | Path,
    fmt: str,
    out: str | Path | None = None,
    *,
    threshold: str | float | None = None,
    calibrate: str | None = None,
    exporter: str = "auto",
    opset: int | None = None,
    verify: bool = True,
    verify_windows: int = 8,
) -> ExportResult:
    """Export ``RUN_DIR/model.pt`` as ``fmt`` (onnx | torchscript) to ``out`` (default
    ``RUN_DIR/export/model.onnx`` or ``model.torchscript.pt``) and write ``<out>.json`` beside it."""
    from ..training.modelfile import load_model_file, resolve_model_path
    from .predict import load_run_calibrator
    from .thresholds import run_thresholds

    if fmt not in FORMATS:
        raise ConfigError(f"export format {fmt!r} is not allowed; allowed: {', '.join(FORMATS)}")
    model_path = resolve_model_path(run_dir)
    run_dir = model_path.parent
    loaded = load_model_file(model_path)
    out = Path(out) if out is not None else run_dir / "export" / DEFAULT_FILES[fmt]
    cal = load_run_calibrator(run_dir, calibrate, len(loaded.label_names)) if calibrate else None
    thr = run_thresholds(run_dir, threshold, loaded.label_names, cal, calibrate) if threshold is not None else None

    module = window_module(loaded)
    example = _example_windows(loaded, 2, seed=1)
    used = "torch.jit.trace" if fmt == "torchscript" else _pick_exporter(exporter)
    with torch.no_grad(), atomic_path(out) as tmp:
        if fmt == "onnx":
            _export_onnx(module, example, tmp, used, opset)
        else:
            _export_torchscript(module, example, tmp)

    check = _verify_export(loaded, module, out, fmt, verify_windows) if verify else None
    meta = _export_metadata(loaded, out, fmt, used, run_dir, cal, thr, check)
    meta_path = metadata_path(out)
    atomic_write_json(meta_path, meta)
    return ExportResult(out, meta_path, meta)


__all__ = [
    "DEFAULT_FILES",
    "EXPORTERS",
    "FORMATS",
    "ExportResult",
    "InputTransform",
    "WindowProbabilities",
    "export_model",
    "exported_record_probs",
    "load_exported",
    "metadata_path",
    "package_window_probs",
    "window_module",
]
