"""The backend's web page at `/`, rendered by headless Chromium against a real server."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import select
import shutil
import subprocess
import time

import numpy as np
import pytest
from lxml import html
from PIL import Image

from clipascene_backend.store import JobStore
from tests.backend_helpers import REPO, TINY, start_server, submit, subprocess_env, wait_for_status
from tests.scenes import draw_scene

CHROMIUM = shutil.which("chromium")
# In CI (CI=true) a missing Chromium fails these tests instead of skipping them.
pytestmark = pytest.mark.skipif(CHROMIUM is None and os.environ.get("CI") != "true",
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
    assert CHROMIUM, "headless Chromium is needed: apt-get install chromium"
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
    assert "Fidelity 8" in headers and "Simplicity 1" in headers


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
    server = start_server(tmp_path / "data", token="s3cret-for-the-page-test")
    try:
        client = server.client
        job_id = submit(client, TINY).json()["id"]
        assert wait_for_status(client, job_id)["status"] == "done"
        page = rendered_dom(tmp_path, server.url + "/?token=s3cret-for-the-page-test")
        sources = [image.get("src") for image in page.xpath("//table[@class='matrix']//img")]
        assert sources == [f"/v1/jobs/{job_id}/cells/0/0.png?size=200&token=s3cret-for-the-page-test"]
        refused = rendered_dom(tmp_path, server.url + "/")
        assert refused.xpath("//table[@class='matrix']") == []
    finally:
        server.stop()


class Browser:
    """Headless Chromium driven through the DevTools protocol on a pipe (fds 3 and 4):
    real clicks, a real file chooser, screenshots."""

    def __init__(self, tmp_path) -> None:
        assert CHROMIUM, "headless Chromium is needed: apt-get install chromium"
        commands, self._commands = os.pipe()
        self._replies, replies = os.pipe()

        def pipes_on_3_and_4() -> None:
            os.dup2(commands, 3)
            os.dup2(replies, 4)

        self.log = tmp_path / "chromium.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 f"--user-data-dir={tmp_path / 'profile'}", "--remote-debugging-pipe", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=subprocess_env(),
                preexec_fn=pipes_on_3_and_4, close_fds=False)
        os.close(commands)
        os.close(replies)
        self._buffer = b""
        self._last_id = 0
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride", session=True, width=WIDTH, height=HEIGHT,
                  deviceScaleFactor=1, mobile=False)

    def send(self, method: str, session: bool = False, **params) -> dict:
        self._last_id += 1
        message = {"id": self._last_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                ready, _, _ = select.select([self._replies], [], [], 60)
                chunk = os.read(self._replies, 1 << 20) if ready else b""
                assert chunk, f"Chromium stopped answering:\n{self.log.read_text(errors='replace')[-2000:]}"
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._last_id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply["result"]

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"the page never satisfied: {expression}"
            time.sleep(0.2)

    def open(self, url: str) -> None:
        self.send("Page.navigate", session=True, url=url)
        self.wait_for("document.readyState === 'complete' && "
                      "!document.getElementById('jobs').textContent.includes('loading')")

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element (it must be visible, not covered)."""
        x, y = self.wait_for(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                             " if (!e) return null; const r = e.getBoundingClientRect();"
                             " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", session=True, type=kind, x=x, y=y,
                      button="left", clickCount=1)

    def type_into(self, selector: str, value: str) -> None:
        """Click into the field, select its text and type over it, as a user would."""
        self.click(selector)
        self.evaluate(f"document.querySelector({json.dumps(selector)}).select()")
        self.send("Input.insertText", session=True, text=value)

    def choose_file(self, selector: str, path) -> None:
        root = self.send("DOM.getDocument", session=True)["root"]["nodeId"]
        node = self.send("DOM.querySelector", session=True, nodeId=root, selector=selector)["nodeId"]
        self.send("DOM.setFileInputFiles", session=True, nodeId=node, files=[str(path)])

    def screenshot(self) -> Image.Image:
        data = self.send("Page.captureScreenshot", session=True, format="png")["data"]
        return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except AssertionError:
            pass
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        os.close(self._commands)
        os.close(self._replies)


@pytest.fixture
def browser(tmp_path):
    started = Browser(tmp_path)
    yield started
    started.close()


def test_upload_form_starts_a_job_whose_eta_shows_and_cancel_stops_it(browser, tmp_path):
    photo = tmp_path / "my photo.png"
    draw_scene(200, 120).save(photo)
    server = start_server(tmp_path / "data")
    try:
        browser.open(server.url + "/")
        assert "No jobs yet" in browser.evaluate("document.getElementById('jobs').textContent")
        browser.choose_file("#image", photo)
        browser.evaluate("document.getElementById('preset').value = 'preview'")
        browser.type_into("#layers", "3,9")
        browser.type_into("#rows", "2")
        browser.type_into("#strokes", "6")
        browser.click("#split")  # off: one region
        browser.type_into("#iterations", "20000")  # long enough to be seen running
        browser.click("#upload button[type=submit]")
        eta = browser.wait_for("(() => { const t = document.getElementById('progress-text');"
                               " return t && /about .* left/.test(t.textContent) && t.textContent; })()")
        assert eta.startswith("running · ") and "about " in eta and "0/6 cells" in eta
        # Which preset runs, with its steps (iterations override the preset's 500).
        preset = browser.evaluate("document.getElementById('preset-info').textContent")
        assert preset == ("preset preview: 20000 steps per fidelity sketch, 100 per simplicity row,"
                          " 1 seed")

        [job] = server.client.get("/v1/jobs").json()
        assert job["image"] == {"name": "my photo.png", "width": 200, "height": 120}
        # The page follows the running job through its event stream, not by polling alone.
        followed = browser.wait_for("(() => stream && stream.readyState === 1 && stream.url)()")
        assert followed.endswith(f"/v1/jobs/{job['id']}/events")
        assert job["params"]["preset"] == "preview" and job["params"]["layers"] == [3, 9]
        assert (job["params"]["rows"], job["params"]["strokes"], job["params"]["split"],
                job["params"]["iterations"]) == (2, 6, False, 20000)
        headers = browser.evaluate("[...document.querySelectorAll('table.matrix th')]"
                                   ".map((th) => th.textContent)")
        assert "Fidelity 9" in headers and "Simplicity 2" in headers
        assert browser.evaluate("document.querySelector('table.matrix td').textContent") == "sketching…"

        # A second job waits for the worker: it says so, with an estimate, and the header counts.
        waiting = submit(server.client, {**TINY, "seed": 3}).json()["id"]
        statuses = [(listed["id"], listed["status"], listed["error"])
                    for listed in server.client.get("/v1/jobs").json()]
        assert [status for _, status, _ in statuses] == ["queued", "running"], statuses
        counts = browser.wait_for("(() => { const t = document.getElementById('counts').textContent;"
                                  " return t.endsWith('1 running, 1 queued') && t; })()")
        assert counts == " · 1 running, 1 queued"
        listed = browser.wait_for("(() => { const t = document.getElementById('jobs').textContent;"
                                  " return t.includes('once it starts') && t; })()")
        assert "queued · about" in listed and waiting in listed

        shot = browser.screenshot()
        assert shot.size == (WIDTH, HEIGHT)
        x, y, width, height = browser.evaluate(
            "(() => { const r = document.getElementById('upload').getBoundingClientRect();"
            " return [r.x, r.y, r.width, r.height].map(Math.round); })()")
        form = np.asarray(shot.convert("L").crop((x, y, x + width, y + height))).astype(int)
        assert 250 < width < 340 and height > 200 and form.std() > 20, "the form does not show"
        assert browser.evaluate(
            "[...document.querySelectorAll('#upload input, #upload select')].every((field) =>"
            " field.getBoundingClientRect().right <= document.getElementById('upload')"
            ".getBoundingClientRect().right)"), "a field sticks out of the form"

        browser.click("#cancel")
        assert wait_for_status(server.client, job["id"], timeout=60)["status"] == "cancelled"
        browser.wait_for("document.getElementById('progress-text').textContent"
                         ".startsWith('cancelled') && !document.getElementById('cancel')")
        # Cells the cancelled job never finished are not waited for.
        assert browser.evaluate("document.querySelector('table.matrix td').textContent") == (
            "not computed (cancelled)")
        server.client.delete(f"/v1/jobs/{waiting}")
    finally:
        server.stop()


def test_upload_form_shows_why_a_job_is_refused(browser, tmp_path):
    photo = tmp_path / "photo.png"
    draw_scene().save(photo)
    # No CLIP weights in this server's models folder: it refuses every job at submission.
    server = start_server(tmp_path / "data", "--weights", "openai")
    try:
        browser.open(server.url + "/")
        browser.choose_file("#image", photo)
        browser.click("#upload button[type=submit]")
        message = browser.wait_for("document.querySelector('#upload-status .error')?.textContent")
        assert "OpenAI weights are not in" in message and "install.py" in message
        assert server.client.get("/v1/jobs").json() == []
    finally:
        server.stop()


def test_a_draft_cell_shows_as_a_draft_until_its_final_cell_replaces_it(finished, tmp_path):
    """A progressive run's draft (as the worker records it) is marked, with an image URL of
    its own; once the final cell is back, the page shows it plainly."""
    server, job_id = finished
    store = JobStore(server.data_dir)
    final = next(cell for cell in store.cells(job_id) if (cell.row, cell.layer) == (1, 8))
    store.add_cell(job_id, dataclasses.replace(final, draft=True))
    try:
        table = rendered_dom(tmp_path, server.url + "/").xpath("//table[@class='matrix']")[0]
        drafts = table.xpath(".//td[contains(@class, 'draft')]")
        assert len(drafts) == 1 and "draft" in drafts[0].text_content()
        assert drafts[0].xpath(".//img")[0].get("src") == f"/v1/jobs/{job_id}/cells/1/1.png?size=200&draft=1"
        jobs = rendered_dom(tmp_path, server.url + "/").get_element_by_id("jobs").text_content()
        assert "3/4 cells" in jobs  # a draft is not a finished cell
    finally:
        store.add_cell(job_id, final)
    table = rendered_dom(tmp_path, server.url + "/").xpath("//table[@class='matrix']")[0]
    assert not table.xpath(".//td[contains(@class, 'draft')]")


def test_the_page_applies_the_events_a_job_costs_its_cells_not_its_events(browser, tmp_path):
    """The page shows the `progress` and `cell` events' payloads: following a job of N cells to
    its end costs about N thumbnails and a few fetches of the job and its matrix, however many
    progress events its stream brings (Chromium's resource timing lists the requests)."""
    import threading

    from clipascene_ext.client import Backend

    server = start_server(tmp_path / "data")
    try:
        params = {"preset": "preview", "layers": [2, 8], "rows": 1, "strokes": 4, "iterations": 90,
                  "row_steps": 30, "split": False}
        job_id = submit(server.client, params).json()["id"]
        events: list[str] = []
        listener = threading.Thread(target=lambda: events.extend(
            kind for kind, _ in Backend(server.url).events(job_id)), daemon=True)
        listener.start()
        browser.open(server.url + "/")
        browser.evaluate("performance.setResourceTimingBufferSize(100000)")
        browser.wait_for("document.getElementById('progress-text')?.textContent.startsWith('done')"
                         " && [...document.querySelectorAll('table.matrix img')].filter((image) =>"
                         " image.complete && !image.src.includes('draft=1')).length === 4", timeout=240)
        listener.join(timeout=30)
        names = browser.evaluate("performance.getEntriesByType('resource').map((entry) => entry.name)")
        paths = [name.split(server.url, 1)[-1] for name in names]
        job_fetches = paths.count(f"/v1/jobs/{job_id}")
        matrix_fetches = paths.count(f"/v1/jobs/{job_id}/matrix")
        thumbnails = [path for path in paths if path.startswith(f"/v1/jobs/{job_id}/cells/")]
        progress_events = events.count("progress")
        cells = 4
        assert progress_events >= 8, f"the job ran too fast to test this: {events}"
        # Opened, and once more at its end (plus a reconnect on a loaded machine, at most).
        assert 1 <= job_fetches <= 3 and 1 <= matrix_fetches <= 3, paths
        assert job_fetches + matrix_fetches < progress_events, (paths, events)
        # Each cell once, or twice when a draft came first.
        finals = {path for path in thumbnails if "draft=1" not in path}
        assert finals == {f"/v1/jobs/{job_id}/cells/{row}/{column}.png?size=200"
                          for row in range(2) for column in range(2)}, thumbnails
        assert len(thumbnails) <= 2 * cells and len(thumbnails) == len(set(thumbnails)), thumbnails
        shown = browser.evaluate("[...document.querySelectorAll('table.matrix img')]"
                                 ".map((image) => image.getAttribute('src'))")
        assert sorted(shown) == sorted(finals), "every cell shows its final sketch"
    finally:
        server.stop()
