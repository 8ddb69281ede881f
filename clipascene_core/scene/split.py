"""Splitting a scene into its salient object and the background behind it (algorithm.md §2).

Four pixel frames meet here; every docstring says which one it speaks of:

* **input-image px**: the user's image as given (``InputImage.width`` x ``height``), the output frame;
* **working-image px**: ``InputImage.pixels``, the same picture downscaled to at most
  ``WORKING_MAX_SIDE``; masks and the split images live in this frame;
* **scene canvas px**: the square model canvas showing the whole image padded to a white square
  (``CanvasFrame.canvas_to_image`` maps it to input-image px);
* **object canvas px**: the canvas on which a small object is re-framed (the 0.7 rule);
  ``SceneSplit.object_frame`` maps it to scene canvas px, so
  ``object_frame.then(frame.canvas_to_image)`` maps it to input-image px (see `frames`).

The real models (U²-Net for the mask, LaMa for the background) run when their weights are present;
otherwise classical OpenCV fallbacks run and the split says so in ``SceneSplit.notices``.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import UserError
from ..io.frames import Affine2D, CanvasFrame
from ..io.images import InputImage, square_crop_tensor, to_canvas_tensor
from ..models.weights import LAMA, U2NET, WeightsFile
from .fallbacks import check_mask, fallback_inpaint, fallback_mask

logger = logging.getLogger(__name__)
Model = TypeVar("Model")

#: Saliency above this (after min-max normalisation) is the object.
SALIENCY_THRESHOLD = 0.5
#: An object whose bounding box's longer side is under this fraction of the canvas is re-framed.
REFRAME_FRACTION = 0.7
#: The reference dilates the inpainting mask with an 11x11 square on a 320 px image.
DILATION_AT_320 = 11
#: Components smaller than this fraction of the largest one are specks, not objects.
MIN_COMPONENT_FRACTION = 1 / 3
INSTALL_HINT = "run `python3 install.py` to get them"
SALIENCY_FALLBACK = "the foreground mask comes from a classical saliency fallback"
INPAINTING_FALLBACK = "the background is filled by OpenCV's inpainting fallback, which smears large areas"
NO_OBJECT_NOTICE = (
    "No salient object was found in the image: the foreground target is blank and the background "
    "target is the whole image."
)


class SaliencyModel:
    """U²-Net run from its ONNX file by onnxruntime (as rembg ships it: the fused map d0 first)."""

    INPUT_SIZE = 320
    MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

    def __init__(self, path: Path, providers: list[str] | None = None) -> None:
        # Imported here: onnxruntime is only needed when the weights are there.
        import onnxruntime

        if providers is None:
            available = onnxruntime.get_available_providers()
            providers = [name for name in ("CUDAExecutionProvider", "CPUExecutionProvider")
                         if name in available]
        self.session = onnxruntime.InferenceSession(str(path), providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def predict(self, image: Image.Image) -> np.ndarray:
        """Saliency of ``image``: (H, W) float32 in [0, 1] at the image's own size and frame.

        As the reference: the image is resized to 320x320 ignoring its aspect (bilinear), divided by
        its maximum, normalised with ImageNet's mean and std; the fused output is min-max normalised.
        A constant output (nothing stands out) gives zeros.
        """
        rgb = image.convert("RGB")
        small = np.asarray(rgb.resize((self.INPUT_SIZE, self.INPUT_SIZE), Image.BILINEAR), np.float32)
        small = small / max(float(small.max()), 1e-6)
        batch = ((small - self.MEAN) / self.STD).transpose(2, 0, 1)[None].astype(np.float32)
        fused = self.session.run([self.output_name], {self.input_name: batch})[0]
        saliency = np.asarray(fused, dtype=np.float32).reshape(fused.shape[-2:])
        low, high = float(saliency.min()), float(saliency.max())
        if high - low < 1e-12:
            return np.zeros((rgb.height, rgb.width), np.float32)
        saliency = (saliency - low) / (high - low)
        resized = cv2.resize(saliency, rgb.size, interpolation=cv2.INTER_LINEAR)
        return np.clip(resized, 0.0, 1.0).astype(np.float32)


class InpaintingModel:
    """LaMa (big-lama) as a TorchScript file: ``model(image, mask) -> image``, all (1, C, H, W) in
    [0, 1], H and W multiples of 8, mask 1 where to fill."""

    MULTIPLE = 8

    def __init__(self, path: Path, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        with warnings.catch_warnings():
            # TorchScript is deprecated in recent PyTorch, but big-lama is only published as one.
            warnings.simplefilter("ignore", FutureWarning)
            self.model = torch.jit.load(str(path), map_location=self.device)
        self.model.eval()

    def inpaint(self, image: Image.Image, mask: np.ndarray, max_side: int = 1024) -> Image.Image:
        """Fill ``mask`` (bool (H, W), True = fill, same frame as the image) of ``image``; the
        pixels outside the mask are returned unchanged, byte for byte.

        LaMa runs at most at ``max_side`` px (it was trained at 512, and the background target
        is 224 px): larger images are filled at that size and the fill is scaled up into the hole.
        """
        rgb = np.asarray(image.convert("RGB"))
        hole = check_mask(mask, rgb.shape[:2])
        if not hole.any():
            return Image.fromarray(rgb.copy(), "RGB")
        height, width = hole.shape
        factor = max_side / max(height, width)
        if factor < 1:
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            small_hole = cv2.resize(hole.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
            small = self.inpaint(image.resize(size, Image.LANCZOS), small_hole, max_side)
            filled_rgb = np.asarray(small.resize((width, height), Image.BICUBIC))
            return Image.fromarray(np.where(hole[..., None], filled_rgb, rgb), "RGB")
        pad = ((0, -height % self.MULTIPLE), (0, -width % self.MULTIPLE))
        # Mirrored margins, as lama-cleaner pads: the margin continues both the picture and the
        # hole, so the network sees no artificial edge; it is cropped away afterwards.
        padded_rgb = np.pad(rgb, (*pad, (0, 0)), mode="symmetric")
        padded_hole = np.pad(hole, pad, mode="symmetric")
        image_batch = torch.from_numpy(padded_rgb).permute(2, 0, 1)[None].float().div(255.0)
        mask_batch = torch.from_numpy(padded_hole)[None, None].float()
        with torch.inference_mode():
            filled = self.model(image_batch.to(self.device), mask_batch.to(self.device))
        filled = filled[0, :, :height, :width].clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
        filled_rgb = filled.permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(np.where(hole[..., None], filled_rgb, rgb), "RGB")


def dilate_for_inpainting(mask: np.ndarray) -> np.ndarray:
    """Grow ``mask`` (bool (H, W)) by the reference's 11x11 square at 320 px, scaled with the image:
    the kernel side is the odd number nearest 11 * max(H, W) / 320, at least 3. Returns bool (H, W).
    The margin hides the object's halo and soft edges from the inpainter."""
    hole = np.asarray(mask).astype(np.uint8)
    side = max(3, 2 * math.floor(DILATION_AT_320 * max(hole.shape) / 320 / 2) + 1)
    return cv2.dilate(hole, np.ones((side, side), np.uint8)) > 0


def clean_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Drop 8-connected components smaller than a third of the largest from ``mask`` (bool (H, W)).

    Returns the cleaned bool (H, W) mask and the number of components left (0 for an empty mask).
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        np.asarray(mask).astype(np.uint8), connectivity=8)
    areas = stats[1:count, cv2.CC_STAT_AREA]
    if areas.size == 0:
        return np.zeros(labels.shape, bool), 0
    kept = np.flatnonzero(areas >= areas.max() * MIN_COMPONENT_FRACTION) + 1
    return np.isin(labels, kept), int(kept.size)


def _count_components(mask: np.ndarray) -> int:
    count, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return count - 1


@dataclass
class SceneSplit:
    """A scene split into its object and its background, all in working-image px.

    mask: bool (h, w), the object, undilated (specks removed only when it is re-framed);
    foreground: RGB (w x h), the working image with everything outside ``mask`` white;
    background: RGB (w x h), the working image with the dilated mask inpainted (or the image
    itself when no object was found);
    object_frame: object canvas px -> scene canvas px (identity when not re-framed);
    mask_method: "u2net", "fallback" or "user"; inpaint_method: "lama", "fallback", or "none" when
    there was nothing to inpaint; notices: sentences for the user announcing each fallback.
    """

    mask: np.ndarray
    foreground: Image.Image
    background: Image.Image
    object_frame: Affine2D
    reframed: bool
    mask_method: str
    inpaint_method: str
    notices: list[str] = field(default_factory=list)


def _working_scale(working_size: tuple[int, int], frame: CanvasFrame) -> float:
    # Working-image px per input-image px. The working image is the input scaled with its longer
    # side exact (ImageOps.contain), so that side gives the ratio without rounding error.
    return max(working_size) / frame.side


def object_reframing(mask: np.ndarray, frame: CanvasFrame, components: int) -> Affine2D:
    """The 0.7 rule: the map object canvas px -> scene canvas px for an object ``mask`` (bool (h, w),
    working-image px) of ``components`` connected components, in the scene of ``frame``.

    With exactly one component whose bounding box (in scene canvas px) has a longer side L under
    0.7 * canvas_size, the object canvas is the scene canvas scaled by k = 0.7 * canvas_size / L about
    the box centre and shifted so the box centre sits at the canvas centre. Identity otherwise.
    """
    if components != 1 or not mask.any():
        return Affine2D.IDENTITY
    rows = np.flatnonzero(mask.any(axis=1))
    columns = np.flatnonzero(mask.any(axis=0))
    # Pixel edges, not centres: pixel i covers [i, i + 1) as in CanvasFrame and square_crop_tensor.
    box_working = np.array([[columns[0], rows[0]], [columns[-1] + 1, rows[-1] + 1]], np.float64)
    box = frame.image_to_canvas.apply(box_working / _working_scale(mask.shape[::-1], frame))
    longer_side = float((box[1] - box[0]).max())
    target = REFRAME_FRACTION * frame.canvas_size
    if longer_side >= target:
        return Affine2D.IDENTITY
    zoom = target / longer_side
    centre = box.mean(axis=0)
    half = frame.canvas_size / 2.0
    # scene = (object - half) / zoom + centre
    return Affine2D(1.0 / zoom, float(centre[0] - half / zoom), float(centre[1] - half / zoom))


def foreground_target(split: SceneSplit, frame: CanvasFrame) -> torch.Tensor:
    """The foreground seen through the object canvas: (3, S, S) float32 in [0, 1], S =
    frame.canvas_size, white outside the picture."""
    size = frame.canvas_size
    object_to_image = split.object_frame.then(frame.canvas_to_image)
    side_image = size * object_to_image.scale
    scale = _working_scale(split.foreground.size, frame)
    return square_crop_tensor(split.foreground, object_to_image.tx * scale,
                              object_to_image.ty * scale, side_image * scale, size)


def background_target(split: SceneSplit, canvas_size: int = 224) -> torch.Tensor:
    """The background on the scene canvas: (3, S, S) float32 in [0, 1]."""
    return to_canvas_tensor(split.background, canvas_size)


class MaskInputError(UserError, ValueError):
    """The user's mask cannot be used. The message is one sentence for the user."""


def load_user_mask(path: Path, working_size: tuple[int, int], image_size: tuple[int, int]) -> np.ndarray:
    """Read a user's mask file as bool (h, w) in working-image px (``working_size`` = (w, h)).

    The object is where the mask is opaque (if it has any transparency), else where its luminance is
    above 127. It must have the input image's aspect ratio (``image_size`` = (W, H), input px) up to
    one pixel of rounding; it is resized with nearest-neighbour sampling.
    """
    path = Path(path)
    try:
        with Image.open(path) as opened:
            opened.load()
            # Upright as its EXIF orientation says, like the photo it is drawn over.
            drawing = ImageOps.exif_transpose(opened)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise MaskInputError(f"{path}: the mask could not be read as an image ({error}).") from None
    mask_width, mask_height = drawing.size
    width, height = image_size
    if (abs(mask_height - mask_width * height / width) > 1
            and abs(mask_width - mask_height * width / height) > 1):
        raise MaskInputError(
            f"{path}: the mask is {mask_width}x{mask_height} but the image is {width}x{height}; "
            "draw the mask over the image at its size (or at least its aspect ratio)."
        )
    selected = _mask_pixels(drawing)
    resized = Image.fromarray(selected.astype(np.uint8) * 255).resize(working_size, Image.NEAREST)
    mask = np.asarray(resized) > 127
    if not mask.any():
        raise MaskInputError(
            f"{path}: the mask marks no object; paint the object white on black, or opaque on "
            "transparent."
        )
    return mask


def _mask_pixels(drawing: Image.Image) -> np.ndarray:
    if drawing.mode in ("RGBA", "LA", "PA") or (drawing.mode == "P" and "transparency" in drawing.info):
        alpha = np.asarray(drawing.convert("RGBA"))[..., 3]
        # A fully opaque drawing carries its mask in the colours, not in the alpha channel.
        if alpha.min() < 255:
            return alpha > 0
    if drawing.mode.startswith("I"):
        drawing = drawing.point(lambda value: value * (1 / 256)).convert("L")
    return np.asarray(drawing.convert("L")) > 127


def _load_model(weights: WeightsFile, model_name: str, models_dir: Path | None, consequence: str,
                load: Callable[[Path], Model], notices: list[str]) -> Model | None:
    """Load ``weights`` from ``models_dir`` (default: the registry's folder) with ``load``; when they
    are missing or broken, add a notice saying so and what happens instead, and return None."""
    path = weights.path(models_dir)
    if not path.is_file():
        notices.append(f"{model_name} weights ({weights.filename}) not found in {path.parent}: "
                       f"{consequence}; {INSTALL_HINT}.")
        return None
    try:
        return load(path)
    # Broken files surface as whatever the loader meets (onnxruntime's own exception types, zip or
    # pickle errors from torch.jit); each is announced, and the fallback still gives a result.
    except Exception as error:
        logger.warning("could not load %s: %s", path, error)
        notices.append(f"{model_name} weights at {path} could not be loaded ({error}): {consequence}; "
                       f"{INSTALL_HINT} again.")
        return None


def split_scene(
    image: InputImage,
    *,
    models_dir: Path | None = None,
    user_mask: Path | None = None,
    device: torch.device | str = "cpu",
    saliency: SaliencyModel | None = None,
    inpainting: InpaintingModel | None = None,
) -> SceneSplit:
    """Split ``image`` into object and background (working-image px), with the object's re-framing.

    The mask is ``user_mask`` (a file, see `load_user_mask`; raises `MaskInputError`) if given, else
    U²-Net's saliency above 0.5 (``saliency``, else u2net.onnx from ``models_dir``, default the
    registry's folder), else `fallback_mask`; specks (components under a third of the largest) are
    left out only when the object is re-framed, as the reference does. The background is inpainted by
    ``inpainting``, else big-lama.pt from ``models_dir``, else `fallback_inpaint`. Every fallback is
    announced in ``notices``; so is an image in which nothing stands out.
    """
    device = torch.device(device)
    working = image.pixels.convert("RGB")
    notices: list[str] = []
    if user_mask is not None:
        # The user's drawing is taken as meant: several parts of any size may be the object.
        cleaned = salient = load_user_mask(user_mask, working.size, (image.width, image.height))
        components, mask_method = _count_components(cleaned), "user"
    else:
        if saliency is None:
            # The CPU was asked for: keep onnxruntime off the GPU too.
            providers = None if device.type == "cuda" else ["CPUExecutionProvider"]
            saliency = _load_model(U2NET, "U²-Net", models_dir, SALIENCY_FALLBACK,
                                   lambda path: SaliencyModel(path, providers), notices)
        if saliency is not None:
            salient, mask_method = saliency.predict(working) > SALIENCY_THRESHOLD, "u2net"
        else:
            salient, mask_method = fallback_mask(working), "fallback"
        cleaned, components = clean_components(salient)
    object_frame = object_reframing(cleaned, image.frame, components)
    reframed = object_frame != Affine2D.IDENTITY
    # As the reference (get_mask_u2net): specks are dropped where the object is re-framed
    # (its box and component count are the cleaned mask's); otherwise the raw mask, specks
    # included, is the object.
    mask = cleaned if reframed else salient
    # The inpainting hole is the raw mask dilated, specks included (as the reference): a speck
    # of the object left in the background would be sketched there.
    hole = dilate_for_inpainting(salient)
    if not mask.any():
        notices.append(NO_OBJECT_NOTICE)
        blank = Image.new("RGB", working.size, (255, 255, 255))
        return SceneSplit(mask, blank, working.copy(), Affine2D.IDENTITY, False, mask_method, "none",
                          notices)

    if inpainting is None:
        inpainting = _load_model(LAMA, "LaMa", models_dir, INPAINTING_FALLBACK,
                                 lambda path: InpaintingModel(path, device), notices)
    if inpainting is not None:
        background, inpaint_method = inpainting.inpaint(working, hole), "lama"
    else:
        background, inpaint_method = fallback_inpaint(working, hole), "fallback"
    pixels = np.asarray(working)
    foreground = Image.fromarray(np.where(mask[..., None], pixels, np.uint8(255)), "RGB")
    logger.info("scene split: mask by %s (%d component(s), %.1f %% of the image), background by %s%s",
                mask_method, components, 100 * mask.mean(), inpaint_method,
                f", object zoomed x{1 / object_frame.scale:.2f}" if reframed else "")
    return SceneSplit(mask, foreground, background, object_frame, reframed, mask_method, inpaint_method,
                      notices)
