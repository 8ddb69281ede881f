"""The picker's preview column: the chosen cell styled as it will be imported, over the photo,
or the object mask (a mixin of `picker.PickerWindow`, which has the widgets and the feed).

Both pictures are fetched and drawn off the main loop (the feed's request thread) and kept,
so that switching back and forth draws nothing twice.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():  # Debian's PyGObject warns on import; stderr is a dialog in Inkscape
    warnings.simplefilter("ignore")
    import gi

    gi.require_version("GdkPixbuf", "2.0")
    from gi.repository import GdkPixbuf

from .thumbnails import mask_view, render_svg


class PreviewColumn:
    """Uses the window's `preview`, `preview_caption`, `mask_button`, `selected`, `part`,
    `state`, `backend`, `job_id`, `preview_size`, `_styler`, `_photo`, `_requested` and
    `_fetch`."""

    def _init_preview(self) -> None:
        self._previews: dict[tuple[int, int, str], GdkPixbuf.Pixbuf] = {}
        self._mask: GdkPixbuf.Pixbuf | None = None
        self._mask_state = "unknown"  # "unknown", "requested", "shown" or the reason it is not

    def _request_mask(self) -> None:
        """Fetch the mask view once the job is split and has a cell (mask.png exists then)."""
        if self.state.split and self.state.ready and self._mask_state == "unknown":
            self._mask_state = "requested"
            photo, size = self._photo, self.preview_size
            self._fetch(("mask",), lambda: mask_view(self.backend.mask_png(self.job_id), photo, size),
                        self.apply_mask)

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
        chosen = (*self.selected, self.part) if self.selected in self.state.ready else None
        if chosen is None or self._styler is None:
            self.preview.clear()
            self.preview_caption.set_text("Choose a sketch to see it over the photo, styled as "
                                          "it will be imported." if self._styler else "")
            return
        pixbuf = self._previews.get(chosen)
        if pixbuf is None:
            self.preview.clear()
            self.preview_caption.set_text("Drawing the preview…")
            styler, size = self._styler, self.preview_size
            self._fetch(("preview", *chosen),
                        lambda: render_svg(styler(self.backend.cell_svg(self.job_id, *chosen)), size),
                        lambda drawn: self.apply_preview(*chosen, drawn))
        else:
            self.preview.set_from_pixbuf(pixbuf)
            self.preview_caption.set_text("As it will be imported: the chosen sketch over the "
                                          "photo (faded here), in the chosen stroke style.")

    def on_mask_toggled(self, _button):
        self._show_preview()
