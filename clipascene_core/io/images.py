"""Reading the user's image and mapping between its pixel frame and the model canvas.

Two frames matter everywhere in this project:

* the **image frame**: pixels of the input image as the user gave it, x to the right, y down,
  origin at the top-left corner of the image, units of input pixels;
* the **canvas frame**: the square model canvas (224 px by default) on which strokes are
  optimised. The input is padded to a square with white (never cropped) and scaled, so the
  whole picture is on the canvas.

`frames.CanvasFrame` converts between them exactly (an affine map: one scale, one offset).
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import UserError
from .frames import CanvasFrame
from .imageheaders import jpeg_scans, webp_size

logger = logging.getLogger(__name__)

#: Formats accepted from users, by content (Pillow's format name), not by file name. MPO (a
#: phone's multi-picture JPEG) is read as the JPEG of its first picture.
SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP", "MPO")
#: Images with more pixels than this are refused as possible decompression bombs.
MAX_IMAGE_PIXELS = 64_000_000
#: Memory the decoded image may take (JPEGs are decoded reduced to the working size, so
#: this bounds PNG and WebP): checked from the header before anything is decoded.
MAX_DECODED_BYTES = 200_000_000
#: Bytes a WebP takes per pixel while Pillow decodes it (its decoder's canvas and previous
#: canvas, then Pillow's copy, 4 bytes each): at most 16.6 megapixels fit MAX_DECODED_BYTES.
WEBP_BYTES_PER_PIXEL = 12
#: A JPEG's decoding time grows with its scans (a progressive JPEG has ~10; one scan can be
#: repeated thousands of times, each costing a pass over the whole picture): at most this
#: many scans, and at most MAX_JPEG_SCAN_PIXELS pixels over all scans (a 64-megapixel
#: picture may have 31 scans). Both are counted from the file's markers before decoding.
MAX_JPEG_SCANS = 100
MAX_JPEG_SCAN_PIXELS = 2_000_000_000
#: The longest side may be at most this many times the shortest: thinner images have nothing
#: left to sketch across once scaled to the model's canvas.
MAX_ASPECT_RATIO = 100
#: Longest side kept in memory for the pipeline; larger inputs are downscaled for the model
#: (the output frame stays the input's own pixel frame).
WORKING_MAX_SIDE = 2048


class ImageInputError(UserError, ValueError):
    """The input is not an image we can sketch. The message is one sentence for the user."""


class UnsupportedImageError(ImageInputError):
    """The input is not an image at all, or a format we do not read."""

    http_status = 415


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


_EXIF_ORIENTATION = 0x0112
#: What turns a stored picture upright, by its EXIF orientation (as ImageOps.exif_transpose).
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}
#: Orientations that turn the picture by a quarter: its upright width is its stored height.
_QUARTER_TURNS = (5, 6, 7, 8)


def load_image(source: str | Path | bytes, label: str | None = None) -> InputImage:
    """Open a user's image (a file, or its bytes), checked by content (PNG, JPEG or WebP),
    turned upright as its EXIF orientation says, composited on white.

    Everything that can be checked from the header (format, size, aspect ratio, the memory
    the decoded pixels take) is checked before any pixel is decoded. Raises `ImageInputError`
    with a one-line message for anything we cannot sketch, prefixed with the file's path (or
    with `label`, e.g. "the mask cannot be used", for bytes).
    """
    if isinstance(source, bytes):
        where, data = (f"{label}: " if label else ""), source
    else:
        path = Path(source)
        where = f"{path}: "
        if not path.is_file():
            raise ImageInputError(f"{where}no such file.")
        data = path.read_bytes()
    if not data:
        raise ImageInputError(f"{where}the file is empty.")
    try:
        declared = webp_size(data)  # Pillow's WebP decoder sets up its canvas on opening
        if declared is not None:
            _check_header(where, *declared)
            _check_decoded_bytes(where, *declared, "RGBA", WEBP_BYTES_PER_PIXEL)
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in SUPPORTED_FORMATS:
                raise UnsupportedImageError(
                    f"{where}{image.format} images are not supported; use PNG, JPEG or WebP."
                )
            # Size, shape and memory do not change with a quarter turn: all are checked
            # before the orientation is read (a PNG's EXIF may follow its pixels, so reading
            # it decodes them).
            width, height = image.size
            _check_header(where, width, height)
            image.draft("RGB", (WORKING_MAX_SIDE, WORKING_MAX_SIDE))  # JPEG: decoded reduced
            _check_decoded_bytes(where, *image.size, image.mode)
            if image.format in ("JPEG", "MPO"):
                _check_scans(where, data, width * height)
            orientation = _orientation(image)
            if orientation in _QUARTER_TURNS:
                width, height = height, width
            image.load()
            pixels = _to_rgb_on_white(image)
            if orientation in _UPRIGHT:
                pixels = pixels.transpose(_UPRIGHT[orientation])
            fmt = "JPEG" if image.format == "MPO" else image.format
            return InputImage(pixels, width, height, fmt)
    except ImageInputError:
        raise
    except UnidentifiedImageError:
        raise UnsupportedImageError(f"{where}not an image file (PNG, JPEG or WebP expected).") from None
    except Image.DecompressionBombError:
        raise ImageInputError(
            f"{where}the image is too large (over {MAX_IMAGE_PIXELS:,} pixels)."
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageInputError(f"{where}the image data is damaged or truncated ({error}).") from None


def _orientation(image: Image.Image) -> int | None:
    """The EXIF orientation tag (1 = upright as stored), if any."""
    try:
        return image.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # noqa: BLE001  (damaged EXIF: the picture is taken as stored)
        return None


def _check_header(where: str, width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ImageInputError(f"{where}the image has no pixels.")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageInputError(
            f"{where}the image is too large ({width}x{height}; at most {MAX_IMAGE_PIXELS:,} pixels)."
        )
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageInputError(
            f"{where}the image is too thin to sketch ({width}x{height}; its long side may be at "
            f"most {MAX_ASPECT_RATIO} times its short side): crop it or pad it first."
        )


def _check_decoded_bytes(where: str, width: int, height: int, mode: str,
                         per_pixel: int | None = None) -> None:
    """Refuse an image whose decoded pixels would take too much memory (a small PNG can
    declare tens of megapixels in 16 bits a channel); a palette or bilevel image is counted
    with its conversion to RGBA."""
    if per_pixel is None:
        per_pixel = {"1": 5, "P": 5, "L": 1, "I;16": 2, "I;16B": 2, "I;16L": 2}.get(mode, 4)
    needed = width * height * per_pixel
    if needed > MAX_DECODED_BYTES:
        raise ImageInputError(
            f"{where}the image is too large to decode ({width}x{height} in {mode} takes "
            f"{needed / 1e6:.0f} MB; at most {MAX_DECODED_BYTES / 1e6:.0f} MB): "
            "save it smaller or with 8 bits a channel."
        )


def _check_scans(where: str, data: bytes, pixels: int) -> None:
    """Refuse a JPEG whose scans would take too long to decode (counted from its markers)."""
    scans = jpeg_scans(data)
    if scans > MAX_JPEG_SCANS or scans * pixels > MAX_JPEG_SCAN_PIXELS:
        allowed = min(MAX_JPEG_SCANS, max(MAX_JPEG_SCAN_PIXELS // max(pixels, 1), 1))
        raise ImageInputError(
            f"{where}the JPEG has {scans} scans, too many to decode (at most {allowed} at its "
            "size; a progressive JPEG has about 10): save it again as an ordinary JPEG."
        )


def _to_rgb_on_white(image: Image.Image) -> Image.Image:
    if image.mode in ("P", "1", "PA"):
        image = image.convert("RGBA")
    # Scaled to the working size first, so every conversion below works on few pixels.
    if max(image.size) > WORKING_MAX_SIDE:
        image = ImageOps.contain(image, (WORKING_MAX_SIDE, WORKING_MAX_SIDE), Image.LANCZOS)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda value: value * (1 / 256)).convert("L")
    if image.mode in ("RGBA", "LA"):
        paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, image.convert("RGBA"))
    return image.convert("RGB")


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
