import numpy as np
import torch

from clipascene_core.io.images import to_canvas_tensor
from clipascene_core.sketch.seeding import (
    initialise_strokes,
    otsu_threshold,
    saliency_map,
    sample_seeds,
    xdog_edges,
)
from tests.scenes import draw_scene


def square_image():
    image = torch.ones(3, 224, 224)
    image[:, 60:160, 60:160] = 0.1
    return image


def test_xdog_marks_the_outline_of_a_dark_square_not_the_flat_paper():
    edges = xdog_edges(square_image())
    assert edges[60:160, 58:63].mean() > 0.5  # the left side of the outline
    assert edges[:30, :30].sum() == 0  # flat paper far from it


def test_otsu_splits_a_bimodal_histogram_between_the_modes():
    values = np.concatenate([np.full(100, 0.2), np.full(100, 0.8)])
    assert 0.2 <= otsu_threshold(values) < 0.8


def test_seeds_follow_the_map_and_are_distinct():
    sampling = torch.zeros(224, 224)
    sampling[100:110, 30:40] = 1.0
    seeds = sample_seeds(sampling, 64, 0.3, np.random.default_rng(0))
    assert len({tuple(point) for point in seeds}) == 64
    inside = (seeds[:, 0] > 30) & (seeds[:, 0] < 40) & (seeds[:, 1] > 100) & (seeds[:, 1] < 110)
    assert inside.all()


def test_a_blank_map_still_gives_every_stroke():
    seeds = sample_seeds(torch.zeros(224, 224), 16, 0.3, np.random.default_rng(0))
    assert seeds.shape == (16, 2)


def test_initial_strokes_are_reproducible_and_short():
    sampling = torch.rand(224, 224, generator=torch.Generator().manual_seed(0))
    first = initialise_strokes(sampling, 64, seed=7)
    assert first.shape == (64, 4, 2)
    assert np.array_equal(first, initialise_strokes(sampling, 64, seed=7))
    assert not np.array_equal(first, initialise_strokes(sampling, 64, seed=8))
    # Each control point is within 0.05 * 224 / 2 px of the previous one, per axis.
    steps = np.abs(np.diff(first, axis=1))
    assert steps.max() <= 0.025 * 224 + 1e-9


def test_saliency_map_is_attention_on_edges(tiny_encoder):
    target = to_canvas_tensor(draw_scene())
    attention, sampling = saliency_map(tiny_encoder, target)
    assert attention.shape == sampling.shape == (224, 224)
    assert 0 <= attention.min() and attention.max() <= 1
    edges = xdog_edges(target)
    assert torch.all(sampling[edges == 0] == 0)
    assert torch.allclose(sampling[edges == 1], attention[edges == 1])
