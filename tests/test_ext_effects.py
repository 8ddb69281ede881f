"""The Sketch Image effect end to end through inkex's command line, with a recording backend:
what it sends (the photos, the drawn mask, the dialog's parameters) and what it imports.

The backend stand-in answers like backend/app.py from a real cell SVG written by the core;
the real daemon is exercised by test_ext_client.py and the real Inkscape by
test_inkscape_e2e.py.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
from pathlib import Path
from unittest import mock

import inkex  # noqa: E402
import numpy as np
import pytest
from clipascene_ext import effects  # noqa: E402
from clipascene_ext.importer import find_layers  # noqa: E402
from clipascene_ext.style import StrokeStyle  # noqa: E402
from ext_testing import RecordingBackend  # noqa: E402
from PIL import Image

from tests.scenes import draw_scene

SVG_NS = "http://www.w3.org/2000/svg"


def png_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def cell_svg(width: int, height: int) -> bytes:
    from clipascene_core.sketch.strokes import StrokeSet, svg_document

    rng = np.random.default_rng(3)
    points = rng.uniform(0, 1, (6, 4, 2)) * (width, height)
    strokes = StrokeSet(points, 2.0, width, height)
    return svg_document(width, height, [("background", strokes), ("foreground", strokes)]).encode()


def run_effect(tmp_path: Path, body: str, ids: list[str], backend: RecordingBackend, *options: str,
               effect=effects.SketchImage, cell: str = "1,1"):
    """Run `effect` on a drawing holding `body` (or, given an element, the whole document
    an earlier run returned)."""
    drawing = tmp_path / "drawing.svg"
    if not isinstance(body, str):
        drawing.write_bytes(body.tostring())
    else:
        drawing.write_text(
            f'<svg xmlns="{SVG_NS}" xmlns:xlink="http://www.w3.org/1999/xlink" '
            'xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape" '
            f'width="200mm" height="100mm" viewBox="0 0 200 100">{body}</svg>', encoding="utf-8")
    output, errors = io.BytesIO(), io.StringIO()
    with mock.patch.dict(os.environ, {"DOCUMENT_PATH": str(drawing)}), \
            mock.patch.object(effects, "_backend", lambda server: backend), \
            contextlib.redirect_stderr(errors):
        effect().run([str(drawing), *(f"--id={name}" for name in ids), f"--cell={cell}",
                      *options], output=output)
    assert errors.getvalue() == ""
    return inkex.load_svg(io.BytesIO(output.getvalue())).getroot()


def test_a_shape_selected_with_the_photo_is_sent_as_its_mask(tmp_path):
    # The photo: 80 x 40 px shown at (10, 20) as 80 x 40 user units; the ellipse around
    # bitmap px (20, 20), radii 15 x 10, drawn in a moved layer.
    backend = RecordingBackend(cell_svg(80, 40))
    svg = run_effect(tmp_path,
                     f'<image id="photo" x="10" y="20" width="80" height="40" '
                     f'xlink:href="{png_uri(draw_scene(80, 40))}"/>'
                     '<g transform="translate(5,5)">'
                     '<ellipse id="object" cx="25" cy="35" rx="15" ry="10"/></g>',
                     ["photo", "object"], backend, "--draft=true", "--seed=42", "--preset=preview")
    (job,) = backend.submitted
    assert job["params"] == {"preset": "preview", "layers": [2, 8, 11], "rows": 8, "strokes": 64,
                             "split": True, "seed": 42, **effects.DRAFT}
    mask = np.asarray(Image.open(io.BytesIO(job["mask"])))
    assert mask.shape == (40, 80)
    ys, xs = np.mgrid[0:40, 0:80] + 0.5
    inside = ((xs - 20) / 15) ** 2 + ((ys - 20) / 10) ** 2 < 1
    assert np.mean((mask == 255) == inside) > 0.98
    assert mask[20, 20] == 255 and mask[20, 60] == 0
    (layer,) = find_layers(svg)
    assert layer.get("data-clipascene-cell") == "1,1,combined"
    assert layer.get("data-clipascene-layer") == "8"


def test_several_photos_give_one_job_and_one_layer_each_styled_alike(tmp_path):
    backend = RecordingBackend(cell_svg(60, 30))
    photos = "".join(f'<image id="photo{index}" x="{10 + 70 * index}" y="10" width="60" height="30" '
                     f'xlink:href="{png_uri(draw_scene(60, 30 + index))}"/>' for index in range(2))
    svg = run_effect(tmp_path, f'<g id="photos">{photos}</g>', ["photos"], backend,
                     "--stroke_color=4278190335", "--width_scale=3", "--opacity=50")
    assert [job["mask"] for job in backend.submitted] == [None, None]
    assert [Image.open(io.BytesIO(job["image"])).size for job in backend.submitted] == [(60, 30), (60, 31)]
    layers = find_layers(svg)
    assert [layer.get("data-clipascene-image") for layer in layers] == ["photo0", "photo1"]
    assert [layer.get("data-clipascene-job") for layer in layers] == [f"{1:016x}", f"{2:016x}"]
    for layer in layers:
        assert StrokeStyle.decode(layer.get("data-clipascene-style")) == StrokeStyle("#ff0000", 3.0, 0.5)
        for path in layer.iter(f"{{{SVG_NS}}}path"):
            style = inkex.Style(path.get("style"))
            assert (style["stroke"], float(style["stroke-width"]), float(style["opacity"])) == (
                "#ff0000", 6.0, 0.5)


def test_scripted_parameters_are_the_backends(tmp_path):
    """The effect's parameter names and values are what POST /v1/jobs accepts."""
    pytest.importorskip("clipascene_backend.params")
    from clipascene_backend.params import JobParams

    backend = RecordingBackend(cell_svg(40, 40))
    photo = f'<image id="photo" width="40" height="40" xlink:href="{png_uri(draw_scene(40, 40))}"/>'
    run_effect(tmp_path, photo, ["photo"], backend, "--iterations=5", "--row_steps=3", "--draft=true")
    params = backend.submitted[0]["params"]
    assert params["iterations"] == 5 and params["row_steps"] == 3, "explicit steps win over the draft"
    JobParams(**json.loads(json.dumps(params))).to_config()


def test_sketch_image_returns_at_once_and_the_photo_remembers_its_jobs(tmp_path):
    """Without a scripted cell Sketch Image imports nothing and waits for nothing: it opens a
    viewer per job beside Inkscape and writes the jobs on the photos; Import Sketch on a photo
    later imports a cell of its newest job, styled as the Sketch Image dialog said."""
    from clipascene_ext import viewer
    from clipascene_ext.photojobs import remembered

    backend = RecordingBackend(cell_svg(60, 30))
    photos = "".join(f'<image id="photo{index}" x="{10 + 70 * index}" y="10" width="60" height="30" '
                     f'xlink:href="{png_uri(draw_scene(60, 30 + index))}"/>' for index in range(2))
    started = []
    with mock.patch.object(viewer, "start", lambda *arguments, **options: started.append(
            (arguments, options))):
        svg = run_effect(tmp_path, photos, ["photo0", "photo1"], backend, "--stroke_color=4278190335",
                         cell="")
    assert find_layers(svg) == []
    assert [arguments[1] for arguments, _ in started] == [f"{1:016x}", f"{2:016x}"]
    # Each viewer says at its top how long the backend expects the two sketches to take.
    assert {options["estimate"] for _, options in started} == {
        "The backend expects these 2 sketches, one after another, to take about 30 min (a first "
        "guess: this backend has not timed a sketch on its device yet). Inkscape stays usable "
        "meanwhile."}
    assert [remembered(svg.getElementById(f"photo{index}")) for index in range(2)] == [
        [f"{1:016x}"], [f"{2:016x}"]]

    # Sketched again with other settings: the photo lists both, the newest first.
    (tmp_path / "again").mkdir()
    with mock.patch.object(viewer, "start", lambda *arguments, **options: None):
        again = run_effect(tmp_path / "again", svg, ["photo0"], backend, "--rows=2",
                           "--stroke_color=4278190335", cell="")
    photo = again.getElementById("photo0")
    assert remembered(photo) == [f"{3:016x}", f"{1:016x}"]

    (tmp_path / "import").mkdir()
    imported = run_effect(tmp_path / "import", again, ["photo0"], backend,
                          effect=effects.ChangeAbstraction, cell="1,0")
    (layer,) = find_layers(imported)
    assert layer.get("data-clipascene-job") == f"{3:016x}" and layer.get("data-clipascene-image") == "photo0"
    assert StrokeStyle.decode(layer.get("data-clipascene-style")).color == "#ff0000"

    (tmp_path / "older").mkdir()
    older = run_effect(tmp_path / "older", again, ["photo0"], backend,
                       f"--job={1:016x}", effect=effects.ChangeAbstraction, cell="1,0")
    assert [layer.get("data-clipascene-job") for layer in find_layers(older)] == [f"{1:016x}"]


def test_import_sketch_on_a_photo_never_sketched_says_what_to_do(tmp_path):
    backend = RecordingBackend(cell_svg(40, 40))
    photo = f'<image id="photo" width="40" height="40" xlink:href="{png_uri(draw_scene(40, 40))}"/>'
    with pytest.raises(SystemExit):
        run_effect(tmp_path, photo, ["photo"], backend, effect=effects.ChangeAbstraction, cell="0,0")


def test_the_job_chooser_describes_each_matrix_by_its_settings_newest_first():
    from clipascene_ext.photojobs import describe, newest_first

    jobs = [{"id": "a", "created": 100.0, "status": "cancelled",
             "params": {"preset": "preview", "layers": [2, 8], "rows": 4, "strokes": 32, "split": True},
             "progress": {"cells_done": 3, "cells_total": 10}},
            {"id": "b", "created": 200.0, "status": "running",
             "params": {"preset": "standard", "layers": [11], "rows": 8, "strokes": 64, "split": False},
             "progress": {"cells_done": 0, "cells_total": 9}}]
    assert [job["id"] for job in newest_first(jobs)] == ["b", "a"]
    first, second = (describe(job) for job in newest_first(jobs))
    assert "quality standard" in first and "fidelity 11" in first and "one region" in first
    assert "sketching" in first and "0 of 9" in first
    assert "fidelity 2, 8" in second and "4 simplicity rows" in second and "stopped" in second


def test_a_copy_of_a_sketched_photo_finds_its_matrices_by_its_bytes(tmp_path):
    """A photo without the record (pasted into another document): the backend is asked for
    the jobs of its bytes, and the newest is imported."""
    backend = RecordingBackend(cell_svg(40, 40))
    data = png_uri(draw_scene(40, 40))
    backend.submit(b"another photo", "other.png", {"rows": 1})
    backend.submit(__import__("base64").b64decode(data.split(",", 1)[1]), "photo.png", {"rows": 2})
    photo = f'<image id="photo" width="40" height="40" xlink:href="{data}"/>'
    svg = run_effect(tmp_path, photo, ["photo"], backend, effect=effects.ChangeAbstraction, cell="0,0")
    (layer,) = find_layers(svg)
    assert layer.get("data-clipascene-job") == f"{2:016x}"


def test_a_scripted_import_waits_for_the_final_cell_not_its_draft(monkeypatch):
    class Drafting:
        """A matrix whose cell (1, 0) is a draft for two polls, then final."""

        polls = 0

        def matrix(self, job_id):
            self.polls += 1
            draft = self.polls <= 2
            return {"status": "running", "rows": 2, "layers": [8], "cells": [
                {"row": row, "column": 0, "ready": row == 1, "draft": row == 1 and draft}
                for row in range(2)]}

    monkeypatch.setattr(effects, "POLL_S", 0)
    backend = Drafting()
    cell = effects.wait_for_cell(backend, "job", 1, 0)
    assert cell["ready"] and not cell["draft"] and backend.polls == 3
