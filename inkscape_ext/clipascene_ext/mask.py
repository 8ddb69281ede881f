"""The object mask drawn in Inkscape: selected shapes rasterised in the photo's pixel frame.

The user selects the photo together with a path or shape around the object; `mask_png` turns
those shapes (their fill area, with their fill rule and every transform on the way) into an
8-bit greyscale PNG of the photo's size, white inside, which the backend uses as the
foreground mask instead of computing one. Standard library and inkex only.
"""

from __future__ import annotations

import struct
import zlib

from .placement import pixel_to_document, user_to_document
from .style import cubic_point, subpath_segments

#: Points per cubic segment when flattening the outline.
FLATTEN = 16


def mask_png(shapes, source) -> bytes | None:
    """The mask of `shapes` over the photo `source` (source.ImageSource) as PNG bytes, or None
    when none of them covers any pixel of the photo."""
    width, height = source.pixel_width, source.pixel_height
    to_pixels = -pixel_to_document(source.element, width, height)
    rows = [bytearray(width) for _ in range(height)]
    covered = False
    for shape in shapes:
        transform = to_pixels @ user_to_document(shape)
        polygons = outline_polygons(str(shape.path.transform(transform)))
        evenodd = (shape.style.get("fill-rule") or "nonzero").strip() == "evenodd"
        covered |= fill_polygons(rows, width, polygons, evenodd)
    if not covered:
        return None
    return _grey_png(width, height, rows)


def outline_polygons(d: str) -> list[list[tuple[float, float]]]:
    """Path data flattened into closed polygons, one per subpath."""
    polygons = []
    for segments in subpath_segments(d):
        if segments:
            polygons.append([segments[0][0]] + [cubic_point(segment, step / FLATTEN)
                                                for segment in segments
                                                for step in range(1, FLATTEN + 1)])
    return polygons


def fill_polygons(rows: list[bytearray], width: int, polygons, evenodd: bool) -> bool:
    """Set to 255 the pixels of `rows` whose centres are inside `polygons` (nonzero or even-odd
    fill, all polygons together as one shape); whether any pixel was set."""
    edges = []
    for polygon in polygons:
        for (x0, y0), (x1, y1) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
            if y0 != y1:
                edges.append((min(y0, y1), max(y0, y1), x0, y0, (x1 - x0) / (y1 - y0), 1 if y1 > y0 else -1))
    if not edges:
        return False
    top = max(0, int(min(edge[0] for edge in edges)))
    bottom = min(len(rows) - 1, int(max(edge[1] for edge in edges)) + 1)
    covered = False
    for row in range(top, bottom + 1):
        y = row + 0.5
        crossings = sorted((x0 + (y - y0) * slope, direction)
                           for low, high, x0, y0, slope, direction in edges if low <= y < high)
        winding = 0
        for (x, direction), following in zip(crossings, crossings[1:], strict=False):
            winding += direction
            inside = winding % 2 == 1 if evenodd else winding != 0
            if not inside:
                continue
            start, end = max(0, int(x + 0.5)), min(width, int(following[0] + 0.5))
            if start < end:
                rows[row][start:end] = b"\xff" * (end - start)
                covered = True
    return covered


def _grey_png(width: int, height: int, rows: list[bytearray]) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    raw = b"".join(b"\x00" + bytes(row) for row in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
