"""Where a training step's time goes, and how close to the matmul peak the convolutions themselves get:

    python benchmarks/step_profile.py [--model xresnet1d101] [--steps 3] [--variants before channels_last after]

One training step of the engine (batch 128, 250-sample crops, 71 outputs, ``BCEWithLogitsLoss``,
AdamW) per variant of the speed settings (those of ``benchmarks/epoch_time.py``), profiled with
``torch.profiler`` after warm-up, its operators' self time grouped into convolution forward / backward, BatchNorm, element-wise,
optimizer and the rest. The matmul peak is measured in the same process (best ``torch.mm`` of
2048² and 4096² float32 matrices, taken before and after the profiles).

The ``conv-only ceiling`` is the throughput training would reach if everything but the
convolutions took no time at all: 128 samples / (convolution forward + backward time per step).
It bounds the fraction of the matmul peak any change outside the convolution kernels can reach;
what it shows is that on a small AVX2 CPU the convolutions of this network (64-512 channels over
8-125 samples) run well below the large-GEMM rate.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from epoch_time import VARIANTS  # this folder's: the same speed settings
from train_throughput import matmul_peak, train_flops_per_sample

GROUPS = (  # first match wins
    ("convolution backward", ("convolution_backward",)),
    ("convolution forward", ("mkldnn_convolution", "_convolution", "conv1d", "conv2d", "aten::convolution")),
    ("BatchNorm", ("batch_norm",)),
    ("optimizer", ("Optimizer.", "_foreach", "addcdiv", "addcmul", "lerp", "sqrt", "mul_", "add_", "div")),
    ("element-wise (ReLU, additions, pooling)", ("threshold", "relu", "clamp", "aten::add", "pool", "max", "mean")),
)


def group_of(name: str) -> str:
    for group, keys in GROUPS:
        if any(k in name for k in keys):
            return group
    return "other (allocation, copies, autograd, loss)"


def profile_variant(model_name: str, variant: str, steps: int, batch: int = 128, crop: int = 250) -> dict:
    from ecg_transfer.models import build
    from ecg_transfer.training.speed import optimizer_kernel, prepare_for_training

    settings = VARIANTS[variant]
    torch.manual_seed(0)
    model = build(model_name, 12, 71)
    net = prepare_for_training(model, settings["memory_format"])
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=1e-3,
        weight_decay=0.01,
        **optimizer_kernel(settings["optimizer_impl"], list(model.parameters())),
    )
    x, y = torch.randn(batch, 12, crop), (torch.rand(batch, 71) < 0.1).float()
    loss_fn = nn.BCEWithLogitsLoss()

    def step() -> None:
        loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    plain = (time.perf_counter() - t) / steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    groups: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages():
        groups[group_of(ev.key)] += ev.self_cpu_time_total / 1e6 / steps
    return {"step_s": plain, "profiled_step_s": sum(groups.values()), "groups": dict(groups)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="xresnet1d101")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = ap.parse_args()
    gflop_per_sample = train_flops_per_sample(args.model, 71, 128, 250) / 1e9
    peak = matmul_peak(reps=3)
    results = {v: profile_variant(args.model, v, args.steps) for v in args.variants}
    peak = max(peak, matmul_peak(reps=3))
    print(
        f"{args.model}: {gflop_per_sample:.4f} GFLOP per training sample; matmul peak {peak:.1f} GFLOP/s; "
        f"{torch.get_num_threads()} threads"
    )
    for variant, r in results.items():
        total = r["profiled_step_s"]
        sps = 128 / r["step_s"]
        print(
            f"\n{variant} ({VARIANTS[variant]}): {sps:.0f} samples/s unprofiled = {100 * sps * gflop_per_sample / peak:.0f} % of the "
            f"matmul peak; profiled step {total * 1e3:.0f} ms"
        )
        for g, s in sorted(r["groups"].items(), key=lambda kv: -kv[1]):
            print(f"  {g:<44}{s * 1e3:8.0f} ms {100 * s / total:6.1f} %")
        conv = r["groups"].get("convolution forward", 0.0) + r["groups"].get("convolution backward", 0.0)
        ceiling = 128 / conv
        print(
            f"  conv-only ceiling: {ceiling:.0f} samples/s = {100 * ceiling * gflop_per_sample / peak:.0f} % "
            f"of the matmul peak (convolutions at {128 * gflop_per_sample / conv:.0f} GFLOP/s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
