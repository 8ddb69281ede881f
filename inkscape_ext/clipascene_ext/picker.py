"""The matrix picker: a GTK window where a job's sketch matrix fills in live and the user picks a cell.

Columns are CLIP layers (fidelity), rows are simplicity levels (row 0 is the fidelity sketch
itself). Built on `inkex.gui` (GtkApp + Window with `picker.ui`), whose API is the same in
Inkscape 1.2's bundled inkex and in inkex 1.4. This is the view only: what it shows comes
from `feed` (the job's state and the network threads, which post to the GTK main loop through
`GLib.idle_add`), its words from `words` and its pictures from `thumbnails`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
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

from .feed import POLL_INTERVAL_S, Chosen, Feed, MatrixState
from .grid import CellView, MatrixGrid, add_style, fit_sizes_to_screen, fit_window, process_events
from .preview import PreviewColumn
from .screen import PREVIEW_MAX, THUMBNAIL_MAX
from .thumbnails import MASK_TINT, decode_png
from .words import FINAL, HOW_TO_IMPORT, caption, cell_name, details, outcome, progress_text

PARTS = ("combined", "foreground", "background")
THUMBNAIL_SIZE = THUMBNAIL_MAX  # px, the longer side of a cell's thumbnail (less on small screens)
PREVIEW_SIZE = PREVIEW_MAX  # px, the longer side of the styled preview and the mask view
__all__ = ["MASK_TINT", "Chosen", "PickerWindow", "pick_cell", "process_events"]
Choice = tuple[int, int, str]


class PickerBackend(Protocol):
    """What the picker needs of `client.Backend`; tests pass a fake with the same methods
    (`events`, the job's event stream, is optional: without it the picker polls)."""

    def job(self, job_id: str) -> dict: ...
    def matrix(self, job_id: str) -> dict: ...
    def cell_png(self, job_id: str, row: int, column: int, part: str = "combined",
                 size: int = 160) -> bytes: ...
    def cell_svg(self, job_id: str, row: int, column: int, part: str = "combined") -> bytes: ...
    def mask_png(self, job_id: str) -> bytes: ...
    def cancel(self, job_id: str) -> dict: ...


class PickerWindow(PreviewColumn, Window):
    """The picker window of `picker.ui`; open one with `PickerWindow.open(...)` (inkex.gui
    constructs windows from their GtkApp, so the options travel as the app's keyword arguments).

    After it closes, `result` is the chosen `feed.Chosen` (row, column, part, layer, draft),
    or None for Close and Cancel job. Attributes for callers and tests: `cells` {(row, column):
    CellView}, `region_buttons` {part: radio button}, `import_button`, `cancel_button`,
    `close_button`, `progress`, `details` (preset, steps, the estimate), `notice`, `preview`
    (the chosen cell styled over the photo, or the object mask), `mask_button`, `part`,
    `selected`, `state` (feed.MatrixState), `feed` and `dead` (inkex.gui's "closed").
    """

    name = "picker"

    @classmethod
    def open(cls, backend: PickerBackend, job_id: str, title: str = "CLIPascene",
             initial: Choice | None = None, *, poll: bool = True,
             poll_interval: float = POLL_INTERVAL_S,
             preview: Callable[[bytes], bytes] | None = None,
             photo: bytes | None = None, view_only: bool = False,
             estimate: str = "") -> PickerWindow:
        """Show a picker for `job_id` without running a main loop (the caller runs it).

        initial: a (row, column, part) chosen beforehand, e.g. the cell being replaced.
        poll: follow the job (its event stream, else a poll every `poll_interval` s); tests
        that feed `apply_status` and `apply_event` themselves turn it off (thumbnails are
        fetched either way).
        preview: turns the chosen cell's SVG into the SVG shown beside the matrix (the strokes
        styled as they will be imported, over the photo); without it the thumbnail is shown.
        photo: the photo's bytes, for the object mask view.
        view_only: a viewer that watches the job without importing (no Import button; it says
        how to import instead), as `viewer` runs it beside Inkscape.
        estimate: what the submission said about the time it takes (shown under the title).
        """
        app = PickerApp(start_loop=False, backend=backend, job_id=job_id, title=title,
                        initial=initial, poll=poll, poll_interval=poll_interval,
                        preview=preview, photo=photo, view_only=view_only, estimate=estimate)
        return app.window

    # --- set-up (inkex.gui calls load_widgets from Window.init, after connecting signals) -----

    def load_widgets(self):
        options = self.gapp.kwargs
        self.backend: PickerBackend = options["backend"]
        self.job_id: str = options["job_id"]
        self.result: Chosen | None = None
        self.region_buttons = {part: self.widget(f"region_{part}") for part in PARTS}
        self.import_button = self.widget("import_button")
        self.cancel_button = self.widget("cancel_button")
        self.close_button = self.widget("close_button")
        self.progress = self.widget("progress")
        self.details = self.widget("details")
        self.notice = self.widget("notice")
        self.grid = self.widget("matrix")
        self.matrix = MatrixGrid(self.grid, self._on_cell_toggled, self._on_cell_pressed)
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
        if options.get("estimate"):
            self.widget("subheading").set_text(options["estimate"])
        self.window.set_title(options.get("title") or "CLIPascene")
        self.widget("heading").set_text(options.get("title") or "CLIPascene")

        row, column, part = options.get("initial") or (None, None, "combined")
        self.part = part if part in PARTS else "combined"
        self.selected: tuple[int, int] | None = None if row is None else (int(row), int(column))
        self._quiet = True  # programmatic widget changes must not run the user handlers
        self.region_buttons[self.part].set_active(True)
        self._quiet = False

        self.state = MatrixState()
        self._thumbnails: dict[Choice, GdkPixbuf.Pixbuf] = {}
        self._requested: set[tuple] = set()
        self._problem = ""
        self._cancelling = False
        self._init_preview()

        add_style(self.window.get_screen())
        self.thumbnail_size, self.preview_size = THUMBNAIL_SIZE, PREVIEW_SIZE
        self._fit_sizes(3)
        self.feed = Feed(self.backend, self.job_id, self, self._post, follow=options.get("poll", True),
                         poll_interval=options.get("poll_interval", POLL_INTERVAL_S))
        self.feed.start()

    def pre_exit(self):
        self.feed.stop()

    def _post(self, function: Callable, *args) -> None:
        """Run `function(*args)` on the main loop, unless the window is closed by then."""
        def run_on_main():
            if not self.dead:
                function(*args)
            return False

        GLib.idle_add(run_on_main)

    # --- state from the backend (main loop) ---------------------------------------------------

    def apply_status(self, job: dict, matrix: dict) -> None:
        """Show a job record (GET /v1/jobs/{id}) and its matrix (GET /v1/jobs/{id}/matrix):
        the preset that runs with its steps is the job's `preset`, a cell's counts are the
        matrix's (the strokes in each part's file)."""
        self._forget_images(self.state.apply_snapshot(job, matrix))
        new_layout = self.state.layout != self.matrix.layout
        if new_layout:
            self._build_grid(*self.state.layout)
        self._problem = ""
        self._show_job(cells=True)
        if new_layout:
            fit_window(self.window)  # once captions and notices take their room

    def apply_event(self, kind: str, data: dict) -> None:
        """Show the payload of one of the job's server-sent events: `progress` (the job's
        progress and status) or `cell` (a finished cell, or its draft, with its stroke counts)."""
        if kind == "progress":
            before = self.state.status
            self.state.apply_progress(data)
            self._show_job(cells=self.state.status != before)
        elif kind == "cell":
            self._forget_images(self.state.apply_cell(data))
            self._show_job(cells=True)

    def _show_job(self, cells: bool) -> None:
        """Everything that shows the job's state; the cells too when `cells`."""
        state = self.state
        for part in ("foreground", "background"):
            self.region_buttons[part].set_sensitive(state.split)
        if cells:
            if not state.split and self.part != "combined":
                self.set_part("combined")  # this job has no foreground/background to show
            else:
                self._refresh_cells()
        self.cancel_button.set_sensitive(state.status not in FINAL and not self._cancelling)
        fraction, text = progress_text(state.status, state.progress)
        self.progress.set_fraction(fraction)
        self.progress.set_text("Cancelling…" if self._cancelling else text)
        self.details.set_text(details(state.job, state.status))
        self._show_notice()
        self._request_mask()

    def _forget_images(self, places) -> None:
        """Drop the thumbnails and previews of these cells (every part): they are fetched again."""
        for store in (self._thumbnails, self._previews):
            for key in [key for key in store if key[:2] in places]:
                del store[key]
        self._requested -= {request for request in self._requested if tuple(request[1:3]) in places}

    def apply_thumbnail(self, row: int, column: int, part: str, png: bytes | GdkPixbuf.Pixbuf) -> None:
        """Keep a cell's thumbnail (PNG bytes or a decoded pixbuf) and show it if it is in view."""
        pixbuf = png if isinstance(png, GdkPixbuf.Pixbuf) else decode_png(png, self.thumbnail_size)
        self._requested.discard(("thumbnail", row, column, part))
        self._thumbnails[(row, column, part)] = pixbuf
        cell = self.cells.get((row, column))
        if cell is not None and part == self.part:
            cell.image.set_from_pixbuf(pixbuf)

    def _fit_sizes(self, columns: int) -> None:
        sizes = fit_sizes_to_screen(self.window, columns)
        if sizes is not None:
            self.thumbnail_size, self.preview_size = sizes
            self.preview.set_size_request(self.preview_size, self.preview_size * 3 // 4)

    def _build_grid(self, rows: int, layers: tuple[int, ...]) -> None:
        if len(layers) != len((self.matrix.layout or (0, ()))[1]) and not self._thumbnails:
            self._fit_sizes(len(layers))
        self.matrix.build(rows, layers, self.thumbnail_size)
        if self.selected not in self.cells:
            self.selected = None

    @property
    def cells(self) -> dict[tuple[int, int], CellView]:
        return self.matrix.cells

    def _refresh_cells(self) -> None:
        """Captions, thumbnails, highlight and buttons for the current part and readiness."""
        self._quiet = True
        for (row, column), cell in self.cells.items():
            info = self.state.ready.get((row, column))
            cell.button.set_active((row, column) == self.selected)
            cell.caption.set_text(caption(info, self.part, self.state.status))
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
        size = self.thumbnail_size
        self._fetch(("thumbnail", row, column, part),
                    lambda: decode_png(self.backend.cell_png(self.job_id, row, column, part=part,
                                                             size=size), size),
                    lambda pixbuf: self.apply_thumbnail(row, column, part, pixbuf))

    def _fetch(self, request: tuple, work: Callable, done: Callable) -> None:
        """Have the feed run `work` off the main loop, once until it is answered."""
        if request not in self._requested:
            self._requested.add(request)
            self.feed.request(work, done, lambda message: self._request_failed(request, message))

    def _show_notice(self) -> None:
        lines = [line for line in (outcome(self.state.job), self._problem,
                                   *(self.state.job.get("notices") or [])) if line]
        # One paragraph, so that the label's two lines are all it takes; all of it in the tooltip.
        self.notice.set_text("  •  ".join(lines))
        self.notice.set_tooltip_text("\n".join(lines) or None)
        self.notice.set_visible(bool(lines))
        style = self.notice.get_style_context()
        if self.state.status == "failed" or self._problem:
            style.add_class("clipascene-error")
        else:
            style.remove_class("clipascene-error")

    def _show_selection(self) -> None:
        info = self.state.ready.get(self.selected) if self.selected else None
        self.import_button.set_sensitive(info is not None and not self._cancelling)
        if self.selected is None or self.matrix.layout is None:
            text = HOW_TO_IMPORT + "." if self.view_only else "No sketch chosen yet."
        else:
            row, column = self.selected
            text = f"{cell_name(self.matrix.layout[1][column], row)}: " + (
                caption(info, self.part, self.state.status) if info else "not ready yet")
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
        if part != "combined" and not self.state.split:
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
        if event.type == Gdk.EventType._2BUTTON_PRESS and (row, column) in self.state.ready:
            self.select(row, column)
            self.on_import_clicked()
            return True
        return False

    def on_import_clicked(self, _button=None):
        if self.selected in self.state.ready and not self.view_only:
            self._finish(self.state.chosen(*self.selected, self.part))

    def on_close_clicked(self, _button=None):
        self._finish(None)  # the job keeps running in the backend

    def on_cancel_clicked(self, _button=None):
        """Cancel the job in the backend (off the main loop), then close."""
        self._cancelling = True
        self.cancel_button.set_sensitive(False)
        self.import_button.set_sensitive(False)
        self.progress.set_text("Cancelling…")
        self.feed.cancel(lambda: self._finish(None), self._cancel_failed)

    def on_key_press(self, _window, event):
        if event.keyval == Gdk.KEY_Escape:
            self._finish(None)
            return True
        return False

    def _finish(self, result: Chosen | None) -> None:
        self.result = result
        self.destroy()  # inkex.gui's exit() follows from the window's destroy signal

    def _cancel_failed(self, message: str) -> None:
        self._problem = f"The job could not be cancelled: {message}"
        self._cancelling = False
        self.cancel_button.set_sensitive(self.state.status not in FINAL)
        self._show_notice()
        self._show_selection()

    def show_problem(self, message: str) -> None:
        self._problem = message
        self._show_notice()

    def _request_failed(self, request: tuple, message: str) -> None:
        kind, *where = request
        if kind == "mask":  # e.g. a backend that does not offer it: not a problem to announce
            self.apply_mask(None, message)
            return
        self._requested.discard(request)
        self.show_problem(f"The {kind} of cell {tuple(where[:2])} could not be shown: {message}")


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
              photo: bytes | None = None) -> Chosen | None:
    """Show the picker for `job_id` until it closes -> the chosen cell (row, column, part,
    its layer and whether it was a draft), or None.

    None means Close (the job keeps running) or Cancel job. Raises RuntimeError when there is
    no display to show the window on. `preview` and `photo`: see `PickerWindow.open`.
    """
    if not Gtk.init_check()[0]:
        raise RuntimeError("The CLIPascene picker cannot open a window: no display was found. "
                           "Run it from Inkscape's desktop session.")
    window = PickerWindow.open(backend, job_id, title, initial, preview=preview, photo=photo)
    window.gapp.run()
    return window.result
