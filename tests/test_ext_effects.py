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

from tests.conftest import draw_scene

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


def run_effect(tmp_path: Path, body: str, ids: list[str], backend: RecordingBackend, *options: str):
    drawing = tmp_path / "drawing.svg"
    drawing.write_text(
        f'<svg xmlns="{SVG_NS}" xmlns:xlink="http://www.w3.org/1999/xlink" '
        'xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape" '
        f'width="200mm" height="100mm" viewBox="0 0 200 100">{body}</svg>', encoding="utf-8")
    output, errors = io.BytesIO(), io.StringIO()
    with mock.patch.dict(os.environ, {"DOCUMENT_PATH": str(drawing)}), \
            mock.patch.object(effects, "_backend", lambda server: backend), \
            contextlib.redirect_stderr(errors):
        effects.SketchImage().run([str(drawing), *(f"--id={name}" for name in ids), "--cell=1,1",
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
