"""Self-supervised pre-training (``[ssl]`` in a run config): learn an encoder from unlabelled ECGs.

``ecg-transfer pretrain CONFIG --run-dir DIR`` with an ``[ssl]`` table trains the objective of
:mod:`.model` (contrastive or masked reconstruction) instead of BCE, on the train folds' signals
of the ``[task]`` set and any ``extra_tasks`` (:mod:`.data`; test folds are never read). The run
directory is an ordinary one -- ``config.json``, ``metrics.jsonl`` (train and validation SSL loss
per epoch), ``checkpoint.pt``, ``model.pt`` -- whose ``model.pt`` holds the backbone: the trained
encoder and an untrained classification head with one output and no label names, a placeholder
that ``ecg-transfer finetune CONFIG --from DIR`` replaces (every fine-tuning policy works).
"""

from .augment import make_augmenter
from .data import SslData, load_ssl_data
from .model import SslModel, nt_xent, ssl_validation_loss

__all__ = ["SslData", "SslModel", "load_ssl_data", "make_augmenter", "nt_xent", "ssl_validation_loss"]
