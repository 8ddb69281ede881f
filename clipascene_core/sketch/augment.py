"""CLIPasso's augmentations, applied identically to a sketch and its target, batched.

torchvision's RandomPerspective(distortion, p=1, fill=0) followed by
RandomResizedCrop(size, scale=(s, s), ratio=(1, 1)) is one projective map from output pixels
to input pixels; we compose the two into a single homography per augmentation and resample
with one `grid_sample`, so any number of sketches and targets share the same transforms.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _perspective_corners(
    size: int, distortion: float, generator: torch.Generator
) -> list[tuple[float, float]]:
    """End points of the four image corners, sampled like torchvision's RandomPerspective."""
    half = size // 2
    reach = int(distortion * half)

    def draw(low: int, high: int) -> float:
        return float(torch.randint(low, high, (1,), generator=generator).item())

    top_left = (draw(0, reach + 1), draw(0, reach + 1))
    top_right = (draw(size - reach - 1, size), draw(0, reach + 1))
    bottom_right = (draw(size - reach - 1, size), draw(size - reach - 1, size))
    bottom_left = (draw(0, reach + 1), draw(size - reach - 1, size))
    return [top_left, top_right, bottom_right, bottom_left]


def _homography(source: list[tuple[float, float]], target: list[tuple[float, float]]) -> torch.Tensor:
    """3x3 H (float64) with H @ [x, y, 1] ~ target point for each source point."""
    rows, values = [], []
    for (x, y), (u, v) in zip(source, target, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        values.extend([u, v])
    solution = torch.linalg.solve(
        torch.tensor(rows, dtype=torch.float64), torch.tensor(values, dtype=torch.float64)
    )
    return torch.cat([solution, torch.ones(1, dtype=torch.float64)]).view(3, 3)


def _half_pixel(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(x - 0.5, y - 0.5) for x, y in points]


def sample_transforms(
    count: int, size: int, generator: torch.Generator, distortion: float = 0.5,
    crop_scale: float = 0.8,
) -> torch.Tensor:
    """`count` random augmentations as homographies (count, 3, 3), float64.

    Each maps an output pixel coordinate (x, y, 1) to the input pixel coordinate it samples.
    """
    crop = int(round(math.sqrt(crop_scale) * size))
    corners = [(0.0, 0.0), (size - 1.0, 0.0), (size - 1.0, size - 1.0), (0.0, size - 1.0)]
    transforms = []
    for _ in range(count):
        moved = _perspective_corners(size, distortion, generator)
        # torchvision's perspective samples the input at H^-1 of each output pixel, where H
        # moves the corners to `moved`; the inverse is the homography from moved to corners.
        # torchvision solves it with every point shifted by half a pixel; so do we, to match.
        output_to_input = _homography(_half_pixel(moved), _half_pixel(corners))
        top = float(torch.randint(0, size - crop + 1, (1,), generator=generator).item())
        left = float(torch.randint(0, size - crop + 1, (1,), generator=generator).item())
        ratio = crop / size
        # Output pixel centre u of the resized crop sits at left + (u + 0.5) * ratio - 0.5.
        resize = torch.tensor(
            [[ratio, 0, left + 0.5 * ratio - 0.5], [0, ratio, top + 0.5 * ratio - 0.5], [0, 0, 1]],
            dtype=torch.float64,
        )
        transforms.append(output_to_input @ resize)
    return torch.stack(transforms)


def sampling_grid(transforms: torch.Tensor, size: int, device: torch.device,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Homographies (A, 3, 3) -> grid_sample grids (A, size, size, 2) in [-1, 1] units."""
    coords = torch.arange(size, dtype=torch.float64)
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    pixels = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).view(-1, 3)  # (P, 3)
    mapped = torch.einsum("aij,pj->api", transforms, pixels)
    mapped = mapped[..., :2] / mapped[..., 2:3]
    normalised = (mapped + 0.5) / size * 2 - 1  # align_corners=False convention
    return normalised.view(-1, size, size, 2).to(device=device, dtype=dtype)


def apply_grids(images: torch.Tensor, grids: torch.Tensor) -> torch.Tensor:
    """Resample images with grids; outside the input is black (fill 0), as in the reference.

    images: (B, 3, H, W) with B equal to the number of grids, or (3, H, W) shared by all grids.
    Returns (A, 3, size, size).
    """
    if images.dim() == 3:
        images = images.expand(grids.shape[0], -1, -1, -1)
    return F.grid_sample(images, grids, mode="bilinear", padding_mode="zeros", align_corners=False)
