"""The registries of allowed names, defined once: every settings model, CLI and module checks
against these tuples, so a new model, protocol or calibrator is added in one place.

Torch-free on purpose (a study can be planned and a config checked without importing torch);
the modules that implement the names (``models.registry``, ``evaluation.calibration``, ...) are
tested to implement exactly these.
"""

from __future__ import annotations

#: Networks in ``ecg_transfer.models`` (the PTB-XL benchmark's, plus the S4 backbone).
MODEL_NAMES: tuple[str, ...] = (
    "xresnet1d18",
    "xresnet1d34",
    "xresnet1d50",
    "xresnet1d101",
    "xresnet1d152",
    "inception1d",
    "resnet1d_wang",
    "fcn_wang",
    "lstm",
    "lstm_bidir",
    "s4",
)
#: Dataset adapters; ``g12ec`` is an alias of ``cinc`` (any PhysioNet/CinC-format folder).
DATASET_NAMES: tuple[str, ...] = ("ptbxl", "cinc")
DATASET_ALIASES: dict[str, str] = {"g12ec": "cinc"}
#: PTB-XL benchmark tasks (``[task] labels`` for PTB-XL).
PTBXL_TASKS: tuple[str, ...] = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
#: Label protocols shared by PTB-XL and CinC-format sets (``labels = "protocol:NAME"``).
PROTOCOLS: tuple[str, ...] = ("seed18", "cinc2020")
#: Every SNOMED code of a CinC-format set, equivalent codes merged (``labels = "dx"``).
DX_LABEL_SET = "dx"
#: Calibrators of ``evaluation.calibration`` (fitted on validation predictions).
CALIBRATORS: tuple[str, ...] = ("temperature", "class-temperature", "platt", "isotonic")
#: What the network sees of a window (``signal.input_transform``).
INPUT_KINDS: tuple[str, ...] = ("time", "spectrum", "log-spectrum", "stft")
#: Fine-tuning policies (``training.finetune``); ``none`` trains from random weights.
POLICIES: tuple[str, ...] = ("none", "head-then-all", "gradual", "all", "linear-probe")
#: Policies whose stages come from a preset or an explicit ``stages`` list, not from ``epochs``.
STAGED_POLICIES: tuple[str, ...] = ("head-then-all", "gradual")
AGGREGATES: tuple[str, ...] = ("max", "mean")
#: Self-supervised objectives (``[ssl] method``, ``training.ssl``).
SSL_METHODS: tuple[str, ...] = ("contrastive", "masked", "cpc")
#: ECG augmentations of the contrastive objective (``[ssl] augmentations``), applied in this order.
SSL_AUGMENTATIONS: tuple[str, ...] = (
    "random-resized-crop",
    "time-out",
    "baseline-wander",
    "gaussian-noise",
    "powerline-noise",
    "lead-dropout",
)
# Speed settings (training.speed): how fast a run goes, never its maths beyond float rounding.
MEMORY_FORMATS: tuple[str, ...] = ("auto", "channels_last", "contiguous")
COMPILE_MODES: tuple[str, ...] = ("none", "default", "max-autotune-no-cudagraphs")
OPTIMIZER_IMPLS: tuple[str, ...] = ("auto", "fused", "foreach", "for-loop")
DIST_BACKENDS: tuple[str, ...] = ("auto", "nccl", "gloo")
#: Forward-pass precision: fp32, bf16 autocast (loss and optimizer state stay fp32), or auto (bf16
#: where the hardware runs it natively: CPUs with AVX512-BF16 or AMX, CUDA devices with bf16).
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "auto")
#: The twelve standard leads, in the order every record is read in (by name, aliases folded).
STANDARD_LEADS: tuple[str, ...] = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
#: STFT window and hop of the ``stft`` input, in seconds (``signal.stft_geometry`` rounds them to
#: whole samples); here because a crop shorter than the window is a settings error.
STFT_WINDOW_SECONDS = 0.2
STFT_HOP_SECONDS = 0.05

#: RunConfig keys that may change between a run and its resumption and that a study leaves out of
#: its run keys: they do not change the maths (with several processes, ``sync_batchnorm = true`` is
#: the one-process maths; each session's choice is recorded in environment.json; ``tracking`` only
#: says where the metrics are also logged).
RESUMABLE_KEYS: tuple[str, ...] = (
    "device",
    "num_threads",
    "dist_backend",
    "sync_batchnorm",
    "validate_every",
    "memory_format",
    "compile",
    "optimizer_impl",
    "tracking",
)

__all__ = [
    "AGGREGATES",
    "CALIBRATORS",
    "COMPILE_MODES",
    "DATASET_ALIASES",
    "DATASET_NAMES",
    "DIST_BACKENDS",
    "DX_LABEL_SET",
    "INPUT_KINDS",
    "MEMORY_FORMATS",
    "MODEL_NAMES",
    "OPTIMIZER_IMPLS",
    "POLICIES",
    "PRECISIONS",
    "PROTOCOLS",
    "PTBXL_TASKS",
    "RESUMABLE_KEYS",
    "SSL_AUGMENTATIONS",
    "SSL_METHODS",
    "STAGED_POLICIES",
    "STANDARD_LEADS",
    "STFT_HOP_SECONDS",
    "STFT_WINDOW_SECONDS",
]
