"""The bitmap behind the user's selection: which `<image>` it is, its bytes and its pixel size.

Works with inkex 1.2 (Inkscape 1.2's bundled copy) and 1.4, and the standard library only: the
pixel size comes from the file headers (PNG IHDR, JPEG SOFn, WebP VP8/VP8L/VP8X), because
Inkscape's Python has no imaging library. Every error a user can meet is an
`inkex.AbortExtension` whose message is one sentence saying what to do next.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

import inkex

#: Formats the backend accepts, by content; the value is the file extension we give embedded data.
SUPPORTED_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}

_SVG_IMAGE = "{http://www.w3.org/2000/svg}image"
#: Selected containers searched for the one image inside: group or layer, link, switch.
_CONTAINERS = {"{http://www.w3.org/2000/svg}" + name for name in ("g", "a", "switch")}
_SHAPES = tuple("{http://www.w3.org/2000/svg}" + name for name in
                ("path", "rect", "circle", "ellipse", "polygon", "polyline", "line"))
_FIX = " Convert it to PNG or JPEG, import that and try again."


@dataclass
class ImageSource:
    """The selected bitmap: the `<image>` element and the bytes it shows.

    `pixel_width` x `pixel_height` is the bitmap's size in its own pixels (the "bitmap px"
    frame of the backend's cell SVGs), as stored in the file header.
    """

    element: inkex.Image
    data: bytes
    filename: str
    format: str
    pixel_width: int
    pixel_height: int


def selected_images(svg, selection_elements, document_path: str | None = None,
                    input_path: str | None = None) -> list[ImageSource]:
    """Every bitmap image in the selection, in selection order, with its bytes and pixel size.

    `selection_elements`: the selected elements (a list, or inkex's `svg.selection`). An `<image>`
    counts, and so do the images inside a selected group or layer; other selected objects are
    ignored (see `selected_shapes`). `document_path`: the saved SVG file (`self.document_path()`
    in an extension); None (an Inkscape that does not tell) falls back to the file `svg` was
    loaded from. `input_path`: the file the extension was given (Inkscape's temporary copy,
    `self.options.input_file`), whose folder Inkscape rewrites relative links against.
    """
    if isinstance(selection_elements, Mapping):  # inkex's ElementList maps ids to elements
        selection_elements = selection_elements.values()
    selected = list(selection_elements or ())
    if not selected:
        raise inkex.AbortExtension(
            "Nothing is selected: select the photo (a PNG, JPEG or WebP image) and try again.")
    images: list = []
    for element in selected:
        for image in _images_in(element):
            if all(image is not found for found in images):
                images.append(image)
    if not images:
        kind = _describe(selected[0]) if len(selected) == 1 else "the selected objects"
        raise inkex.AbortExtension(
            f"The selection ({kind}) is not a bitmap image: select the photo and try again.")
    if document_path is None:
        document_path = _loaded_from(svg)
    return [_source(image, document_path, input_path) for image in images]


def selected_shapes(selection_elements) -> list:
    """The selected vector shapes (paths, rectangles, circles, ellipses, polygons, lines, also
    inside selected groups that hold no image): what the user drew as the object mask."""
    if isinstance(selection_elements, Mapping):
        selection_elements = selection_elements.values()
    shapes: list = []
    for element in selection_elements or ():
        if element.tag in _CONTAINERS and not _images_in(element):
            candidates = list(element.iter(*_SHAPES))
        else:
            candidates = [element] if element.tag in _SHAPES else []
        shapes += [shape for shape in candidates if all(shape is not found for found in shapes)]
    return shapes


def _source(image, document_path: str | None, input_path: str | None) -> ImageSource:
    data, filename = image_bytes(image, document_path, input_path)
    kind = sniff_format(data)
    if kind not in SUPPORTED_FORMATS:
        raise inkex.AbortExtension(
            f"The selected image is {_article(kind)} file; CLIPascene reads PNG, JPEG and WebP." + _FIX)
    if not filename:
        filename = f"{image.get('id') or 'image'}.{SUPPORTED_FORMATS[kind]}"
    size = pixel_size(data, kind)
    if size is None:
        raise inkex.AbortExtension(
            f"Cannot read the pixel size of the {kind} image {filename}; the file may be damaged."
            + _FIX)
    return ImageSource(element=image, data=data, filename=filename, format=kind,
                       pixel_width=size[0], pixel_height=size[1])


def _images_in(element) -> list:
    if element.tag == _SVG_IMAGE:
        return [element]
    if element.tag in _CONTAINERS:
        return list(element.iter(_SVG_IMAGE))
    return []


def _loaded_from(svg) -> str | None:
    """The local file the document was parsed from, if lxml knows it."""
    try:
        url = svg.getroottree().docinfo.URL
    except AttributeError:
        return None
    if not url:
        return None
    if url.startswith("file:"):
        return urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
    return url if "://" not in url else None


def _describe(element) -> str:
    label = element.get("inkscape:label") or element.get("id")
    name = element.tag.rsplit("}", 1)[-1]
    return f"{name} {label!r}" if label else f"a {name}"


def _article(kind: str) -> str:
    return f"an {kind}" if kind[:1].upper() in "AEIOU" else f"a {kind}"


# --- bytes ---------------------------------------------------------------------------------------

def image_bytes(image, document_path: str | None = None,
                input_path: str | None = None) -> tuple[bytes, str]:
    """(bytes, file name) of an `<image>`: decoded from its `data:` URI (file name ''), or read
    from the linked file (its base name), found as `linked_path` says."""
    href = (image.get("xlink:href") or image.get("href") or "").strip()
    if not href:
        raise inkex.AbortExtension(
            "The selected image has no picture data (its link is empty): relink or re-import it.")
    if href[:5].lower() == "data:":
        return decode_data_uri(href), ""
    path = linked_path(href, image.get("sodipodi:absref"), document_path, input_path)
    try:
        with open(path, "rb") as handle:
            return handle.read(), os.path.basename(path)
    except OSError as error:
        raise inkex.AbortExtension(f"Cannot read the linked image {path} ({error.strerror}).") from None


def decode_data_uri(uri: str) -> bytes:
    """The bytes of a `data:[<mime>][;base64],<payload>` URI; base64 may hold whitespace."""
    header, comma, payload = uri[5:].partition(",")
    if not comma:
        raise inkex.AbortExtension("The selected image's embedded data is damaged (no ',' in the "
                                   "data: URI): re-import the picture.")
    if ";base64" not in header.lower():
        return urllib.parse.unquote_to_bytes(payload)
    # Inkscape wraps base64 at 76 columns, other tools percent-encode or drop the padding.
    text = "".join(urllib.parse.unquote(payload).split())
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise inkex.AbortExtension("The selected image's embedded data is not valid base64: "
                                   "re-import the picture.") from None


def linked_path(href: str, absref: str | None, document_path: str | None,
                input_path: str | None = None) -> str:
    """The existing file a linked `<image>` points to, found the way Inkscape finds it, or
    AbortExtension naming the link as the user wrote it.

    Tried in order: an absolute path or `file:` URI (percent-encoded or not); a relative link
    against the folder of `input_path` (Inkscape hands an extension a temporary copy of the
    document and rewrites relative links to start from that copy's folder), then against the
    folder of `document_path` (the saved document); finally `sodipodi:absref`.
    """
    split = urllib.parse.urlsplit(href)
    scheme = split.scheme.lower()
    if scheme in ("http", "https", "ftp"):
        raise inkex.AbortExtension(
            f"The selected image is linked from the web ({href}): download it, import the file "
            "and try again.")
    if scheme == "file":
        candidates = [urllib.request.url2pathname(split.path)]
    else:
        candidates = [href]
        unquoted = urllib.parse.unquote(href)
        if unquoted != href:  # links written as URI references percent-encode spaces etc.
            candidates.append(unquoted)
    document_folder = _folder(document_path)
    folders = [folder for folder in (_folder(input_path), document_folder) if folder]
    for candidate in candidates:
        candidate = os.path.expanduser(candidate)
        for path in [candidate] if os.path.isabs(candidate) else [
                os.path.join(folder, candidate) for folder in folders]:
            if os.path.isfile(path):
                return path
    if absref and os.path.isfile(absref):
        return absref
    relative = not os.path.isabs(os.path.expanduser(candidates[-1]))
    if relative and not document_folder:
        raise inkex.AbortExtension(
            f"The linked image file {_as_written(href, input_path, None)} was not found (save the "
            "document first, so relative links can be found): relink the image or embed it "
            "(Extensions ▸ Images ▸ Embed Images) and try again.")
    where = f" (looked for next to the document, in {document_folder})" if relative else ""
    raise inkex.AbortExtension(
        f"The linked image file {_as_written(href, input_path, document_folder)} was not found"
        f"{where}: relink the image or embed it (Extensions ▸ Images ▸ Embed Images) and try again.")


def _folder(path: str | None) -> str | None:
    return os.path.dirname(os.path.abspath(path)) if path else None


def _as_written(href: str, input_path: str | None, document_folder: str | None) -> str:
    """The link as the user wrote it: a relative link that Inkscape rewrote against its
    temporary copy's folder is turned back into one relative to the document's folder."""
    input_folder = _folder(input_path)
    plain = urllib.parse.unquote(href)
    if (os.path.isabs(plain) or "://" in href or href.lower().startswith("file:")
            or not input_folder or not document_folder or input_folder == document_folder):
        return href
    return os.path.relpath(os.path.normpath(os.path.join(input_folder, plain)), document_folder)


# --- headers -------------------------------------------------------------------------------------

def sniff_format(data: bytes) -> str:
    """The image format by content: 'PNG', 'JPEG', 'WEBP', or another name ('GIF', 'BMP', 'TIFF',
    'ICO', 'SVG', 'unrecognised') for what we refuse."""
    head = data[:32]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:4] == b"\x00\x00\x01\x00":
        return "ICO"
    if b"<svg" in data[:1024].lower():
        return "SVG"
    return "unrecognised"


def pixel_size(data: bytes, kind: str | None = None) -> tuple[int, int] | None:
    """(width, height) in pixels from the header of a PNG, JPEG or WebP file; None if unreadable.

    For a JPEG whose EXIF orientation turns it by a quarter (a portrait photo from a phone) it
    is the upright size, as Inkscape shows the photo and the backend sketches it.
    """
    kind = kind or sniff_format(data)
    try:
        if kind == "PNG":
            return _png_size(data)
        if kind == "JPEG":
            size = _jpeg_size(data)
            if size is not None and jpeg_orientation(data) in (5, 6, 7, 8):
                return size[1], size[0]
            return size
        if kind == "WEBP":
            return _webp_size(data)
    except (struct.error, IndexError):
        return None
    return None


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return (width, height) if width and height else None


# SOFn markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte before a marker
            offset += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            offset += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or entropy-coded data before any frame
            return None
        (length,) = struct.unpack(">H", data[offset + 2:offset + 4])
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[offset + 5:offset + 9])
            return (width, height) if width and height else None
        offset += 2 + length
    return None


def jpeg_orientation(data: bytes) -> int:
    """The EXIF orientation (1-8) of a JPEG, 1 when it has none or it cannot be read."""
    offset = 2
    try:
        while offset + 4 <= len(data) and data[offset] == 0xFF:
            marker = data[offset + 1]
            if marker in (0xD9, 0xDA):
                break
            (length,) = struct.unpack(">H", data[offset + 2:offset + 4])
            body = data[offset + 4:offset + 2 + length]
            if marker == 0xE1 and body[:6] == b"Exif\x00\x00":
                return _tiff_orientation(body[6:])
            offset += 2 + length
    except struct.error:
        pass
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return 1
    (first_ifd,) = struct.unpack(order + "I", tiff[4:8])
    (count,) = struct.unpack(order + "H", tiff[first_ifd:first_ifd + 2])
    for index in range(count):
        entry = first_ifd + 2 + 12 * index
        tag, kind, _, value = struct.unpack(order + "HHIH", tiff[entry:entry + 10])
        if tag == 0x0112 and kind == 3:  # Orientation, a SHORT
            return value if 1 <= value <= 8 else 1
    return 1


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        # Lossy: a 3-byte frame tag, the start code 9d 01 2a, then 14-bit sizes (2 bits of scale).
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        # Lossless: signature 0x2f, then width-1 and height-1 in 14 bits each, little-endian.
        if data[20] != 0x2F:
            return None
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        # Extended: 4 bytes of flags, then canvas width-1 and height-1 in 24 bits each.
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None
