"""ecg-transfer: transfer learning on 12-lead ECGs (PTB-XL -> CinC-format sets such as G12EC).

Data flows one way: raw files -> dataset adapter (``datasets``) -> cached arrays + label table
(``datasets.cache``) -> split -> training -> saved predictions -> evaluation -> report.
"""

from importlib.metadata import PackageNotFoundError, version

try:  # the version is defined once, in pyproject.toml
    __version__ = version("ecg-transfer")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
