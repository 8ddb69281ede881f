"""The weights downloader against a local HTTP server (loopback only) serving fake files."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clipascene_core.cli.commands import main
from clipascene_core.models.downloads import DownloadError, download, verify
from clipascene_core.models.weights import WeightsFile

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class FakeServer:
    """Serves PAYLOAD with Range support; `cut_first` requests end early (interrupted)."""

    def __init__(self) -> None:
        self.requests: list[str | None] = []
        self.cut_first = 0
        self.payload = PAYLOAD
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.requests.append(self.headers.get("Range"))
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                    if start >= len(owner.payload):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                else:
                    self.send_response(200)
                body = owner.payload[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if owner.cut_first > 0:
                    owner.cut_first -= 1
                    self.wfile.write(body[: len(body) // 3])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/weights.bin"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    fake = FakeServer()
    yield fake
    fake.close()


def entry(url: str, md5: str | None = None, size: int = len(PAYLOAD)) -> WeightsFile:
    return WeightsFile("fake", "a test file", "fake.bin", url, size,
                       md5 if md5 is not None else hashlib.md5(PAYLOAD).hexdigest(), False)


def test_download_verifies_and_places_the_file(tmp_path, server):
    progress = []
    path = download(entry(server.url), tmp_path, on_progress=lambda done, total: progress.append(done))
    assert path.read_bytes() == PAYLOAD
    assert progress[-1] == len(PAYLOAD)
    assert verify(entry(server.url), tmp_path) == "present"
    assert not list(tmp_path.glob("*.part"))
    # A second call finds the verified file and asks nothing.
    download(entry(server.url), tmp_path)
    assert len(server.requests) == 1


def test_interrupted_transfers_resume_with_range_requests(tmp_path, server):
    server.cut_first = 2
    path = download(entry(server.url), tmp_path, backoff=0)
    assert path.read_bytes() == PAYLOAD
    assert server.requests[0] is None and all(r and r.startswith("bytes=") for r in server.requests[1:])
    assert len(server.requests) == 3


def test_a_partial_file_from_an_earlier_run_is_resumed(tmp_path, server):
    (tmp_path / "fake.bin.part").write_bytes(PAYLOAD[:1000])
    download(entry(server.url), tmp_path)
    assert server.requests == ["bytes=1000-"]
    assert (tmp_path / "fake.bin").read_bytes() == PAYLOAD


def test_wrong_checksum_is_refused_and_nothing_is_left(tmp_path, server):
    with pytest.raises(DownloadError, match="checksum"):
        download(entry(server.url, md5="0" * 32), tmp_path)
    assert not (tmp_path / "fake.bin").exists() and not list(tmp_path.glob("*.part"))


def test_a_corrupt_file_on_disk_is_reported_and_replaced(tmp_path, server):
    (tmp_path / "fake.bin").write_bytes(b"garbage")
    assert verify(entry(server.url), tmp_path) == "corrupt"
    download(entry(server.url), tmp_path)
    assert verify(entry(server.url), tmp_path) == "present"


def test_unreachable_server_fails_after_retries_with_advice(tmp_path):
    with pytest.raises(DownloadError, match="Check the internet connection"):
        download(entry("http://127.0.0.1:9/nothing"), tmp_path, retries=1, backoff=0, timeout=2)


def test_not_enough_space_is_said_before_downloading(tmp_path, server):
    with pytest.raises(DownloadError, match="not enough free space"):
        download(entry(server.url, size=1 << 62), tmp_path)
    assert server.requests == []


def test_models_command_lists_and_verifies(tmp_path, capsys):
    assert main(["models", "list", "--weights-dir", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert "clip" in listing and "u2net" in listing and "missing" in listing
    assert main(["models", "verify", "--weights-dir", str(tmp_path)]) == 1
    capsys.readouterr()
    assert main(["models", "path", "--weights-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path)
    assert main(["models", "list", "nonsense"]) == 2
