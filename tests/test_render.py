"""Tests of the differentiable stroke renderer (clipascene_core.sketch.render).

Reference images come from cairo (round caps and joins) at 8x resolution, box-downsampled:
the ground truth for box-filtered anti-aliasing that docs/renderer.md measured against.
"""

from __future__ import annotations

import cairocffi
import numpy as np
import pytest
import torch

from clipascene_core import config
from clipascene_core.config import ConfigError
from clipascene_core.sketch.render import (
    bezier_samples,
    get_renderer,
    render_strokes,
    render_strokes_dense,
)


def cairo_paper(
    points: np.ndarray, widths: np.ndarray, height: int, width: int, scale: int = 8
) -> np.ndarray:
    """Paper brightness (height, width) of strokes (N, 4, 2) drawn by cairo at `scale`x."""
    surface = cairocffi.ImageSurface(cairocffi.FORMAT_A8, width * scale, height * scale)
    context = cairocffi.Context(surface)
    context.scale(scale, scale)
    context.set_line_cap(cairocffi.LINE_CAP_ROUND)
    context.set_line_join(cairocffi.LINE_JOIN_ROUND)
    for stroke, stroke_width in zip(points, widths, strict=True):
        context.set_line_width(float(stroke_width))
        context.move_to(*stroke[0])
        context.curve_to(*stroke[1], *stroke[2], *stroke[3])
        context.stroke()
    surface.flush()
    rows = np.frombuffer(surface.get_data(), np.uint8).reshape(height * scale, -1)
    ink = rows[:, : width * scale].astype(np.float64) / 255.0
    return 1.0 - ink.reshape(height, scale, width, scale).mean(axis=(1, 3))


def random_strokes(
    generator: torch.Generator, batch: int, count: int, height: int, width: int, spread: float
) -> torch.Tensor:
    """(batch, count, 4, 2) random-walk control points starting inside the canvas, pixels."""
    canvas = torch.tensor([width, height], dtype=torch.float64)
    start = torch.rand(batch, count, 1, 2, generator=generator, dtype=torch.float64) * canvas
    steps = torch.rand(batch, count, 3, 2, generator=generator, dtype=torch.float64) - 0.5
    return torch.cat([start, start + (steps * spread).cumsum(2)], dim=2)


def test_bezier_samples_hit_endpoints_and_midpoint() -> None:
    points = torch.tensor([[0.0, 0.0], [0.0, 4.0], [4.0, 4.0], [4.0, 0.0]])
    samples = bezier_samples(points, 3)
    expected = torch.tensor([[0.0, 0.0], [2.0, 3.0], [4.0, 0.0]])
    torch.testing.assert_close(samples, expected)


def test_matches_cairo_reference() -> None:
    generator = torch.Generator().manual_seed(7)
    size = 224
    points = torch.cat(
        [
            random_strokes(generator, 1, 24, size, size, spread=11.2),  # CLIPasso's init size
            random_strokes(generator, 1, 24, size, size, spread=50.0),  # trained-like
        ],
        dim=1,
    )
    widths = torch.tensor([1.5, 3.0], dtype=torch.float64).repeat(24)[None]
    ours = render_strokes(points.float(), widths.float(), size, size)[0].double()
    reference = torch.from_numpy(cairo_paper(points[0].numpy(), widths[0].numpy(), size, size))

    inked = ((1.0 - ours) > 1e-3) | ((1.0 - reference) > 1e-3)
    near = torch.nn.functional.max_pool2d(inked[None, None].double(), 7, 1, 3)[0, 0] > 0
    mean_error = (ours - reference).abs()[near].mean().item()
    ink, reference_ink = (1.0 - ours).sum().item(), (1.0 - reference).sum().item()
    assert mean_error <= 0.03
    assert abs(ink - reference_ink) <= 0.05 * reference_ink


def test_hairline_is_fainter_than_filter_width() -> None:
    # A stroke thinner than the filter must not look as dark as a 1.25 px one.
    points = torch.tensor([[[[2.0, 8.3], [8.0, 8.3], [14.0, 8.3], [20.0, 8.3]]]])
    thin = render_strokes(points, torch.tensor([[0.2]]), 16, 24)
    ink_per_px = (1.0 - thin).sum() / 18.0  # ink per pixel of length, caps aside
    assert 0.15 < ink_per_px.item() < 0.25


def test_gradcheck_float64() -> None:
    points = torch.tensor(
        [
            [
                [[2.13, 3.07], [5.21, 0.93], [7.62, 9.81], [10.37, 6.29]],
                [[9.71, 1.83], [6.57, 4.19], [3.33, 7.41], [2.79, 10.61]],
            ]
        ],
        dtype=torch.float64,
        requires_grad=True,
    )
    widths = torch.tensor([[2.37, 1.21]], dtype=torch.float64, requires_grad=True)

    def paper(points: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
        return render_strokes(points, widths, 12, 13, samples_per_curve=12)

    assert torch.autograd.gradcheck(paper, (points, widths), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    ("dtype", "samples_per_curve"),
    [(torch.float64, 32), (torch.float32, 32), (torch.float64, 2), (torch.float64, 100)],
)
def test_windowed_matches_dense(dtype: torch.dtype, samples_per_curve: int) -> None:
    generator = torch.Generator().manual_seed(3)
    height, width = 40, 33  # not square, to catch swapped axes
    points = random_strokes(generator, 2, 7, height, width, spread=25.0)
    points[0, 0] -= 15.0  # partly outside, top left
    points[1, 1] += torch.tensor([width - 2.0, 0.0], dtype=torch.float64)  # partly outside
    points[1, 2] += 200.0  # entirely outside
    widths = 0.3 + 6.0 * torch.rand(2, 7, generator=generator, dtype=torch.float64)
    widths[0, 3] = 0.0  # removed stroke
    points = points.to(dtype).requires_grad_()
    widths = widths.to(dtype).requires_grad_()

    windowed = render_strokes(points, widths, height, width, samples_per_curve=samples_per_curve)
    dense = render_strokes_dense(points, widths, height, width, samples_per_curve=samples_per_curve)
    atol = 1e-9 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(windowed, dense, atol=atol, rtol=0.0)
    assert windowed.dtype == dtype
    assert windowed.min() < 0.1  # something was drawn on each side of the comparison

    weights = torch.rand(windowed.shape, generator=generator, dtype=torch.float64).to(dtype)
    windowed_grads = torch.autograd.grad((windowed * weights).sum(), (points, widths))
    dense_grads = torch.autograd.grad((dense * weights).sum(), (points, widths))
    for ours, reference in zip(windowed_grads, dense_grads, strict=True):
        torch.testing.assert_close(ours, reference, atol=100 * atol, rtol=1e-4)


def test_zero_width_draws_nothing() -> None:
    points = torch.tensor([[[[3.0, 4.0], [9.0, 2.0], [12.0, 14.0], [17.0, 9.0]]]])
    paper = render_strokes(points, torch.zeros(1, 1), 20, 20)
    assert torch.equal(paper, torch.ones(1, 20, 20))


def test_each_canvas_gets_its_own_strokes() -> None:
    generator = torch.Generator().manual_seed(5)
    points = random_strokes(generator, 3, 4, 24, 30, spread=15.0).float()
    widths = torch.full((3, 4), 2.5)
    together = render_strokes(points, widths, 24, 30)
    for index in range(3):
        alone = render_strokes(points[index : index + 1], widths[index : index + 1], 24, 30)
        torch.testing.assert_close(together[index : index + 1], alone, atol=1e-6, rtol=0.0)


def test_chunk_size_does_not_change_result() -> None:
    generator = torch.Generator().manual_seed(11)
    points = random_strokes(generator, 2, 16, 64, 64, spread=40.0).float()
    widths = torch.full((2, 16), 3.0)
    default = render_strokes(points, widths, 64, 64)
    tiny = render_strokes(points, widths, 64, 64, chunk_elements=1)
    torch.testing.assert_close(tiny, default, atol=1e-6, rtol=0.0)


def test_empty_stroke_set_gives_white_paper() -> None:
    paper = render_strokes(torch.zeros(2, 0, 4, 2), torch.zeros(2, 0), 5, 7)
    assert torch.equal(paper, torch.ones(2, 5, 7))


def test_optimisation_recovers_displaced_stroke() -> None:
    target_points = torch.tensor([[[[8.0, 30.0], [18.0, 8.0], [32.0, 40.0], [40.0, 14.0]]]])
    widths = torch.full((1, 1), 3.0)
    target = render_strokes(target_points, widths, 48, 48)
    shift = torch.tensor([[1.5, -1.0], [-1.0, 1.5], [1.2, 1.2], [-1.5, -0.8]])
    points = (target_points + shift).requires_grad_()
    optimiser = torch.optim.Adam([points], lr=0.05)

    def endpoint_error() -> float:
        gap = (points.detach() - target_points)[0, 0, [0, 3]]
        return gap.norm(dim=-1).mean().item()

    initial_error = endpoint_error()
    for _ in range(150):
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(render_strokes(points, widths, 48, 48), target)
        loss.backward()
        optimiser.step()
    assert endpoint_error() < 0.1 * initial_error


def test_backends() -> None:
    assert get_renderer("torch") is render_strokes
    points = torch.tensor([[[[2.0, 2.0], [4.0, 6.0], [6.0, 2.0], [8.0, 6.0]]]])
    paper = get_renderer("torch")(points, torch.full((1, 1), 2.0), 10, 10)
    assert paper.shape == (1, 10, 10)
    with pytest.raises(ConfigError, match="unknown renderer"):
        get_renderer("skia")


def test_missing_diffvg_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path, capsys) -> None:
    monkeypatch.setattr(config, "_diffvg_importable", lambda: False)
    with pytest.raises(ConfigError, match="pydiffvg"):
        get_renderer("diffvg")
    # Asked for on the command line: one line, exit 2, nothing written.
    from clipascene_core.cli.commands import main

    assert main(["sketch", "missing.png", "--out", str(tmp_path / "out"), "--renderer", "diffvg"]) == 2
    assert not (tmp_path / "out").exists()
    assert "pydiffvg" in capsys.readouterr().err
    assert get_renderer() is render_strokes


@pytest.mark.skipif(not config._diffvg_importable(), reason="pydiffvg is not installed")
def test_diffvg_and_torch_renderers_agree() -> None:
    """Only where diffvg is built: the two renderers draw the same strokes (2x2 supersampled
    diffvg against analytic coverage: small differences along the edges only)."""
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(1, 12, 4, 2, generator=generator) * 56 + 4
    widths = torch.full((1, 12), 3.0)
    ours = get_renderer("torch")(points, widths, 64, 64)
    theirs = get_renderer("diffvg")(points, widths, 64, 64)
    assert (ours - theirs).abs().mean() < 0.02
    assert ((ours < 0.5) == (theirs < 0.5)).float().mean() > 0.97


def test_bad_shapes_are_explained() -> None:
    with pytest.raises(ValueError, match=r"\(B, N, 4, 2\)"):
        render_strokes(torch.zeros(3, 4, 2), torch.zeros(3), 8, 8)
    with pytest.raises(ValueError, match="widths"):
        render_strokes(torch.zeros(1, 3, 4, 2), torch.zeros(1, 2), 8, 8)
