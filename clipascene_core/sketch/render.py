"""Differentiable rasteriser for open cubic Bézier strokes: black ink on white paper.

Frame: canvas pixels, x to the right, y down; the centre of pixel row i, column j is at
(j + 0.5, i + 0.5). Widths are full visible widths (SVG ``stroke-width``); diffvg's
``stroke_width`` is half of that.

How the pure-PyTorch renderer works (measurements in ``docs/renderer.md``):

1. Each cubic is sampled at K points with the Bernstein matrix, giving K - 1 segments.
2. Each stroke's window (the bounding box of its samples widened by half-width + filter
   half-width + 1 px, clipped to the canvas) is cut into square tiles of 8x8 pixels. Each
   segment, its box widened by the reach (half-width + filter half-width), names the tiles
   it can touch; only named tiles are searched, each only over the segments that named it.
   Both cuts are exact: a pixel farther than reach from every segment has zero coverage and
   zero gradient, and a pixel within reach finds its true closest segment among its tile's
   candidates. Long strokes gain the most: a 100 px diagonal stroke touches a thin band of
   its bounding box, and each pixel is near only a few of its segments.
3. The closest segment of each pixel is found without autograd, in chunks of at most
   ``chunk_elements`` pixel x segment pairs; only pixels with non-zero coverage survive.
4. The exact distance to that segment is then computed with autograd (its gradient equals
   that of the minimum over all segments); clamping the projection parameter to [0, 1]
   gives round caps and joins.
5. Coverage = F(r - d) - F(-r - d), F the integral of a 1-D pixel filter (a smoothstep
   ramp 1.25 px wide, the best match to box-filtered ground truth).
6. Paper brightness = prod_i (1 - coverage_i), summed as log1p(-coverage) with one
   ``index_add`` into a flat canvas, then exponentiated: one cheap backward.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..config import check_renderer

#: Width in pixels of the smoothstep ramp that anti-aliases stroke edges.
FILTER_WIDTH = 1.25
_FILTER_HALF = FILTER_WIDTH / 2
#: Side of the square pixel tiles windows are cut into. Measured on 2 CPU cores: 8 beats 4
#: (fewer, larger tensor operations outweigh the extra pixels searched around thin strokes).
_TILE = 8
#: Pixel x segment pairs per chunk of the closest-segment search.
_DEFAULT_CHUNK_CPU = 2**20
_DEFAULT_CHUNK_CUDA = 2**25
#: Coverage is capped below 1 so that log1p(-coverage) stays finite (float32-safe).
_COVERAGE_MAX = 1.0 - 1e-6
#: Floor for squared lengths: keeps t finite for degenerate segments and sqrt's gradient
#: finite at a pixel centre lying exactly on the curve (coverage is flat there anyway).
_TINY = 1e-12
#: Slack in pixels added to the reach of the (exact) culling tests, so that float rounding
#: never drops a pixel whose coverage is not already zero.
_CULL_SLACK = 1e-3

Renderer = Callable[..., torch.Tensor]


def bezier_samples(points: torch.Tensor, k: int) -> torch.Tensor:
    """Points on cubic Béziers at t = linspace(0, 1, k), via the Bernstein matrix.

    points: (..., 4, 2) control points, any frame. Returns (..., k, 2) in the same frame.
    """
    t = torch.linspace(0.0, 1.0, k, dtype=points.dtype, device=points.device)
    s = 1.0 - t
    bernstein = torch.stack([s**3, 3.0 * t * s**2, 3.0 * t**2 * s, t**3], dim=-1)  # (k, 4)
    return bernstein @ points


def _validate(
    points: torch.Tensor, widths: torch.Tensor, height: int, width: int, samples_per_curve: int
) -> None:
    if points.dim() != 4 or points.shape[-2:] != (4, 2):
        raise ValueError(
            f"points must have shape (B, N, 4, 2) (batch, strokes, control points, xy); "
            f"got {tuple(points.shape)}."
        )
    if widths.shape != points.shape[:2]:
        raise ValueError(
            f"widths must have shape (B, N) = {tuple(points.shape[:2])} to match points; "
            f"got {tuple(widths.shape)}."
        )
    if height < 1 or width < 1:
        raise ValueError(f"The canvas must be at least 1x1 pixels; got {height}x{width}.")
    if samples_per_curve < 2:
        raise ValueError(f"samples_per_curve must be at least 2; got {samples_per_curve}.")


def _segments(points: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, 4, 2) -> segment starts and vectors, each (B, N, k - 1, 2), canvas pixels."""
    samples = bezier_samples(points, k)
    starts = samples[..., :-1, :]
    return starts, samples[..., 1:, :] - starts


def _edge_integral(x: torch.Tensor) -> torch.Tensor:
    """F: integral of the pixel filter, 0 below -FILTER_WIDTH/2, 1 above, smoothstep between."""
    u = (x / FILTER_WIDTH + 0.5).clamp(0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def _coverage(distance: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Filtered coverage of a band of half-width `radius` at `distance` from its centre line.

    The second term matters for thin strokes (radius < filter half-width): without it a
    hairline would cover as much as a stroke as wide as the filter.
    """
    return _edge_integral(radius - distance) - _edge_integral(-radius - distance)


@torch.no_grad()
def _closest_segments(
    starts: torch.Tensor,
    deltas: torch.Tensor,
    reach: torch.Tensor,
    height: int,
    width: int,
    chunk_elements: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (stroke, pixel) pair with non-zero coverage and the pixel's closest segment.

    starts, deltas: (S, M, 2) segment starts and vectors of S = B*N strokes, canvas pixels.
    reach: (S,) distance in pixels beyond which a stroke covers nothing (half-width + filter
    half-width). Returns flat stroke index (P,), flat segment index into S*M (P,), and pixel
    column x (P,) and row y (P,), all int64.
    """
    device = starts.device
    num_strokes, num_segments = starts.shape[:2]
    empty = torch.zeros(0, dtype=torch.long, device=device)
    if num_strokes == 0 or num_segments == 0:
        return empty, empty, empty, empty

    reach = reach + _CULL_SLACK
    # Windows in whole pixels: pixel j is inside when its centre j + 0.5 lies within the
    # samples' range widened by reach + 1 px (the extra pixel absorbs rounding).
    ends = starts + deltas
    segment_low = torch.minimum(starts, ends) - reach[:, None, None]  # (S, M, 2)
    segment_high = torch.maximum(starts, ends) + reach[:, None, None]
    last_pixel = torch.tensor([width - 1, height - 1], dtype=starts.dtype, device=device)
    first = torch.ceil(segment_low.amin(1) - 1.5).clamp_min(0.0)  # (S, 2)
    first = torch.minimum(first, last_pixel + 1.0)  # keeps far-off strokes' long() in range
    last = torch.minimum(torch.floor(segment_high.amax(1) + 0.5), last_pixel)
    # Non-finite control points make an empty window rather than a crash in long().
    extent = torch.nan_to_num((last - first + 1.0).clamp_min(0.0), nan=0.0, posinf=0.0)
    tiles_xy = torch.ceil(extent / _TILE).long()  # (S, 2) tiles across, down
    first = torch.nan_to_num(first, nan=0.0, posinf=0.0)
    tiles_per_stroke = tiles_xy[:, 0] * tiles_xy[:, 1]
    tile_end = torch.cumsum(tiles_per_stroke, 0)

    # Candidate (tile, segment) pairs: tiles whose pixel centres overlap the segment's box
    # widened by reach. A pixel farther than reach along either axis is farther in distance,
    # so every pixel with coverage finds its closest segment among its tile's candidates.
    # The pairs are generated sparsely from each segment's tile range: no loop over strokes
    # and no dense tiles x segments test, which would dominate for long strokes.
    origin = first[:, None, :]
    tile_low = torch.ceil((segment_low - origin - (_TILE - 0.5)) / _TILE).clamp_min(0.0)
    tile_high = torch.floor((segment_high - origin - 0.5) / _TILE)
    tile_high = torch.minimum(tile_high, (tiles_xy[:, None, :] - 1).to(starts.dtype))
    span = torch.nan_to_num(tile_high - tile_low + 1.0, nan=0.0, posinf=0.0).clamp_min(0.0)
    tile_low = torch.nan_to_num(tile_low, nan=0.0, posinf=0.0).long().reshape(-1, 2)
    span = span.long().reshape(-1, 2)
    pairs_per_segment = span[:, 0] * span[:, 1]
    total_pairs = int(pairs_per_segment.sum())
    if total_pairs == 0:
        return empty, empty, empty, empty
    pair_segment = torch.repeat_interleave(
        torch.arange(num_strokes * num_segments, device=device),
        pairs_per_segment,
        output_size=total_pairs,
    )
    local = (
        torch.arange(total_pairs, device=device)
        - (torch.cumsum(pairs_per_segment, 0) - pairs_per_segment)[pair_segment]
    )
    pair_span_x = span[pair_segment, 0]
    pair_tile_xy = tile_low[pair_segment] + torch.stack(
        [local % pair_span_x, local // pair_span_x], 1
    )
    pair_stroke = pair_segment // num_segments
    tile = (
        (tile_end - tiles_per_stroke)[pair_stroke]
        + pair_tile_xy[:, 1] * tiles_xy[pair_stroke, 0]
        + pair_tile_xy[:, 0]
    )
    # Sorting by (tile, segment) puts each tile's candidates in one run.
    key = torch.sort(tile * num_segments + pair_segment % num_segments).values
    candidates = key % num_segments
    tiles, counts = torch.unique_consecutive(key // num_segments, return_counts=True)
    run_start = torch.cumsum(counts, 0) - counts
    tile_stroke = torch.searchsorted(tile_end, tiles, right=True)
    local = tiles - (tile_end - tiles_per_stroke)[tile_stroke]
    across = tiles_xy[tile_stroke, 0]
    tile_origin = first.long()[tile_stroke] + _TILE * torch.stack(
        [local % across, local // across], 1
    )

    # Group tiles by how many candidates they search, rounded up a ladder of sizes, so that
    # padding every tile in a chunk to the chunk's largest count wastes little.
    rungs = {
        min(size, num_segments)
        for power in range(num_segments.bit_length() + 1)
        for size in (2**power, 3 * 2**power)
    }  # 1, 2, 3, 4, 6, 8, 12, ... up to num_segments
    ladder = torch.tensor(sorted(rungs), device=device)
    bucket = torch.bucketize(counts, ladder)
    order = torch.argsort(bucket, stable=True)
    bucket_sizes = torch.bincount(bucket, minlength=len(ladder)).tolist()

    found: list[tuple[torch.Tensor, ...]] = []
    begin = 0
    for rung, size in zip(ladder.tolist(), bucket_sizes, strict=True):
        group = order[begin : begin + size]
        begin += size
        step = max(1, chunk_elements // (_TILE * _TILE * rung))
        for start in range(0, size, step):
            chunk = group[start : start + step]
            slots = run_start[chunk, None] + torch.arange(rung, device=device)
            found.append(
                _search_tiles(
                    starts,
                    deltas,
                    reach,
                    tile_stroke[chunk],
                    tile_origin[chunk],
                    candidates[slots.clamp_max(len(candidates) - 1)],
                    counts[chunk],
                    height,
                    width,
                )
            )
    return tuple(torch.cat(parts) for parts in zip(*found, strict=True))  # type: ignore[return-value]


def _segment_distance_sq(
    point: torch.Tensor, start: torch.Tensor, delta: torch.Tensor
) -> torch.Tensor:
    """Squared distance from points (..., 2) to segments start + t * delta, t in [0, 1]."""
    offset = point - start
    t = ((offset * delta).sum(-1) / (delta * delta).sum(-1).clamp_min(_TINY)).clamp(0.0, 1.0)
    gap = offset - t[..., None] * delta
    return (gap * gap).sum(-1)


def _search_tiles(
    starts: torch.Tensor,
    deltas: torch.Tensor,
    reach: torch.Tensor,
    stroke: torch.Tensor,
    origin: torch.Tensor,
    segment: torch.Tensor,
    count: torch.Tensor,
    height: int,
    width: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closest of each tile's candidate segments for every pixel of n tiles (no autograd).

    stroke: (n,) flat stroke index; origin: (n, 2) column and row of each tile's first pixel;
    segment: (n, C) candidate segment indices within the stroke, the first count (n,) valid.
    Returns, for pixels with non-zero coverage, what `_closest_segments` returns.
    """
    num_candidates = segment.shape[1]
    num_segments = starts.shape[1]
    dtype = starts.dtype
    # Tile-local coordinates keep the numbers small, so the expanded form of the squared
    # distance below loses no precision in float32.
    start = starts[stroke[:, None], segment] - origin[:, None, :].to(dtype)  # (n, C, 2)
    delta = deltas[stroke[:, None], segment]
    length_sq = (delta * delta).sum(-1)
    inverse_length_sq = 1.0 / length_sq.clamp_min(_TINY)
    centres = torch.arange(_TILE, dtype=dtype, device=starts.device) + 0.5
    # Separable layout (n, row, column, candidate): x terms vary along columns only, y terms
    # along rows only, so only the few full-size operations below touch n*TILE*TILE*C
    # elements; in-place operations avoid allocating more of them.
    off_x = centres[None, None, :, None] - start[:, None, None, :, 0]
    off_y = centres[None, :, None, None] - start[:, None, None, :, 1]
    delta_x = delta[:, None, None, :, 0]
    delta_y = delta[:, None, None, :, 1]
    invalid = torch.arange(num_candidates, device=starts.device)[None, :] >= count[:, None]
    padding = torch.zeros_like(length_sq).masked_fill_(invalid, math.inf)[:, None, None, :]

    dot = off_x * delta_x + off_y * delta_y
    t = (dot * inverse_length_sq[:, None, None, :]).clamp_(0.0, 1.0)
    # |offset - t delta|^2 = |offset|^2 - t (2 offset.delta - t |delta|^2)
    dot.mul_(2.0).sub_(t * length_sq[:, None, None, :]).mul_(t)
    distance_sq = (off_x * off_x + (off_y * off_y + padding)).sub_(dot)
    closest_sq, closest = distance_sq.min(-1)  # (n, row, column)

    limit = reach[stroke] ** 2
    columns = origin[:, 0, None, None] + torch.arange(_TILE, device=starts.device)[None, None, :]
    rows = origin[:, 1, None, None] + torch.arange(_TILE, device=starts.device)[None, :, None]
    keep = (closest_sq < limit[:, None, None]) & (columns < width) & (rows < height)
    tile, row, column = keep.nonzero(as_tuple=True)
    chosen = segment[tile, closest[tile, row, column]]
    hit_stroke = stroke[tile]
    return (
        hit_stroke,
        hit_stroke * num_segments + chosen,
        origin[tile, 0] + column,
        origin[tile, 1] + row,
    )


def render_strokes(
    points: torch.Tensor,
    widths: torch.Tensor,
    height: int,
    width: int,
    *,
    samples_per_curve: int = 32,
    chunk_elements: int | None = None,
) -> torch.Tensor:
    """Rasterise open cubic Bézier strokes, black ink over white paper.

    points: (B, N, 4, 2) control points in canvas pixels (x to the right, y down; the centre of
        pixel row i, column j is at (j + 0.5, i + 0.5)); float32 or float64.
    widths: (B, N) full visible stroke widths in pixels (the SVG stroke-width; diffvg's
        stroke_width is half of this). A width of 0 draws nothing (used to remove strokes);
        negative widths count as 0.
    samples_per_curve: K points per cubic, giving K - 1 straight segments (32: chord error
        well below 0.1 px for strokes up to ~100 px; 8 is visibly too coarse).
    chunk_elements: cap on pixel x segment pairs per chunk of the closest-segment search,
        which bounds peak memory; None = 2**20 on CPU, 2**25 on CUDA. Results do not depend
        on it beyond float rounding.
    Returns (B, height, width) paper brightness in [0, 1]: 1 = white, 0 = full ink, computed
    as prod_i (1 - coverage_i) with anti-aliased coverage, round caps and joins, in the
    dtype and on the device of `points`. Differentiable w.r.t. points and widths; coverage
    and gradients are zero farther than half-width + 0.625 px from a stroke.
    """
    _validate(points, widths, height, width, samples_per_curve)
    batch, num_strokes = points.shape[:2]
    if chunk_elements is None:
        chunk_elements = _DEFAULT_CHUNK_CUDA if points.is_cuda else _DEFAULT_CHUNK_CPU
    widths = widths.to(points.dtype)

    starts, deltas = _segments(points, samples_per_curve)
    starts = starts.reshape(batch * num_strokes, samples_per_curve - 1, 2)
    deltas = deltas.reshape(batch * num_strokes, samples_per_curve - 1, 2)
    radius = widths.clamp_min(0.0).reshape(-1) / 2.0
    stroke, segment, column, row = _closest_segments(
        starts.detach(),
        deltas.detach(),
        radius.detach() + _FILTER_HALF,
        height,
        width,
        chunk_elements,
    )

    # Exact distance to the chosen segment, now with autograd.
    start = starts.reshape(-1, 2)[segment]
    delta = deltas.reshape(-1, 2)[segment]
    centre = torch.stack([column, row], 1).to(points.dtype) + 0.5
    distance = _segment_distance_sq(centre, start, delta).clamp_min(_TINY).sqrt()
    coverage = _coverage(distance, radius[stroke])
    log_paper = torch.log1p(-coverage.clamp(max=_COVERAGE_MAX))

    pixel = ((stroke // num_strokes) * height + row) * width + column
    canvas = points.new_zeros(batch * height * width).index_add(0, pixel, log_paper)
    return canvas.exp().view(batch, height, width)


def render_strokes_dense(
    points: torch.Tensor,
    widths: torch.Tensor,
    height: int,
    width: int,
    *,
    samples_per_curve: int = 32,
) -> torch.Tensor:
    """Reference implementation: every pixel x every segment, same maths as `render_strokes`.

    Same arguments, frame and result. Memory is B*N*height*width*samples: small canvases only.
    """
    _validate(points, widths, height, width, samples_per_curve)
    batch = points.shape[0]
    widths = widths.to(points.dtype)
    starts, deltas = _segments(points, samples_per_curve)  # (B, N, M, 2)
    rows = torch.arange(height, dtype=points.dtype, device=points.device) + 0.5
    columns = torch.arange(width, dtype=points.dtype, device=points.device) + 0.5
    grid_y, grid_x = torch.meshgrid(rows, columns, indexing="ij")
    centres = torch.stack([grid_x, grid_y], -1).reshape(1, 1, -1, 1, 2)  # (1, 1, HW, 1, 2)
    distance_sq = _segment_distance_sq(centres, starts[:, :, None], deltas[:, :, None])
    distance = distance_sq.amin(-1).clamp_min(_TINY).sqrt()  # (B, N, HW)
    radius = widths.clamp_min(0.0)[..., None] / 2.0
    coverage = _coverage(distance, radius)
    log_paper = torch.log1p(-coverage.clamp(max=_COVERAGE_MAX)).sum(1)
    return log_paper.exp().view(batch, height, width)


def _render_diffvg(
    points: torch.Tensor,
    widths: torch.Tensor,
    height: int,
    width: int,
    *,
    samples_per_curve: int = 32,
    chunk_elements: int | None = None,
) -> torch.Tensor:
    """`render_strokes` through diffvg (2x2 samples per pixel, edge-sampled gradients).

    samples_per_curve and chunk_elements are accepted for signature compatibility and unused.
    diffvg renders on the device pydiffvg is configured for (`pydiffvg.set_use_gpu`).
    """
    import pydiffvg

    _validate(points, widths, height, width, samples_per_curve)
    render = pydiffvg.RenderFunction.apply
    black = torch.tensor([0.0, 0.0, 0.0, 1.0])
    pages = []
    for page_points, page_widths in zip(points.float(), widths.float(), strict=True):
        shapes = [
            pydiffvg.Path(
                num_control_points=torch.tensor([2], dtype=torch.int32),
                points=stroke_points.contiguous(),
                stroke_width=stroke_width / 2.0,  # diffvg's stroke_width is a half-width
                is_closed=False,
            )
            for stroke_points, stroke_width in zip(page_points, page_widths, strict=True)
        ]
        groups = [
            pydiffvg.ShapeGroup(
                shape_ids=torch.tensor([index]), fill_color=None, stroke_color=black
            )
            for index in range(len(shapes))
        ]
        scene = pydiffvg.RenderFunction.serialize_scene(width, height, shapes, groups)
        rgba = render(width, height, 2, 2, 0, None, *scene)  # (H, W, 4), not premultiplied
        alpha = rgba[..., 3]
        # Black ink composited over white paper: brightness = rgb * alpha + (1 - alpha).
        pages.append(rgba[..., 0] * alpha + (1.0 - alpha))
    return torch.stack(pages).to(device=points.device, dtype=points.dtype)


def get_renderer(name: str = "torch") -> Renderer:
    """A callable with `render_strokes`' signature and semantics.

    name: "torch" (the built-in renderer, the default) or "diffvg" (only when asked for, and
    only where `import pydiffvg` works; otherwise a ConfigError says how to get it).
    """
    check_renderer(name)
    return render_strokes if name == "torch" else _render_diffvg
