"""Self-supervised pre-training (``[ssl]`` in a run config): learn an encoder from unlabelled ECGs.

``ecg-transfer pretrain CONFIG --run-dir DIR`` with an ``[ssl]`` table trains the objective of
:mod:`.model` (contrastive, masked reconstruction or CPC) instead of BCE, on the train folds' signals
of the ``[task]`` set and any ``extra_tasks`` (:mod:`.data`; test folds are never read). The run
directory is an ordinary one -- ``config.json``, ``metrics.jsonl`` (train and validation SSL loss
per epoch), ``checkpoint.pt``, ``model.pt`` -- whose ``model.pt`` holds the backbone: the trained
encoder and an untrained classification head with one output and no label names, a placeholder
that ``ecg-transfer finetune CONFIG --from DIR`` replaces (every fine-tuning policy works).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports

if TYPE_CHECKING:  # what mypy and IDEs read (and nothing else: a misspelt name is an error)
    from .augment import make_augmenter as make_augmenter
    from .data import SslData as SslData, load_ssl_data as load_ssl_data
    from .model import SslModel as SslModel, nt_xent as nt_xent, ssl_validation_loss as ssl_validation_loss
else:  # what runs: the same names, imported on first use (tests/test_lazy_imports.py keeps both equal)
    __getattr__, __dir__, __all__ = lazy_exports(
        __name__,
        {
            "augment": ("make_augmenter",),
            "data": ("SslData", "load_ssl_data"),
            "model": ("SslModel", "nt_xent", "ssl_validation_loss"),
        },
    )
