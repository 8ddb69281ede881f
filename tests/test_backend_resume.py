"""Nothing finished is lost: a cancelled job keeps its finished cells, and submitting it again
resumes it (its finished columns are not trained again) and ends with the cells an
uninterrupted run makes."""

from __future__ import annotations

import re

import numpy as np
from fastapi.testclient import TestClient

from clipascene_backend.app import create_app
from clipascene_backend.settings import Settings
from clipascene_backend.worker import ModelSettings
from tests.backend_helpers import submit, wait_for_status

#: Two columns of two cells each (the fidelity sketch and one simplicity row), fresh
#: augmentations every step: the shared random stream that a resumed run must pick up.
JOB = {"preset": "standard", "layers": [2, 8], "rows": 1, "strokes": 4, "iterations": 4,
       "row_steps": 3, "split": True, "seed": 5}
CELLS = [(row, column) for row in range(2) for column in range(2)]


def make_app(data_dir):
    models = ModelSettings("tiny-test", "random", data_dir / "models")
    return create_app(Settings(data_dir=data_dir, devices=["cpu"], models=models))


def cell_svgs(client, job_id: str, cells) -> dict:
    svgs = {}
    for row, column in cells:
        response = client.get(f"/v1/jobs/{job_id}/cells/{row}/{column}.svg")
        assert response.status_code == 200, (row, column, response.text)
        svgs[(row, column)] = response.content
    return svgs


def numbers(svg: bytes) -> np.ndarray:
    """Every coordinate of the cell's path data, in order."""
    paths = re.findall(rb' d="([^"]*)"', svg)
    return np.array([float(value) for path in paths
                     for value in re.findall(rb"-?\d+(?:\.\d+)?(?:e-?\d+)?", path)])


def test_a_cancelled_job_keeps_its_cells_and_resumes_to_an_uninterrupted_runs_cells(tmp_path):
    with TestClient(make_app(tmp_path / "interrupted")) as client:
        store = client.app.state.workers[0].store
        add_cell = store.add_cell

        def cancel_after_the_first_column(job_id, cell):
            # What DELETE /v1/jobs/{id} does, at a known moment: the first column is finished
            # (its final cells, not the drafts a CPU run shows first).
            add_cell(job_id, cell)
            if sum(not done.draft for done in store.cells(job_id)) == 2:
                store.request_cancel(job_id)

        store.add_cell = cancel_after_the_first_column
        job_id = submit(client, JOB).json()["id"]
        assert wait_for_status(client, job_id, timeout=240)["status"] == "cancelled"
        store.add_cell = add_cell
        final = [cell for cell in store.cells(job_id) if not cell.draft]
        finished = sorted((cell.row, cell.column) for cell in final)
        assert finished == [(0, 0), (1, 0)], "the finished cells are still listed"
        before = cell_svgs(client, job_id, finished)
        files = sorted((tmp_path / "interrupted" / "jobs" / job_id / "out" / "cells").glob("*L2*"))
        written = {path.name: path.stat().st_mtime_ns for path in files}

        again = submit(client, JOB)
        assert again.status_code == 202 and again.json()["id"] == job_id
        matrix = client.get(f"/v1/jobs/{job_id}/matrix").json()
        assert matrix["cells_done"] >= 2, "shown at once on the job submitted again"
        assert cell_svgs(client, job_id, finished) == before
        assert wait_for_status(client, job_id, timeout=240)["status"] == "done"
        resumed = cell_svgs(client, job_id, CELLS)
        assert {cell: resumed[cell] for cell in finished} == before
        assert {path.name: path.stat().st_mtime_ns for path in files} == written, \
            "the finished column was not computed again"
        manifest = client.get(f"/v1/jobs/{job_id}/manifest.json").json()
        assert sorted((cell["row"], cell["column"]) for cell in manifest["cells"]) == CELLS

    with TestClient(make_app(tmp_path / "uninterrupted")) as client:
        whole = submit(client, JOB).json()["id"]
        assert wait_for_status(client, whole, timeout=240)["status"] == "done"
        uninterrupted = cell_svgs(client, whole, CELLS)
    for cell in CELLS:
        got, want = numbers(resumed[cell]), numbers(uninterrupted[cell])
        assert got.shape == want.shape and got.size, cell
        np.testing.assert_allclose(got, want, atol=1e-3, err_msg=str(cell))


def test_a_failed_job_submitted_again_starts_with_a_clean_bar_and_no_old_notices(tmp_path):
    from clipascene_backend.store import JobStore
    from clipascene_core.io.records import Layout, Progress

    store = JobStore(tmp_path)
    arguments = ("key", {"preset": "preview"}, Layout(1, (2,), False), "a.png", b"png", ".png", 4, 4)
    job, _ = store.submit(*arguments)
    store.claim_next("cpu")
    store.update(job.id, progress=Progress("simplicity", 0.95, 95, 100, 5.0),
                 notices=["the mask came from a fallback"])
    store.finish(job.id, "failed", "out of memory")
    again, cached = store.submit(*arguments)
    assert (again.id, again.status, cached) == (job.id, "queued", False)
    assert again.progress == Progress() and again.notices == [] and again.error is None


def test_the_jobs_of_one_image_are_found_by_its_bytes(tmp_path):
    """GET /v1/jobs?image_sha256=: every job of one photo (other settings too), newest first."""
    import hashlib

    from tests.backend_helpers import png_bytes
    from tests.scenes import draw_scene

    photo, other = png_bytes(draw_scene(60, 40)), png_bytes(draw_scene(50, 40))
    models = ModelSettings("tiny-test", "random", tmp_path / "models")
    app = create_app(Settings(data_dir=tmp_path, devices=["cpu"], models=models, start_workers=False))
    with TestClient(app) as client:
        first = submit(client, {**JOB, "rows": 1}, image=photo).json()["id"]
        submit(client, JOB, image=other)
        second = submit(client, {**JOB, "rows": 2}, image=photo).json()["id"]
        (tmp_path / "jobs" / first / "input.sha256").unlink()  # a job from before: computed
        found = client.get("/v1/jobs", params={"image_sha256": hashlib.sha256(photo).hexdigest()})
        assert [job["id"] for job in found.json()] == [second, first]
        assert client.get("/v1/jobs", params={"image_sha256": "0" * 64}).json() == []
        assert client.get("/v1/jobs", params={"image_sha256": "not a digest"}).status_code == 422
