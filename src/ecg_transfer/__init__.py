"""ecg-transfer: transfer learning on 12-lead ECGs (PTB-XL -> CinC-format sets such as G12EC).

Data flows one way: raw files -> dataset adapter (``datasets``) -> cached arrays + label table
(``datasets.cache``) -> split -> training -> saved predictions -> evaluation -> report.

The Python API (``import ecg_transfer as et``; ``docs/api.md``), each name imported on first use:

- data: :func:`open_dataset` (``ptbxl`` or any CinC-format folder), :func:`summarise` /
  :func:`format_summary` (``ecg-transfer data summary``), :func:`load_or_build` (the signal cache),
  :func:`load_task` (a config's ``[task]`` as arrays, labels and splits);
- configs: :class:`RunConfig`, :func:`load_config`;
- training: :func:`pretrain`, :func:`finetune`, :func:`standalone`, :func:`train` (a config to a run
  directory, as the commands of the same names);
- a finished run: :func:`evaluate_run` / :func:`compare_runs` (metrics with bootstrap CIs from the
  saved predictions), :func:`predict` / :class:`Predictor`, :func:`explain`,
  :func:`write_model_card`, :func:`export_model`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from ._version import __version__ as __version__  # defined once, in pyproject.toml

if TYPE_CHECKING:  # what mypy and IDEs read (and nothing else: a misspelt name is an error)
    from .api import (
        explain as explain,
        finetune as finetune,
        predict as predict,
        pretrain as pretrain,
        standalone as standalone,
        train as train,
    )
    from .settings import RunConfig as RunConfig, load_config as load_config
    from .datasets.registry import open_dataset as open_dataset
    from .datasets.summary import format_summary as format_summary, summarise as summarise
    from .datasets.cache import load_or_build as load_or_build
    from .datasets.task import load_task as load_task
    from .evaluation.runs import compare_runs as compare_runs, evaluate_run as evaluate_run
    from .inference.predict import Predictor as Predictor
    from .inference.modelcard import write_model_card as write_model_card
    from .inference.export import export_model as export_model
    from .inference.explain import Explained as Explained
else:  # what runs: the same names, imported on first use (tests/test_lazy_imports.py keeps both equal)
    __getattr__, __dir__, __all__ = lazy_exports(
        __name__,
        {
            "api": ("explain", "finetune", "predict", "pretrain", "standalone", "train"),
            "settings": ("RunConfig", "load_config"),
            "datasets.registry": ("open_dataset",),
            "datasets.summary": ("format_summary", "summarise"),
            "datasets.cache": ("load_or_build",),
            "datasets.task": ("load_task",),
            "evaluation.runs": ("compare_runs", "evaluate_run"),
            "inference.predict": ("Predictor",),
            "inference.modelcard": ("write_model_card",),
            "inference.export": ("export_model",),
            "inference.explain": ("Explained",),
        },
    )
