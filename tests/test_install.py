"""install.py into a temporary data folder and Inkscape profile, then --uninstall."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def install(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "install.py"), *args], capture_output=True,
                          text=True, timeout=600, env=env)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_install_then_start_the_backend_from_the_record_then_uninstall(tmp_path):
    profile, data = tmp_path / "inkscape", tmp_path / "data"
    arguments = ["--python", sys.executable, "--offline", "--inkscape-profile", str(profile),
                 "--data-dir", str(data)]
    first = install(*arguments)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    again = install(*arguments)  # re-running is safe
    assert again.returncode == 0, again.stdout[-3000:]

    extension = profile / "extensions" / "clipascene"
    for name in ("clipascene_sketch.inx", "clipascene_change.inx", "clipascene_sketch.py",
                 "clipascene_ext/effects.py", "clipascene_ext/picker.ui"):
        assert (extension / name).is_file(), name
    record = json.loads((extension / "clipascene_ext" / "backend.json").read_text())
    backend = Path(record["backend"])
    assert backend.is_file() and backend.parent == Path(sys.executable).parent
    assert "offline: no weights downloaded" in first.stdout

    # The extension starts the backend from that record: it must run and answer.
    port = free_port()
    server = subprocess.Popen(
        [str(backend), "serve", "--port", str(port), "--data-dir", str(tmp_path / "jobs"),
         "--clip-model", "tiny-test", "--weights", "random", "--device", "cpu",
         "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, HF_HUB_OFFLINE="1"))
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and health is None:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).json()
            except requests.RequestException:
                time.sleep(0.5)
        assert health is not None and health["service"] == "clipascene-backend"
    finally:
        server.terminate()
        server.wait(timeout=30)

    removed = install("--uninstall", "--data-dir", str(data))
    assert removed.returncode == 0, removed.stdout
    assert not extension.exists()
    assert not (data / "install-record.json").exists()
    assert not (data / "models").exists()  # created by the install, so removed
    assert Path(sys.executable).exists()  # an environment it did not create stays
    assert (profile / "extensions").is_dir()  # Inkscape's own folder stays


def test_uninstall_without_an_installation_changes_nothing(tmp_path):
    result = install("--uninstall", "--data-dir", str(tmp_path))
    assert result.returncode == 0 and "nothing to uninstall" in result.stdout
    assert list(tmp_path.iterdir()) == []
