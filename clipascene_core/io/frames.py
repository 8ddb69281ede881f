"""The pixel frames a sketch passes through, and the affine maps between them.

Three frames of points, all x to the right, y down:

* **input-image px**: the user's image as given, ``image_width`` x ``image_height``, origin at its
  top-left corner. Every sketch leaves the core in this frame (it is the SVG's viewBox).
* **canvas px** (the scene canvas): the square model canvas, ``canvas_size`` (224) px a side, on which
  strokes are optimised. The image is centred on a white square of side ``max(width, height)``
  input px (padded, never cropped) and that square is scaled to the canvas.
* **object canvas px**: when a small object is re-framed (the 0.7 rule in `scene/split.py`), the object's
  strokes are optimised on a canvas of the same size that shows the object zoomed in;
  ``SceneSplit.object_frame`` maps it to canvas px (the identity when nothing is re-framed).

Every map between them is an `Affine2D` (one uniform scale, one translation), and maps compose with
`Affine2D.then` only, read left to right in the order they are applied::

    object canvas px --object_frame--> canvas px --frame.canvas_to_image--> input-image px

    object_to_image = object_frame.then(frame.canvas_to_image)

Going back is ``inverse()`` of the composition (``frame.image_to_canvas.then(object_frame.inverse())``).
A stroke width maps by the scene canvas's scale alone, in every region: ``frame.canvas_to_image.scale *
width``, an object's strokes too (`scene/matrix.py`'s ``width_scale``: the reference maps a re-framed
object's points back, not its widths).

`CanvasFrame` owns the canvas <-> input-image maps of one image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch


@dataclass(frozen=True)
class Affine2D:
    """The map p' = scale * p + (tx, ty) on points of shape (..., 2), x first (numpy or torch).

    ``scale`` is positive and the same on both axes, so a stroke width maps by ``scale`` alone.
    """

    scale: float
    tx: float
    ty: float
    IDENTITY: ClassVar[Affine2D]

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"an Affine2D scale must be positive and finite, not {self.scale}.")

    def apply(self, points):
        """Map points (..., 2); a tensor stays a tensor (its dtype and device), anything else
        becomes a float64 numpy array."""
        if isinstance(points, torch.Tensor):
            if not points.is_floating_point():
                points = points.to(torch.get_default_dtype())
            shift = torch.tensor([self.tx, self.ty], dtype=points.dtype, device=points.device)
            return points * self.scale + shift
        return np.asarray(points, dtype=np.float64) * self.scale + np.array([self.tx, self.ty])

    def inverse(self) -> Affine2D:
        """The map back: ``self.then(self.inverse())`` is the identity (up to rounding)."""
        return Affine2D(1.0 / self.scale, -self.tx / self.scale, -self.ty / self.scale)

    def then(self, other: Affine2D) -> Affine2D:
        """The map that applies ``self`` first, then ``other``."""
        return Affine2D(
            other.scale * self.scale,
            other.scale * self.tx + other.tx,
            other.scale * self.ty + other.ty,
        )


Affine2D.IDENTITY = Affine2D(1.0, 0.0, 0.0)


@dataclass(frozen=True)
class CanvasFrame:
    """The map between the square model canvas and the input image's pixel frame.

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

    @property
    def canvas_to_image(self) -> Affine2D:
        """Canvas px -> input-image px."""
        return Affine2D(self.scale, *self.offset)

    @property
    def image_to_canvas(self) -> Affine2D:
        """Input-image px -> canvas px: the inverse of `canvas_to_image`."""
        return self.canvas_to_image.inverse()
