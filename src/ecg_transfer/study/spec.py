"""The study spec (TOML): defined and validated by the settings layer,
:mod:`ecg_transfer.settings.study`; this module keeps the study package's import path."""

from __future__ import annotations

from ..settings.names import CALIBRATORS, PROTOCOLS
from ..settings.study import FREQUENCY_INPUTS as INPUTS
from ..settings.study import StudySettings, StudySpec, load_spec, spec_from_dict

__all__ = ["CALIBRATORS", "INPUTS", "PROTOCOLS", "StudySettings", "StudySpec", "load_spec", "spec_from_dict"]
