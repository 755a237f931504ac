"""Labels: PTB-XL benchmark tasks, the CinC 2020/2021 SNOMED-CT label spaces, the SCP -> SNOMED table,
protocols that put PTB-XL and CinC-format sets (G12EC) into one label space, and the ``dx`` set
(every SNOMED code of a CinC-format set)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # what mypy and IDEs read (and nothing else: a misspelt name is an error)
    from .dx import (
        DX_EQUIVALENCES as DX_EQUIVALENCES,
        DxClass as DxClass,
        dx_classes as dx_classes,
        dx_labels as dx_labels,
        encode_dx as encode_dx,
    )
    from .mapping import (
        mapping_table as mapping_table,
        scp_to_snomed as scp_to_snomed,
        snomed_to_scp as snomed_to_scp,
        with_heart_axis as with_heart_axis,
    )
    from .protocols import (
        PROTOCOLS as PROTOCOLS,
        SEED18_PAIRS as SEED18_PAIRS,
        LabelClass as LabelClass,
        LabelProtocol as LabelProtocol,
        get_protocol as get_protocol,
    )
    from .ptbxl_tasks import (
        PTBXL_TASKS as PTBXL_TASKS,
        parse_scp_codes as parse_scp_codes,
        task_classes as task_classes,
        task_labels as task_labels,
    )
    from .snomed import (
        EQUIVALENT_CODES as EQUIVALENT_CODES,
        EQUIVALENT_CODES_2021 as EQUIVALENT_CODES_2021,
        SnomedConcept as SnomedConcept,
        canonical_code as canonical_code,
        describe as describe,
        dx_mapping_table as dx_mapping_table,
        equivalent_codes as equivalent_codes,
        load_weights as load_weights,
        scored_classes as scored_classes,
        scored_codes as scored_codes,
        snomed_lookup as snomed_lookup,
        unknown_codes as unknown_codes,
    )
else:  # what runs: the same names, imported on first use (tests/test_lazy_imports.py keeps both equal)
    __getattr__, __dir__, __all__ = lazy_exports(
        __name__,
        {
            "dx": ("DX_EQUIVALENCES", "DxClass", "dx_classes", "dx_labels", "encode_dx"),
            "mapping": ("mapping_table", "scp_to_snomed", "snomed_to_scp", "with_heart_axis"),
            "protocols": ("PROTOCOLS", "SEED18_PAIRS", "LabelClass", "LabelProtocol", "get_protocol"),
            "ptbxl_tasks": ("PTBXL_TASKS", "parse_scp_codes", "task_classes", "task_labels"),
            "snomed": (
                "EQUIVALENT_CODES",
                "EQUIVALENT_CODES_2021",
                "SnomedConcept",
                "canonical_code",
                "describe",
                "dx_mapping_table",
                "equivalent_codes",
                "load_weights",
                "scored_classes",
                "scored_codes",
                "snomed_lookup",
                "unknown_codes",
            ),
        },
    )
