"""Nothing finished is lost, inside a column too: an interrupted matrix continues each column
from its last checkpoint (after its fidelity sketch, after each row), and ends with exactly
the cells of an uninterrupted run with the same seed (same process, same CPU)."""

from __future__ import annotations

import json
import threading

import pytest

from clipascene_core.config import make_config
from clipascene_core.io.records import ProgressEvent
from clipascene_core.scene import resume as resume_module
from clipascene_core.scene.resume import CHECKPOINTS, Checkpoints, sketch_resumable
from clipascene_core.sketch.engine import Cancelled
from tests.scenes import small_object_photo
from tests.tiny_models import save_tiny_split_models

SEEDS = (3, 1003)
ROW_STEPS = 4


def config_for(schedule: str):
    """Two layers of three rows, two seeds, foreground and background with fidelity runs of
    different lengths (their rows end at different steps), fresh augmentations every step."""
    return make_config(
        "standard", layers=(2, 8), simplicity_rows=2, strokes=6, seeds=SEEDS,
        scene_iterations=6, object_iterations_shallow=4, object_iterations_deep=5,
        eval_start=2, eval_every=2, simplicity_steps=ROW_STEPS, simplicity_evals=2,
        augmentations=2, progressive=False, schedule=schedule, location_hidden=96,
        simplify_hidden=96)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_encoder):
    folder = tmp_path_factory.mktemp("checkpoints")
    return folder, save_tiny_split_models(folder / "models"), small_object_photo(folder / "photo.png")


class Run:
    """One run into `out`: stopped (engine.Cancelled) `extra` steps after the step at which
    the checkpoint's sketch file `after` appeared (after=None: after `extra` steps)."""

    def __init__(self, setup, encoder, out, schedule, after=None, extra=0):
        _, models, image = setup
        self.progress = ProgressEvent("", 0, 0)
        self.cancelled = False
        calls = 0
        seen = None

        def should_stop() -> bool:
            nonlocal calls, seen
            calls += 1
            if seen is None and (after is None or (out / CHECKPOINTS / f"{after}.sketch.pt").exists()):
                seen = calls
            return seen is not None and calls - seen >= extra

        def on_event(event) -> None:
            if isinstance(event, ProgressEvent):
                self.progress = event

        stopping = after is not None or extra
        try:
            sketch_resumable(image, out, config_for(schedule), encoder, models_dir=models,
                             on_event=on_event, should_stop=should_stop if stopping else None)
        except Cancelled:
            self.cancelled = True


def cells(out) -> dict:
    """Every final cell: its counts, its records without timings, and its SVG files' text."""
    manifest = json.loads((out / "manifest.json").read_text())
    found = {}
    for cell in manifest["cells"]:
        if cell["draft"]:
            continue
        regions = {name: {key: value for key, value in details.items() if key != "seconds"}
                   for name, details in cell["regions"].items()}
        svgs = {name: (out / file).read_text() for name, file in cell["files"].items()
                if file.endswith(".svg")}
        found[(cell["row"], cell["layer"])] = (cell["strokes"], cell["pieces"], regions, svgs)
    return found


def written(out) -> dict:
    """When each file of each final cell was written."""
    manifest = json.loads((out / "manifest.json").read_text())
    return {file: (out / file).stat().st_mtime_ns for cell in manifest["cells"]
            if not cell["draft"] for file in cell["files"].values()}


@pytest.fixture(scope="module")
def uninterrupted(setup, tiny_encoder):
    runs = {}
    for schedule in ("column", "lockstep"):
        out = setup[0] / f"whole-{schedule}"
        run = Run(setup, tiny_encoder, out, schedule)
        assert not run.cancelled
        runs[schedule] = (cells(out), run.progress.steps_total)
    return runs


@pytest.mark.parametrize(("schedule", "after", "extra"), [
    # At a row boundary of every column: layer 2 is finished, layer 8 not started.
    ("column", "background-r2-L2", 0),
    # At the background's row boundary, the foreground halfway through its next row.
    ("column", "background-r1-L2", 0),
    # Mid-chain: layer 8's foreground two steps into its first row, its background just
    # past its fidelity sketch.
    ("column", "object-r0-L8", 2),
    # Mid-fidelity of the first layer, before any checkpoint: its columns start again.
    ("column", None, 3),
    ("lockstep", "background-r0-L2", 0),
    ("lockstep", "object-r1-L8", 1),
])
def test_an_interrupted_run_resumes_from_its_checkpoints_to_the_uninterrupted_cells(
        setup, tiny_encoder, uninterrupted, tmp_path, schedule, after, extra):
    whole, whole_steps = uninterrupted[schedule]
    out = tmp_path / "out"
    first = Run(setup, tiny_encoder, out, schedule, after, extra)
    assert first.cancelled
    trained = first.progress.steps_done
    finished = written(out) if (out / "manifest.json").exists() else {}
    assert any((out / CHECKPOINTS).glob("*.pt")) == (after is not None)

    again = Run(setup, tiny_encoder, out, schedule)
    assert not again.cancelled
    assert cells(out) == whole
    assert {file: written(out)[file] for file in finished} == finished, \
        "a cell finished before the interruption is not computed again"
    assert not (out / CHECKPOINTS).exists(), "the checkpoints go once the matrix is complete"
    # What was trained twice: at most the row (or the fidelity run, before the first
    # checkpoint) each region was in when the run stopped, never a column from its start.
    again_steps = again.progress.steps_total
    redone = trained + again_steps - whole_steps
    if after is None:
        assert redone == trained
    elif extra == 0 and after.endswith("r2-L2") and schedule == "column":
        assert redone == 0, "stopped at a boundary of every column: nothing is trained again"
    else:
        assert 0 < redone <= 2 * len(SEEDS) * ROW_STEPS


def test_a_damaged_checkpoint_is_ignored_and_its_column_starts_again(setup, tiny_encoder,
                                                                    uninterrupted, tmp_path):
    whole, whole_steps = uninterrupted["column"]
    out = tmp_path / "out"
    first = Run(setup, tiny_encoder, out, "column", "background-r1-L2", 0)
    assert first.cancelled
    checkpoint = out / CHECKPOINTS / "object-L2.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # cut short, as by a crash
    again = Run(setup, tiny_encoder, out, "column")
    assert cells(out) == whole
    redone = first.progress.steps_done + again.progress.steps_total - whole_steps
    # The foreground of layer 2 was trained again from its fidelity run on.
    assert redone >= len(SEEDS) * config_for("column").fidelity_iterations("object", 2)


def test_checkpoints_of_another_matrix_are_not_used(setup, tiny_encoder, uninterrupted, tmp_path):
    """The same folder, other settings: the old checkpoints are dropped, the run starts over."""
    out = tmp_path / "out"
    first = Run(setup, tiny_encoder, out, "column", "background-r1-L2", 0)
    assert first.cancelled
    stale = out / CHECKPOINTS / "matrix.json"
    identity = json.loads(stale.read_text())
    identity["parameters"]["strokes"] = 7
    stale.write_text(json.dumps(identity))
    again = Run(setup, tiny_encoder, out, "column")
    whole, whole_steps = uninterrupted["column"]
    assert again.progress.steps_total == whole_steps
    assert cells(out) == whole


@pytest.mark.parametrize(("schedule", "after", "extra"), [("lockstep", "object-r1-L8", 1),
                                                           ("column", "object-r0-L8", 2)])
def test_checkpoints_written_in_the_background_resume_to_the_same_cells(
        setup, tiny_encoder, uninterrupted, tmp_path, monkeypatch, schedule, after, extra):
    """As on a GPU, where a thread writes the checkpoints while the training goes on: a
    cancelled run waits for them, and the resumed run ends with the uninterrupted cells."""
    monkeypatch.setattr(Checkpoints, "background_on", ("cpu",))
    writers = set()
    save = resume_module._save

    def recording_save(path, data):
        writers.add(threading.current_thread().name)
        save(path, data)

    monkeypatch.setattr(resume_module, "_save", recording_save)
    whole, _ = uninterrupted[schedule]
    out = tmp_path / "out"
    assert Run(setup, tiny_encoder, out, schedule, after, extra).cancelled
    assert (out / CHECKPOINTS / f"{after}.sketch.pt").is_file()
    again = Run(setup, tiny_encoder, out, schedule)
    assert not again.cancelled and cells(out) == whole
    assert not (out / CHECKPOINTS).exists()
    assert writers and all(name.startswith("checkpoints") for name in writers), writers
