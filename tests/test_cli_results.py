"""What `clipascene sketch` leaves in its --out folder: file modes, re-runs; and --version."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from clipascene_core import __version__
from clipascene_core.cli.args import EXIT_INPUT
from clipascene_core.cli.commands import main

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
    mask = out / "mask.png"  # a result name an unsplit run does not write, as the next input
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


# --- the user's files in --out: never deleted, never overwritten; nothing outside --out -----

def files_with_bytes(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("name", ["manifest.json", "mask.png", "grid.png", "target_object.png",
                                  "attention_background.png", "cells/r0_L2.svg"])
def test_a_file_no_run_recorded_is_never_replaced(tmp_path, scene_png, capsys, name):
    out = tmp_path / "result"
    (out / name).parent.mkdir(parents=True)
    (out / name).write_bytes(b"the user's own " + name.encode())
    before = files_with_bytes(out)
    # A split run writes every one of those names.
    assert main(["sketch", str(scene_png), "--out", str(out), *[arg for arg in QUICK if arg != "--no-split"],
                 "--layers", "2", "--rows", "0"]) == EXIT_INPUT
    assert f"holds {name}, which no earlier run recorded as its own" in capsys.readouterr().err
    assert files_with_bytes(out) == before


def test_a_run_replaces_only_what_the_earlier_run_recorded(tmp_path, scene_png):
    out = tmp_path / "result"
    assert sketch(scene_png, out, "--layers", "2", "--rows", "0", umask=0o022) == 0
    # Result-like names the earlier (unsplit) run never wrote, and that this one will not.
    (out / "mask.png").write_bytes(b"mine")
    (out / "attention_logo.png").write_bytes(b"mine too")
    assert sketch(scene_png, out, "--layers", "3", "--rows", "0", umask=0o022) == 0
    assert (out / "mask.png").read_bytes() == b"mine"
    assert (out / "attention_logo.png").read_bytes() == b"mine too"
    assert not (out / "cells" / "r0_L2.svg").exists() and (out / "cells" / "r0_L3.svg").is_file()


def test_an_interrupted_run_is_replaced_like_any_other(tmp_path, scene_png):
    out = tmp_path / "result"
    from clipascene_core.io.outputs import claim_output_folder

    claim_output_folder(out, [2, 8], 2, split=False)  # as a run stopped during preprocessing
    (out / "target_scene.png").write_bytes(b"half")
    (out / "cells").mkdir()
    (out / "cells" / ".r1_L8.svg.0123456789ab.part").write_bytes(b"half")
    assert sketch(scene_png, out, "--layers", "2", "--rows", "0", umask=0o022) == 0
    assert result_files(out) == ["attention_scene.png", "cells/r0_L2.png", "cells/r0_L2.svg",
                                 "grid.png", "manifest.json", "target_scene.png"]


@pytest.mark.parametrize("name", ["grid.png", "manifest.json"])
def test_an_input_with_a_result_name_inside_out_is_never_written(tmp_path, scene_png, capsys, name):
    out = tmp_path / "result"
    out.mkdir()
    photo = out / name
    photo.write_bytes(scene_png.read_bytes())
    assert sketch(photo, out, "--layers", "2", "--rows", "0", umask=0o022) == EXIT_INPUT
    assert "results never overwrite an input" in capsys.readouterr().err
    assert photo.read_bytes() == scene_png.read_bytes()
    assert files_with_bytes(out) == {name: scene_png.read_bytes()}


def test_batch_never_writes_outside_out(tmp_path, scene_png, capsys):
    inputs = tmp_path / "photos"
    inputs.mkdir()
    (inputs / "...png").write_bytes(scene_png.read_bytes())  # its stem is ".."
    out = tmp_path / "deep" / "out"
    code = main(["batch", str(inputs), "--out", str(out), *QUICK])
    assert code == EXIT_INPUT
    assert "cannot name its results folder inside --out" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["...png", "photos", "scene.png"]


@pytest.mark.parametrize("option", [["--out", ""], ["--out", " "], ["--layers", ""],
                                    ["--layers", ","]])
def test_empty_out_or_layers_are_refused(tmp_path, scene_png, capsys, monkeypatch, option):
    monkeypatch.chdir(tmp_path)
    args = ["sketch", str(scene_png), "--out", "result", *QUICK, *option]
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    assert option[0] in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["scene.png"]
