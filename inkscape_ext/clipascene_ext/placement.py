"""Where the bitmap's pixels are in the document: the map from the backend's frame to Inkscape's.

Three frames meet here:

* **bitmap px**: pixels of the image file, x right, y down, origin at the bitmap's top-left
  corner, 0..W by 0..H. The backend's cell SVGs use this frame (their viewBox is 0 0 W H).
* **image user units**: the user space the `<image>` element's x/y/width/height are given in,
  i.e. after its own `transform` attribute and those of its ancestors are undone.
* **document root user units**: the user space of the root `<svg>`'s children, where a new
  top-level layer lives. The root's own viewBox-to-page scaling is *not* part of this frame:
  the layer sits inside the root and shares it.

Pure geometry over inkex 1.2/1.4 `Transform`s; transforms are read from the raw attributes
(full precision) rather than from inkex's re-serialised properties.
"""

from __future__ import annotations

import re

import inkex
from inkex.units import convert_unit, parse_unit

_SVG_SVG = "{http://www.w3.org/2000/svg}svg"
_ALIGNS = {"none", "xMinYMin", "xMidYMin", "xMaxYMin", "xMinYMid", "xMidYMid", "xMaxYMid",
           "xMinYMax", "xMidYMax", "xMaxYMax"}


def pixel_to_document(image_element, pixel_width: int, pixel_height: int) -> inkex.Transform:
    """The affine map from bitmap px (0..W, 0..H) to document root user units.

    It composes the image's viewport (x, y, width, height, preserveAspectRatio) with the
    image's own `transform` and every ancestor's up to, not including, the root `<svg>`
    (nested `<svg>` viewports included). Put it on a layer that is a child of the root and
    the layer's content, drawn in bitmap px, lands exactly on the displayed bitmap.
    """
    return user_to_document(image_element) @ pixel_to_image(image_element, pixel_width, pixel_height)


def user_to_document(element) -> inkex.Transform:
    """The map from `element`'s user units (before its own transform) to document root user
    units: its `transform` and its ancestors', the root's own viewBox scaling left out."""
    total = inkex.Transform()
    node = element
    while node.getparent() is not None:
        total = _own_transform(node) @ total
        node = node.getparent()
    return total


def pixel_to_image(image_element, pixel_width: int, pixel_height: int) -> inkex.Transform:
    """The map from bitmap px to the image element's user units: the image box with its
    preserveAspectRatio (default xMidYMid meet), as SVG and Inkscape draw it."""
    x, y, width, height = image_box(image_element, pixel_width, pixel_height)
    return viewbox_transform((0.0, 0.0, float(pixel_width), float(pixel_height)), (x, y, width, height),
                             image_element.get("preserveAspectRatio"))


def visible_pixel_rect(image_element, pixel_width: int, pixel_height: int
                       ) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) in bitmap px: the part of the bitmap the image box shows.

    The whole bitmap (0, 0, W, H) for `meet` and `none`; a centred (or aligned) window for
    `slice`, which crops the bitmap to the box.
    """
    x, y, width, height = image_box(image_element, pixel_width, pixel_height)
    to_pixels = -pixel_to_image(image_element, pixel_width, pixel_height)
    first = to_pixels.apply_to_point((x, y))
    second = to_pixels.apply_to_point((x + width, y + height))
    return (max(0.0, min(first.x, second.x)), max(0.0, min(first.y, second.y)),
            min(float(pixel_width), max(first.x, second.x)),
            min(float(pixel_height), max(first.y, second.y)))


def image_box(image_element, pixel_width: int, pixel_height: int) -> tuple[float, float, float, float]:
    """(x, y, width, height) of the image element in its user units.

    Units (mm, pt…) are converted to user units and percentages taken of the nearest viewport.
    A missing width or height (SVG 2 `auto`) follows the bitmap: both missing gives the
    bitmap's own size in px, one missing keeps the bitmap's aspect ratio.
    """
    if pixel_width <= 0 or pixel_height <= 0:
        raise ValueError(f"bitmap size must be positive, not {pixel_width} x {pixel_height}")
    view_width, view_height = _viewport_size(image_element)
    x = _length(image_element.get("x"), view_width) or 0.0
    y = _length(image_element.get("y"), view_height) or 0.0
    width = _length(image_element.get("width"), view_width)
    height = _length(image_element.get("height"), view_height)
    if width is None and height is None:
        width, height = float(pixel_width), float(pixel_height)
    elif width is None:
        width = height * pixel_width / pixel_height
    elif height is None:
        height = width * pixel_height / pixel_width
    if width <= 0 or height <= 0:
        raise inkex.AbortExtension(
            "The selected image has no visible size (its width or height is 0): give it a size "
            "and try again.")
    return x, y, width, height


def viewbox_transform(viewbox, viewport, preserve_aspect_ratio: str | None) -> inkex.Transform:
    """The SVG viewBox-to-viewport map: `viewbox` and `viewport` are (x, y, width, height), the
    first in the inner frame, the second in the outer; `preserve_aspect_ratio` as in SVG
    ("[defer] <align> [meet|slice]", default "xMidYMid meet")."""
    box_x, box_y, box_width, box_height = viewbox
    x, y, width, height = viewport
    align, mode = parse_preserve_aspect_ratio(preserve_aspect_ratio)
    scale_x, scale_y = width / box_width, height / box_height
    if align != "none":
        scale_x = scale_y = min(scale_x, scale_y) if mode == "meet" else max(scale_x, scale_y)
    offset_x, offset_y = x - box_x * scale_x, y - box_y * scale_y
    if align != "none":
        slack_x, slack_y = width - box_width * scale_x, height - box_height * scale_y
        offset_x += slack_x * {"Min": 0.0, "Mid": 0.5, "Max": 1.0}[align[1:4]]
        offset_y += slack_y * {"Min": 0.0, "Mid": 0.5, "Max": 1.0}[align[5:8]]
    return inkex.Transform(((scale_x, 0.0, offset_x), (0.0, scale_y, offset_y)))


def parse_preserve_aspect_ratio(value: str | None) -> tuple[str, str]:
    """(align, 'meet' | 'slice') from a preserveAspectRatio attribute; invalid values fall back
    to the SVG default, xMidYMid meet, as renderers do."""
    words = (value or "").split()
    if words and words[0] == "defer":  # only meaningful for <image> referencing SVG files
        words = words[1:]
    align = words[0] if words and words[0] in _ALIGNS else "xMidYMid"
    mode = words[1] if len(words) > 1 and words[1] in ("meet", "slice") else "meet"
    return align, mode


def _own_transform(node) -> inkex.Transform:
    """The map from `node`'s content frame to its parent's user units."""
    transform = inkex.Transform(node.attrib.get("transform", "") or "")
    if node.tag != _SVG_SVG:
        return transform
    # A nested <svg> is a viewport of its own: position, then viewBox scaling.
    view_width, view_height = _viewport_size(node)
    x = _length(node.get("x"), view_width) or 0.0
    y = _length(node.get("y"), view_height) or 0.0
    width = _length(node.get("width") or "100%", view_width)
    height = _length(node.get("height") or "100%", view_height)
    viewbox = _viewbox(node)
    if viewbox is None or not width or not height:
        return transform @ inkex.Transform(((1.0, 0.0, x), (0.0, 1.0, y)))
    return transform @ viewbox_transform(viewbox, (x, y, width, height), node.get("preserveAspectRatio"))


def _viewport_size(element) -> tuple[float, float]:
    """Width and height, in user units, of the viewport `element` is in (for percentages)."""
    node = element.getparent()
    while node is not None and node.tag != _SVG_SVG:
        node = node.getparent()
    if node is None:
        return 0.0, 0.0
    viewbox = _viewbox(node)
    if viewbox is not None:
        return viewbox[2], viewbox[3]
    outer_width, outer_height = _viewport_size(node) if node.getparent() is not None else (0.0, 0.0)
    return (_length(node.get("width") or "100%", outer_width) or 0.0,
            _length(node.get("height") or "100%", outer_height) or 0.0)


def _viewbox(node) -> tuple[float, float, float, float] | None:
    try:
        numbers = [float(part) for part in re.split(r"[\s,]+", (node.get("viewBox") or "").strip())]
    except ValueError:
        return None
    if len(numbers) != 4 or numbers[2] <= 0 or numbers[3] <= 0:
        return None
    return numbers[0], numbers[1], numbers[2], numbers[3]


def _length(value: str | None, reference: float) -> float | None:
    """A length attribute in user units; None when absent or `auto`."""
    if value is None or value.strip() in ("", "auto"):
        return None
    parsed = parse_unit(value.strip())
    if parsed is None:
        return None
    number, unit = parsed
    if unit == "%":
        return number / 100.0 * reference
    return convert_unit(value.strip(), "px")
