"""Cutting background strokes at the object outline: polygons, exact splits and crossings."""

from __future__ import annotations

import time

import numpy as np
import pytest

from clipascene_core.scene.compose import (
    crossing_parameters,
    cut_strokes,
    inside_outline,
    mask_outline,
    split_cubic,
    trim_to_frame,
)
from clipascene_core.sketch.strokes import StrokeSet


def bezier(curve: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(4, 2) cubic at parameters (M,) -> (M, 2), written independently of the module."""
    t = np.asarray(t, dtype=np.float64)[:, None]
    return (
        (1 - t) ** 3 * curve[0]
        + 3 * (1 - t) ** 2 * t * curve[1]
        + 3 * (1 - t) * t**2 * curve[2]
        + t**3 * curve[3]
    )


def distance_to_polygons(points: np.ndarray, polygons: list[np.ndarray]) -> np.ndarray:
    """(P, 2) points -> (P,) exact Euclidean distance to the nearest polygon edge segment."""
    starts = np.concatenate(polygons)
    ends = np.concatenate([np.roll(polygon, -1, axis=0) for polygon in polygons])
    direction = ends - starts
    length2 = np.maximum((direction**2).sum(1), 1e-300)
    offset = points[:, None, :] - starts[None]
    along = np.clip((offset * direction).sum(-1) / length2, 0.0, 1.0)
    return np.linalg.norm(offset - along[..., None] * direction, axis=-1).min(axis=1)


def disc_mask(height: int, width: int, cx: float, cy: float, radius: float) -> np.ndarray:
    """(H, W) bool: pixels whose centre lies within the circle (mask pixel coordinates)."""
    rows, cols = np.mgrid[:height, :width]
    return (cols + 0.5 - cx) ** 2 + (rows + 0.5 - cy) ** 2 <= radius**2


def distance_to_pixel_boundary(points: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(P, 2) points in mask pixel units -> (P,) distance to the mask's true pixel boundary.

    The boundary is the union of unit pixel edges between a foreground and a background pixel
    (outside the mask counts as background).
    """
    padded = np.pad(mask, 1)
    segments = []
    rows, cols = np.nonzero(padded[:, 1:] != padded[:, :-1])  # vertical edges at x = col
    for row, col in zip(rows, cols, strict=True):
        segments.append(((col, row - 1), (col, row)))
    rows, cols = np.nonzero(padded[1:, :] != padded[:-1, :])  # horizontal edges at y = row
    for row, col in zip(rows, cols, strict=True):
        segments.append(((col - 1, row), (col, row)))
    segments = np.array(segments, dtype=np.float64)  # (S, 2 ends, 2)
    starts, direction = segments[:, 0], segments[:, 1] - segments[:, 0]
    offset = points[:, None, :] - starts[None]
    along = np.clip((offset * direction).sum(-1), 0.0, 1.0)  # unit-length edges
    return np.linalg.norm(offset - along[..., None] * direction, axis=-1).min(axis=1)


# --- split_cubic -------------------------------------------------------------------------------


def test_split_cubic_is_the_exact_reparametrised_sub_curve():
    rng = np.random.default_rng(1)
    s = np.linspace(0.0, 1.0, 101)
    for _ in range(20):
        curve = rng.uniform(-50, 350, (4, 2))
        t0, t1 = np.sort(rng.uniform(0, 1, 2))
        piece = split_cubic(curve, t0, t1)
        assert piece.shape == (4, 2)
        np.testing.assert_allclose(bezier(piece, s), bezier(curve, t0 + s * (t1 - t0)), atol=1e-10)
        # Reversed parameters give the reversed piece.
        np.testing.assert_allclose(split_cubic(curve, t1, t0), piece[::-1], atol=1e-10)
    curve = rng.uniform(-50, 350, (4, 2))
    assert np.array_equal(split_cubic(curve, 0.0, 1.0), curve)


# --- inside_outline ----------------------------------------------------------------------------


def test_inside_outline_square_with_square_hole_even_odd_and_vectorised():
    outer = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], dtype=float)
    hole = np.array([[3, 3], [3, 7], [7, 7], [7, 3]], dtype=float)  # orientation is irrelevant
    polygons = [outer, hole]
    points = np.array([[1, 1], [5, 5], [8, 5], [11, 5], [-1, 5], [5, 2], [5, 8], [5, 12]], dtype=float)
    expected = np.array([True, False, True, False, False, True, True, False])
    assert np.array_equal(inside_outline(points, polygons), expected)
    # Any leading shape: (..., 2) -> (...).
    grid = np.stack(np.meshgrid(np.linspace(-2, 12, 29), np.linspace(-2, 12, 23)), axis=-1)
    grid = grid + 0.013  # keep samples off the edges
    result = inside_outline(grid, polygons)
    assert result.shape == (23, 29)
    x, y = grid[..., 0], grid[..., 1]
    in_outer = (x > 0) & (x < 10) & (y > 0) & (y < 10)
    in_hole = (x > 3) & (x < 7) & (y > 3) & (y < 7)
    assert np.array_equal(result, in_outer & ~in_hole)
    assert inside_outline(np.zeros(2), polygons).shape == ()
    assert inside_outline(np.zeros((0, 2)), polygons).shape == (0,)
    assert not inside_outline(points, []).any()


# --- mask_outline ------------------------------------------------------------------------------


@pytest.mark.parametrize("with_hole", [False, True])
def test_mask_outline_traces_the_scaled_pixel_boundary(with_hole):
    mask_h, mask_w = 90, 140
    image_w, image_h = 350.0, 270.0  # scale 2.5 in x, 3 in y
    mask = disc_mask(mask_h, mask_w, 50.3, 44.7, 31.0)
    mask[20:70, 95:130] = True  # a rectangle beside the disc
    if with_hole:
        mask[40:50, 105:120] = False
    polygons = mask_outline(mask, image_w, image_h)
    assert len(polygons) == (3 if with_hole else 2)
    scale = np.array([image_w / mask_w, image_h / mask_h])
    for polygon in polygons:
        assert polygon.ndim == 2 and polygon.shape[1] == 2 and polygon.dtype == np.float64
    # Vertices lie on the true pixel boundary; points along edges within 1 mask px of it (the
    # simplification tolerance, 0.75 px).
    vertices = np.concatenate(polygons) / scale
    assert distance_to_pixel_boundary(vertices, mask).max() < 1e-9
    along = np.concatenate(
        [
            polygon[:, None, :]
            + np.linspace(0, 1, 9)[None, :, None] * (np.roll(polygon, -1, 0) - polygon)[:, None]
            for polygon in polygons
        ]
    ).reshape(-1, 2)
    assert distance_to_pixel_boundary(along / scale, mask).max() <= 0.75 + 1e-9
    # The outline's inside agrees with the mask at pixel centres away from the boundary.
    rows, cols = np.mgrid[:mask_h, :mask_w]
    centres = np.stack([cols + 0.5, rows + 0.5], axis=-1).reshape(-1, 2)
    far = distance_to_pixel_boundary(centres, mask) > 1.5
    inside = inside_outline(centres * scale, polygons)
    assert far.sum() > 0.8 * mask.size
    assert np.array_equal(inside[far], mask.reshape(-1)[far])
    # The staircase of the disc collapses into long edges.
    assert sum(len(polygon) for polygon in polygons) < 0.5 * np.count_nonzero(mask ^ np.roll(mask, 1, 1))


def test_mask_outline_edge_cases_and_size():
    assert mask_outline(np.zeros((5, 7), bool), 70.0, 50.0) == []
    full = mask_outline(np.ones((5, 7), bool), 70.0, 50.0)
    assert len(full) == 1
    assert sorted(map(tuple, full[0])) == [(0.0, 0.0), (0.0, 50.0), (70.0, 0.0), (70.0, 50.0)]
    single = np.zeros((4, 4), bool)
    single[1, 2] = True
    # Too small for simplification: a single pixel and a 1 px line keep their exact outlines.
    (square,) = mask_outline(single, 8.0, 4.0)
    assert sorted(map(tuple, square)) == [(4.0, 1.0), (4.0, 2.0), (6.0, 1.0), (6.0, 2.0)]
    line = np.zeros((5, 40), bool)
    line[2, 3:37] = True
    (bar,) = mask_outline(line, 40.0, 5.0)
    assert sorted(map(tuple, bar)) == [(3.0, 2.0), (3.0, 3.0), (37.0, 2.0), (37.0, 3.0)]
    big = disc_mask(2000, 2000, 1000.0, 1000.0, 900.0)
    polygons = mask_outline(big, 2000.0, 2000.0)
    assert len(polygons) == 1 and len(polygons[0]) < 1500


# --- crossing_parameters -----------------------------------------------------------------------


SQUARE = np.array([[100, 0], [200, 0], [200, 100], [100, 100]], dtype=float)


def line_cubic(start, end) -> np.ndarray:
    """A straight segment as a cubic with control points at thirds: B(t) = start + t (end - start)."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    return np.stack([start + k / 3 * (end - start) for k in range(4)])


def test_crossing_parameters_of_a_straight_line_are_analytic():
    curve = line_cubic((10, 37), (310, 77))
    ts = crossing_parameters(curve, [SQUARE])
    np.testing.assert_allclose(ts, [90 / 300, 190 / 300], rtol=0, atol=1e-13)
    # Through two opposite vertices: each crossing reported once although two edges meet there.
    diagonal = line_cubic((50, -50), (250, 150))
    np.testing.assert_allclose(crossing_parameters(diagonal, [SQUARE]), [0.25, 0.75], atol=1e-13)
    # No edges, no crossings; a curve far away is rejected by the bounding-box prefilter.
    assert crossing_parameters(curve, []).shape == (0,)
    assert crossing_parameters(line_cubic((500, 500), (600, 650)), [SQUARE]).shape == (0,)


def test_s_curve_crossing_three_times_gives_two_outside_pieces():
    # Inside is y > 200 (the rectangle below the line y = 200, y pointing down).
    lower = np.array([[0, 200], [400, 200], [400, 400], [0, 400]], dtype=float)
    curve = np.array([[100, 150], [170, 350], [230, 50], [300, 250]], dtype=float)
    ts = crossing_parameters(curve, [lower])
    expected = np.sort(
        np.roots(np.polyfit(np.linspace(0, 1, 7), bezier(curve, np.linspace(0, 1, 7))[:, 1] - 200, 3)).real
    )
    assert len(ts) == 3
    np.testing.assert_allclose(ts, expected, atol=1e-9)
    cut = cut_strokes(StrokeSet(curve[None], [2.5], 400, 400, ["s"]), [lower])
    assert cut.names == ["s.0", "s.1"]
    assert (len(cut), cut.stroke_count) == (2, 1)  # two pieces, one stroke for the user
    np.testing.assert_allclose(cut.points[0], split_cubic(curve, 0.0, ts[0]), atol=1e-12)
    np.testing.assert_allclose(cut.points[1], split_cubic(curve, ts[1], ts[2]), atol=1e-12)
    assert np.array_equal(cut.widths, [2.5, 2.5])


def test_vertex_crossings_and_tangent_touches_are_harmless():
    diagonal = line_cubic((50, -50), (250, 150))
    # Touches the top side y = 0 from outside at t = 0.5 (a double root): nothing is cut.
    touch = np.array([[50, -10], [350 / 3, 10 / 3], [550 / 3, 10 / 3], [250, -10]])
    # Passes through a corner of the square from outside.
    corner = line_cubic((50, 50), (150, -50))
    strokes = StrokeSet(np.stack([diagonal, touch, corner]), [1.0, 2.0, 3.0], 300, 200, ["d", "t", "c"])
    cut = cut_strokes(strokes, [SQUARE])
    assert cut.names == ["d.0", "d.1", "t", "c"]
    np.testing.assert_allclose(cut.points[0], split_cubic(diagonal, 0, 0.25), atol=1e-12)
    np.testing.assert_allclose(cut.points[1], split_cubic(diagonal, 0.75, 1), atol=1e-12)
    assert np.array_equal(cut.points[2], touch) and np.array_equal(cut.points[3], corner)
    assert np.array_equal(cut.widths, [1.0, 1.0, 2.0, 3.0])


# --- cut_strokes -------------------------------------------------------------------------------


def test_cut_strokes_against_a_disc_mask_is_exact_and_complete():
    mask_h, mask_w = 150, 250
    width, height = 600.0, 400.0  # anisotropic scale 2.4 x 2.667
    mask = disc_mask(mask_h, mask_w, 120.0, 70.0, 55.0)
    polygons = mask_outline(mask, width, height)
    rng = np.random.default_rng(7)
    count = 150
    curves = rng.uniform([-30, -30], [width + 30, height + 30], (count, 4, 2))
    # Short curves around the disc too, so that many start or end inside.
    curves[:50] = rng.uniform([200, 100], [380, 280], (50, 4, 2))
    strokes = StrokeSet(curves, rng.uniform(0.5, 6.0, count), width, height)
    cut = cut_strokes(strokes, polygons)
    assert (cut.width, cut.height) == (width, height)

    tolerance = 1e-6 * max(width, height)
    samples = np.linspace(0.0, 1.0, 2001)
    name_to_index = {name: index for index, name in enumerate(strokes.names)}
    pieces_of: dict[int, list[int]] = {index: [] for index in range(count)}
    for piece_index, name in enumerate(cut.names):
        base, _, suffix = name.partition(".")
        pieces_of[name_to_index[base]].append(piece_index)
        assert suffix == "" or suffix.isdigit()
    cut_count = whole_count = vanished = 0
    for index, curve in enumerate(curves):
        pieces = pieces_of[index]
        crossings = crossing_parameters(curve, polygons)
        # (e) widths preserved, names 'NAME' when untouched, 'NAME.k' in order otherwise.
        assert all(cut.widths[piece] == strokes.widths[index] for piece in pieces)
        if [cut.names[piece] for piece in pieces] == [strokes.names[index]]:
            whole_count += 1
            assert np.array_equal(cut.points[pieces[0]], curve)
            intervals = [(0.0, 1.0)]
        else:
            cut_count += bool(pieces)
            vanished += not pieces
            assert [cut.names[piece] for piece in pieces] == [
                f"{strokes.names[index]}.{k}" for k in range(len(pieces))
            ]
            # Each piece runs between the curve's ends and its crossings of the outline.
            ends = np.concatenate([[0.0], crossings, [1.0]])
            piece_ends = np.array([cut.points[piece][[0, 3]] for piece in pieces]).reshape(-1, 2)
            nearest = np.linalg.norm(piece_ends[:, None] - bezier(curve, ends)[None], axis=2).argmin(1)
            intervals = [(t0, t1) for t0, t1 in ends[nearest].reshape(-1, 2).tolist()]
        # The pieces are exactly the sub-curves between those parameters, in order.
        assert [t0 for t0, _ in intervals] == sorted(t0 for t0, _ in intervals)
        for piece, (t0, t1) in zip(pieces, intervals, strict=True):
            assert 0.0 <= t0 < t1 <= 1.0
            np.testing.assert_allclose(cut.points[piece], split_cubic(curve, t0, t1), atol=1e-9)
            # (a) Every piece lies outside the outline (away from its ends).
            inner = bezier(cut.points[piece], np.linspace(1e-3, 1 - 1e-3, 200))
            assert not inside_outline(inner, polygons).any()
            # (b) Piece ends that are not stroke ends lie on the outline.
            for t, end in ((t0, cut.points[piece][0]), (t1, cut.points[piece][3])):
                if t not in (0.0, 1.0):
                    assert distance_to_polygons(end[None], polygons)[0] < tolerance
                    np.testing.assert_allclose(end, bezier(curve, np.array([t]))[0], atol=1e-9)
        # (c) Union of pieces == curve outside the outline, away from crossings.
        points = bezier(curve, samples)
        outside = ~inside_outline(points, polygons)
        covered = np.zeros(len(samples), bool)
        for t0, t1 in intervals:
            covered |= (samples >= t0) & (samples <= t1)
        if len(crossings):
            clear = np.abs(samples[:, None] - crossings[None]).min(axis=1) > 1e-3
        else:
            clear = np.ones(len(samples), bool)
        assert np.array_equal(covered[clear], outside[clear])
    # The random set exercises every case.
    assert whole_count >= 5 and cut_count > 20 and vanished >= 1


def test_cut_strokes_keeps_outside_curves_and_drops_inside_ones():
    polygons = [SQUARE]
    outside = np.array([[0, 150], [50, 120], [250, 180], [300, 130]], dtype=float)
    inside = np.array([[110, 10], [190, 30], [120, 90], [180, 70]], dtype=float)
    strokes = StrokeSet(np.stack([outside, inside]), [1.5, 2.5], 300, 200, ["out", "in"])
    cut = cut_strokes(strokes, polygons)
    assert cut.names == ["out"]
    assert np.array_equal(cut.points[0], outside) and cut.widths.tolist() == [1.5]
    # No outline: nothing changes. No strokes: an empty set in the same frame.
    same = cut_strokes(strokes, [])
    assert same.names == ["out", "in"] and np.array_equal(same.points, strokes.points)
    empty = cut_strokes(StrokeSet(np.zeros((0, 4, 2)), np.zeros(0), 300, 200), polygons)
    assert len(empty) == 0 and empty.points.shape == (0, 4, 2) and (empty.width, empty.height) == (300, 200)


def test_cut_strokes_performance_on_a_large_mask():
    rows, cols = np.mgrid[:800, :1000]
    mask = ((cols - 420) / 300.0) ** 2 + ((rows - 380) / 250.0) ** 2 <= 1.0
    mask |= (cols > 650) & (cols < 950) & (rows > 100) & (rows < 700)
    mask &= ~(((cols - 420) / 80.0) ** 2 + ((rows - 380) / 60.0) ** 2 <= 1.0)  # a hole
    rng = np.random.default_rng(3)
    strokes = StrokeSet(rng.uniform(0, [2000, 1600], (64, 4, 2)), rng.uniform(1, 4, 64), 2000.0, 1600.0)
    start = time.perf_counter()
    polygons = mask_outline(mask, 2000.0, 1600.0)
    cut = cut_strokes(strokes, polygons)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0
    assert len(polygons) == 2
    assert len(cut) > 0


def test_trim_to_frame_keeps_exactly_the_parts_inside_the_image():
    """A 100 x 60 frame: a stroke inside stays whole, one crossing the right edge is cut at
    x = 100 (the same curve up to there), one wholly outside vanishes, one leaving and coming
    back in through the top edge keeps its two inside pieces; widths and names carry over."""
    inside = np.array([[10, 10], [20, 30], [40, 30], [50, 10]], dtype=float)
    crossing = np.array([[60, 30], [90, 30], [120, 30], [150, 30]], dtype=float)
    outside = np.array([[-50, -40], [-30, -45], [-20, -30], [-10, -20]], dtype=float)
    looping = np.array([[20, 20], [30, -60], [70, -60], [80, 20]], dtype=float)
    strokes = StrokeSet(np.stack([inside, crossing, outside, looping]), np.array([1.0, 2.0, 3.0, 4.0]),
                        100, 60, ["stroke-0", "stroke-1", "stroke-2", "stroke-3"])
    trimmed = trim_to_frame(strokes)
    assert trimmed.names == ["stroke-0", "stroke-1.0", "stroke-3.0", "stroke-3.1"]
    assert list(trimmed.widths) == [1.0, 2.0, 4.0, 4.0]
    assert trimmed.stroke_count == 3
    np.testing.assert_array_equal(trimmed.points[0], inside)
    np.testing.assert_allclose(trimmed.points[1][[0, 3]], [[60, 30], [100, 30]], atol=1e-9)
    for piece in trimmed.points:  # every point of every piece, not only the ends, is inside
        samples = bezier(piece, np.linspace(0, 1, 101))
        assert (samples >= -1e-9).all() and (samples[:, 0] <= 100 + 1e-9).all()
        assert (samples[:, 1] <= 60 + 1e-9).all()
    for end in trimmed.points[2:][:, [0, 3]].reshape(-1, 2):
        assert end[1] == pytest.approx(0, abs=1e-9) or end[1] == pytest.approx(20)
    assert len(trim_to_frame(StrokeSet(np.zeros((0, 4, 2)), 1.0, 100, 60))) == 0
