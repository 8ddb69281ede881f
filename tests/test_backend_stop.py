"""`clipascene-backend stop` stops the backend serving from a data folder."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from tests.backend_helpers import REPO, start_server, subprocess_env


def stop(data_dir) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clipascene_backend.cli", "stop",
                           "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=subprocess_env())


def test_stop_ends_a_running_backend_and_says_so(tmp_path):
    data = tmp_path / "data"
    server = start_server(data)
    try:
        record = json.loads((data / "backend.pid").read_text())
        assert record["pid"] == server.process.pid and record["port"] == server.port
        result = stop(data)
        assert result.returncode == 0, result.stderr
        assert f"stopped the backend (pid {server.process.pid}" in result.stdout
        assert server.process.wait(timeout=5) is not None
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url + "/v1/health", timeout=5)
        assert not (data / "backend.pid").exists()
        again = stop(data)
        assert again.returncode == 0 and "no backend is running" in again.stdout
    finally:
        server.stop()


def test_stop_with_a_stale_record_touches_no_process(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    (tmp_path / "backend.pid").write_text(json.dumps({"pid": int(finished.stdout), "port": 1}))
    result = stop(tmp_path)
    assert result.returncode == 0 and "has exited" in result.stdout
    assert not (tmp_path / "backend.pid").exists()


@pytest.mark.parametrize("pid", [-1, 0, "-1"])
def test_stop_never_signals_a_non_positive_pid(tmp_path, monkeypatch, capsys, pid):
    # kill(-1, SIGTERM) would reach every process of the user, kill(0, …) our own group: the
    # test records the calls instead of making them.
    from clipascene_backend import cli

    signalled = []
    monkeypatch.setattr(cli.os, "kill", lambda *call: signalled.append(call))
    (tmp_path / "backend.pid").write_text(json.dumps({"pid": pid, "port": 1}))
    assert cli.main(["stop", "--data-dir", str(tmp_path)]) == 0
    assert signalled == []
    assert "no backend is running" in capsys.readouterr().out
