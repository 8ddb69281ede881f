"""Classical foreground mask and inpainting for machines without the U2-Net / LaMa weights.

Both work in the working-image pixel frame (see split.py); `split.split_scene`
always announces them to the user when they are used.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

#: Fallback mask: a pixel this close (OpenCV 8-bit CIELAB units) to colours of all four image sides is
#: background.
BORDER_COLOUR_MATCH = 10.0


def check_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """bool (H, W) of `mask`, which must have the (rows, columns) `shape`."""
    hole = np.asarray(mask).astype(bool)
    if hole.shape != tuple(shape):
        raise ValueError(f"the mask is {hole.shape} but the image is {tuple(shape)} (rows, columns).")
    return hole


def _spectral_residual(gray: np.ndarray) -> np.ndarray:
    """Hou & Zhang's spectral-residual saliency of a (H, W) grey image, computed at 64 px (the
    scale the method was designed for): (H, W) float32 in [0, 1]."""
    height, width = gray.shape
    factor = 64 / max(height, width)
    small = cv2.resize(gray, (max(8, round(width * factor)), max(8, round(height * factor))),
                       interpolation=cv2.INTER_AREA).astype(np.float64)
    spectrum = np.fft.fft2(small)
    log_amplitude = np.log(np.abs(spectrum) + 1e-9)
    residual = log_amplitude - cv2.blur(log_amplitude, (3, 3))
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    saliency = cv2.GaussianBlur(saliency, (0, 0), 2.5)
    saliency = cv2.resize(saliency, (width, height), interpolation=cv2.INTER_LINEAR)
    return _normalise(saliency)


def _border_distances(lab: np.ndarray) -> np.ndarray:
    """Colour distance (OpenCV's 8-bit CIELAB units) of each pixel of a (H, W, 3) image to each side
    of its border: (4, H, W) float32, sides top, bottom, left, right.

    Each side is summarised by its main colours (k-means clusters holding at least a fifth of its
    pixels, so that an object reaching into the side does not count); the distance to a side is to
    the nearest of them.
    """
    height, width = lab.shape[:2]
    band = max(1, round(0.04 * max(height, width)))
    # A little blur so that sensor noise does not read as contrast.
    lab = cv2.GaussianBlur(lab, (0, 0), 0.003 * max(height, width) + 0.5)
    sides = (lab[:band], lab[-band:], lab[:, :band], lab[:, -band:])
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    distances = []
    for side in sides:
        colours = np.ascontiguousarray(side.reshape(-1, 3))
        clusters = min(3, len(np.unique(colours, axis=0)))
        cv2.setRNGSeed(0)  # k-means++ seeding draws from OpenCV's RNG: keep the mask reproducible
        _, members, centres = cv2.kmeans(colours, clusters, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
        shares = np.bincount(members.ravel(), minlength=clusters) / len(colours)
        centres = centres[shares >= 0.2]
        distances.append(np.linalg.norm(lab[:, :, None, :] - centres[None, None], axis=-1).min(axis=-1))
    return np.stack(distances).astype(np.float32)


def _normalise(values: np.ndarray) -> np.ndarray:
    span = float(values.max() - values.min())
    if span < 1e-12:
        return np.zeros(values.shape, np.float32)
    return ((values - values.min()) / span).astype(np.float32)


def _centre_prior(height: int, width: int, sigma: float = 0.35) -> np.ndarray:
    """A Gaussian bump at the image centre, sigma a fraction of each side: (H, W) float32 in [0, 1]."""
    y = (np.arange(height) + 0.5 - height / 2) / (sigma * height)
    x = (np.arange(width) + 0.5 - width / 2) / (sigma * width)
    return np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / 2).astype(np.float32)


def fallback_mask(image: Image.Image, max_side: int = 320) -> np.ndarray:
    """The salient object without learned weights: bool (H, W) in the image's own pixel frame.

    Three classical cues at ``max_side`` px -- spectral-residual saliency, the colour contrast to the
    image border and a centre prior (photographers centre their subject; it rescues subjects that
    fill the frame and touch several sides) -- are averaged and thresholded with Otsu's method; that
    rough region seeds cv2.grabCut, which snaps it to colour edges. GrabCut is only trusted when it
    keeps a sensible region; otherwise the Otsu region is returned. Empty only for an image without
    contrast.
    """
    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    factor = min(1.0, max_side / max(height, width))
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if factor < 1 else rgb
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    distances = _border_distances(lab)
    # The median over the sides keeps an object that touches one side salient.
    contrast = cv2.GaussianBlur(np.median(distances, axis=0), (0, 0), 0.01 * max(size) + 0.5)
    cue = (_spectral_residual(lab[..., 0]) + _normalise(contrast) + _centre_prior(*lab.shape[:2])) / 3
    # A colour found on all four sides is background, however central: this keeps the centre prior
    # from claiming the plain surroundings of a small subject.
    certain_background = distances.max(axis=0) < BORDER_COLOUR_MATCH
    cue[certain_background] = 0.0
    cue8 = np.round(cue * 255).astype(np.uint8)
    if cue8.max() == cue8.min():
        return np.zeros((height, width), bool)
    threshold, _ = cv2.threshold(cue8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    rough = cue8 > threshold
    region = rough
    if min(size) >= 8 and 0 < rough.mean() < 0.95:
        labels = np.where(rough, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
        # Where the cue is weakest the background is certain: anchors GrabCut's colour models.
        labels[(cue8 < threshold / 2) | certain_background] = cv2.GC_BGD
        background_model, foreground_model = np.zeros((1, 65)), np.zeros((1, 65))
        cv2.setRNGSeed(0)
        cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), labels, None, background_model,
                    foreground_model, 5, cv2.GC_INIT_WITH_MASK)
        refined = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
        # GrabCut can run away to the whole frame or collapse; the rough region is safer then.
        overlap = (refined & rough).sum() / max(1, (refined | rough).sum())
        if 0 < refined.mean() < 0.95 and overlap > 0.3:
            region = refined
    if factor < 1:
        upscaled = cv2.resize(region.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        return upscaled > 0.5
    return region


def fallback_inpaint(image: Image.Image, mask: np.ndarray, max_side: int = 512) -> Image.Image:
    """Fill ``mask`` (bool (H, W), True = fill, the image's pixel frame) with OpenCV's Telea
    inpainting; pixels outside the mask are unchanged. Smooth, but it smears large regions.

    Telea's cost grows with the hole's area times the radius squared (20 s for a 2048 px image), and
    its smooth fill has no detail to lose, so it runs at ``max_side`` px and is scaled up into the hole.
    """
    rgb = np.asarray(image.convert("RGB"))
    hole = check_mask(mask, rgb.shape[:2])
    if not hole.any():
        return Image.fromarray(rgb.copy(), "RGB")
    height, width = hole.shape
    factor = min(1.0, max_side / max(height, width))
    if factor < 1:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        # Any low-res pixel touching the hole is hole, plus one: averaged edge pixels carry the
        # object's colour, which must not seed the fill.
        small_hole = cv2.resize(hole.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
        small_hole = cv2.dilate(small_hole.astype(np.uint8), np.ones((3, 3), np.uint8))
    else:
        small, small_hole = rgb, hole.astype(np.uint8)
    radius = max(3, round(3 * max(small_hole.shape) / 320))
    filled = cv2.inpaint(small, small_hole, radius, cv2.INPAINT_TELEA)
    if factor < 1:
        filled = cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)
    return Image.fromarray(np.where(hole[..., None], filled, rgb), "RGB")
