"""Where a study's runs execute. ``local`` (the default) is :class:`..runner.StudyRunner` in this
process, optionally one shard of the plan (``--shard``); ``slurm`` submits one SLURM job a run
(:mod:`.slurm`), each running the runner's own code for that run (:mod:`.job`).

    job.py     one run as a cluster job (the runner's ``run_one``; torchrun for several GPUs)
    slurm.py   ``--executor slurm``: submitit jobs with afterok dependencies, job records, states
"""
