"""What ``STUDY_DIR/results.json`` is, defined once for the study that writes it and the report that
reads it: its name, its format string, the rules both sides apply to it. Imports nothing heavy (no
numpy, no torch), so the report can read it from anywhere.
"""

from __future__ import annotations

from typing import Any, Mapping

#: The file's name inside the study directory.
RESULTS_FILE = "results.json"
#: The format string it carries (bumped when a reader of the old shape would misread the new one).
FORMAT = "ecg_transfer.study-results/1"
#: A number computed on fewer test records than this is flagged wherever it is shown.
SMALL_TEST = 30
#: Profiles that check the machinery (every step runs) and answer nothing, when the resolved spec
#: does not say so itself (``study.machinery_check``).
MACHINERY_CHECK_PROFILES = ("smoke", "quick")


def is_machinery_check(profile: Any, resolved_study: Mapping[str, Any] | None = None) -> bool:
    """Whether a study's numbers are a machinery check rather than an answer: the resolved spec's
    ``study.machinery_check`` when it has one, else whether the profile is one of
    :data:`MACHINERY_CHECK_PROFILES`."""
    if isinstance(resolved_study, Mapping) and isinstance(resolved_study.get("machinery_check"), bool):
        return bool(resolved_study["machinery_check"])
    return isinstance(profile, str) and profile in MACHINERY_CHECK_PROFILES


__all__ = ["FORMAT", "MACHINERY_CHECK_PROFILES", "RESULTS_FILE", "SMALL_TEST", "is_machinery_check"]
