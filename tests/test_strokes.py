import numpy as np
import pytest
from lxml import etree

from clipascene_core.sketch.strokes import SVG_NS, StrokeSet, path_data, read_svg, svg_document


def random_strokes(count=20, seed=0, width=451.0, height=300.0):
    rng = np.random.default_rng(seed)
    points = rng.uniform(-20, 470, (count, 4, 2))
    return StrokeSet(points, rng.uniform(0.5, 6, count), width, height)


def test_svg_round_trip_is_exact_to_1e_4_px(tmp_path):
    strokes = random_strokes()
    strokes.write_svg(tmp_path / "s.svg", group_id="scene")
    back = read_svg(tmp_path / "s.svg")["scene"]
    assert np.abs(back.points - strokes.points).max() <= 1e-4
    assert np.abs(back.widths - strokes.widths).max() <= 1e-4
    assert back.names == strokes.names
    assert (back.width, back.height) == (451.0, 300.0)


def test_svg_paths_are_plain_open_cubics_with_round_black_strokes():
    root = etree.fromstring(random_strokes(3).to_svg().encode())
    assert root.get("viewBox") == "0 0 451 300"
    paths = root.findall(f".//{{{SVG_NS}}}path")
    assert len(paths) == 3
    for path in paths:
        assert path.get("d").startswith("M ") and " C " in path.get("d")
        assert path.get("fill") == "none" and path.get("stroke") == "#000000"
        assert path.get("stroke-linecap") == "round" and path.get("stroke-linejoin") == "round"


def test_groups_keep_their_strokes_apart():
    document = svg_document(10, 10, [("background", random_strokes(2, 1)),
                                     ("foreground", random_strokes(3, 2))])
    parsed = read_svg(document.encode())
    assert [len(parsed["background"]), len(parsed["foreground"])] == [2, 3]


def test_path_data_format():
    curve = np.array([[0, 0.5], [1.25, 2], [3, 4.00004], [-5, 6]])
    assert path_data(curve) == "M 0 0.5 C 1.25 2 3 4 -5 6"


def test_reading_rejects_paths_that_are_not_one_cubic():
    svg = (f'<svg xmlns="{SVG_NS}" viewBox="0 0 5 5"><path d="M 0 0 L 1 1"/></svg>').encode()
    with pytest.raises(ValueError, match="not a single cubic"):
        read_svg(svg)


def test_subset_keeps_names_in_order():
    strokes = random_strokes(5)
    kept = strokes.subset(np.array([True, False, True, False, True]))
    assert kept.names == ["stroke-0", "stroke-2", "stroke-4"]
    assert np.array_equal(kept.points, strokes.points[[0, 2, 4]])


def test_png_shows_ink_where_the_strokes_are(tmp_path):
    points = np.array([[[10, 50], [40, 50], [70, 50], [100, 50]]], dtype=float)
    strokes = StrokeSet(points, [4.0], 120, 80)
    strokes.write_png(tmp_path / "s.png")
    from PIL import Image

    pixels = np.asarray(Image.open(tmp_path / "s.png"))
    assert pixels.shape == (80, 120)
    assert pixels[50, 20:90].max() < 40  # ink along the line
    assert pixels[10, :].min() > 250 and pixels[:, 115].min() > 250  # paper elsewhere
