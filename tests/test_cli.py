import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from clipascene_core.cli.args import EXIT_INPUT, EXIT_WEIGHTS
from clipascene_core.cli.commands import main
from clipascene_core.io.frames import CanvasFrame
from clipascene_core.sketch.strokes import read_svg

TINY = ["--clip-model", "tiny-test", "--weights", "random", "--quiet"]


def run_cli(*args) -> int:
    """main()'s exit code; argparse's usage errors exit through SystemExit."""
    try:
        return main(list(args))
    except SystemExit as error:
        return error.code


@pytest.mark.parametrize(
    "content, args, message",
    [
        (b"", [], "empty"),
        (b"just some text", [], "not an image"),
        (None, ["--layers", "2,13"], "layer 13 does not exist"),
        (None, ["--layers", "two"], "comma-separated"),
        (None, ["--strokes", "0"], "--strokes must be"),
        (None, ["--preset", "fast"], "invalid choice"),
    ],
)
def test_bad_input_gets_a_one_line_error_and_writes_nothing(
    tmp_path, scene_png, capsys, content, args, message
):
    image = scene_png
    if content is not None:
        image = tmp_path / "bad.png"
        image.write_bytes(content)
    out = tmp_path / "out"
    assert run_cli("sketch", str(image), "--out", str(out), *TINY, *args) == EXIT_INPUT
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_missing_weights_exit_with_instructions(tmp_path, scene_png, capsys):
    out = tmp_path / "out"
    code = main(["sketch", str(scene_png), "--out", str(out), "--quiet",
                 "--weights", str(tmp_path / "nowhere.pt")])
    assert code == EXIT_WEIGHTS
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()


def test_end_to_end_fidelity_row_on_the_tiny_model(tmp_path):
    """Issue 2's path: one region, the fidelity row only."""
    source = tmp_path / "wide.png"
    from tests.conftest import draw_scene

    draw_scene(300, 120).save(source)
    out = tmp_path / "result"
    code = main(["sketch", str(source), "--out", str(out), *TINY, "--layers", "2,8",
                 "--strokes", "16", "--iterations", "30", "--seed", "3", "--rows", "0",
                 "--no-split"])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["image"] == {"file": "wide.png", "width": 300, "height": 120, "format": "PNG"}
    assert manifest["model"]["meaningful"] is False and manifest["notices"]
    assert [(cell["row"], cell["layer"]) for cell in manifest["cells"]] == [(0, 2), (0, 8)]
    frame = CanvasFrame(300, 120)
    for cell in manifest["cells"]:
        details = cell["regions"]["scene"]
        assert details["clip_loss"] < details["initial_loss"]
        strokes = read_svg(out / cell["files"]["combined"])["scene"]
        assert (strokes.width, strokes.height) == (300, 120)
        assert len(strokes) == cell["strokes"]["scene"] > 0
        assert np.allclose(strokes.widths, 3.0 * frame.scale, atol=1e-4)
        # In the image frame: strokes start on the image's edges (they were seeded there, the
        # padding is blank), and nothing strays far beyond the padded square around it.
        (x0, y0), (x1, y1) = frame.canvas_to_image.apply(np.array([[0.0, 0.0], [224.0, 224.0]]))
        starts = strokes.points[:, 0]
        inside = (starts[:, 0] >= 0) & (starts[:, 0] <= 300) & (starts[:, 1] >= 0) & (starts[:, 1] <= 120)
        assert inside.mean() > 0.8
        assert np.all(strokes.points[..., 1] > y0 - 50) and np.all(strokes.points[..., 1] < y1 + 50)
        assert Image.open(out / cell["files"]["png"]).size == (300, 120)
    assert (out / "attention_scene.png").exists() and (out / "grid.png").exists()
    leftovers = [path.name for path in out.rglob("*.part")]
    assert leftovers == []


def test_console_script_is_installed_and_reports_usage():
    script = shutil.which("clipascene", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert script is not None
    result = subprocess.run([script, "sketch", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--layers" in result.stdout


def _files(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize("case", ["mask not an image", "mask of another size", "seed -1",
                                  "out under a file", "out read-only", "device cuda"])
def test_user_errors_are_one_line_exit_2_and_write_nothing(tmp_path, scene_png, capsys, case):
    import os

    import torch

    out = tmp_path / "out"
    args = []
    if case == "mask not an image":
        (tmp_path / "mask.png").write_text("no picture here")
        args = ["--mask", str(tmp_path / "mask.png")]
    elif case == "mask of another size":
        Image.new("L", (50, 50), 255).save(tmp_path / "mask.png")
        args = ["--mask", str(tmp_path / "mask.png")]
    elif case == "seed -1":
        args = ["--seed", "-1"]
    elif case == "out under a file":
        (tmp_path / "a-file").write_text("x")
        out = tmp_path / "a-file" / "out"
    elif case == "out read-only":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        (tmp_path / "locked").mkdir(mode=0o555)
        out = tmp_path / "locked" / "out"
    elif case == "device cuda":
        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA GPU")
        args = ["--device", "cuda"]
    before = _files(tmp_path)
    code = run_cli("sketch", str(scene_png), "--out", str(out), *TINY, "--iterations", "2",
                   "--rows", "0", "--layers", "2", *args)
    err = capsys.readouterr().err
    assert code == EXIT_INPUT, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("clipascene: "), err
    assert _files(tmp_path) == before
