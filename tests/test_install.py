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


def prefix_sharing_our_packages(prefix: Path) -> Path:
    """A fresh virtual environment that sees this one's packages through a .pth file, so
    install.py finds PyTorch there instead of downloading gigabytes."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True)
    subprocess.run([str(prefix / "bin" / "python"), "-m", "ensurepip", "--upgrade"], check=True,
                   capture_output=True)
    ours = [path for path in sys.path if path.endswith("site-packages")]
    site = next((prefix / "lib").glob("python3*/site-packages"))
    (site / "shared-with-tests.pth").write_text("\n".join(ours) + "\n")
    return prefix


def fake_systemctl(folder: Path) -> Path:
    """A systemctl that logs its arguments: the service step without a real systemd."""
    folder.mkdir()
    log = folder / "calls.log"
    script = folder / "systemctl"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n")
    script.chmod(0o755)
    return log


def test_install_into_a_prefix_start_the_backend_from_the_record_then_uninstall(tmp_path):
    prefix = prefix_sharing_our_packages(tmp_path / "prefix")
    profile, data, config = tmp_path / "inkscape", tmp_path / "data", tmp_path / "config"
    calls = fake_systemctl(tmp_path / "fakebin")
    env = dict(os.environ, XDG_CONFIG_HOME=str(config),
               PATH=f"{tmp_path / 'fakebin'}{os.pathsep}{os.environ['PATH']}")
    arguments = ["--prefix", str(prefix), "--offline", "--inkscape-profile", str(profile),
                 "--data-dir", str(data), "--service"]
    first = install(*arguments, env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "PyTorch" in first.stdout and "already installed" in first.stdout
    again = install(*arguments, env=env)  # re-running is safe
    assert again.returncode == 0, again.stdout[-3000:]

    extension = profile / "extensions" / "clipascene"
    for name in ("clipascene_sketch.inx", "clipascene_change.inx", "clipascene_sketch.py",
                 "clipascene_ext/effects.py", "clipascene_ext/picker.ui"):
        assert (extension / name).is_file(), name
    record = json.loads((extension / "clipascene_ext" / "backend.json").read_text())
    backend = Path(record["backend"])
    assert backend == prefix / "bin" / "clipascene-backend" and backend.is_file()
    assert "offline: no weights downloaded" in first.stdout
    unit = config / "systemd" / "user" / "clipascene-backend.service"
    assert f"ExecStart={backend} serve --data-dir {data}" in unit.read_text()
    assert "enable --now clipascene-backend.service" in calls.read_text()

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

    removed = install("--uninstall", "--data-dir", str(data), env=env)
    assert removed.returncode == 0, removed.stdout
    assert not extension.exists() and not unit.exists()
    assert "disable --now clipascene-backend.service" in calls.read_text()
    assert not (data / "install-record.json").exists()
    assert not (data / "models").exists()  # created by the install, so removed
    assert prefix.exists()  # an environment it did not create stays
    assert (profile / "extensions").is_dir()  # Inkscape's own folder stays


def test_uninstall_without_an_installation_changes_nothing(tmp_path):
    result = install("--uninstall", "--data-dir", str(tmp_path))
    assert result.returncode == 0 and "nothing to uninstall" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_without_internet_it_says_at_once_that_the_weights_cannot_be_reached(tmp_path):
    import torch

    prefix = prefix_sharing_our_packages(tmp_path / "prefix")
    # A proxy that refuses every connection stands for a machine without internet; the package
    # registries stay reachable, as they are for pip in this environment.
    dead = f"http://127.0.0.1:{free_port()}"
    registries = "pypi.org,files.pythonhosted.org,download.pytorch.org"
    env = dict(os.environ, https_proxy=dead, HTTPS_PROXY=dead, no_proxy=registries,
               NO_PROXY=registries)
    result = install("--prefix", str(prefix), "--no-inkscape", "--data-dir", str(tmp_path / "data"),
                     env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "the model weights cannot be downloaded: https://huggingface.co" in result.stdout
    assert "models download" in result.stdout  # what to run once online
    # No download was even tried: no retries, no pages of hub messages.
    assert "fetching through open_clip" not in result.stdout
    assert "Traceback" not in result.stderr and "huggingface_hub" not in result.stderr
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    assert f"PyTorch already installed: {torch.__version__.split('+')[0]}, {build}" in result.stdout
