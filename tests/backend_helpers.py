"""Shared helpers of the backend tests: images, job submission, and real server processes.

Servers are started as `python -m clipascene_backend.cli serve` on 127.0.0.1 with the tiny random CLIP
model; every wait below is bounded in time and in the number of requests.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from PIL import Image

from tests.scenes import draw_scene

REPO = Path(__file__).resolve().parents[1]
FINAL = ("done", "failed", "cancelled")

#: The cheapest job there is: one fidelity cell, one region, two steps, no augmentation pool.
TINY = {"preset": "paper", "layers": [2], "rows": 0, "strokes": 4, "iterations": 2, "split": False}


def png_bytes(image: Image.Image | None = None) -> bytes:
    buffer = io.BytesIO()
    (image or draw_scene()).save(buffer, format="PNG")
    return buffer.getvalue()


def submit(client, params: dict | None = None, image: bytes | None = None, name: str = "scene.png",
           mask: bytes | None = None):
    """POST /v1/jobs with `client` (a TestClient or a `ServerClient`), with the drawn `mask` if
    given; returns the response."""
    files = {"image": (name, png_bytes() if image is None else image, "image/png")}
    if mask is not None:
        files["mask"] = ("mask.png", mask, "image/png")
    return client.post("/v1/jobs", files=files,
                       data={"params": json.dumps(TINY if params is None else params)})


def wait_for_status(client, job_id: str, wanted=FINAL, timeout: float = 90.0,
                    interval: float = 0.1, check=None) -> dict:
    """Poll GET /v1/jobs/{id} until its status is in `wanted` (and `check(job)` holds, if given)."""
    deadline = time.monotonic() + timeout
    job: dict = {}
    for _ in range(int(timeout / interval) + 1):
        response = client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job = response.json()
        if job["status"] in wanted and (check is None or check(job)):
            return job
        if job["status"] in FINAL:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"job {job_id} did not reach {wanted} in {timeout} s; last seen: {job}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("CLIPASCENE_TOKEN", None)
    return env


def serve_command(port: int, data_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "clipascene_backend.cli", "serve", "--port", str(port),
            "--data-dir", str(data_dir), "--clip-model", "tiny-test", "--weights", "random",
            "--device", "cpu", "--log-level", "WARNING", *extra]


class ServerClient:
    """requests with a base URL and a timeout on every call (the TestClient's calling style)."""

    def __init__(self, base: str, timeout: float = 60.0) -> None:
        self.base = base
        self.timeout = timeout
        self.session = requests.Session()

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return self.session.request(method, self.base + path, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs) -> requests.Response:
        return self.request("DELETE", path, **kwargs)


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    data_dir: Path
    log: Path
    client: ServerClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = ServerClient(f"http://127.0.0.1:{self.port}")

    @property
    def url(self) -> str:
        return self.client.base

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.client.session.close()


def start_server(data_dir: Path, *extra: str, port: int | None = None, token: str | None = None,
                 timeout: float = 90.0, **popen) -> Server:
    """Start `clipascene-backend serve` and wait until GET /v1/health answers.

    With `token`, the server requires it and the returned server's client sends it; `popen`:
    more arguments for subprocess.Popen (e.g. another user, a lower descriptor limit)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = data_dir / f"server-{port}-{time.monotonic_ns()}.log"
    if token is not None:
        extra = (*extra, "--token", token)
    with open(log, "wb") as output:
        process = subprocess.Popen(serve_command(port, data_dir, *extra), cwd=REPO,
                                   env=subprocess_env(), stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, **popen)
    server = Server(process, port, data_dir, log)
    if token is not None:
        server.client.session.headers["Authorization"] = f"Bearer {token}"
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.2) + 1):
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}:\n{server.output()}")
        try:
            if server.client.get("/v1/health", timeout=5).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        except requests.Timeout:
            pass
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    server.stop()
    raise AssertionError(f"the server did not answer /v1/health in {timeout} s:\n{server.output()}")


def server_pool(tmp_path_factory):
    """Generator body of a fixture that gives a function starting servers; all of them are
    stopped at teardown."""
    started: list[Server] = []

    def start(data_dir: Path | None = None, *extra: str, port: int | None = None) -> Server:
        server = start_server(data_dir or tmp_path_factory.mktemp("server"), *extra, port=port)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


def module_server(tmp_path_factory, *extra: str):
    """Generator body of a module-scoped server fixture."""
    server = start_server(tmp_path_factory.mktemp("server"), *extra)
    try:
        yield server
    finally:
        server.stop()


def processes_with(*words: str) -> list[int]:
    """The pids of processes whose command line holds every one of `words` as an argument
    (through /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if all(word.encode() in command for word in words):
                pids.append(int(entry.name))
    return pids
