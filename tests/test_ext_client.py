"""The extension's stdlib HTTP client against a real backend, and starting the backend."""

from __future__ import annotations

import gc
import io
import json
import os
import stat
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from clipascene_ext import client  # noqa: E402
from clipascene_ext.client import Backend, BackendError  # noqa: E402
from PIL import Image, ImageDraw

from tests.backend_helpers import free_port, module_server, processes_with
from tests.scenes import draw_scene

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from module_server(tmp_path_factory)


def png(path: Path) -> bytes:
    draw_scene(64, 48).save(path)
    return path.read_bytes()


def test_submit_poll_and_fetch_cells_with_the_stdlib_client(server, tmp_path):
    backend = Backend(server.url)
    assert backend.health()["service"] == "clipascene-backend"
    params = {"preset": "paper", "layers": [2], "rows": 1, "strokes": 4, "iterations": 2,
              "row_steps": 2, "split": False, "seed": 7}
    job = backend.submit(png(tmp_path / "a.png"), 'odd "name".png', params)
    assert job["status"] in ("queued", "running", "done")
    deadline = time.monotonic() + 120
    while backend.job(job["id"])["status"] != "done" and time.monotonic() < deadline:
        time.sleep(0.3)
    matrix = backend.matrix(job["id"])
    assert matrix["status"] == "done" and all(cell["ready"] for cell in matrix["cells"])
    assert backend.cell_svg(job["id"], 1, 0).startswith(b"<?xml")
    assert backend.cell_png(job["id"], 0, 0, size=32).startswith(b"\x89PNG")
    assert backend.submit(png(tmp_path / "a.png"), "again.png", params)["cached"] is True


def wait_done(backend: Backend, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while (job := backend.job(job_id))["status"] not in ("done", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
    return job


def test_the_mask_the_extension_sends_is_the_object_the_backend_splits_off(server, tmp_path):
    """The drawn mask travels as the `mask` part; the job's split follows it, and the picker's
    mask view (GET …/mask.png) shows it."""
    mask = Image.new("L", (64, 48), 0)
    ImageDraw.Draw(mask).ellipse((16, 8, 48, 40), fill=255)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    backend = Backend(server.url)
    params = {"preset": "paper", "layers": [2], "rows": 0, "strokes": 4, "iterations": 2, "seed": 11}
    job = backend.submit(png(tmp_path / "a.png"), "masked.png", params, mask=buffer.getvalue())
    record = wait_done(backend, job["id"])
    assert record["status"] == "done", record
    assert record["image"]["name"] == "masked.png" and record["params"]["seed"] == 11
    assert backend.manifest_json(job["id"])["preprocessing"]["mask_method"] == "user"
    used = np.asarray(Image.open(io.BytesIO(backend.mask_png(job["id"]))).convert("L")) > 127
    assert np.array_equal(used, np.asarray(mask) > 127)
    assert backend.cell_svg(job["id"], 0, 0, part="foreground").startswith(b"<?xml")
    # Without the mask it is another job; with a mask of another size, the backend says why.
    assert backend.submit(png(tmp_path / "a.png"), "masked.png", params)["id"] != job["id"]
    buffer = io.BytesIO()
    mask.resize((32, 24)).save(buffer, format="PNG")
    with pytest.raises(BackendError, match="the mask is 32x24 pixels but the image is 64x48"):
        backend.submit(png(tmp_path / "a.png"), "masked.png", params, mask=buffer.getvalue())


def test_the_picker_shows_the_estimate_of_a_queued_job(server, tmp_path):
    """A job waiting behind another already has an estimate; the picker's details line shows
    it (the time is measured by the jobs this backend ran before, or a default)."""
    from clipascene_ext import words

    backend = Backend(server.url)
    params = {"preset": "paper", "layers": [2], "rows": 0, "strokes": 4, "iterations": 20_000,
              "split": False}
    answers = [backend.submit(png(tmp_path / "a.png"), "long.png", {**params, "seed": seed})
               for seed in (21, 22)]
    jobs = [answer["id"] for answer in answers]
    try:
        # Sketch Image's viewer says at once what the submission estimated, in words.
        said = words.submitted(answers[1:])
        assert said.startswith("The backend expects this sketch to take about "), said
        assert ("measured on this backend" if answers[1]["estimate"] == "measured"
                else "a first guess") in said
        waiting = backend.job(jobs[1])
        assert waiting["status"] == "queued"
        assert waiting["progress"]["estimate"] in ("measured", "default")
        assert waiting["progress"]["eta_s"] > 60
        details = words.details(waiting)
        assert "more on this computer" in details, details
    finally:
        for job_id in jobs:
            backend.cancel(job_id)


def test_refusals_become_user_messages(server):
    backend = Backend(server.url)
    with pytest.raises(BackendError, match="refused the request: .*no job"):
        backend.job("0123456789abcdef")
    with pytest.raises(BackendError, match="not a CLIPascene job id"):
        backend.job("../../etc/passwd")


def test_an_installed_backend_is_started_when_not_running(tmp_path, monkeypatch):
    """install.py records the backend command and its data folder; the extension starts it
    there (after `install.py --data-dir D` the weights are in D, not the default folder) and
    waits for health."""
    launcher = tmp_path / "clipascene-backend"
    launcher.write_text(
        f"#!/bin/sh\nexec {sys.executable} -m clipascene_backend.cli \"$@\" "
        "--clip-model tiny-test --weights random --device cpu --log-level WARNING\n")
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR)
    record = tmp_path / "backend.json"
    record.write_text(json.dumps({"backend": str(launcher), "data_dir": str(tmp_path / "data")}))
    monkeypatch.setattr(client, "BACKEND_RECORD", record)
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    backend = Backend(f"http://127.0.0.1:{free_port()}")
    # Inkscape shows any warning in a modal dialog: starting the backend must leave none
    # (a Popen dropped while its child runs is reported as a ResourceWarning when collected).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        health = backend.ensure_running()
        gc.collect()
    assert not [str(item.message) for item in caught if item.category is ResourceWarning]
    try:
        assert health["service"] == "clipascene-backend"
        assert (tmp_path / "data" / "jobs.sqlite3").is_file(), "not started in the recorded folder"
    finally:
        pid = _server_pid(tmp_path / "data")
        if pid:
            os.kill(pid, 15)


def test_without_an_installed_backend_one_message_says_how_to_get_it(tmp_path, monkeypatch):
    """No record (the Extension Manager's zip has none), nothing on PATH or in ~/.local/bin:
    one dialog says what the daemon is and how to install it on this OS."""
    monkeypatch.setattr(client, "BACKEND_RECORD", tmp_path / "absent.json")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(BackendError) as raised:
        Backend(f"http://127.0.0.1:{free_port()}").ensure_running()
    message = str(raised.value)
    assert "not installed" in message and "clipascene inkscape install" in message
    assert "pipx install" in message and "\n" not in message
    assert "PowerShell" in client.how_to_get_the_daemon("win32")
    assert "Homebrew" in client.how_to_get_the_daemon("darwin")


def test_a_backend_installed_by_pipx_is_found_without_a_record(tmp_path, monkeypatch):
    """pipx and uv put commands in ~/.local/bin, which Inkscape started from a menu may not
    have on its PATH."""
    monkeypatch.setattr(client, "BACKEND_RECORD", tmp_path / "absent.json")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert client.installed_backend() is None
    launcher = tmp_path / ".local" / "bin" / "clipascene-backend"
    launcher.parent.mkdir(parents=True)
    launcher.write_text("#!/bin/sh\n")
    launcher.chmod(0o755)
    assert client.installed_backend() == [str(launcher)]


def test_the_daemon_tells_its_api_version_and_a_mismatch_says_which_to_update(server):
    health = Backend(server.url).ensure_running(start=False)
    assert health["api_version"] == client.API_VERSION and health["version"] == client.__version__
    older = client.version_problem({**health, "api_version": client.API_VERSION - 1}, server.url)
    assert "update the daemon" in older and "pipx upgrade" in older
    del health["api_version"]  # a daemon from before API versions
    assert "update the daemon" in client.version_problem(health, server.url)
    newer = client.version_problem({**health, "api_version": client.API_VERSION + 1}, server.url)
    assert "update the extension" in newer and "clipascene inkscape install" in newer
    with pytest.raises(BackendError, match="update the extension"):
        client.checked({**health, "api_version": client.API_VERSION + 1}, server.url)


def _server_pid(data_dir: Path) -> int | None:
    """The started backend's pid (it runs in its own session)."""
    pids = processes_with("clipascene_backend.cli", str(data_dir))
    return pids[0] if pids else None
