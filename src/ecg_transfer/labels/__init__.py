"""Labels: PTB-XL benchmark tasks, the CinC 2020/2021 SNOMED-CT label spaces, the SCP -> SNOMED table,
protocols that put PTB-XL and CinC-format sets (G12EC) into one label space, and the ``dx`` set
(every SNOMED code of a CinC-format set)."""

from .dx import DX_EQUIVALENCES, DxClass, dx_classes, dx_labels, encode_dx
from .mapping import mapping_table, scp_to_snomed, snomed_to_scp, with_heart_axis
from .protocols import PROTOCOLS, SEED18_PAIRS, LabelClass, LabelProtocol, get_protocol
from .ptbxl_tasks import PTBXL_TASKS, parse_scp_codes, task_classes, task_labels
from .snomed import (
    EQUIVALENT_CODES,
    EQUIVALENT_CODES_2021,
    SnomedConcept,
    canonical_code,
    describe,
    dx_mapping_table,
    equivalent_codes,
    load_weights,
    scored_classes,
    scored_codes,
    snomed_lookup,
    unknown_codes,
)

__all__ = [
    "PTBXL_TASKS", "parse_scp_codes", "task_classes", "task_labels",
    "DX_EQUIVALENCES", "DxClass", "dx_classes", "dx_labels", "encode_dx",
    "EQUIVALENT_CODES", "EQUIVALENT_CODES_2021", "SnomedConcept", "canonical_code", "describe", "dx_mapping_table",
    "equivalent_codes", "load_weights", "scored_classes", "scored_codes", "snomed_lookup",
    "unknown_codes",
    "mapping_table", "scp_to_snomed", "snomed_to_scp", "with_heart_axis",
    "PROTOCOLS", "SEED18_PAIRS", "LabelClass", "LabelProtocol", "get_protocol",
]
