"""1-D ECG classifiers of the PTB-XL benchmark (Strodthoff et al. 2020), rewritten in PyTorch, and
``s4``, a bidirectional diagonal state-space model (:mod:`.s4`).

Every model maps ``(batch, leads, time)`` float32 to logits ``(batch, n_classes)``, works for any
crop length (250 samples at 100 Hz, 1250 at 500 Hz, ...), and is ``model.body`` -> ``model.head``.
Build by name with :func:`build`; fine-tune with :func:`replace_head`, :func:`layer_groups`,
:func:`freeze_to` and :func:`discriminative_lrs`. No weights ship with the code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # what mypy and IDEs read (and nothing else: a misspelt name is an error)
    from .base import EcgClassifier as EcgClassifier, init_weights_ as init_weights_
    from .registry import (
        MODEL_NAMES as MODEL_NAMES,
        TRAINING_HINTS as TRAINING_HINTS,
        build as build,
        model_kwargs as model_kwargs,
    )
    from .transfer import (
        discriminative_lrs as discriminative_lrs,
        freeze_to as freeze_to,
        layer_groups as layer_groups,
        replace_head as replace_head,
    )
else:  # what runs: the same names, imported on first use (tests/test_lazy_imports.py keeps both equal)
    __getattr__, __dir__, __all__ = lazy_exports(
        __name__,
        {
            "base": ("EcgClassifier", "init_weights_"),
            "registry": ("MODEL_NAMES", "TRAINING_HINTS", "build", "model_kwargs"),
            "transfer": ("discriminative_lrs", "freeze_to", "layer_groups", "replace_head"),
        },
    )
