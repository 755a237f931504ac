"""The transfer study: a spec file, the runs it needs (each keyed by its definition), running them
resumably (optionally sharded over machines), and the results the report is made from.

    spec.py     the TOML spec, validated, with profiles (``laptop``, ``smoke``)
    plan.py     spec -> run definitions (pre-training, fine-tuned, standalone), deduplicated by key
    store.py    STUDY_DIR/runs/<key>/: state, the completion marker and what it vouches for
    locks.py    one process per run: flock leases or O_EXCL lock files, heartbeat thread, owner-only release
    runner.py   ``study run``: train what is missing, record failures, shard
    results.py  STUDY_DIR/results.json from the saved predictions
    cli.py      ``ecg-transfer study run|status|plan``
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # what mypy and IDEs read (and nothing else: a misspelt name is an error)
    from .plan import RunDef as RunDef, plan_study as plan_study, run_key as run_key
    from .spec import StudySpec as StudySpec, load_spec as load_spec, spec_from_dict as spec_from_dict
else:  # what runs: the same names, imported on first use (tests/test_lazy_imports.py keeps both equal)
    __getattr__, __dir__, __all__ = lazy_exports(
        __name__, {"plan": ("RunDef", "plan_study", "run_key"), "spec": ("StudySpec", "load_spec", "spec_from_dict")}
    )
