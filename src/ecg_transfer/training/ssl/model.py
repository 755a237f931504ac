"""The self-supervised objectives, on the encoder of any backbone: ``SslModel(x)`` is a batch's loss.

Every model of :mod:`ecg_transfer.models` is ``head(body(x))``; the **encoder** is the body, the
part that fine-tuning keeps. It gives one representation per time step, ``(B, channels, steps)``,
and the head's own pooling turns that into one per window:

* ``xresnet1d*``: the stem and the four stages; ``64 * expansion`` channels at every 32nd sample
  (stride 2 in the stem, max-pool 2, stages 2-4 at stride 2: 8 steps for 2.5 s at 100 Hz, one
  every 0.32 s); window representation: max and mean over time side by side (``ConcatPool1d``).
* ``s4``: the input encoder (1x1 conv) and the bidirectional S4 blocks; ``d_model`` channels at
  every sample (no downsampling); window representation: mean over time.

(The other networks work the same way: whatever their body returns per step, their head pools.)

Objectives (``[ssl] method``):

``contrastive`` -- SimCLR (Chen et al. 2020) as adapted to 12-lead ECGs by Mehari & Strodthoff
    (2022): two augmented views of each crop (:mod:`.augment`) -> encoder -> window
    representation -> projection MLP (linear, ReLU, linear to ``projection_dim``) -> NT-Xent loss
    with ``temperature``: each view must pick its partner among the other ``2B - 2`` views of the
    batch. The projection is dropped after pre-training.
``masked`` -- masked reconstruction: spans of ``mask_seconds`` covering ``mask_ratio`` of each crop
    are set to 0 (the standardised mean) in every lead, and a per-step linear decoder reads each
    masked sample back from the encoder's representation of its step (for xresnet one step
    decodes its 32 samples x leads); the loss is the mean squared error over masked samples only,
    so the encoder must infer them from the context on both sides.
``cpc`` -- contrastive predictive coding (van den Oord et al. 2018; for ECGs Mehari & Strodthoff
    2022): each crop is cut into patches of ``patch_seconds`` and **each patch is encoded on its
    own** (encoder -> window representation ``z_t``), so that no encoding sees its neighbours'
    samples -- the backbones' receptive fields span most of a crop, and predicting a future step
    from encodings that already saw it would teach nothing. A GRU of ``context_dim`` reads
    ``z_1..z_t`` into a context ``c_t``; one linear map per step ahead ``k = 1..predict_steps``
    predicts ``z_{t+k}``, which must be picked (scaled dot product, cross-entropy) among the
    encodings of **all patches of the batch**: the other steps of the same record (hard
    negatives: same patient, same rhythm) and every patch of the other records. The GRU and the
    predictors are dropped after pre-training; fine-tuning reads whole crops with the encoder.

Under several processes each rank contrasts its own rows (negatives from the local batch).
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...models.base import EcgClassifier
from .augment import make_augmenter


class ProjectionHead(nn.Module):
    """Pool the encoder's steps into a window representation, then SimCLR's 2-layer MLP."""

    def __init__(self, pool: nn.Module, width: int, out: int):
        super().__init__()
        self.pool = pool
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, out))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.pool(h).flatten(1))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy: view ``i`` of one batch half must match
    view ``i`` of the other among all ``2B - 1`` others (cosine similarity / temperature)."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, partner)


class CpcHead(nn.Module):
    """CPC's parts beside the encoder: the pooling of a patch's steps into ``z_t``, the causal
    context network (GRU) and one linear predictor per step ahead (stacked in one layer)."""

    def __init__(self, pool: nn.Module, width: int, context_dim: int, predict_steps: int):
        super().__init__()
        self.pool = pool
        self.context = nn.GRU(width, context_dim, batch_first=True)
        self.predict = nn.Linear(context_dim, width * predict_steps)
        self.width, self.predict_steps = width, predict_steps

    def window(self, steps: torch.Tensor) -> torch.Tensor:
        """``(N, W)``: one encoding per patch, pooled over the encoder's steps of that patch."""
        return self.pool(steps).flatten(1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, n, predict_steps, W)``: from the context ``c_t`` of ``z`` (B, n, W), the
        predictions of ``z_{t+1} .. z_{t+predict_steps}``; ``c_t`` summarises ``z_1..z_t`` only
        (the GRU runs forwards)."""
        context, _ = self.context(z)
        return self.predict(context).view(*z.shape[:2], self.predict_steps, self.width)


def cpc_info_nce(z: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
    """Mean over steps ahead ``k`` of the cross-entropy of picking ``z[i, t + k]`` for the
    prediction ``predictions[i, t, k - 1]`` among all ``B * n`` encodings of ``z`` (B, n, W);
    scores are dot products / sqrt(W), so their scale does not grow with the width."""
    b, n, width = z.shape
    candidates = z.reshape(b * n, width).float().t()  # fp32 under bf16 autocast: raw dot products are large
    rows = torch.arange(b, device=z.device)[:, None] * n  # where each record's patches start
    losses = []
    for k in range(1, predictions.shape[2] + 1):
        queries = predictions[:, : n - k, k - 1].reshape(-1, width).float()  # (B * (n - k), W)
        target = (rows + torch.arange(k, n, device=z.device)[None, :]).reshape(-1)  # index of z[i, t + k]
        losses.append(F.cross_entropy(queries @ candidates / math.sqrt(width), target))
    return torch.stack(losses).mean()


def span_mask(batch: int, length: int, span: int, ratio: float) -> torch.Tensor:
    """``(batch, length)`` booleans: ``round(ratio * length / span)`` spans of ``span`` samples
    per row at random starts (they may overlap), so about ``ratio`` of each row is masked."""
    n_spans = max(1, round(ratio * length / span))
    starts = (torch.rand(batch, n_spans) * (length - span + 1)).floor().long()
    i = torch.arange(length)
    hit = (i[None, None, :] >= starts[:, :, None]) & (i[None, None, :] < starts[:, :, None] + span)
    return hit.any(dim=1)


class SslModel(nn.Module):
    """A backbone's encoder with a self-supervised head; ``forward(x)`` returns the batch's loss.

    ``backbone``: an :class:`~ecg_transfer.models.base.EcgClassifier`; its ``body`` is shared (the
    weights trained here are the backbone's), its head is not used. ``ssl``: the resolved
    ``[ssl]`` table; ``fs``: Hz; ``crop_len``: samples per crop; ``unit``: mV per standardised
    unit (the run's scaler std, for augmentation amplitudes in mV).
    """

    def __init__(self, backbone: EcgClassifier, ssl: Any, *, fs: float, crop_len: int, unit: float):
        super().__init__()
        self.body = backbone.body
        self.method = ssl.method
        self.n_leads = int(backbone.spec.get("in_channels", 12))
        with torch.no_grad():  # the encoder's output shape for one crop, in eval mode (no BN update)
            was = self.body.training
            self.body.eval()
            steps = self.body(torch.zeros(2, self.n_leads, crop_len))
            self.body.train(was)
            width = backbone.head.pool(steps).flatten(1).shape[1]
        if self.method == "contrastive":
            self.temperature = float(ssl.temperature)
            self.augment = make_augmenter(ssl, fs, unit)
            self.head: nn.Module = ProjectionHead(backbone.head.pool, width, int(ssl.projection_dim))
        elif self.method == "masked":
            self.samples_per_step = math.ceil(crop_len / steps.shape[-1])
            self.span = int(round(ssl.mask_seconds * fs))
            self.mask_ratio = float(ssl.mask_ratio)
            self.head = nn.Conv1d(steps.shape[1], self.n_leads * self.samples_per_step, 1)
        else:
            self.patch_len = int(round(ssl.patch_seconds * fs))
            self.head = CpcHead(backbone.head.pool, width, int(ssl.context_dim), int(ssl.predict_steps))

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The encoder, then the SSL head (what the training loop builds its optimizer from)."""
        return [list(self.body.parameters()), list(self.head.parameters())]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "contrastive":
            return self.contrastive_loss(x)
        if self.method == "masked":
            return self.masked_loss(x)
        return self.cpc_loss(x)

    def contrastive_loss(self, x: torch.Tensor) -> torch.Tensor:
        views = torch.cat([self.augment(x), self.augment(x)])  # one pass: BatchNorm sees both views
        z = self.head(self.body(views))
        return nt_xent(z[: len(x)], z[len(x) :], self.temperature)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's estimate of every sample ``(B, leads, T)`` from the encoder's steps."""
        b, c, t = x.shape
        out = self.head(self.body(x))  # (B, leads * per_step, steps)
        out = out.view(b, c, self.samples_per_step, -1).transpose(2, 3).reshape(b, c, -1)
        return out[:, :, :t]

    def patch_encodings(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, n, W)``: each of the crop's ``n`` whole patches encoded on its own (the patches
        of all records go through the encoder as one batch; a remainder shorter than a patch is dropped)."""
        b, c, t = x.shape
        n = t // self.patch_len
        patches = x[:, :, : n * self.patch_len].reshape(b, c, n, self.patch_len).transpose(1, 2)
        z = cast(CpcHead, self.head).window(self.body(patches.reshape(b * n, c, self.patch_len)))
        return z.view(b, n, -1)

    def cpc_loss(self, x: torch.Tensor) -> torch.Tensor:
        z = self.patch_encodings(x)
        return cpc_info_nce(z, self.head(z))

    def masked_loss(self, x: torch.Tensor) -> torch.Tensor:
        mask = span_mask(x.shape[0], x.shape[2], self.span, self.mask_ratio).to(x.device)[:, None, :]
        estimate = self.reconstruct(x.masked_fill(mask, 0.0))
        err = (estimate - x).square() * mask
        return err.sum() / (mask.sum() * x.shape[1]).clamp(min=1)


def ssl_validation_loss(
    model: SslModel,
    X: Any,
    rows: np.ndarray,
    *,
    scaler: Any,
    crop_len: int,
    batch_size: int,
    device: torch.device,
    seed: int,
) -> float:
    """Mean SSL loss over the centre crop of each record of ``rows`` (``X`` a RaggedSignals),
    with the model in eval mode and the random draws (views, masks) seeded by ``seed``: the same
    number for the same weights, and the training's random stream untouched. Records shorter than
    a crop are zero-padded (``train_run`` has refused them already unless ``short_records = "pad"``)."""
    from ..windows import extract_crops

    starts = np.maximum(X.lengths[rows] - crop_len, 0) // 2
    was = model.training
    model.eval()
    total, n = 0.0, 0
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for i in range(0, len(rows), batch_size):
                part = slice(i, i + batch_size)
                if len(rows[part]) < 2:  # one record: no negatives to contrast with
                    continue
                xb = torch.from_numpy(scaler.transform(extract_crops(X, rows[part], starts[part], crop_len)))
                total += float(model(xb.to(device))) * len(rows[part])
                n += len(rows[part])
    finally:
        model.train(was)
    return total / n if n else float("nan")


__all__ = ["CpcHead", "ProjectionHead", "SslModel", "cpc_info_nce", "nt_xent", "span_mask", "ssl_validation_loss"]
