"""Time forward + backward of the stroke renderer on 224x224 canvases.

Two stroke populations (see docs/renderer.md):
- "initial": CLIPasso's initialisation: a random start, then each next control point moves
  by 0.05 * (U(0, 1) - 0.5) of the canvas per axis (bounding boxes ~5 px mean, ~15 px max).
- "long": trained-like strokes, each with its own step scale U(15, 90) px (bounding boxes
  ~35 px mean, ~100 px max): the case where the renderer's cost is decided.

Run from the repository root: ``python -m bench.render_bench``.
"""

from __future__ import annotations

import statistics
import time

import torch

from clipascene_core.sketch.render import bezier_samples, render_strokes

CANVAS = 224
STROKE_WIDTH = 3.0  # CLIPasso's diffvg half-width 1.5 as a full width


def make_strokes(
    batch: int, strokes: int, stroke_size: str, generator: torch.Generator
) -> torch.Tensor:
    """Random (batch, strokes, 4, 2) control points in 224x224 canvas pixels.

    stroke_size: "initial" (CLIPasso's initialisation) or "long" (trained-like).
    """
    start = torch.rand(batch, strokes, 1, 2, generator=generator) * CANVAS
    if stroke_size == "initial":
        scale = torch.full((batch, strokes, 1, 1), 0.05 * CANVAS)
    elif stroke_size == "long":
        scale = 15.0 + 75.0 * torch.rand(batch, strokes, 1, 1, generator=generator)
    else:
        raise ValueError(f"stroke_size must be 'initial' or 'long'; got {stroke_size!r}.")
    steps = (torch.rand(batch, strokes, 3, 2, generator=generator) - 0.5) * scale
    return torch.cat([start, start + steps.cumsum(2)], dim=2)


def _bbox_sides(points: torch.Tensor) -> torch.Tensor:
    """Longer side in pixels of each stroke's sampled bounding box, flattened."""
    samples = bezier_samples(points, 32)
    return (samples.amax(-2) - samples.amin(-2)).amax(-1).flatten()


def time_renderer(
    batch_sizes: tuple[int, ...] = (5, 15), strokes: int = 64, repeats: int = 5
) -> list[dict]:
    """Median milliseconds of render + MSE + backward per (batch size, stroke population).

    Returns rows {"batch": int, "stroke_size": str, "ms_median": float}; stroke_size names
    the population and its measured mean / max bounding-box side in pixels.
    """
    rows = []
    for stroke_size in ("initial", "long"):
        for batch in batch_sizes:
            generator = torch.Generator().manual_seed(batch)
            points = make_strokes(batch, strokes, stroke_size, generator).requires_grad_()
            widths = torch.full((batch, strokes), STROKE_WIDTH, requires_grad=True)
            target = torch.rand(batch, CANVAS, CANVAS, generator=generator)
            sides = _bbox_sides(points.detach())
            label = f"{stroke_size} ({sides.mean():.0f}/{sides.max():.0f} px)"
            timings = []
            for attempt in range(repeats + 1):  # the first run warms up allocators and caches
                begin = time.perf_counter()
                image = render_strokes(points, widths, CANVAS, CANVAS)
                torch.nn.functional.mse_loss(image, target).backward()
                elapsed = time.perf_counter() - begin
                points.grad = widths.grad = None
                if attempt:
                    timings.append(1000.0 * elapsed)
            rows.append(
                {"batch": batch, "stroke_size": label, "ms_median": statistics.median(timings)}
            )
    return rows


if __name__ == "__main__":
    print(
        f"render_strokes forward+backward, {CANVAS}x{CANVAS}, 64 strokes, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"{'batch':>5}  {'strokes (mean/max bbox)':<26} {'ms (median)':>11}")
    for row in time_renderer():
        print(f"{row['batch']:>5}  {row['stroke_size']:<26} {row['ms_median']:>11.1f}")
