"""The picker's matrix of cells and its window's size: GTK widgets, no state of the job.

`MatrixGrid` fills `picker.ui`'s GtkGrid with a header per fidelity column and simplicity
row and a toggle button (thumbnail and caption) per cell; `fit_sizes_to_screen` and
`fit_window` size the picker for the screen it is on (screen.fit_sizes has the numbers);
`process_events` runs GTK's pending events for scripts and tests without a main loop.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

with warnings.catch_warnings():  # Debian's PyGObject warns on import; stderr is a dialog in Inkscape
    warnings.simplefilter("ignore")
    import gi

    gi.require_version("Gtk", "3.0")
    gi.require_version("Gdk", "3.0")
    from gi.repository import Gdk, GLib, Gtk

from .screen import fit_sizes
from .words import fidelity, simplicity

CSS = b"""
button.clipascene-cell { padding: 4px; }
button.clipascene-cell:checked { box-shadow: inset 0 0 0 3px @theme_selected_bg_color; }
.clipascene-thumbnail { background-color: #ffffff; }
label.clipascene-error { color: @error_color; }
"""
_STYLED_SCREENS: dict[Gdk.Screen, Gtk.CssProvider] = {}


@dataclass
class CellView:
    """The widgets of one matrix cell: a toggle button holding the thumbnail and a caption."""

    button: Gtk.ToggleButton
    image: Gtk.Image
    caption: Gtk.Label

    @property
    def has_thumbnail(self) -> bool:
        return self.image.get_storage_type() == Gtk.ImageType.PIXBUF


class MatrixGrid:
    """The cells of `grid`, {(row, column): CellView}; `toggled(button, row, column)` and
    `pressed(button, event, row, column)` are connected to each cell's button."""

    def __init__(self, grid: Gtk.Grid, toggled: Callable, pressed: Callable):
        self.grid = grid
        self.cells: dict[tuple[int, int], CellView] = {}
        self.layout: tuple[int, tuple[int, ...]] | None = None
        self._toggled, self._pressed = toggled, pressed

    def build(self, rows: int, layers: tuple[int, ...], thumbnail_size: int) -> None:
        for child in self.grid.get_children():
            self.grid.remove(child)
        self.cells = {}
        self.layout = (rows, layers)
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
                cell = self._make_cell(row, column, thumbnail_size)
                self.cells[(row, column)] = cell
                self.grid.attach(cell.button, column + 1, row + 1, 1, 1)
        self.grid.show_all()

    def _make_cell(self, row: int, column: int, thumbnail_size: int) -> CellView:
        image = Gtk.Image()
        image.set_size_request(thumbnail_size, thumbnail_size)
        image.get_style_context().add_class("clipascene-thumbnail")
        label = Gtk.Label(label="")
        label.get_style_context().add_class("dim-label")
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=2)
        box.pack_start(image, True, True, 0)
        box.pack_start(label, False, False, 0)
        button = Gtk.ToggleButton()
        button.add(box)
        button.get_style_context().add_class("clipascene-cell")
        button.connect("toggled", self._toggled, row, column)
        button.connect("button-press-event", self._pressed, row, column)
        return CellView(button, image, label)


def fit_sizes_to_screen(window: Gtk.Window, columns: int) -> tuple[int, int] | None:
    """(thumbnail, preview) sizes as large as the window's screen allows with every column,
    two rows and the buttons in view; None when there is no monitor to ask."""
    display = window.get_display()
    monitor = display.get_primary_monitor() or display.get_monitor(0)
    if monitor is None:
        return None
    area = monitor.get_workarea()
    return fit_sizes(area.width, area.height, columns)


def fit_window(window: Gtk.Window) -> None:
    """Grow the window to its natural size (capped by the .ui's max-content size and the
    monitor), moving it so that it stays on screen: it was centred for its empty size."""
    natural = window.get_preferred_size()[1]
    width, height = window.get_size()
    width, height = max(width, natural.width), max(height, natural.height)
    surface = window.get_window()
    if surface is not None:
        area = window.get_display().get_monitor_at_window(surface).get_workarea()
        width, height = min(width, area.width), min(height, area.height)
        x, y = window.get_position()
        window.move(min(max(x, area.x), area.x + area.width - width),
                    min(max(y, area.y), area.y + area.height - height))
    window.resize(width, height)


def add_style(screen: Gdk.Screen) -> None:
    """Install the picker's CSS (the selection highlight) once per screen."""
    if screen not in _STYLED_SCREENS:
        provider = Gtk.CssProvider()
        provider.load_from_data(CSS)
        Gtk.StyleContext.add_provider_for_screen(screen, provider, Gtk.STYLE_PROVIDER_PRIORITY_APPLICATION)
        _STYLED_SCREENS[screen] = provider


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
