"""End to end: the full matrix on tiny models, foreground and background, vector composition."""

import io
import json
import math

import cairosvg
import numpy as np
import pytest
import torch
from lxml import etree
from PIL import Image, ImageDraw

from clipascene_core.cli.commands import main
from clipascene_core.io.records import Manifest
from clipascene_core.scene.compose import inside_outline, mask_outline
from clipascene_core.sketch.render import bezier_samples
from clipascene_core.sketch.strokes import SVG_NS, read_svg
from tests.scenes import small_object_photo
from tests.tiny_models import TINY, save_tiny_split_models


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    folder = tmp_path_factory.mktemp("matrix")
    models = save_tiny_split_models(folder / "models")
    out = folder / "out"
    code = main(["sketch", str(small_object_photo(folder / "photo.png")), "--out", str(out), *TINY,
                 "--layers", "2,8", "--rows", "2", "--strokes", "12", "--iterations", "12",
                 "--row-steps", "8", "--models-dir", str(models)])
    assert code == 0
    return out, json.loads((out / "manifest.json").read_text())


def test_manifest_describes_every_cell(matrix):
    out, manifest = matrix
    assert manifest["schema_version"] == 2
    assert manifest["rows"] == 3 and manifest["layers"] == [2, 8]
    assert manifest["cells_done"] == manifest["cells_total"] == 6
    assert manifest["regions"] == ["background", "foreground"]
    assert manifest["preprocessing"]["mask_method"] == "u2net"
    assert manifest["preprocessing"]["inpaint_method"] == "lama"
    assert manifest["preprocessing"]["reframed"] is True
    # No --preset: "auto" ran the CPU draft, and the manifest says so with its step counts.
    assert manifest["preset"]["requested"] == "auto" and manifest["preset"]["ran"] == "preview"
    assert manifest["preset"]["steps"]["fidelity"]["foreground"] == {"2": 12, "8": 12}
    assert manifest["preset"]["steps"]["row_steps"] == 8
    for cell in manifest["cells"]:
        for part in ("combined", "foreground", "background", "png"):
            assert (out / cell["files"][part]).is_file()
        for region in ("foreground", "background"):
            details = cell["regions"][region]
            assert details["strokes"] >= 1 and "clip_loss" in details
            if cell["row"] > 0:
                assert details["ratio"] > 0
                # The reference's expected count, rounded, within what the row above kept.
                assert details["strokes"] <= max(1, round(details["expected_strokes"]))
    assert (out / "grid.png").is_file() and (out / "mask.png").is_file()
    # What each region kept: never more than asked (12 a region), never growing down a column.
    # What the cell shows: strokes, not the pieces of background strokes cut at the object
    # outline, and never more than the region kept (a stroke wholly under the object is gone).
    for layer in manifest["layers"]:
        column = sorted((c for c in manifest["cells"] if c["layer"] == layer), key=lambda c: c["row"])
        for region in ("foreground", "background"):
            kept = [cell["regions"][region]["strokes"] for cell in column]
            assert all(count <= 12 for count in kept)
            assert kept == sorted(kept, reverse=True)
            for cell in column:
                assert cell["pieces"][region] >= cell["strokes"][region]
                assert cell["strokes"][region] <= cell["regions"][region]["strokes"]


def test_rows_keep_the_ids_of_the_fidelity_sketchs_strokes(matrix):
    """Down a column a stroke keeps its id (its pieces, cut at the image frame or the object's
    outline, are NAME.k), and rows never draw more strokes than the sketch above kept. (Which
    strokes a row keeps nests: tests/test_simplicity.py; a kept stroke that a row moves wholly
    outside the photo, or under the object, is not in that row's files, so the SVGs alone
    cannot show the nesting.)"""
    out, manifest = matrix
    for layer in manifest["layers"]:
        for part in ("foreground", "background"):
            previous = None
            for row in range(manifest["rows"]):
                cell = next(c for c in manifest["cells"] if c["row"] == row and c["layer"] == layer)
                names = {name.split(".")[0] for name in
                         next(iter(read_svg(out / cell["files"][part]).values())).names}
                assert names <= {f"stroke-{index}" for index in range(12)}
                kept = cell["regions"][part]["strokes"]
                assert previous is None or kept <= previous
                previous = kept


def test_every_stroke_of_every_cell_lies_inside_the_image_frame(matrix):
    """The photo (200 x 140) is padded to a square canvas: strokes that wander onto the
    padding are trimmed at the frame, so what is imported is what the thumbnails show. (How
    a stroke is cut at the frame: tests/test_compose.py, on constructed strokes.)"""
    out, manifest = matrix
    for cell in manifest["cells"]:
        for part, name in cell["files"].items():
            if part == "png":
                continue
            for strokes in read_svg(out / name).values():
                samples = bezier_samples(torch.from_numpy(strokes.points), 33).numpy()
                assert samples.size == 0 or (
                    (samples[..., 0] >= -1e-6).all() and (samples[..., 0] <= 200 + 1e-6).all()
                    and (samples[..., 1] >= -1e-6).all() and (samples[..., 1] <= 140 + 1e-6).all()
                ), (name, samples.min(axis=(0, 1)), samples.max(axis=(0, 1)))


def _count(strokes):
    return 0 if strokes is None else strokes.stroke_count


def test_combined_cells_cut_the_background_at_the_object_and_keep_the_foreground(matrix):
    out, manifest = matrix
    mask = np.asarray(Image.open(out / "mask.png")) > 127
    outline = mask_outline(mask, 200, 140)
    for cell in manifest["cells"]:
        combined = read_svg(out / cell["files"]["combined"])
        # Each part's own file holds exactly that part of the combined cell, and the counts
        # say so, whichever background strokes the outline crosses or covers.
        for part in ("foreground", "background"):
            alone = read_svg(out / cell["files"][part]).get(part)
            in_combined = combined.get(part)
            assert _count(alone) == _count(in_combined) == cell["strokes"][part]
            if _count(alone):
                assert alone.names == in_combined.names
                assert np.allclose(alone.points, in_combined.points, atol=1e-4)
        background = combined.get("background")
        if background is None or not len(background):
            continue
        # Midpoints of the cut background pieces are never inside the object.
        middles = bezier_samples(torch.from_numpy(background.points), 21).numpy()[:, 5:16]
        assert not inside_outline(middles, outline).any()


def test_foreground_strokes_land_on_the_object_in_the_image_frame(matrix):
    """Initial strokes sit on the dark disc (the reference's XDoG on CLIP-normalised luma marks
    dark areas as well as edges) in the re-framed object canvas; mapped back, the fidelity
    sketch's strokes must lie on the disc (centre (95, 70), radius 25 px), not elsewhere."""
    out, manifest = matrix
    cell = next(c for c in manifest["cells"] if c["row"] == 0 and c["layer"] == 2)
    strokes = read_svg(out / cell["files"]["foreground"])["foreground"]
    distances = np.hypot(strokes.points[:, 0, 0] - 95, strokes.points[:, 0, 1] - 70)
    assert np.median(distances) < 25 and np.mean(distances < 31) >= 0.8
    # Re-framing zoomed the object in, yet its lines keep the background's weight: the
    # reference maps the object's points back, not its widths.
    assert manifest["preprocessing"]["reframed"]
    background = read_svg(out / cell["files"]["background"])["background"]
    assert strokes.widths[0] == pytest.approx(background.widths[0])


def test_simplified_rows_draw_each_kept_stroke_at_its_keep_sample(matrix):
    """sketch_utils.inference_sketch of the reference: a stroke stays when its Gumbel-softmax
    keep sample y = softmax(([log p, log(1 - p)] + (g1, g2)) / 0.2)[0] exceeds 0.7, and is
    drawn at y x the base width (1.5 in diffvg, the fidelity sketch's width). The manifest
    records p and g1 - g2 of each kept stroke; y is worked out here from those alone."""
    out, manifest = matrix
    fractions = []
    for cell in manifest["cells"]:
        combined = read_svg(out / cell["files"]["combined"])
        row_zero = next(c for c in manifest["cells"] if c["row"] == 0 and c["layer"] == cell["layer"])
        base = read_svg(out / row_zero["files"]["combined"])
        for group, region in (("foreground", "foreground"), ("background", "background")):
            strokes = combined[group]
            full = base[group].widths[0]
            assert np.allclose(base[group].widths, full)  # row 0: one width, as the reference
            if cell["row"] == 0:
                continue
            kept = cell["regions"][region]["kept"]
            # A kept stroke that lies wholly outside the image (or under the object) is trimmed away.
            assert {name.split(".")[0] for name in strokes.names} <= set(kept)
            for name, width in zip(strokes.names, strokes.widths, strict=True):
                stroke = kept[name.split(".")[0]]  # every piece of a cut stroke keeps its width
                p, difference = stroke["probability"], stroke["noise"]
                logits = np.array([math.log(p) + difference, math.log(1 - p)]) / 0.2
                sample = math.exp(logits[0] - np.logaddexp(logits[0], logits[1]))
                assert 0.7 < sample <= 1.0
                assert width == pytest.approx(sample * full, abs=2e-4)
                fractions.append(width / full)
            region_file = read_svg(out / cell["files"][region])[group]
            for name, width in zip(region_file.names, region_file.widths, strict=True):
                assert width == pytest.approx(full * kept[name.split(".")[0]]["width"], abs=2e-4)
    # The samples spread over (0.7, 1]: uniform full widths would not pass the checks above.
    assert fractions and min(fractions) < 0.999


def test_svgs_render_in_an_independent_renderer_like_our_png(matrix):
    out, manifest = matrix
    for cell in manifest["cells"]:
        svg = (out / cell["files"]["combined"]).read_bytes()
        root = etree.fromstring(svg)
        assert root.get("viewBox") == "0 0 200 140"
        assert root[0].tag == f"{{{SVG_NS}}}g" and root[0].get("id") == "background"
        theirs = Image.open(io.BytesIO(cairosvg.svg2png(bytestring=svg, background_color="white",
                                                        output_width=200, output_height=140)))
        theirs = np.asarray(theirs.convert("L"), dtype=np.float64) / 255
        ours = np.asarray(Image.open(out / cell["files"]["png"]).convert("L"), dtype=np.float64) / 255
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).mean() < 0.02
        ink_ours, ink_theirs = (1 - ours).sum(), (1 - theirs).sum()
        assert abs(ink_ours - ink_theirs) <= 0.1 * max(ink_theirs, 1)


def test_fallbacks_are_announced_in_manifest_and_output(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["sketch", str(small_object_photo(tmp_path / "photo.png")), "--out", str(out), *TINY,
                 "--layers", "4", "--rows", "1", "--strokes", "8", "--iterations", "2",
                 "--row-steps", "2", "--models-dir", str(tmp_path / "empty")])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["preprocessing"]["mask_method"] == "fallback"
    assert manifest["preprocessing"]["inpaint_method"] == "fallback"
    notices = " ".join(manifest["notices"])
    assert "u2net.onnx" in notices and "big-lama.pt" in notices
    err = capsys.readouterr().err
    assert "fallback" in err and "u2net.onnx" in err


def test_user_mask_and_no_split(tmp_path):
    source = small_object_photo(tmp_path / "photo.png")
    mask = Image.new("L", (200, 140), 0)
    ImageDraw.Draw(mask).rectangle((10, 10, 60, 60), fill=255)
    mask.save(tmp_path / "mask.png")
    out = tmp_path / "user"
    assert main(["sketch", str(source), "--out", str(out), *TINY, "--layers", "2", "--rows", "0",
                 "--strokes", "6", "--iterations", "2", "--mask", str(tmp_path / "mask.png")]) == 0
    assert json.loads((out / "manifest.json").read_text())["preprocessing"]["mask_method"] == "user"
    out = tmp_path / "whole"
    assert main(["sketch", str(source), "--out", str(out), *TINY, "--layers", "2", "--rows", "0",
                 "--strokes", "6", "--iterations", "2", "--no-split"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["regions"] == ["scene"] and manifest["preprocessing"] == {"split": False}


def test_the_manifest_a_run_writes_reads_back_whole(matrix):
    """manifest.json and its record agree field for field: nothing written is lost on reading."""
    _, manifest = matrix
    assert Manifest.from_dict(manifest).to_dict() == manifest
