import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from clipascene_core.cli.args import EXIT_INPUT, EXIT_WEIGHTS
from clipascene_core.cli.commands import main
from clipascene_core.errors import UserError
from clipascene_core.io.frames import CanvasFrame
from clipascene_core.scene.cluster import ClusterError
from clipascene_core.sketch.strokes import read_svg
from tests.tiny_models import TINY


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
    from tests.scenes import draw_scene

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


def _failing(error: BaseException):
    def fail(*args, **kwargs):
        raise error
    return fail


@pytest.mark.parametrize("raised, says", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
                            "capacity of 7.6 GiB of which 1.2 GiB is free."), "(CUDA out of memory)"),
    (RuntimeError("MPS backend out of memory (MPS allocated: 8.9 GB, other allocations: 0 B)."),
     "(MPS backend out of memory"),
    (MemoryError(), "(MemoryError)"),
    (ClusterError("the Ray worker running the matrix died 3 times; see the Ray logs."),
     "died 3 times"),
], ids=["cuda", "mps", "cpu", "cluster"])
def test_a_named_runtime_failure_is_one_line_and_exit_1(tmp_path, scene_png, capsys, monkeypatch,
                                                         raised, says):
    import clipascene_core.scene.matrix as matrix_module

    monkeypatch.setattr(matrix_module, "sketch_matrix", _failing(raised))
    code = run_cli("sketch", str(scene_png), "--out", str(tmp_path / "out"), *TINY)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith("clipascene: ") and says in lines[0]
    if not isinstance(raised, ClusterError):
        assert "ran out of memory" in lines[0] and "--strokes" in lines[0]


def test_a_cluster_that_cannot_be_joined_is_one_line_and_exit_1(tmp_path, scene_png, capsys,
                                                               monkeypatch):
    import clipascene_core.cli.batch as batch_module

    refusal = "cannot join the Ray cluster at 10.0.0.9:6379: no answer."
    monkeypatch.setattr(batch_module, "connect", _failing(ClusterError(refusal)))
    code = run_cli("batch", str(scene_png), "--out", str(tmp_path / "out"), "--ray", "10.0.0.9:6379",
                   *TINY)
    assert code == 1
    assert capsys.readouterr().err.strip() == f"clipascene: {refusal}"


@pytest.mark.parametrize("raised", [ValueError("a bug's message"),
                                    RuntimeError("index 7 is out of bounds for dimension 0")])
def test_any_other_failure_shows_its_traceback_and_exit_1(tmp_path, scene_png, capsys, monkeypatch,
                                                          raised):
    import clipascene_core.scene.matrix as matrix_module

    monkeypatch.setattr(matrix_module, "sketch_matrix", _failing(raised))
    code = run_cli("sketch", str(scene_png), "--out", str(tmp_path / "out"), *TINY)
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback (most recent call last)" in err and "in run_sketch" in err
    assert f"{type(raised).__name__}: {raised}" in err
    assert err.strip().splitlines()[-1].startswith(f"clipascene: internal error ({type(raised).__name__})")


def test_batch_fails_the_image_of_any_users_mistake_and_sketches_the_others(tmp_path, scene_png,
                                                                          capsys, monkeypatch):
    """Every UserError (a subclass batch never heard of too) fails its image, not the batch."""
    import clipascene_core.cli.batch as batch_module

    class NewMistake(UserError):
        pass

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("bad.png", "good.png"):
        (photos / name).write_bytes(scene_png.read_bytes())
    sketched = []

    def sketch_matrix(image, out, *args, **kwargs):
        if out.name == "bad":
            raise NewMistake("this photo cannot be sketched so.")
        sketched.append(out.name)

    monkeypatch.setattr(batch_module, "sketch_matrix", sketch_matrix)
    assert run_cli("batch", str(photos), "--out", str(tmp_path / "out"), *TINY) == 1
    captured = capsys.readouterr()
    assert sketched == ["good"]
    assert "1 sketched, 0 skipped (already done), 1 failed" in captured.out
    assert "clipascene: bad.png failed: this photo cannot be sketched so." in captured.err
