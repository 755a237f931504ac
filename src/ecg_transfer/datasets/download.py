"""Fetch PTB-XL and G12EC from PhysioNet so anyone can rebuild the study's inputs from nothing.

PhysioNet publishes a ``SHA256SUMS.txt`` per release. We use it twice: as the list of files to fetch
and as proof that each one arrived intact, so a flaky connection can never leave a silently
damaged record behind. Transfers go to ``<file>.part`` and are resumed with HTTP Range requests;
only a file whose sha256 matches is renamed into place, so a file with its final name is always
complete. A small state file remembers (size, mtime, sha256) of verified files, which lets a
restart of a 44k-file download skip everything already done without re-hashing gigabytes.

Only the standard library speaks HTTP (``urllib.request``): it honours the usual proxy variables
and needs no extra dependency for what is, per file, a single GET.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import errno
import fnmatch
import hashlib
import html.parser
import http.client
import json
import logging
import os
import re
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from .._version import __version__
from ..atomic import atomic_write_text
from ..errors import ConfigError, DatasetError, EcgTransferError

log = logging.getLogger(__name__)

STATE_FILE = ".download-state.json"
FAILED_FILE = ".download-failed.txt"
PART_SUFFIX = ".part"
USER_AGENT = f"ecg-transfer-download/{__version__} (Python urllib)"
_CHUNK = 1 << 16
_MAX_BACKOFF_S = 60.0
_STATE_SAVE_EVERY_S = 30.0
_SHA_LINE = re.compile(r"^([0-9a-fA-F]{64})\s+\*?(.+?)\s*$")
_PRINT_FAILED_MAX = 50


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset lives on PhysioNet and where it goes under ``--root``.

    ``base_url`` is the release root; file URLs are ``base_url`` + the path in the checksum list.
    ``prefix`` selects the part of the release we want (G12EC is one folder of the challenge
    release) and is stripped when saving, so ``training/georgia/g1/E00001.hea`` lands at
    ``ROOT/g1/E00001.hea`` (``ROOT`` is the dataset's folder; ``dest`` its default name, data/g12ec). ``rate_dirs`` maps a sampling rate to the folder holding it, for
    datasets published at several rates (PTB-XL's 500 Hz copy is ~5x the 100 Hz one).
    """

    name: str
    base_url: str
    sums_url: str
    prefix: str
    dest: str
    rate_dirs: tuple[tuple[int, str], ...] = ()
    description: str = ""

    @property
    def listing_url(self) -> str:
        """Directory listing used when no checksum list is published."""
        return self.base_url + self.prefix

    def with_base_url(self, base_url: str) -> "DatasetSource":
        """The same dataset served from a mirror (or a test server) with the same layout."""
        base = base_url if base_url.endswith("/") else base_url + "/"
        sums_rel = self.sums_url[len(self.base_url) :] if self.sums_url.startswith(self.base_url) else "SHA256SUMS.txt"
        return replace(self, base_url=base, sums_url=base + sums_rel)


DATASETS: dict[str, DatasetSource] = {
    "ptbxl": DatasetSource(
        name="ptbxl",
        base_url="https://physionet.org/files/ptb-xl/1.0.3/",
        sums_url="https://physionet.org/files/ptb-xl/1.0.3/SHA256SUMS.txt",
        prefix="",
        dest="ptbxl",
        rate_dirs=((100, "records100"), (500, "records500")),
        description="PTB-XL v1.0.3: 21,837 records, 100 Hz (~0.5 GB) and 500 Hz (~2.6 GB), CC BY 4.0",
    ),
    "g12ec": DatasetSource(
        name="g12ec",
        base_url="https://physionet.org/files/challenge-2020/1.0.2/",
        sums_url="https://physionet.org/files/challenge-2020/1.0.2/SHA256SUMS.txt",
        prefix="training/georgia/",
        dest="g12ec",
        description="G12EC (Georgia) from PhysioNet/CinC 2020 v1.0.2: 10,344 records at 500 Hz, CC BY 4.0",
    ),
}


@dataclass
class DownloadReport:
    """What a run did, file by file, so the CLI can print a summary and exit non-zero on failure."""

    dataset: str
    dest: Path
    verified: bool
    list_url: str
    downloaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    bytes_downloaded: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.refused

    def summary(self) -> str:
        parts = [
            f"{self.dataset}: {len(self.downloaded)} downloaded ({_human(self.bytes_downloaded)})",
            f"{len(self.skipped)} skipped (already {'verified' if self.verified else 'present'})",
            f"{len(self.failed)} failed",
        ]
        if self.refused:
            parts.append(f"{len(self.refused)} unsafe list entries refused")
        line = ", ".join(parts) + f" -> {self.dest}"
        if self.verified:
            line += f"; every file sha256-verified against {self.list_url}"
        else:
            line += (
                f"; files are NOT checksum-verified (no checksum list was published; "
                f"file list taken from the directory listing at {self.list_url})"
            )
        return line


def _human(nbytes: int) -> str:
    size = float(nbytes)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"  # pragma: no cover


@dataclass(frozen=True)
class _Entry:
    rel: str  # path under the destination folder, '/'-separated
    url: str
    sha256: str | None  # None when the list came from a directory listing


@dataclass(frozen=True)
class _Outcome:
    kind: str  # "downloaded" | "skipped" | "failed"
    rel: str
    reason: str = ""
    size: int = 0
    mtime_ns: int = 0
    sha256: str | None = None


class _TransferError(Exception):
    """A problem with one transfer; ``retryable`` says whether another attempt can help."""

    def __init__(self, message: str, retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class _Interrupted(Exception):
    """The run is stopping (Ctrl-C, disk full); the worker leaves its .part file for next time."""


class _LocalError(Exception):
    """Writing on this machine failed (disk full, permissions): retrying the network won't help."""

    def __init__(self, message: str, cause: BaseException | None = None):
        super().__init__(message)
        self.cause = cause


# --------------------------------------------------------------------------------------------
# paths and file lists


def unsafe_path_reason(path: str) -> str | None:
    """Why a path from a remote list must not be written locally, or None if it is safe.

    The list comes from the network; an entry like ``../../.bashrc`` must never escape the
    destination folder, whatever the server says.
    """
    if not path:
        return "empty path"
    if "\x00" in path or "\\" in path:
        return "contains a NUL or backslash"
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return "absolute path"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "contains '..', '.' or an empty component (would escape or alias the destination)"
    if path.split("/")[-1] in (STATE_FILE, FAILED_FILE):
        return "collides with the downloader's own bookkeeping file"
    return None


def parse_sha256sums(text: str, source: DatasetSource) -> tuple[list[_Entry], dict[str, str]]:
    """Entries under ``source.prefix`` (prefix stripped) and the refused lines with reasons."""
    entries: list[_Entry] = []
    refused: dict[str, str] = {}
    n_valid = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _SHA_LINE.match(line)
        if not m:
            refused[f"line {lineno}"] = f"malformed checksum line: {line[:80]!r}"
            continue
        n_valid += 1
        digest, path = m.group(1).lower(), m.group(2)
        while path.startswith("./"):
            path = path[2:]
        reason = unsafe_path_reason(path)
        if reason is None and source.prefix and path.startswith(source.prefix):
            reason = unsafe_path_reason(path[len(source.prefix) :])
        if reason is not None:
            refused[path] = f"refused: {reason}"
            continue
        if not path.startswith(source.prefix):
            continue
        url = source.base_url + urllib.parse.quote(path)
        entries.append(_Entry(rel=path[len(source.prefix) :], url=url, sha256=digest))
    if n_valid == 0 and text.strip():
        raise DatasetError(
            f"{source.sums_url} does not look like a SHA256SUMS list "
            f"(no '<sha256>  <path>' line in {len(text)} characters)"
        )
    return entries, refused


class _HrefParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag.lower() == "a":
            for key, value in attrs:
                if key.lower() == "href" and value:
                    self.hrefs.append(value)


def crawl_listing(start_url: str, fetch: Callable[[str], bytes]) -> list[tuple[str, str]]:
    """(relative path, URL) of every file below ``start_url`` in HTML directory listings.

    Only links to children of the page being read are followed, which skips parent links, sort
    links (``?C=N``) and anything off-site, and makes cycles impossible.
    """
    start = start_url if start_url.endswith("/") else start_url + "/"
    start_path = urllib.parse.urlsplit(start).path
    files: dict[str, str] = {}
    queue, seen = [start], {start}
    while queue:
        page = queue.pop()
        parser = _HrefParser()
        parser.feed(fetch(page).decode("utf-8", errors="replace"))
        for href in parser.hrefs:
            target = urllib.parse.urldefrag(urllib.parse.urljoin(page, href))[0]
            if "?" in target or not target.startswith(page) or target == page:
                continue
            if target.endswith("/"):
                if target not in seen:
                    seen.add(target)
                    queue.append(target)
            else:
                path = urllib.parse.urlsplit(target).path
                files[urllib.parse.unquote(path[len(start_path) :])] = target
    return sorted(files.items())


def _select(
    entries: Sequence[_Entry], include: Sequence[str] | None, rates: Sequence[int] | None, source: DatasetSource
) -> list[_Entry]:
    """The entries ``include`` and ``rates`` select. A filter that selects nothing from a non-empty
    list is a typo, not a request for nothing: it raises, showing what listed paths look like."""
    selected = list(entries)
    if rates is not None:
        known = dict(source.rate_dirs)
        if not known:
            raise ConfigError(
                f"rates: {source.name} is published at a single sampling rate; "
                f"rates applies to {', '.join(n for n, s in DATASETS.items() if s.rate_dirs)} only"
            )
        bad = [r for r in rates if r not in known]
        if bad:
            raise ConfigError(f"rates: {bad} not available for {source.name}; allowed {sorted(known)}")
        dropped = [d + "/" for r, d in known.items() if r not in set(rates)]
        selected = [e for e in selected if not any(e.rel.startswith(d) for d in dropped)]
    if include:
        selected = [e for e in selected if any(_matches(e.rel, pat) for pat in include)]
    if not selected and entries and (include or rates is not None):
        examples = ", ".join(e.rel for e in entries[:3])
        raise ConfigError(
            f"include/rates: nothing in the {source.name} list matches include={list(include or [])} "
            f"rates={list(rates) if rates is not None else None} (listed paths look like: {examples})"
        )
    return selected


def _matches(rel: str, pattern: str) -> bool:
    """Glob on the relative path; a plain name also selects everything below that folder."""
    if fnmatch.fnmatchcase(rel, pattern):
        return True
    if not any(c in pattern for c in "*?["):
        folder = pattern.strip("/")
        return rel == folder or rel.startswith(folder + "/")
    return False


# --------------------------------------------------------------------------------------------
# HTTP


def _classify(exc: BaseException) -> _TransferError:
    """Map an exception from one attempt to a message and whether retrying can help."""
    if isinstance(exc, _TransferError):
        return exc
    if isinstance(exc, urllib.error.HTTPError):
        retry_after = None
        try:
            retry_after = float(exc.headers.get("Retry-After", ""))
        except (TypeError, ValueError, AttributeError):
            pass
        exc.close()
        retryable = exc.code >= 500 or exc.code in (408, 425, 429)
        return _TransferError(f"HTTP {exc.code} {exc.reason}", retryable, retry_after)
    if isinstance(exc, urllib.error.URLError):
        return _TransferError(f"connection failed: {exc.reason}")
    if isinstance(exc, TimeoutError):
        return _TransferError(f"timed out: {exc}")
    if isinstance(exc, http.client.HTTPException):
        return _TransferError(f"bad HTTP response: {type(exc).__name__}: {exc}")
    if isinstance(exc, OSError):  # resets, broken pipes; local file errors are wrapped earlier
        return _TransferError(f"network error: {type(exc).__name__}: {exc}")
    return _TransferError(f"unexpected error: {type(exc).__name__}: {exc}", retryable=False)


def _request(url: str, offset: int = 0) -> urllib.request.Request:
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.Request(url, headers=headers)


def _delay(attempt: int, backoff: float, retry_after: float | None) -> float:
    delay = min(backoff * 2 ** (attempt - 1), _MAX_BACKOFF_S)
    if retry_after is not None:
        delay = max(delay, min(retry_after, _MAX_BACKOFF_S))
    return delay


def _get_small(url: str, *, timeout: float, retries: int, backoff: float) -> bytes:
    """GET a whole (small) resource with retries; a 404 is raised as HTTPError for the caller."""
    attempt = 0
    while True:
        try:
            with urllib.request.urlopen(_request(url), timeout=timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise
            err = _classify(exc)
        except Exception as exc:  # noqa: BLE001 - classified below
            err = _classify(exc)
        attempt += 1
        if not err.retryable or attempt > retries:
            raise DatasetError(f"cannot fetch {url}: {err} (after {attempt} attempt(s))")
        time.sleep(_delay(attempt, backoff, err.retry_after))


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from a Content-Range header; None where absent or '*'."""
    m = re.match(r"^\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*$", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _Fetcher:
    """Downloads one file with resume, verification and retries; shared by the worker threads."""

    def __init__(
        self,
        dest_root: Path,
        *,
        retries: int,
        backoff: float,
        timeout: float,
        stop: threading.Event,
        on_bytes: Callable[[int], None],
    ):
        self.dest_root = dest_root
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.stop = stop
        self.on_bytes = on_bytes

    def process(self, entry: _Entry) -> _Outcome:
        try:
            return self._process(entry)
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the whole run silently
            return _Outcome("failed", entry.rel, f"unexpected error: {type(exc).__name__}: {exc}")

    def _process(self, entry: _Entry) -> _Outcome:
        dest = self.dest_root / entry.rel
        if self.stop.is_set():
            return _Outcome("failed", entry.rel, "not attempted: the run was stopped")
        if entry.sha256 is not None and dest.is_file() and sha256_file(dest) == entry.sha256:
            st = dest.stat()
            return _Outcome("skipped", entry.rel, "", st.st_size, st.st_mtime_ns, entry.sha256)
        part = dest.with_name(dest.name + PART_SUFFIX)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return self._local_failure(entry, f"cannot create {dest.parent}: {exc}", exc)
        attempt = 0
        while True:
            if self.stop.is_set():
                return _Outcome("failed", entry.rel, "interrupted (the .part file is kept for resuming)")
            try:
                self._fetch_to_part(entry, part)
                digest = sha256_file(part) if entry.sha256 is not None else None
                if digest != entry.sha256:
                    part.unlink(missing_ok=True)
                    raise _TransferError(f"sha256 mismatch: expected {entry.sha256}, got {digest}")
                os.replace(part, dest)
                st = dest.stat()
                return _Outcome("downloaded", entry.rel, "", st.st_size, st.st_mtime_ns, entry.sha256)
            except _Interrupted:
                return _Outcome("failed", entry.rel, "interrupted (the .part file is kept for resuming)")
            except _LocalError as exc:
                return self._local_failure(entry, str(exc), exc.cause)
            except Exception as exc:  # noqa: BLE001 - classified
                err = _classify(exc)
            attempt += 1
            if not err.retryable:
                return _Outcome("failed", entry.rel, f"{err} ({entry.url})")
            if attempt > self.retries:
                return _Outcome("failed", entry.rel, f"{err} (gave up after {attempt} attempts; {entry.url})")
            log.debug("%s: attempt %d failed: %s", entry.rel, attempt, err)
            self.stop.wait(_delay(attempt, self.backoff, err.retry_after))

    def _local_failure(self, entry: _Entry, message: str, cause: BaseException | None) -> _Outcome:
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            self.stop.set()  # every other file would fail the same way
        return _Outcome("failed", entry.rel, message)

    def _fetch_to_part(self, entry: _Entry, part: Path) -> None:
        """Append the rest of the file to ``part``; raises _TransferError when it fell short."""
        offset = part.stat().st_size if part.exists() else 0
        try:
            resp = urllib.request.urlopen(_request(entry.url, offset), timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                _, total = _content_range(exc.headers.get("Content-Range"))
                exc.close()
                if total == offset or (total is None and entry.sha256 is not None):
                    return  # the part is already complete; the checksum decides
                part.unlink(missing_ok=True)
                raise _TransferError(
                    f"server refused to resume at byte {offset} (size {total}); restarting from zero"
                ) from None
            raise
        with resp:
            if resp.status == 206:
                start, _ = _content_range(resp.headers.get("Content-Range"))
                if start != offset:
                    part.unlink(missing_ok=True)
                    raise _TransferError(
                        f"asked to resume at byte {offset} but got Content-Range "
                        f"{resp.headers.get('Content-Range')!r}; restarting from zero"
                    )
                mode = "ab"
            elif resp.status == 200:
                offset, mode = 0, "wb"  # server ignored Range: start over
            else:
                raise _TransferError(f"unexpected HTTP status {resp.status}")
            length = resp.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            received = 0
            try:
                fh = open(part, mode)
            except OSError as exc:
                raise _LocalError(f"cannot write {part}: {exc}", exc) from exc
            with fh:
                while True:
                    if self.stop.is_set():
                        raise _Interrupted()
                    chunk = resp.read(_CHUNK)
                    if not chunk:
                        break
                    try:
                        fh.write(chunk)
                    except OSError as exc:
                        raise _LocalError(f"cannot write {part}: {exc}", exc) from exc
                    received += len(chunk)
                    self.on_bytes(len(chunk))
        if expected is not None and received < expected:
            raise _TransferError(
                f"connection closed after {received} of {expected} bytes (will resume at byte {offset + received})"
            )


# --------------------------------------------------------------------------------------------
# verified-state bookkeeping


class _State:
    """rel -> [size, mtime_ns, sha256|None] of files this tool verified and put in place.

    A file whose size and mtime still match was not touched since we verified it, so a restart
    can skip it without hashing. Anything else is re-hashed, never trusted.
    """

    def __init__(self, path: Path):
        self.path = path
        self.files: dict[str, list] = {}
        self.dirty = False
        self._last_save = time.monotonic()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") == 1 and isinstance(data.get("files"), dict):
                self.files = data["files"]
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("ignoring unreadable download state %s (%s); files will be re-hashed", path, exc)

    def fresh(self, rel: str, dest: Path, sha256: str | None) -> bool:
        rec = self.files.get(rel)
        if not isinstance(rec, list) or len(rec) != 3 or rec[2] != sha256:
            return False
        try:
            st = dest.stat()
        except OSError:
            return False
        return st.st_size == rec[0] and st.st_mtime_ns == rec[1]

    def record(self, out: _Outcome) -> None:
        self.files[out.rel] = [out.size, out.mtime_ns, out.sha256]
        self.dirty = True

    def save(self, *, force: bool = False) -> None:
        if not self.dirty:
            return
        if not force and time.monotonic() - self._last_save < _STATE_SAVE_EVERY_S:
            return
        text = json.dumps({"version": 1, "files": self.files}, separators=(",", ":"), sort_keys=True)
        atomic_write_text(self.path, text + "\n")
        self.dirty = False
        self._last_save = time.monotonic()


# --------------------------------------------------------------------------------------------
# public entry points


def _list_files(
    source: DatasetSource, *, timeout: float, retries: int, backoff: float
) -> tuple[list[_Entry], dict[str, str], bool, str]:
    """(entries, refused, verified, list URL): from SHA256SUMS, or the HTML listing on a 404."""
    try:
        raw = _get_small(source.sums_url, timeout=timeout, retries=retries, backoff=backoff)
    except urllib.error.HTTPError as exc:  # only 404 reaches here
        exc.close()
        log.warning(
            "no checksum list at %s (HTTP 404): listing %s instead; files will NOT be checksum-verified",
            source.sums_url,
            source.listing_url,
        )

        def fetch(url: str) -> bytes:
            try:
                return _get_small(url, timeout=timeout, retries=retries, backoff=backoff)
            except urllib.error.HTTPError as err:
                err.close()
                raise DatasetError(f"cannot list {url}: HTTP {err.code} {err.reason}") from None

        entries: list[_Entry] = []
        refused: dict[str, str] = {}
        for rel, url in crawl_listing(source.listing_url, fetch):
            reason = unsafe_path_reason(rel)
            if reason is not None:
                refused[rel] = f"refused: {reason}"
            else:
                entries.append(_Entry(rel=rel, url=url, sha256=None))
        return entries, refused, False, source.listing_url
    entries, refused = parse_sha256sums(raw.decode("utf-8", errors="replace"), source)
    return entries, refused, True, source.sums_url


def _check_not_parent(root: Path, source: DatasetSource) -> None:
    """``--root`` is the dataset's own folder (as for ``data`` and the study spec). Refuse the
    folder above an existing copy, where files would land beside it instead of in it."""
    inner = root / source.dest
    if root.name != source.dest and inner.is_dir() and any(inner.iterdir()):
        raise ConfigError(
            f"--root {root} holds {inner}: --root is the dataset's own folder (as for `ecg-transfer "
            f"data` and a study spec's root); use --root {inner}"
        )


def _check_download_args(name: str, *, retries: int, workers: int, timeout: float, backoff: float) -> None:
    """Refuse bad arguments before anything touches the network or the disk."""
    if name not in DATASETS:
        raise ConfigError(f"dataset: unknown {name!r}; choose one of {sorted(DATASETS)}")
    if retries < 0 or workers < 1 or timeout <= 0 or backoff < 0:
        raise ConfigError(
            f"need retries >= 0, workers >= 1, timeout > 0, backoff >= 0 "
            f"(got retries={retries}, workers={workers}, timeout={timeout}, backoff={backoff})"
        )


def _entries_to_fetch(
    selected: Sequence[_Entry], state: _State, dest_root: Path, report: DownloadReport
) -> list[_Entry]:
    """The entries to fetch; those the state file vouches for go to ``report.skipped`` unhashed,
    which is what lets a restart of a 44k-file download skip the finished part in seconds."""
    todo: list[_Entry] = []
    for entry in selected:
        if state.fresh(entry.rel, dest_root / entry.rel, entry.sha256):
            report.skipped.append(entry.rel)
        else:
            todo.append(entry)
    return todo


def _record_outcome(out: _Outcome, report: DownloadReport, state: _State) -> None:
    """File one worker's outcome in the report; a file now in place is remembered as verified."""
    if out.kind == "failed":
        report.failed[out.rel] = out.reason
    else:
        (report.downloaded if out.kind == "downloaded" else report.skipped).append(out.rel)
        state.record(out)


def _fetch_all(
    todo: Sequence[_Entry],
    report: DownloadReport,
    state: _State,
    bar: Any,
    *,
    workers: int,
    retries: int,
    backoff: float,
    timeout: float,
) -> None:
    """Fetch ``todo`` on ``workers`` threads into ``report`` and ``state``, updating ``bar``.

    The state is saved every so often (and always at the end, even when interrupted), so a killed
    run keeps what it verified; on any exception (Ctrl-C included) the workers are told to stop at
    their next chunk and their ``.part`` files stay for the next run.
    """
    lock = threading.Lock()
    counted = [0]

    def on_bytes(n: int) -> None:
        with lock:
            counted[0] += n

    stop = threading.Event()
    fetcher = _Fetcher(report.dest, retries=retries, backoff=backoff, timeout=timeout, stop=stop, on_bytes=on_bytes)
    pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="download")
    try:
        pending = {pool.submit(fetcher.process, e) for e in todo}
        while pending:
            done, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                _record_outcome(fut.result(), report, state)
            bar.update(len(done))
            with lock:
                report.bytes_downloaded = counted[0]
            bar.set_postfix_str(f"{_human(counted[0])}, {len(report.failed)} failed", refresh=False)
            state.save()
    except BaseException:
        stop.set()  # workers stop at their next chunk; .part files stay for the next run
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        state.save(force=True)
    report.bytes_downloaded = counted[0]


def download(
    name: str,
    root: Path,
    *,
    base_url: str | None = None,
    include: Sequence[str] | None = None,
    rates: Sequence[int] | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    workers: int = 4,
    progress: bool = True,
    timeout: float = 30,
) -> DownloadReport:
    """Bring the dataset folder ``root`` up to date with the published release and say what happened.

    Safe to interrupt and re-run: verified files are skipped, ``.part`` files are resumed. Raises
    ConfigError for bad arguments and DatasetError when no file list can be obtained; per-file
    problems never raise, they end up in ``report.failed``.
    """
    _check_download_args(name, retries=retries, workers=workers, timeout=timeout, backoff=backoff)
    source = DATASETS[name]
    if base_url:
        source = source.with_base_url(base_url)
    dest_root = Path(root)
    _check_not_parent(dest_root, source)

    entries, refused, verified, list_url = _list_files(source, timeout=timeout, retries=retries, backoff=backoff)
    selected = _select(entries, include, rates, source)
    report = DownloadReport(dataset=name, dest=dest_root, verified=verified, list_url=list_url, refused=refused)
    state = _State(dest_root / STATE_FILE)
    todo = _entries_to_fetch(selected, state, dest_root, report)

    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(selected),
        initial=len(report.skipped),
        unit="file",
        desc=name,
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        _fetch_all(todo, report, state, bar, workers=workers, retries=retries, backoff=backoff, timeout=timeout)
    finally:
        bar.close()
    for lst in (report.downloaded, report.skipped):
        lst.sort()
    report.failed = dict(sorted(report.failed.items()))
    return report


def _download_description() -> str:
    """What ``ecg-transfer download --help`` says first: what it does, and each source with its URL."""
    intro = (
        "Download a dataset from PhysioNet into its own folder, --root DIR (default data/ptbxl or "
        "data/g12ec): DIR/ptbxl_database.csv, DIR/records100/... or DIR/g1/E00001.hea ..., no "
        "sub-folder per dataset. Every file is verified against "
        "the release's SHA256SUMS.txt. Interrupted runs resume where they stopped: verified "
        "files are skipped and partial files continue with HTTP Range requests. Exits 1 if any "
        "file could not be fetched intact (they are listed), 2 for bad arguments or an "
        "unreachable file list."
    )
    sources = [
        textwrap.fill(f"{n}: {src.description} ({src.listing_url})", 78, initial_indent="  ", subsequent_indent="    ")
        for n, src in DATASETS.items()
    ]
    return textwrap.fill(intro, 78) + "\n\n" + "\n".join(sources)


def add_download_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``ecg-transfer download``; pair with :func:`run_download`."""
    if parser.description is None:  # leave a description the caller chose alone
        parser.description = _download_description()
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("dataset", choices=sorted(DATASETS), help="which dataset to fetch")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        metavar="DIR",
        help="the dataset's own folder, as for `ecg-transfer data` and a study spec: files go to "
        "DIR/ptbxl_database.csv, DIR/records100/... or DIR/g1/E00001.hea ... "
        "(default: data/ptbxl or data/g12ec)",
    )
    parser.add_argument(
        "--base-url",
        metavar="URL",
        default=None,
        help="fetch from this mirror instead of PhysioNet; it must have the same layout as the "
        "release root (SHA256SUMS.txt directly under it)",
    )
    parser.add_argument(
        "--include",
        metavar="GLOB",
        action="append",
        default=None,
        help="only files whose path under DIR (where they land, e.g. records100/00000/00001_lr.hea "
        "or g1/E00001.hea) matches this glob; a plain folder name "
        "selects everything below it (e.g. --include records100 --include '*.csv' for "
        "PTB-XL, --include g1 for G12EC). Repeatable; default: every file",
    )
    parser.add_argument(
        "--rates",
        metavar="HZ",
        type=int,
        nargs="+",
        default=None,
        help="PTB-XL only: sampling rates to fetch, 100 and/or 500 (records100/ ~0.5 GB, "
        "records500/ ~2.6 GB). Default: both",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=4,
        metavar="N",
        help="parallel downloads (default: %(default)s; keep it small, PhysioNet is a shared server)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=5,
        metavar="N",
        help="extra attempts per file after a network error, truncated transfer or "
        "checksum mismatch (default: %(default)s)",
    )
    parser.add_argument(
        "--backoff",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="wait before the first retry, doubled each time up to 60 s (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="network timeout per connection or read (default: %(default)s)",
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar (for logs and CI)"
    )
    return parser


def run_download(args: argparse.Namespace) -> int:
    """Run the download from parsed arguments; print the summary; 0 ok, 1 failures, 2 error."""
    try:
        report = download(
            args.dataset,
            args.root if args.root is not None else Path("data") / DATASETS[args.dataset].dest,
            base_url=args.base_url,
            include=args.include,
            rates=args.rates,
            retries=args.retries,
            backoff=args.backoff,
            workers=args.workers,
            progress=args.progress,
            timeout=args.timeout,
        )
    except EcgTransferError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    problems = list(report.refused.items()) + list(report.failed.items())
    for rel, reason in problems[:_PRINT_FAILED_MAX]:
        print(f"FAILED {rel}: {reason}", file=sys.stderr)
    failed_list = report.dest / FAILED_FILE
    if len(problems) > _PRINT_FAILED_MAX:
        atomic_write_text(failed_list, "".join(f"{r}\t{why}\n" for r, why in problems))
        print(f"... and {len(problems) - _PRINT_FAILED_MAX} more; full list in {failed_list}", file=sys.stderr)
    elif not problems:
        failed_list.unlink(missing_ok=True)
    print(report.summary())
    if problems:
        print(f"{len(problems)} file(s) not in place; run the same command again to retry them", file=sys.stderr)
    return 0 if report.ok else 1
