"""Opening the files a dataset names, without trusting the names or what sits at those paths.

Headers and ``ptbxl_database.csv`` name the files to read; a hostile or broken set can name a file
outside the dataset (``../../home/x``, an absolute path), or put a FIFO, a device or a directory
where a signal file should be. Opening a FIFO for reading blocks until a writer appears, so every
command would hang. The rules here:

* a signal file named in a header is a plain file name beside that header (WFDB and CinC sets
  write them so); anything with a directory part is refused;
* a path from ``ptbxl_database.csv`` must stay inside the dataset root (checked on the path's text,
  so a dataset folder that is itself a symbolic link still works);
* a file is ``stat``-ed before it is opened and refused unless it is a regular file; it is then
  opened non-blocking and checked again on the open descriptor (no race with a swap in between).
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

from ..errors import RecordError

#: Real WFDB/CinC headers are a few kB; anything far larger is not a header (and is not read whole).
MAX_HEADER_BYTES = 1 << 20

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def regular_file_size(path: str | os.PathLike, what: str = "file") -> int:
    """Size of ``path`` if it is a regular file (symbolic links followed); RecordError otherwise.

    Uses ``os.stat`` only: nothing is opened, so a FIFO cannot block.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise RecordError(str(path), f"{what} does not exist") from None
    except OSError as exc:
        raise RecordError(str(path), f"cannot stat {what}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise RecordError(str(path), f"{what} is {_kind(st.st_mode)}, not a regular file: refused")
    return st.st_size


def open_regular_fd(path: str | os.PathLike, what: str = "file") -> tuple[int, int]:
    """(descriptor, size) of a regular file opened for reading; RecordError for anything else.

    ``stat`` first, so nothing but a regular file is opened; then a non-blocking open and a check
    of the open descriptor, so a file swapped for a FIFO in between cannot block either.
    """
    regular_file_size(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise RecordError(str(path), f"cannot open {what}: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise RecordError(str(path), f"{what} is {_kind(st.st_mode)}, not a regular file: refused")
    return fd, st.st_size


def open_regular(path: str | os.PathLike, what: str = "file") -> io.BufferedReader:
    """Open a regular file for binary reading; RecordError for anything else, never blocking."""
    fd, _ = open_regular_fd(path, what)
    return os.fdopen(fd, "rb")


def readinto_fd(fd: int, buffer: memoryview) -> int:
    """Fill ``buffer`` from ``fd`` (short only at the end of the file); the bytes read."""
    got = 0
    while got < len(buffer):
        n = os.readv(fd, [buffer[got:]])
        if n == 0:
            break
        got += n
    return got


def read_small_file(path: str | os.PathLike, what: str = "header", limit: int = MAX_HEADER_BYTES) -> bytes:
    """The bytes of a small regular file (a header), refusing files larger than ``limit``."""
    fd, size = open_regular_fd(path, what)
    try:
        if size > limit:
            raise RecordError(str(path), f"{what} is {size:,} bytes; a header is a few kB (limit {limit:,}): refused")
        buf = bytearray(size)
        return bytes(buf[: readinto_fd(fd, memoryview(buf))])
    finally:
        os.close(fd)


def sibling_file(header: Path, file_name: str) -> Path:
    """The signal file ``file_name`` beside ``header``; RecordError when the name has a directory part."""
    name = str(file_name)
    if not name or name in (".", "..") or "/" in name or "\\" in name or os.path.isabs(name):
        raise RecordError(
            str(header),
            f"signal file {name!r} is not a file name beside the header "
            "(a path outside the record's folder is refused)",
        )
    return header.parent / name


def inside(root: str | os.PathLike, relative: str) -> bool:
    """Whether ``root / relative`` stays inside ``root`` (judged on the text of the path)."""
    rel = str(relative)
    if not rel or os.path.isabs(rel) or "\\" in rel:
        return False
    if ".." not in rel.split("/"):
        return True  # relative, no parent steps: inside by construction (the common case)
    base = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.join(base, rel))
    return full == base or full.startswith(base.rstrip(os.sep) + os.sep)
