"""Reading the user's image and mapping between its pixel frame and the model canvas.

Two frames matter everywhere in this project:

* the **image frame**: pixels of the input image as the user gave it, x to the right, y down,
  origin at the top-left corner of the image, units of input pixels;
* the **canvas frame**: the square model canvas (224 px by default) on which strokes are
  optimised. The input is padded to a square with white (never cropped) and scaled, so the
  whole picture is on the canvas.

`CanvasFrame` converts between them exactly (an affine map: one scale, one offset).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

#: Formats accepted from users, by content (Pillow's format name), not by file name.
SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP")
#: Images with more pixels than this are refused as possible decompression bombs.
MAX_IMAGE_PIXELS = 64_000_000
#: Longest side kept in memory for the pipeline; larger inputs are downscaled for the model
#: (the output frame stays the input's own pixel frame).
WORKING_MAX_SIDE = 2048


class ImageInputError(ValueError):
    """The input is not an image we can sketch. The message is one sentence for the user."""


@dataclass(frozen=True)
class CanvasFrame:
    """The affine map between the input image's pixel frame and the square model canvas.

    The image (``image_width`` x ``image_height`` input pixels) is centred on a white square of
    side ``max(image_width, image_height)`` input pixels, which is scaled to ``canvas_size``.
    """

    image_width: int
    image_height: int
    canvas_size: int = 224

    @property
    def side(self) -> int:
        """Side of the padded square, in input pixels."""
        return max(self.image_width, self.image_height)

    @property
    def scale(self) -> float:
        """Input pixels per canvas pixel."""
        return self.side / self.canvas_size

    @property
    def offset(self) -> tuple[float, float]:
        """Position of the padded square's top-left corner in the image frame (<= 0)."""
        return (
            -(self.side - self.image_width) / 2.0,
            -(self.side - self.image_height) / 2.0,
        )

    def to_image(self, points):
        """Canvas-frame points (..., 2) -> image-frame points; works on tensors and arrays."""
        ox, oy = self.offset
        out = points * self.scale
        return _add_offset(out, ox, oy)

    def to_canvas(self, points):
        """Image-frame points (..., 2) -> canvas-frame points; the exact inverse of to_image."""
        ox, oy = self.offset
        return _add_offset(points, -ox, -oy) / self.scale

    def width_to_image(self, width_canvas: float) -> float:
        """A stroke width in canvas pixels -> input pixels."""
        return width_canvas * self.scale

    def canvas_bounds_in_image(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the whole canvas in the image frame."""
        ox, oy = self.offset
        return (ox, oy, ox + self.side, oy + self.side)


def _add_offset(points, ox: float, oy: float):
    if isinstance(points, torch.Tensor):
        shift = torch.tensor([ox, oy], dtype=points.dtype, device=points.device)
    else:
        shift = np.array([ox, oy], dtype=np.float64)
    return points + shift


@dataclass(frozen=True)
class InputImage:
    """A user's image ready for the pipeline.

    pixels: 8-bit RGB on white, downscaled to at most `WORKING_MAX_SIDE` px (aspect kept);
    width, height: the input's own size in pixels, which defines the output frame.
    """

    pixels: Image.Image
    width: int
    height: int
    format: str

    @property
    def frame(self) -> CanvasFrame:
        return CanvasFrame(self.width, self.height)


def load_image(path: str | Path) -> InputImage:
    """Open a user's image, checked by content (PNG, JPEG or WebP), composited on white.

    Raises `ImageInputError` with a one-line message for anything we cannot sketch.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageInputError(f"{path}: no such file.")
    if path.stat().st_size == 0:
        raise ImageInputError(f"{path}: the file is empty.")
    try:
        with Image.open(path) as image:
            if image.format not in SUPPORTED_FORMATS:
                raise ImageInputError(
                    f"{path}: {image.format} images are not supported; use PNG, JPEG or WebP."
                )
            _check_pixel_count(path, image.size)
            width, height = image.size
            image.draft("RGB", (WORKING_MAX_SIDE, WORKING_MAX_SIDE))
            image.load()
            return InputImage(_to_rgb_on_white(image), width, height, image.format)
    except ImageInputError:
        raise
    except UnidentifiedImageError:
        raise ImageInputError(f"{path}: not an image file (PNG, JPEG or WebP expected).") from None
    except Image.DecompressionBombError:
        raise ImageInputError(
            f"{path}: the image is too large (over {MAX_IMAGE_PIXELS:,} pixels)."
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageInputError(f"{path}: the image data is damaged or truncated ({error}).") from None


def _check_pixel_count(path: Path, size: tuple[int, int]) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageInputError(f"{path}: the image has no pixels.")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageInputError(
            f"{path}: the image is too large ({width}x{height}; at most {MAX_IMAGE_PIXELS:,} pixels)."
        )


def _to_rgb_on_white(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda value: value * (1 / 256)).convert("L")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    image = image.convert("RGB")
    if max(image.size) > WORKING_MAX_SIDE:
        image = ImageOps.contain(image, (WORKING_MAX_SIDE, WORKING_MAX_SIDE), Image.LANCZOS)
    return image


def square_crop_tensor(
    image: Image.Image, x0: float, y0: float, side: float, canvas_size: int = 224
) -> torch.Tensor:
    """Resample the square [x0, x0 + side) x [y0, y0 + side) of `image` (image pixels, any
    float position, partly or wholly outside the image) to a canvas; outside is white paper.

    Sub-pixel exact: the image is pasted at an integer offset into a white sheet that covers
    the square, and the square is resampled from the sheet with Lanczos filtering.
    Returns a (3, canvas_size, canvas_size) float32 tensor in [0, 1].
    """
    left = math.floor(min(0.0, x0)) - 1
    top = math.floor(min(0.0, y0)) - 1
    right = math.ceil(max(image.width, x0 + side)) + 1
    bottom = math.ceil(max(image.height, y0 + side)) + 1
    sheet = Image.new("RGB", (right - left, bottom - top), (255, 255, 255))
    sheet.paste(image, (-left, -top))
    box = (x0 - left, y0 - top, x0 - left + side, y0 - top + side)
    square = sheet.resize((canvas_size, canvas_size), Image.LANCZOS, box=box)
    array = np.asarray(square, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def to_canvas_tensor(image: Image.Image, canvas_size: int = 224) -> torch.Tensor:
    """Pad an RGB image to a white square (centred exactly as `CanvasFrame` says, nothing
    cropped) and scale it to the canvas: (3, canvas_size, canvas_size) float32 in [0, 1]."""
    width, height = image.size
    side = max(width, height)
    return square_crop_tensor(image, -(side - width) / 2.0, -(side - height) / 2.0, side,
                              canvas_size)
