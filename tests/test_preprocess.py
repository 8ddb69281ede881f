"""Scene split: masks, inpainting, the 0.7 re-framing rule and its exact inverse.

No real weights: a tiny ONNX "U²-Net" (high on dark pixels) and a tiny TorchScript "LaMa" (fills with
the mean colour) stand in for them, built here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from clipascene_core.io.frames import Affine2D, CanvasFrame
from clipascene_core.io.images import InputImage
from clipascene_core.scene.split import (
    NO_OBJECT_NOTICE,
    InpaintingModel,
    MaskInputError,
    SaliencyModel,
    SceneSplit,
    background_target,
    clean_components,
    dilate_for_inpainting,
    fallback_inpaint,
    fallback_mask,
    foreground_target,
    load_user_mask,
    object_reframing,
    split_scene,
)
from tests.tiny_models import save_tiny_lama, save_tiny_split_models, save_tiny_u2net

PAPER = (230, 230, 230)
INK = (30, 30, 40)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def disc_image(width: int = 200, height: int = 150, box=(60, 35, 140, 115)) -> tuple[Image.Image, np.ndarray]:
    """A dark disc on light paper, and the disc as a bool (H, W) mask."""
    image = Image.new("RGB", (width, height), PAPER)
    ImageDraw.Draw(image).ellipse(box, fill=INK)
    truth = Image.new("L", (width, height), 0)
    ImageDraw.Draw(truth).ellipse(box, fill=255)
    return image, np.asarray(truth) > 127


def as_input(pixels: Image.Image, width: int | None = None, height: int | None = None) -> InputImage:
    return InputImage(pixels, width or pixels.width, height or pixels.height, "PNG")


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    return save_tiny_split_models(tmp_path_factory.mktemp("models"))


# --- masks ----------------------------------------------------------------------------------------


def test_clean_components_drops_specks_and_keeps_large_parts():
    mask = np.zeros((100, 100), bool)
    mask[10:40, 10:40] = True      # 900 px, the largest
    mask[60:80, 60:80] = True      # 400 px >= 900 / 3: a second object
    mask[90:95, 5:10] = True       # 25 px: a speck
    cleaned, count = clean_components(mask)
    assert count == 2
    assert cleaned[10:40, 10:40].all() and cleaned[60:80, 60:80].all()
    assert not cleaned[90:95, 5:10].any()
    empty, none = clean_components(np.zeros((8, 8), bool))
    assert none == 0 and not empty.any()


@pytest.mark.parametrize("side, kernel", [(320, 11), (640, 23), (160, 5), (40, 3)])
def test_dilation_is_eleven_pixels_at_320_scaled_with_the_image(side, kernel):
    mask = np.zeros((side // 2, side), bool)
    mask[side // 4, side // 2] = True
    grown = dilate_for_inpainting(mask)
    assert grown.sum() == kernel * kernel


def test_fallback_mask_finds_a_dark_disc():
    image, truth = disc_image()
    assert iou(fallback_mask(image), truth) > 0.7


def test_fallback_mask_finds_an_object_touching_the_border_and_a_small_one():
    touching, truth = disc_image(box=(60, 90, 140, 170))
    assert iou(fallback_mask(touching), truth) > 0.7
    small, truth = disc_image(box=(90, 65, 110, 85))
    assert iou(fallback_mask(small), truth) > 0.7


def test_fallback_mask_of_a_plain_image_is_empty():
    assert not fallback_mask(Image.new("RGB", (64, 48), PAPER)).any()


# --- models ---------------------------------------------------------------------------------------


def test_saliency_model_reads_the_fused_map_at_the_image_size(tmp_path):
    model = SaliencyModel(save_tiny_u2net(tmp_path / "u2net.onnx"))
    image, truth = disc_image()
    saliency = model.predict(image)
    assert saliency.shape == (150, 200) and saliency.dtype == np.float32
    assert 0.0 <= saliency.min() and saliency.max() <= 1.0
    assert saliency[truth].mean() > 0.9 and saliency[~truth].mean() < 0.1
    assert iou(saliency > 0.5, truth) > 0.9


def test_inpainting_model_pads_odd_sizes_and_keeps_pixels_outside_the_mask(tmp_path):
    model = InpaintingModel(save_tiny_lama(tmp_path / "big-lama.pt"))
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (29, 37, 3), dtype=np.uint8)
    mask = np.zeros((29, 37), bool)
    mask[5:20, 8:30] = True
    filled = np.asarray(model.inpaint(Image.fromarray(pixels), mask))
    assert filled.shape == pixels.shape
    np.testing.assert_array_equal(filled[~mask], pixels[~mask])
    # The stand-in fills with the mean colour of the (mirror-padded) rest: a flat, average colour.
    hole = filled[mask].astype(float)
    assert hole.std(axis=0).max() < 1.0
    np.testing.assert_allclose(hole.mean(axis=0), pixels[~mask].mean(axis=0), atol=12)


def test_fallback_inpaint_fills_only_the_hole():
    image, truth = disc_image()
    hole = dilate_for_inpainting(truth)
    filled = np.asarray(fallback_inpaint(image, hole))
    original = np.asarray(image)
    np.testing.assert_array_equal(filled[~hole], original[~hole])
    assert np.abs(filled[hole].astype(int) - PAPER).max() < 8


# --- the split ------------------------------------------------------------------------------------


def test_split_with_given_models_uses_them_without_notices(tmp_path):
    image, truth = disc_image()
    saliency = SaliencyModel(save_tiny_u2net(tmp_path / "u2net.onnx"))
    inpainting = InpaintingModel(save_tiny_lama(tmp_path / "big-lama.pt"))
    split = split_scene(as_input(image), saliency=saliency, inpainting=inpainting,
                        models_dir=tmp_path / "nothing here")
    assert (split.mask_method, split.inpaint_method, split.notices) == ("u2net", "lama", [])
    assert split.mask.shape == (150, 200) and split.mask.dtype == bool
    assert iou(split.mask, truth) > 0.8
    foreground = np.asarray(split.foreground)
    assert (foreground[~split.mask] == 255).all()
    np.testing.assert_array_equal(foreground[split.mask], np.asarray(image)[split.mask])
    background = np.asarray(split.background).astype(int)
    assert np.abs(background[truth] - PAPER).max() <= 2     # the disc is gone
    # An 80 px disc on a 200 px image: 0.4 * 224 < 0.7 * 224, so it is re-framed.
    assert split.reframed and split.object_frame.scale < 1


def test_split_loads_weights_from_the_models_folder(weights_dir):
    image, truth = disc_image()
    split = split_scene(as_input(image), models_dir=weights_dir)
    assert (split.mask_method, split.inpaint_method, split.notices) == ("u2net", "lama", [])
    assert iou(split.mask, truth) > 0.8


def test_split_of_a_downscaled_working_image_frames_the_object_like_the_full_image(weights_dir):
    full, _ = disc_image(400, 300, box=(120, 70, 280, 230))
    working = full.resize((200, 150), Image.LANCZOS)     # as load_image does for large photos
    at_full = split_scene(as_input(full), models_dir=weights_dir)
    at_working = split_scene(as_input(working, 400, 300), models_dir=weights_dir)
    assert at_working.mask.shape == (150, 200) and at_full.mask.shape == (300, 400)
    assert at_full.reframed and at_working.reframed
    assert at_working.object_frame.scale == pytest.approx(at_full.object_frame.scale, rel=0.02)
    assert at_working.object_frame.tx == pytest.approx(at_full.object_frame.tx, abs=1.5)
    assert at_working.object_frame.ty == pytest.approx(at_full.object_frame.ty, abs=1.5)
    frame = CanvasFrame(400, 300)
    difference = foreground_target(at_working, frame) - foreground_target(at_full, frame)
    assert difference.abs().mean() < 0.02


@pytest.mark.parametrize("explicit_dir", [True, False])
def test_missing_weights_fall_back_and_say_so(tmp_path, explicit_dir):
    image, truth = disc_image()
    directory = tmp_path / "models"
    split = split_scene(as_input(image), models_dir=directory if explicit_dir else None)
    assert (split.mask_method, split.inpaint_method) == ("fallback", "fallback")
    assert len(split.notices) == 2
    u2net, lama = split.notices
    assert "u2net.onnx" in u2net and "fallback" in u2net and "install.py" in u2net
    assert "big-lama.pt" in lama and "fallback" in lama and "install.py" in lama
    if explicit_dir:
        assert str(directory) in u2net and str(directory) in lama
    assert iou(split.mask, truth) > 0.7
    background = np.asarray(split.background).astype(int)
    assert np.abs(background[truth] - PAPER).max() < 8


def test_unreadable_weights_fall_back_and_say_so(tmp_path):
    (tmp_path / "u2net.onnx").write_bytes(b"not a model")
    (tmp_path / "big-lama.pt").write_bytes(b"not a model either")
    split = split_scene(as_input(disc_image()[0]), models_dir=tmp_path)
    assert (split.mask_method, split.inpaint_method) == ("fallback", "fallback")
    assert all("could not be loaded" in notice for notice in split.notices) and len(split.notices) == 2


def test_nothing_salient_gives_a_blank_foreground_and_the_image_as_background(weights_dir):
    plain = Image.new("RGB", (64, 48), PAPER)
    split = split_scene(as_input(plain), models_dir=weights_dir)
    assert NO_OBJECT_NOTICE in split.notices
    assert not split.mask.any() and not split.reframed and split.inpaint_method == "none"
    assert (np.asarray(split.foreground) == 255).all()
    np.testing.assert_array_equal(np.asarray(split.background), np.asarray(plain))
    assert foreground_target(split, CanvasFrame(64, 48)).min() == 1.0
    assert background_target(split).shape == (3, 224, 224)


def test_user_mask_file_is_used_at_the_working_size(tmp_path, weights_dir):
    image, _ = disc_image()
    drawn = Image.new("L", (400, 300), 0)         # twice the image's size: same aspect ratio
    ImageDraw.Draw(drawn).rectangle((40, 60, 119, 139), fill=255)
    path = tmp_path / "mask.png"
    drawn.save(path)
    split = split_scene(as_input(image), user_mask=path, models_dir=weights_dir)
    assert split.mask_method == "user"
    expected = np.zeros((150, 200), bool)
    expected[30:70, 20:60] = True
    np.testing.assert_array_equal(split.mask, expected)


def test_user_mask_from_a_phone_is_turned_upright_like_the_photo(tmp_path):
    # Stored sideways (300 x 400) with EXIF orientation 6 (rotate 90 degrees clockwise to
    # show): upright it is 400 x 300, the image's shape, with the object at the top left.
    stored = Image.new("L", (300, 400), 0)
    ImageDraw.Draw(stored).rectangle((0, 0, 59, 79), fill=255)  # shown upright: top right
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "mask.jpg"
    stored.save(path, exif=exif, quality=100)
    mask = load_user_mask(path, (200, 150), (200, 150))
    assert mask.shape == (150, 200)
    assert mask[2:28, 163:198].all() and not mask[:, :150].any() and not mask[35:].any()


def test_user_mask_transparency_marks_the_object(tmp_path, weights_dir):
    drawn = Image.new("RGBA", (200, 150), (0, 0, 0, 0))
    ImageDraw.Draw(drawn).rectangle((10, 10, 49, 29), fill=(0, 0, 0, 255))   # black but opaque
    path = tmp_path / "mask.png"
    drawn.save(path)
    split = split_scene(as_input(disc_image()[0]), user_mask=path, models_dir=weights_dir)
    assert split.mask.sum() == 40 * 20 and split.mask[10:30, 10:50].all()


def test_user_mask_of_the_wrong_shape_or_empty_is_refused(tmp_path):
    image = as_input(disc_image()[0])
    square = tmp_path / "square.png"
    Image.new("L", (100, 100), 255).save(square)
    with pytest.raises(ValueError, match="aspect ratio") as refused:
        split_scene(image, user_mask=square)
    assert isinstance(refused.value, MaskInputError) and "100x100" in str(refused.value)
    empty = tmp_path / "empty.png"
    Image.new("L", (200, 150), 0).save(empty)
    with pytest.raises(ValueError, match="marks no object"):
        split_scene(image, user_mask=empty)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"no image")
    with pytest.raises(ValueError, match="could not be read"):
        split_scene(image, user_mask=garbage)


# --- re-framing -----------------------------------------------------------------------------------


def rectangle_mask(height: int, width: int, top: int, left: int, rows: int, columns: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[top:top + rows, left:left + columns] = True
    return mask


def test_small_single_object_is_zoomed_to_seventy_percent_and_centred():
    frame = CanvasFrame(200, 100)
    mask = rectangle_mask(100, 200, 40, 30, 20, 40)     # input px: x 30..70, y 40..60
    object_frame = object_reframing(mask, frame, 1)
    canvas = 224 / 200                                    # canvas px per input px
    box_scene = np.array([[30, 40 + 50], [70, 60 + 50]], float) * canvas   # padded 50 px above
    box_object = object_frame.inverse().apply(box_scene)
    longer = 0.7 * 224
    np.testing.assert_allclose(box_object, [[112 - longer / 2, 112 - longer / 4],
                                            [112 + longer / 2, 112 + longer / 4]], atol=1e-9)
    np.testing.assert_allclose(object_frame.scale, 40 * canvas / longer)


def test_big_object_or_two_objects_are_not_reframed():
    frame = CanvasFrame(200, 100)
    big = rectangle_mask(100, 200, 5, 10, 90, 180)
    assert object_reframing(big, frame, 1) == Affine2D.IDENTITY
    pair = rectangle_mask(100, 200, 10, 10, 20, 20) | rectangle_mask(100, 200, 60, 150, 20, 20)
    cleaned, count = clean_components(pair)
    assert count == 2 and object_reframing(cleaned, frame, count) == Affine2D.IDENTITY
    assert object_reframing(np.zeros((100, 200), bool), frame, 0) == Affine2D.IDENTITY


def test_reframing_does_not_depend_on_the_working_resolution():
    frame = CanvasFrame(400, 200)
    working = rectangle_mask(100, 200, 40, 30, 20, 40)
    full = np.repeat(np.repeat(working, 2, axis=0), 2, axis=1)
    at_working, at_full = object_reframing(working, frame, 1), object_reframing(full, frame, 1)
    np.testing.assert_allclose([at_working.scale, at_working.tx, at_working.ty],
                               [at_full.scale, at_full.tx, at_full.ty], atol=1e-9)


def test_object_canvas_to_image_and_back_is_exact():
    frame = CanvasFrame(1000, 640)
    mask = rectangle_mask(320, 500, 100, 200, 30, 70)    # working image at half the input size
    object_frame = object_reframing(mask, frame, 1)
    assert object_frame != Affine2D.IDENTITY
    object_to_image = object_frame.then(frame.canvas_to_image)
    points = torch.rand(50, 4, 2, dtype=torch.float64) * 224
    in_image = object_to_image.apply(points)
    back = object_to_image.inverse().apply(in_image)
    assert (back - points).abs().max() < 1e-4
    in_image32 = object_to_image.apply(points.float())
    back32 = object_to_image.inverse().apply(in_image32)
    assert (back32 - points.float()).abs().max() < 1e-4


def test_foreground_target_shows_the_object_where_the_object_frame_puts_it():
    # The input is 400x200; the working image is half that, as for a large photo.
    working = Image.new("RGB", (200, 100), (255, 255, 255))
    ImageDraw.Draw(working).rectangle((30, 40, 69, 59), fill=INK)   # working px x 30..70, y 40..60
    mask = rectangle_mask(100, 200, 40, 30, 20, 40)
    frame = CanvasFrame(400, 200)
    object_frame = object_reframing(mask, frame, 1)
    split = SceneSplit(mask, working, working, object_frame, True, "user", "lama", [])
    target = foreground_target(split, frame)
    assert target.shape == (3, 224, 224) and target.dtype == torch.float32
    dark = (target.mean(dim=0) < 0.5).numpy()
    rows, columns = np.flatnonzero(dark.any(axis=1)), np.flatnonzero(dark.any(axis=0))
    box_scene = frame.image_to_canvas.apply(np.array([[30, 40], [70, 60]], float) * 2)
    (x0, y0), (x1, y1) = object_frame.inverse().apply(box_scene)
    assert abs(columns[0] - x0) <= 1.5 and abs(columns[-1] + 1 - x1) <= 1.5
    assert abs(rows[0] - y0) <= 1.5 and abs(rows[-1] + 1 - y1) <= 1.5
    assert abs((x0 + x1) / 2 - 112) < 1e-6 and abs((y0 + y1) / 2 - 112) < 1e-6
    # Lanczos rings for a few source pixels, i.e. about 3 x 3.9 canvas px at this zoom.
    outside = np.ones_like(dark)
    outside[max(0, rows[0] - 12):rows[-1] + 13, max(0, columns[0] - 12):columns[-1] + 13] = False
    assert target[:, torch.from_numpy(outside)].min() > 0.99


def test_targets_without_reframing_are_the_padded_canvas():
    image, _ = disc_image(200, 100, box=(10, 5, 190, 95))     # a big object: not re-framed
    split = split_scene(as_input(image), user_mask=None, models_dir=None)
    assert not split.reframed
    frame = CanvasFrame(200, 100)
    foreground = foreground_target(split, frame)
    # Padding: 50 input px (56 canvas px) of white above and below the picture.
    assert foreground[:, :50].min() == 1.0 and foreground[:, -50:].min() == 1.0
    assert foreground[:, 112, 112].max() < 0.3
    background = background_target(split)
    assert background.shape == (3, 224, 224) and background[:, :50].min() == 1.0


def test_inpainting_of_a_large_image_runs_the_model_at_most_at_1024_px(tmp_path):
    model = InpaintingModel(save_tiny_lama(tmp_path / "lama.pt"))
    sizes = []
    network = model.model
    model.model = lambda image, mask: (sizes.append(tuple(image.shape[-2:])), network(image, mask))[1]
    image = Image.new("RGB", (1500, 900), (200, 180, 160))
    hole = np.zeros((900, 1500), bool)
    hole[300:600, 500:900] = True
    filled = model.inpaint(image, hole)
    assert filled.size == (1500, 900) and max(sizes[0]) <= 1024
    pixels = np.asarray(filled)
    assert np.array_equal(pixels[~hole], np.asarray(image)[~hole])
