"""The package's version, defined once in pyproject.toml and read from the installed metadata.

A module of its own at the bottom of the package, so that the layers that record it (a run's
environment.json, a model card, the downloader's user agent) import it downwards, not from the
package's ``__init__`` above them."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ecg-transfer")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
