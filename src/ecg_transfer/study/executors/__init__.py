"""Where a study's runs execute. ``local`` (the default) is :class:`..runner.StudyRunner` in this
process, optionally one shard of the plan (``--shard``); ``slurm`` submits one SLURM job a run
(:mod:`.slurm`), each running the runner's own code for that run (:mod:`.job`).

    job.py     one run as a cluster job (the runner's ``run_one``; torchrun for several GPUs)
    slurm.py   ``--executor slurm``: submitit jobs with afterok dependencies, job records, states
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports

if TYPE_CHECKING:  # what mypy and IDEs read (and nothing else: a misspelt name is an error)
    from .job import RunJob as RunJob, RunNotDoneError as RunNotDoneError
    from .slurm import SlurmError as SlurmError, SlurmOptions as SlurmOptions, run_study_on_slurm as run_study_on_slurm
else:  # what runs: the same names, imported on first use (tests/test_lazy_imports.py keeps both equal)
    __getattr__, __dir__, __all__ = lazy_exports(
        __name__, {"job": ("RunJob", "RunNotDoneError"), "slurm": ("SlurmError", "SlurmOptions", "run_study_on_slurm")}
    )
