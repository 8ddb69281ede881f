"""What `clipascene sketch` leaves in its --out folder: file modes, re-runs; and --version."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from clipascene_core import __version__
from clipascene_core.cli import main

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--clip-model", "tiny-test", "--weights", "random", "--quiet", "--no-split",
         "--strokes", "4", "--iterations", "2", "--row-steps", "2", "--preset", "preview"]


def sketch(image, out, *args, umask: int) -> int:
    previous = os.umask(umask)
    try:
        return main(["sketch", str(image), "--out", str(out), *QUICK, *args])
    finally:
        os.umask(previous)


def result_files(out):
    return sorted(str(path.relative_to(out)) for path in out.rglob("*") if path.is_file())


def test_version_is_printed():
    result = subprocess.run([sys.executable, "-m", "clipascene_core.cli", "--version"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert result.stdout.strip() == f"clipascene {__version__}"


def test_files_follow_the_umask_and_a_second_run_leaves_no_stale_cells(tmp_path, scene_png, capsys):
    out = tmp_path / "result"
    assert sketch(scene_png, out, "--layers", "2,8", "--rows", "1", umask=0o022) == 0
    first = result_files(out)
    assert "cells/r1_L8.svg" in first and "manifest.json" in first
    modes = {name: (out / name).stat().st_mode & 0o777 for name in first}
    assert set(modes.values()) == {0o644}, modes

    (out / "notes.txt").write_text("mine")  # not a result: a re-run keeps it
    assert sketch(scene_png, out, "--layers", "3", "--rows", "0", umask=0o027) == 0
    second = result_files(out)
    cells = [name for name in second if name.startswith("cells/")]
    assert cells == ["cells/r0_L3.png", "cells/r0_L3.svg"]
    assert "notes.txt" in second
    manifest = json.loads((out / "manifest.json").read_text())
    assert [cell["files"]["combined"] for cell in manifest["cells"]] == ["cells/r0_L3.svg"]
    modes = {name: (out / name).stat().st_mode & 0o777 for name in second if name != "notes.txt"}
    assert set(modes.values()) == {0o640}, modes


def test_a_rerun_keeps_an_input_image_that_lies_in_the_output_folder(tmp_path, scene_png):
    out = tmp_path / "result"
    assert sketch(scene_png, out, "--layers", "2", "--rows", "0", umask=0o022) == 0
    mask = out / "mask.png"  # a result file of its own name, given as the next run's input
    scene_png.rename(mask)
    assert sketch(mask, out, "--layers", "2", "--rows", "0", umask=0o022) == 0
    assert mask.is_file() and (out / "cells" / "r0_L2.svg").is_file()


def test_the_readme_first_command_sketches_the_sample_photo_shipped_here(tmp_path):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    photo = REPO / re.search(r"clipascene sketch (\S+) --out", readme).group(1)
    assert photo.is_file() and photo.stat().st_size < 300_000
    assert (photo.parent / "README.md").read_text().count("CC0") >= 1  # its licence is stated
    out = tmp_path / "result"
    code = main(["sketch", str(photo), "--out", str(out), *QUICK, "--layers", "8", "--rows", "0"])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["image"]["width"], manifest["image"]["height"]) == (451, 300)
    assert (out / "cells" / "r0_L8.svg").is_file() and (out / "grid.png").is_file()
