import torch
import torchvision.transforms.functional as TF

from clipascene_core.sketch.augment import (
    _half_pixel,
    _homography,
    apply_grids,
    sample_transforms,
    sampling_grid,
)


def test_no_distortion_full_crop_is_the_identity():
    transforms = sample_transforms(2, 224, torch.Generator().manual_seed(0), 0.0, 1.0)
    image = torch.rand(3, 224, 224)
    out = apply_grids(image, sampling_grid(transforms, 224, image.device))
    assert torch.allclose(out[0], image, atol=1e-4)


def test_perspective_matches_torchvision_exactly():
    """With the crop switched off, one sampled transform equals torchvision's perspective
    with the same corners (RandomPerspective's sampling is reproduced separately)."""
    image = torch.rand(1, 3, 224, 224)
    corners = [[0, 0], [223, 0], [223, 223], [0, 223]]
    moved = [[20, 11], [210, 30], [200, 215], [5, 190]]
    homography = _homography(_half_pixel([tuple(map(float, p)) for p in moved]),
                             _half_pixel([tuple(map(float, p)) for p in corners]))
    ours = apply_grids(image, sampling_grid(homography[None], 224, image.device))
    theirs = TF.perspective(image, corners, moved, interpolation=TF.InterpolationMode.BILINEAR)
    interior = (slice(None), slice(None), slice(2, 222), slice(2, 222))
    assert (ours[interior] - theirs[interior]).abs().max() < 1e-4


def test_transforms_are_random_but_seeded_and_shared_by_sketch_and_target():
    first = sample_transforms(4, 224, torch.Generator().manual_seed(1))
    again = sample_transforms(4, 224, torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
    assert not torch.allclose(first[0], first[1])
    # The same grid moves a sketch and its target identically.
    grid = sampling_grid(first, 224, torch.device("cpu"))
    image = torch.rand(3, 224, 224)
    assert torch.equal(apply_grids(image, grid), apply_grids(image.clone(), grid))


def test_crop_is_80_percent_of_the_area():
    transforms = sample_transforms(1, 224, torch.Generator().manual_seed(0), 0.0, 0.8)
    grid = sampling_grid(transforms, 224, torch.device("cpu"))
    span = (grid[0, :, -1, 0] - grid[0, :, 0, 0]).mean() * 224 / 2
    assert abs(span - 200 * 223 / 224) < 1.0
