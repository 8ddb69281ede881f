"""The Inkscape extension's image extraction: which image, its bytes, its pixel size, its errors.

Plain `unittest` (Debian's python3 that runs Inkscape 1.2 extensions has no pytest) and only
inkex + stdlib, so the same module runs under the venv's inkex 1.4 and Inkscape's inkex 1.2;
see test_ext_inkex12.py.
"""

from __future__ import annotations

import base64
import os
import struct
import tempfile
import unittest
from pathlib import Path

import inkex  # noqa: E402
from clipascene_ext.source import (  # noqa: E402
    jpeg_orientation,
    pixel_size,
    selected_images,
    selected_shapes,
    sniff_format,
)
from ext_testing import png_bytes  # noqa: E402

try:
    from PIL import Image as PILImage
except ImportError:  # Inkscape's Python: header tests below still run on hand-made headers
    PILImage = None


def jpeg_header(width: int, height: int, sof: int = 0xC0) -> bytes:
    """The segments up to and including a SOFn frame header (what the size reader needs); an
    EXIF segment whose payload contains a fake SOF0 marker checks that segments are skipped by
    their length, and a fill byte precedes the frame marker."""
    def segment(marker: int, body: bytes) -> bytes:
        return bytes((0xFF, marker)) + struct.pack(">H", len(body) + 2) + body

    exif = b"Exif\x00\x00" + b"\xff\xc0\x00\x11\x08\x00\x01\x00\x01" + b"\x00" * 16
    frame = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return (b"\xff\xd8" + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
            + segment(0xE1, exif) + segment(0xDB, b"\x00" + bytes(64)) + b"\xff"
            + segment(sof, frame) + b"\xff\xd9")


def exif_segment(orientation: int, order: str = "MM") -> bytes:
    """An APP1 Exif segment whose first IFD holds an ImageWidth entry, then Orientation."""
    end = ">" if order == "MM" else "<"
    entries = (struct.pack(end + "HHII", 0x0100, 4, 1, 4000)
               + struct.pack(end + "HHIHH", 0x0112, 3, 1, orientation, 0))
    tiff = order.encode() + struct.pack(end + "HI", 42, 8) + struct.pack(end + "H", 2) + entries + bytes(4)
    body = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def webp_header(width: int, height: int, kind: str) -> bytes:
    """RIFF/WEBP with a first chunk of the given kind (VP8 , VP8L or VP8X) carrying the size."""
    if kind == "VP8 ":
        # Frame tag, start code, 14-bit sizes with the 2 scaling bits set (they must be ignored).
        body = b"\x50\x02\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width | 0x4000, height | 0xC000)
    elif kind == "VP8L":
        body = b"\x2f" + struct.pack("<I", (width - 1) | ((height - 1) << 14) | (1 << 28))
    else:
        body = b"\x10\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body += b"\x00" * 8
    chunk = kind.encode() + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def data_uri(mime: str, data: bytes) -> str:
    # encodebytes wraps lines at 76 columns, as Inkscape's own embedding does.
    return f"data:{mime};base64,{base64.encodebytes(data).decode('ascii')}"


def document(body: str, path: str | None = None):
    """A parsed SVG document (inkex) around `body`; loaded from `path` when given."""
    text = (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        'xmlns:sodipodi="http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd" '
        'xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape" '
        f'width="210mm" height="297mm" viewBox="0 0 210 297">{body}</svg>'
    )
    if path is None:
        return inkex.load_svg(text.encode("utf-8")).getroot()
    Path(path).write_text(text, encoding="utf-8")
    return inkex.load_svg(path).getroot()


def image_tag(href: str, element_id: str = "photo", extra: str = "") -> str:
    return (f'<image id="{element_id}" x="10" y="10" width="100" height="80" '
            f'xlink:href="{href}" {extra}/>')


def ids(sources) -> list:
    """The ids of the images `selected_images` found, in its order."""
    return [source.element.get("id") for source in sources]


class HeaderTests(unittest.TestCase):
    """Pixel sizes from headers, with the standard library only."""

    def test_png(self):
        self.assertEqual(sniff_format(png_bytes(37, 21)), "PNG")
        self.assertEqual(pixel_size(png_bytes(37, 21)), (37, 21))

    def test_jpeg_baseline_and_progressive(self):
        for sof in (0xC0, 0xC1, 0xC2):
            with self.subTest(sof=hex(sof)):
                data = jpeg_header(4032, 3024, sof)
                self.assertEqual(sniff_format(data), "JPEG")
                self.assertEqual(pixel_size(data), (4032, 3024))

    def test_webp_lossy_lossless_extended(self):
        for kind in ("VP8 ", "VP8L", "VP8X"):
            with self.subTest(kind=kind):
                data = webp_header(1000, 563, kind)
                self.assertEqual(sniff_format(data), "WEBP")
                self.assertEqual(pixel_size(data), (1000, 563))

    def test_exif_orientation_gives_the_upright_size(self):
        header = jpeg_header(400, 300)
        for orientation, order, size in ((1, "MM", (400, 300)), (3, "II", (400, 300)),
                                         (6, "MM", (300, 400)), (8, "II", (300, 400)),
                                         (5, "MM", (300, 400))):
            with self.subTest(orientation=orientation, order=order):
                data = header[:2] + exif_segment(orientation, order) + header[2:]
                self.assertEqual(jpeg_orientation(data), orientation)
                self.assertEqual(pixel_size(data), size)
        self.assertEqual(jpeg_orientation(header), 1)  # an Exif segment without orientation

    @unittest.skipIf(PILImage is None, "needs Pillow to write real JPEG files")
    def test_exif_orientation_of_a_real_jpeg(self):
        import io

        image = PILImage.new("RGB", (120, 80), (200, 30, 30))
        exif = image.getexif()
        exif[0x0112] = 6  # rotate 90° clockwise to view
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", exif=exif.tobytes())
        self.assertEqual(pixel_size(buffer.getvalue()), (80, 120))

    def test_truncated_headers_give_none(self):
        self.assertIsNone(pixel_size(png_bytes(5, 5)[:20]))
        self.assertIsNone(pixel_size(jpeg_header(50, 40)[:40]))
        self.assertIsNone(pixel_size(webp_header(50, 40, "VP8 ")[:24]))

    def test_other_formats_are_named(self):
        self.assertEqual(sniff_format(b"GIF89a" + bytes(20)), "GIF")
        self.assertEqual(sniff_format(b"BM" + bytes(40)), "BMP")
        self.assertEqual(sniff_format(b"II*\x00" + bytes(20)), "TIFF")
        self.assertEqual(sniff_format(b'<?xml version="1.0"?><svg xmlns="x"/>'), "SVG")

    @unittest.skipIf(PILImage is None, "Pillow is not installed in this Python")
    def test_sizes_agree_with_pillow_for_real_files(self):
        import io

        picture = PILImage.new("RGB", (123, 45), (200, 100, 50))
        encodings = [("PNG", {}), ("JPEG", {}), ("JPEG", {"progressive": True}),
                     ("WEBP", {"lossless": False}), ("WEBP", {"lossless": True}),
                     ("WEBP", {"exif": b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x00\x00"})]
        for kind, options in encodings:
            with self.subTest(kind=kind, options=options):
                buffer = io.BytesIO()
                picture.save(buffer, kind, **options)
                data = buffer.getvalue()
                self.assertEqual(sniff_format(data), kind)
                self.assertEqual(pixel_size(data), PILImage.open(io.BytesIO(data)).size)


class EmbeddedImageTests(unittest.TestCase):
    def test_png_jpeg_webp_data_uris(self):
        samples = [("image/png", png_bytes(40, 30), "PNG", "png"),
                   ("image/jpeg", jpeg_header(640, 480), "JPEG", "jpg"),
                   ("image/webp", webp_header(300, 200, "VP8L"), "WEBP", "webp")]
        for mime, data, kind, extension in samples:
            with self.subTest(kind=kind):
                svg = document(image_tag(data_uri(mime, data)))
                (source,) = selected_images(svg, [svg.getElementById("photo")])
                self.assertEqual((source.format, source.data), (kind, data))
                self.assertEqual(source.filename, f"photo.{extension}")
                self.assertIs(source.element, svg.getElementById("photo"))

        self.assertEqual((source.pixel_width, source.pixel_height), (300, 200))

    def test_content_wins_over_declared_mime_and_odd_base64(self):
        data = png_bytes(9, 7)
        text = base64.b64encode(data).decode("ascii").rstrip("=")
        wrapped = "\n   ".join(text[i:i + 50] for i in range(0, len(text), 50))
        svg = document(image_tag(f"data:image/jpeg;base64,\n   {wrapped}\n"))
        (source,) = selected_images(svg, [svg.getElementById("photo")])
        self.assertEqual((source.format, source.pixel_width, source.pixel_height, source.data),
                         ("PNG", 9, 7, data))

    def test_selection_object_group_and_layer(self):
        uri = data_uri("image/png", png_bytes(8, 6))
        svg = document(f'<g id="layer" inkscape:groupmode="layer"><g id="group"><rect id="r" '
                       f'width="5" height="5"/>{image_tag(uri)}</g></g>')
        svg.selection.set("photo")
        self.assertEqual(ids(selected_images(svg, svg.selection)), ["photo"])
        for container in ("group", "layer"):
            with self.subTest(container=container):
                self.assertEqual(ids(selected_images(svg, [svg.getElementById(container)])), ["photo"])
        # The photo, and the group holding it: one image, once.
        both = [svg.getElementById("r"), svg.getElementById("photo"), svg.getElementById("group")]
        self.assertEqual(ids(selected_images(svg, both)), ["photo"])


class SelectionErrorTests(unittest.TestCase):
    def assert_abort(self, svg, elements, *fragments):
        with self.assertRaises(inkex.AbortExtension) as caught:
            selected_images(svg, elements)
        message = str(caught.exception)
        for fragment in fragments:
            self.assertIn(fragment, message)
        self.assertNotIn("\n", message)

    def test_nothing_selected(self):
        svg = document(image_tag(data_uri("image/png", png_bytes(4, 4))))
        self.assert_abort(svg, [], "Nothing is selected")
        self.assert_abort(svg, svg.selection, "Nothing is selected")

    def test_not_an_image(self):
        svg = document('<rect id="box" width="5" height="5"/><g id="empty"/>')
        self.assert_abort(svg, [svg.getElementById("box")], "not a bitmap image", "rect")
        self.assert_abort(svg, [svg.getElementById("empty")], "not a bitmap image")

    def test_several_images(self):
        # Sketch Image takes them all, in selection order, each with its own bytes and size.
        uri = data_uri("image/png", png_bytes(4, 4))
        other = data_uri("image/png", png_bytes(6, 2))
        svg = document(f'<g id="two">{image_tag(uri, "a")}{image_tag(other, "b")}</g>')
        sources = selected_images(svg, [svg.getElementById("b"), svg.getElementById("two")])
        self.assertEqual([(source.element.get("id"), source.pixel_width) for source in sources],
                         [("b", 6), ("a", 4)])

    def test_selected_shapes_are_the_mask(self):
        uri = data_uri("image/png", png_bytes(4, 4))
        svg = document(f'<g id="layer">{image_tag(uri)}<rect id="inside" width="1" height="1"/></g>'
                       '<path id="outline" d="M 0 0 L 5 5 Z"/>'
                       '<g id="drawn"><circle id="c" r="2"/><g><ellipse id="e" rx="1" ry="2"/></g></g>'
                       '<text id="words">no</text>')
        chosen = [svg.getElementById(name) for name in ("layer", "outline", "drawn", "words", "c")]
        self.assertEqual([shape.get("id") for shape in selected_shapes(chosen)], ["outline", "c", "e"])
        self.assertEqual(ids(selected_images(svg, chosen)), ["photo"])

    def test_unsupported_formats(self):
        gif = b"GIF89a" + struct.pack("<HH", 4, 4) + bytes(30)
        bmp = b"BM" + bytes(60)
        svg_text = "data:image/svg+xml;utf8,%3Csvg%20xmlns%3D%22http%3A%2F%2Fwww.w3.org%2F2000%2Fsvg%22%2F%3E"
        for href, kind in ((data_uri("image/gif", gif), "GIF"), (data_uri("image/bmp", bmp), "BMP"),
                           (svg_text, "SVG")):
            with self.subTest(kind=kind):
                svg = document(image_tag(href))
                self.assert_abort(svg, [svg.getElementById("photo")], kind, "PNG, JPEG and WebP")

    def test_damaged_data(self):
        svg = document(image_tag("data:image/png;base64,iVBORw0K!!!"))
        self.assert_abort(svg, [svg.getElementById("photo")], "not valid base64")
        svg = document(image_tag(data_uri("image/png", png_bytes(4, 4)[:18])))
        self.assert_abort(svg, [svg.getElementById("photo")], "pixel size", "damaged")

    def test_web_link(self):
        svg = document(image_tag("https://example.com/photo.png"))
        self.assert_abort(svg, [svg.getElementById("photo")], "linked from the web")


class LinkedImageTests(unittest.TestCase):
    def setUp(self):
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        self.folder = Path(folder.name)
        (self.folder / "pictures dir").mkdir()
        self.picture = self.folder / "pictures dir" / "my photo.png"
        self.data = png_bytes(64, 48)
        self.picture.write_bytes(self.data)
        self.document_path = str(self.folder / "drawing.svg")

    def load(self, href: str, extra: str = "", document_path: str | None = None):
        svg = document(image_tag(href, extra=extra))
        (source,) = selected_images(svg, [svg.getElementById("photo")], document_path)
        return source

    def check(self, source):
        self.assertEqual(source.data, self.data)
        self.assertEqual(source.filename, "my photo.png")
        self.assertEqual((source.format, source.pixel_width, source.pixel_height), ("PNG", 64, 48))

    def test_relative_to_the_document(self):
        self.check(self.load("pictures dir/my photo.png", document_path=self.document_path))
        self.check(self.load("pictures%20dir/my%20photo.png", document_path=self.document_path))
        self.check(self.load("./pictures dir/../pictures dir/my photo.png",
                             document_path=self.document_path))

    def test_absolute_path_and_file_url(self):
        self.check(self.load(str(self.picture)))
        uri = self.picture.as_uri()
        self.assertIn("%20", uri)
        self.check(self.load(uri))

    def test_absref_fallback(self):
        self.check(self.load("moved/elsewhere.png", extra=f'sodipodi:absref="{self.picture}"',
                             document_path=self.document_path))

    def test_document_file_when_no_document_path_is_given(self):
        svg = document(image_tag("pictures dir/my photo.png"), path=self.document_path)
        self.check(*selected_images(svg, [svg.getElementById("photo")], None))

    def test_file_url_with_non_ascii_name(self):
        picture = self.folder / "pictures dir" / "фото été.png"
        picture.write_bytes(self.data)
        uri = picture.as_uri()
        self.assertIn("%D1%84", uri)
        source = self.load(uri)
        self.assertEqual((source.data, source.filename), (self.data, "фото été.png"))
        self.assertEqual(self.load(str(picture)).data, self.data)  # the plain absolute path

    def test_link_rewritten_for_inkscapes_temporary_copy(self):
        # Inkscape gives the extension a copy of the document in another folder and rewrites
        # relative links to start from there; the saved document's folder is DOCUMENT_PATH.
        with tempfile.TemporaryDirectory() as other:
            copy = Path(other) / "ink_ext_XXXXXX.svgABC123"
            rewritten = os.path.relpath(self.picture, other)
            self.assertTrue(rewritten.startswith(".."))
            svg = document(image_tag(rewritten))
            self.check(*selected_images(svg, [svg.getElementById("photo")], self.document_path,
                                        input_path=str(copy)))
            # The user's own link (relative to the document) works beside such a copy too.
            svg = document(image_tag("pictures dir/my photo.png"))
            self.check(*selected_images(svg, [svg.getElementById("photo")], self.document_path,
                                        input_path=str(copy)))
            # A missing file is named as the user wrote it, not as Inkscape rewrote it.
            svg = document(image_tag(os.path.relpath(self.folder / "pictures dir" / "gone.png", other)))
            with self.assertRaises(inkex.AbortExtension) as caught:
                selected_images(svg, [svg.getElementById("photo")], self.document_path,
                                input_path=str(copy))
            message = str(caught.exception)
            self.assertIn("file pictures dir/gone.png was not found", message)
            self.assertIn(str(self.folder), message)

    def test_missing_file(self):
        with self.assertRaises(inkex.AbortExtension) as caught:
            self.load("pictures dir/gone.png", document_path=self.document_path)
        message = str(caught.exception)
        self.assertIn("The linked image file pictures dir/gone.png was not found", message)
        self.assertIn(f"next to the document, in {self.folder}", message)
        self.assertIn("Embed Images", message)
        with self.assertRaises(inkex.AbortExtension) as caught:
            self.load(str(self.folder / "gone.png"), document_path=self.document_path)
        self.assertIn(f"file {self.folder / 'gone.png'} was not found:", str(caught.exception))

    def test_relative_link_in_an_unsaved_document(self):
        with self.assertRaises(inkex.AbortExtension) as caught:
            self.load("pictures dir/my photo.png", document_path="")
        self.assertIn("save the document first", str(caught.exception))

    def test_unsupported_linked_file(self):
        gif = self.folder / "anim.gif"
        gif.write_bytes(b"GIF87a" + bytes(30))
        with self.assertRaises(inkex.AbortExtension) as caught:
            self.load(os.fspath(gif))
        self.assertIn("GIF", str(caught.exception))


if __name__ == "__main__":
    unittest.main()
