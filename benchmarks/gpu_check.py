"""GPU check, run by ``benchmarks/gpu_check.sh`` on a CUDA machine (under 5 minutes): training
throughput of xresnet1d101 at 100 Hz in fp32 and bf16 (the engine's own ``fit``), a 1-process DDP
run through ``train_run`` under torchrun (NCCL), and batch prediction (records/s).

    python benchmarks/gpu_check.py train      # fit: fp32 and bf16 samples/s (and compile, --compile)
    torchrun --standalone --nproc_per_node=1 benchmarks/gpu_check.py ddp
    python benchmarks/gpu_check.py predict    # predict_records: records/s, fp32 and bf16

Synthetic ECG-shaped data (random, 10 s at 100 Hz, 12 leads, 44 labels): the numbers measure speed,
not accuracy. Every line printed starts with ``gpu_check:`` so the shell script can collect them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ecg_transfer.settings import RunConfig
from ecg_transfer.training.finetune import resolve_stages
from ecg_transfer.training.loop import fit
from ecg_transfer.training.predict import predict_records
from ecg_transfer.training.scaler import GlobalStandardScaler
from ecg_transfer.training.speed import resolve_precision


def data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.5, (n, 12, 1000)).astype(np.float32), (rng.random((n, 44)) < 0.1).astype(np.uint8))


def say(text: str) -> None:
    print(f"gpu_check: {text}", flush=True)


def train(args: argparse.Namespace) -> None:
    from ecg_transfer import models

    X, Y = data(128 * args.batches)
    scaler = GlobalStandardScaler().fit(X, np.arange(len(X)))
    for precision in ("fp32", "bf16"):
        for compile_mode in ("none", "default") if args.compile else ("none",):
            cfg = RunConfig(device="cuda", epochs=1, precision=precision, compile=compile_mode, validate_every=1)
            model = models.build("xresnet1d101", 12, 44)
            t0 = time.perf_counter()
            fit(
                model,
                X,
                Y,
                np.arange(len(X)),
                np.arange(0),
                config=cfg,
                stages=resolve_stages(cfg),
                scaler=scaler,
                run_dir=None,
                resume=False,
                device="cuda",
                progress=False,
            )
            torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            say(
                f"fit xresnet1d101 100 Hz {precision} compile={compile_mode}: {len(X) / seconds:.0f} samples/s "
                f"({len(X)} samples in {seconds:.1f} s, first-step compilation included)"
            )


def ddp(args: argparse.Namespace) -> None:
    from ecg_transfer.training.run import train_run

    X, Y = data(512)
    ids = [f"r{i}" for i in range(len(X))]
    splits = {"train": np.arange(0, 384), "val": np.arange(384, 448), "test": np.arange(448, 512)}
    cfg = {"model": "xresnet1d101", "epochs": 2, "device": "cuda", "precision": "auto", "seed": 0}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = train_run(cfg, X, Y, ids, splits, [f"L{k}" for k in range(44)], Path(tmp) / "run", progress=False)
        seconds = time.perf_counter() - t0
    if result.world_size >= 1 and torch.distributed.is_available():
        say(
            f"DDP train_run: {result.world_size} process(es), backend from torchrun, 2 epochs of 384 records in "
            f"{seconds:.1f} s, test macro AUC {result.test_macro_auc} (random labels: ~0.5 expected)"
        )


def predict(args: argparse.Namespace) -> None:
    from ecg_transfer import models

    X, _ = data(args.records)
    scaler = GlobalStandardScaler().fit(X, np.arange(len(X)))
    model = models.build("xresnet1d101", 12, 44).to("cuda")
    for precision in ("fp32", "bf16"):
        resolved = resolve_precision(precision, torch.device("cuda"))
        predict_records(
            model,
            X[:64],
            np.arange(64),
            scaler=scaler,
            crop_len=250,
            stride=125,
            device="cuda",
            batch_size=1024,
            precision=resolved,
        )  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        predict_records(
            model,
            X,
            np.arange(len(X)),
            scaler=scaler,
            crop_len=250,
            stride=125,
            device="cuda",
            batch_size=1024,
            precision=resolved,
        )
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        say(f"predict xresnet1d101 100 Hz {resolved}: {len(X) / seconds:.0f} records/s (7 windows each)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["train", "ddp", "predict"])
    parser.add_argument("--batches", type=int, default=20, help="training batches of 128 (train)")
    parser.add_argument("--records", type=int, default=4096, help="records to predict (predict)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (train)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        say("no CUDA device: nothing to check")
        return 2
    say(
        f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"bf16 supported: {torch.cuda.is_bf16_supported()}"
    )
    {"train": train, "ddp": ddp, "predict": predict}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
