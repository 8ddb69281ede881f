"""The matrix picker: a GTK window where a job's sketch matrix fills in live and the user picks a cell.

Columns are CLIP layers (fidelity), rows are simplicity levels (row 0 is the fidelity sketch
itself). Built on `inkex.gui` (GtkApp + Window with `picker.ui`), whose API is the same in
Inkscape 1.2's bundled inkex and in inkex 1.4. The network is only touched from one background
thread; everything that changes widgets runs on the GTK main loop through `GLib.idle_add`.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# Inkscape turns any stderr output of an extension into a modal error dialog, and Debian's
# PyGObject emits ImportWarnings on import (inkex 1.2 does not hide them): import quietly.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import gi

    gi.require_version("Gtk", "3.0")
    gi.require_version("Gdk", "3.0")
    gi.require_version("GdkPixbuf", "2.0")
    from gi.repository import Gdk, GdkPixbuf, GLib, Gtk
    from inkex.gui import GtkApp, Window

from .effects import DRAFT
from .photo import load_pixbuf
from .screen import PREVIEW_MAX, THUMBNAIL_MAX, fit_sizes
from .words import cell_name, fidelity, simplicity

logger = logging.getLogger(__name__)

PARTS = ("combined", "foreground", "background")
FINAL = ("done", "failed", "cancelled")
THUMBNAIL_SIZE = THUMBNAIL_MAX  # px, the longer side of a cell's thumbnail (less on small screens)
PREVIEW_SIZE = PREVIEW_MAX  # px, the longer side of the styled preview and the mask view
POLL_INTERVAL_S = 1.0
#: While the job's event stream is open the picker asks for the job when an event says
#: something changed, and polls only this seldom, in case an event was missed.
STREAM_POLL_INTERVAL_S = 15.0
#: What the viewer (a picker that cannot import: its own process, Inkscape stays free) says.
HOW_TO_IMPORT = ("To import a sketch: select the photo in Inkscape, then Extensions ▸ CLIPascene ▸ "
                 "Import Sketch (Change Abstraction)")
CPU_ADVICE = ("Fewer fidelity columns or simplicity rows, the quick draft, or a backend on a "
              "computer with a GPU make it faster.")
#: The advice for a job that already runs as few steps as the quick draft (or fewer).
CPU_ADVICE_DRAFTED = ("Fewer fidelity columns or simplicity rows, or a backend on a computer "
                      "with a GPU make it faster.")
#: The progress bar's words for the backend's stages and statuses.
STAGES = {"preprocessing": "Preparing the photo", "training": "Sketching", "fidelity": "Sketching",
          "simplicity": "Simplifying"}
MASK_TINT = (230, 40, 90)  # the colour the foreground object is tinted with in the mask view
CSS = b"""
button.clipascene-cell { padding: 4px; }
button.clipascene-cell:checked { box-shadow: inset 0 0 0 3px @theme_selected_bg_color; }
.clipascene-thumbnail { background-color: #ffffff; }
label.clipascene-error { color: @error_color; }
"""

Choice = tuple[int, int, str]
_STYLED_SCREENS: dict[Gdk.Screen, Gtk.CssProvider] = {}


class PickerBackend(Protocol):
    """What the picker needs of `client.Backend`; tests pass a fake with the same methods."""

    def job(self, job_id: str) -> dict: ...
    def matrix(self, job_id: str) -> dict: ...
    def manifest_json(self, job_id: str) -> dict: ...
    def cell_png(self, job_id: str, row: int, column: int, part: str = "combined",
                 size: int = 160) -> bytes: ...
    def cell_svg(self, job_id: str, row: int, column: int, part: str = "combined") -> bytes: ...
    def mask_png(self, job_id: str) -> bytes: ...
    def cancel(self, job_id: str) -> dict: ...


@dataclass
class CellView:
    """The widgets of one matrix cell: a toggle button holding the thumbnail and a caption."""

    button: Gtk.ToggleButton
    image: Gtk.Image
    caption: Gtk.Label

    @property
    def has_thumbnail(self) -> bool:
        return self.image.get_storage_type() == Gtk.ImageType.PIXBUF


class PickerWindow(Window):
    """The picker window of `picker.ui`; open one with `PickerWindow.open(...)` (inkex.gui
    constructs windows from their GtkApp, so the options travel as the app's keyword arguments).

    After it closes, `result` is the chosen (row, column, part), or None for Close and Cancel
    job. Attributes for callers and tests: `cells` {(row, column): CellView}, `region_buttons`
    {part: radio button}, `import_button`, `cancel_button`, `close_button`, `progress`,
    `details` (preset, steps, the estimate), `notice`, `preview` (the chosen cell styled over
    the photo, or the object mask), `mask_button`, `part`, `selected`, and `dead`
    (inkex.gui's "closed").
    """

    name = "picker"

    @classmethod
    def open(cls, backend: PickerBackend, job_id: str, title: str = "CLIPascene",
             initial: Choice | None = None, *, poll: bool = True,
             poll_interval: float = POLL_INTERVAL_S,
             preview: Callable[[bytes], bytes] | None = None,
             photo: bytes | None = None, view_only: bool = False) -> PickerWindow:
        """Show a picker for `job_id` without running a main loop (the caller runs it).

        initial: a (row, column, part) chosen beforehand, e.g. the cell being replaced.
        poll: ask the backend for the job every `poll_interval` seconds; tests that feed
        `apply_status` themselves turn it off (thumbnails are fetched either way).
        preview: turns the chosen cell's SVG into the SVG shown beside the matrix (the strokes
        styled as they will be imported, over the photo); without it the thumbnail is shown.
        photo: the photo's bytes, for the object mask view.
        view_only: a viewer that watches the job without importing (no Import button; it says
        how to import instead), as `viewer` runs it beside Inkscape.
        """
        app = PickerApp(start_loop=False, backend=backend, job_id=job_id, title=title,
                        initial=initial, poll=poll, poll_interval=poll_interval,
                        preview=preview, photo=photo, view_only=view_only)
        return app.window

    # --- set-up (inkex.gui calls load_widgets from Window.init, after connecting signals) -----

    def load_widgets(self):
        options = self.gapp.kwargs
        self.backend: PickerBackend = options["backend"]
        self.job_id: str = options["job_id"]
        self.poll_interval: float = options.get("poll_interval", POLL_INTERVAL_S)
        self.result: Choice | None = None
        self.cells: dict[tuple[int, int], CellView] = {}
        self.region_buttons = {part: self.widget(f"region_{part}") for part in PARTS}
        self.import_button = self.widget("import_button")
        self.cancel_button = self.widget("cancel_button")
        self.close_button = self.widget("close_button")
        self.progress = self.widget("progress")
        self.details = self.widget("details")
        self.notice = self.widget("notice")
        self.grid = self.widget("matrix")
        self.preview = self.widget("preview")
        self.preview_caption = self.widget("preview_caption")
        self.mask_button = self.widget("mask_button")
        self._styler: Callable[[bytes], bytes] | None = options.get("preview")
        self._photo: bytes | None = options.get("photo")
        self.view_only: bool = bool(options.get("view_only"))
        if self.view_only:
            self.import_button.hide()
            self.close_button.set_tooltip_text("Close this window; the job keeps running. "
                                               + HOW_TO_IMPORT + " to see it again and import.")
        self.window.set_title(options.get("title") or "CLIPascene")
        self.widget("heading").set_text(options.get("title") or "CLIPascene")

        row, column, part = options.get("initial") or (None, None, "combined")
        self.part = part if part in PARTS else "combined"
        self.selected: tuple[int, int] | None = None if row is None else (int(row), int(column))
        self._quiet = True  # programmatic widget changes must not run the user handlers
        self.region_buttons[self.part].set_active(True)
        self._quiet = False

        self._layout: tuple[int, tuple[int, ...]] | None = None
        self._split = False
        self._status = "queued"
        self._ready: dict[tuple[int, int], dict] = {}
        self._thumbnails: dict[Choice, GdkPixbuf.Pixbuf] = {}
        self._requested: set[Choice] = set()
        self._job_notices: list[str] = []
        self._outcome = ""
        self._problem = ""
        self._cancelling = False
        self._previews: dict[Choice, GdkPixbuf.Pixbuf] = {}
        self._preset: dict | None = None  # the manifest's: which preset ran, its steps
        self._mask: GdkPixbuf.Pixbuf | None = None
        self._mask_state = "unknown"  # "unknown", "requested", "shown" or the reason it is not

        _add_style(self.window.get_screen())
        self.thumbnail_size, self.preview_size = THUMBNAIL_SIZE, PREVIEW_SIZE
        self._fit_sizes(3)

        # One worker thread does all network I/O: status polls and thumbnail downloads.
        self._requests: queue.Queue = queue.Queue()
        self._streaming = False
        self._worker = threading.Thread(target=self._work, args=(options.get("poll", True),),
                                        name="clipascene-picker", daemon=True)
        self._worker.start()
        # The job's event stream says when to look again (/events); polling is the fallback.
        if options.get("poll", True) and hasattr(self.backend, "events"):
            threading.Thread(target=self._listen, name="clipascene-events", daemon=True).start()

    def pre_exit(self):
        self._requests.put(None)  # the worker's stop signal

    # --- state from the backend (main loop) ---------------------------------------------------

    def apply_status(self, job: dict, matrix: dict, manifest: dict | None = None) -> None:
        """Show a job record (GET /v1/jobs/{id}), its matrix (GET /v1/jobs/{id}/matrix) and, when
        given, its manifest (GET /v1/jobs/{id}/manifest.json): the preset that ran with its
        steps. A cell's counts are the matrix's: the strokes in each part's file."""
        if manifest:
            self._preset = manifest.get("preset") or self._preset
        layout = (int(matrix["rows"]), tuple(int(layer) for layer in matrix["layers"]))
        new_layout = layout != self._layout
        if new_layout:
            self._build_grid(*layout)
        self._status = job.get("status", matrix.get("status", "queued"))
        self._split = bool(matrix.get("split"))
        for part in ("foreground", "background"):
            self.region_buttons[part].set_sensitive(self._split)
        ready = {(cell["row"], cell["column"]): cell for cell in matrix["cells"] if cell.get("ready")}
        for place, cell in ready.items():
            before = self._ready.get(place)
            if before is not None and bool(before.get("draft")) != bool(cell.get("draft")):
                self._forget_images(*place)  # the final cell replaced its draft
        self._ready = ready
        self._job_notices = list(job.get("notices") or [])
        self._outcome = ""
        if self._status == "failed":
            self._outcome = f"The sketch failed: {job.get('error') or 'the backend gave no reason.'}"
        elif self._status == "cancelled":
            self._outcome = "This job was cancelled; the finished cells can still be imported."
        self._problem = ""
        if not self._split and self.part != "combined":
            self.set_part("combined")  # this job has no foreground/background to show
        else:
            self._refresh_cells()
        self.cancel_button.set_sensitive(self._status not in FINAL and not self._cancelling)
        self._show_progress(job, matrix)
        self.details.set_text(_details(job, self._status, job.get("preset") or self._preset))
        self._show_notice()
        if self._split and self._ready and self._mask_state == "unknown":
            self._mask_state = "requested"  # mask.png exists once a cell does
            self._requests.put(("mask",))
        if new_layout:
            self._fit_window()  # once captions and notices take their room

    def _forget_images(self, row: int, column: int) -> None:
        """Drop a cell's thumbnails and previews (every part), so they are fetched again."""
        for store in (self._thumbnails, self._previews):
            for key in [key for key in store if key[:2] == (row, column)]:
                del store[key]
        self._requested -= {request for request in self._requested if request[1:3] == (row, column)}

    def apply_thumbnail(self, row: int, column: int, part: str, png: bytes | GdkPixbuf.Pixbuf) -> None:
        """Keep a cell's thumbnail (PNG bytes or a decoded pixbuf) and show it if it is in view."""
        pixbuf = png if isinstance(png, GdkPixbuf.Pixbuf) else _decode_png(png, self.thumbnail_size)
        self._requested.discard(("thumbnail", row, column, part))
        self._thumbnails[(row, column, part)] = pixbuf
        cell = self.cells.get((row, column))
        if cell is not None and part == self.part:
            cell.image.set_from_pixbuf(pixbuf)

    def _fit_sizes(self, columns: int) -> None:
        """Thumbnails and preview as large as the screen allows with every column, two rows
        and the buttons in view (screen.fit_sizes)."""
        display = self.window.get_display()
        monitor = display.get_primary_monitor() or display.get_monitor(0)
        if monitor is None:
            return
        area = monitor.get_workarea()
        self.thumbnail_size, self.preview_size = fit_sizes(area.width, area.height, columns)
        self.preview.set_size_request(self.preview_size, self.preview_size * 3 // 4)

    def _build_grid(self, rows: int, layers: tuple[int, ...]) -> None:
        if len(layers) != len((self._layout or (0, ()))[1]) and not self._thumbnails:
            self._fit_sizes(len(layers))
        for child in self.grid.get_children():
            self.grid.remove(child)
        self.cells = {}
        self._layout = (rows, layers)
        for column, layer in enumerate(layers):
            header = Gtk.Label(label=fidelity(layer))
            header.set_tooltip_text(f"How closely the strokes follow the photo: {layer} (of 0–11); "
                                    "a low number follows its shapes, a high one only its meaning.")
            self.grid.attach(header, column + 1, 0, 1, 1)
        for row in range(rows):
            header = Gtk.Label(label=simplicity(row))
            header.set_tooltip_text("The full sketch, before any simplification." if row == 0 else
                                    f"Simplified {row} time(s): fewer strokes, same look.")
            header.set_xalign(1.0)
            self.grid.attach(header, 0, row + 1, 1, 1)
            for column in range(len(layers)):
                cell = self._make_cell(row, column)
                self.cells[(row, column)] = cell
                self.grid.attach(cell.button, column + 1, row + 1, 1, 1)
        if self.selected not in self.cells:
            self.selected = None
        self.grid.show_all()

    def _make_cell(self, row: int, column: int) -> CellView:
        image = Gtk.Image()
        image.set_size_request(self.thumbnail_size, self.thumbnail_size)
        image.get_style_context().add_class("clipascene-thumbnail")
        caption = Gtk.Label(label="")
        caption.get_style_context().add_class("dim-label")
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=2)
        box.pack_start(image, True, True, 0)
        box.pack_start(caption, False, False, 0)
        button = Gtk.ToggleButton()
        button.add(box)
        button.get_style_context().add_class("clipascene-cell")
        button.connect("toggled", self._on_cell_toggled, row, column)
        button.connect("button-press-event", self._on_cell_pressed, row, column)
        return CellView(button, image, caption)

    def _fit_window(self) -> None:
        """Grow the window to the grid's natural size (capped by the .ui's max-content size and
        the monitor), moving it so that it stays on screen: it was centred for its empty size."""
        natural = self.window.get_preferred_size()[1]
        width, height = self.window.get_size()
        width, height = max(width, natural.width), max(height, natural.height)
        surface = self.window.get_window()
        if surface is not None:
            area = self.window.get_display().get_monitor_at_window(surface).get_workarea()
            width, height = min(width, area.width), min(height, area.height)
            x, y = self.window.get_position()
            self.window.move(min(max(x, area.x), area.x + area.width - width),
                             min(max(y, area.y), area.y + area.height - height))
        self.window.resize(width, height)

    def _refresh_cells(self) -> None:
        """Captions, thumbnails, highlight and buttons for the current part and readiness."""
        self._quiet = True
        for (row, column), cell in self.cells.items():
            info = self._ready.get((row, column))
            cell.button.set_active((row, column) == self.selected)
            cell.caption.set_text(_caption(info, self.part, self._status))
            thumbnail = self._thumbnails.get((row, column, self.part))
            if thumbnail is not None:
                cell.image.set_from_pixbuf(thumbnail)
            else:
                cell.image.clear()
                if info is not None:
                    self._request_thumbnail(row, column, self.part)
        self._quiet = False
        self._show_selection()

    def _request_thumbnail(self, row: int, column: int, part: str) -> None:
        self._request("thumbnail", row, column, part)

    def _request(self, *request) -> None:
        if request not in self._requested:
            self._requested.add(request)
            self._requests.put(request)

    def apply_preview(self, row: int, column: int, part: str, pixbuf: GdkPixbuf.Pixbuf) -> None:
        """Keep the styled preview of a cell and show it if that cell and part are chosen."""
        self._requested.discard(("preview", row, column, part))
        self._previews[(row, column, part)] = pixbuf
        self._show_preview()

    def apply_mask(self, pixbuf: GdkPixbuf.Pixbuf | None, reason: str = "") -> None:
        """Keep the mask view (None: there is none, for `reason`) and enable its button."""
        self._mask = pixbuf
        self._mask_state = "shown" if pixbuf is not None else reason
        self.mask_button.set_sensitive(pixbuf is not None)
        if pixbuf is None:
            self.mask_button.set_tooltip_text(f"The object mask cannot be shown: {reason}")
        self._show_preview()

    def _show_preview(self) -> None:
        """The preview column: the mask view when its button is down, else the chosen cell
        styled as it will be imported (fetched and drawn off the main loop)."""
        if self.mask_button.get_active() and self._mask is not None:
            self.preview.set_from_pixbuf(self._mask)
            self.preview_caption.set_text("The object (tinted) and the background, as the "
                                          "sketch split them.")
            return
        chosen = (*self.selected, self.part) if self.selected in self._ready else None
        if chosen is None or self._styler is None:
            self.preview.clear()
            self.preview_caption.set_text("Choose a sketch to see it over the photo, styled as "
                                          "it will be imported." if self._styler else "")
            return
        pixbuf = self._previews.get(chosen)
        if pixbuf is None:
            self.preview.clear()
            self.preview_caption.set_text("Drawing the preview…")
            self._request("preview", *chosen)
        else:
            self.preview.set_from_pixbuf(pixbuf)
            self.preview_caption.set_text("As it will be imported: the chosen sketch over the "
                                          "photo (faded here), in the chosen stroke style.")

    def on_mask_toggled(self, _button):
        self._show_preview()

    def _show_progress(self, job: dict, matrix: dict) -> None:
        # The backend's fraction counts training steps over all stages (it names them
        # "fidelity" and "simplicity"); finished cells alone would leave the bar empty for
        # the whole fidelity stage.
        progress = job.get("progress") or {}
        done, total = int(matrix.get("cells_done", 0)), int(matrix.get("cells_total", 0))
        fraction = 1.0 if self._status == "done" else max(
            float(progress.get("fraction") or 0.0) if self._status == "running" else 0.0,
            done / total if total else 0.0)
        self.progress.set_fraction(min(max(fraction, 0.0), 1.0))
        stage = self._status if self._status in FINAL or self._status == "queued" else (
            progress.get("stage") or self._status)
        parts = [STAGES.get(stage, stage.capitalize()), f"{done}/{total} cells"]
        eta = progress.get("eta_s")
        if self._status == "running" and eta is not None:
            parts.append(f"ETA {_duration(eta)}")
        self.progress.set_text("Cancelling…" if self._cancelling else " · ".join(parts))

    def _show_notice(self) -> None:
        lines = [line for line in (self._outcome, self._problem, *self._job_notices) if line]
        # One paragraph, so that the label's two lines are all it takes; all of it in the tooltip.
        self.notice.set_text("  •  ".join(lines))
        self.notice.set_tooltip_text("\n".join(lines) or None)
        self.notice.set_visible(bool(lines))
        style = self.notice.get_style_context()
        if self._status == "failed" or self._problem:
            style.add_class("clipascene-error")
        else:
            style.remove_class("clipascene-error")

    def _show_selection(self) -> None:
        info = self._ready.get(self.selected) if self.selected else None
        self.import_button.set_sensitive(info is not None and not self._cancelling)
        if self.selected is None or self._layout is None:
            text = HOW_TO_IMPORT + "." if self.view_only else "No sketch chosen yet."
        else:
            row, column = self.selected
            text = f"{cell_name(self._layout[1][column], row)}: " + (
                _caption(info, self.part, self._status) if info else "not ready yet")
        self.widget("selection").set_text(text)
        self.widget("selection").set_tooltip_text(HOW_TO_IMPORT if self.view_only else None)
        self._show_preview()

    # --- user actions ------------------------------------------------------------------------

    def select(self, row: int, column: int) -> None:
        """Choose a cell (highlighted); Import becomes sensitive once that cell is ready."""
        if self.cells and (row, column) not in self.cells:
            raise ValueError(f"the matrix has no cell at row {row}, column {column}.")
        self.selected = (row, column)
        if self.mask_button.get_active():  # choosing a sketch shows it, not the mask
            self.mask_button.set_active(False)
        self._refresh_cells()

    def set_part(self, part: str) -> None:
        """Show and choose `part` (combined / foreground / background) as the region switch does."""
        if part not in PARTS:
            raise ValueError(f"{part!r} is not one of {', '.join(PARTS)}.")
        if part != "combined" and not self._split:
            raise ValueError("this job was sketched as one region: it has no foreground/background.")
        if self.part == part:
            return
        self.part = part
        self._quiet = True
        self.region_buttons[part].set_active(True)
        self._quiet = False
        self._refresh_cells()

    def on_region_toggled(self, button):
        if self._quiet or not button.get_active():
            return
        self.set_part(self.get_widget_name(button).removeprefix("region_"))

    def _on_cell_toggled(self, button, row, column):
        if not self._quiet:
            self.select(row, column)  # a second click keeps the cell chosen rather than none

    def _on_cell_pressed(self, _button, event, row, column):
        if event.type == Gdk.EventType._2BUTTON_PRESS and (row, column) in self._ready:
            self.select(row, column)
            self.on_import_clicked()
            return True
        return False

    def on_import_clicked(self, _button=None):
        if self.selected in self._ready and not self.view_only:
            self._finish((*self.selected, self.part))

    def on_close_clicked(self, _button=None):
        self._finish(None)  # the job keeps running in the backend

    def on_cancel_clicked(self, _button=None):
        """Cancel the job in the backend (off the main loop), then close."""
        self._cancelling = True
        self.cancel_button.set_sensitive(False)
        self.import_button.set_sensitive(False)
        self.progress.set_text("Cancelling…")
        threading.Thread(target=self._cancel, name="clipascene-cancel", daemon=True).start()

    def on_key_press(self, _window, event):
        if event.keyval == Gdk.KEY_Escape:
            self._finish(None)
            return True
        return False

    def _finish(self, result: Choice | None) -> None:
        self.result = result
        self.destroy()  # inkex.gui's exit() follows from the window's destroy signal

    def _cancel_failed(self, message: str) -> None:
        self._problem = f"The job could not be cancelled: {message}"
        self._cancelling = False
        self.cancel_button.set_sensitive(self._status not in FINAL)
        self._show_notice()
        self._show_selection()

    # --- the worker thread (network only; results go back through _post) --------------------

    def _post(self, function: Callable, *args) -> None:
        def run_on_main():
            if not self.dead:
                function(*args)
            return False

        GLib.idle_add(run_on_main)

    def _listen(self) -> None:
        """Follow the job's event stream; each event wakes the worker to fetch the job. When
        the stream ends or fails, the worker's polling carries on alone."""
        try:
            for _kind, _data in self.backend.events(self.job_id):
                if self.dead:
                    return
                self._streaming = True
                self._requests.put(("refresh",))
        except Exception:  # no stream (an old backend, a proxy): polling does the work
            logger.debug("event stream ended", exc_info=True)
        finally:
            self._streaming = False

    def _work(self, poll: bool) -> None:
        # Any exception must end in the notice label: a dead worker would freeze the picker.
        next_poll = time.monotonic()
        manifest_cells = 0
        while not self.dead:
            if poll and time.monotonic() >= next_poll:
                try:
                    job = self.backend.job(self.job_id)
                    matrix = self.backend.matrix(self.job_id)
                except Exception as error:  # shown to the user, polling goes on
                    logger.debug("status poll failed", exc_info=True)
                    self._post(self._show_problem, str(error))
                else:
                    manifest = None
                    if int(matrix.get("cells_done") or 0) > manifest_cells:
                        try:  # only for stroke counts and step numbers: no need to announce
                            manifest = self.backend.manifest_json(self.job_id)
                            manifest_cells = len(manifest.get("cells") or [])
                        except Exception:
                            logger.debug("manifest fetch failed", exc_info=True)
                    self._post(self.apply_status, job, matrix, manifest)
                    poll = job.get("status") not in FINAL  # a final job changes no more
                interval = STREAM_POLL_INTERVAL_S if self._streaming else self.poll_interval
                next_poll = time.monotonic() + max(interval, self.poll_interval)
            try:
                request = self._requests.get(timeout=max(next_poll - time.monotonic(), 0.0)
                                             if poll else None)
            except queue.Empty:
                continue
            if request is None:
                return
            if request == ("refresh",):  # an event: fetch the job now
                next_poll = time.monotonic()
                continue
            try:
                self._serve(request)
            except Exception as error:  # shown to the user; the next poll retries
                logger.debug("request %s failed", request, exc_info=True)
                self._post(self._request_failed, request, str(error))

    def _serve(self, request: tuple) -> None:
        """Fetch (and decode or draw) what `request` asks for; on the worker thread."""
        kind, *where = request
        if kind == "thumbnail":
            row, column, part = where
            png = self.backend.cell_png(self.job_id, row, column, part=part, size=self.thumbnail_size)
            self._post(self.apply_thumbnail, row, column, part, _decode_png(png, self.thumbnail_size))
        elif kind == "preview":
            row, column, part = where
            svg = self._styler(self.backend.cell_svg(self.job_id, row, column, part))
            self._post(self.apply_preview, row, column, part, _render_svg(svg, self.preview_size))
        elif kind == "mask":
            self._post(self.apply_mask, _mask_view(self.backend.mask_png(self.job_id), self._photo,
                                                   self.preview_size))

    def _cancel(self) -> None:
        try:
            self.backend.cancel(self.job_id)
        except Exception as error:  # shown to the user, who may Close instead
            self._post(self._cancel_failed, str(error))
        else:
            self._post(self._finish, None)

    def _show_problem(self, message: str) -> None:
        self._problem = message
        self._show_notice()

    def _request_failed(self, request: tuple, message: str) -> None:
        kind, *where = request
        if kind == "mask":  # e.g. a backend that does not offer it: not a problem to announce
            self.apply_mask(None, message)
            return
        self._requested.discard(request)
        self._show_problem(f"The {kind} of cell {tuple(where[:2])} could not be shown: {message}")


class PickerApp(GtkApp):
    """inkex.gui application holding one PickerWindow; options arrive as keyword arguments."""

    app_name = "clipascene"
    ui_dir = os.path.dirname(os.path.abspath(__file__))
    windows = [PickerWindow]

    def __init__(self, *args, **kwargs):
        self.outer_main_level = Gtk.main_level()
        super().__init__(*args, **kwargs)

    def exit(self):
        """Quit the Gtk.main() that this app runs, if it runs one.

        inkex.gui compares GLib.main_depth(), which also counts event dispatch: a window closed
        from a callback with no Gtk.main() running (scripts, tests) would make it call
        Gtk.main_quit() anyway, and GTK prints a critical warning to stderr.
        """
        if Gtk.main_level() > self.outer_main_level:
            Gtk.main_quit()
        return 0


def pick_cell(backend: PickerBackend, job_id: str, title: str = "CLIPascene",
              initial: Choice | None = None, preview: Callable[[bytes], bytes] | None = None,
              photo: bytes | None = None) -> Choice | None:
    """Show the picker for `job_id` until it closes -> the chosen (row, column, part), or None.

    None means Close (the job keeps running) or Cancel job. Raises RuntimeError when there is
    no display to show the window on. `preview` and `photo`: see `PickerWindow.open`.
    """
    if not Gtk.init_check()[0]:
        raise RuntimeError("The CLIPascene picker cannot open a window: no display was found. "
                           "Run it from Inkscape's desktop session.")
    window = PickerWindow.open(backend, job_id, title, initial, preview=preview, photo=photo)
    window.gapp.run()
    return window.result


def process_events(until: Callable[[], bool] | None = None, timeout: float = 2.0) -> bool:
    """Run pending GTK events; with `until`, keep running them (up to `timeout` s) until it is true.

    For tests and scripts that drive a picker without `Gtk.main()`. Returns whether `until`
    became true (always True without one).
    """
    context = GLib.MainContext.default()
    deadline = time.monotonic() + timeout
    while True:
        while context.pending():
            context.iteration(False)
        if until is None or until():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _add_style(screen: Gdk.Screen) -> None:
    """Install the picker's CSS (the selection highlight) once per screen."""
    if screen not in _STYLED_SCREENS:
        provider = Gtk.CssProvider()
        provider.load_from_data(CSS)
        Gtk.StyleContext.add_provider_for_screen(screen, provider, Gtk.STYLE_PROVIDER_PRIORITY_APPLICATION)
        _STYLED_SCREENS[screen] = provider


def _decode_png(data: bytes, size: int = THUMBNAIL_SIZE) -> GdkPixbuf.Pixbuf:
    """PNG bytes -> pixbuf whose longer side is at most `size` px."""
    loader = GdkPixbuf.PixbufLoader.new_with_type("png")
    loader.write(data)
    loader.close()
    return _fit(loader.get_pixbuf(), size, grow=False)


def _fit(pixbuf: GdkPixbuf.Pixbuf, size: int, grow: bool = True) -> GdkPixbuf.Pixbuf:
    """The pixbuf scaled so that its longer side is `size` px (only down unless `grow`)."""
    scale = size / max(pixbuf.get_width(), pixbuf.get_height())
    if scale < 1 or (grow and scale > 1):
        pixbuf = pixbuf.scale_simple(max(1, round(pixbuf.get_width() * scale)),
                                     max(1, round(pixbuf.get_height() * scale)),
                                     GdkPixbuf.InterpType.BILINEAR)
    return pixbuf


def _render_svg(svg: bytes, size: int = PREVIEW_SIZE) -> GdkPixbuf.Pixbuf:
    """An SVG drawn (by librsvg, through GdkPixbuf) with its longer side `size` px."""
    loader = GdkPixbuf.PixbufLoader.new_with_type("svg")

    def fit(_loader, width, height):
        scale = size / max(width, height, 1)
        loader.set_size(max(1, round(width * scale)), max(1, round(height * scale)))

    loader.connect("size-prepared", fit)
    loader.write(svg)
    loader.close()
    return loader.get_pixbuf()


def _mask_view(mask_png: bytes, photo_bytes: bytes | None, size: int = PREVIEW_SIZE) -> GdkPixbuf.Pixbuf:
    """The object mask over the photo (the object tinted), `size` px on its longer side;
    the mask alone when the photo cannot be drawn."""
    mask = _fit(_decode_png(mask_png, size), size)
    width, height = mask.get_width(), mask.get_height()
    base = load_pixbuf(photo_bytes) if photo_bytes else None
    if base is None:
        return mask
    base = base.scale_simple(width, height, GdkPixbuf.InterpType.BILINEAR)
    if base.get_has_alpha():
        base = base.composite_color_simple(width, height, GdkPixbuf.InterpType.NEAREST, 255, 8,
                                           0xFFFFFF, 0xFFFFFF)
    mask_stride, mask_channels = mask.get_rowstride(), mask.get_n_channels()
    base_stride, base_channels = base.get_rowstride(), base.get_n_channels()
    mask_data, base_data = mask.get_pixels(), base.get_pixels()
    out = bytearray(width * height * 3)
    for y in range(height):
        for x in range(width):
            alpha = 0.55 * mask_data[y * mask_stride + x * mask_channels] / 255.0
            offset = y * base_stride + x * base_channels
            for channel in range(3):
                out[(y * width + x) * 3 + channel] = round(
                    base_data[offset + channel] * (1 - alpha) + MASK_TINT[channel] * alpha)
    return GdkPixbuf.Pixbuf.new_from_bytes(GLib.Bytes.new(bytes(out)), GdkPixbuf.Colorspace.RGB,
                                           False, 8, width, height, width * 3)


def _details(job: dict, status: str, preset: dict | None = None) -> str:
    """The preset and its steps (`preset`: the job's or the manifest's {"requested", "ran",
    "steps"}; else the job's parameters), the step count so far, and on a CPU an estimate of
    the time left."""
    params = job.get("params") or {}
    progress = job.get("progress") or {}
    parts = []
    if preset and preset.get("ran"):
        steps = preset.get("steps") or {}
        fidelity = sorted({int(count) for region in (steps.get("fidelity") or {}).values()
                           for count in region.values()})
        seeds = len(steps.get("seeds") or []) or 1
        described = [f"{fidelity[0]}{f'–{fidelity[-1]}' if len(fidelity) > 1 else ''} steps per "
                     "fidelity sketch" if fidelity else "",
                     f"{steps['row_steps']} per simplicity row" if steps.get("row_steps") else "",
                     f"{seeds} seeds each" if seeds > 1 else ""]
        asked = preset.get("requested")
        name = preset["ran"] + (f", as {asked} chose" if asked and asked != preset["ran"] else "")
        parts.append(f"Preset {name} (" + ", ".join(item for item in described if item) + ")")
    elif params.get("preset"):
        steps = [f"{params['iterations']} steps per fidelity sketch" if params.get("iterations") else "",
                 f"{params['row_steps']} per simplicity row" if params.get("row_steps") else ""]
        steps = ", ".join(step for step in steps if step)
        parts.append(f"Preset {params['preset']}" + (f" ({steps})" if steps else ""))
    if progress.get("steps_total"):
        parts.append(f"step {int(progress.get('steps_done') or 0):,} of {int(progress['steps_total']):,}")
    device = job.get("device") or ""
    if device:
        parts.append(f"on {'the CPU' if device.startswith('cpu') else device}")
    text = " · ".join(parts)
    eta = progress.get("eta_s")
    if device.startswith("cpu") and status not in FINAL and eta is not None and eta > 60:
        drafted = 0 < int(params.get("iterations") or 0) <= DRAFT["iterations"]
        text += (f"\nAbout {_duration(eta)} more on this computer. "
                 f"{CPU_ADVICE_DRAFTED if drafted else CPU_ADVICE}")
    return text


def _caption(info: dict | None, part: str, status: str) -> str:
    """A cell's caption: its stroke count in `part` once ready, else why it is empty."""
    if info is None:
        return {"queued": "waiting", "running": "sketching…"}.get(status, "not sketched")
    strokes = info.get("strokes") or {}
    count = sum(strokes.values()) if part == "combined" else strokes.get(part)
    text = "ready" if count is None else f"{count} strokes"
    return f"draft · {text}" if info.get("draft") else text


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
