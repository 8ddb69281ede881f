"""The backend as a real process: `python -m clipascene_backend.cli serve` on 127.0.0.1 with the tiny model.

Event streams, cancelling a running job, a table of bad requests, 20 clients at once, and a
kill -9 in the middle of a job. Every wait is bounded in time and in requests.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import sqlite3
import struct
import subprocess
import threading
import time
import urllib.request
import zlib
from dataclasses import dataclass, field

import pytest
import requests
from lxml import etree
from PIL import Image

from tests.backend_helpers import (
    FINAL,
    REPO,
    TINY,
    free_port,
    module_server,
    png_bytes,
    serve_command,
    server_pool,
    start_server,
    submit,
    subprocess_env,
    wait_for_status,
)
from tests.crafted_images import flat_png, scan_bomb, webp_claiming
from tests.scenes import draw_scene


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from module_server(tmp_path_factory)


@pytest.fixture
def server_factory(tmp_path_factory):
    yield from server_pool(tmp_path_factory)


@pytest.fixture(scope="module")
def done_job(server) -> str:
    """A finished one-cell job (no foreground/background split)."""
    job_id = submit(server.client, {**TINY, "seed": 11}).json()["id"]
    assert wait_for_status(server.client, job_id)["status"] == "done"
    return job_id


@pytest.fixture(scope="module")
def unready_job(server) -> str:
    """A job cancelled before any cell was finished."""
    job_id = submit(server.client, {**TINY, "iterations": 20_000, "seed": 12}).json()["id"]
    server.client.delete(f"/v1/jobs/{job_id}")
    job = wait_for_status(server.client, job_id, timeout=60)
    assert job["status"] == "cancelled"
    assert job["progress"]["cells_done"] == 0
    return job_id


def read_events(client, job_id: str, timeout: float = 90.0) -> list[tuple[str, dict]]:
    """The (event, data) pairs of a job's server-sent event stream, until it closes."""
    events: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout
    with client.get(f"/v1/jobs/{job_id}/events", stream=True, timeout=(5, timeout)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
            if time.monotonic() > deadline or len(events) > 10_000:
                raise AssertionError(f"the event stream did not end in {timeout} s: {events[-3:]}")
    return events


# --- events, files, cancel ----------------------------------------------------------------

def test_event_stream_shows_cells_as_they_finish_and_ends_with_done(server):
    params = {"preset": "paper", "layers": [2, 8], "rows": 1, "strokes": 4, "iterations": 2,
              "row_steps": 2, "split": False}
    job_id = submit(server.client, params).json()["id"]
    events = read_events(server.client, job_id)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done", kinds
    assert events[-1][1] == {"id": job_id, "status": "done", "error": None}
    assert "progress" in kinds
    every = [data for kind, data in events if kind == "cell"]
    cells = [cell for cell in every if not cell["draft"]]
    assert sorted((cell["row"], cell["column"]) for cell in cells) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # On a CPU each cell comes first as a draft (at most once), always before its final.
    places = [(cell["row"], cell["column"], cell["draft"]) for cell in every]
    for row, column, _ in places:
        if (row, column, True) in places:
            assert places.index((row, column, True)) < places.index((row, column, False))
    assert len(places) == len(set(places))
    for cell in cells:
        assert cell["id"] == job_id
        assert cell["layer"] == params["layers"][cell["column"]]
        svg = server.client.get(cell["urls"]["combined"])
        assert svg.status_code == 200
        root = etree.fromstring(svg.content)
        assert root.get("viewBox") == "0 0 160 96"
        paths = root.findall(".//{http://www.w3.org/2000/svg}path")
        # Pieces of one cut stroke ("…-7.0", "…-7.1") count as one stroke.
        assert len({path.get("id").split(".")[0] for path in paths}) == sum(cell["strokes"].values())
        png = server.client.get(cell["urls"]["png"], params={"size": 80})
        assert Image.open(io.BytesIO(png.content)).size == (80, 48)


def test_cancelling_a_running_job_stops_it_and_the_queue_goes_on(server):
    big = submit(server.client, {"preset": "preview", "layers": [2], "rows": 0, "strokes": 4,
                                 "iterations": 400, "split": False}).json()["id"]
    following = submit(server.client, {**TINY, "seed": 21}).json()["id"]
    wait_for_status(server.client, big, wanted=("running",), timeout=60,
                    check=lambda job: (job["progress"]["steps_done"] or 0) > 0)
    assert server.client.get(f"/v1/jobs/{following}").json()["status"] == "queued"
    asked = time.monotonic()
    response = server.client.delete(f"/v1/jobs/{big}")
    assert response.status_code == 200
    assert response.json()["status"] in ("running", "cancelled")
    cancelled = wait_for_status(server.client, big, timeout=30)
    assert cancelled["status"] == "cancelled"
    assert time.monotonic() - asked < 15
    assert cancelled["progress"]["steps_done"] < 400
    assert wait_for_status(server.client, following)["status"] == "done"
    # A cancelled job's stream ends with a cancelled event.
    assert read_events(server.client, big)[-1][0] == "cancelled"


def test_purging_a_running_job_asks_to_try_again(server):
    job_id = submit(server.client, {**TINY, "iterations": 20_000, "seed": 31}).json()["id"]
    wait_for_status(server.client, job_id, wanted=("running",), timeout=60)
    response = server.client.delete(f"/v1/jobs/{job_id}", params={"purge": "true"})
    assert response.status_code == 409
    assert "again" in response.json()["detail"]
    assert wait_for_status(server.client, job_id, timeout=30)["status"] == "cancelled"
    assert server.client.delete(f"/v1/jobs/{job_id}", params={"purge": "true"}).json()["purged"]


# --- bad input ----------------------------------------------------------------------------

def png_header(width: int, height: int, depth: int = 8, colour: int = 2) -> bytes:
    """A PNG signature and IHDR claiming width x height, with one tiny IDAT: a bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def image_bytes(fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    draw_scene(40, 30).save(buffer, format=fmt, **options)
    return buffer.getvalue()


@dataclass
class Case:
    method: str
    path: str
    status: int
    files: dict | None = None
    data: dict | None = None
    kwargs: dict = field(default_factory=dict)
    raw: bool = False  # sent with http.client, so no client library tidies the path
    says: str = ""  # the detail must contain this


def upload(image: bytes, status: int, name: str = "image.png", says: str = "",
           headers: dict | None = None, **data) -> Case:
    return Case("POST", "/v1/jobs", status, files={"image": (name, image, "image/png")},
                data={"params": json.dumps(TINY), **data}, says=says,
                kwargs={"headers": headers} if headers else {})


def masked(mask: bytes, status: int, says: str = "") -> Case:
    """An upload of the scene (named image.png) with a drawn `mask` part."""
    return Case("POST", "/v1/jobs", status, files={"image": ("image.png", SCENE, "image/png"),
                                                   "mask": ("mask.png", mask, "image/png")},
                data={"params": json.dumps({**TINY, "split": True})}, says=says)


def thin_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, format="PNG")
    return buffer.getvalue()


#: What a browser adds to a request another site's page makes.
CROSS_SITE = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"}


def bad_params(params, status: int) -> Case:
    text = params if isinstance(params, str) else json.dumps(params)
    return upload(png_bytes(), status, params=text)


SCENE = png_bytes()
BAD_REQUESTS = {
    # the image
    "truncated PNG": upload(SCENE[: len(SCENE) // 2], 400),
    "PNG cut inside its header": upload(SCENE[:20], 400),
    "zero bytes": upload(b"", 400),
    "text named .png": upload(b"this is not a picture\n" * 10, 415),
    "SVG": upload(b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', 415, "a.svg"),
    "GIF": upload(image_bytes("GIF"), 415, "a.gif"),
    "BMP": upload(image_bytes("BMP"), 415, "a.bmp"),
    "TIFF": upload(image_bytes("TIFF"), 415, "a.tiff"),
    "truncated JPEG": upload(image_bytes("JPEG")[:300], 400, "a.jpg"),
    "PNG bomb header 100000x100000": upload(png_header(100_000, 100_000), 400),
    "PNG bomb header 9000x9000": upload(png_header(9_000, 9_000), 400),
    "PNG header with zero width": upload(png_header(0, 10), 415),
    "26 MB upload": upload(b"\x89PNG\r\n\x1a\n" + b"\0" * (26 * 2**20), 413),
    "missing image field": Case("POST", "/v1/jobs", 422, data={"params": json.dumps(TINY)}),
    "wrong field name": Case("POST", "/v1/jobs", 422, files={"file": ("a.png", SCENE, "image/png")}),
    "image sent as a text field": Case("POST", "/v1/jobs", 422,
                                       kwargs={"data": {"image": "aGVsbG8=", "params": "{}"}}),
    "JSON body instead of a form": Case("POST", "/v1/jobs", 422, kwargs={"json": {"image": "x"}}),
    "multipart without boundary": Case("POST", "/v1/jobs", 400, kwargs={
        "data": b"--x\r\n", "headers": {"Content-Type": "multipart/form-data"}}),
    # the params
    "params not JSON": bad_params("{preset: preview", 400),
    "params a JSON list": bad_params([2, 8], 400),
    "params JSON null": bad_params("null", 400),
    "params nested 100000 deep": bad_params("[" * 100_000, 400),
    "params over 1 MB": bad_params(json.dumps({"preset": "x" * 2**21}), 400),
    "unknown param key": bad_params({"steps": 10}, 422),
    "layers 13": bad_params({"layers": [2, 13]}, 422),
    "layers two": bad_params({"layers": "two"}, 422),
    "layers empty list": bad_params({"layers": []}, 422),
    "layers repeated": bad_params({"layers": [2, 2]}, 422),
    "layers fractional": bad_params({"layers": [2.5]}, 422),
    "rows -1": bad_params({"rows": -1}, 422),
    "rows 99": bad_params({"rows": 99}, 422),
    "strokes 0": bad_params({"strokes": 0}, 422),
    "strokes 10000": bad_params({"strokes": 10_000}, 422),
    "preset fast": bad_params({"preset": "fast"}, 422),
    "seed -5": bad_params({"seed": -5}, 422),
    "seed 2**40": bad_params({"seed": 2**40}, 422),
    "iterations 0": bad_params({"iterations": 0}, 422),
    "iterations 1e20": bad_params({"iterations": 1e20}, 422),
    "row_steps 0": bad_params({"row_steps": 0}, 422),
    "split maybe": bad_params({"split": "maybe"}, 422),
    "strokes NaN": bad_params('{"strokes": NaN}', 422),
    "seed of 5000 digits": bad_params('{"seed": ' + "9" * 5000 + "}", 400),
    "layers [true]": bad_params({"layers": [True]}, 422),
    "rows true": bad_params({"rows": True}, 422),
    "two image parts": Case("POST", "/v1/jobs", 400, files=[
        ("image", ("a.png", SCENE, "image/png")), ("image", ("b.png", SCENE, "image/png"))],
        data={"params": json.dumps(TINY)}, says="2 'image' parts"),
    "two params parts": Case("POST", "/v1/jobs", 400, files={"image": ("a.png", SCENE, "image/png")},
                             data={"params": [json.dumps(TINY), json.dumps({"rows": 3})]}),
    # the drawn mask: checked like the image, and at the image's size
    "mask of half the size": masked(thin_png(80, 48), 400, says="the mask is 80x48 pixels but "
                                                                "the image is 160x96"),
    "mask turned a quarter": masked(thin_png(96, 160), 400, says="draw the mask at the image's size"),
    "mask one pixel wider": masked(thin_png(161, 96), 400, says="161x96"),
    "two mask parts": Case("POST", "/v1/jobs", 400, files=[
        ("image", ("a.png", SCENE, "image/png")), ("mask", ("m.png", thin_png(160, 96), "image/png")),
        ("mask", ("n.png", thin_png(160, 96), "image/png"))],
        data={"params": json.dumps(TINY)}, says="2 'mask' parts"),
    "empty mask": masked(b"", 400, says="the mask file is empty"),
    "mask not an image": masked(b"this is not a picture\n" * 10, 415, says="the mask cannot be used"),
    "mask GIF": masked(image_bytes("GIF"), 415, says="mask"),
    "mask SVG": masked(b'<svg xmlns="http://www.w3.org/2000/svg" width="160" height="96"/>', 415),
    "truncated mask": masked(SCENE[: len(SCENE) // 2], 400, says="the mask cannot be used"),
    "mask bomb header 100000x100000": masked(png_header(100_000, 100_000), 400, says="too large"),
    "mask 62 MP in 16 bits": masked(png_header(7_874, 7_874, depth=16, colour=6), 400,
                                    says="too large to decode"),
    "26 MB mask": masked(b"\x89PNG\r\n\x1a\n" + b"\0" * (26 * 2**20), 413),
    "mask sent as a text field": Case("POST", "/v1/jobs", 422, files={"image": ("a.png", SCENE, "image/png")},
                                      data={"params": json.dumps(TINY), "mask": "aGVsbG8="}),
    "mask of an unsplit job": Case("GET", "/v1/jobs/{DONE}/mask.png", 404, says="one region"),
    "mask of an unknown job": Case("GET", "/v1/jobs/0123456789abcdef/mask.png", 404),
    "rebound Host reads the mask": Case("GET", "/v1/jobs/{DONE}/mask.png", 403,
                                        kwargs={"headers": {"Host": "evil.example"}}),
    "cross-site read of the mask": Case("GET", "/v1/jobs/{DONE}/mask.png", 403,
                                        kwargs={"headers": CROSS_SITE}),
    # images that would exhaust memory or break the pipeline: refused from their header
    "PNG 62 MP in 16 bits": upload(png_header(7_874, 7_874, depth=16, colour=6), 400,
                                   says="too large to decode"),
    "image 125:1": upload(thin_png(5_000, 40), 400, says="too thin"),
    "image 5000:1": upload(thin_png(10_000, 2), 400, says="too thin"),
    # validation budgets (README): JPEG scans, decoded bytes, pixels, checked from the header
    "JPEG of 3006 scans": upload(scan_bomb(2_000, 2_000, 3_000), 400, "a.jpg",
                                 says="3006 scans, too many to decode"),
    "mask JPEG of 3006 scans": masked(scan_bomb(160, 96, 3_000), 400, says="scans, too many"),
    "WebP canvas of 25 MP": upload(webp_claiming(5_000, 5_000), 400, "a.webp",
                                   says="too large to decode"),
    "complete PNG of 169 MP": upload(flat_png(13_000, 13_000), 400, says="too large (13000x13000"),
    # the form
    "misspelt params field": upload(SCENE, 400, says="unknown field 'parms'", parms="{}"),
    "extra form field": upload(SCENE, 400, says="its fields are image, params, mask",
                               note="hello"),
    # other web pages: cross-site requests and DNS rebinding
    "malformed Origin on an upload": upload(SCENE, 403, headers={"Origin": "http://[::1"}),
    "malformed Origin on a read": Case("GET", "/v1/jobs", 403,
                                       kwargs={"headers": {"Origin": "http://[::1"}}),
    "cross-site upload": upload(SCENE, 403, headers=CROSS_SITE, says="other web pages"),
    "upload with a foreign Origin only": upload(SCENE, 403, headers={"Origin": "http://evil.example"}),
    "upload from a sandboxed page": upload(SCENE, 403, headers={"Origin": "null"}),
    "upload from another local port": upload(SCENE, 403, headers={
        "Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"}),
    "cross-site form navigation": upload(SCENE, 403, headers={
        "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}),
    "cross-site cancel": Case("DELETE", "/v1/jobs/{DONE}", 403, kwargs={"headers": CROSS_SITE}),
    "cross-site read of the job list": Case("GET", "/v1/jobs", 403, kwargs={"headers": CROSS_SITE}),
    "rebound Host lists jobs": Case("GET", "/v1/jobs", 403, says="DNS rebinding",
                                    kwargs={"headers": {"Host": "evil.example:8765"}}),
    "rebound Host purges": Case("DELETE", "/v1/jobs/{DONE}?purge=true", 403,
                                kwargs={"headers": {"Host": "evil.example"}}),
    "rebound Host reads a cell": Case("GET", "/v1/jobs/{DONE}/cells/0/0.svg", 403,
                                      kwargs={"headers": {"Host": "127.0.0.1.evil.example"}}),
    "rebound Host uploads": upload(SCENE, 403, headers={"Host": "localhost.evil.example:8765"}),
    # job ids
    "unknown job id": Case("GET", "/v1/jobs/0123456789abcdef", 404),
    "unknown job matrix": Case("GET", "/v1/jobs/0123456789abcdef/matrix", 404),
    "unknown job events": Case("GET", "/v1/jobs/0123456789abcdef/events", 404),
    "uppercase job id": Case("GET", "/v1/jobs/{DONE}", 404, kwargs={"upper": True}),
    "traversal ../../etc/passwd": Case("GET", "/v1/jobs/../../etc/passwd", 404, raw=True),
    "traversal ../x": Case("GET", "/v1/jobs/../x", 404, raw=True),
    "traversal .. as id": Case("GET", "/v1/jobs/../manifest.json", 404, raw=True),
    "traversal encoded": Case("GET", "/v1/jobs/..%2F..%2Fetc%2Fpasswd", 404, raw=True),
    "traversal encoded manifest": Case("GET", "/v1/jobs/..%2F..%2Fjobs.sqlite3/manifest.json", 404,
                                       raw=True),
    "job id with NUL": Case("GET", "/v1/jobs/0123456789abcdef%00/matrix", 404, raw=True),
    "job id with newline": Case("GET", "/v1/jobs/{DONE}%0A/manifest.json", 404, raw=True),
    # cells
    "cell row 99": Case("GET", "/v1/jobs/{DONE}/cells/99/0.svg", 404),
    "cell column 9": Case("GET", "/v1/jobs/{DONE}/cells/0/9.svg", 404),
    "cell column -1": Case("GET", "/v1/jobs/{DONE}/cells/0/-1.png", 404),
    "cell row not a number": Case("GET", "/v1/jobs/{DONE}/cells/x/0.svg", 422),
    "cell of a job with no cells": Case("GET", "/v1/jobs/{UNREADY}/cells/0/0.svg", 404),
    "grid of an unfinished job": Case("GET", "/v1/jobs/{UNREADY}/grid.png", 404),
    "manifest of an unfinished job": Case("GET", "/v1/jobs/{UNREADY}/manifest.json", 404),
    "part sideways": Case("GET", "/v1/jobs/{DONE}/cells/0/0.svg?part=sideways", 422),
    "part foreground of an unsplit job": Case("GET", "/v1/jobs/{DONE}/cells/0/0.svg?part=foreground",
                                              404),
    "png size 1": Case("GET", "/v1/jobs/{DONE}/cells/0/0.png?size=1", 422),
    "png size 99999": Case("GET", "/v1/jobs/{DONE}/cells/0/0.png?size=99999", 422),
    "png size big": Case("GET", "/v1/jobs/{DONE}/cells/0/0.png?size=big", 422),
    "png size of 5000 digits": Case("GET", "/v1/jobs/{DONE}/cells/0/0.png?size=" + "9" * 5000, 422),
    "cell row of 5000 digits": Case("GET", "/v1/jobs/{DONE}/cells/" + "9" * 5000 + "/0.svg", 422),
    # other requests
    "DELETE unknown job": Case("DELETE", "/v1/jobs/0123456789abcdef", 404),
    "DELETE purge maybe": Case("DELETE", "/v1/jobs/{DONE}?purge=maybe", 422),
    "list limit 0": Case("GET", "/v1/jobs?limit=0", 422),
    "list limit 501": Case("GET", "/v1/jobs?limit=501", 422),
    "list limit abc": Case("GET", "/v1/jobs?limit=abc", 422),
    "list limit of 5000 digits": Case("GET", "/v1/jobs?limit=" + "1" * 5000, 422),
    "PUT /v1/jobs": Case("PUT", "/v1/jobs", 405),
    "PATCH a job": Case("PATCH", "/v1/jobs/{DONE}", 405),
    "POST /v1/health": Case("POST", "/v1/health", 405),
    "unknown path": Case("GET", "/v2/jobs", 404),
}


def send(server, case: Case, done: str, unready: str) -> tuple[int, dict]:
    path = case.path.replace("{DONE}", done.upper() if case.kwargs.get("upper") else done)
    path = path.replace("{UNREADY}", unready)
    if case.raw:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            connection.request(case.method, path)
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()
    kwargs = {"files": case.files, "data": case.data}
    kwargs.update((key, value) for key, value in case.kwargs.items() if key != "upper")
    response = server.client.request(case.method, path, **kwargs)
    return response.status_code, response.json()


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_request_gets_a_4xx_with_a_sentence(server, done_job, unready_job, name):
    case = BAD_REQUESTS[name]
    status, body = send(server, case, done_job, unready_job)
    assert status == case.status, body
    detail = body["detail"]
    assert isinstance(detail, str) and len(detail.split()) >= 2, detail
    assert case.says in detail
    assert "Traceback" not in detail
    assert server.process.poll() is None


def test_no_page_can_frame_the_service(server):
    for response in (server.client.get("/"), server.client.get("/v1/health"),
                     server.client.get("/v1/jobs", headers=CROSS_SITE)):
        assert response.headers["x-frame-options"] == "DENY", response.status_code
        assert response.headers["content-security-policy"] == "frame-ancestors 'none'"


def test_server_is_healthy_and_created_no_jobs_after_the_bad_requests(server, done_job, unready_job):
    assert len(BAD_REQUESTS) >= 30
    assert server.client.get("/v1/health").status_code == 200
    jobs = server.client.get("/v1/jobs", params={"limit": 500}).json()
    assert {done_job, unready_job} <= {job["id"] for job in jobs}
    # Bad uploads are named image.png, a.gif, …; only the other tests' scene.png jobs exist.
    assert {job["image"]["name"] for job in jobs} == {"scene.png"}
    upload_dir = server.data_dir
    assert not list(upload_dir.glob("*.upload")), "rejected uploads must not be left behind"
    assert "Traceback" not in server.output()


def raw_exchange(port: int, head: bytes, body_chunks, timeout: float = 15.0) -> bytes:
    """Send a request head and body chunks over a socket; the first bytes of the answer.

    Sending stops at the first error (the server may close once it has answered)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(head)
        try:
            for chunk in body_chunks:
                connection.sendall(chunk)
        except OSError:
            pass
        return connection.recv(200)


def test_an_oversized_upload_is_refused_before_its_body_is_read(server):
    # Declared too large: refused from the header, while almost none of the body was sent.
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {200 * 2**20}\r\n\r\n").encode()
    started = time.monotonic()
    answer = raw_exchange(server.port, head, [b"--x\r\n" + b"\0" * 65536])
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert time.monotonic() - started < 10
    # Sent without a length (chunked): refused once the bytes read pass the limit, before the
    # body ends (it never does here).
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    part = (b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n")
    chunk = b"\0" * 2**20
    chunks = [b"%x\r\n%s\r\n" % (len(part), part)] + [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 28
    answer = raw_exchange(server.port, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert server.client.get("/v1/health").json()["ok"] is True


def test_the_page_itself_and_plain_clients_are_served(server):
    own = f"http://127.0.0.1:{server.port}"
    # The daemon's own page: same-origin fetches, and its upload form's POST.
    page_fetch = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}
    assert server.client.get("/v1/jobs", headers=page_fetch).status_code == 200
    response = submit_with(server.client, {**TINY, "seed": 41},
                           headers={**page_fetch, "Origin": own})
    assert response.status_code == 202, response.text
    # A link to the page from elsewhere opens it; a typed address or a bookmark too.
    for site in ("cross-site", "none"):
        opened = server.client.get("/", headers={"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate"})
        assert opened.status_code == 200
    # Under its other loopback name.
    assert server.client.get("/v1/health", headers={"Host": f"localhost:{server.port}"}).ok
    # The extension (urllib) and curl send no browser headers at all.
    with urllib.request.urlopen(f"{own}/v1/health", timeout=30) as answer:
        assert json.loads(answer.read())["service"] == "clipascene-backend"


def submit_with(client, params: dict, headers: dict):
    return client.post("/v1/jobs", headers=headers, data={"params": json.dumps(params)},
                       files={"image": ("scene.png", SCENE, "image/png")})


def test_cancel_then_submit_again_runs_the_job_instead_of_a_cache_hit(server):
    params = {**TINY, "iterations": 20_000, "seed": 51}
    job_id = submit(server.client, params).json()["id"]
    wait_for_status(server.client, job_id, wanted=("running",), timeout=60)
    assert server.client.delete(f"/v1/jobs/{job_id}").status_code == 200
    again = submit(server.client, params)
    assert again.status_code == 202
    assert again.json()["id"] == job_id and again.json()["cached"] is False
    # It goes on (or runs again), instead of ending cancelled.
    time.sleep(3)
    job = server.client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] in ("running", "queued"), job
    server.client.delete(f"/v1/jobs/{job_id}")
    assert wait_for_status(server.client, job_id, timeout=30)["status"] == "cancelled"


# --- many clients at once -----------------------------------------------------------------

def test_twenty_clients_at_once_each_get_their_own_finished_job(server_factory):
    server = server_factory()
    count = 20
    barrier = threading.Barrier(count)
    results: dict[int, dict] = {}
    errors: list[str] = []
    deadline = time.monotonic() + 150

    def client(index: int) -> None:
        session = requests.Session()
        try:
            barrier.wait(timeout=30)
            response = session.post(
                f"{server.url}/v1/jobs", timeout=60,
                files={"image": (f"scene-{index}.png", SCENE, "image/png")},
                data={"params": json.dumps({**TINY, "seed": 100 + index})})
            assert response.status_code == 202, response.text
            job_id = response.json()["id"]
            job: dict = {}
            while time.monotonic() < deadline:
                job = session.get(f"{server.url}/v1/jobs/{job_id}", timeout=30).json()
                if job["status"] in FINAL:
                    break
                time.sleep(0.25)
            results[index] = job
        except Exception as error:  # noqa: BLE001  (reported by the test below)
            errors.append(f"client {index}: {type(error).__name__}: {error}")
        finally:
            session.close()

    threads = [threading.Thread(target=client, args=(index,), daemon=True) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(1.0, deadline + 10 - time.monotonic()))
    assert not errors, errors
    assert sorted(results) == list(range(count))
    assert [results[index]["status"] for index in range(count)] == ["done"] * count, results
    ids = [results[index]["id"] for index in range(count)]
    assert len(set(ids)) == count
    for index in range(count):
        assert results[index]["params"]["seed"] == 100 + index
        assert results[index]["progress"]["cells_done"] == 1
    listed = server.client.get("/v1/jobs", params={"limit": 500}).json()
    assert sorted(job["id"] for job in listed) == sorted(ids)
    with sqlite3.connect(server.data_dir / "jobs.sqlite3", timeout=30) as connection:
        attempts = connection.execute("SELECT attempts, COUNT(*) FROM jobs GROUP BY attempts").fetchall()
    connection.close()
    assert attempts == [(1, count)], "every job ran exactly once"
    assert server.client.get("/v1/health").json()["queue_depth"] == 0


# --- a crash in the middle of a job -------------------------------------------------------

def job_row(data_dir, job_id: str) -> tuple[str, int]:
    with sqlite3.connect(data_dir / "jobs.sqlite3", timeout=30) as connection:
        row = connection.execute("SELECT status, attempts FROM jobs WHERE id=?", (job_id,)).fetchone()
    connection.close()
    return row


def test_a_job_interrupted_by_kill_9_is_run_again_by_the_next_server(server_factory, tmp_path):
    data_dir = tmp_path / "data"
    first = server_factory(data_dir)
    params = {"preset": "preview", "layers": [2], "rows": 2, "strokes": 4, "iterations": 10,
              "row_steps": 30, "split": False}
    job_id = submit(first.client, params).json()["id"]
    # Kill it during the last simplicity row, when two cells are already on disk.
    wait_for_status(first.client, job_id, wanted=("running",), timeout=90,
                    check=lambda job: job["progress"]["cells_done"] >= 2)
    first.process.kill()
    first.process.wait(timeout=30)
    assert job_row(data_dir, job_id) == ("running", 1)

    out = data_dir / "jobs" / job_id / "out"
    before = sorted(out.glob("cells/*.svg"))
    assert before, "the fidelity cell was written before the crash"
    for path in before:
        assert etree.parse(str(path)).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    assert json.loads((out / "manifest.json").read_text())["cells_done"] >= 2

    second = server_factory(data_dir)
    # While it runs again, the database never lists cells the run's files do not have.
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        listed = second.client.get(f"/v1/jobs/{job_id}").json()
        try:
            on_disk = json.loads((out / "manifest.json").read_text())["cells_done"]
        except (OSError, ValueError):
            on_disk = 0
        job = second.client.get(f"/v1/jobs/{job_id}").json()
        assert on_disk >= min(listed["progress"]["cells_done"], job["progress"]["cells_done"]), (
            listed, on_disk)
        if job["status"] in FINAL:
            break
        time.sleep(0.05)
    assert job["status"] == "done", job
    assert job["progress"]["cells_done"] == job["progress"]["cells_total"] == 3
    assert job_row(data_dir, job_id) == ("done", 2)
    for path in sorted(out.glob("cells/*.svg")):
        etree.parse(str(path))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cells_done"] == 3
    matrix = second.client.get(f"/v1/jobs/{job_id}/matrix").json()
    assert all(cell["ready"] for cell in matrix["cells"])
    assert second.client.get(f"/v1/jobs/{job_id}/grid.png").status_code == 200
    log = (data_dir / "backend.log").read_text()
    assert job_id in log and "re-queued" in log


# --- a token -------------------------------------------------------------------------------

TOKEN = "correct-horse-battery-staple"


def test_a_token_protected_server_accepts_bearer_in_any_case_and_never_logs_the_token(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "tmpk2j4.upload").write_bytes(b"left by a crash")
    server = start_server(data_dir, "--log-level", "INFO", token=TOKEN)
    try:
        assert not (data_dir / "tmpk2j4.upload").exists(), "stale uploads are removed at start"
        anonymous = requests.get(f"{server.url}/v1/jobs", timeout=30)
        assert anonymous.status_code == 401
        for scheme in ("bearer", "BEARER", "Bearer"):
            response = requests.get(f"{server.url}/v1/jobs", timeout=30,
                                    headers={"Authorization": f"{scheme} {TOKEN}"})
            assert response.status_code == 200, scheme
        by_query = requests.get(f"{server.url}/v1/jobs/0123456789abcdef/cells/0/0.png",
                                params={"token": TOKEN, "size": 64}, timeout=30)
        assert by_query.status_code == 404  # past the token check; no such job
        # /docs would load Swagger UI from a CDN: not served in token mode.
        assert server.client.get("/docs").status_code == 404
        assert server.client.get("/openapi.json").status_code == 200
    finally:
        server.stop()
    logs = server.output() + (data_dir / "backend.log").read_text()
    assert "/v1/jobs/0123456789abcdef/cells/0/0.png" in logs, "the access log was written"
    assert TOKEN not in logs


def test_a_short_token_is_refused_at_start(tmp_path):
    command = serve_command(free_port(), tmp_path, "--token", "s3cret")
    result = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "at least 16" in result.stderr and "Traceback" not in result.stderr


# --- start-up problems ---------------------------------------------------------------------

def foreign_database(path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE jobs (name TEXT, salary REAL)")
    connection.close()


@pytest.mark.parametrize("damage, says", [
    (lambda data: (data / "jobs.sqlite3").write_bytes(b"\x00garbage" * 5000), "move it aside"),
    (lambda data: foreign_database(data / "jobs.sqlite3"), "move it aside"),
    (lambda data: (data / "jobs").write_text("a file where the jobs folder goes"), "data folder"),
])
def test_start_up_problems_are_one_clear_message(tmp_path, damage, says):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    damage(data_dir)
    command = serve_command(free_port(), data_dir)
    result = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr[-2000:]
    assert says in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# --- the command line ---------------------------------------------------------------------

def test_serving_beyond_loopback_without_a_token_is_refused(tmp_path):
    # Were the check missing, the bad device would still stop it before anything is bound.
    command = serve_command(free_port(), tmp_path, "--host", "0.0.0.0", "--device", "nosuchdevice")
    result = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    assert "token" in result.stderr and "0.0.0.0" in result.stderr
    assert not (tmp_path / "jobs.sqlite3").exists()


def test_a_second_server_on_a_busy_port_exits_saying_so(server, tmp_path):
    command = serve_command(server.port, tmp_path)
    result = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    assert "in use" in result.stderr
    assert server.client.get("/v1/health").status_code == 200
