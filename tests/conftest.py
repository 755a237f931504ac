"""Shared fixtures: where the real data is, and small WFDB fixtures written on the fly."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
RESTORE_TOOL = REPO.parent / "shared" / "tools" / "restore_ptbxl.py"


def _need_shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} does not exist (tests with real data need ../shared/data)")
    return path


@pytest.fixture(scope="session")
def g12ec_root() -> Path:
    return _need_shared("g12ec")


@pytest.fixture(scope="session")
def cinc_labels_root() -> Path:
    return _need_shared("cinc_labels")


@pytest.fixture(scope="session")
def ptbxl_meta_root() -> Path:
    """The PTB-XL index files alone (no signals needed)."""
    return _need_shared("ptbxl")


@pytest.fixture(scope="session")
def ptbxl_root() -> Path:
    """A restored PTB-XL WFDB tree: $ECG_TRANSFER_PTBXL_ROOT, or <repo>/data/ptbxl (restored once)."""
    env = os.environ.get("ECG_TRANSFER_PTBXL_ROOT")
    if env:
        return Path(env)
    _need_shared("ptbxl")
    dest = REPO / "data"
    if not (dest / "ptbxl" / ".restored").exists():
        if not RESTORE_TOOL.exists():
            pytest.skip(f"cannot restore PTB-XL: {RESTORE_TOOL} missing")
        subprocess.run([sys.executable, str(RESTORE_TOOL), str(dest)], check=True)
    return dest / "ptbxl"


@pytest.fixture()
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


#: A valid 1x1 PNG: what a report figure becomes under ``undrawn_figures``.
PLACEHOLDER_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


@pytest.fixture()
def undrawn_figures(monkeypatch):
    """The report's figures built (every plotting call runs) but not drawn to PNG, a placeholder
    in their place: for tests that read the report's text, where drawing 11 figures twice (a tight
    bounding box, then the pixels) is most of a report's 12 s. The report's own figure tests and
    the full-report fixture draw every figure for real."""
    import matplotlib.pyplot as plt

    from ecg_transfer.report import figures as F

    def placeholder(fig) -> bytes:
        plt.close(fig)
        return PLACEHOLDER_PNG

    monkeypatch.setattr(F, "_png", placeholder)
