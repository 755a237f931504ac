"""Tiny synthetic ECG-like data and a tiny model config for the training-engine tests.

Label k switches on a 10 Hz burst in lead k (on top of noise in every lead), so a small
convolutional network can learn it in a few epochs; labels are independent coin flips.
"""

from __future__ import annotations

import numpy as np

FS = 100.0
LABELS = ["A", "B", "C"]


def make_data(n: int = 64, c: int = 12, t: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, len(LABELS))) < 0.5).astype(np.uint8)
    Y[0] = 1  # every class has positives...
    Y[1] = 0  # ...and negatives
    X = rng.normal(0.0, 0.3, size=(n, c, t)).astype(np.float32) + 0.1
    tt = np.arange(t) / FS
    for k in range(len(LABELS)):
        phase = rng.uniform(0, 2 * np.pi, size=n)
        burst = np.sin(2 * np.pi * 10 * tt[None, :] + phase[:, None])
        X[:, k, :] += (Y[:, k, None] * 1.0 * burst).astype(np.float32)
    ids = [f"rec{i:03d}" for i in range(n)]
    perm = rng.permutation(n)
    n_train, n_val = int(0.625 * n), int(0.1875 * n)
    splits = {
        "train": np.sort(perm[:n_train]),
        "val": np.sort(perm[n_train : n_train + n_val]),
        "test": np.sort(perm[n_train + n_val :]),
    }
    return X, Y, ids, splits


def tiny_config(**overrides) -> dict:
    cfg = {
        "model": "fcn_wang",
        "model_kwargs": {"filters": [8, 8], "kernel_sizes": [5, 3], "head_hidden": [8], "head_dropout": 0.1},
        "fs": FS,
        "crop_seconds": 2.5,
        "stride_seconds": 1.25,
        "batch_size": 8,
        "epochs": 3,
        "seed": 1,
        "device": "cpu",
    }
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    ft = cfg.get("finetune") or {}
    staged = "stages" in ft or ft.get("policy") in ("head-then-all", "gradual")
    if "epochs" not in overrides and (staged or "epochs" in ft):
        del cfg["epochs"]  # the policy's stages (or finetune.epochs) decide; a top-level value would be refused
    return cfg


class Killed(Exception):
    """Stands in for a process killed right after an epoch's checkpoint was written."""


def kill_after(epoch: int):
    def callback(row, model):
        if row["epoch"] == epoch:
            raise Killed(epoch)

    return callback


def killed_after_first_epoch(run_dir, X, Y, ids, splits, **overrides) -> None:
    """A 2-epoch tiny run in ``run_dir`` killed after epoch 1's checkpoint (for resume tests)."""
    import pytest

    from ecg_transfer.training.run import train_run

    with pytest.raises(Killed):
        train_run(
            tiny_config(epochs=2, **overrides),
            X,
            Y,
            ids,
            splits,
            LABELS,
            run_dir,
            progress=False,
            callbacks=[kill_after(1)],
        )


def load_state(path):
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_state(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def without_seconds(rows):
    return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in rows]


def train_tiny_run(out, n: int = 48, t: int = 300):
    """A finished one-epoch run of the tiny model on synthetic data, for tests that need a run dir."""
    from ecg_transfer.training.run import train_run

    X, Y, ids, splits = make_data(n=n, t=t)
    train_run(tiny_config(epochs=1), X, Y, ids, splits, LABELS, out, progress=False)
    return out
