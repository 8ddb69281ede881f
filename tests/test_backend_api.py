"""The backend's HTTP API in-process (FastAPI's TestClient; the lifespan starts the workers)."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from lxml import etree
from PIL import Image, ImageDraw

from clipascene_backend.app import create_app
from clipascene_backend.routers.service import WEB_PAGE
from clipascene_backend.schemas import (
    EVENTS,
    CellInfo,
    CellReady,
    Health,
    JobInfo,
    MatrixInfo,
    ProgressInfo,
    ProgressUpdate,
    Submitted,
)
from clipascene_backend.settings import Settings
from clipascene_backend.store import valid_job_id
from clipascene_backend.worker import ModelSettings
from clipascene_core.models.weights import WEIGHTS
from tests.backend_helpers import TINY, png_bytes, submit, wait_for_status
from tests.scenes import draw_scene

SVG = "{http://www.w3.org/2000/svg}"
#: Two fidelity columns, one simplicity row, foreground/background split: a 2x2 matrix.
SPLIT_JOB = {"preset": "paper", "layers": [2, 8], "rows": 1, "strokes": 4, "iterations": 2,
             "row_steps": 2, "split": True}


def make_app(data_dir, **settings):
    models = ModelSettings("tiny-test", "random", data_dir / "models")
    return create_app(Settings(data_dir=data_dir, devices=["cpu"], models=models, **settings))


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A client of an app whose worker runs jobs; shared by the tests of finished jobs."""
    data_dir = tmp_path_factory.mktemp("service")
    with TestClient(make_app(data_dir)) as client:
        client.data_dir = data_dir
        yield client


@pytest.fixture(scope="module")
def split_job(service):
    response = submit(service, SPLIT_JOB)
    assert response.status_code == 202, response.text
    return wait_for_status(service, response.json()["id"], timeout=180)


@pytest.fixture(scope="module")
def plain_job(service):
    response = submit(service, TINY)
    assert response.status_code == 202, response.text
    return wait_for_status(service, response.json()["id"], timeout=120)


@pytest.fixture
def idle(tmp_path):
    """A client of an app without workers: submitted jobs stay queued."""
    with TestClient(make_app(tmp_path / "idle", start_workers=False)) as client:
        client.data_dir = tmp_path / "idle"
        yield client


# --- health --------------------------------------------------------------------------------

def test_health_names_the_missing_weights_and_what_to_run(service):
    health = service.get("/v1/health").json()
    assert health["service"] == "clipascene-backend"
    assert health["devices"] == ["cpu"]
    assert health["clip_model"] == "tiny-test"
    assert health["weights"] == {"clip": "not needed", "u2net": "missing", "big-lama": "missing"}
    assert health["missing"] == ["u2net", "big-lama"]
    assert "install.py" in health["how_to_get_missing"]
    assert isinstance(health["queue_depth"], int)


def test_health_reports_weights_present_only_when_size_and_checksum_match(tmp_path, monkeypatch):
    import dataclasses
    import hashlib

    from clipascene_backend import health as health_module

    models = tmp_path / "models"
    models.mkdir()
    content = b"the real weights, in small"
    # The registry's entries with this file's size and checksum (the real ones are 200 MB).
    small = {name: dataclasses.replace(entry, size=len(content),
                                       md5=hashlib.md5(content).hexdigest())
             for name, entry in WEIGHTS.items()}
    monkeypatch.setattr(health_module, "WEIGHTS", small)
    small["u2net"].path(models).write_bytes(content)
    small["big-lama"].path(models).write_bytes(b"x" * len(content))  # right size, wrong bytes
    app = create_app(Settings(data_dir=tmp_path, devices=["cpu"], start_workers=False,
                              models=ModelSettings("tiny-test", "random", models)))
    with TestClient(app) as client:
        health = client.get("/v1/health").json()
        assert health["weights"] == {"clip": "not needed", "u2net": "present", "big-lama": "corrupt"}
        assert health["missing"] == ["big-lama"]
        small["big-lama"].path(models).write_bytes(b"stand-in")  # any file of that name
        assert client.get("/v1/health").json()["weights"]["big-lama"] == "corrupt"
        small["big-lama"].path(models).write_bytes(content)
        health = client.get("/v1/health").json()
    assert health["weights"]["big-lama"] == "present" and health["missing"] == []
    assert health["how_to_get_missing"] is None


def test_health_counts_queued_jobs(idle):
    assert idle.get("/v1/health").json()["queue_depth"] == 0
    submit(idle, TINY)
    submit(idle, {**TINY, "seed": 1})
    assert idle.get("/v1/health").json()["queue_depth"] == 2


# --- a job from submission to its files ---------------------------------------------------

def test_submitted_job_runs_to_done_with_full_progress(split_job):
    assert split_job["status"] == "done", split_job
    assert split_job["error"] is None
    assert split_job["device"] == "cpu"
    assert split_job["created"] <= split_job["started"] <= split_job["finished"]
    progress = split_job["progress"]
    assert progress["cells_done"] == progress["cells_total"] == 4
    assert progress["fraction"] == 1.0
    assert split_job["image"] == {"name": "scene.png", "width": 160, "height": 96}
    assert split_job["params"]["layers"] == [2, 8]
    assert any("random weights" in notice for notice in split_job["notices"])
    # The preset that ran, with its seeds: paper tries seeds 0 and 1000 for every sketch.
    assert split_job["preset"]["ran"] == "paper"
    assert split_job["preset"]["steps"]["seeds"] == [0, 1000]
    assert split_job["preset"]["steps"]["fidelity"]["foreground"] == {"2": 2, "8": 2}


def test_auto_preset_shows_the_cpu_draft_before_the_job_starts(idle):
    response = submit(idle, {"layers": [2]})
    assert response.status_code == 202, response.text
    job = idle.get(f"/v1/jobs/{response.json()['id']}").json()
    assert job["status"] == "queued"
    assert (job["preset"]["requested"], job["preset"]["ran"]) == ("auto", "preview")
    assert job["preset"]["steps"]["fidelity"]["background"] == {"2": 500}
    assert job["preset"]["steps"]["row_steps"] == 100


def test_matrix_lists_every_cell_ready_with_urls(service, split_job):
    matrix = service.get(f"/v1/jobs/{split_job['id']}/matrix").json()
    assert matrix["status"] == "done"
    assert (matrix["rows"], matrix["layers"], matrix["split"]) == (2, [2, 8], True)
    assert matrix["cells_done"] == matrix["cells_total"] == 4
    assert sorted(matrix["regions"]) == ["background", "foreground"]
    assert [(cell["row"], cell["column"], cell["layer"]) for cell in matrix["cells"]] == [
        (0, 0, 2), (0, 1, 8), (1, 0, 2), (1, 1, 8)]
    for cell in matrix["cells"]:
        assert cell["ready"] is True
        base = f"/v1/jobs/{split_job['id']}/cells/{cell['row']}/{cell['column']}"
        assert cell["urls"] == {"combined": f"{base}.svg", "png": f"{base}.png",
                                "foreground": f"{base}.svg?part=foreground",
                                "background": f"{base}.svg?part=background"}
        assert set(cell["strokes"]) == {"background", "foreground"}
        for url in cell["urls"].values():
            assert service.get(url).status_code == 200, url


def _paths_by_group(svg: bytes) -> dict[str, int]:
    """Strokes per group: the pieces of a background stroke cut at the object outline
    (ids "background-stroke-7.0", "…-7.1") are one stroke."""
    root = etree.fromstring(svg)
    return {group.get("id"): len({path.get("id").split(".")[0] for path in group.iter(f"{SVG}path")})
            for group in root.iter(f"{SVG}g")}


def test_cell_svg_parts_hold_their_regions_in_the_image_frame(service, split_job):
    matrix = service.get(f"/v1/jobs/{split_job['id']}/matrix").json()
    cell = matrix["cells"][1]
    base = f"/v1/jobs/{split_job['id']}/cells/0/1.svg"
    combined = service.get(base)
    assert combined.status_code == 200
    assert combined.headers["content-type"] == "image/svg+xml"
    root = etree.fromstring(combined.content)
    assert root.get("viewBox") == "0 0 160 96"
    assert [group.get("id") for group in root.iter(f"{SVG}g")] == ["background", "foreground"]
    assert _paths_by_group(combined.content) == cell["strokes"]
    for part in ("foreground", "background"):
        response = service.get(base, params={"part": part})
        assert response.status_code == 200
        assert _paths_by_group(response.content) == {part: cell["strokes"][part]}
    assert service.get(base, params={"part": "combined"}).content == combined.content


def test_cell_png_is_a_thumbnail_no_larger_than_the_requested_size(service, split_job):
    url = f"/v1/jobs/{split_job['id']}/cells/1/0.png"
    # Thumbnails are never enlarged beyond the input's 160x96 pixels.
    for query, longest in (({}, 160), ({"size": 64}, 64), ({"size": 100, "part": "foreground"}, 100),
                           ({"size": 2048, "part": "background"}, 160)):
        response = service.get(url, params=query)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(response.content))
        assert max(image.size) == longest
        assert image.size[0] > image.size[1]  # the 160x96 input's aspect


def test_grid_png_and_manifest_are_served_when_the_matrix_is_done(service, split_job):
    grid = service.get(f"/v1/jobs/{split_job['id']}/grid.png")
    assert grid.status_code == 200
    assert grid.headers["content-type"] == "image/png"
    Image.open(io.BytesIO(grid.content)).verify()
    manifest = service.get(f"/v1/jobs/{split_job['id']}/manifest.json").json()
    assert manifest["cells_done"] == 4
    assert len(manifest["cells"]) == 4


def test_event_stream_of_a_finished_job_replays_its_cells_and_ends_with_done(service, split_job):
    response = service.get(f"/v1/jobs/{split_job['id']}/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    kinds = [line.removeprefix("event: ") for line in response.text.splitlines()
             if line.startswith("event: ")]
    assert kinds.count("cell") == 4
    assert kinds[-1] == "done"
    # Each event's data is its kind's record, and a cell event's links are the matrix's own.
    datas = [json.loads(line.removeprefix("data: ")) for line in response.text.splitlines()
             if line.startswith("data: ")]
    matrix = service.get(f"/v1/jobs/{split_job['id']}/matrix").json()
    urls = {(cell["row"], cell["column"]): cell["urls"] for cell in matrix["cells"]}
    for kind, data in zip(kinds, datas, strict=True):
        record = EVENTS[kind].model_validate(data, strict=True)
        assert set(data) == set(type(record).model_fields)
        if kind == "cell":
            assert data["urls"] == urls[(data["row"], data["column"])]
        if kind == "progress":  # the job's notices travel with its progress (the picker's text)
            assert data["notices"] == split_job["notices"]


def test_the_web_page_follows_every_kind_of_event():
    """Adding an event kind to the stream without the page handling it fails here."""
    page = WEB_PAGE.read_text()
    listened = set(re.findall(r'stream\.addEventListener\("(\w+)"', page))
    for listing in re.findall(r"for \(const kind of \[([^\]]*)\]\)\s*\{?\s*stream\.addEventListener", page):
        listened |= set(re.findall(r'"(\w+)"', listing))
    assert listened == set(EVENTS)


#: The web page's variables that hold API data, and the models their fields come from.
#: The page's variables and the models their data comes from (`cell` is a matrix cell or a
#: `cell` event's data, `p` a job's progress or a `progress` event's).
PAGE_DATA = {"job": (JobInfo, Submitted), "p": (ProgressInfo, ProgressUpdate),
             "matrix": (MatrixInfo,), "cell": (CellInfo, CellReady), "c": (CellInfo,),
             "health": (Health,)}


def test_the_web_page_reads_only_fields_the_api_declares():
    """Renaming a field of the API's models fails here until the page follows."""
    page = WEB_PAGE.read_text()
    script = page[page.index("<script"):]  # not the style sheet (its ".job.selected")
    for variable, models in PAGE_DATA.items():
        declared = set().union(*(model.model_fields for model in models))
        used = set(re.findall(rf"\b{variable}\.(\w+)", script))
        assert used, f"the page no longer reads `{variable}`: update PAGE_DATA"
        assert used <= declared, f"{variable}: {sorted(used - declared)} are not in the API"


def test_a_jobs_matrix_keeps_the_layout_it_was_submitted_with(idle, monkeypatch):
    """A later change of the presets (here: the preview's rows) leaves an old job's shape."""
    from clipascene_core import config as config_module

    job_id = submit(idle, {"preset": "preview", "layers": [2, 8], "strokes": 4}).json()["id"]
    before = idle.get(f"/v1/jobs/{job_id}/matrix").json()
    assert (before["rows"], before["layers"], before["cells_total"]) == (9, [2, 8], 18)
    monkeypatch.setitem(config_module._PRESETS, "preview",
                        {**config_module._PRESETS["preview"], "simplicity_rows": 2})
    fresh = submit(idle, {"preset": "preview", "layers": [2, 8], "strokes": 5}).json()["id"]
    assert idle.get(f"/v1/jobs/{fresh}/matrix").json()["rows"] == 3  # the change is real
    after = idle.get(f"/v1/jobs/{job_id}/matrix").json()
    assert (after["rows"], after["cells_total"], len(after["cells"])) == (9, 18, 18)
    assert idle.get(f"/v1/jobs/{job_id}").json()["progress"]["cells_total"] == 18


def test_unsplit_job_has_only_the_combined_drawing(service, plain_job):
    assert plain_job["status"] == "done", plain_job
    matrix = service.get(f"/v1/jobs/{plain_job['id']}/matrix").json()
    assert matrix["split"] is False
    assert matrix["regions"] == ["scene"]
    assert set(matrix["cells"][0]["urls"]) == {"combined", "png"}
    base = f"/v1/jobs/{plain_job['id']}/cells/0/0"
    assert service.get(f"{base}.svg").status_code == 200
    for url in (f"{base}.svg?part=foreground", f"{base}.svg?part=background",
                f"{base}.png?part=foreground"):
        response = service.get(url)
        assert response.status_code == 404, url
        assert "sketched as one region" in response.json()["detail"]


def test_the_web_page_is_served_at_the_root(service):
    response = service.get("/")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "CLIPascene" in response.text


# --- the cache ----------------------------------------------------------------------------

def test_identical_image_and_params_return_the_same_job_as_cached(service, plain_job):
    again = submit(service, TINY, name="another-name.png")
    assert again.status_code == 200
    assert again.json() == {"id": plain_job["id"], "status": "done", "cached": True,
                            "eta_s": 0, "estimate": None}


def test_different_params_or_image_make_a_new_job(idle):
    first = submit(idle, TINY)
    assert first.status_code == 202
    assert first.json()["cached"] is False
    ids = {first.json()["id"]}
    for params, image in (({**TINY, "seed": 3}, None), ({**TINY, "strokes": 5}, None),
                          (TINY, png_bytes(draw_scene(161, 96)))):
        response = submit(idle, params, image)
        assert response.status_code == 202
        assert response.json()["cached"] is False
        ids.add(response.json()["id"])
    assert len(ids) == 4
    assert len(idle.get("/v1/jobs").json()) == 4


def test_params_are_stored_in_canonical_form(idle):
    job_id = submit(idle, {"preset": "preview", "layers": "2,8", "split": "false"}).json()["id"]
    params = idle.get(f"/v1/jobs/{job_id}").json()["params"]
    assert params == {"preset": "preview", "layers": [2, 8], "rows": None, "strokes": None,
                      "split": False, "seed": None, "iterations": None, "row_steps": None}
    same = submit(idle, {"split": False, "layers": [2, 8], "preset": "preview"})
    assert same.json()["id"] == job_id and same.json()["cached"] is True


# --- the drawn mask ----------------------------------------------------------------------

#: One fidelity column, no simplicity row, split by the mask: the cheapest split job.
MASKED_JOB = {**TINY, "split": True}


def drawn_masks() -> dict[str, tuple[Image.Image, np.ndarray]]:
    """Two masks over the 160x96 scene, as the user draws them, and the object each marks: the
    disc painted white on black, and the bar opaque on transparent."""
    disc = Image.new("L", (160, 96), 0)
    ImageDraw.Draw(disc).ellipse((32, 19, 80, 77), fill=255)
    bar = Image.new("RGBA", (160, 96), (0, 0, 0, 0))
    ImageDraw.Draw(bar).rectangle((96, 29, 144, 43), fill=(200, 30, 30, 255))
    return {"disc": (disc, np.asarray(disc) > 127), "bar": (bar, np.asarray(bar)[..., 3] > 0)}


def test_each_drawn_mask_makes_its_own_job_whose_split_follows_it(service):
    masks = drawn_masks()
    ids = {}
    for name, (drawing, _) in masks.items():
        response = submit(service, MASKED_JOB, mask=png_bytes(drawing))
        assert response.status_code == 202, response.text
        ids[name] = response.json()["id"]
    assert ids["disc"] != ids["bar"]
    for name, (_, marked) in masks.items():
        job = wait_for_status(service, ids[name], timeout=120)
        assert job["status"] == "done", job
        manifest = service.get(f"/v1/jobs/{job['id']}/manifest.json").json()
        assert manifest["preprocessing"]["mask_method"] == "user"
        assert manifest["regions"] == ["background", "foreground"]
        matrix = service.get(f"/v1/jobs/{job['id']}/matrix").json()
        assert matrix["mask_url"] == f"/v1/jobs/{job['id']}/mask.png"
        served = service.get(matrix["mask_url"])
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/png"
        used = np.asarray(Image.open(io.BytesIO(served.content)).convert("L")) > 127
        assert np.array_equal(used, marked), name
    # The same image and mask again is the same job; without the mask, another one.
    again = submit(service, MASKED_JOB, mask=png_bytes(masks["disc"][0]))
    assert (again.json()["id"], again.json()["cached"]) == (ids["disc"], True)
    unmasked = submit(service, MASKED_JOB)
    assert unmasked.json()["id"] not in ids.values()
    service.delete(f"/v1/jobs/{unmasked.json()['id']}")


def test_the_mask_is_404_with_a_sentence_until_preprocessing_wrote_it(idle):
    split = submit(idle, MASKED_JOB, mask=png_bytes(drawn_masks()["disc"][0])).json()["id"]
    assert (idle.data_dir / "jobs" / split / "user-mask.png").is_file()
    unsplit = submit(idle, TINY).json()["id"]
    for job_id, says in ((split, "preprocessing is done"), (unsplit, "sketched as one region")):
        response = idle.get(f"/v1/jobs/{job_id}/mask.png")
        assert response.status_code == 404
        assert says in response.json()["detail"]
        assert idle.get(f"/v1/jobs/{job_id}/matrix").json()["mask_url"] is None


# --- the estimate before a job runs -------------------------------------------------------

def test_a_queued_job_is_estimated_from_its_steps_at_the_default_cpu_speed(idle):
    response = submit(idle, {"layers": [2, 8]})
    assert response.status_code == 202, response.text
    job = idle.get(f"/v1/jobs/{response.json()['id']}").json()
    assert job["status"] == "queued"
    # The preview preset on a CPU: 4 sketches (2 regions x 2 columns) of 500 fidelity steps and
    # 8 simplicity rows of 100: 5200 cell-steps at 0.7 s, as nothing was measured here yet.
    assert job["progress"]["eta_s"] == pytest.approx(5200 * 0.7)
    assert job["progress"]["estimate"] == "default"
    assert (response.json()["eta_s"], response.json()["estimate"]) == (job["progress"]["eta_s"], "default")
    assert job["device"] == "cpu"  # the device the picker's estimate line asks for


def test_a_queued_job_is_estimated_at_the_speed_measured_by_the_finished_ones(tmp_path):
    """The speed is measured by the worker and kept in the store: an idle service started later
    estimates a job like the finished one to take as long as it took."""
    params = {**MASKED_JOB, "rows": 1, "row_steps": 2}
    with TestClient(make_app(tmp_path)) as client:
        finished = wait_for_status(client, submit(client, params).json()["id"], timeout=120)
    assert finished["status"] == "done", finished
    # 2 regions x 1 column x 2 seeds, each 2 fidelity steps then a row of 2.
    assert finished["progress"]["steps_total"] == 16
    with TestClient(make_app(tmp_path, start_workers=False)) as client:
        queued = client.get(f"/v1/jobs/{submit(client, {**params, 'seed': 5}).json()['id']}").json()
    assert queued["progress"]["estimate"] == "measured"
    took = finished["finished"] - finished["started"]
    assert queued["progress"]["eta_s"] == pytest.approx(took, rel=0.25, abs=0.2)


# --- cancel and purge ---------------------------------------------------------------------

def test_cancelling_a_queued_job_cancels_it_at_once(idle):
    job_id = submit(idle, TINY).json()["id"]
    assert idle.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
    cancelled = idle.delete(f"/v1/jobs/{job_id}")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished"] is not None
    assert idle.delete(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"  # idempotent
    assert idle.get("/v1/health").json()["queue_depth"] == 0
    # Submitting it again queues the same job once more: a run, not a cache hit.
    again = submit(idle, TINY)
    assert again.status_code == 202
    assert (again.json()["id"], again.json()["status"], again.json()["cached"]) == (job_id, "queued", False)


def test_unfinished_job_has_no_files_yet(idle):
    job_id = submit(idle, TINY).json()["id"]
    matrix = idle.get(f"/v1/jobs/{job_id}/matrix").json()
    assert matrix["cells_done"] == 0
    assert [cell["ready"] for cell in matrix["cells"]] == [False]
    assert matrix["cells"][0]["urls"] is None
    for path, message in (("manifest.json", "no cell"), ("grid.png", "whole matrix is done"),
                          ("cells/0/0.svg", "not ready"), ("cells/0/0.png", "not ready")):
        response = idle.get(f"/v1/jobs/{job_id}/{path}")
        assert response.status_code == 404, path
        assert message in response.json()["detail"]


def test_purge_deletes_the_record_and_the_files_of_a_queued_job(idle):
    job_id = submit(idle, TINY).json()["id"]
    folder = idle.data_dir / "jobs" / job_id
    assert (folder / "input.png").is_file()
    response = idle.delete(f"/v1/jobs/{job_id}", params={"purge": "true"})
    assert response.status_code == 200
    assert response.json() == {"id": job_id, "purged": True}
    assert not folder.exists()
    assert idle.get(f"/v1/jobs/{job_id}").status_code == 404
    assert idle.get("/v1/jobs").json() == []


def test_purge_deletes_the_sketches_of_a_finished_job(service):
    job_id = submit(service, {**TINY, "seed": 7}).json()["id"]
    assert wait_for_status(service, job_id)["status"] == "done"
    folder = service.data_dir / "jobs" / job_id
    assert (folder / "out" / "manifest.json").is_file()
    assert service.delete(f"/v1/jobs/{job_id}?purge=true").json()["purged"] is True
    assert not folder.exists()
    assert service.get(f"/v1/jobs/{job_id}/cells/0/0.svg").status_code == 404
    assert job_id not in [job["id"] for job in service.get("/v1/jobs").json()]


# --- token --------------------------------------------------------------------------------

@pytest.fixture
def guarded(tmp_path):
    with TestClient(make_app(tmp_path, token="s3cret-sixteen-chars", start_workers=False)) as client:
        yield client


@pytest.mark.parametrize("path", ["/v1/health", "/v1/jobs", "/", "/openapi.json",
                                  "/v1/jobs/0123456789abcdef"])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "Bearer s3cret-sixteen-charsX"},
                                     {"Authorization": "s3cre"}])
def test_a_token_protected_service_refuses_requests_without_the_token(guarded, path, headers):
    response = guarded.get(path, headers=headers)
    assert response.status_code == 401
    assert "token" in response.json()["detail"]


def test_a_token_protected_service_refuses_an_upload_without_the_token(guarded):
    assert submit(guarded, TINY).status_code == 401
    assert guarded.get("/v1/health", headers={"Authorization": "Bearer s3cret-sixteen-chars"}).json()[
        "queue_depth"] == 0


@pytest.mark.parametrize("how", [{"headers": {"Authorization": "Bearer s3cret-sixteen-chars"}},
                                 {"headers": {"X-Clipascene-Token": "s3cret-sixteen-chars"}},
                                 {"params": {"token": "s3cret-sixteen-chars"}}])
def test_a_token_protected_service_answers_with_the_token(guarded, how):
    assert guarded.get("/v1/health", **how).status_code == 200
    assert guarded.get("/v1/jobs", **how).json() == []
    response = guarded.post("/v1/jobs", files={"image": ("a.png", png_bytes(), "image/png")},
                            data={"params": json.dumps(TINY)}, **how)
    assert response.status_code == 202


# --- job ids ------------------------------------------------------------------------------

BAD_IDS = ["..", "...", "..%2F..%2Fetc", "..%2Fevil", "%2e%2e", "..%5Cevil", "0123456789ABCDEF",
           "0123456789abcdeg", "0123456789abcdef0", "0123456789abcde", "0123456789abcdef%0A",
           "0123456789abcdef%00", "%00", "x" * 300, "evil"]
JOB_PATHS = ["", "/matrix", "/manifest.json", "/grid.png", "/events", "/cells/0/0.svg",
             "/cells/0/0.png"]


@pytest.fixture
def bait(idle):
    """Files a path traversal from the jobs folder would reach."""
    for folder in (idle.data_dir / "evil" / "out", idle.data_dir / "jobs" / "evil" / "out"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "manifest.json").write_text('{"secret": "bait"}')
        (folder / "grid.png").write_bytes(b"secret bait")
    return idle


@pytest.mark.parametrize("job_id", BAD_IDS)
def test_malformed_job_ids_are_404_and_never_reach_the_file_system(bait, job_id):
    for suffix in JOB_PATHS:
        response = bait.get(f"/v1/jobs/{job_id}{suffix}")
        assert response.status_code == 404, (job_id, suffix, response.text)
        assert "bait" not in response.text
        assert isinstance(response.json()["detail"], str)
    response = bait.delete(f"/v1/jobs/{job_id}", params={"purge": "true"})
    assert response.status_code in (404, 405)
    assert (bait.data_dir / "evil" / "out" / "manifest.json").is_file()
    assert (bait.data_dir / "jobs" / "evil" / "out" / "manifest.json").is_file()


def test_malformed_job_id_gets_a_message_about_the_id_format(idle):
    for job_id in ("evil", "0123456789ABCDEF", "0123456789abcdef%0A"):
        detail = idle.get(f"/v1/jobs/{job_id}").json()["detail"]
        assert "16 hex digits" in detail, job_id


def test_job_id_validation_is_exact():
    assert valid_job_id("0123456789abcdef")
    for job_id in ("0123456789abcdef\n", "\n0123456789abcdef", "0123456789abcdef/..", ""):
        assert not valid_job_id(job_id), repr(job_id)


def test_unknown_well_formed_job_id_is_404(idle):
    for suffix in JOB_PATHS:
        response = idle.get(f"/v1/jobs/0123456789abcdef{suffix}")
        assert response.status_code == 404
        assert response.json()["detail"] == "no job 0123456789abcdef."
    assert idle.delete("/v1/jobs/0123456789abcdef").status_code == 404


# --- schema -------------------------------------------------------------------------------

def test_openapi_schema_lists_the_endpoints(idle):
    schema = idle.get("/openapi.json").json()
    assert schema["info"]["title"] == "CLIPascene backend"
    paths = schema["paths"]
    expected = {
        "/v1/health": {"get"},
        "/v1/jobs": {"get", "post"},
        "/v1/jobs/{job_id}": {"get", "delete"},
        "/v1/jobs/{job_id}/events": {"get"},
        "/v1/jobs/{job_id}/matrix": {"get"},
        "/v1/jobs/{job_id}/cells/{row}/{column}.svg": {"get"},
        "/v1/jobs/{job_id}/cells/{row}/{column}.png": {"get"},
        "/v1/jobs/{job_id}/grid.png": {"get"},
        "/v1/jobs/{job_id}/manifest.json": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert set(paths[path]) == methods, path
    submit_body = paths["/v1/jobs"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in submit_body
    assert {"JobInfo", "MatrixInfo", "Health", "Submitted"} <= set(schema["components"]["schemas"])


def test_event_stream_of_a_waiting_job_sends_keep_alive_comments(idle, monkeypatch):
    from clipascene_backend.routers import jobs as jobs_routes

    monkeypatch.setattr(jobs_routes, "KEEP_ALIVE_S", 0.5)
    job_id = submit(idle).json()["id"]
    lines = []
    with idle.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        for line in response.iter_lines():
            lines.append(line)
            if line.startswith(": keep-alive"):
                break
            assert len(lines) < 50, lines
    assert lines[0] == "event: progress"
    idle.delete(f"/v1/jobs/{job_id}")


# --- storage faults and dead workers --------------------------------------------------------

class FullDisk:
    """Makes the app's job store fail as on a full disk while `on` is set."""

    def __init__(self, store, monkeypatch) -> None:
        import sqlite3
        import threading

        self.on = threading.Event()
        connect = store._connect

        def failing_connect():
            if self.on.is_set():
                raise sqlite3.OperationalError("database or disk is full")
            return connect()

        monkeypatch.setattr(store, "_connect", failing_connect)


def wait_for_health(client, check, timeout: float = 40.0) -> dict:
    import time

    deadline = time.monotonic() + timeout
    health: dict = {}
    while time.monotonic() < deadline:
        health = client.get("/v1/health").json()
        if check(health):
            return health
        time.sleep(0.1)
    raise AssertionError(f"health did not change in {timeout} s: {health}")


@pytest.fixture
def faulty(tmp_path, monkeypatch):
    """A working service whose job store can be made to fail like a full disk."""
    app = make_app(tmp_path)
    with TestClient(app) as client:
        client.disk = FullDisk(app.state.store, monkeypatch)
        yield client
        client.disk.on.clear()


def test_the_worker_outlives_a_full_disk_and_health_says_so(faulty):
    faulty.disk.on.set()
    health = wait_for_health(faulty, lambda h: h["workers"][0]["state"] == "retrying")
    assert health["ok"] is False
    assert "full" in health["workers"][0]["problem"] and "full" in " ".join(health["problems"])
    # Reads go on (the job list is read from the database file as last written); what must
    # write meets the same disk: a 503 with a sentence, not a bare 500.
    assert faulty.get("/v1/jobs").status_code == 200
    response = submit(faulty, {**TINY, "seed": 99})
    assert response.status_code == 503
    assert "is full" in response.json()["detail"]
    faulty.disk.on.clear()
    health = wait_for_health(faulty, lambda h: h["workers"][0]["state"] == "idle")
    assert health["ok"] is True and health["problems"] == []
    job_id = submit(faulty, TINY).json()["id"]
    assert wait_for_status(faulty, job_id, timeout=60)["status"] == "done"


def test_a_job_whose_results_cannot_be_recorded_fails_with_the_reason(faulty, monkeypatch):
    store = faulty.app.state.store

    def disk_fills(*_args):
        faulty.disk.on.set()
        raise __import__("sqlite3").OperationalError("database or disk is full")

    monkeypatch.setattr(store, "add_cell", disk_fills)
    job_id = submit(faulty, TINY).json()["id"]
    wait_for_health(faulty, lambda h: h["workers"][0]["state"] == "retrying")
    faulty.disk.on.clear()
    monkeypatch.undo()  # the store works again
    job = wait_for_status(faulty, job_id, timeout=60)
    assert job["status"] == "failed"
    assert "is full" in job["error"] and "free some space" in job["error"]
    # Its files can go, and the worker goes on with the next job.
    assert faulty.delete(f"/v1/jobs/{job_id}", params={"purge": "true"}).json()["purged"]
    next_id = submit(faulty, {**TINY, "seed": 5}).json()["id"]
    assert wait_for_status(faulty, next_id, timeout=60)["status"] == "done"


def test_health_reports_a_dead_worker_and_jobs_are_refused(tmp_path):
    app = make_app(tmp_path, start_workers=False)
    with TestClient(app) as client:
        worker = app.state.workers[0]
        worker.run = lambda: None  # a thread that ended without being stopped
        worker.start()
        worker.join(timeout=10)
        health = client.get("/v1/health").json()
        assert health["ok"] is False
        assert health["workers"][0]["state"] == "dead"
        assert "restart" in health["problems"][0]
        response = submit(client, TINY)
        assert response.status_code == 503
        assert "restart the backend" in response.json()["detail"]


def test_health_reports_a_worker_whose_job_shows_no_progress_as_stuck(service, monkeypatch):
    from clipascene_backend import worker as worker_module

    job_id = submit(service, {**TINY, "iterations": 20_000, "seed": 61}).json()["id"]
    wait_for_status(service, job_id, wanted=("running",), timeout=60)
    monkeypatch.setattr(worker_module, "STUCK_AFTER_S", -1.0)  # any silence is too long
    health = service.get("/v1/health").json()
    assert health["workers"][0]["state"] == "stuck" and health["workers"][0]["job"] == job_id
    assert health["ok"] is False and "no progress" in health["problems"][0]
    monkeypatch.undo()
    service.delete(f"/v1/jobs/{job_id}")
    assert wait_for_status(service, job_id, timeout=30)["status"] == "cancelled"
    assert service.get("/v1/health").json()["ok"] is True


@pytest.mark.parametrize("raised, shown", [
    (ValueError("a bug's message"), "internal error: ValueError: a bug's message"),
    (__import__("clipascene_core.config", fromlist=["ConfigError"]).ConfigError(
        "--strokes must be between 1 and 256, not 0."), "--strokes must be between 1 and 256, not 0."),
])
def test_only_user_errors_are_shown_as_the_users_mistake(tmp_path, monkeypatch, caplog, raised, shown):
    """One base class (clipascene_core.errors.UserError) marks the user's mistakes; a bare
    ValueError inside a job is an internal error, logged with its traceback."""
    import clipascene_backend.worker as worker_module

    def failing(*args, **kwargs):
        raise raised

    monkeypatch.setattr(worker_module, "sketch_resumable", failing)
    with TestClient(make_app(tmp_path)) as client:
        response = submit(client, TINY)
        job = wait_for_status(client, response.json()["id"], timeout=60)
    assert job["status"] == "failed" and job["error"] == shown
    internal = [record for record in caplog.records if record.exc_info]
    assert bool(internal) == shown.startswith("internal error")


def _users_mistakes():
    from clipascene_core.config import ConfigError
    from clipascene_core.io.images import ImageInputError, UnsupportedImageError
    from clipascene_core.models.clip import WeightsError
    from clipascene_core.scene.split import MaskInputError

    return [
        (WeightsError("the CLIP weights are gone; run `clipascene models download`."), 409, ""),
        (UnsupportedImageError("not an image file (PNG, JPEG or WebP expected)."), 415, ""),
        (ImageInputError("the image is too thin to sketch."), 400, ""),
        (MaskInputError("the mask is empty: draw the object white."), 400, ""),
        (ConfigError("--strokes must be between 1 and 256, not 0."), 422, "invalid params: "),
    ]


@pytest.mark.parametrize("raised, status, prefix", _users_mistakes(),
                         ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None)
def test_a_route_meeting_a_users_mistake_answers_its_status_and_sentence(idle, monkeypatch, raised,
                                                                         status, prefix):
    """One handler answers every UserError a route meets: its http_status (WeightsError's 409
    too), its one sentence as the detail, and nothing of the job is kept."""
    from clipascene_backend.routers import jobs

    def meets(*args, **kwargs):
        raise raised

    monkeypatch.setattr(jobs, "load_image", meets)  # what the submission checks the upload with
    response = submit(idle, TINY)
    assert response.status_code == status, response.text
    assert response.json() == {"detail": prefix + str(raised)}
    assert idle.get("/v1/jobs").json() == []


def test_parameters_the_engine_refuses_answer_422_saying_invalid_params(idle):
    # Each layer is in range (the HTTP model lets it through); the configuration refuses the repeat.
    response = submit(idle, {**TINY, "layers": [2, 2]})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("invalid params: ") and "\n" not in detail
    assert idle.get("/v1/jobs").json() == []
