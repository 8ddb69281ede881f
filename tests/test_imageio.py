import io
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipascene_core.io.frames import CanvasFrame
from clipascene_core.io.imageheaders import jpeg_scans
from clipascene_core.io.images import (
    MAX_ASPECT_RATIO,
    MAX_IMAGE_PIXELS,
    ImageInputError,
    load_image,
    to_canvas_tensor,
)
from tests.crafted_images import scan_bomb, webp_claiming


def png_header_only(path, width, height, depth=8, colour=0):
    """A PNG whose header claims width x height, with no real pixel data."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("fmt, suffix", [("PNG", ".png"), ("JPEG", ".jpg"), ("WEBP", ".webp")])
def test_supported_formats_load_as_rgb_with_their_size(tmp_path, fmt, suffix):
    path = tmp_path / f"photo{suffix}"
    Image.new("RGB", (37, 23), (10, 200, 30)).save(path, format=fmt)
    loaded = load_image(path)
    assert (loaded.width, loaded.height, loaded.format) == (37, 23, fmt)
    assert loaded.pixels.mode == "RGB" and loaded.pixels.size == (37, 23)


def test_transparency_is_composited_on_white(tmp_path):
    path = tmp_path / "logo.png"
    image = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    image.putpixel((0, 0), (0, 0, 0, 255))
    image.save(path)
    pixels = np.asarray(load_image(path).pixels)
    assert tuple(pixels[0, 0]) == (0, 0, 0)
    assert tuple(pixels[4, 4]) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "I;16"])
def test_other_modes_become_rgb(tmp_path, mode):
    path = tmp_path / "grey.png"
    Image.new("L", (9, 5), 100).convert(mode).save(path)
    pixels = np.asarray(load_image(path).pixels)
    assert pixels.shape == (5, 9, 3)
    assert len(np.unique(pixels)) <= 2  # grey stays grey, whatever the channel mode


def test_large_image_is_downscaled_for_the_model_but_keeps_its_frame(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (5000, 1000), "white").save(path)
    loaded = load_image(path)
    assert (loaded.width, loaded.height) == (5000, 1000)
    assert max(loaded.pixels.size) <= 2048


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("hello, I am text"), "not an image"),
        (lambda p: p.write_text("<svg xmlns='http://www.w3.org/2000/svg'/>"), "not an image"),
        (lambda p: png_header_only(p, 9000, 9000), "too large"),
    ],
)
def test_bad_inputs_get_one_line_errors(tmp_path, make, message):
    path = tmp_path / "input.png"
    make(path)
    with pytest.raises(ImageInputError, match=message) as caught:
        load_image(path)
    assert "\n" not in str(caught.value)


def test_truncated_png_is_reported(tmp_path):
    path = tmp_path / "cut.png"
    Image.effect_noise((64, 64), 50).convert("RGB").save(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ImageInputError, match="damaged or truncated"):
        load_image(path)


def test_unsupported_format_is_named(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (4, 4)).save(path, format="BMP")
    with pytest.raises(ImageInputError, match="BMP images are not supported"):
        load_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageInputError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_bomb_limit_is_the_documented_one(tmp_path):
    side = int(MAX_IMAGE_PIXELS**0.5) + 1
    with pytest.raises(ImageInputError, match="too large"):
        load_image(png_header_only(tmp_path / "bomb.png", side, side))


def test_canvas_tensor_places_content_where_the_frame_says(tmp_path):
    image = Image.new("RGB", (451, 300), "white")
    image.paste((0, 0, 0), (100, 50, 200, 150))  # a black square, image pixels [100,200)x[50,150)
    canvas = to_canvas_tensor(image)
    assert canvas.shape == (3, 224, 224)
    frame = CanvasFrame(451, 300)
    (x0, y0), (x1, y1) = frame.image_to_canvas.apply(np.array([[100.0, 50.0], [200.0, 150.0]]))
    dark = (canvas[0] < 0.5).nonzero().float()
    assert abs(dark[:, 1].min().item() - x0) < 1.0 and abs(dark[:, 1].max().item() + 1 - x1) < 1.0
    assert abs(dark[:, 0].min().item() - y0) < 1.0 and abs(dark[:, 0].max().item() + 1 - y1) < 1.0
    # Padding is white paper, not cropped content.
    assert canvas[:, :5].min() > 0.99 and canvas[:, -5:].min() > 0.99


def test_jpeg_exif_orientation_is_applied(tmp_path):
    # Stored 40x20 with its left half dark, tagged "turn 90 degrees clockwise to view" (6):
    # upright it is 20x40 with the dark half on top.
    stored = Image.new("RGB", (40, 20), "white")
    stored.paste((0, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)
    loaded = load_image(path)
    assert (loaded.width, loaded.height) == (20, 40)
    pixels = np.asarray(loaded.pixels.convert("L")).astype(int)
    assert pixels.shape == (40, 20)
    assert pixels[:18].mean() < 40 and pixels[22:].mean() > 215


def test_an_mpo_is_read_as_its_first_picture(tmp_path):
    first, second = Image.new("RGB", (30, 20), (200, 10, 10)), Image.new("RGB", (30, 20), "blue")
    path = tmp_path / "stereo.jpg"
    first.save(path, format="MPO", save_all=True, append_images=[second])
    assert Image.open(path).format == "MPO"
    loaded = load_image(path)
    assert (loaded.width, loaded.height, loaded.format) == (30, 20, "JPEG")
    red, green, blue = np.asarray(loaded.pixels).reshape(-1, 3).mean(axis=0)
    assert red > 150 and blue < 60


@pytest.mark.parametrize("size", [(5000, 40), (40, 5000), (10_000, 2)])
def test_too_thin_images_are_refused_up_front(tmp_path, size):
    path = tmp_path / "strip.png"
    Image.new("L", size, 128).save(path)
    with pytest.raises(ImageInputError, match="too thin to sketch") as caught:
        load_image(path)
    assert f"{size[0]}x{size[1]}" in str(caught.value)


def test_the_thinnest_allowed_image_loads(tmp_path):
    path = tmp_path / "strip.png"
    Image.new("L", (MAX_ASPECT_RATIO * 30, 30), 128).save(path)
    loaded = load_image(path)
    assert loaded.pixels.size == (2048, 20)


def test_a_png_whose_pixels_would_not_fit_in_memory_is_refused_before_decoding(tmp_path):
    # 62 megapixels of 16-bit RGBA: under the pixel limit, 248 MB once decoded.
    path = tmp_path / "deep.png"
    png_header_only(path, 7_874, 7_874, depth=16, colour=6)
    with pytest.raises(ImageInputError, match="too large to decode"):
        load_image(path)


def test_images_load_from_bytes_with_unprefixed_messages(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (12, 8), "red").save(path)
    assert load_image(path.read_bytes()).width == 12
    with pytest.raises(ImageInputError, match="^not an image file"):
        load_image(b"plain text")


# --- decoding budgets: scans, decoded bytes, nothing decoded beyond the header's limits ----

def test_scans_are_counted_from_the_markers_not_from_marker_like_bytes():
    # Noise makes entropy-coded data full of 0xFF bytes (stuffed as FF 00).
    noise = Image.effect_noise((300, 200), 90).convert("RGB")
    for progressive, scans in ((False, 1), (True, 10)):  # libjpeg's progression: 10 scans
        buffer = io.BytesIO()
        noise.save(buffer, "JPEG", progressive=progressive, quality=95)
        assert buffer.getvalue().count(b"\xff\x00") > 10
        assert jpeg_scans(buffer.getvalue()) == scans
    assert jpeg_scans(scan_bomb(64, 64, 500)) == 506  # the 'L' progression has 6


def test_a_scan_bomb_is_refused_before_decoding_and_at_once(tmp_path):
    # 16 MP with 600 scans: decoding it takes ~20 s; refused from its markers.
    bomb = scan_bomb(4000, 4000, 600)
    assert len(bomb) < 200_000
    started = time.monotonic()
    with pytest.raises(ImageInputError, match="the JPEG has 606 scans, too many to decode"):
        load_image(bomb)
    assert time.monotonic() - started < 1.0
    # Fewer repeats, more pixels: the budget is scans x pixels (2e9), e.g. 31 at 64 MP.
    with pytest.raises(ImageInputError, match=r"70 scans.*at most 40 at its size"):
        load_image(scan_bomb(7000, 7000, 64))
    # An ordinary progressive JPEG of the same size loads.
    assert load_image(scan_bomb(4000, 4000, 0)).width == 4000


def test_a_webp_header_claiming_a_huge_canvas_is_refused_before_pillow_opens_it():
    # 25 MP: 300 MB to decode, at 12 bytes a pixel.
    with pytest.raises(ImageInputError, match="5000x5000 in RGBA takes 300 MB"):
        load_image(webp_claiming(5000, 5000))


MEMORY_PROBE = """
import resource, sys
from clipascene_core.io.images import ImageInputError, load_image
from tests.crafted_images import flat_png
data = flat_png(13_000, 13_000)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_image(data)
    print("loaded")
except ImageInputError as error:
    print(error)
print(len(data), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_a_169_megapixel_png_is_refused_without_decoding_its_pixels():
    # 169 MP of 8-bit grey in well under a megabyte; its pixels take 169 MB once decoded.
    result = subprocess.run([sys.executable, "-c", MEMORY_PROBE], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert result.returncode == 0, result.stderr
    message, numbers = result.stdout.strip().splitlines()
    size, grown_mb = map(int, numbers.split())
    assert "too large (13000x13000" in message
    assert size < 1_000_000
    assert grown_mb < 100, f"checking the PNG took {grown_mb} MB"
