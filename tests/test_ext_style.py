"""Styling on import: colour (chosen, or sampled from the photo along each stroke), width scale,
opacity, tapered ends kept editable; Change Abstraction keeps the style; the object mask drawn
as a shape in Inkscape.

Plain `unittest` with inkex, GdkPixbuf and the standard library, so the module also runs under
Inkscape 1.2's own inkex and Debian's python3 (see test_ext_inkex12.py).
"""

from __future__ import annotations

import math
import re
import struct
import unittest
import zlib

import inkex  # noqa: E402
from clipascene_ext import photo  # noqa: E402
from clipascene_ext.importer import build_layer, insert_layer, preview_svg, replace_strokes  # noqa: E402
from clipascene_ext.mask import mask_png  # noqa: E402
from clipascene_ext.placement import pixel_to_document  # noqa: E402
from clipascene_ext.source import selected_images, selected_shapes  # noqa: E402
from clipascene_ext.style import PHOTO, StrokeStyle, option_color  # noqa: E402
from ext_testing import png_from  # noqa: E402

SVG_NS = "http://www.w3.org/2000/svg"
PATH_TAG = f"{{{SVG_NS}}}path"
RED, BLUE, GREEN = (220, 20, 30), (20, 40, 200), (30, 180, 60)
WIDTH, HEIGHT = 120, 60


def three_colour_png() -> bytes:
    """Left third red, middle third green, right third blue."""
    return png_from(WIDTH, HEIGHT, lambda x, y: RED if x < 40 else GREEN if x < 80 else BLUE)


def cell(strokes: dict[str, list[str]], width: float = 4.0) -> bytes:
    groups = "".join(
        f'<g id="{region}">' + "".join(
            f'<path id="{region}-stroke-{index}" d="{d}" fill="none" stroke="#000000" '
            f'stroke-width="{width}" stroke-linecap="round"/>' for index, d in enumerate(paths)) + "</g>"
        for region, paths in strokes.items())
    return (f'<svg xmlns="{SVG_NS}" viewBox="0 0 {WIDTH} {HEIGHT}">{groups}</svg>').encode()


# Strokes inside each colour band (bitmap px), as straight cubics.
OVER_RED = "M 5 10 C 15 20 25 30 35 50"
OVER_GREEN = "M 45 50 C 55 40 65 20 75 10"
OVER_BLUE = "M 85 30 C 95 30 105 30 115 30"


def document(body: str):
    text = (f'<svg xmlns="{SVG_NS}" xmlns:xlink="http://www.w3.org/1999/xlink" '
            'xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape" '
            f'width="200mm" height="100mm" viewBox="0 0 200 100"><defs id="defs1"/>{body}</svg>')
    return inkex.load_svg(text.encode()).getroot()


def photo_document(extra: str = ""):
    import base64

    uri = "data:image/png;base64," + base64.b64encode(three_colour_png()).decode()
    return document(f'<g id="layer1" inkscape:groupmode="layer" transform="translate(10,5)">'
                    f'<image id="photo" x="20" y="10" width="120" height="60" xlink:href="{uri}"/>'
                    f'</g>{extra}')


def styles(layer, region: str | None = None) -> list[inkex.Style]:
    paths = layer.xpath(f".//svg:g[@data-clipascene-region='{region}']/svg:path" if region
                        else ".//svg:path")
    return [inkex.Style(path.get("style")) for path in paths]


def rgb(text: str) -> tuple[int, int, int]:
    return tuple(int(text[index:index + 2], 16) for index in (1, 3, 5))


class StyleTests(unittest.TestCase):
    def build(self, data: bytes, style: StrokeStyle, pixels=None, **options):
        values = dict(job_id="0123456789abcdef", row=1, column=0, layer=8, part="combined",
                      image_id="photo")
        values.update(options)
        return build_layer(data, inkex.Transform(), style=style, pixels=pixels, **values)

    def test_default_is_black_round_strokes_at_the_cells_width(self):
        layer = self.build(cell({"foreground": [OVER_RED]}, width=6.04), StrokeStyle())
        (style,) = styles(layer)
        self.assertEqual((style["stroke"], style["stroke-width"], style["fill"], style["stroke-linecap"]),
                         ("#000000", "6.04", "none", "round"))
        self.assertNotIn("opacity", style)

    def test_colour_width_scale_and_opacity(self):
        chosen = StrokeStyle(option_color("4278190335"), width_scale=2.5, opacity=0.4)  # Inkscape's red
        layer = self.build(cell({"background": [OVER_RED, OVER_BLUE], "foreground": [OVER_GREEN]}), chosen)
        self.assertEqual(len(styles(layer)), 3)
        for style in styles(layer):
            self.assertEqual(style["stroke"], "#ff0000")
            self.assertAlmostEqual(float(style["stroke-width"]), 10.0)
            self.assertAlmostEqual(float(style["opacity"]), 0.4)
        self.assertEqual(StrokeStyle.decode(layer.get("data-clipascene-style")), chosen)

    def test_colours_sampled_from_the_photo_along_each_stroke(self):
        pixels = photo.decode(three_colour_png())
        self.assertEqual((pixels.width, pixels.height), (WIDTH, HEIGHT))
        layer = self.build(cell({"background": [OVER_RED, OVER_BLUE], "foreground": [OVER_GREEN]}),
                           StrokeStyle(PHOTO), pixels)
        got = {path.get("data-clipascene-stroke"): rgb(inkex.Style(path.get("style"))["stroke"])
               for path in layer.iter(PATH_TAG)}
        for name, want in (("background-stroke-0", RED), ("background-stroke-1", BLUE),
                           ("foreground-stroke-0", GREEN)):
            for got_value, want_value in zip(got[name], want, strict=True):
                self.assertLessEqual(abs(got_value - want_value), 8, (name, got[name], want))
        # A stroke across two bands gets their mix, weighted by how much of it lies in each.
        (mixed,) = styles(self.build(cell({"scene": ["M 20 30 C 40 30 60 30 60 30"]}),
                                     StrokeStyle(PHOTO), pixels))
        red, green, blue = rgb(mixed["stroke"])
        self.assertGreater(red, 60)
        self.assertGreater(green, 60)
        self.assertLess(blue, 60)

    def test_tapered_strokes_are_outlines_with_inkscapes_taper_effect(self):
        svg = document("")
        layer = insert_layer(svg, self.build(cell({"foreground": [OVER_BLUE, OVER_RED]}, width=4.0),
                                             StrokeStyle("#336699", width_scale=1.5, taper=True)))
        paths = list(layer.iter(PATH_TAG))
        self.assertEqual([path.get("inkscape:original-d") for path in paths], [OVER_BLUE, OVER_RED])
        effects = []
        for path in paths:
            style = inkex.Style(path.get("style"))
            self.assertEqual((style["fill"], style["stroke"]), ("#336699", "none"))
            effect = svg.getElementById(path.get("inkscape:path-effect")[1:])
            self.assertIs(effect.getparent(), svg.defs)
            self.assertEqual(effect.get("effect"), "taper_stroke")
            self.assertAlmostEqual(float(effect.get("stroke_width")), 6.0)
            effects.append(effect)
        self.assertIsNot(effects[0], effects[1])
        # The horizontal stroke's outline: 6 px wide in the middle, pointed at both ends.
        numbers = [float(value) for value in re.findall(r"[-+]?\d+\.?\d*", paths[0].get("d"))]
        outline = list(zip(numbers[0::2], numbers[1::2], strict=True))
        self.assertEqual(outline[0], (85.0, 30.0))
        middle = [y for x, y in outline if abs(x - 100) < 2]
        self.assertAlmostEqual(max(middle) - min(middle), 6.0, places=3)
        ends = [y for x, y in outline if x < 86 or x > 114]
        self.assertLess(max(ends) - min(ends), 0.5)
        self.assertTrue(paths[0].get("d").rstrip().endswith("Z"))

    def test_bad_style_values_are_refused(self):
        for values in ({"color": "blue-ish"}, {"width_scale": 0}, {"opacity": 1.5},
                       {"width_scale": math.inf}):
            with self.subTest(values=values), self.assertRaises(inkex.AbortExtension):
                StrokeStyle(**values)
        self.assertEqual(StrokeStyle.decode("color=photo;width=2;opacity=0.5;taper=1"),
                         StrokeStyle(PHOTO, 2.0, 0.5, True))
        self.assertEqual(StrokeStyle.decode("color=nonsense"), StrokeStyle())

    def test_preview_draws_the_styled_strokes_over_the_photo(self):
        picture = three_colour_png()
        preview = inkex.load_svg(preview_svg(cell({"foreground": [OVER_GREEN]}),
                                             StrokeStyle("#ff00ff", 2.0), None, picture)).getroot()
        self.assertEqual(preview.get("viewBox"), f"0 0 {WIDTH} {HEIGHT}")
        image = preview.find(f"{{{SVG_NS}}}image")
        self.assertTrue(image.get("href").startswith("data:image/png;base64,"))
        (path,) = preview.iter(PATH_TAG)
        self.assertEqual(inkex.Style(path.get("style"))["stroke"], "#ff00ff")
        self.assertAlmostEqual(float(inkex.Style(path.get("style"))["stroke-width"]), 8.0)


def cell_with_widths(strokes: dict[str, list[tuple[str, float]]]) -> bytes:
    """A cell whose paths each carry their own width, as a simplified row's do."""
    groups = "".join(
        f'<g id="{region}">' + "".join(
            f'<path id="{region}-stroke-{index}" d="{d}" fill="none" stroke="#000000" '
            f'stroke-width="{width}" stroke-linecap="round"/>' for index, (d, width) in enumerate(paths))
        + "</g>" for region, paths in strokes.items())
    return (f'<svg xmlns="{SVG_NS}" viewBox="0 0 {WIDTH} {HEIGHT}">{groups}</svg>').encode()


class PerStrokeWidthTests(unittest.TestCase):
    """A simplified row draws each kept stroke at its own width: the import keeps each one,
    the width scale multiplies it, and Change Abstraction does not flatten them."""

    def test_each_stroke_keeps_its_width_times_the_width_scale(self):
        data = cell_with_widths({"background": [(OVER_RED, 2.1), (OVER_BLUE, 3.0)],
                                 "foreground": [(OVER_GREEN, 2.55)]})
        for scale in (1.0, 2.0):
            layer = build_layer(data, inkex.Transform(), job_id="0123456789abcdef", row=1, column=0,
                                layer=8, part="combined", image_id="photo",
                                style=StrokeStyle(width_scale=scale))
            widths = [float(style["stroke-width"]) for style in styles(layer)]
            for got, want in zip(widths, (2.1 * scale, 3.0 * scale, 2.55 * scale), strict=True):
                self.assertAlmostEqual(got, want)

    def test_change_abstraction_gives_the_new_strokes_their_own_widths(self):
        svg = document("")
        options = dict(job_id="0123456789abcdef", column=0, layer=8, part="combined", image_id="photo")
        layer = insert_layer(svg, build_layer(cell({"foreground": [OVER_RED, OVER_BLUE]}, width=3.0),
                                              inkex.Transform(), row=0, **options))
        new = build_layer(cell_with_widths({"foreground": [(OVER_GREEN, 2.4), (OVER_RED, 2.9)]}),
                          inkex.Transform(), row=2, **options)
        replace_strokes(layer, new)
        self.assertEqual([float(style["stroke-width"]) for style in styles(layer, "foreground")],
                         [2.4, 2.9])


class ChangeAbstractionKeepsStyleTests(unittest.TestCase):
    def test_chosen_and_hand_applied_styles_survive_a_swap(self):
        svg = photo_document()
        (source,) = selected_images(svg, [svg.getElementById("photo")])
        pixels = photo.decode(source.data)
        transform = pixel_to_document(source.element, source.pixel_width, source.pixel_height)
        chosen = StrokeStyle(PHOTO, width_scale=2.0, opacity=0.8, taper=True)
        layer = insert_layer(svg, build_layer(
            cell({"background": [OVER_RED, OVER_BLUE], "foreground": [OVER_GREEN]}), transform,
            job_id="0123456789abcdef", row=0, column=0, layer=2, part="combined", image_id="photo",
            style=chosen, pixels=pixels))
        old_effects = {path.get("inkscape:path-effect")[1:] for path in layer.iter(PATH_TAG)}
        # By hand: the foreground group made half transparent and renamed; every background
        # stroke given a dash pattern.
        foreground = layer.xpath(".//svg:g[@data-clipascene-region='foreground']")[0]
        foreground.set("style", "opacity:0.5")
        foreground.set("inkscape:label", "Rocket")
        for path in layer.xpath(".//svg:g[@data-clipascene-region='background']/svg:path"):
            path.style["stroke-dasharray"] = "2,1"
            path.set("style", str(path.style))

        # What the Change Abstraction effect does: the style read back from the layer.
        style = StrokeStyle.decode(layer.get("data-clipascene-style"))
        self.assertEqual(style, chosen)
        # Its preview shows the hand-set style too: what will be imported.
        replacement = cell({"background": [OVER_BLUE, OVER_GREEN, OVER_RED], "foreground": [OVER_RED]})
        preview = inkex.load_svg(preview_svg(replacement, style, pixels, source.data, like=layer)).getroot()
        shown = preview.xpath(".//svg:g[@data-clipascene-region='foreground']")[0]
        self.assertEqual(shown.get("style"), "opacity:0.5")
        self.assertTrue(all(inkex.Style(path.get("style"))["stroke-dasharray"] == "2,1" for path in
                            preview.xpath(".//svg:g[@data-clipascene-region='background']/svg:path")))
        new = build_layer(cell({"background": [OVER_BLUE, OVER_GREEN, OVER_RED], "foreground": [OVER_RED]}),
                          inkex.Transform(layer.get("transform")), job_id="0123456789abcdef", row=2,
                          column=1, layer=8, part="combined", image_id="photo", style=style, pixels=pixels)
        replace_strokes(layer, new)

        foreground = layer.xpath(".//svg:g[@data-clipascene-region='foreground']")[0]
        self.assertEqual((foreground.get("style"), foreground.get("inkscape:label")),
                         ("opacity:0.5", "Rocket"))
        background = styles(layer, "background")
        self.assertEqual(len(background), 3)
        self.assertTrue(all(style["stroke-dasharray"] == "2,1" for style in background))
        # Colours are sampled again for the new strokes: the first is over blue, the last over red.
        fills = [rgb(style["fill"]) for style in background]
        self.assertGreater(fills[0][2], 150)
        self.assertGreater(fills[2][0], 150)
        (foreground_style,) = styles(layer, "foreground")  # one stroke, over red; not the old green
        self.assertGreater(rgb(foreground_style["fill"])[0], 150)
        self.assertTrue(all(float(style["opacity"]) == 0.8 for style in styles(layer)))
        paths = list(layer.iter(PATH_TAG))
        self.assertTrue(all(path.get("inkscape:original-d") for path in paths))
        for path in paths:
            effect = svg.getElementById(path.get("inkscape:path-effect")[1:])
            self.assertAlmostEqual(float(effect.get("stroke_width")), 8.0)
        for old in old_effects:  # the replaced strokes' effects are gone from the defs
            self.assertIsNone(svg.getElementById(old))
        ids = svg.xpath("//@id")
        self.assertEqual(len(ids), len(set(ids)))


class MaskTests(unittest.TestCase):
    def test_selected_shapes_become_the_mask_in_the_photos_pixels(self):
        # The photo: 120 x 60 px shown at (30, 15) as 120 x 60 user units (layer moved by 10, 5).
        # A circle in the root frame around bitmap px (30, 30), r 20 px; a rotated square in the
        # same layer as the photo covering bitmap px 80..100 x 20..40; even-odd ring elsewhere.
        svg = photo_document(
            '<circle id="circle" cx="60" cy="45" r="20"/>'
            '<path id="ring" style="fill-rule:evenodd" '
            'd="M 0 0 H 10 V 10 H 0 Z M 3 3 H 7 V 7 H 3 Z" transform="translate(130,15) scale(1)"/>')
        svg.getElementById("layer1").append(inkex.Rectangle.new(0, 0, 20, 20))
        square = svg.getElementById("layer1")[-1]
        square.set("transform", "translate(110,40) rotate(90) translate(-10,-10)")
        (source,) = selected_images(svg, [svg.getElementById("photo")])
        chosen = [svg.getElementById("circle"), square, svg.getElementById("ring")]
        self.assertEqual(len(selected_shapes(chosen)), 3)
        mask = decode_grey_png(mask_png(selected_shapes(chosen), source))
        self.assertEqual((len(mask[0]), len(mask)), (WIDTH, HEIGHT))

        def at(x, y):
            return mask[y][x]

        self.assertEqual(at(30, 30), 255)
        self.assertEqual(at(30, 48), 255)
        self.assertEqual(at(30, 52), 0)
        self.assertEqual(at(12, 30), 255)
        self.assertEqual(at(8, 30), 0)
        self.assertEqual((at(81, 21), at(98, 38), at(79, 30), at(101, 30)), (255, 255, 0, 0))
        self.assertEqual((at(101, 1), at(105, 5), at(108, 8)), (255, 0, 255))  # the ring's hole
        area = sum(value == 255 for row in mask for value in row)
        expected = math.pi * 20 ** 2 + 20 * 20 + (100 - 16)
        self.assertLess(abs(area - expected) / expected, 0.03)

    def test_a_shape_beside_the_photo_gives_no_mask(self):
        svg = photo_document('<rect id="far" x="170" y="80" width="10" height="10"/>')
        (source,) = selected_images(svg, [svg.getElementById("photo")])
        self.assertIsNone(mask_png([svg.getElementById("far")], source))


def decode_grey_png(data: bytes) -> list[bytes]:
    """Rows of an 8-bit greyscale PNG (no filters other than None, as mask_png writes)."""
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert (depth, colour) == (8, 0), (depth, colour)
    body, offset = b"", 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        if data[offset + 4:offset + 8] == b"IDAT":
            body += data[offset + 8:offset + 8 + length]
        offset += 12 + length
    raw = zlib.decompress(body)
    return [raw[row * (width + 1) + 1:(row + 1) * (width + 1)] for row in range(height)]


if __name__ == "__main__":
    unittest.main()
