"""The synthetic photos the tests sketch, drawn here (no downloads); import them from here, not
from conftest.py (pytest's, not a module to import)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def draw_scene(width: int = 160, height: int = 96) -> Image.Image:
    """A small synthetic photo: a dark disc and a bar on a light gradient."""
    gradient = np.linspace(200, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    image = Image.fromarray(np.stack([gradient] * 3, axis=-1), "RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.2, height * 0.2, width * 0.5, height * 0.8), fill=(40, 60, 90))
    draw.rectangle((width * 0.6, height * 0.3, width * 0.9, height * 0.45), fill=(120, 30, 30))
    return image


def small_object_photo(path, width=200, height=140):
    """A small object (dark disc) on a textured light background, saved at `path`: it gets
    re-framed."""
    rng = np.random.default_rng(0)
    pixels = (200 + 40 * rng.random((height, width, 3))).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    ImageDraw.Draw(image).ellipse((70, 45, 120, 95), fill=(20, 30, 40))
    image.save(path)
    return path
