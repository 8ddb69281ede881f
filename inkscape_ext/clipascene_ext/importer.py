"""A backend cell SVG turned into an editable, tagged Inkscape layer, and swapped in place later.

The strokes stay in the **bitmap px** frame of the cell (their `d` is copied verbatim); only the
layer carries the placement transform (bitmap px -> document root user units, from
`placement.pixel_to_document`). So stroke widths scale with the image, the user can move the
layer as a whole, and "Change Abstraction" can swap strokes without touching the placement.

`build_layer` returns a detached fragment; `insert_layer` and `replace_strokes` give its
elements ids that are unique in the document (inkex's own id generation) and move its clip
path into `<defs>`.
"""

from __future__ import annotations

import re

import inkex
from lxml import etree

LAYER_LABEL = "CLIPascene — fidelity {layer}, simplicity {row}"
#: Cell group id -> the label of the sub-group in the imported layer.
REGION_LABELS = {"background": "Background", "foreground": "Foreground", "scene": "Sketch"}
STROKE_STYLE = ("fill:none;stroke:{color};stroke-width:{width};"
                "stroke-linecap:round;stroke-linejoin:round")

_SVG = "{http://www.w3.org/2000/svg}"
_CLIP_ID = "clipascene-clip"  # provisional, inside the detached fragment only
_CELL_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True,
                               remove_pis=True, huge_tree=True)
_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
_COLOR = re.compile(r"^\s*(#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}|[a-zA-Z]+)\s*$")


def build_layer(cell_svg: bytes, transform: inkex.Transform, *, job_id: str, row: int, column: int,
                layer: int, part: str, image_id: str, clip_rect=None) -> inkex.Layer:
    """An Inkscape layer holding the cell's strokes, placed by `transform`.

    `cell_svg`: the backend's cell (viewBox 0 0 W H in bitmap px; groups `background` and/or
    `foreground`, or one `scene` group). `transform`: bitmap px -> document root user units.
    `clip_rect`: (x0, y0, x1, y1) in bitmap px, the visible part of the bitmap; when it is
    smaller than the bitmap (preserveAspectRatio slice) the region groups are clipped to it.

    The layer is tagged `data-clipascene-job`, `-cell` ("ROW,COLUMN,PART"), `-layer` (the CLIP
    layer number of the fidelity column) and `-image` (the image's id). It is detached and has
    no ids yet: add it with `insert_layer` or `replace_strokes`.
    """
    cell = _parse_cell(cell_svg)
    result = inkex.Layer.new(LAYER_LABEL.format(layer=layer, row=row))
    result.set("data-clipascene-job", str(job_id))
    result.set("data-clipascene-cell", f"{int(row)},{int(column)},{part}")
    result.set("data-clipascene-layer", str(layer))
    result.set("data-clipascene-image", str(image_id or ""))
    result.transform = inkex.Transform(transform)
    for region, paths in _regions(cell):
        group = inkex.Group.new(REGION_LABELS.get(region, region.replace("-", " ").capitalize()))
        group.set("data-clipascene-region", region)
        for index, source in enumerate(paths):
            group.append(_stroke(source, index))
        result.append(group)
    if clip_rect is not None and not _covers(clip_rect, _cell_size(cell)):
        x0, y0, x1, y1 = (float(value) for value in clip_rect)
        result.set("data-clipascene-clip", f"{x0:.10g} {y0:.10g} {x1:.10g} {y1:.10g}")
        _clip_regions(result, (x0, y0, x1, y1))
    return result


def insert_layer(svg, layer) -> inkex.Layer:
    """Add a layer from `build_layer` as the topmost layer of the document root; it and its
    content get document-unique ids. Returns the layer."""
    _adopt(svg, [layer])
    svg.append(layer)
    return layer


def replace_strokes(existing_layer, new_layer):
    """Change Abstraction: put `new_layer`'s strokes into `existing_layer`, in place.

    The existing layer keeps its id, its place in the z-order, its `transform` (the user may
    have moved it), lock/visibility and any other attribute; its label and `data-clipascene-*`
    tags come from `new_layer`. Only the region groups an import created are swapped (the new
    ones take the place of the first old one); anything else the user put in the layer stays.
    When `new_layer` has no clip, the existing layer's clip rectangle is kept for the new
    strokes: the image is the same, so its visible part is too. Returns the existing layer.
    """
    svg = existing_layer.root
    old_groups = [child for child in existing_layer if child.get("data-clipascene-region") is not None]
    position = existing_layer.index(old_groups[0]) if old_groups else len(existing_layer)
    old_clips = {match for group in old_groups for match in _clip_ids(group)}
    for group in old_groups:
        existing_layer.remove(group)
    for clip_id in old_clips:
        _drop_unused_clip(svg, clip_id)

    kept_clip = existing_layer.get("data-clipascene-clip")
    if new_layer.get("data-clipascene-clip") is None and kept_clip:
        rect = tuple(float(value) for value in kept_clip.split())
        if len(rect) == 4:
            new_layer.set("data-clipascene-clip", kept_clip)
            _clip_regions(new_layer, rect)
    children = list(new_layer)
    _adopt(svg, children)
    for offset, child in enumerate(child for child in children if child.getparent() is new_layer):
        existing_layer.insert(position + offset, child)

    existing_layer.set("inkscape:label", new_layer.get("inkscape:label"))
    for name, value in new_layer.attrib.items():
        if name.startswith("data-clipascene-") and value:
            existing_layer.set(name, value)
    return existing_layer


def find_layers(svg, job_id: str | None = None, image_id: str | None = None) -> list:
    """Layers imported by CLIPascene, in document order (the topmost last), optionally only
    those of one job and/or one image (by the image element's id)."""
    found = []
    for group in svg.xpath("//svg:g[@data-clipascene-job]"):
        if job_id is not None and group.get("data-clipascene-job") != job_id:
            continue
        if image_id is not None and group.get("data-clipascene-image") != image_id:
            continue
        found.append(group)
    return found


# --- the cell ------------------------------------------------------------------------------------

def _parse_cell(cell_svg: bytes):
    try:
        root = etree.fromstring(cell_svg, _CELL_PARSER)
    except etree.XMLSyntaxError as error:
        raise inkex.AbortExtension(f"The backend sent a sketch that is not valid SVG ({error}); "
                                   "try the cell again or restart the backend.") from None
    if root.tag != _SVG + "svg":
        raise inkex.AbortExtension("The backend sent a sketch that is not an SVG document; "
                                   "try the cell again or restart the backend.")
    return root


def _cell_size(cell) -> tuple[float, float] | None:
    """(W, H) in bitmap px from the cell's viewBox (or width/height)."""
    numbers = re.split(r"[\s,]+", (cell.get("viewBox") or "").strip())
    try:
        if len(numbers) == 4:
            return float(numbers[2]), float(numbers[3])
        return float(cell.get("width")), float(cell.get("height"))
    except (TypeError, ValueError):
        return None


def _regions(cell) -> list[tuple[str, list]]:
    """(group id, its path elements) in the cell's order (background below foreground); paths
    outside any group form a 'scene' region. Empty groups are left out."""
    regions = []
    loose = []
    for child in cell:
        if child.tag == _SVG + "g":
            paths = list(child.iter(_SVG + "path"))
            if paths:
                regions.append((child.get("id") or "scene", paths))
        elif child.tag == _SVG + "path":
            loose.append(child)
    if loose:
        regions.append(("scene", loose))
    return regions


def _stroke(source, index: int) -> inkex.PathElement:
    """One imported stroke: the cell's `d` verbatim, its width in bitmap px, a readable label."""
    path = inkex.PathElement()
    path.set("d", source.get("d", ""))
    style = _inline_style(source.get("style"))
    width = source.get("stroke-width") or style.get("stroke-width") or "1"
    color = source.get("stroke") or style.get("stroke") or "#000000"
    path.set("style", STROKE_STYLE.format(color=color.strip() if _COLOR.match(color) else "#000000",
                                          width=width.strip() if _NUMBER.match(width) else "1"))
    source_id = source.get("id") or ""
    number = source_id.rsplit("stroke-", 1)[-1] if "stroke-" in source_id else str(index)
    path.set("inkscape:label", f"stroke {number}")
    if source_id:
        path.set("data-clipascene-stroke", source_id)
    return path


def _inline_style(text: str | None) -> dict:
    pairs = (item.split(":", 1) for item in (text or "").split(";") if ":" in item)
    return {key.strip(): value.strip() for key, value in pairs}


def _covers(rect, size: tuple[float, float] | None) -> bool:
    """Whether `rect` (x0, y0, x1, y1) shows the whole W x H bitmap (to rounding)."""
    if size is None:
        return False
    x0, y0, x1, y1 = (float(value) for value in rect)
    width, height = size
    tolerance = 1e-6 * max(width, height)
    return x0 <= tolerance and y0 <= tolerance and x1 >= width - tolerance and y1 >= height - tolerance


# --- clipping and ids ----------------------------------------------------------------------------

def _clip_regions(layer, rect) -> None:
    """Clip each region group of the detached `layer` to `rect` (x0, y0, x1, y1, bitmap px).

    The clip is on the groups, not the layer: clipPathUnits=userSpaceOnUse is the referencing
    element's user space, i.e. bitmap px inside the layer's transform, whatever the user later
    does to the layer. The clipPath waits inside the layer until `_adopt` moves it to defs.
    """
    x0, y0, x1, y1 = rect
    clip = inkex.ClipPath()
    clip.set("id", _CLIP_ID)
    clip.set("clipPathUnits", "userSpaceOnUse")
    clip.append(inkex.Rectangle.new(x0, y0, x1 - x0, y1 - y0))
    for group in layer:
        if group.get("data-clipascene-region") is not None:
            group.set("clip-path", f"url(#{_CLIP_ID})")
    layer.insert(0, clip)


def _clip_ids(element) -> set:
    found = set()
    for node in element.iter():
        match = re.match(r"^\s*url\(\s*#([^)\s]+)\s*\)\s*$", node.get("clip-path") or "")
        if match:
            found.add(match.group(1))
    return found


def _drop_unused_clip(svg, clip_id: str) -> None:
    """Remove the clipPath `clip_id` if it is ours and nothing refers to it any more."""
    if svg.xpath(f'//*[@clip-path="url(#{clip_id})"]'):
        return
    for clip in svg.xpath(f'//svg:clipPath[@id="{clip_id}"]'):
        if clip.get("id", "").startswith("clipascene-"):
            clip.getparent().remove(clip)


def _adopt(svg, fragments) -> None:
    """Give every element of the detached `fragments` a document-unique id, keep clip-path
    references pointing at the renamed clips, and move the clip paths into the document's defs.

    Ids are set before the elements enter the tree: inkex 1.4 would otherwise silently rename
    colliding ids on insertion (breaking url(#…) references), and inkex 1.2 only learns new ids
    through `get_unique_id` itself.
    """
    assigned: set = set()
    renamed = {}
    for fragment in fragments:
        for node in fragment.iter():
            if not isinstance(node.tag, str):
                continue
            old_id = node.get("id")
            new_id = svg.get_unique_id(_id_prefix(node), blacklist=assigned)
            assigned.add(new_id)
            node.set("id", new_id)
            if old_id:
                renamed[old_id] = new_id
    for fragment in fragments:
        for node in fragment.iter():
            if not isinstance(node.tag, str):
                continue
            reference = node.get("clip-path")
            match = re.match(r"^\s*url\(\s*#([^)\s]+)\s*\)\s*$", reference or "")
            if match and match.group(1) in renamed:
                node.set("clip-path", f"url(#{renamed[match.group(1)]})")
    defs = svg.defs
    for fragment in fragments:
        clips = [fragment] if fragment.tag == _SVG + "clipPath" else list(fragment.iter(_SVG + "clipPath"))
        for clip in clips:
            defs.append(clip)


def _id_prefix(node) -> str:
    tag = node.tag.rsplit("}", 1)[-1]
    if tag == "g":
        region = re.sub(r"[^A-Za-z0-9_-]", "", node.get("data-clipascene-region") or "")
        return f"clipascene-{region}-" if region else "clipascene-layer-"
    if tag == "path":
        return "clipascene-stroke-"
    if tag == "clipPath":
        return "clipascene-clip-"
    return f"clipascene-{tag.lower()}-"
