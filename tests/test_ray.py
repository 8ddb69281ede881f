"""Jobs on a real Ray runtime: started here on 127.0.0.1 with 2 CPUs and no dashboard, shared by
the module. The daemon's ray executor (through `clipascene-backend serve` and in-process),
cancel, a Ray worker process killed mid-job, and `clipascene batch` across the cluster."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

# Before Ray is imported: every Ray process binds and talks on 127.0.0.1 only.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray", reason="Ray is the cluster extra: python3 install.py --dev")

from fastapi.testclient import TestClient  # noqa: E402

from clipascene_backend.app import create_app  # noqa: E402
from clipascene_backend.executors import ExecutorSettings  # noqa: E402
from clipascene_backend.settings import Settings  # noqa: E402
from clipascene_backend.worker import ModelSettings  # noqa: E402
from clipascene_core.cli.commands import main as clipascene  # noqa: E402
from tests.backend_helpers import (  # noqa: E402
    TINY,
    png_bytes,
    server_pool,
    submit,
    wait_for_status,
)
from tests.scenes import draw_scene  # noqa: E402

#: Four cells over several seconds on a Ray worker: one column, three simplicity rows.
ROWS_JOB = {"preset": "preview", "layers": [2], "rows": 3, "strokes": 4, "iterations": 2,
            "row_steps": 40, "split": False}


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False)
    try:
        address = ray.get_runtime_context().gcs_address
        assert address.startswith("127.0.0.1:"), address
        yield address
    finally:
        ray.shutdown()


@pytest.fixture
def start_server(tmp_path_factory):
    yield from server_pool(tmp_path_factory)


def make_client(data_dir: Path, executor: ExecutorSettings) -> TestClient:
    # fp32 pinned: `auto` is measured in each process, per thread count (a Ray task runs one
    # thread, this process two), and on a busy machine the tiny model's two precisions are
    # close enough for the measurement to choose either; cells compared across executors
    # must come from one precision.
    models = ModelSettings("tiny-test", "random", data_dir / "models", precision="fp32")
    return TestClient(create_app(Settings(data_dir=data_dir, devices=["cpu"], models=models,
                                          executor=executor)))


@pytest.fixture(scope="module")
def on_ray(cluster, tmp_path_factory):
    """An in-process daemon whose jobs run on the cluster (the test process is its driver)."""
    data_dir = tmp_path_factory.mktemp("ray-daemon")
    with make_client(data_dir, ExecutorSettings("ray", cluster, gpus_per_job=0)) as client:
        client.data_dir = data_dir
        yield client


def cell_files(client, job_id: str) -> dict[str, bytes]:
    cells = client.get(f"/v1/jobs/{job_id}/matrix").json()["cells"]
    assert all(cell["ready"] for cell in cells)
    return {f"{cell['row']},{cell['column']}": client.get(cell["urls"]["combined"]).content
            for cell in cells}


def matrix_processes(job_id: str) -> list[int]:
    """Ray worker processes running a job's matrix: Ray titles them ray::<task name>."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if command.startswith(f"ray::clipascene job {job_id}".encode()):
            found.append(int(entry.name))
    return found


def test_two_jobs_through_the_daemon_on_ray_give_the_local_executors_cells(
        cluster, tmp_path, start_server):
    # The second job is split by a drawn mask: the mask travels to the task too.
    drawn = Image.new("L", draw_scene().size, 0)
    ImageDraw.Draw(drawn).rectangle((25, 15, 85, 80), fill=255)
    jobs = [(dict(TINY, seed=1), None), (dict(TINY, seed=2, split=True), png_bytes(drawn))]
    server = start_server(tmp_path / "ray", "--executor", "ray", "--ray-address", cluster,
                          "--gpus-per-job", "0", "--precision", "fp32")  # see make_client
    health = server.client.get("/v1/health").json()
    assert health["executor"]["kind"] == "ray" and health["executor"]["jobs_at_once"] == 2
    assert health["executor"]["cluster"]["total"]["CPU"] == 2
    ids = [submit(server.client, params, mask=mask).json()["id"] for params, mask in jobs]
    for job_id in ids:
        assert wait_for_status(server.client, job_id, timeout=120)["status"] == "done"
    on_ray = [cell_files(server.client, job_id) for job_id in ids]
    manifest = server.client.get(f"/v1/jobs/{ids[1]}/manifest.json").json()
    assert manifest["preprocessing"]["mask_method"] == "user"
    assert manifest["model"]["precision"] == "fp32"  # the pinned precision reached the task

    with make_client(tmp_path / "local", ExecutorSettings()) as local:
        assert local.get("/v1/health").json()["executor"] == {"kind": "local"}
        local_ids = [submit(local, params, mask=mask).json()["id"] for params, mask in jobs]
        here = []
        for job_id in local_ids:
            assert wait_for_status(local, job_id, timeout=120)["status"] == "done"
            here.append(cell_files(local, job_id))
    assert on_ray == here
    assert on_ray[0] != on_ray[1]  # the seeds differ, and so do the sketches


def test_cancel_stops_the_ray_task(on_ray):
    job_id = submit(on_ray, dict(ROWS_JOB, row_steps=5000, seed=3)).json()["id"]
    wait_for_status(on_ray, job_id, wanted=("running",), timeout=60,
                    check=lambda job: job["progress"]["stage"] in ("drafts", "training", "fidelity",
                                                                    "simplicity"))
    assert matrix_processes(job_id), "the job's Ray task is not running"
    assert on_ray.delete(f"/v1/jobs/{job_id}").status_code == 200
    assert wait_for_status(on_ray, job_id, timeout=60)["status"] == "cancelled"
    deadline = time.monotonic() + 30
    while matrix_processes(job_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not matrix_processes(job_id), "the Ray task still runs after the cancel"

    def free_cpus() -> float:
        return on_ray.get("/v1/health").json()["executor"]["cluster"]["available"]["CPU"]

    # Ray returns a cancelled task's CPU a moment after its process ends.
    deadline = time.monotonic() + 30
    while free_cpus() != 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    cluster = on_ray.get("/v1/health").json()["executor"]["cluster"]
    assert cluster["available"]["CPU"] == cluster["total"]["CPU"] == 2


def test_a_killed_ray_worker_is_retried_and_the_cells_received_stay(on_ray):
    job_id = submit(on_ray, dict(ROWS_JOB, seed=4)).json()["id"]
    job = wait_for_status(on_ray, job_id, wanted=("running",), timeout=90,
                          check=lambda job: job["progress"]["cells_done"] >= 1)
    assert job["progress"]["cells_done"] < 4, "the job ended before its worker could be killed"
    out = on_ray.data_dir / "jobs" / job_id / "out" / "cells"
    # The final cells received so far (a draft's files are replaced by its final cell's).
    finals = {f"r{cell['row']}_L{cell['layer']}." for cell in
              on_ray.get(f"/v1/jobs/{job_id}/matrix").json()["cells"] if cell["ready"] and not cell["draft"]}
    first = {path.name: (path.stat().st_ino, path.read_bytes()) for path in out.iterdir()
             if any(path.name.startswith(prefix) for prefix in finals)}
    assert first
    [pid] = matrix_processes(job_id)
    os.kill(pid, signal.SIGKILL)
    job = wait_for_status(on_ray, job_id, timeout=120)
    assert job["status"] == "done", job
    assert any("died" in notice and "try 2 of 3" in notice for notice in job["notices"])
    assert job["progress"]["cells_done"] == 4
    for name, (inode, data) in first.items():  # received before the kill: the very same files
        assert (out / name).stat().st_ino == inode and (out / name).read_bytes() == data
    assert len(cell_files(on_ray, job_id)) == 4


def test_batch_here_then_across_the_cluster_then_again_skips_what_is_done(cluster, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for index, size in enumerate(((160, 96), (120, 120), (90, 150))):
        draw_scene(*size).save(photos / f"photo{index}.png")
    out = tmp_path / "out"
    options = ["--out", str(out), "--clip-model", "tiny-test", "--weights", "random", "--quiet",
               "--preset", "paper", "--layers", "2", "--rows", "0", "--strokes", "4",
               "--iterations", "2", "--no-split", "--device", "cpu"]
    on_ray = ["--ray", cluster, "--gpus-per-job", "0"]

    assert clipascene(["batch", str(photos / "photo0.png"), *options]) == 0  # here, one image
    assert "1 sketched, 0 skipped" in capsys.readouterr().out
    assert clipascene(["batch", str(photos), *options, *on_ray]) == 0
    assert "2 sketched, 1 skipped (already done), 0 failed" in capsys.readouterr().out
    written = {}
    for index in range(3):
        manifest = json.loads((out / f"photo{index}" / "manifest.json").read_text())
        assert manifest["cells_done"] == manifest["cells_total"] == 1
        written[index] = (out / f"photo{index}" / "manifest.json").stat().st_mtime_ns
    assert clipascene(["batch", str(photos), *options, *on_ray]) == 0
    assert "0 sketched, 3 skipped (already done), 0 failed" in capsys.readouterr().out
    assert written == {index: (out / f"photo{index}" / "manifest.json").stat().st_mtime_ns
                       for index in range(3)}
