"""Cutting background strokes at the outline of the foreground object, exactly.

A scene sketch is composed of object strokes and background strokes. In the combined SVG the
background strokes must stop at the object's outline: each open cubic Bézier is split at its
crossings with the outline of the object mask, and the pieces inside the object are dropped.
Nothing is rasterised: the outline is a set of polygons, the crossings are roots of cubic
polynomials, and every surviving piece is the exact sub-curve of its stroke.

Frame: everything here is in the **image pixel frame** (x right, y down) of the stroke set,
a `width` x `height` viewBox; the mask may have any resolution and is scaled onto that frame.

Pipeline:

1. `mask_outline` traces the pixel boundary of the mask (holes included) and simplifies its
   staircases into closed polygons.
2. `crossing_parameters` substitutes the cubic into the line equation of every nearby polygon
   edge and solves the resulting cubic polynomials in t, batched over edges.
3. `cut_strokes` classifies the intervals between consecutive crossings by their parameter
   midpoint (even-odd rule, `inside_outline`) and keeps each maximal outside run as a cubic
   (`split_cubic`).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..sketch.strokes import StrokeSet

#: Simplification tolerance of `mask_outline`, in mask pixels: the simplified polygon stays
#: within this of the pixel boundary. Just above the 0.71 px by which the corners of a 45-degree
#: staircase stray from its diagonal, so that such staircases collapse into single edges.
OUTLINE_EPSILON = 0.75
#: Crossing parameters closer than this are one crossing (the same root found on two edges
#: meeting at a vertex); crossings this close to t = 0 or 1 are the stroke's own ends.
T_EPSILON = 1e-9
#: Pieces whose control polygon (an upper bound of their arc length) is shorter than this, in
#: pixels, are dropped: they are invisible and only arise from grazing contacts.
MIN_PIECE_LENGTH = 1e-3
#: Coefficients below this fraction of a polynomial's largest one count as zero when choosing
#: its degree; Newton polishing on the full polynomial then absorbs what was neglected.
_DEGREE_TOLERANCE = 1e-10
#: Eigenvalues with |imaginary part| up to this are taken as real: a double root (a tangent
#: touch) comes out of the eigen-solver as a pair split by ~sqrt(machine epsilon).
_IMAGINARY_TOLERANCE = 1e-7
#: Slack, as a fraction of the edge, on the test that a root lies within its edge segment, so
#: that a crossing exactly at a vertex is found on at least one of its two edges.
_SEGMENT_TOLERANCE = 1e-9
#: Point x edge pairs per chunk of `inside_outline`, bounding its temporary memory (~100 MB).
_INSIDE_CHUNK = 2**21


# --- polygons ----------------------------------------------------------------------------------


def mask_outline(
    mask: np.ndarray, image_width: float, image_height: float, *, epsilon: float = OUTLINE_EPSILON
) -> list[np.ndarray]:
    """Closed polygons tracing the boundary of a binary mask, in the image pixel frame.

    mask: (H, W) bool (or 0/1) covering the whole `image_width` x `image_height` image at its own
    resolution: mask pixel (i, j) covers [j, j + 1] x [i, i + 1] scaled by image_width / W,
    image_height / H. Returns a list of (K, 2) float64 polygons (x right, y down; closed
    implicitly: the last vertex joins the first), one per boundary component, hole boundaries
    included, so that the even-odd rule over all of them (`inside_outline`) is the mask.

    Every vertex lies on the true pixel boundary and every edge within `epsilon` mask px of it,
    while staircases collapse into long straight edges: a 2000 x 2000 disc needs under a
    thousand edges rather than tens of thousands. Components so thin that simplification would
    flatten them (1 px wide lines, single pixels) keep their unsimplified outline instead.
    """
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    height, width = mask.shape
    if not mask.any():
        return []
    # Trace the pixel boundary itself, not the centres of boundary pixels (what findContours
    # gives on the mask, half a pixel inside): on a grid of doubled resolution, cell (2i+1, 2j+1)
    # is pixel (i, j), even rows/columns are pixel edges and corners, and a 3x3 dilation marks the
    # edges and corners of every foreground pixel (the closure of the foreground). The border
    # cells of that closure lie exactly on pixel edges: grid index k is mask coordinate k / 2.
    # One more cell of zero padding on every side keeps image-edge boundaries inside the array.
    grid = np.zeros((2 * height + 3, 2 * width + 3), np.uint8)
    grid[2 : 2 * height + 1 : 2, 2 : 2 * width + 1 : 2] = mask
    grid = cv2.dilate(grid, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(grid, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    scale = np.array([image_width / width, image_height / height])
    polygons = []
    for contour in contours:
        # Douglas-Peucker keeps a subset of the traced cells, so vertices stay on the boundary.
        simplified = cv2.approxPolyDP(contour, 2.0 * epsilon, True)
        if len(simplified) < 3:
            # Only collinear points dropped: exact, and a thin line keeps its area.
            simplified = cv2.approxPolyDP(contour, 0.0, True)
        if len(simplified) < 3:
            continue
        polygons.append((simplified[:, 0, :].astype(np.float64) - 1.0) / 2.0 * scale)
    return polygons


def _edges(polygons: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All polygon edges as (E, 2) start and (E, 2) end points (each polygon closed)."""
    polygons = [np.asarray(polygon, dtype=np.float64).reshape(-1, 2) for polygon in polygons]
    polygons = [polygon for polygon in polygons if len(polygon) >= 2]
    if not polygons:
        empty = np.zeros((0, 2))
        return empty, empty
    starts = np.concatenate(polygons)
    ends = np.concatenate([np.roll(polygon, -1, axis=0) for polygon in polygons])
    return starts, ends


def _inside(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(P, 2) points -> (P,) bool: odd number of edges crossed by a ray towards +x."""
    inside = np.zeros(len(points), dtype=bool)
    if len(starts) == 0 or len(points) == 0:
        return inside
    delta_y = ends[:, 1] - starts[:, 1]
    # x-advance per unit y along each edge; horizontal edges never straddle a ray (the
    # half-open test below), so their placeholder slope is never used.
    slope = (ends[:, 0] - starts[:, 0]) / np.where(delta_y == 0.0, 1.0, delta_y)
    rows = max(1, _INSIDE_CHUNK // len(starts))
    for first in range(0, len(points), rows):
        x = points[first : first + rows, 0:1]
        y = points[first : first + rows, 1:2]
        # Half-open in y, so a ray through a vertex counts exactly one of its two edges.
        straddles = (starts[:, 1] > y) != (ends[:, 1] > y)
        crosses = straddles & (x < starts[:, 0] + (y - starts[:, 1]) * slope)
        inside[first : first + rows] = np.count_nonzero(crosses, axis=1) % 2 == 1
    return inside


def inside_outline(points: np.ndarray, polygons: list[np.ndarray]) -> np.ndarray:
    """Whether points lie inside the outline: (..., 2) points -> (...) bool.

    Even-odd rule over all polygons together (so a hole boundary inside an outer boundary makes
    its points outside), vectorised over points and edges. Points exactly on an edge may go
    either way.
    """
    points = np.asarray(points, dtype=np.float64)
    shape = points.shape[:-1]
    return _inside(points.reshape(-1, 2), *_edges(polygons)).reshape(shape)


# --- cubics ------------------------------------------------------------------------------------


def _bezier(curve: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Points of a (4, 2) cubic at parameters t (M,) -> (M, 2) (Bernstein form)."""
    t = np.asarray(t, dtype=np.float64)[:, None]
    s = 1.0 - t
    return s**3 * curve[0] + 3.0 * s * s * t * curve[1] + 3.0 * s * t * t * curve[2] + t**3 * curve[3]


def _blossom(curve: np.ndarray, u1: float, u2: float, u3: float) -> np.ndarray:
    """The cubic's blossom (polar form) at (u1, u2, u3): de Casteljau with one parameter per level."""
    level = curve
    for u in (u1, u2, u3):
        level = (1.0 - u) * level[:-1] + u * level[1:]
    return level[0]


def split_cubic(curve: np.ndarray, t0: float, t1: float) -> np.ndarray:
    """Exact sub-curve of a (4, 2) cubic for parameters [t0, t1]: its (4, 2) control points.

    The control points of the re-parametrised piece are the blossom values f(t0, t0, t0),
    f(t0, t0, t1), f(t0, t1, t1), f(t1, t1, t1), so that piece(s) = curve(t0 + s (t1 - t0)).
    The end points are the de Casteljau points of the curve at t0 and t1; [0, 1] returns the
    curve itself, bit for bit.
    """
    curve = np.asarray(curve, dtype=np.float64).reshape(4, 2)
    return np.stack(
        [
            _blossom(curve, t0, t0, t0),
            _blossom(curve, t0, t0, t1),
            _blossom(curve, t0, t1, t1),
            _blossom(curve, t1, t1, t1),
        ]
    )


def _horner(coefficients: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values and derivatives of cubics (R, 4) [a3, a2, a1, a0] at t (R,)."""
    a3, a2, a1, a0 = coefficients.T
    value = ((a3 * t + a2) * t + a1) * t + a0
    derivative = (3.0 * a3 * t + 2.0 * a2) * t + a1
    return value, derivative


def _polish(coefficients: np.ndarray, t: np.ndarray, steps: int = 3) -> np.ndarray:
    """Newton steps on the full cubics, each kept only where it lowers |value|.

    The eigen-solver's roots are accurate relative to the companion matrix's norm, which is large
    when the leading coefficient is small; a few guarded Newton steps restore full precision.
    """
    for _ in range(steps):
        value, derivative = _horner(coefficients, t)
        safe = np.where(derivative == 0.0, 1.0, derivative)
        candidate = np.where(derivative == 0.0, t, t - value / safe)
        better = np.abs(_horner(coefficients, candidate)[0]) < np.abs(value)
        t = np.where(better, candidate, t)
    return t


def _real_roots(coefficients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real roots of cubics (R, 4) [a3, a2, a1, a0], batched: (roots (M,), their row (M,)).

    Each row is solved at its effective degree: companion-matrix eigenvalues for cubics, the
    cancellation-free formula for quadratics, division for lines; rows that vanish identically
    (a curve lying along the edge's line) have no isolated root and give none.
    """
    scale = np.abs(coefficients).max(axis=1, keepdims=True)
    normed = coefficients / np.where(scale == 0.0, 1.0, scale)
    significant = np.abs(normed) > _DEGREE_TOLERANCE
    roots: list[np.ndarray] = []
    owners: list[np.ndarray] = []

    cubic = np.flatnonzero(significant[:, 0])
    if len(cubic):
        a3, a2, a1, a0 = (normed[cubic] / normed[cubic, :1]).T
        companion = np.zeros((len(cubic), 3, 3))
        companion[:, 0, :] = -np.stack([a2, a1, a0], axis=1)
        companion[:, 1, 0] = 1.0
        companion[:, 2, 1] = 1.0
        eigenvalues = np.linalg.eigvals(companion)  # (C, 3)
        real = np.abs(eigenvalues.imag) <= _IMAGINARY_TOLERANCE * np.maximum(1.0, np.abs(eigenvalues))
        row, _ = np.nonzero(real)
        roots.append(eigenvalues.real[real])
        owners.append(cubic[row])

    quadratic = np.flatnonzero(~significant[:, 0] & significant[:, 1])
    if len(quadratic):
        _, a, b, c = normed[quadratic].T
        discriminant = b * b - 4.0 * a * c
        # A slightly negative discriminant is a double root (tangency) blurred by rounding.
        discriminant = np.where(discriminant > -1e-12 * (b * b + np.abs(4.0 * a * c)), discriminant, np.nan)
        real = ~np.isnan(discriminant)
        a, b, c, discriminant = a[real], b[real], c[real], np.maximum(discriminant[real], 0.0)
        q = -0.5 * (b + np.copysign(np.sqrt(discriminant), b))
        first = q / a
        second = np.where(q == 0.0, first, c / np.where(q == 0.0, 1.0, q))
        roots += [first, second]
        owners += [quadratic[real], quadratic[real]]

    linear = np.flatnonzero(~significant[:, 0] & ~significant[:, 1] & significant[:, 2])
    if len(linear):
        roots.append(-normed[linear, 3] / normed[linear, 2])
        owners.append(linear)

    if not roots:
        return np.zeros(0), np.zeros(0, dtype=np.intp)
    root = np.concatenate(roots)
    owner = np.concatenate(owners)
    return _polish(coefficients[owner], root), owner


def _crossings(curve: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """`crossing_parameters` against pre-assembled (E, 2) edge start and end points."""
    curve = np.asarray(curve, dtype=np.float64).reshape(4, 2)
    if len(starts) == 0:
        return np.zeros(0)
    # Bounding-box prefilter: the curve lies in its control points' hull, hence in their box.
    low, high = curve.min(axis=0), curve.max(axis=0)
    slack = 1e-9 * (1.0 + np.abs(curve).max())
    near = np.all(
        (np.minimum(starts, ends) <= high + slack) & (np.maximum(starts, ends) >= low - slack), axis=1
    )
    starts, ends = starts[near], ends[near]
    if len(starts) == 0:
        return np.zeros(0)
    # Power basis of the curve: B(t) = c0 + c1 t + c2 t^2 + c3 t^3.
    p0, p1, p2, p3 = curve
    power = np.stack([p3 - 3.0 * p2 + 3.0 * p1 - p0, 3.0 * (p2 - 2.0 * p1 + p0), 3.0 * (p1 - p0), p0])
    # Line of each edge: n . (x - start) = 0 with n normal to the edge; substituting B(t) gives the
    # cubic n . c3 t^3 + n . c2 t^2 + n . c1 t + n . (c0 - start) in t, one per edge.
    direction = ends - starts
    normal = np.stack([-direction[:, 1], direction[:, 0]], axis=1)
    coefficients = normal @ power.T  # (E, 4)
    coefficients[:, 3] -= np.einsum("ed,ed->e", normal, starts)
    root, owner = _real_roots(coefficients)
    keep = (root > T_EPSILON) & (root < 1.0 - T_EPSILON)
    root, owner = root[keep], owner[keep]
    if len(root) == 0:
        return np.zeros(0)
    # The root is on the edge's line; keep it if its point is within the edge segment.
    length2 = np.einsum("ed,ed->e", direction, direction)[owner]
    along = np.einsum("md,md->m", _bezier(curve, root) - starts[owner], direction[owner])
    within = (along >= -_SEGMENT_TOLERANCE * length2) & (along <= (1.0 + _SEGMENT_TOLERANCE) * length2)
    root = np.sort(root[within & (length2 > 0.0)])
    if len(root) == 0:
        return root
    # One crossing found on two edges (at their shared vertex) comes out twice.
    return root[np.concatenate([[True], np.diff(root) > T_EPSILON])]


def crossing_parameters(curve: np.ndarray, polygons: list[np.ndarray]) -> np.ndarray:
    """Sorted parameters t in (0, 1) where a (4, 2) cubic crosses a polygon edge: (M,) float64.

    Exact up to rounding: the cubic is substituted into each edge's line equation, the cubic
    polynomials in t are solved for all edges at once (only edges whose bounding box meets the
    curve's control box), real roots in (0, 1) are kept where their point lies within the edge
    segment, and roots within `T_EPSILON` of each other (a crossing at a vertex, found on both
    its edges) are merged. A tangent touch may give a root; classifying the intervals between
    crossings by their midpoints (as `cut_strokes` does) makes it harmless.
    """
    return _crossings(curve, *_edges(polygons))


# --- cutting -----------------------------------------------------------------------------------


def _outside_runs(curve: np.ndarray, crossings: np.ndarray, outside: np.ndarray) -> list[tuple[float, float]]:
    """Maximal outside parameter runs, given the intervals' outside flags, tiny pieces dropped.

    crossings: (M,) sorted parameters in (0, 1); outside: (M + 1,) bool, one per interval of
    [0, t_1, ..., t_M, 1]. Adjacent outside intervals merge (a tangent touch or a duplicate root
    splits nothing).
    """
    breaks = np.concatenate([[0.0], crossings, [1.0]])
    runs: list[tuple[float, float]] = []
    start = None
    for index, is_outside in enumerate(outside):
        if is_outside and start is None:
            start = breaks[index]
        if not is_outside and start is not None:
            runs.append((float(start), float(breaks[index])))
            start = None
    if start is not None:
        runs.append((float(start), 1.0))
    kept = []
    for t0, t1 in runs:
        if t1 - t0 <= T_EPSILON:
            continue
        piece = split_cubic(curve, t0, t1)
        if np.linalg.norm(np.diff(piece, axis=0), axis=1).sum() < MIN_PIECE_LENGTH:
            continue
        kept.append((t0, t1))
    return kept


def _interval_midpoints(curve: np.ndarray, crossings: np.ndarray) -> np.ndarray:
    """Points (M + 1, 2) of the curve at the parameter midpoints of [0, t_1, ..., t_M, 1]."""
    breaks = np.concatenate([[0.0], crossings, [1.0]])
    return _bezier(curve, 0.5 * (breaks[:-1] + breaks[1:]))


def cut_strokes(strokes: StrokeSet, polygons: list[np.ndarray]) -> StrokeSet:
    """The parts of each stroke outside the outline, as a new stroke set in the same frame.

    polygons: the outline in the strokes' frame (e.g. `mask_outline(mask, strokes.width,
    strokes.height)`). Every maximal outside interval of a stroke becomes its own cubic, the
    exact sub-curve, with the stroke's width. A stroke with no part inside keeps its control
    points and its name 'NAME'; the pieces of a cut stroke are named 'NAME.0', 'NAME.1', ... in
    parameter order; a stroke entirely inside vanishes. Pieces shorter than `T_EPSILON` in
    parameter or `MIN_PIECE_LENGTH` px in length are dropped.
    """
    starts, ends = _edges(polygons)
    crossings = [_crossings(curve, starts, ends) for curve in strokes.points]
    # Classify every interval of every stroke in one vectorised even-odd test.
    midpoints = [_interval_midpoints(curve, ts) for curve, ts in zip(strokes.points, crossings, strict=True)]
    if midpoints:
        outside_all = ~_inside(np.concatenate(midpoints), starts, ends)
    else:
        outside_all = np.zeros(0, dtype=bool)
    bounds = np.cumsum([0] + [len(points) for points in midpoints])

    points, widths, names = [], [], []
    for index, (curve, ts) in enumerate(zip(strokes.points, crossings, strict=True)):
        outside = outside_all[bounds[index] : bounds[index + 1]]
        runs = _outside_runs(curve, ts, outside)
        name, stroke_width = strokes.names[index], strokes.widths[index]
        if runs == [(0.0, 1.0)]:
            points.append(curve)
            widths.append(stroke_width)
            names.append(name)
            continue
        for piece_index, (t0, t1) in enumerate(runs):
            points.append(split_cubic(curve, t0, t1))
            widths.append(stroke_width)
            names.append(f"{name}.{piece_index}")
    return StrokeSet(
        np.array(points, dtype=np.float64).reshape(-1, 4, 2),
        np.array(widths, dtype=np.float64),
        strokes.width,
        strokes.height,
        names,
    )


def trim_to_frame(strokes: StrokeSet) -> StrokeSet:
    """The parts of each stroke inside its frame (0..width x 0..height), cut exactly as
    `cut_strokes` cuts at an outline, so every consumer of a cell gets what its thumbnail
    shows (strokes may leave the image where the canvas pads it, or when pushed off it).

    The frame is a hole in a rectangle around every control point (a cubic stays inside
    their hull): under the even-odd rule its inside is what `cut_strokes` keeps.
    """
    if len(strokes) == 0:
        return strokes
    width, height = float(strokes.width), float(strokes.height)
    low = min(float(strokes.points.min()), 0.0) - 1.0
    high = max(float(strokes.points.max()), width, height) + 1.0
    around = np.array([[low, low], [high, low], [high, high], [low, high]])
    frame = np.array([[0.0, 0.0], [width, 0.0], [width, height], [0.0, height]])
    return cut_strokes(strokes, [around, frame])
