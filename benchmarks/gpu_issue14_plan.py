"""What fits in the time left of benchmarks/gpu_issue14.sh's last call, from the per-step costs that
its first call measured on the same GPU (benchmarks/model_epoch_cost.py --device cuda):

    python benchmarks/gpu_issue14_plan.py COST_S4.json COST_SSL.json SECONDS_LEFT

prints ``DIAGNOSTIC SSL_EPOCHS``: whether the S4 diagnostic run fits beside the S4 "all" run (1/0),
and how many epochs the self-supervised run gets (0: none). Priorities: S4 "all" (the issue's first
target) always runs; then the diagnostic run if it leaves room for 50 SSL epochs; the rest goes to
the SSL run (at most --max-ssl-epochs; below 20 epochs it is not worth a run). The jobs share one GPU,
so their costs are added (serial time), and only ``SAFETY`` of the time left is planned: a job cut
at the deadline leaves nothing usable (one-cycle schedule).
"""

from __future__ import annotations

import json
import math
import sys

S4_EPOCHS, S4_VALIDATIONS = 50, 10 + 2  # validate_every 5, plus the test predictions and one spare (an over-estimate)
TRAIN_RECORDS, VAL_RECORDS = 17_441, 2_193  # PTB-XL folds 1-8 and 9 (task all)
SAFETY, MIN_SSL, FOR_DIAG_SSL, MAX_SSL = 0.8, 20, 50, 200


def _row(path: str, model: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        meta = json.load(fh)
    return next(r for r in meta["rows"] if r["model"] == model) | {"batch": meta["args"]["batch_size"]}


def run_seconds(row: dict, epochs: int, validations: int) -> float:
    steps = TRAIN_RECORDS // row["batch"]
    return epochs * steps * row["seconds_per_step_median"] + validations * VAL_RECORDS * row["val_seconds_per_record"]


def plan(s4: dict, ssl: dict, left: float) -> tuple[int, int]:
    room = SAFETY * left - run_seconds(s4, S4_EPOCHS, S4_VALIDATIONS)
    ssl_epoch = run_seconds(ssl, 1, 0)
    s4_run = run_seconds(s4, S4_EPOCHS, S4_VALIDATIONS)
    diagnostic = int(room - s4_run >= FOR_DIAG_SSL * ssl_epoch)
    room -= diagnostic * s4_run
    epochs = min(MAX_SSL, math.floor(max(room, 0) / ssl_epoch))
    return diagnostic, epochs if epochs >= MIN_SSL else 0


def main(argv: list[str]) -> int:
    s4, ssl = _row(argv[1], "s4"), _row(argv[2], "xresnet1d18")
    diagnostic, epochs = plan(s4, ssl, float(argv[3]))
    print(
        f"plan: S4 run ≈ {run_seconds(s4, S4_EPOCHS, S4_VALIDATIONS):.0f} s, SSL epoch ≈ {run_seconds(ssl, 1, 0):.1f} s",
        file=sys.stderr,
    )
    print(diagnostic, epochs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
