"""ecg-transfer: transfer learning on 12-lead ECGs (PTB-XL -> CinC-format sets such as G12EC).

Data flows one way: raw files -> dataset adapter (``datasets``) -> cached arrays + label table
(``datasets.cache``) -> split -> training -> saved predictions -> evaluation -> report.
"""

__version__ = "0.1.0"
