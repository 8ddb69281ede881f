"""Saliency-guided stroke initialisation (CLIPasso, as used by CLIPascene).

All maps are on the canvas, (H, W); all points are canvas pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..models.clip import CLIP_MEAN, CLIP_STD, ClipEncoder

#: Rec. 709 luma weights, as skimage.color.rgb2gray (what the reference's XDoG uses).
LUMA_709 = (0.2125, 0.7154, 0.0721)


def _reflect_indices(size: int, radius: int) -> torch.Tensor:
    """Indices of a row padded by `radius` on both sides with half-sample symmetric
    reflection (d c b a | a b c d | d c b a), the boundary of scipy.ndimage's 'reflect'."""
    index = torch.arange(-radius, size + radius) % (2 * size)
    return torch.where(index >= size, 2 * size - 1 - index, index)


def gaussian_blur(image: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Separable Gaussian blur of (H, W) as scipy.ndimage.gaussian_filter computes it:
    kernel radius int(truncate * sigma + 0.5), half-sample symmetric borders."""
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * offsets**2 / sigma**2)
    kernel = kernel / kernel.sum()
    height, width = image.shape
    padded = image[_reflect_indices(height, radius)][:, _reflect_indices(width, radius)]
    blurred = F.conv2d(padded[None, None], kernel.view(1, 1, 1, -1))
    blurred = F.conv2d(blurred, kernel.view(1, 1, -1, 1))
    return blurred[0, 0]


def xdog_edges(image: torch.Tensor) -> torch.Tensor:
    """Binary XDoG edge map of (3, H, W) RGB in [0, 1]: 1 on edges, 0 elsewhere.

    As the reference (models/painter_params.py, XDoG_ on the attention input): the luma of
    the CLIP-normalised image; D = G(0.8) - 0.98 G(8); response 1 where D < -0.1, else
    1 + tanh(200 D); min-max normalised; edges are the pixels below Otsu's threshold.
    """
    # On the CPU in float64: cheap at 224 px, and Apple's MPS has no float64.
    image = image.detach().cpu().double()
    mean = torch.tensor(CLIP_MEAN, dtype=image.dtype).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=image.dtype).view(3, 1, 1)
    normalised = (image - mean) / std
    grey = sum(weight * channel for weight, channel in zip(LUMA_709, normalised, strict=True))
    difference = gaussian_blur(grey, 0.8) - 0.98 * gaussian_blur(grey, 8.0)
    response = torch.where(difference < -0.1, torch.ones_like(difference),
                           1.0 + torch.tanh(200.0 * difference))
    response = response - response.min()
    response = response / response.max().clamp_min(1e-12)
    threshold = otsu_threshold(response.numpy())
    # Low response = dark XDoG line = edge.
    return (response < threshold).float()


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]: maximises the between-class variance."""
    histogram, edges = np.histogram(values.ravel(), bins=bins, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(histogram)
    weight_high = weight_low[-1] - weight_low
    mass_low = np.cumsum(histogram * centres)
    mean_low = mass_low / np.maximum(weight_low, 1)
    mean_high = (mass_low[-1] - mass_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(centres[int(np.argmax(between))])


def saliency_map(encoder: ClipEncoder, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(attention, sampling map) of a (3, H, W) target: attention x (1 - XDoG response),
    i.e. the attention on edges only. Both (H, W) in [0, 1]."""
    attention = encoder.attention_map(target)
    edges = xdog_edges(target).to(attention.device, attention.dtype)
    return attention, attention * edges


def sample_seeds(
    sampling_map: torch.Tensor, count: int, temperature: float, generator: np.random.Generator
) -> np.ndarray:
    """Draw `count` distinct pixels with p proportional to exp(value / temperature) over the
    pixels where the map is positive. Returns (count, 2) canvas points (x, y) at pixel centres.

    When the map has fewer positive pixels than `count` (a blank image), the rest is drawn
    uniformly from the remaining pixels so a sketch always has `count` strokes.
    """
    values = sampling_map.detach().cpu().double().numpy()
    height, width = values.shape
    flat = values.ravel()
    candidates = np.flatnonzero(flat > 0)
    take = min(count, len(candidates))
    chosen = np.empty(0, dtype=np.int64)
    if take:
        logits = flat[candidates] / temperature
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        chosen = generator.choice(candidates, size=take, replace=False, p=probabilities)
    if take < count:
        rest = np.setdiff1d(np.arange(flat.size), chosen)
        chosen = np.concatenate([chosen, generator.choice(rest, size=count - take, replace=False)])
    rows, cols = np.divmod(chosen, width)
    return np.stack([cols + 0.5, rows + 0.5], axis=1).astype(np.float64)


def initial_curves(
    seeds: np.ndarray, canvas_size: int, step: float, generator: np.random.Generator
) -> np.ndarray:
    """Random-walk cubics from seed points: (N, 2) canvas px -> (N, 4, 2) canvas px.

    In [0, 1] coordinates each next control point is the previous plus step * (U(0,1) - 0.5)
    per axis (CLIPasso's radius 0.05).
    """
    unit = seeds / canvas_size
    points = [unit]
    for _ in range(3):
        points.append(points[-1] + step * (generator.random(unit.shape) - 0.5))
    return np.stack(points, axis=1) * canvas_size


def initialise_strokes(
    sampling_map: torch.Tensor, count: int, seed: int, temperature: float = 0.3,
    step: float = 0.05,
) -> np.ndarray:
    """Reproducible initial strokes for one cell: (count, 4, 2) canvas pixels."""
    generator = np.random.default_rng(seed)
    seeds = sample_seeds(sampling_map, count, temperature, generator)
    return initial_curves(seeds, sampling_map.shape[-1], step, generator)
