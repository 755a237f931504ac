"""A fake executor for the study's choice tests: each run writes validation and test predictions
whose quality depends on what the test says about the run (its arm and length, or its rate), so
the tests can make validation and test disagree and check that only validation chooses."""

from __future__ import annotations

import json
import zlib
from typing import Any, Callable, Mapping

import numpy as np

from ecg_transfer.predictions import save_predictions
from ecg_transfer.study.lengths import use_factors

LABELS = ["a", "b", "c"]


def fake_predictions(ids: list[str], strength: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels alternating by record and label; probabilities separated by ``strength`` plus noise."""
    y = np.array([[(i + k) % 2 == 0 for k in range(len(LABELS))] for i in range(len(ids))], dtype=np.uint8)
    rng = np.random.default_rng([seed, zlib.crc32(ids[0].encode())])
    z = strength * (2.0 * y - 1) + rng.normal(0, 1.0, y.shape)
    return y, 1 / (1 + np.exp(-z))


def fake_executor(
    quality: Mapping[tuple[str, float], tuple[float, float]], factor: str = "length"
) -> Callable[[Any, Any], None]:
    """An ``execute`` for :class:`~ecg_transfer.study.runner.StudyRunner`: ``quality`` maps (run kind,
    its length or its rate factor, as ``factor`` says) to (validation, test) strength; 1.0 elsewhere."""
    which = 0 if factor == "length" else 1

    def execute(runner: Any, run: Any) -> None:
        d = runner.store.run_dir(run.key)
        d.mkdir(parents=True, exist_ok=True)
        split = {"train": [f"tr{i}" for i in range(40)], "val": [f"v{i}" for i in range(60)]}
        split["test"] = [f"t{i}" for i in range(60)]
        val_q, test_q = quality.get((run.kind, use_factors(run.uses[0])[which]), (1.0, 1.0))
        for name, q in (("val", val_q), ("test", test_q)):
            y, p = fake_predictions(split[name], q, run.config["seed"])
            save_predictions(d / f"predictions_{name}.csv", split[name], LABELS, y, p)
        (d / "config.json").write_text(json.dumps(run.config))
        (d / "splits.json").write_text(json.dumps(split))

    return execute
