"""How much composing CLIPasso's two augmentations into one resampling changes the loss.

The reference augments with torchvision's RandomPerspective (bilinear, fill 0) and then
RandomResizedCrop (bilinear): two resamplings. `clipascene_core.sketch.augment` composes both maps
into one homography and resamples once. For the same random parameters this script computes
the CLIP layer loss (mean over the augmented pairs of the squared feature difference) of a
fixed sketch (the initial strokes of a photo) and the photo both ways, and compares the
difference with how much the loss moves between two independent draws of augmentations
(what every step sees anyway).

Run from the repository root: ``python -m bench.augment_parity`` (ViT-B-32, random weights;
``--model tiny-test`` for the tiny model).
"""

from __future__ import annotations

import argparse
import math

import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from clipascene_core.io.images import load_image, to_canvas_tensor
from clipascene_core.models.clip import load_clip
from clipascene_core.sketch.augment import _perspective_corners, apply_grids, sample_transforms, sampling_grid
from clipascene_core.sketch.engine import render_batch
from clipascene_core.sketch.seeding import initialise_strokes, saliency_map

SIZE = 224


def reference_augment(images: torch.Tensor, generator: torch.Generator, distortion: float,
                      crop_scale: float) -> torch.Tensor:
    """torchvision's perspective then resized crop, with the parameters `sample_transforms`
    draws from the same generator state (corners, then the crop's top and left)."""
    crop = int(round(math.sqrt(crop_scale) * SIZE))
    corners = [[0, 0], [SIZE - 1, 0], [SIZE - 1, SIZE - 1], [0, SIZE - 1]]
    moved = [[int(x), int(y)] for x, y in _perspective_corners(SIZE, distortion, generator)]
    top = int(torch.randint(0, SIZE - crop + 1, (1,), generator=generator).item())
    left = int(torch.randint(0, SIZE - crop + 1, (1,), generator=generator).item())
    warped = TF.perspective(images, corners, moved, InterpolationMode.BILINEAR, fill=0)
    return TF.resized_crop(warped, top, left, crop, crop, [SIZE, SIZE],
                           InterpolationMode.BILINEAR, antialias=False)


def layer_losses(encoder, sketches: torch.Tensor, targets: torch.Tensor, layers) -> dict[int, float]:
    with torch.no_grad():
        ours = encoder.layer_features(sketches, layers)
        theirs = encoder.layer_features(targets, layers)
    return {layer: float(((ours[layer].float() - theirs[layer].float()) ** 2).mean())
            for layer in layers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--augmentations", type=int, default=16)
    parser.add_argument("--strokes", type=int, default=64)
    parser.add_argument("--image", default="examples/chelsea.jpg")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    encoder = load_clip(args.model, "random")
    layers = [2, 4, 8, 11] if encoder.num_layers > 11 else list(range(encoder.num_layers))
    target = to_canvas_tensor(load_image(args.image).pixels)
    _, sampling = saliency_map(encoder, target)
    points = torch.from_numpy(initialise_strokes(sampling, args.strokes, 0)).float()
    sketch = render_batch([(points, torch.full((args.strokes,), 3.0))], SIZE)[0]
    pair = torch.stack([sketch, target])

    results, images = {}, {}
    for name, seed in (("draw A", 1), ("draw B", 2)):
        state = torch.Generator().manual_seed(seed).get_state()
        generator = torch.Generator()
        generator.set_state(state)
        grids = sampling_grid(sample_transforms(args.augmentations, SIZE, generator, 0.5, 0.8),
                              SIZE, torch.device("cpu"))
        once = [apply_grids(image, grids) for image in pair]
        generator.set_state(state)
        twice = [torch.cat([reference_augment(pair, generator, 0.5, 0.8)[None] for _ in
                            range(args.augmentations)])]
        twice = [twice[0][:, 0], twice[0][:, 1]]
        results[name] = (layer_losses(encoder, *once, layers), layer_losses(encoder, *twice, layers))
        images[name] = (once[0], twice[0])
    same = float((images["draw A"][0] - images["draw A"][1]).abs().mean())
    other = float((images["draw A"][0] - images["draw B"][1]).abs().mean())
    print(f"mean |pixel difference| of the augmented sketches: once vs twice {same:.4f}; "
          f"against another draw {other:.4f}")
    print(f"{args.model}, random weights, {args.image}, {args.augmentations} augmentations, "
          f"{args.strokes} initial strokes")
    print("layer  loss once (ours)  loss twice (ref)  relative diff  draw A vs draw B")
    for layer in layers:
        ours, reference = results["draw A"][0][layer], results["draw A"][1][layer]
        other = results["draw B"][1][layer]
        print(f"{layer:5d}  {ours:15.6g}  {reference:16.6g}  {abs(ours - reference) / reference:13.2%}"
              f"  {abs(other - reference) / reference:16.2%}")


if __name__ == "__main__":
    main()
