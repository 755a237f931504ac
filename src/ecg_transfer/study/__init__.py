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

from .plan import RunDef, plan_study, run_key
from .spec import StudySpec, load_spec, spec_from_dict

__all__ = ["RunDef", "StudySpec", "load_spec", "plan_study", "run_key", "spec_from_dict"]
