"""``model.pt``: a trained model that loads on its own -- weights plus everything needed to use them.

Besides the weights it holds the model's build spec (registry name and arguments, see
``ecg_transfer.models.build``), the label names in output order, the fitted scaler, the sampling
rate, crop and stride lengths, the aggregation and the run's config -- whose ``input`` says how each
standardised window is transformed before the network (absent in files written before the key:
``"time"``) -- so prediction on new records reproduces the run's preprocessing exactly. The spec's
``in_channels`` counts the network's input channels; :attr:`LoadedModel.n_leads` the signal's leads.
Only plain types and tensors are stored, so it loads with ``torch.load(..., weights_only=True)`` (no
pickled code runs when opening someone's file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import ConfigError
from .. import models
from ..signal import INPUT_KINDS, input_leads, input_transform
from .scaler import GlobalStandardScaler

MODEL_FILE = "model.pt"
MODEL_FORMAT = "ecg_transfer.model/1"


@dataclass
class LoadedModel:
    model: nn.Module
    label_names: list[str]
    scaler: GlobalStandardScaler
    fs: float
    crop_len: int
    stride: int
    aggregate: str
    spec: dict[str, Any]
    config: dict[str, Any]

    @property
    def input(self) -> str:
        """The run's per-window input transform (RunConfig ``input``); older files: ``"time"``."""
        return str(self.config.get("input", "time"))

    @property
    def n_leads(self) -> int:
        """Leads of the records the model takes (the network's channels, unless ``input = "stft"``)."""
        return input_leads(self.input, self.fs, int(self.spec["in_channels"]))

    def predict(
        self,
        X: np.ndarray,
        indices: Sequence[int] | None = None,
        *,
        lengths: np.ndarray | None = None,
        short: str = "error",
        batch_size: int = 128,
        device: str | torch.device = "cpu",
    ) -> np.ndarray:
        """Record-level probabilities ``(n, K)`` for ``X`` (N, C, T) in mV at ``self.fs``, the run's way."""
        from .predict import predict_records
        from .speed import resolve_precision

        idx = np.arange(X.shape[0]) if indices is None else np.asarray(indices)
        self.model.to(device)
        precision = resolve_precision(self.precision, torch.device(device))
        probs, _ = predict_records(
            self.model,
            X,
            idx,
            scaler=self.scaler,
            crop_len=self.crop_len,
            stride=self.stride,
            aggregate=self.aggregate,
            batch_size=batch_size,
            device=device,
            lengths=lengths,
            short=short,
            transform=input_transform(self.input, self.fs),
            precision=precision,
        )
        return probs

    @property
    def precision(self) -> str:
        """The run's forward-pass precision (RunConfig ``precision``; older files: ``"fp32"``):
        prediction follows it; export is always fp32."""
        return str(self.config.get("precision", "fp32"))


def _plain(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


def save_model_file(
    path: str | Path,
    model: nn.Module,
    *,
    label_names: Sequence[str],
    scaler: GlobalStandardScaler,
    fs: float,
    crop_len: int,
    stride: int,
    aggregate: str,
    config: dict[str, Any],
) -> Path:
    spec = _plain(dict(getattr(model, "spec", {})))
    if "name" not in spec:
        raise ValueError("model has no build spec (model.spec); build it with ecg_transfer.models.build")
    obj = {
        "format": MODEL_FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "spec": spec,
        "label_names": [str(l) for l in label_names],
        "scaler": scaler.to_dict(),
        "fs": float(fs),
        "crop_len": int(crop_len),
        "stride": int(stride),
        "aggregate": aggregate,
        "config": _plain(config),
    }
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def resolve_model_path(path: str | Path) -> Path:
    """Accept a run directory or the ``model.pt`` inside it."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise ConfigError(
            f"no trained model at {path} (expected a run directory holding {MODEL_FILE}, "
            "or the file itself; is the pre-training run finished?)"
        )
    return path


def load_model_file(
    path: str | Path, map_location: str | torch.device = "cpu", *, encoder_ok: bool = False
) -> LoadedModel:
    """The model and everything needed to use it. A self-supervised (``[ssl]``) run's model.pt is an
    encoder whose head is an untrained placeholder: only fine-tuning may load it (``encoder_ok``);
    predicting, exporting or explaining with it is refused with what to do instead."""
    path = resolve_model_path(path)
    obj = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(obj, dict) or obj.get("format") != MODEL_FORMAT:
        raise ConfigError(
            f"{path}: not an ecg_transfer model file (format {obj.get('format') if isinstance(obj, dict) else None!r})"
        )
    if not encoder_ok and dict(obj.get("config") or {}).get("ssl") is not None:
        raise ConfigError(
            f"{path} is a self-supervised encoder (its head is an untrained placeholder, it predicts no "
            f"labels): fine-tune it first, `ecg-transfer finetune CONFIG --from {path.parent}`"
        )
    spec = dict(obj["spec"])
    kind = dict(obj.get("config") or {}).get("input", "time")
    if kind not in INPUT_KINDS:
        raise ConfigError(
            f"{path}: the model's input {kind!r} is unknown to this version of ecg_transfer; "
            f"known: {', '.join(INPUT_KINDS)}"
        )
    kwargs = {k: v for k, v in spec.items() if k not in ("name", "in_channels", "n_classes")}
    model = models.build(spec["name"], spec["in_channels"], spec["n_classes"], **kwargs)
    model.load_state_dict(obj["state_dict"])
    return LoadedModel(
        model=model,
        label_names=list(obj["label_names"]),
        scaler=GlobalStandardScaler.from_dict(obj["scaler"]),
        fs=float(obj["fs"]),
        crop_len=int(obj["crop_len"]),
        stride=int(obj["stride"]),
        aggregate=str(obj["aggregate"]),
        spec=spec,
        config=dict(obj["config"]),
    )
