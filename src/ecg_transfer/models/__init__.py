"""1-D ECG classifiers of the PTB-XL benchmark (Strodthoff et al. 2020), rewritten in PyTorch, and
``s4``, a bidirectional diagonal state-space model (:mod:`.s4`).

Every model maps ``(batch, leads, time)`` float32 to logits ``(batch, n_classes)``, works for any
crop length (250 samples at 100 Hz, 1250 at 500 Hz, ...), and is ``model.body`` -> ``model.head``.
Build by name with :func:`build`; fine-tune with :func:`replace_head`, :func:`layer_groups`,
:func:`freeze_to` and :func:`discriminative_lrs`. No weights ship with the code.
"""

from .base import EcgClassifier, init_weights_
from .registry import MODEL_NAMES, TRAINING_HINTS, build, model_kwargs
from .transfer import discriminative_lrs, freeze_to, layer_groups, replace_head

__all__ = [
    "EcgClassifier",
    "MODEL_NAMES",
    "TRAINING_HINTS",
    "build",
    "discriminative_lrs",
    "freeze_to",
    "init_weights_",
    "layer_groups",
    "model_kwargs",
    "replace_head",
]
