"""Before a study trains: is any target record a copy of a pre-training record?

The PhysioNet/CinC collections re-distribute records of other sets (CinC 2021 holds PTB-XL's), and
a fine-tuned arm tested on a record its pre-training saw measures memory, not transfer. ``study
run`` audits the source and target folders once (:func:`ecg_transfer.datasets.audit.find_duplicates`,
kept in ``STUDY_DIR/audit/`` and redone when a folder's files change) and, for every target record
that duplicates a PTB-XL record of the pre-training folds, warns with the count -- or, with
``[study] leakage = "strict"``, refuses to start. Every target record is checked, not one split's
test set: experiment 1 tests on nearly every record in one repeat or another.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..atomic import atomic_write_json
from ..errors import DatasetError
from .spec import StudySpec

AUDIT_DIR = "audit"


def _audit(spec: StudySpec, study_dir: Path, echo: Callable[[str], None]):
    from ..datasets.audit import find_duplicates, load_audit
    from ..datasets.registry import open_dataset

    src, tgt = spec.settings.source, spec.settings.target
    adapters = [open_dataset(src.dataset, src.root), open_dataset(tgt.dataset, tgt.root)]
    inputs = {
        "roots": [str(Path(src.root).resolve()), str(Path(tgt.root).resolve())],
        "fingerprints": [a.fingerprint() for a in adapters],
    }
    folder = study_dir / AUDIT_DIR
    try:
        if json.loads((folder / "inputs.json").read_text()) == json.loads(json.dumps(inputs, default=str)):
            return load_audit(folder / "audit.json"), adapters
    except (OSError, ValueError, KeyError):
        pass
    echo(f"leakage audit: {src.root} and {tgt.root} (each record read once; kept in {folder}) ...")
    result = find_duplicates([src.root, tgt.root])
    folder.mkdir(parents=True, exist_ok=True)
    result.write(folder / "audit.json")
    atomic_write_json(folder / "inputs.json", inputs)
    return result, adapters


def check_leakage(spec: StudySpec, study_dir: str | Path, echo: Callable[[str], None] = print) -> list[tuple]:
    """The (source record, target record) pairs of the same signal, after warning (or raising
    DatasetError with ``leakage = "strict"``); nothing is checked with ``leakage = "off"``."""
    from ..datasets.audit import leaked_records

    mode = spec.settings.study.leakage
    if mode == "off":
        return []
    src, tgt = spec.settings.source, spec.settings.target
    result, (source, target) = _audit(spec, Path(study_dir), echo)
    source_index = source.index()
    pretraining = source_index[source_index["fold"].isin(range(1, 9))]  # folds 1-8: every share's pool
    leaks = leaked_records(
        [(src.root, r) for r in pretraining["record_id"]], [(tgt.root, r) for r in target.index()["record_id"]], result
    )
    if not leaks:
        echo(f"leakage audit: no {tgt.name} record duplicates a PTB-XL pre-training record")
        return leaks
    shown = ", ".join(f"{t[1]} = PTB-XL {s[1]}" for s, t in leaks[:5])
    n = len({t for _, t in leaks})
    message = (
        f"{n} {tgt.name} record(s) are copies of PTB-XL pre-training records ({shown}"
        f"{', ...' if len(leaks) > 5 else ''}; all in {Path(study_dir) / AUDIT_DIR / 'audit.json'}): a test set "
        "holding them measures memory, not transfer. Remove them from the target folder, or set "
        '[study] leakage = "off" to go on knowingly'
    )
    if mode == "strict":
        raise DatasetError(message)
    echo(f"WARNING: {message}")
    return leaks


__all__ = ["AUDIT_DIR", "check_leakage"]
