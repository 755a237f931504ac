"""The Python API (issue 15 §7): ``import ecg_transfer as et`` and its functions; the examples of
docs/api.md run in tests/test_docs_examples.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecg_transfer.errors import ConfigError

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_top_level_api_is_documented() -> None:
    """Every name of ``import ecg_transfer as et`` appears in docs/api.md, and has a docstring."""
    import ecg_transfer as et

    api_doc = (DOCS / "api.md").read_text(encoding="utf-8")
    undocumented = [n for n in et.__all__ if f"et.{n}" not in api_doc]
    assert undocumented == []
    assert [n for n in et.__all__ if not (getattr(et, n).__doc__ or "").strip()] == []


def test_from_scratch_commands_refuse_a_pretrained_run(tmp_path: Path) -> None:
    import ecg_transfer as et

    config = {"finetune": {"pretrained_run": str(tmp_path / "pre"), "policy": "all"}, "epochs": 1}
    for command in (et.pretrain, et.standalone):
        with pytest.raises(ConfigError, match="starts from random weights: drop finetune.pretrained_run"):
            command(config, tmp_path / "run")
    with pytest.raises(
        ConfigError,
        match=r"\[ssl\] table: self-supervised pre-training runs with `ecg-transfer pretrain`, not `finetune`",
    ):
        et.finetune({"ssl": {"method": "contrastive"}}, tmp_path / "run", tmp_path / "pre")
    with pytest.raises(ConfigError, match=r"no \[task\] table"):
        et.train({"epochs": 1}, tmp_path / "run")
    assert not (tmp_path / "run").exists()
