"""The matrix viewer: the picker in a process of its own, beside Inkscape, watching a job.

Sketch Image starts it detached (`start`) and returns at once, so Inkscape stays usable while
the backend trains. An extension cannot change the document once it has returned, so the
viewer cannot import: importing is Extensions ▸ CLIPascene ▸ Import Sketch… on the photo,
which opens the picker for as long as the artist chooses.

    python -m clipascene_ext.viewer --server URL [--title T] [--style S] [--photo FILE]
                                    [--estimate TEXT] JOB_ID
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from .client import DEFAULT_SERVER, Backend, spawn_detached

PACKAGE_PARENT = Path(__file__).resolve().parent.parent


def log_path() -> Path:
    return Path(tempfile.gettempdir()) / "clipascene-viewer.log"


def start(server: str, job_id: str, title: str, style: str = "", photo: bytes | None = None, *,
          estimate: str = "") -> None:
    """Open a viewer on `job_id` in a process of its own and return at once; `estimate`
    (what the submission said of the time it takes) shows under its title.

    The viewer gets this interpreter and its module path (Inkscape's Python, its inkex);
    `photo` travels in a temporary file the viewer deletes once read. Raises
    client.BackendError when it cannot be started.
    """
    arguments = [sys.executable, "-m", "clipascene_ext.viewer", "--server", server,
                 "--title", title, "--style", style, "--estimate", estimate]
    if photo is not None:
        handle, name = tempfile.mkstemp(prefix="clipascene-photo-")
        with os.fdopen(handle, "wb") as stream:
            stream.write(photo)
        arguments += ["--photo", name]
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(PACKAGE_PARENT), *(entry for entry in sys.path if entry)]))
    spawn_detached([*arguments, job_id], log_path(), cwd=PACKAGE_PARENT, env=environment)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clipascene_ext.viewer")
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--title", default="CLIPascene")
    parser.add_argument("--style", default="")
    parser.add_argument("--photo", default=None)
    parser.add_argument("--estimate", default="")
    parser.add_argument("job_id")
    options = parser.parse_args(argv)
    photo = None
    if options.photo:
        photo = Path(options.photo).read_bytes()
        Path(options.photo).unlink(missing_ok=True)
    from .importer import preview_svg
    from .photo import decode
    from .picker import Gtk, PickerWindow
    from .style import PHOTO, StrokeStyle

    if not Gtk.init_check()[0]:
        print("clipascene viewer: no display to open a window on.", file=sys.stderr)
        return 1
    style = StrokeStyle.decode(options.style)
    pixels = decode(photo) if photo is not None and style.color == PHOTO else None
    window = PickerWindow.open(Backend(options.server), options.job_id, options.title,
                               photo=photo, view_only=True, estimate=options.estimate,
                               preview=lambda cell_svg: preview_svg(cell_svg, style, pixels, photo))
    window.gapp.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
