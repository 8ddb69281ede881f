"""The photo's pixels, decoded with GdkPixbuf (Inkscape's Python has GTK, not an imaging library).

Only needed for colours sampled from the photo and for the picker's previews. The pixels are in
the frame the backend's cells use: EXIF orientation applied, transparency on white.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import inkex


@dataclass
class Pixels:
    """8-bit pixels: `data` rows of `stride` bytes, `channels` (3 or 4, RGB[A]) per pixel."""

    width: int
    height: int
    channels: int
    stride: int
    data: bytes

    def rgb(self, x: float, y: float) -> tuple[int, int, int]:
        """The colour of the pixel under (x, y) in bitmap px (clamped into the bitmap), with
        transparency composited on white."""
        column = min(max(int(x), 0), self.width - 1)
        row = min(max(int(y), 0), self.height - 1)
        offset = row * self.stride + column * self.channels
        red, green, blue = self.data[offset:offset + 3]
        if self.channels == 4:
            alpha = self.data[offset + 3] / 255.0
            red, green, blue = (round(value * alpha + 255 * (1 - alpha)) for value in (red, green, blue))
        return red, green, blue


def _gdkpixbuf():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Debian's gi warns on import; stderr is a dialog in Inkscape
        try:
            import gi

            gi.require_version("GdkPixbuf", "2.0")
            from gi.repository import GdkPixbuf
        except (ImportError, ValueError):
            return None
    return GdkPixbuf


def load_pixbuf(data: bytes):
    """A GdkPixbuf of the image bytes, upright as its EXIF orientation says; None when this
    Python has no GdkPixbuf or it cannot read the format."""
    GdkPixbuf = _gdkpixbuf()
    if GdkPixbuf is None:
        return None
    loader = GdkPixbuf.PixbufLoader()
    try:
        loader.write(data)
        loader.close()
    except Exception:  # GLib.Error: unknown or damaged format
        return None
    pixbuf = loader.get_pixbuf()
    if pixbuf is None:
        return None
    return pixbuf.apply_embedded_orientation() or pixbuf


def decode(data: bytes, what: str = "the photo") -> Pixels:
    """The pixels of image bytes; AbortExtension saying why when they cannot be decoded."""
    pixbuf = load_pixbuf(data)
    if pixbuf is None:
        raise inkex.AbortExtension(
            f"Cannot decode {what} to sample its colours (Inkscape's Python reads PNG and JPEG "
            "through GdkPixbuf): choose a stroke colour instead, or convert the photo to PNG.")
    return Pixels(pixbuf.get_width(), pixbuf.get_height(), pixbuf.get_n_channels(),
                  pixbuf.get_rowstride(), bytes(pixbuf.get_pixels()))
