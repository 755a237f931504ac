"""Atomic writes: all or nothing, and the file gets the mode a plain open() would give it."""

from __future__ import annotations

import os

import pytest

from ecg_transfer.atomic import atomic_path, atomic_write_text


def test_written_files_are_readable_like_plain_files(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        (tmp_path / "b.txt").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert (tmp_path / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_reading_the_umask_never_changes_it(monkeypatch, tmp_path):
    """Another thread creating a file while the mode of an atomic write is computed must get the
    process's umask, never 0 (issue 15 §9: the downloader's threads could get mode 0666)."""
    import ecg_transfer.atomic as atomic

    seen = []
    real = atomic.os.umask
    monkeypatch.setattr(atomic.os, "umask", lambda m: seen.append(m) or real(m))
    atomic.atomic_write_text(tmp_path / "x.txt", "x")
    assert seen == []  # /proc/self/status answered; os.umask was never called
    mode = (tmp_path / "x.txt").stat().st_mode & 0o777
    assert mode == 0o666 & ~atomic._umask()


def test_the_scaler_is_not_hashable():
    from ecg_transfer.training.scaler import GlobalStandardScaler

    with pytest.raises(TypeError):
        hash(GlobalStandardScaler())
