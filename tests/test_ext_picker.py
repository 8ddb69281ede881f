"""The matrix picker (inkscape_ext/clipascene_ext/picker.py) on a private Xvfb with a fake backend.

No network: the fake answers like backend/app.py (GET /v1/jobs/{id}, /matrix, cell PNGs) and its
matrix fills in as it is polled. One test runs a smoke test under Debian's /usr/bin/python3 with
Inkscape 1.2's bundled inkex, the interpreter and inkex Inkscape itself uses.
Set CLIPASCENE_SAVE_SCREENSHOTS=1 to write docs/images/picker.png.
"""

from __future__ import annotations

import gc
import json
import os
import random
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings
import zlib
from pathlib import Path

import pytest

from tests.backend_helpers import processes_with

REPO = Path(__file__).resolve().parents[1]
EXTENSION_DIR = REPO / "inkscape_ext"
SCREENSHOT = REPO / "docs" / "images" / "picker.png"
SYSTEM_PYTHON = Path("/usr/bin/python3")
SYSTEM_EXTENSIONS = Path("/usr/share/inkscape/extensions")
JOB_ID = "0123456789abcdef"
LAYERS = [4, 8]
ROWS = 3
FALLBACK_NOTICE = ("No saliency weights (U²-Net) were found: the foreground mask came from OpenCV's "
                   "classical saliency instead. Run `python3 install.py` to get them.")


# --- a display and GTK ----------------------------------------------------------------------------

def _unavailable(reason: str) -> None:
    """Skip, except in CI (CI=true), where a missing display, GTK or Inkscape is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _start_xvfb() -> tuple[subprocess.Popen, str] | None:
    """Start Xvfb on a display number it chooses itself (-displayfd) -> (process, ":N")."""
    if shutil.which("Xvfb") is None:
        return None
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        pass_fds=(write_end,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    os.close(write_end)
    # Read up to the newline before closing: Xvfb may write the number and the newline apart,
    # and a write into a closed pipe is fatal to it.
    answer = b""
    deadline = time.monotonic() + 15
    while not answer.endswith(b"\n") and time.monotonic() < deadline:
        ready, _, _ = select.select([read_end], [], [], max(deadline - time.monotonic(), 0))
        chunk = os.read(read_end, 16) if ready else b""
        if not chunk:
            break
        answer += chunk
    os.close(read_end)
    number = answer.decode().strip() if answer.endswith(b"\n") else ""
    if not number:
        process.kill()
        process.wait()
        return None
    return process, f":{number}"


@pytest.fixture(scope="session")
def display():
    """A private X display. Session-scoped: GTK keeps its connection to the display for the
    life of the process, and a vanished X server makes GDK exit the whole test run."""
    started = _start_xvfb()
    if started is None:
        if not os.environ.get("DISPLAY"):
            _unavailable("Xvfb could not be started (install the `xvfb` package) and there is no DISPLAY")
        yield os.environ["DISPLAY"]
        return
    process, name = started
    previous = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = name
    try:
        yield name
    finally:
        if previous is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = previous
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def picker(display):
    """The picker module, imported the way Inkscape imports it (inkscape_ext on sys.path)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import gi

            gi.require_version("Gtk", "3.0")
            from gi.repository import Gtk
        except (ImportError, ValueError) as error:
            _unavailable(f"GTK 3 through PyGObject is not available: {error}")
    if not Gtk.init_check()[0]:
        _unavailable(f"GTK cannot open the display {display}")
    from clipascene_ext import picker as module  # inkscape_ext is on pytest's pythonpath

    return module


@pytest.fixture
def open_picker(picker):
    """Open pickers like PickerWindow.open; any still open at the end of the test is closed."""
    windows = []

    def open_window(backend, **options):
        options.setdefault("poll_interval", 0.03)
        window = picker.PickerWindow.open(backend, JOB_ID, options.pop("title", "CLIPascene — test.jpg"),
                                          **options)
        windows.append(window)
        return window

    yield open_window
    for window in windows:
        if not window.dead:
            window.close_button.clicked()
    picker.process_events()
    # Free the closed windows' cyclic garbage now, on the main thread with GTK idle, rather
    # than whenever the collector next runs (a later test, mid-call in another library):
    # the whole-suite run once died of a segfault while garbage-collecting after these tests.
    windows.clear()
    gc.collect()
    picker.process_events()


# --- a fake backend ---------------------------------------------------------------------------------

def _png(width: int, height: int, rgb: bytes) -> bytes:
    """An 8-bit RGB PNG from raw rows, with the standard library only."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    stride = width * 3
    raw = b"".join(b"\x00" + rgb[y * stride:(y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def _stroke_counts(row: int, column: int) -> dict[str, int]:
    """Fewer strokes further down (simplicity) — like a real matrix, roughly."""
    return {"background": [12, 7, 3][row] + column, "foreground": [9, 5, 3][row] + column}


def sketch_png(row: int, column: int, part: str, width: int = 160, height: int = 120) -> bytes:
    """A thumbnail that looks like a line sketch: curved dark strokes on white paper."""
    canvas = bytearray(b"\xff" * (width * height * 3))
    for region in (("foreground", "background") if part == "combined" else (part,)):
        rng = random.Random(f"{row}/{column}/{region}")
        box = (0.35, 0.2, 0.65, 0.8) if region == "foreground" else (0.0, 0.0, 1.0, 1.0)
        for _ in range(_stroke_counts(row, column)[region]):
            points = [(rng.uniform(box[0], box[2]) * (width - 3), rng.uniform(box[1], box[3]) * (height - 3))
                      for _ in range(3)]
            for step in range(60):
                t = step / 59
                x = (1 - t) ** 2 * points[0][0] + 2 * t * (1 - t) * points[1][0] + t * t * points[2][0]
                y = (1 - t) ** 2 * points[0][1] + 2 * t * (1 - t) * points[1][1] + t * t * points[2][1]
                for dx in (0, 1):
                    for dy in (0, 1):
                        offset = ((int(y) + dy) * width + int(x) + dx) * 3
                        canvas[offset:offset + 3] = b"\x20\x20\x28"
    return _png(width, height, bytes(canvas))


class FakeBackend:
    """The picker-facing methods of client.Backend, answering like backend/app.py.

    With `cells_per_poll`, each job() call finishes that many more cells (queued first, then
    running, then done or, with `fail_after`, failed once that many cells exist). `paced`:
    only once the picker has fetched every finished cell's thumbnail, as with a real job,
    whose cells take far longer than a download (else a loaded machine's polls outrun them).
    """

    def __init__(self, split: bool = True, cells_per_poll: int = 0, fail_after: int | None = None,
                 paced: bool = False):
        self.split = split
        self.cells_per_poll = cells_per_poll
        self.paced = paced
        self.fail_after = fail_after
        self.ready = 0
        self.drafts = 0  # cells (in order) that have a draft while not yet final
        self.status = "queued"
        self.polls = 0
        self.png_requests: list[tuple[int, int, str]] = []
        self.cancelled: list[str] = []
        self.notices: list[str] = []
        self.has_mask = True
        self.mask_requests = 0
        self.stage = "training"
        self.device = "cpu"
        self.fraction: float | None = None  # the step fraction, when not cells done / total
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return ROWS * len(LAYERS)

    def finish(self, ready: int, status: str) -> None:
        with self._lock:
            self.ready, self.status = ready, status

    def job(self, job_id: str) -> dict:
        with self._lock:
            self.polls += 1
            fetched = len({(row, column) for row, column, _ in self.png_requests})
            if (self.cells_per_poll and self.status in ("queued", "running") and self.polls > 1
                    and (not self.paced or fetched >= self.ready)):
                self.ready = min(self.total, self.ready + self.cells_per_poll)
                self.status = "running"
                if self.fail_after is not None and self.ready >= self.fail_after:
                    self.status = "failed"
                elif self.ready == self.total:
                    self.status = "done"
            return self.job_record(job_id)

    def job_record(self, job_id: str = JOB_ID) -> dict:
        fraction = 1.0 if self.status == "done" else (
            self.fraction if self.fraction is not None else self.ready / self.total)
        stage = {"queued": None, "running": self.stage, "done": "done"}.get(self.status, self.stage)
        return {
            "id": job_id, "status": self.status, "created": 0.0, "started": None, "finished": None,
            "progress": {"stage": stage, "fraction": fraction, "steps_done": None, "steps_total": None,
                         "eta_s": 5.0 * (self.total - self.ready), "cells_done": self.ready,
                         "cells_total": self.total},
            "error": ("internal error: RuntimeError: CUDA out of memory" if self.status == "failed"
                      else None),
            "notices": list(self.notices), "params": {"preset": "preview"},
            "image": {"name": "test.jpg", "width": 640, "height": 480},
            "device": self.device if self.status != "queued" else None,
            "preset": {"requested": "auto", "ran": "preview", "steps": {
                "fidelity": {"background": {"4": 500, "8": 500}, "foreground": {"4": 500, "8": 500}},
                "row_steps": 100, "rows": ROWS - 1, "seeds": [0]}},
        }

    def matrix(self, job_id: str) -> dict:
        with self._lock:
            return self.manifest(job_id)

    def manifest(self, job_id: str = JOB_ID) -> dict:
        cells = []
        for row in range(ROWS):
            for column, layer in enumerate(LAYERS):
                final = row * len(LAYERS) + column < self.ready
                ready = final or row * len(LAYERS) + column < self.drafts
                counts = _stroke_counts(row, column)
                strokes = counts if self.split else {"scene": sum(counts.values())}
                cells.append({"row": row, "column": column, "layer": layer, "ready": ready,
                              "draft": ready and not final,
                              "strokes": strokes if ready else None, "urls": None})
        return {"id": job_id, "status": self.status, "rows": ROWS, "layers": LAYERS,
                "regions": ["background", "foreground"] if self.split else ["scene"],
                "split": self.split, "cells_done": self.ready, "cells_total": self.total, "cells": cells}

    def cell_png(self, job_id: str, row: int, column: int, part: str = "combined", size: int = 160) -> bytes:
        with self._lock:
            self.png_requests.append((row, column, part))
        return sketch_png(row, column, part)

    def cell_svg(self, job_id: str, row: int, column: int, part: str = "combined") -> bytes:
        """A cell as the backend writes it: one thick diagonal stroke per region, 160 x 120 px."""
        strokes = "".join(f'<g id="{region}"><path id="{region}-stroke-0" d="M 10 {10 + 40 * index} '
                          f'C 50 {30 + 40 * index} 110 {30 + 40 * index} 150 {50 + 40 * index}" '
                          'fill="none" stroke="#000000" stroke-width="12"/></g>'
                          for index, region in enumerate(("background", "foreground")))
        return ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 160 120">'
                f"{strokes}</svg>").encode()

    def mask_png(self, job_id: str) -> bytes:
        """White (the object) in the middle third of a 160 x 120 image."""
        with self._lock:
            self.mask_requests += 1
        if not self.has_mask:
            raise ConnectionError("the CLIPascene backend refused the request: Not Found")
        return _png(160, 120, b"".join(b"\xff\xff\xff" if 53 <= x < 107 else b"\x00\x00\x00"
                                       for y in range(120) for x in range(160)))

    def cancel(self, job_id: str) -> dict:
        with self._lock:
            self.cancelled.append(job_id)
            self.status = "cancelled"
            return self.job_record(job_id)


def _show(window, fake: FakeBackend, ready: int, status: str) -> None:
    """What one snapshot of the picker's feed brings: the job and its matrix."""
    fake.finish(ready, status)
    window.apply_status(fake.job_record(), fake.manifest())


def _thumbnails(window) -> set[tuple[int, int]]:
    return {position for position, cell in window.cells.items() if cell.has_thumbnail}


# --- tests ----------------------------------------------------------------------------------------------

def test_grid_has_fidelity_columns_and_simplicity_rows(picker, open_picker):
    fake = FakeBackend()
    window = open_picker(fake, poll=False)
    _show(window, fake, 0, "queued")
    grid = window.grid
    assert [grid.get_child_at(column + 1, 0).get_text() for column in range(2)] == [
        "Fidelity 4", "Fidelity 8"]
    assert [grid.get_child_at(0, row + 1).get_text() for row in range(3)] == [
        "Simplicity 0", "Simplicity 1", "Simplicity 2"]
    assert sorted(window.cells) == [(row, column) for row in range(3) for column in range(2)]
    assert window.progress.get_fraction() == 0.0
    assert window.progress.get_text() == "Queued · 0/6 cells"
    assert window.cells[(0, 0)].caption.get_text() == "waiting"

    _show(window, fake, 3, "running")
    assert window.progress.get_fraction() == pytest.approx(0.5)
    assert window.progress.get_text() == "Sketching · 3/6 cells · ETA 15 s"
    assert window.cells[(0, 0)].caption.get_text() == "21 strokes"
    assert window.cells[(2, 1)].caption.get_text() == "sketching…"


def test_progress_moves_during_the_fidelity_stage_before_any_cell(picker, open_picker):
    fake = FakeBackend()
    fake.stage, fake.fraction = "fidelity", 0.3
    window = open_picker(fake, poll=False)
    _show(window, fake, 0, "running")
    assert window.progress.get_fraction() == pytest.approx(0.3)
    assert window.progress.get_text() == "Sketching · 0/6 cells · ETA 30 s"
    fake.stage, fake.fraction = "simplicity", 0.8
    _show(window, fake, 2, "running")
    assert window.progress.get_fraction() == pytest.approx(0.8)
    assert window.progress.get_text().startswith("Simplifying · 2/6 cells")


def test_captions_count_the_strokes_of_the_part_shown(picker, open_picker):
    fake = FakeBackend(cells_per_poll=2)
    window = open_picker(fake)
    assert picker.process_events(lambda: window.progress.get_text().startswith("Done"), timeout=10)
    assert window.cells[(0, 0)].caption.get_text() == "21 strokes"  # 12 + 9: both regions
    assert window.cells[(2, 1)].caption.get_text() == "8 strokes"
    window.set_part("background")
    assert window.cells[(0, 1)].caption.get_text() == "13 strokes"
    assert window.details.get_text().startswith(
        "Preset preview, as auto chose (500 steps per fidelity sketch, 100 per simplicity row)")


def test_drafts_say_so_and_their_final_cells_replace_them(picker, open_picker):
    fake = FakeBackend()
    fake.drafts = fake.total  # a progressive run: every cell drafted, none final yet
    window = open_picker(fake, poll=False)
    _show(window, fake, 0, "running")
    assert window.cells[(0, 0)].caption.get_text() == "draft · 21 strokes"
    assert picker.process_events(lambda: (0, 0) in _thumbnails(window), timeout=10)
    _show(window, fake, 1, "running")  # the first final cell replaces its draft
    assert window.cells[(0, 0)].caption.get_text() == "21 strokes"
    assert window.cells[(0, 1)].caption.get_text().startswith("draft · ")
    # The draft's thumbnail is fetched again, now the final cell's.
    assert picker.process_events(lambda: fake.png_requests.count((0, 0, "combined")) == 2
                                 and (0, 0) in _thumbnails(window), timeout=10)


def test_details_show_preset_steps_and_an_estimate_on_the_cpu(picker, open_picker):
    fake = FakeBackend()
    window = open_picker(fake, poll=False)
    record = fake.job_record()
    del record["preset"]  # an older backend's job: the preset from its parameters
    record.update(status="running", device="cpu", params={"preset": "preview", "iterations": 150,
                                                           "row_steps": 30})
    record["progress"].update(steps_done=1234, steps_total=27000, eta_s=5400.0, stage="fidelity")
    window.apply_status(record, fake.manifest())
    text = window.details.get_text()
    assert text.startswith("Preset preview (150 steps per fidelity sketch, 30 per simplicity row)"
                           " · step 1,234 of 27,000 · on the CPU")
    assert "About 1 h 30 min more on this computer." in text
    assert "a GPU make it faster" in text
    assert "quick draft" not in text, "it runs the quick draft's steps already"
    record["params"] = {"preset": "preview"}
    window.apply_status(record, fake.manifest())
    assert "the quick draft" in window.details.get_text()
    record.update(device="cuda:0")
    window.apply_status(record, fake.manifest())
    assert window.details.get_text().endswith("on cuda:0"), "no CPU advice on a GPU"
    # A backend that says which preset will run shows it before the job starts.
    record.update(status="queued", device=None, preset={
        "requested": "auto", "ran": "standard", "steps": {
            "fidelity": {"background": {"4": 1500, "8": 1500}, "foreground": {"4": 600, "8": 1000}},
            "row_steps": 400, "rows": 2, "seeds": [0, 1000]}})
    record["progress"].update(steps_done=None, steps_total=None, eta_s=None)
    window.apply_status(record, fake.manifest())
    assert window.details.get_text() == ("Preset standard, as auto chose (600–1500 steps per fidelity "
                                         "sketch, 400 per simplicity row, 2 seeds each)")


def _colours(pixbuf) -> set[bytes]:
    pixels, stride, channels = pixbuf.get_pixels(), pixbuf.get_rowstride(), pixbuf.get_n_channels()
    return {pixels[y * stride + x * channels:y * stride + x * channels + 3]
            for y in range(pixbuf.get_height()) for x in range(pixbuf.get_width())}


def test_the_chosen_cell_is_previewed_in_the_chosen_style(picker, open_picker):
    from clipascene_ext.importer import preview_svg
    from clipascene_ext.style import StrokeStyle

    fake = FakeBackend()
    styled = []

    def preview(cell_svg):
        styled.append(cell_svg)
        return preview_svg(cell_svg, StrokeStyle("#ff00ff", width_scale=1.5))

    window = open_picker(fake, poll=False, preview=preview)
    _show(window, fake, 6, "done")
    assert window.preview.get_storage_type() != picker.Gtk.ImageType.PIXBUF
    window.select(1, 0)
    assert picker.process_events(lambda: window.preview.get_pixbuf() is not None, timeout=5)
    shown = window.preview.get_pixbuf()
    assert max(shown.get_width(), shown.get_height()) == picker.PREVIEW_SIZE
    assert b"\xff\x00\xff" in _colours(shown), "the strokes are drawn in the chosen colour"
    assert styled == [fake.cell_svg(JOB_ID, 1, 0)]
    window.set_part("foreground")
    assert picker.process_events(lambda: len(styled) == 2 and window.preview.get_pixbuf() is not shown,
                                 timeout=5)
    window.set_part("combined")  # drawn once, shown again from the cache
    assert window.preview.get_pixbuf() is shown and len(styled) == 2


def test_the_object_mask_is_shown_over_the_photo(picker, open_picker):
    fake = FakeBackend()
    photo = _png(160, 120, b"\x20\xa0\x20" * (160 * 120))  # green
    window = open_picker(fake, poll=False, photo=photo)
    _show(window, fake, 0, "running")
    assert not window.mask_button.get_sensitive() and fake.mask_requests == 0, "no mask before a cell"
    _show(window, fake, 1, "running")
    assert picker.process_events(lambda: window.mask_button.get_sensitive(), timeout=5)
    window.mask_button.set_active(True)
    colours = _colours(window.preview.get_pixbuf())
    assert b"\x20\xa0\x20" in colours, "the background shows the photo as it is"
    tinted = bytes(round(base * 0.45 + tint * 0.55)
                   for base, tint in zip((0x20, 0xA0, 0x20), picker.MASK_TINT, strict=True))
    assert tinted in colours, "the object is tinted"
    _show(window, fake, 2, "running")
    assert fake.mask_requests == 1, "the mask is fetched once"
    window.select(0, 0)
    assert not window.mask_button.get_active(), "choosing a sketch shows the sketch again"

    without = FakeBackend()
    without.has_mask = False
    other = open_picker(without, poll=False)
    _show(other, without, 2, "running")
    assert picker.process_events(lambda: without.mask_requests == 1 and "cannot be shown"
                                 in (other.mask_button.get_tooltip_text() or ""), timeout=5)
    assert not other.mask_button.get_sensitive()
    assert not other.notice.get_visible(), "a backend without masks is not an error"


def test_progress_moves_with_a_real_backend_during_the_fidelity_stage(picker, open_picker, tmp_path_factory):
    """Events from a real daemon (the tiny random CLIP), through its event stream: the bar
    fills before the first cell."""
    from clipascene_ext.client import Backend

    from tests.backend_helpers import start_server
    from tests.scenes import draw_scene

    server = start_server(tmp_path_factory.mktemp("picker-server"))
    try:
        backend = Backend(server.url)
        image = tmp_path_factory.mktemp("photo") / "scene.png"
        draw_scene(96, 64).save(image)
        job = backend.submit(image.read_bytes(), "scene.png",
                             {"preset": "preview", "layers": [2], "rows": 0, "strokes": 4,
                              "iterations": 30, "split": False})
        # Polling alone would look once a minute: the bar moves because the picker follows
        # the job's event stream.
        window = picker.PickerWindow.open(backend, job["id"], "real", poll_interval=60)
        seen = []
        window.progress.connect("notify::fraction", lambda bar, _spec: seen.append(
            (bar.get_text(), bar.get_fraction())))
        assert picker.process_events(lambda: window.progress.get_text().startswith("Done"), timeout=120)
        during = [fraction for text, fraction in seen if text.startswith("Sketching · 0/1")]
        assert during and max(during) > 0.05, seen
        window.close_button.clicked()
        picker.process_events()
    finally:
        server.stop()


class Streaming(FakeBackend):
    """A FakeBackend with the job's event stream, scripted like the backend's /events: every
    cell a draft first, then final, with `progress_per_cell` progress events around each, and
    the last event `done`. The first stream drops after `drop_after` events (a lost
    connection); the next one replays the cells already sent, as the backend does."""

    def __init__(self, progress_per_cell: int = 40, drop_after: int | None = None):
        super().__init__(split=True)
        self.progress_per_cell = progress_per_cell
        self.drop_after = drop_after
        self.matrix_requests = 0
        self.streams = 0
        self.sent = 0
        self.script = self._script()

    def matrix(self, job_id: str) -> dict:
        with self._lock:
            self.matrix_requests += 1
        return super().matrix(job_id)

    def _progress(self) -> tuple[str, dict]:
        record = self.job_record()
        return "progress", {**record["progress"], "id": JOB_ID, "status": record["status"]}

    def _cell(self, index: int, draft: bool) -> tuple[str, dict]:
        row, column = divmod(index, len(LAYERS))
        base = f"/v1/jobs/{JOB_ID}/cells/{row}/{column}"
        return "cell", {"id": JOB_ID, "row": row, "column": column, "layer": LAYERS[column],
                        "strokes": _stroke_counts(row, column), "draft": draft,
                        "urls": {"combined": f"{base}.svg", "png": f"{base}.png",
                                 "foreground": f"{base}.svg?part=foreground",
                                 "background": f"{base}.svg?part=background"}}

    def _script(self):
        """The job's events in order, moving the fake's state as it goes."""
        self.status = "running"
        for stage, draft in (("fidelity", True), ("simplicity", False)):
            self.stage = stage
            for index in range(self.total):
                for step in range(self.progress_per_cell):
                    self.fraction = (index + step / self.progress_per_cell) / self.total
                    yield self._progress()
                if draft:
                    self.drafts = index + 1
                else:
                    self.ready = index + 1
                yield self._cell(index, draft)
        self.status, self.fraction = "done", 1.0
        yield self._progress()
        yield "done", {"id": JOB_ID, "status": "done", "error": None}

    def events(self, job_id: str):
        self.streams += 1
        with self._lock:  # a new stream first says what is there, as the backend's does
            replay = [self._cell(index, index >= self.ready)
                      for index in range(max(self.ready, self.drafts))]
        yield from replay
        for event in self.script:
            self.sent += 1
            yield event
            time.sleep(0.0005)
            if self.streams == 1 and self.drop_after is not None and self.sent >= self.drop_after:
                raise ConnectionResetError("the connection dropped")


@pytest.mark.parametrize("drop_after", [None, 300])
def test_events_carry_the_data_a_job_costs_its_cells_not_its_events(picker, open_picker, drop_after):
    """The picker shows the events' payloads: for a job of N cells (each a draft, then final)
    it fetches 2N thumbnails and the job and matrix once when it opens, once more when the
    stream reconnects and once when it ends, however many progress events come."""
    fake = Streaming(progress_per_cell=40, drop_after=drop_after)
    window = open_picker(fake, poll_interval=0.05)
    seen = []
    window.progress.connect("notify::text", lambda bar, _spec: seen.append(bar.get_text()))
    assert picker.process_events(lambda: window.progress.get_text() == "Done · 6/6 cells"
                                 and len(fake.png_requests) == 12 and len(_thumbnails(window)) == 6,
                                 timeout=30)
    events = 2 * fake.total * (fake.progress_per_cell + 1) + 2
    assert fake.sent == events > 400
    reconnects = fake.streams - 1
    assert reconnects == (0 if drop_after is None else 1)
    assert fake.polls == fake.matrix_requests == 2 + reconnects, "opened, (reconnected,) ended"
    assert sorted(fake.png_requests) == sorted(
        (row, column, "combined") for row in range(ROWS) for column in range(2) for _ in range(2)), (
        "each cell's thumbnail twice: its draft's, then its final cell's")
    assert any(text.startswith("Sketching · 0/6") for text in seen), "progress events move the bar"
    assert any(text.startswith("Simplifying · 3/6") for text in seen)
    assert [window.cells[(row, column)].caption.get_text() for row in range(ROWS) for column in range(2)] == [
        f"{sum(_stroke_counts(row, column).values())} strokes" for row in range(ROWS) for column in range(2)]
    window.set_part("foreground")  # the stroke counts per region came with the events
    assert window.cells[(2, 1)].caption.get_text() == "4 strokes"
    assert window.details.get_text().startswith("Preset preview, as auto chose (500 steps")


def test_thumbnails_are_fetched_once_for_ready_cells(picker, open_picker):
    fake = FakeBackend()
    window = open_picker(fake, poll=False)
    _show(window, fake, 2, "running")
    assert picker.process_events(lambda: _thumbnails(window) == {(0, 0), (0, 1)}, timeout=5)
    assert window.cells[(0, 0)].image.get_pixbuf().get_width() == 160

    _show(window, fake, 2, "running")  # the same state again: nothing to fetch
    _show(window, fake, 4, "running")
    assert picker.process_events(lambda: len(_thumbnails(window)) == 4, timeout=5)
    assert sorted(fake.png_requests) == [(0, 0, "combined"), (0, 1, "combined"),
                                         (1, 0, "combined"), (1, 1, "combined")]


def test_matrix_fills_in_live_and_polling_stops_when_done(picker, open_picker):
    fake = FakeBackend(cells_per_poll=1, paced=True)
    window = open_picker(fake)
    seen = []  # (progress text, fraction, thumbnails shown) at each progress update
    window.progress.connect("notify::text", lambda bar, _spec: seen.append(
        (bar.get_text(), bar.get_fraction(), len(_thumbnails(window)))))
    assert picker.process_events(
        lambda: window.progress.get_text().startswith("Done") and len(_thumbnails(window)) == 6, timeout=10)
    texts = [text for text, _, _ in seen]
    assert "Sketching · 3/6 cells · ETA 15 s" in texts
    assert texts[-1] == "Done · 6/6 cells"
    fractions = [fraction for _, fraction, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert 0 < max(count for text, _, count in seen if text.startswith("Sketching · 4/6")) < 6

    polls = fake.polls
    picker.process_events(lambda: False, timeout=0.3)
    assert fake.polls == polls, "a finished job is polled no more"
    assert len(fake.png_requests) == 6, "every thumbnail is fetched once"


def test_import_needs_a_chosen_ready_cell(picker, open_picker):
    fake = FakeBackend()
    window = open_picker(fake, poll=False)
    _show(window, fake, 2, "running")
    assert not window.import_button.get_sensitive()
    window.select(2, 1)  # not sketched yet
    assert window.cells[(2, 1)].button.get_active()
    assert not window.import_button.get_sensitive()

    window.cells[(0, 1)].button.clicked()
    assert window.selected == (0, 1)
    assert [position for position, cell in window.cells.items() if cell.button.get_active()] == [(0, 1)]
    assert window.import_button.get_sensitive()
    window.cells[(0, 1)].button.clicked()  # a second click keeps the choice
    assert window.selected == (0, 1) and window.cells[(0, 1)].button.get_active()

    window.import_button.clicked()
    assert window.dead
    assert window.result == (0, 1, "combined", 8, False), "with the layer the import needs"
    assert fake.cancelled == []


def test_a_cell_becoming_ready_enables_import_of_the_preselected_cell(picker, open_picker):
    fake = FakeBackend()
    window = open_picker(fake, poll=False, initial=(1, 0, "combined"))
    _show(window, fake, 1, "running")
    assert window.selected == (1, 0) and window.cells[(1, 0)].button.get_active()
    assert not window.import_button.get_sensitive()
    _show(window, fake, 3, "running")
    assert window.import_button.get_sensitive()


def test_region_switch_changes_the_part(picker, open_picker):
    fake = FakeBackend(split=True)
    window = open_picker(fake, poll=False)
    _show(window, fake, 6, "done")
    assert window.region_buttons["foreground"].get_sensitive()
    assert picker.process_events(lambda: len(_thumbnails(window)) == 6, timeout=5)
    combined = window.cells[(1, 1)].image.get_pixbuf()

    window.region_buttons["foreground"].clicked()
    assert window.part == "foreground"
    assert window.cells[(1, 1)].caption.get_text() == "6 strokes"
    assert picker.process_events(
        lambda: all(window.cells[position].image.get_pixbuf() is not None
                    and window.cells[position].image.get_pixbuf() is not combined
                    for position in [(1, 1)]) and len(_thumbnails(window)) == 6, timeout=5)
    assert {request for request in fake.png_requests if request[2] == "foreground"} == {
        (row, column, "foreground") for row in range(3) for column in range(2)}

    window.region_buttons["combined"].clicked()  # cached: shown at once, not fetched again
    assert window.cells[(1, 1)].image.get_pixbuf() is combined
    assert len(fake.png_requests) == 12

    window.set_part("background")
    window.select(1, 1)
    window.import_button.clicked()
    assert window.result == (1, 1, "background", 8, False)


def test_region_switch_without_split(picker, open_picker):
    fake = FakeBackend(split=False)
    window = open_picker(fake, poll=False, initial=(0, 0, "foreground"))
    _show(window, fake, 6, "done")
    assert window.part == "combined", "a job without split has only the combined part"
    assert window.region_buttons["combined"].get_active()
    assert not window.region_buttons["foreground"].get_sensitive()
    assert not window.region_buttons["background"].get_sensitive()
    assert window.cells[(0, 0)].caption.get_text() == "21 strokes"
    with pytest.raises(ValueError, match="one region"):
        window.set_part("background")


def test_cancel_job_cancels_in_the_backend(picker, open_picker):
    fake = FakeBackend(cells_per_poll=1)
    window = open_picker(fake, poll_interval=0.2)
    assert picker.process_events(lambda: window.cells, timeout=5)
    window.cancel_button.clicked()
    assert picker.process_events(lambda: window.dead, timeout=5)
    assert fake.cancelled == [JOB_ID]
    assert window.result is None


def test_a_failed_cancel_is_announced_and_the_picker_stays(picker, open_picker):
    class Refusing(FakeBackend):
        def cancel(self, job_id):
            raise ConnectionError("cannot reach the CLIPascene backend at http://127.0.0.1:8765")

    fake = Refusing()
    window = open_picker(fake, poll=False)
    _show(window, fake, 2, "running")
    window.cancel_button.clicked()
    assert picker.process_events(lambda: "could not be cancelled" in window.notice.get_text(), timeout=5)
    assert not window.dead and window.result is None
    assert window.cancel_button.get_sensitive()


def test_close_keeps_the_job_running(picker, open_picker):
    fake = FakeBackend(cells_per_poll=1)
    window = open_picker(fake, poll_interval=0.2)
    assert picker.process_events(lambda: window.cells, timeout=5)
    window.select(0, 0)
    window.close_button.clicked()
    assert window.dead
    assert window.result is None
    assert fake.cancelled == []


def test_the_viewer_watches_without_importing(picker, open_picker):
    """The viewer beside Inkscape (a picker in its own process) cannot import: no Import
    button, a double click imports nothing, and it says how to import."""
    fake = FakeBackend()
    window = open_picker(fake, poll=False, view_only=True)
    _show(window, fake, 3, "running")
    assert not window.import_button.get_visible()
    assert "Import Sketch" in window.widget("selection").get_text()
    window.select(0, 0)
    window.on_import_clicked()
    assert not window.dead and window.result is None
    window.close_button.clicked()
    assert window.dead and fake.cancelled == []


def test_sketch_image_starts_a_viewer_that_outlives_it(picker, display):
    """viewer.start returns at once and leaves the viewer running in a process of its own
    (here on an unreachable backend, which its window announces)."""
    from clipascene_ext import viewer

    job_id = "fedcba9876543210"
    started = time.monotonic()
    viewer.start("http://127.0.0.1:9", job_id, "CLIPascene — test", "", b"not a photo")
    assert time.monotonic() - started < 10
    try:
        deadline = time.monotonic() + 10
        while not processes_with("clipascene_ext.viewer", job_id) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)  # it has opened its window by now, or died
        assert processes_with("clipascene_ext.viewer", job_id), viewer.log_path().read_text()[-2000:]
    finally:
        for pid in processes_with("clipascene_ext.viewer", job_id):
            os.kill(pid, signal.SIGTERM)


def test_the_artist_picks_one_of_the_photos_matrices_newest_first(picker):
    """Several matrices of one photo: a window lists them newest first, described by their
    settings; the one clicked is opened."""
    from clipascene_ext.photojobs import choose_job
    from gi.repository import GLib, Gtk

    jobs = [{"id": "older", "created": 100.0, "status": "done",
             "params": {"preset": "preview", "layers": [2], "rows": 1}, "progress": {}},
            {"id": "newer", "created": 200.0, "status": "running",
             "params": {"preset": "standard", "layers": [8, 11], "rows": 4}, "progress": {}}]
    seen = []

    def answer():
        dialog = next((window for window in Gtk.Window.list_toplevels()
                       if isinstance(window, Gtk.Dialog) and window.get_visible()), None)
        if dialog is None:
            return True  # not shown yet: look again
        radios = [child for child in dialog.get_content_area().get_children()
                  if isinstance(child, Gtk.RadioButton)]
        seen.extend(radio.get_label() for radio in radios)
        radios[1].set_active(True)
        dialog.response(Gtk.ResponseType.OK)
        return False

    GLib.timeout_add(50, answer)
    chosen = choose_job(jobs, "CLIPascene — photo.jpg")
    assert chosen["id"] == "older"
    assert "quality standard" in seen[0] and "fidelity 8, 11" in seen[0] and "sketching" in seen[0]
    assert "quality preview" in seen[1] and "finished" in seen[1]
    assert choose_job(jobs[:1]) is jobs[0], "one matrix is opened without asking"


FIT_SCRIPT = """
import json, time, warnings
warnings.simplefilter("ignore")
from clipascene_ext import picker

class Offline:
    def __getattr__(self, name):
        def refuse(*arguments, **keywords):
            raise RuntimeError("offline")
        return refuse

window = picker.PickerWindow.open(Offline(), "0123456789abcdef", "CLIPascene — photo.jpg", poll=False,
                                  preview=lambda svg: svg)
notice = ("No saliency weights (U²-Net) were found: the foreground mask came from OpenCV's "
          "classical saliency instead. Run `python3 install.py` to get them.")
job = {"status": "running", "device": "cpu", "params": {"preset": "preview"}, "notices": [notice] * 3,
       "progress": {"stage": "fidelity", "fraction": 0.2, "steps_done": 100, "steps_total": 5000,
                    "eta_s": 5400}}
matrix = {"status": "running", "rows": 9, "layers": [2, 8, 11], "split": True, "cells_done": 0,
          "cells_total": 27, "cells": [{"row": row, "column": column, "ready": False}
                                       for row in range(9) for column in range(3)]}
window.apply_status(job, matrix)
end = time.monotonic() + 2
while time.monotonic() < end:
    picker.process_events(timeout=0.1)

def box(widget):
    allocation = widget.get_allocation()
    x, y = widget.translate_coordinates(window.window, 0, 0)[-2:]
    return [x, y, allocation.width, allocation.height]

area = window.window.get_display().get_monitor(0).get_workarea()
print(json.dumps({"area": [area.width, area.height], "window": list(window.window.get_size()),
                  "scroller": box(window.widget("matrix_scroller")),
                  "buttons": [box(button) for button in (window.import_button, window.close_button)],
                  "cells": [box(view.button) for (row, column), view in sorted(window.cells.items())
                            if row < 2]}))
"""


@pytest.mark.parametrize("screen", [(1366, 768), (1280, 800)])
def test_the_picker_fits_a_laptop_screen(picker, screen, tmp_path):
    """On 1366 x 768 and 1280 x 800 the picker shows all three fidelity columns, two whole
    simplicity rows and its buttons, with room left for the panels and the title bar."""
    from clipascene_ext.screen import fit_sizes, window_size

    width, height = screen
    thumbnail, preview = fit_sizes(width, height, 3)
    needed = window_size(thumbnail, preview, 3, 2)
    assert needed[0] <= width and needed[1] <= height - 40, (thumbnail, preview, needed)
    assert thumbnail >= 120, "thumbnails stay large enough to judge a sketch"

    if shutil.which("xvfb-run") is None:
        _unavailable("xvfb-run is needed to open the picker on a screen of another size")
    script = tmp_path / "fit.py"
    script.write_text(FIT_SCRIPT, encoding="utf-8")
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(EXTENSION_DIR), *sys.path]))
    environment.pop("DISPLAY", None)
    result = subprocess.run(["xvfb-run", "-a", "-s", f"-screen 0 {width}x{height}x24", sys.executable,
                             str(script)], env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    window_width, window_height = shown["window"]
    assert window_width <= width and window_height <= height
    for x, y, button_width, button_height in shown["buttons"]:
        assert x + button_width <= window_width and y + button_height <= window_height
    x0, y0, scroller_width, scroller_height = shown["scroller"]
    for x, y, cell_width, cell_height in shown["cells"]:  # the first two rows, every column
        assert x0 <= x and x + cell_width <= x0 + scroller_width, "a column is cut off"
        assert y0 <= y and y + cell_height <= y0 + scroller_height, "a row is cut off"


def test_failed_job_shows_its_error(picker, open_picker):
    fake = FakeBackend(cells_per_poll=1, fail_after=2)
    fake.notices.append(FALLBACK_NOTICE)
    window = open_picker(fake)
    assert picker.process_events(lambda: window.progress.get_text().startswith("Failed"), timeout=10)
    assert window.progress.get_text() == "Failed · 2/6 cells"
    notice = window.notice.get_text()
    assert window.notice.get_visible()
    assert "The sketch failed: internal error: RuntimeError: CUDA out of memory" in notice
    assert FALLBACK_NOTICE in notice
    assert window.cells[(2, 0)].caption.get_text() == "not sketched"
    assert not window.cancel_button.get_sensitive(), "a failed job cannot be cancelled"
    polls = fake.polls
    picker.process_events(lambda: False, timeout=0.2)
    assert fake.polls == polls


def test_unreachable_backend_is_announced(picker, open_picker):
    class Unreachable(FakeBackend):
        def job(self, job_id):
            raise ConnectionError("cannot reach the CLIPascene backend at http://127.0.0.1:8765")

    window = open_picker(Unreachable())
    assert picker.process_events(lambda: "cannot reach" in window.notice.get_text(), timeout=5)
    assert window.notice.get_visible()


def test_pick_cell_runs_its_own_main_loop(picker, monkeypatch):
    from inkex.gui.tester import MainLoopProtection

    fake = FakeBackend(cells_per_poll=2)
    opened = []
    original_open = picker.PickerWindow.open

    def open_and_keep(*args, **kwargs):
        opened.append(original_open(*args, poll_interval=0.03, **kwargs))
        return opened[-1]

    def choose():
        window = opened[0] if opened else None
        if window is None or (1, 1) not in window.state.ready:
            return True  # ask again
        window.cells[(1, 1)].button.clicked()
        window.import_button.clicked()
        return False

    monkeypatch.setattr(picker.PickerWindow, "open", staticmethod(open_and_keep))
    interrupt_handler = signal.getsignal(signal.SIGINT)  # GtkApp.run() replaces it
    picker.GLib.timeout_add(20, choose)
    try:
        with MainLoopProtection(timeout=10):
            choice = picker.pick_cell(fake, JOB_ID, initial=(0, 0, "combined"))
    finally:
        signal.signal(signal.SIGINT, interrupt_handler)
    assert choice[:3] == (1, 1, "combined") and choice.layer == 8
    assert opened[0].dead


def test_finished_matrix_screenshot(picker, open_picker):
    from clipascene_ext.importer import preview_svg
    from clipascene_ext.style import StrokeStyle
    from gi.repository import Gdk

    fake = FakeBackend(split=True)
    fake.notices.append(FALLBACK_NOTICE)
    photo = _png(160, 120, bytes(value for y in range(120) for x in range(160)
                                 for value in (150 + x // 3, 180 + y // 3, 210)))  # a sky
    window = open_picker(fake, poll=False, title="CLIPascene — harbour.jpg", photo=photo,
                         preview=lambda cell: preview_svg(cell, StrokeStyle("#7a2e12", taper=True),
                                                          None, photo))
    _show(window, fake, 6, "done")
    window.select(1, 1)
    assert picker.process_events(lambda: len(_thumbnails(window)) == 6
                                 and window.preview.get_pixbuf() is not None
                                 and window.mask_button.get_sensitive(), timeout=5)
    started = time.monotonic()
    picker.process_events(lambda: time.monotonic() - started > 0.4, timeout=1)  # let it draw

    scrolled = window.widget("matrix_scroller").get_vadjustment()
    assert scrolled.get_upper() <= scrolled.get_page_size() + 1, "the window grew to show the whole matrix"
    assert not window.cancel_button.get_sensitive(), "a finished job cannot be cancelled"

    surface = window.window.get_window()
    shot = Gdk.pixbuf_get_from_window(surface, 0, 0, surface.get_width(), surface.get_height())
    assert shot is not None and shot.get_width() >= 400 and shot.get_height() >= 500
    pixels = shot.get_pixels()
    channels, stride = shot.get_n_channels(), shot.get_rowstride()
    colours = {pixels[y * stride + x * channels:y * stride + x * channels + 3]
               for y in range(0, shot.get_height(), 3) for x in range(0, shot.get_width(), 3)}
    assert len(colours) > 20, "the screenshot is blank"
    assert b"\x20\x20\x28" in colours, "the sketch thumbnails are not on screen"
    bottom_right = (shot.get_height() - 2) * stride + (shot.get_width() - 2) * channels
    assert pixels[bottom_right:bottom_right + 3] != b"\x00\x00\x00", "the window reaches off screen"
    if os.environ.get("CLIPASCENE_SAVE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shot.savev(str(SCREENSHOT), "png", [], [])


def test_drafts_screenshot(picker, open_picker):
    """A progressive run on a CPU: every cell drafted, three of them final already."""
    from gi.repository import Gdk

    fake = FakeBackend(split=True)
    fake.drafts = fake.total
    fake.stage, fake.fraction = "simplicity", 0.35
    window = open_picker(fake, poll=False, title="CLIPascene — harbour.jpg")
    _show(window, fake, 3, "running")
    assert picker.process_events(lambda: len(_thumbnails(window)) == 6, timeout=5)
    captions = [window.cells[(row, column)].caption.get_text() for row in range(3) for column in range(2)]
    assert sum(caption.startswith("draft · ") for caption in captions) == 3
    started = time.monotonic()
    picker.process_events(lambda: time.monotonic() - started > 0.4, timeout=1)  # let it draw
    surface = window.window.get_window()
    shot = Gdk.pixbuf_get_from_window(surface, 0, 0, surface.get_width(), surface.get_height())
    assert shot is not None and shot.get_width() >= 400
    if os.environ.get("CLIPASCENE_SAVE_SCREENSHOTS") == "1":
        shot.savev(str(SCREENSHOT.with_name("picker-drafts.png")), "png", [], [])


# --- Debian's python3 and Inkscape 1.2's inkex -------------------------------------------------------

SMOKE_TEST = '''
"""Smoke test of the picker under the interpreter and inkex that Inkscape runs extensions with."""
import struct
import sys
import unittest
import zlib

import os

import inkex
from clipascene_ext import picker
from inkex.gui.tester import MainLoopProtection


def grey_png(width, height, level):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\\x00" + bytes([level]) * (width * 3) for _ in range(height))
    return (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


class Backend:
    def job(self, job_id):
        return {"status": "done", "progress": {"stage": "done", "fraction": 1.0}, "notices": [],
                "error": None}

    def matrix(self, job_id):
        cells = [{"row": row, "column": column, "layer": 4 + 4 * column, "ready": True,
                  "strokes": {"scene": 10}} for row in range(2) for column in range(2)]
        return {"rows": 2, "layers": [4, 8], "split": False, "cells_done": 4, "cells_total": 4,
                "cells": cells}

    def cell_png(self, job_id, row, column, part="combined", size=160):
        return grey_png(160, 100, 60 * row + 30 * column)

    def cancel(self, job_id):
        raise AssertionError("Import must not cancel the job")


class PickerSmoke(unittest.TestCase):
    def test_pick_a_cell(self):
        self.assertTrue(inkex.__file__.startswith(os.environ["EXPECTED_INKEX"]), inkex.__file__)
        window = picker.PickerWindow.open(Backend(), "0123456789abcdef", "smoke", poll_interval=0.05)
        self.assertTrue(picker.process_events(
            lambda: window.cells and all(cell.has_thumbnail for cell in window.cells.values()), 10))
        self.assertEqual(window.progress.get_text(), "Done · 4/4 cells")
        window.cells[(1, 0)].button.clicked()
        window.import_button.clicked()
        self.assertEqual(window.result, (1, 0, "combined", 4, False))
        self.assertTrue(window.dead)

    def test_main_loop_ends_on_import(self):
        window = picker.PickerWindow.open(Backend(), "0123456789abcdef", "smoke", poll_interval=0.05)

        def choose():
            if window.cells:
                window.select(0, 1)
            if not window.import_button.get_sensitive():
                return True  # not ready yet: ask again
            window.import_button.clicked()
            return False

        picker.GLib.timeout_add(20, choose)
        with MainLoopProtection(timeout=10):
            window.gapp.run()
        self.assertEqual(window.result, (0, 1, "combined", 8, False))


if __name__ == "__main__":
    unittest.main(testRunner=unittest.TextTestRunner(stream=sys.stdout, verbosity=2))
'''


@pytest.mark.usefixtures("picker")  # skips when GTK cannot use the display
def test_picker_under_system_python_and_inkex_1_2(display, tmp_path):
    if not (SYSTEM_EXTENSIONS / "inkex").is_dir():
        _unavailable(f"Inkscape's bundled inkex is not installed ({SYSTEM_EXTENSIONS / 'inkex'} is missing)")
    if not SYSTEM_PYTHON.exists():
        _unavailable(f"{SYSTEM_PYTHON} (the interpreter Inkscape runs extensions with) is missing")
    environment = dict(os.environ, DISPLAY=display,
                       PYTHONPATH=os.pathsep.join([str(SYSTEM_EXTENSIONS), str(EXTENSION_DIR)]))
    has_gi = subprocess.run([str(SYSTEM_PYTHON), "-c", "import gi"], env=environment,
                            capture_output=True, timeout=30).returncode == 0
    if not has_gi:
        _unavailable(f"{SYSTEM_PYTHON} has no PyGObject (apt-get install python3-gi gir1.2-gtk-3.0)")
    environment["EXPECTED_INKEX"] = str(SYSTEM_EXTENSIONS / "inkex")
    script = tmp_path / "test_picker_smoke.py"
    script.write_text(SMOKE_TEST, encoding="utf-8")
    has_pytest = subprocess.run([str(SYSTEM_PYTHON), "-c", "import pytest"], env=environment,
                                capture_output=True, timeout=30).returncode == 0
    runner = ["-m", "pytest", "-q", "-p", "no:cacheprovider", script.name] if has_pytest else [script.name]
    # ImportWarnings switched on: any of them on stderr would become a modal dialog in Inkscape.
    result = subprocess.run([str(SYSTEM_PYTHON), "-W", "always::ImportWarning", *runner],
                            env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_pick_a_cell" in result.stdout or has_pytest, result.stdout
    passed = "2 passed" in result.stdout if has_pytest else result.stdout.rstrip().endswith("OK")
    assert passed, result.stdout
    assert result.stderr == "", "Inkscape would show this stderr output as an error dialog"
