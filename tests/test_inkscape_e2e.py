"""The extension inside the real application: Debian's Inkscape under Xvfb, a real backend.

Inkscape runs the extension with /usr/bin/python3 and its bundled inkex, through
`--actions` with `.noprefs` (parameters come from the test profile's preferences.xml), on a
document with an embedded photo; the exported SVG must hold the new layer over the photo.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from html import escape
from pathlib import Path

import pytest
from inkex import CubicSuperPath, Transform
from lxml import etree

from clipascene_core.cli import inkscape_install as extension_installer
from tests.backend_helpers import free_port, module_server, processes_with
from tests.inkscape_helpers import (
    INKSCAPE_NS,
    QUICK,
    ROOT,
    SVG_NS,
    XLINK_NS,
    clipascene_layers,
    photo_document,
    profile,
    run_inkscape,
    sketch_with,
)
from tests.scenes import draw_scene

# In CI (CI=true) a missing Inkscape or Xvfb fails these tests instead of skipping them.
IN_CI = os.environ.get("CI") == "true"
pytestmark = pytest.mark.skipif(
    (shutil.which("inkscape") is None or shutil.which("xvfb-run") is None) and not IN_CI,
    reason="needs Debian's inkscape and xvfb (python3 install.py --dev installs them)",
)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    yield from module_server(tmp_path_factory)


def test_sketch_image_then_change_abstraction_in_real_inkscape(tmp_path, backend):
    document = tmp_path / "photo.svg"
    photo_document(document)
    out = tmp_path / "sketched.svg"
    sketch_profile = profile(tmp_path / "profile-sketch", backend.url, "org.clipascene.sketch_image",
                             preset="preview", layers="2,8", rows="2", strokes="8", split="true",
                             cell="1,0", iterations="3", row_steps="2")
    result = run_inkscape(sketch_profile, document,
                          "select-by-id:photo;org.clipascene.sketch-image.noprefs", out)
    assert out.is_file(), f"Inkscape wrote nothing: {result.stdout[-2000:]} {result.stderr[-2000:]}"
    layers = clipascene_layers(out)
    assert len(layers) == 1, result.stderr[-2000:]
    layer = layers[0]
    assert layer.get(f"{{{INKSCAPE_NS}}}groupmode") == "layer"
    assert layer.get(f"{{{INKSCAPE_NS}}}label") == "CLIPascene — Fidelity 2 · Simplicity 1"
    assert layer.get("data-clipascene-cell") == "1,0,combined"
    paths = list(layer.iter(f"{{{SVG_NS}}}path"))
    assert paths and all(" C " in f" {path.get('d')} " or "C" in path.get("d") for path in paths)
    labels = {group.get(f"{{{INKSCAPE_NS}}}label") for group in layer.iter(f"{{{SVG_NS}}}g")}
    assert {"Background", "Foreground"} <= labels
    photo = etree.parse(str(out)).getroot().find(f".//{{{SVG_NS}}}image")
    assert photo.get("id") == "photo" and photo.get("x") == "20"

    changed = tmp_path / "changed.svg"
    change_profile = profile(tmp_path / "profile-change", backend.url,
                             "org.clipascene.change_abstraction", cell="2,1")
    result = run_inkscape(change_profile, out,
                          f"select-by-id:{layer.get('id')};org.clipascene.change-abstraction.noprefs",
                          changed)
    assert changed.is_file(), result.stderr[-2000:]
    after = clipascene_layers(changed)
    assert len(after) == 1 and after[0].get("id") == layer.get("id")
    assert after[0].get(f"{{{INKSCAPE_NS}}}label") == "CLIPascene — Fidelity 8 · Simplicity 2"
    assert after[0].get("transform") == layer.get("transform")


def _viewers(job_id: str) -> list[int]:
    """The pids of the matrix viewers Sketch Image started for `job_id`."""
    return processes_with("clipascene_ext.viewer", job_id)


def test_sketch_image_returns_at_once_and_import_sketch_imports_later(tmp_path, backend):
    """Sketch Image without a scripted cell gives Inkscape back while the job runs; the photo
    remembers the job, so Import Sketch on the photo, later, imports a cell of it."""
    import json
    import time
    import urllib.request

    document = tmp_path / "photo.svg"
    photo_document(document)
    out = tmp_path / "submitted.svg"
    sketch_profile = profile(tmp_path / "profile-sketch", backend.url, "org.clipascene.sketch_image",
                             preset="preview", layers="2", rows="1", strokes="8", split="false",
                             iterations="400", row_steps="100")
    started = time.monotonic()
    result = run_inkscape(sketch_profile, document,
                          "select-by-id:photo;org.clipascene.sketch-image.noprefs", out)
    elapsed = time.monotonic() - started
    assert out.is_file(), f"Inkscape wrote nothing: {result.stdout[-2000:]} {result.stderr[-2000:]}"
    assert elapsed < 60, f"Inkscape was held {elapsed:.0f} s"
    assert clipascene_layers(out) == []
    photo = etree.parse(str(out)).getroot().find(f".//{{{SVG_NS}}}image")
    (job_id,) = photo.get("data-clipascene-jobs").split()
    try:
        with urllib.request.urlopen(f"{backend.url}/v1/jobs/{job_id}", timeout=10) as response:
            assert json.load(response)["status"] in ("queued", "running"), "the job keeps running"

        imported = tmp_path / "imported.svg"
        import_profile = profile(tmp_path / "profile-import", backend.url,
                                 "org.clipascene.change_abstraction", cell="1,0")
        result = run_inkscape(import_profile, out,
                              "select-by-id:photo;org.clipascene.change-abstraction.noprefs",
                              imported)
        assert imported.is_file(), result.stderr[-2000:]
        (layer,) = clipascene_layers(imported)
        assert layer.get("data-clipascene-job") == job_id
        assert layer.get("data-clipascene-cell") == "1,0,combined"
        assert layer.get(f"{{{INKSCAPE_NS}}}label") == "CLIPascene — Fidelity 2 · Simplicity 1"
        assert list(layer.iter(f"{{{SVG_NS}}}path"))
    finally:
        for pid in _viewers(job_id):  # the viewer ends with its display; make sure
            os.kill(pid, 15)


def test_linked_photos_from_a_document_in_another_folder(tmp_path, backend):
    """Photos linked the ways Inkscape writes links (relative beside and above the document,
    absolute, a file: URI with a space and non-ASCII letters, an EXIF-rotated JPEG), all
    selected at once, from a document saved in a folder that is not Inkscape's working folder:
    each gets its own layer, placed over it, styled as the parameters say."""
    from PIL import Image

    project = tmp_path / "project"
    (project / "docs").mkdir(parents=True)
    (project / "photos").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "dossier été").mkdir()
    square = draw_scene(96, 96)
    for path in (project / "photos" / "scene.png", tmp_path / "elsewhere" / "absolute.png",
                 tmp_path / "dossier été" / "scène 1.png"):
        square.save(path)
    portrait = draw_scene(96, 64)  # stored landscape; EXIF orientation 6 shows it 64 x 96
    exif = portrait.getexif()
    exif[0x0112] = 6
    portrait.save(project / "docs" / "portrait.jpg", exif=exif.tobytes(), quality=92)
    assert Image.open(project / "docs" / "portrait.jpg").size == (96, 64)
    boxes = {"relative": ("../photos/scene.png", (10, 10, 60, 60)),
             "absolute": (str(tmp_path / "elsewhere" / "absolute.png"), (80, 10, 50, 50)),
             "uri": ((tmp_path / "dossier été" / "scène 1.png").as_uri(), (140, 10, 40, 40)),
             "portrait": ("portrait.jpg", (200, 10, 40, 60))}
    images = "".join(f'<image id="{name}" x="{x}" y="{y}" width="{w}" height="{h}" '
                     f'preserveAspectRatio="none" xlink:href="{escape(href, quote=True)}"/>'
                     for name, (href, (x, y, w, h)) in boxes.items())
    document = project / "docs" / "drawing.svg"
    document.write_text(
        f'<svg xmlns="{SVG_NS}" xmlns:xlink="{XLINK_NS}" xmlns:inkscape="{INKSCAPE_NS}" '
        'xmlns:sodipodi="http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd" '
        'sodipodi:docname="drawing.svg" width="300mm" height="100mm" viewBox="0 0 300 100">'
        f'<g inkscape:groupmode="layer" id="layer1" inkscape:label="Photos">{images}</g></svg>',
        encoding="utf-8")
    out = tmp_path / "sketched.svg"
    settings = profile(tmp_path / "profile", backend.url, "org.clipascene.sketch_image",
                       preset="preview", layers="2", rows="1", strokes="8", split="false",
                       cell="1,0", iterations="3", row_steps="2", color_from_photo="true",
                       width_scale="2", taper="true", clip="on")
    result = run_inkscape(settings, document,
                          f"select-by-id:{','.join(boxes)};org.clipascene.sketch-image.noprefs", out,
                          cwd=tmp_path)
    assert out.is_file(), f"Inkscape wrote nothing: {result.stdout[-2000:]} {result.stderr[-2000:]}"
    layers = {layer.get("data-clipascene-image"): layer for layer in clipascene_layers(out)}
    assert sorted(layers) == sorted(boxes), result.stderr[-2000:]
    root = etree.parse(str(out)).getroot()
    for name, (_, (x, y, width, height)) in boxes.items():
        layer = layers[name]
        transform = Transform(layer.get("transform"))
        paths = list(layer.iter(f"{{{SVG_NS}}}path"))
        assert paths
        # The cell's pixel frame (upright for the JPEG: 64 x 96) maps onto the image's box.
        pixels = (64, 96) if name == "portrait" else (96, 96)
        for corner, want in (((0, 0), (x, y)), (pixels, (x + width, y + height))):
            got = transform.apply_to_point(corner)
            assert abs(got.x - want[0]) < 1e-3 and abs(got.y - want[1]) < 1e-3, (name, corner, got)
        for path in paths:
            original = path.get(f"{{{INKSCAPE_NS}}}original-d")
            assert original and path.get(f"{{{INKSCAPE_NS}}}path-effect"), "tapered, editable"
            if name != "portrait":  # a square photo has no padding: strokes stay on it
                for point in CubicSuperPath(original).transform(transform).to_path().end_points:
                    assert x - 1 <= point.x <= x + width + 1 and y - 1 <= point.y <= y + height + 1
            style = dict(item.split(":", 1) for item in path.get("style").split(";"))
            assert style["stroke"] == "none" and style["fill"] != "#000000"
        clips = {group.get("clip-path") for group in layer if group.get("data-clipascene-region")}
        assert len(clips) == 1 and None not in clips, "clipped to the photo"
    effects = root.findall(f".//{{{SVG_NS}}}defs/{{{INKSCAPE_NS}}}path-effect")
    assert effects and all(effect.get("effect") == "taper_stroke" for effect in effects)


def test_the_extension_manager_zip_unpacked_into_a_fresh_profile(tmp_path, backend):
    """`clipascene inkscape zip`, unpacked as the Extension Manager does (its files in a folder
    of their own), sketches in real Inkscape; no backend record comes with it."""
    zipped = extension_installer.write_zip(tmp_path / "dist", source=ROOT / "inkscape_ext")
    settings = profile(tmp_path / "profile", backend.url, "org.clipascene.sketch_image", install=False,
                       **QUICK)
    with zipfile.ZipFile(zipped) as archive:
        archive.extractall(settings / "extensions" / "clipascene-inkscape-0.1.0")
    assert not list(settings.rglob("backend.json"))
    sketch_with(settings, tmp_path)


def test_from_the_zip_without_a_daemon_one_message_says_how_to_get_it(tmp_path):
    """The Extension Manager's zip alone: no daemon recorded, running or on PATH. Its script,
    run as Inkscape runs it (Inkscape's Python and inkex, the document as argument; Inkscape
    itself would show this message in a dialog that waits for a click), ends with the one
    message saying what the daemon is and how to install it."""
    zipped = extension_installer.write_zip(tmp_path / "dist", source=ROOT / "inkscape_ext")
    folder = tmp_path / "extensions" / "clipascene-inkscape-0.1.0"
    with zipfile.ZipFile(zipped) as archive:
        archive.extractall(folder)
    document = tmp_path / "photo.svg"
    photo_document(document)
    env = dict(os.environ, HOME=str(tmp_path), PATH="/usr/bin:/bin",
               PYTHONPATH="/usr/share/inkscape/extensions")
    result = subprocess.run(
        ["/usr/bin/python3", "clipascene_sketch.py", "--id=photo", f"--server=http://127.0.0.1:{free_port()}",
         str(document)], cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    said = " ".join(result.stderr.split())
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "it is not installed" in said and "clipascene inkscape install" in said, said[-3000:]


def test_extension_inx_files_pass_inkscapes_checker():
    """INX files load in Inkscape 1.2's own checker (inkex.tester.inx), run by system Python."""
    checker = Path("/usr/share/inkscape/extensions/inkex/tester/inx.py")
    if not checker.is_file() and not IN_CI:
        pytest.skip("Debian's inkex tester is not installed")
    code = (
        "import sys; from inkex.tester.inx import InxMixin\n"
        "class Check(InxMixin):\n"
        "    def assertEqual(self, a, b, msg=None):\n"
        "        assert a == b, msg or (a, b)\n"
        "    def assertTrue(self, a, msg=None):\n"
        "        assert a, msg\n"
        "    def assertIn(self, a, b, msg=None):\n"
        "        assert a in b, msg or (a, b)\n"
        "    def assertFalse(self, a, msg=None):\n"
        "        assert not a, msg\n"
        "for path in sys.argv[1:]:\n"
        "    Check().assertInxIsGood(path)\n"
    )
    inx = [str(path) for path in sorted((ROOT / "inkscape_ext").glob("*.inx"))]
    result = subprocess.run(
        ["/usr/bin/python3", "-c", code, *inx], capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=f"/usr/share/inkscape/extensions:{ROOT / 'inkscape_ext'}"),
        cwd=ROOT / "inkscape_ext", timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
