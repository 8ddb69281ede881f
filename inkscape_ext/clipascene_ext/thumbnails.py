"""The pictures the picker shows, as GdkPixbufs: thumbnails decoded, cells drawn, the mask view.

Called on the feed's request thread (decoding and drawing stay off the GTK main loop).
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():  # Debian's PyGObject warns on import; stderr is a dialog in Inkscape
    warnings.simplefilter("ignore")
    import gi

    gi.require_version("GdkPixbuf", "2.0")
    from gi.repository import GdkPixbuf, GLib

from .photo import load_pixbuf
from .screen import PREVIEW_MAX, THUMBNAIL_MAX

MASK_TINT = (230, 40, 90)  # the colour the foreground object is tinted with in the mask view


def decode_png(data: bytes, size: int = THUMBNAIL_MAX) -> GdkPixbuf.Pixbuf:
    """PNG bytes -> pixbuf whose longer side is at most `size` px."""
    loader = GdkPixbuf.PixbufLoader.new_with_type("png")
    loader.write(data)
    loader.close()
    return fit(loader.get_pixbuf(), size, grow=False)


def fit(pixbuf: GdkPixbuf.Pixbuf, size: int, grow: bool = True) -> GdkPixbuf.Pixbuf:
    """The pixbuf scaled so that its longer side is `size` px (only down unless `grow`)."""
    scale = size / max(pixbuf.get_width(), pixbuf.get_height())
    if scale < 1 or (grow and scale > 1):
        pixbuf = pixbuf.scale_simple(max(1, round(pixbuf.get_width() * scale)),
                                     max(1, round(pixbuf.get_height() * scale)),
                                     GdkPixbuf.InterpType.BILINEAR)
    return pixbuf


def render_svg(svg: bytes, size: int = PREVIEW_MAX) -> GdkPixbuf.Pixbuf:
    """An SVG drawn (by librsvg, through GdkPixbuf) with its longer side `size` px."""
    loader = GdkPixbuf.PixbufLoader.new_with_type("svg")

    def scaled(_loader, width, height):
        scale = size / max(width, height, 1)
        loader.set_size(max(1, round(width * scale)), max(1, round(height * scale)))

    loader.connect("size-prepared", scaled)
    loader.write(svg)
    loader.close()
    return loader.get_pixbuf()


def mask_view(mask_png: bytes, photo_bytes: bytes | None, size: int = PREVIEW_MAX) -> GdkPixbuf.Pixbuf:
    """The object mask over the photo (the object tinted), `size` px on its longer side;
    the mask alone when the photo cannot be drawn."""
    mask = fit(decode_png(mask_png, size), size)
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
