"""Real-Inkscape helpers shared by the tests that drive Debian's Inkscape under Xvfb: a photo
document, a profile with the extension installed and its params set, a scripted Inkscape run,
and the layers CLIPascene wrote."""

from __future__ import annotations

import base64
import io
import os
import subprocess
from pathlib import Path

from lxml import etree

from clipascene_core.cli import inkscape_install as extension_installer
from tests.scenes import draw_scene

ROOT = Path(__file__).resolve().parent.parent
SVG_NS = "http://www.w3.org/2000/svg"
INKSCAPE_NS = "http://www.inkscape.org/namespaces/inkscape"
XLINK_NS = "http://www.w3.org/1999/xlink"


def photo_document(path: Path) -> None:
    buffer = io.BytesIO()
    draw_scene(160, 96).save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode()
    path.write_text(
        f'<svg xmlns="{SVG_NS}" xmlns:xlink="{XLINK_NS}" xmlns:inkscape="{INKSCAPE_NS}" '
        'width="200mm" height="150mm" viewBox="0 0 200 150">'
        '<g inkscape:groupmode="layer" inkscape:label="Photo" id="layer1" transform="translate(10,5)">'
        '<image id="photo" x="20" y="10" width="120" height="72" '
        f'xlink:href="data:image/png;base64,{data}"/>'
        "</g></svg>"
    )


def profile(folder: Path, server: str, action_id: str, install: bool = True, **params: str) -> Path:
    """An Inkscape profile whose preferences set the extension's params, and whose extensions/
    holds the extension as `clipascene inkscape install` puts it there (unless `install` is
    false: the caller put it there another way)."""
    if install:
        extension_installer.install(folder / "extensions", source=ROOT / "inkscape_ext")
    folder.mkdir(parents=True, exist_ok=True)
    values = {"server": server, **params}
    attributes = " ".join(f'{action_id}.{key}="{value}"' for key, value in values.items())
    (folder / "preferences.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
        '<inkscape version="1" xmlns:sodipodi="http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd" '
        'xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape">\n'
        f'  <group id="extensions" {attributes} />\n</inkscape>\n')
    return folder


def run_inkscape(profile_dir: Path, document: Path, actions: str,
                 output: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, INKSCAPE_PROFILE_DIR=str(profile_dir), HOME=str(profile_dir),
               PYTHONWARNINGS="ignore", NO_AT_BRIDGE="1")
    env.pop("PYTHONPATH", None)
    command = ["timeout", "240", "xvfb-run", "-a", "inkscape", "--with-gui", "--batch-process",
               f"--actions={actions};export-filename:{output};export-do", str(document)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=cwd)


def clipascene_layers(path: Path) -> list:
    root = etree.parse(str(path)).getroot()
    return [group for group in root.iter(f"{{{SVG_NS}}}g") if group.get("data-clipascene-job")]


def sketch_with(profile_dir: Path, tmp_path: Path) -> list:
    """Sketch Image on a photo in real Inkscape with this profile: the new layers."""
    document = tmp_path / "photo.svg"
    photo_document(document)
    out = tmp_path / "sketched.svg"
    result = run_inkscape(profile_dir, document, "select-by-id:photo;org.clipascene.sketch-image.noprefs",
                          out)
    assert out.is_file(), f"Inkscape wrote nothing: {result.stdout[-2000:]} {result.stderr[-2000:]}"
    layers = clipascene_layers(out)
    assert len(layers) == 1 and list(layers[0].iter(f"{{{SVG_NS}}}path")), result.stderr[-2000:]
    return layers


#: A quick run of one cell, without a window.
QUICK = dict(preset="preview", layers="2", rows="1", strokes="8", split="false", cell="1,0",
             iterations="3", row_steps="2")
