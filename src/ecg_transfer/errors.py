"""Exceptions that carry enough context for a user to find and fix the problem."""

from __future__ import annotations


class EcgTransferError(Exception):
    """Base class for every error this package raises on purpose."""


class RecordError(EcgTransferError):
    """A single record cannot be read correctly.

    Always names the record (its path or id) and what is wrong with it, so a user can find the
    file. Dataset adapters raise it instead of returning a silently wrong array; callers either
    stop (``strict``) or skip the record and list the problem in the summary.
    """

    def __init__(self, record: str, problem: str):
        super().__init__(f"{record}: {problem}")
        self.record = str(record)
        self.problem = problem


class DatasetError(EcgTransferError):
    """The dataset as a whole is unusable (missing root, missing index files, ...)."""


class ConfigError(EcgTransferError):
    """A config or spec file has a wrong key or value; the message names the key and allowed values."""


class RunExistsError(EcgTransferError, FileExistsError):
    """A run directory already holds a run: runs are never overwritten, only resumed."""
