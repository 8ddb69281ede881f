"""A cell SVG from the backend, read as untrusted input: it comes over the network.

No DTD (hence no entities), no huge-tree mode; bounded size, number of paths and path data;
finite and sane numbers; and only the `<path>` children of the top-level region groups are
read. Anything else is refused with an `inkex.AbortExtension` saying the cell was not
imported.
"""

from __future__ import annotations

import math
import re

import inkex
from lxml import etree

#: Cell group id -> the label of the sub-group in the imported layer.
REGION_LABELS = {"background": "Background", "foreground": "Foreground", "scene": "Sketch"}

#: Limits on a cell SVG: far above what the backend writes (256 strokes per region, each cut
#: into a few pieces of one cubic), far below what would hurt Inkscape.
MAX_CELL_BYTES = 8 * 2**20
MAX_PATHS = 20_000
MAX_PATH_DATA = 4_096  # characters of one path's `d`
MAX_COORDINATE = 1e6  # bitmap px, in absolute value
MAX_STROKE_WIDTH = 1e4

_SVG = "{http://www.w3.org/2000/svg}"
_CELL_PARSER = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True,
                               huge_tree=False, remove_comments=True, remove_pis=True)
_PATH_TOKENS = re.compile(r"\s*(?:([MmCcLlZz])|([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))\s*,?")


def parse_cell(cell_svg: bytes):
    """The cell's root `<svg>` element; AbortExtension when it is not a plain, bounded SVG."""
    def refuse(why: str):
        return inkex.AbortExtension(f"The backend sent a sketch that {why}; it was not imported. "
                                    "Try the cell again or restart the backend.")

    if len(cell_svg) > MAX_CELL_BYTES:
        raise refuse(f"is larger than {MAX_CELL_BYTES // 2**20} MB")
    if b"<!DOCTYPE" in cell_svg or b"<!ENTITY" in cell_svg:
        raise refuse("declares a DTD or entities")
    try:
        root = etree.fromstring(cell_svg, _CELL_PARSER)
    except etree.XMLSyntaxError as error:
        raise refuse(f"is not valid SVG ({error})") from None
    if root.getroottree().docinfo.doctype:  # a DTD in another encoding than ASCII's
        raise refuse("declares a DTD or entities")
    if root.tag != _SVG + "svg":
        raise refuse("is not an SVG document")
    return root


def cell_size(cell) -> tuple[float, float] | None:
    """(W, H) in bitmap px from the cell's viewBox (or width/height)."""
    numbers = re.split(r"[\s,]+", (cell.get("viewBox") or "").strip())
    try:
        if len(numbers) == 4:
            return float(numbers[2]), float(numbers[3])
        return float(cell.get("width")), float(cell.get("height"))
    except (TypeError, ValueError):
        return None


def regions(cell) -> list[tuple[str, list]]:
    """(region, its path elements) for the cell's region groups, in the cell's order
    (background below foreground). Only `<path>` children of the top-level groups `background`,
    `foreground` and `scene` count: nothing in defs, clip paths, masks or nested elements."""
    regions = []
    count = 0
    for child in cell:
        if child.tag != _SVG + "g" or child.get("id") not in REGION_LABELS:
            continue
        paths = [path for path in child if path.tag == _SVG + "path"]
        count += len(paths)
        if count > MAX_PATHS:
            raise inkex.AbortExtension(
                f"The backend sent a sketch with more than {MAX_PATHS} strokes; it was not imported.")
        if paths:
            regions.append((child.get("id"), paths))
    return regions


def path_data(d: str) -> str:
    """`d` when it is plain path data (M, C, L, Z; finite, bounded numbers), else AbortExtension."""
    def refuse(why: str):
        return inkex.AbortExtension(f"The backend sent a sketch with a stroke whose path data {why}; "
                                    "it was not imported.")

    if len(d) > MAX_PATH_DATA:
        raise refuse(f"is longer than {MAX_PATH_DATA} characters")
    position, first = 0, True
    while position < len(d):
        match = _PATH_TOKENS.match(d, position)
        if match is None or match.end() == position:
            raise refuse(f"is not M/C/L/Z path data (at {d[position:position + 20]!r})")
        command, number = match.groups()
        if first and command not in ("M", "m"):
            raise refuse("does not start with a move")
        first = False
        if number is not None:
            value = float(number)
            if not math.isfinite(value) or abs(value) > MAX_COORDINATE:
                raise refuse(f"holds the number {number}")
        position = match.end()
    if first:
        raise refuse("is empty")
    return d.strip()


def stroke_width(source) -> float:
    """The cell stroke's width in bitmap px (1 when it gives none); AbortExtension when absurd."""
    text = source.get("stroke-width") or _inline_style(source.get("style")).get("stroke-width") or "1"
    try:
        width = float(text)
    except ValueError:
        width = math.nan
    if not (math.isfinite(width) and 0 <= width <= MAX_STROKE_WIDTH):
        raise inkex.AbortExtension(f"The backend sent a sketch with the stroke width {text[:40]!r}; "
                                   "it was not imported.")
    return width


def _inline_style(text: str | None) -> dict:
    pairs = (item.split(":", 1) for item in (text or "").split(";") if ":" in item)
    return {key.strip(): value.strip() for key, value in pairs}
