"""A job's run facts (the preset that runs, its steps, the device type, the regions) are
resolved once, at submission or when a worker of another device type claims it, and served
from the job's row: no request or event tick builds a configuration, reads manifest.json or
reads SQLite on the event loop."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from clipascene_backend.app import create_app
from clipascene_backend.facts import resolve_facts
from clipascene_backend.jobrun import JobRun
from clipascene_backend.settings import ModelSettings, Settings
from clipascene_backend.worker import Worker
from clipascene_core.io.records import OutputFolder
from tests.backend_helpers import TINY, png_bytes, submit, wait_for_status

#: Two regions planned (one column, one row), as cheap as TINY.
SPLIT = {**TINY, "split": True}


def make_app(data_dir, **settings):
    models = ModelSettings("tiny-test", "random", data_dir / "models")
    return create_app(Settings(data_dir=data_dir, devices=["cpu"], models=models, **settings))


def events_of(client, job_id: str) -> list[tuple[str, dict]]:
    """The (kind, data) events of a finished job's stream, which ends by itself."""
    text = client.get(f"/v1/jobs/{job_id}/events").text
    kinds = [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")]
    datas = [json.loads(line.removeprefix("data: ")) for line in text.splitlines()
             if line.startswith("data: ")]
    return list(zip(kinds, datas, strict=True))


@pytest.fixture
def no_config_builds(monkeypatch):
    """From now on, building a job's configuration or reading a manifest raises."""
    from clipascene_backend import params

    def refuse(*_args, **_kwargs):
        raise AssertionError("a configuration was built for a request")

    def unread(*_args, **_kwargs):
        raise AssertionError("manifest.json was read for a request")

    def arm():
        monkeypatch.setattr(params._Checks, "to_config", refuse)
        monkeypatch.setattr(OutputFolder, "read_manifest", unread)
    return arm


def test_a_finished_job_is_served_without_building_its_configuration(tmp_path, no_config_builds):
    with TestClient(make_app(tmp_path)) as client:
        job = wait_for_status(client, submit(client, TINY).json()["id"], timeout=120)
        assert job["status"] == "done", job
        no_config_builds()
        again = client.get(f"/v1/jobs/{job['id']}").json()
        assert again["preset"] == job["preset"] == {
            "requested": "paper", "ran": "paper",
            "steps": {"fidelity": {"scene": {"2": 2}}, "row_steps": 400, "rows": 0,
                      "seeds": [0, 1000]}}
        assert client.get("/v1/jobs").json()[0]["preset"] == job["preset"]
        matrix = client.get(f"/v1/jobs/{job['id']}/matrix").json()
        assert (matrix["regions"], matrix["cells_done"]) == (["scene"], 1)
        kinds = [kind for kind, _ in events_of(client, job["id"])]
        assert kinds[0] == "cell" and kinds[-1] == "done"


def test_a_queued_auto_job_shows_the_preset_resolved_at_submission(tmp_path, no_config_builds):
    with TestClient(make_app(tmp_path, start_workers=False)) as client:
        job_id = submit(client, {**SPLIT, "preset": "auto"}).json()["id"]
        no_config_builds()
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert (job["preset"]["requested"], job["preset"]["ran"]) == ("auto", "preview")
        assert job["progress"]["eta_s"] > 0  # estimated from the stored step counts
        matrix = client.get(f"/v1/jobs/{job_id}/matrix").json()
        assert matrix["regions"] == ["background", "foreground"] and matrix["split"] is True
        with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
            lines = response.iter_lines()
            assert next(lines) == "event: progress"
            assert json.loads(next(lines).removeprefix("data: "))["status"] == "queued"


def test_the_regions_a_split_fell_back_to_are_recorded_when_the_worker_learns_them(tmp_path):
    """A blank image has no object: planned as two regions, it is sketched as one scene, and
    the job, its matrix and its step counts say so (from the job's row)."""
    with TestClient(make_app(tmp_path, start_workers=False)) as client:
        blank = png_bytes(Image.new("RGB", (80, 60), "white"))
        job_id = submit(client, SPLIT, image=blank).json()["id"]
        planned = client.get(f"/v1/jobs/{job_id}").json()["preset"]["steps"]["fidelity"]
        assert set(planned) == {"background", "foreground"}
    with TestClient(make_app(tmp_path)) as client:
        job = wait_for_status(client, job_id, timeout=120)
        assert job["status"] == "done", job
        assert list(job["preset"]["steps"]["fidelity"]) == ["scene"]
        matrix = client.get(f"/v1/jobs/{job_id}/matrix").json()
        assert (matrix["regions"], matrix["split"]) == (["scene"], False)
        manifest = client.get(f"/v1/jobs/{job_id}/manifest.json").json()
        assert manifest["regions"] == matrix["regions"]
        assert manifest["preset"] == job["preset"]


def test_a_job_claimed_by_a_device_of_another_type_is_resolved_again_once(tmp_path):
    """Resolved for a GPU at submission (`auto` = standard), taken by a CPU worker: the preset
    that runs there (`auto` = preview) is stored for the job."""
    app = make_app(tmp_path, start_workers=False)
    store = app.state.store
    params = {**TINY, "preset": "auto"}
    facts, layout = resolve_facts(params, "cuda")
    assert facts.preset.ran == "standard"
    job, _ = store.submit("key", params, layout, "a.png", png_bytes(), ".png", 8, 8, facts=facts)
    worker = Worker(store, "cpu", app.state.settings.models, threading.Event())
    run = JobRun(worker, store.claim_next("cpu"))
    run.settle_facts()
    stored = store.get(job.id).facts
    assert (stored.device_type, stored.preset.ran) == ("cpu", "preview")
    assert stored.preset.steps.fidelity == {"scene": {"2": 2}}
    assert stored == resolve_facts(params, "cpu")[0]


def test_no_request_reads_the_job_store_on_the_event_loop(tmp_path, monkeypatch):
    """Submitting, the job, its matrix and its event stream: every SQLite read runs on a
    thread, so a slow disk never holds the loop that serves every other client."""
    app = make_app(tmp_path)
    store = app.state.store
    on_loop: list[str] = []
    connect = store._connect

    def watched_connect():
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a thread without a loop: a worker, the thread pool
            pass
        else:
            on_loop.append(threading.current_thread().name)
        return connect()

    with TestClient(app) as client:
        monkeypatch.setattr(store, "_connect", watched_connect)  # the requests', not the start's
        job = wait_for_status(client, submit(client, TINY).json()["id"], timeout=120)
        assert job["status"] == "done", job
        assert client.get(f"/v1/jobs/{job['id']}/matrix").status_code == 200
        assert events_of(client, job["id"])[-1][0] == "done"
        assert submit(client, TINY).json()["cached"] is True
    assert on_loop == []


def test_the_service_settings_import_no_torch():
    """The service's command line and health report read the settings without the engine."""
    script = ("import sys\nimport clipascene_backend.settings\n"
              "from clipascene_backend.settings import ModelSettings, ExecutorSettings\n"
              "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
