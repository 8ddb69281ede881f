"""A backend cell SVG turned into an editable, tagged Inkscape layer, and swapped in place later.

The strokes stay in the **bitmap px** frame of the cell (their `d` is copied verbatim); only the
layer carries the placement transform (bitmap px -> document root user units, from
`placement.pixel_to_document`). So stroke widths scale with the image, the user can move the
layer as a whole, and "Change Abstraction" can swap strokes without touching the placement.

`build_layer` returns a detached fragment; `insert_layer` and `replace_strokes` give its
elements ids that are unique in the document (inkex's own id generation) and move its clip
path and path effects into `<defs>`.

The cell SVG comes over the network, so it is read as untrusted input (`cellsvg`).
"""

from __future__ import annotations

import base64
import random
import re

import inkex
from lxml import etree

from .cellsvg import REGION_LABELS, cell_size, parse_cell, path_data, regions, stroke_width
from .source import SUPPORTED_FORMATS, sniff_format
from .style import StrokeStyle, styled_stroke, taper_effect
from .words import cell_name

LAYER_LABEL = "CLIPascene — {cell}"  # words.cell_name
_SVG = "{http://www.w3.org/2000/svg}"
_INKSCAPE = "{http://www.inkscape.org/namespaces/inkscape}"
_IMPORTED_STYLE = "data-clipascene-imported-style"
_CLIP_ID = "clipascene-clip"  # provisional, inside the detached fragment only



def build_layer(cell_svg: bytes, transform: inkex.Transform, *, job_id: str, row: int, column: int,
                layer: int, part: str, image_id: str, clip_rect=None, clip: bool | None = None,
                style: StrokeStyle | None = None, pixels=None, draft: bool = False) -> inkex.Layer:
    """An Inkscape layer holding the cell's strokes, placed by `transform`.

    `cell_svg`: the backend's cell (viewBox 0 0 W H in bitmap px; groups `background` and/or
    `foreground`, or one `scene` group). `transform`: bitmap px -> document root user units.
    `clip_rect`: (x0, y0, x1, y1) in bitmap px, the visible part of the bitmap. `clip`: True
    clips the region groups to it, False never, None (the default) only when it is smaller than
    the bitmap (preserveAspectRatio slice). `style`: how the strokes are drawn (black, the
    cell's widths by default); `pixels` (photo.Pixels) when it samples colours from the photo.
    `draft`: the cell is a progressive run's draft: its layer's name says so (and it is tagged
    `data-clipascene-draft`), until Import Sketch on it swaps in the final cell.

    The layer is tagged `data-clipascene-job`, `-cell` ("ROW,COLUMN,PART"), `-layer` (the CLIP
    layer number of the fidelity column), `-image` (the image's id) and `-style`. It is
    detached and has no ids yet: add it with `insert_layer` or `replace_strokes`.
    """
    cell = parse_cell(cell_svg)
    style = style or StrokeStyle()
    result = inkex.Layer.new(LAYER_LABEL.format(cell=cell_name(layer, row, part, draft)))
    if draft:
        result.set("data-clipascene-draft", "true")
    result.set("data-clipascene-job", str(job_id))
    result.set("data-clipascene-cell", f"{int(row)},{int(column)},{part}")
    result.set("data-clipascene-layer", str(layer))
    result.set("data-clipascene-image", str(image_id or ""))
    result.set("data-clipascene-style", style.encode())
    result.transform = inkex.Transform(transform)
    effects = []
    for region, paths in regions(cell):
        group = inkex.Group.new(REGION_LABELS[region])
        group.set("data-clipascene-region", region)
        for index, source in enumerate(paths):
            path = _stroke(source, index, style, pixels)
            if style.taper:
                effect = taper_effect(stroke_width(source) * style.width_scale)
                effect.set("id", f"clipascene-effect-{len(effects)}")  # provisional, see _adopt
                path.set("inkscape:path-effect", f"#{effect.get('id')}")
                effects.append(effect)
            group.append(path)
        result.append(group)
    for effect in effects:
        result.insert(0, effect)  # waits here until _adopt moves it into defs
    if clip_rect is not None and clip is not False and (clip or not _covers(clip_rect, cell_size(cell))):
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
    What the user restyled stays too: a new region group takes the old one's attributes (its
    style, label, transform), and every style property the user changed on all old strokes of
    the region (a colour, width or dash set by hand) is given to the new strokes.
    When `new_layer` has no clip, the existing layer's clip rectangle is kept for the new
    strokes: the image is the same, so its visible part is too. Returns the existing layer.
    """
    svg = existing_layer.root
    old_groups = [child for child in existing_layer if child.get("data-clipascene-region") is not None]
    position = existing_layer.index(old_groups[0]) if old_groups else len(existing_layer)
    for group in new_layer:
        old = next((old for old in old_groups
                    if old.get("data-clipascene-region") == group.get("data-clipascene-region")), None)
        if old is not None:
            _carry_style(old, group)
    old_references = {match for group in old_groups for match in _references(group)}
    for group in old_groups:
        existing_layer.remove(group)
    _drop_unused(svg, old_references)

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


def _carry_style(old_group, new_group) -> None:
    """Give `new_group` (and its strokes) what the user set on `old_group` (and its strokes):
    the group's own attributes, and each style property that the user changed on the strokes
    (it differs from what the import wrote) and that all old strokes now share."""
    for name, value in old_group.attrib.items():
        if name not in ("id", "clip-path") and not name.startswith("data-clipascene-"):
            new_group.set(name, value)
    old = [(inkex.Style(path.get("style") or ""), inkex.Style(path.get(_IMPORTED_STYLE) or ""))
           for path in old_group if path.tag == _SVG + "path"]
    if not old:
        return
    now, _ = old[0]
    changed = {key: value for key, value in now.items()
               if all(style.get(key) == value for style, _ in old)
               and any(imported.get(key) != value for _, imported in old)}
    if not changed:
        return
    for path in new_group:
        if path.tag == _SVG + "path":
            style = inkex.Style(path.get("style") or "")
            style.update(changed)
            path.set("style", str(style))


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


def _stroke(source, index: int, style: StrokeStyle, pixels) -> inkex.PathElement:
    """One imported stroke: the cell's `d` (checked), drawn as `style` says, a readable label."""
    path = inkex.PathElement()
    for name, value in styled_stroke(path_data(source.get("d", "")), stroke_width(source),
                                     style, pixels).items():
        path.set(name, value)
    path.set(_IMPORTED_STYLE, path.get("style"))  # tells Change Abstraction what the user changed
    source_id = source.get("id") or ""
    number = source_id.rsplit("stroke-", 1)[-1] if "stroke-" in source_id else str(index)
    path.set("inkscape:label", f"stroke {number}")
    if source_id:
        path.set("data-clipascene-stroke", source_id[:100])
    return path


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


_URL = re.compile(r"^\s*url\(\s*#([^)\s]+)\s*\)\s*$")
#: Attributes that refer to a defs item: name -> (id from value, value from id).
_REFERENCES = {
    "clip-path": (lambda value: (_URL.match(value or "") or [None, None])[1], "url(#{})".format),
    _INKSCAPE + "path-effect": (lambda value: value[1:] if (value or "").startswith("#") else None,
                                "#{}".format),
}
_DEFS_ITEMS = (_SVG + "clipPath", _INKSCAPE + "path-effect")


def _references(element) -> set:
    """Ids of the clip paths and path effects that `element` and its descendants use."""
    found = set()
    for node in element.iter():
        for name, (read, _) in _REFERENCES.items():
            reference = read(node.get(name))
            if reference:
                found.add(reference)
    return found


def _drop_unused(svg, item_ids: set) -> None:
    """Remove those clip paths and path effects of `item_ids` that are ours and that nothing
    outside the defs refers to any more."""
    used = set()
    for node in svg.iterchildren():
        if node is not svg.defs:
            used |= _references(node)
    for item in list(svg.defs.iter(*_DEFS_ITEMS)):
        item_id = item.get("id") or ""
        if item_id in item_ids and item_id not in used and item_id.startswith("clipascene-"):
            item.getparent().remove(item)


def _adopt(svg, fragments) -> None:
    """Give every element of the detached `fragments` a document-unique id, keep clip-path and
    path-effect references pointing at the renamed items, and move those into the defs.

    Ids are set before the elements enter the tree: inkex 1.4 would otherwise silently rename
    colliding ids on insertion (breaking url(#…) references). They are drawn here against the
    document's ids read once: inkex's `get_unique_id` reads them all again for every id and
    draws from 10,000 per prefix in a small document, so it never finished once a cell had
    more strokes (the importer allows 20,000); inkex 1.2 keeps a set of the document's ids,
    which learns ours.
    """
    known = svg.get_ids()
    taken = set(known)
    renamed = {}
    for fragment in fragments:
        for node in fragment.iter():
            if not isinstance(node.tag, str):
                continue
            old_id = node.get("id")
            new_id = _fresh_id(_id_prefix(node), taken)
            node.set("id", new_id)
            if old_id:
                renamed[old_id] = new_id
    if isinstance(known, set):  # inkex 1.2's own record (1.4 learns ids on insertion)
        known |= taken
    for fragment in fragments:
        for node in fragment.iter():
            for name, (read, write) in _REFERENCES.items():
                reference = read(node.get(name)) if isinstance(node.tag, str) else None
                if reference in renamed:
                    node.set(name, write(renamed[reference]))
    defs = svg.defs
    for fragment in fragments:
        items = [fragment] if fragment.tag in _DEFS_ITEMS else [
            node for node in fragment.iter() if node.tag in _DEFS_ITEMS]
        for item in items:
            defs.append(item)


def _fresh_id(prefix: str, taken: set) -> str:
    """`prefix` + 8 random hex digits, not in `taken` (which it joins): 4 billion per prefix,
    so an id just removed (Change Abstraction) is practically never given again."""
    while True:
        candidate = f"{prefix}{random.getrandbits(32):08x}"
        if candidate not in taken:
            taken.add(candidate)
            return candidate


def _id_prefix(node) -> str:
    tag = node.tag.rsplit("}", 1)[-1]
    if tag == "g":
        region = re.sub(r"[^A-Za-z0-9_-]", "", node.get("data-clipascene-region") or "")
        return f"clipascene-{region}-" if region else "clipascene-layer-"
    if tag == "path":
        return "clipascene-stroke-"
    if tag == "clipPath":
        return "clipascene-clip-"
    if tag == "path-effect":
        return "clipascene-effect-"
    return f"clipascene-{tag.lower()}-"


# --- preview -------------------------------------------------------------------------------------

PREVIEW_PHOTO_OPACITY = 0.5

def preview_svg(cell_svg: bytes, style: StrokeStyle, pixels=None, photo: bytes | None = None,
                like=None) -> bytes:
    """A standalone SVG of the cell's strokes drawn as `style` says, over the photo (its bytes,
    PNG/JPEG/WebP) when given: what the import will look like, for the picker to render.
    `like`: the imported layer the cell will replace; what the user restyled on its groups
    and strokes carries over, as `replace_strokes` carries it."""
    cell = parse_cell(cell_svg)
    size = cell_size(cell) or (1.0, 1.0)
    layer = build_layer(cell_svg, inkex.Transform(), job_id="preview", row=0, column=0, layer=0,
                        part="combined", image_id="", style=style, pixels=pixels)
    if like is not None:
        old_groups = {group.get("data-clipascene-region"): group for group in like
                      if group.get("data-clipascene-region") is not None}
        for group in layer:
            old = old_groups.get(group.get("data-clipascene-region"))
            if old is not None:
                _carry_style(old, group)
    for effect in layer.findall(_INKSCAPE + "path-effect"):
        layer.remove(effect)  # the outline is in `d` already
    root = etree.Element(_SVG + "svg", nsmap={None: _SVG[1:-1]})
    root.set("viewBox", f"0 0 {size[0]:.10g} {size[1]:.10g}")
    root.set("width", f"{size[0]:.10g}")
    root.set("height", f"{size[1]:.10g}")
    if photo:
        kind = sniff_format(photo)
        if kind in SUPPORTED_FORMATS:
            image = etree.SubElement(root, _SVG + "image")
            for name, value in (("x", "0"), ("y", "0"), ("width", f"{size[0]:.10g}"),
                                ("height", f"{size[1]:.10g}"), ("preserveAspectRatio", "none")):
                image.set(name, value)
            image.set("href", f"data:image/{kind.lower()};base64,{base64.b64encode(photo).decode()}")
            # Faded, so that strokes coloured from the photo stand out from what they sample.
            image.set("opacity", f"{PREVIEW_PHOTO_OPACITY:g}")
    root.append(layer)
    return etree.tostring(root)
