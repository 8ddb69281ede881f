"""The backend's web page at `/`, rendered by headless Chromium against a real server."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
from lxml import html
from PIL import Image

from tests.backend_helpers import REPO, TINY, start_server, submit, subprocess_env, wait_for_status

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="headless Chromium is not installed (apt-get install chromium)")

WIDTH, HEIGHT = 1280, 900
#: A 2x2 matrix: fidelity layers 2 and 8, the fidelity row and one simplicity row.
PARAMS = {"preset": "paper", "layers": [2, 8], "rows": 1, "strokes": 8, "iterations": 2,
          "row_steps": 2, "split": False}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A server with one finished job: (server, job id)."""
    server = start_server(tmp_path_factory.mktemp("web"))
    try:
        job_id = submit(server.client, PARAMS).json()["id"]
        assert wait_for_status(server.client, job_id)["status"] == "done"
        yield server, job_id
    finally:
        server.stop()


def chromium(tmp_path, url: str, *action: str) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
               f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=8000", *action, url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                            env=subprocess_env(), stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def rendered_dom(tmp_path, url: str):
    return html.fromstring(chromium(tmp_path, url, "--dump-dom").stdout)


def test_page_lists_the_job_and_shows_its_matrix_of_thumbnails(finished, tmp_path):
    server, job_id = finished
    page = rendered_dom(tmp_path, server.url + "/")
    jobs = page.get_element_by_id("jobs").text_content()
    assert job_id in jobs and "done" in jobs and "4/4 cells" in jobs
    assert "missing weights" in page.get_element_by_id("health").text_content()
    tables = page.xpath("//table[@class='matrix']")
    assert len(tables) == 1
    images = tables[0].xpath(".//img")
    assert sorted(image.get("src") for image in images) == sorted(
        f"/v1/jobs/{job_id}/cells/{row}/{column}.png?size=200" for row in (0, 1) for column in (0, 1))
    links = [link.get("href") for link in tables[0].xpath(".//a")]
    assert f"/v1/jobs/{job_id}/cells/1/1.svg" in links
    headers = [cell.text_content() for cell in tables[0].xpath(".//th")]
    assert "fidelity: layer 8" in headers and "simplicity 1" in headers


def test_screenshot_of_the_page_shows_the_header_and_the_sketches(finished, tmp_path):
    server, _ = finished
    shot = tmp_path / "page.png"
    chromium(tmp_path, server.url + "/", f"--screenshot={shot}")
    with Image.open(shot) as image:
        assert image.size == (WIDTH, HEIGHT)
        gray = np.asarray(image.convert("L")).astype(int)
    assert gray.std() > 20, "the page is blank"
    assert gray[:40].mean() < 80, "the dark header bar is missing"
    assert np.median(gray[60:]) > 200, "the page body is not light"
    # Strokes are pure black; the page's text is #222 at its darkest, so nearly black pixels
    # can only come from the thumbnails, right of the job list and below the heading.
    ys, xs = np.nonzero(gray < 20)
    assert len(xs) >= 30, "no thumbnail shows strokes"
    assert xs.min() > 340 and ys.min() > 100
    assert xs.max() - xs.min() > 150 and ys.max() - ys.min() > 100, "strokes in one cell only"
    if os.environ.get("CLIPASCENE_SAVE_SCREENSHOTS") == "1":
        target = REPO / "docs" / "images" / "backend-web.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)


def test_page_of_a_token_protected_server_passes_the_token_on(tmp_path):
    server = start_server(tmp_path / "data", token="s3cret")
    try:
        client = server.client
        job_id = submit(client, TINY).json()["id"]
        assert wait_for_status(client, job_id)["status"] == "done"
        page = rendered_dom(tmp_path, server.url + "/?token=s3cret")
        sources = [image.get("src") for image in page.xpath("//table[@class='matrix']//img")]
        assert sources == [f"/v1/jobs/{job_id}/cells/0/0.png?size=200&token=s3cret"]
        refused = rendered_dom(tmp_path, server.url + "/")
        assert refused.xpath("//table[@class='matrix']") == []
    finally:
        server.stop()
