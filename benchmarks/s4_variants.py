"""The S4 run configs of the next GPU measurement (issue 14 §1), written from the committed configs:

    python benchmarks/s4_variants.py OUT_DIR        # OUT_DIR/<name>.json for every variant below

The committed configs (configs/ptbxl_s4_all.toml, configs/ptbxl_s4_diagnostic.toml) train 50 epochs
of one-cycle and keep the last epoch; measured on an H200, their fold-9 macro AUC peaked at epochs
25-30 and fell after (BENCHMARKS.md, "S4 on a GPU"), and both fold-10 targets were missed. The
variants change only what that measurement points at, each chosen on fold 9 alone (fold 10 is then
reported, never used):

- ``*_best``: the same recipe, keeping the epoch with the best fold-9 macro AUC (``keep = "best-val"``),
  validated every 2nd epoch (a validation costs about a third of an epoch on the GPU; the fold-9 curve
  is flat within a few epochs of its peak);
- ``s4_all_const``: the S4 ECG code's schedule, a constant rate of 1e-3 (one-cycle with
  ``div_factor = final_div_factor = 1`` and beta1 fixed at 0.9 is constant), also ``best-val``, for
  the same 50 epochs (that code trains 100).

Each file is a complete run config (``ecg-transfer config show FILE`` prints it); ``ecg-transfer
train FILE --run-dir DIR`` trains it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ecg_transfer.settings import RunConfig  # noqa: E402
from ecg_transfer.settings.run import load_config, save_config  # noqa: E402

BEST_VAL: dict[str, Any] = {"keep": "best-val", "validate_every": 2}
CONSTANT_LR: dict[str, Any] = {"div_factor": 1.0, "final_div_factor": 1.0, "base_momentum": 0.9, "max_momentum": 0.9}

#: name -> (committed config, top-level changes, [schedule] changes)
VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "s4_all_best": ("configs/ptbxl_s4_all.toml", BEST_VAL, {}),
    "s4_diagnostic_best": ("configs/ptbxl_s4_diagnostic.toml", BEST_VAL, {}),
    "s4_all_const": ("configs/ptbxl_s4_all.toml", BEST_VAL, CONSTANT_LR),
}


def variant(name: str, repo: Path = REPO) -> RunConfig:
    """The run config ``name`` of :data:`VARIANTS`, validated like any config file."""
    base_file, changes, schedule = VARIANTS[name]
    base = load_config(repo / base_file)
    if schedule:
        changes = {**changes, "schedule": {**base.schedule.explicit(), **schedule}}
    return base.replace(**changes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="folder for the <name>.json run configs")
    ap.add_argument("--names", nargs="+", choices=sorted(VARIANTS), default=sorted(VARIANTS))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        save_config(variant(name), args.out / f"{name}.json")
        print(args.out / f"{name}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
