"""The downloader against a local HTTP server that misbehaves on purpose.

The server (127.0.0.1 only) serves fixture files from tmp_path with its own Range support and can
corrupt, truncate or refuse individual requests, and it logs every request so the tests can check
what the client actually asked for (e.g. the Range offset after a dropped connection).
"""

from __future__ import annotations

import argparse
import hashlib
import html
import random
import re
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESTORED_PTBXL = REPO / "data" / "ptbxl"

from ecg_transfer.datasets import download as dl  # noqa: E402 (after the paths the fixtures need)
from ecg_transfer.errors import ConfigError  # noqa: E402


# ------------------------------------------------------------------------------- test server


class FixtureServer:
    """Serves ``root``; ``faults[path]`` is a queue of behaviours for that path's next requests."""

    def __init__(self, root: Path, *, listings: bool = False, ignore_range: bool = False):
        self.root = root
        self.listings = listings
        self.ignore_range = ignore_range
        self.sums_text: str | None = None  # served as /SHA256SUMS.txt instead of a file under root
        self.faults: dict[str, list[str]] = {}
        self.always: dict[str, str] = {}
        self.requests: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> "FixtureServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def file_requests(self, path: str) -> list[str | None]:
        """Range headers of the requests made for ``path`` (None where no Range was sent)."""
        return [rng for p, rng in self.requests if p == "/" + path]

    def _next_fault(self, path: str) -> str | None:
        with self._lock:
            if path in self.always:
                return self.always[path]
            queue = self.faults.get(path)
            return queue.pop(0) if queue else None

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:  # noqa: N802
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                rng = self.headers.get("Range")
                with server._lock:
                    server.requests.append((path, rng))
                fault = server._next_fault(path.lstrip("/"))
                if fault == "503":
                    return self._send(503, b"busy")
                if path == "/SHA256SUMS.txt" and server.sums_text is not None:
                    return self._send(200, server.sums_text.encode())
                target = (server.root / path.lstrip("/")).resolve()
                if not target.is_relative_to(server.root.resolve()):
                    return self._send(403, b"outside")
                if target.is_dir() and server.listings:
                    return self._send(200, self._listing(target, path), "text/html")
                if not target.is_file():
                    return self._send(404, b"not found")
                data = target.read_bytes()
                if fault == "corrupt":
                    data = bytes(b ^ 0xFF for b in data)
                start = 0
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m and not server.ignore_range:
                    start = int(m.group(1))
                    if start >= len(data):
                        return self._send(416, b"", extra={"Content-Range": f"bytes */{len(data)}"})
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if fault == "drop":  # half the body, then hang up
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def _send(self, code: int, body: bytes, ctype: str = "text/plain", extra=None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _listing(self, folder: Path, url_path: str) -> bytes:
                # Apache-like: parent link, sort links, then children (dirs with a trailing '/')
                links = ['<a href="../">Parent Directory</a>', '<a href="?C=N;O=D">Name</a>']
                for child in sorted(folder.iterdir()):
                    name = child.name + ("/" if child.is_dir() else "")
                    links.append(f'<a href="{html.escape(urllib.parse.quote(name))}">{html.escape(name)}</a>')
                return ("<html><body>" + "<br>".join(links) + "</body></html>").encode()

        return Handler


# ------------------------------------------------------------------------------- fixtures


def _write_tree(
    server_root: Path, files: dict[str, bytes], sums: bool = True, extra_sum_lines: tuple[str, ...] = ()
) -> None:
    for rel, data in files.items():
        p = server_root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    if sums:
        lines = [f"{hashlib.sha256(d).hexdigest()}  {rel}" for rel, d in sorted(files.items())]
        (server_root / "SHA256SUMS.txt").write_text("\n".join(lines + list(extra_sum_lines)) + "\n")


def _ptbxl_files() -> dict[str, bytes]:
    rng = random.Random(1234)
    files = {
        "ptbxl_database.csv": b"ecg_id,patient_id\n1,15709\n2,13243\n",
        "scp_statements.csv": b",description\nNORM,normal ECG\n",
    }
    for i in (1, 2, 3):
        files[f"records100/00000/{i:05d}_lr.hea"] = f"{i:05d}_lr 12 100 1000\n".encode()
        files[f"records100/00000/{i:05d}_lr.dat"] = rng.randbytes(3000 + i)
        files[f"records500/00000/{i:05d}_hr.dat"] = rng.randbytes(9000 + i)
    return files


@pytest.fixture
def ptbxl(tmp_path):
    files = _ptbxl_files()
    _write_tree(tmp_path / "srv", files)
    return tmp_path / "srv", files, tmp_path / "out"


def _run(server: FixtureServer, out: Path, name: str = "ptbxl", **kw) -> dl.DownloadReport:
    kw.setdefault("backoff", 0.0)
    kw.setdefault("retries", 3)
    kw.setdefault("progress", False)
    kw.setdefault("timeout", 5)
    return dl.download(name, out / dl.DATASETS[name].dest, base_url=server.url, **kw)


def _assert_tree(dest: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        assert (dest / rel).read_bytes() == data, rel
    assert not list(dest.rglob("*.part"))


# ------------------------------------------------------------------------------- tests


def test_full_download_verifies_every_file(ptbxl):
    srv_root, files, out = ptbxl
    with FixtureServer(srv_root) as server:
        report = _run(server, out, progress=True, workers=3)
    assert report.ok and report.verified
    assert sorted(report.downloaded) == sorted(files)
    assert report.skipped == [] and report.failed == {}
    assert report.bytes_downloaded == sum(len(d) for d in files.values())
    _assert_tree(out / "ptbxl", files)
    assert "NOT checksum" not in report.summary()
    assert f"{len(files)} downloaded" in report.summary()


def test_second_run_downloads_nothing_and_rehashes_touched_files(ptbxl):
    srv_root, files, out = ptbxl
    with FixtureServer(srv_root) as server:
        _run(server, out)
        server.requests.clear()
        again = _run(server, out)
        assert again.downloaded == [] and sorted(again.skipped) == sorted(files)
        assert [p for p, _ in server.requests] == ["/SHA256SUMS.txt"]

        # a local file changed behind our back (same size): its mtime/size no longer match the
        # state file, so it is re-hashed, found wrong and fetched again -- and only it
        victim = "records100/00000/00002_lr.dat"
        bad = bytes(b ^ 1 for b in files[victim])
        (out / "ptbxl" / victim).write_bytes(bad)
        server.requests.clear()
        third = _run(server, out)
    assert third.downloaded == [victim]
    assert [p for p, _ in server.requests] == ["/SHA256SUMS.txt", "/" + victim]
    _assert_tree(out / "ptbxl", files)


def test_restart_without_state_file_skips_by_hash(ptbxl):
    srv_root, files, out = ptbxl
    with FixtureServer(srv_root) as server:
        _run(server, out)
        (out / "ptbxl" / dl.STATE_FILE).unlink()
        server.requests.clear()
        again = _run(server, out)
    assert again.downloaded == [] and len(again.skipped) == len(files)
    assert [p for p, _ in server.requests] == ["/SHA256SUMS.txt"]


def test_corrupt_first_response_is_detected_and_fetched_again(ptbxl):
    srv_root, files, out = ptbxl
    victim = "records500/00000/00001_hr.dat"
    with FixtureServer(srv_root) as server:
        server.faults[victim] = ["corrupt"]
        report = _run(server, out)
        assert server.file_requests(victim) == [None, None]  # a fresh GET, not a resume
    assert report.ok and victim in report.downloaded
    _assert_tree(out / "ptbxl", files)


def test_dropped_connection_is_resumed_with_range(ptbxl):
    srv_root, files, out = ptbxl
    victim = "records500/00000/00002_hr.dat"
    half = len(files[victim]) // 2
    with FixtureServer(srv_root) as server:
        server.faults[victim] = ["drop"]
        report = _run(server, out)
        assert server.file_requests(victim) == [None, f"bytes={half}-"]
    assert report.ok
    _assert_tree(out / "ptbxl", files)


def test_server_ignoring_range_restarts_from_zero(ptbxl):
    srv_root, files, out = ptbxl
    victim = "records500/00000/00003_hr.dat"
    with FixtureServer(srv_root, ignore_range=True) as server:
        server.faults[victim] = ["drop"]
        report = _run(server, out)
        # the client asked to resume, the server sent the whole file with 200: no duplicated bytes
        # and no third request: appending the 200 body to the part would have failed the checksum
        assert server.file_requests(victim) == [None, f"bytes={len(files[victim]) // 2}-"]
    assert report.ok
    _assert_tree(out / "ptbxl", files)


def test_transient_server_errors_are_retried(ptbxl):
    srv_root, files, out = ptbxl
    with FixtureServer(srv_root) as server:
        server.faults["SHA256SUMS.txt"] = ["503"]
        server.faults["ptbxl_database.csv"] = ["503", "503"]
        report = _run(server, out)
        assert len(server.file_requests("ptbxl_database.csv")) == 3
    assert report.ok
    _assert_tree(out / "ptbxl", files)


def test_always_corrupt_file_fails_clearly_and_cli_exits_nonzero(ptbxl, capsys):
    srv_root, files, out = ptbxl
    victim = "records100/00000/00003_lr.dat"
    with FixtureServer(srv_root) as server:
        server.always[victim] = "corrupt"
        report = _run(server, out, retries=2)
        assert len(server.file_requests(victim)) == 3  # first try + 2 retries

        parser = dl.add_download_arguments(argparse.ArgumentParser())
        args = parser.parse_args(
            [
                "ptbxl",
                "--root",
                str(out / "ptbxl"),
                "--base-url",
                server.url,
                "--retries",
                "1",
                "--backoff",
                "0",
                "--no-progress",
            ]
        )
        code = dl.run_download(args)
    assert not report.ok and list(report.failed) == [victim]
    reason = report.failed[victim]
    assert "sha256 mismatch" in reason and hashlib.sha256(files[victim]).hexdigest() in reason
    assert "gave up after 3 attempts" in reason
    assert not (out / "ptbxl" / victim).exists()
    assert not (out / "ptbxl" / (victim + dl.PART_SUFFIX)).exists()
    others = {k: v for k, v in files.items() if k != victim}
    _assert_tree(out / "ptbxl", others)

    assert code == 1
    captured = capsys.readouterr()
    assert f"FAILED {victim}: sha256 mismatch" in captured.err
    assert "1 failed" in captured.out


def test_georgia_prefix_is_stripped_and_other_sets_ignored(tmp_path):
    files = {
        "training/georgia/g1/E00001.hea": b"E00001 12 500 5000\n",
        "training/georgia/g1/E00001.mat": random.Random(7).randbytes(4000),
        "training/georgia/g2/E01001.hea": b"E01001 12 500 5000\n",
        "training/cpsc_2018/g1/A0001.hea": b"A0001 12 500 5000\n",
    }
    _write_tree(tmp_path / "srv", files)
    with FixtureServer(tmp_path / "srv") as server:
        report = _run(server, tmp_path / "out", name="g12ec")
        requested = {p for p, _ in server.requests}
    assert report.ok and report.verified
    assert sorted(report.downloaded) == ["g1/E00001.hea", "g1/E00001.mat", "g2/E01001.hea"]
    dest = tmp_path / "out" / "g12ec"
    assert (dest / "g1" / "E00001.hea").read_bytes() == files["training/georgia/g1/E00001.hea"]
    assert (dest / "g1" / "E00001.mat").read_bytes() == files["training/georgia/g1/E00001.mat"]
    assert "/training/georgia/g1/E00001.hea" in requested
    assert not any("cpsc" in p for p in requested)
    assert not (dest / "training").exists()


def test_path_traversal_entries_are_refused(tmp_path, capsys):
    files = {"ok/a.txt": b"fine\n"}
    evil = hashlib.sha256(b"pwned").hexdigest()
    extra = (
        f"{evil}  ../evil.txt",
        f"{evil}  /tmp/abs_evil.txt",
        f"{evil}  ok/../../evil2.txt",
        f"{evil}  training/georgia/../../evil3.txt",
    )
    _write_tree(tmp_path / "srv", files, extra_sum_lines=extra)
    (tmp_path / "evil.txt").write_bytes(b"pwned")  # would be servable if the client asked
    out = tmp_path / "out"
    with FixtureServer(tmp_path / "srv") as server:
        report = _run(server, out)
        requested = [p for p, _ in server.requests]
        parser = dl.add_download_arguments(argparse.ArgumentParser())
        code = dl.run_download(
            parser.parse_args(["ptbxl", "--root", str(out / "ptbxl"), "--base-url", server.url, "--no-progress"])
        )
    assert set(report.refused) == {
        "../evil.txt",
        "/tmp/abs_evil.txt",
        "ok/../../evil2.txt",
        "training/georgia/../../evil3.txt",
    }
    assert all(r.startswith("refused:") for r in report.refused.values())
    assert report.downloaded == ["ok/a.txt"] and not report.ok
    assert requested == ["/SHA256SUMS.txt", "/ok/a.txt"]
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == [dl.STATE_FILE, "a.txt"]
    assert code == 1 and "FAILED ../evil.txt: refused" in capsys.readouterr().err


def test_unsafe_path_reason():
    for bad in ("../x", "a/../../x", "/etc/passwd", "C:/x", "a\\b", "a//b", "./a/./b", "", "a/"):
        assert dl.unsafe_path_reason(bad), bad
    for good in ("records100/00000/00001_lr.dat", "g1/E00001.hea", "..hidden/x", "a..b"):
        assert dl.unsafe_path_reason(good) is None, good


def test_listing_fallback_when_no_checksums(tmp_path, capsys):
    files = {
        "training/georgia/g1/E00001.hea": b"E00001 12 500 5000\n",
        "training/georgia/g1/E00001.mat": b"\x00\x01" * 500,
        "training/georgia/g11/E10001.hea": b"E10001 12 500 5000\n",
        "training/cpsc_2018/A0001.hea": b"x\n",
    }
    _write_tree(tmp_path / "srv", files, sums=False)
    out = tmp_path / "out"
    with FixtureServer(tmp_path / "srv", listings=True) as server:
        report = _run(server, out, name="g12ec")
        again = _run(server, out, name="g12ec")
        parser = dl.add_download_arguments(argparse.ArgumentParser())
        code = dl.run_download(
            parser.parse_args(["g12ec", "--root", str(out / "g12ec"), "--base-url", server.url, "--no-progress"])
        )
    assert report.ok and not report.verified
    assert sorted(report.downloaded) == ["g1/E00001.hea", "g1/E00001.mat", "g11/E10001.hea"]
    assert again.downloaded == [] and len(again.skipped) == 3
    for rel, data in files.items():
        if rel.startswith("training/georgia/"):
            assert (out / "g12ec" / rel.removeprefix("training/georgia/")).read_bytes() == data
    assert code == 0 and "NOT checksum-verified" in capsys.readouterr().out


def test_include_and_rates_select_subsets(ptbxl):
    srv_root, files, out = ptbxl
    with FixtureServer(srv_root) as server:
        only100 = _run(server, out / "a", rates=[100])
        inc = _run(server, out / "b", include=["records100", "*.csv"])
        glob = _run(server, out / "c", include=["records*/00000/00001_*"])
        with pytest.raises(ConfigError, match="nothing in the ptbxl list matches"):
            _run(server, out / "d", include=["records250"])
        with pytest.raises(ConfigError, match="rates"):
            _run(server, out / "d", rates=[250])
        with pytest.raises(ConfigError, match="single sampling rate"):
            _run(server, out / "d", name="g12ec", rates=[500])
    expected = sorted(k for k in files if not k.startswith("records500/"))
    assert sorted(only100.downloaded) == expected
    assert sorted(inc.downloaded) == expected
    assert sorted(glob.downloaded) == [
        "records100/00000/00001_lr.dat",
        "records100/00000/00001_lr.hea",
        "records500/00000/00001_hr.dat",
    ]


def test_stale_part_file_from_an_old_run_is_resumed_or_replaced(ptbxl):
    srv_root, files, out = ptbxl
    good = "records500/00000/00001_hr.dat"
    stale = "records500/00000/00002_hr.dat"
    dest = out / "ptbxl"
    (dest / good).parent.mkdir(parents=True)
    (dest / (good + dl.PART_SUFFIX)).write_bytes(files[good][:1000])  # a correct prefix
    (dest / (stale + dl.PART_SUFFIX)).write_bytes(b"garbage" * 10)  # wrong bytes
    with FixtureServer(srv_root) as server:
        report = _run(server, out)
        assert server.file_requests(good) == ["bytes=1000-"]
        assert server.file_requests(stale) == ["bytes=70-", None]  # mismatch -> fresh GET
    assert report.ok
    _assert_tree(dest, files)


def test_dataset_sources_point_at_the_physionet_releases():
    p, g = dl.DATASETS["ptbxl"], dl.DATASETS["g12ec"]
    assert p.base_url == "https://physionet.org/files/ptb-xl/1.0.3/" and p.prefix == ""
    assert p.sums_url == p.base_url + "SHA256SUMS.txt" and p.dest == "ptbxl"
    assert g.sums_url == "https://physionet.org/files/challenge-2020/1.0.2/SHA256SUMS.txt"
    assert g.listing_url == "https://physionet.org/files/challenge-2020/1.0.2/training/georgia/"
    assert g.dest == "g12ec"
    moved = g.with_base_url("http://127.0.0.1:9/mirror")
    assert moved.sums_url == "http://127.0.0.1:9/mirror/SHA256SUMS.txt"
    assert moved.listing_url == "http://127.0.0.1:9/mirror/training/georgia/"


def test_cli_help_explains_options():
    text = dl.add_download_arguments(argparse.ArgumentParser(prog="ecg-transfer download")).format_help()
    for needle in (
        "--root",
        "--base-url",
        "--include",
        "--rates",
        "--workers",
        "--retries",
        "SHA256SUMS.txt",
        "resume",
    ):
        assert needle in text


@pytest.mark.realdata
def test_real_ptbxl_files_verify_against_physionet_hashes(tmp_path):
    """Real PTB-XL records, checked against PhysioNet's own sha256 (from the shared manifest)."""
    manifest = SHARED_DATA / "ptbxl" / "ptbxl-records100.manifest.json"
    if not manifest.is_file():
        pytest.skip(f"real data absent: {manifest} not found")
    if not (RESTORED_PTBXL / ".restored").is_file():
        pytest.skip(f"restored PTB-XL tree absent: {RESTORED_PTBXL}/.restored not found")
    import json

    sums = json.loads(manifest.read_text())["sha256"]
    wanted = sorted(sums)[:10]
    text = "".join(f"{sums[rel]}  {rel}\n" for rel in wanted)
    with FixtureServer(RESTORED_PTBXL) as server:
        server.sums_text = text
        report = _run(server, tmp_path)
    assert report.ok and sorted(report.downloaded) == wanted
    for rel in wanted:
        got = hashlib.sha256((tmp_path / "ptbxl" / rel).read_bytes()).hexdigest()
        assert got == sums[rel]


def test_root_is_the_dataset_folder_and_the_parent_is_refused(ptbxl, tmp_path, capsys):
    """--root means the dataset's own folder everywhere (download, data, the study spec); pointing
    download at the folder above an existing copy is refused with the right path."""
    srv_root, files, out = ptbxl
    with FixtureServer(srv_root) as server:
        _run(server, out)  # out/ptbxl now holds the dataset
        parser = argparse.ArgumentParser()
        dl.add_download_arguments(parser)
        code = dl.run_download(
            parser.parse_args(["ptbxl", "--root", str(out), "--base-url", server.url, "--no-progress"])
        )
    err = capsys.readouterr().err
    assert code == 2 and f"use --root {out / 'ptbxl'}" in err
    assert not (out / "ptbxl_database.csv").exists()  # nothing written beside the copy
