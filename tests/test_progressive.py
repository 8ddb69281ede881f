"""A progressive matrix: a draft of every cell first, then the final cells, which are
exactly the cells of a run without drafts."""

import json

import pytest

from clipascene_core.cli.commands import main
from clipascene_core.config import make_config
from clipascene_core.sketch.column import ColumnChain
from clipascene_core.sketch.progressive import DRAFT_FRACTION, draft_config
from tests.scenes import small_object_photo
from tests.tiny_models import TINY, save_tiny_split_models

MATRIX = ["--layers", "2,8", "--rows", "2", "--strokes", "8", "--iterations", "20", "--row-steps", "10"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same matrix with drafts and without, and the cells each run wrote, in order."""
    folder = tmp_path_factory.mktemp("progressive")
    models = save_tiny_split_models(folder / "models")
    image = small_object_photo(folder / "photo.png")
    results = {}
    for flag in ("--progressive", "--no-progressive"):
        out = folder / flag.strip("-")
        assert main(["sketch", str(image), "--out", str(out), *TINY, *MATRIX, flag,
                     "--models-dir", str(models)]) == 0
        results[flag] = (out, json.loads((out / "manifest.json").read_text()))
    return results


def test_the_final_cells_are_those_of_a_run_without_drafts(runs):
    (drafted, with_drafts), (plain, without) = runs["--progressive"], runs["--no-progressive"]
    assert "drafts" in with_drafts and "drafts" not in without
    assert with_drafts["cells_done"] == without["cells_done"] == 6
    cells = {(cell["row"], cell["layer"]): cell for cell in without["cells"]}
    for cell in with_drafts["cells"]:
        assert cell["draft"] is False
        same = cells[(cell["row"], cell["layer"])]
        assert cell["strokes"] == same["strokes"]
        for region, details in cell["regions"].items():
            # Everything but the wall time: losses, chosen steps, seeds, kept strokes.
            timeless = {key: value for key, value in details.items() if key != "seconds"}
            assert timeless == {key: value for key, value in same["regions"][region].items()
                                if key != "seconds"}
        for name in cell["files"].values():
            if name.endswith(".svg"):
                assert (drafted / name).read_text() == (plain / name).read_text(), name


def test_drafts_cost_a_tenth_of_the_steps(runs):
    _, manifest = runs["--progressive"]
    assert manifest["drafts"]["fraction"] == DRAFT_FRACTION
    # 2 regions x 2 columns: fidelity 20 -> 2 steps, each of 2 rows 10 -> 1 step.
    assert manifest["drafts"]["steps"] == 4 * (2 + 2 * 1)
    assert manifest["timings"]["steps"] == 4 * (20 + 2 * 10)


@pytest.mark.parametrize("preset", ["preview", "standard", "paper"])
def test_drafts_of_every_preset_cost_at_most_15_percent_of_the_run(preset):
    config = make_config(preset)
    drafts = draft_config(config)
    for region in ("scene", "object", "background"):
        for layer in config.layers:
            initial = {seed: None for seed in config.seeds}
            final = ColumnChain(region, layer, initial, config, "cpu").steps
            draft = ColumnChain(region, layer, {min(config.seeds): None}, drafts, "cpu").steps
            assert draft <= 0.15 * final, (region, layer, draft, final)
            assert draft >= 1 + config.simplicity_rows  # every cell of the column is drafted


def test_every_cell_is_drafted_before_any_is_final(tmp_path):
    from clipascene_core.config import make_config as config_for
    from clipascene_core.io.records import CellEvent, ProgressEvent
    from clipascene_core.models.clip import load_clip
    from clipascene_core.scene.matrix import sketch_matrix

    encoder = load_clip("tiny-test", "random", "cpu")
    events = []
    config = config_for("preview", layers=(2, 8), simplicity_rows=2, strokes=6, iterations=10,
                        simplicity_steps=10, split=False, progressive=True)
    manifest = sketch_matrix(small_object_photo(tmp_path / "photo.png"), tmp_path / "out", config, encoder,
                             on_event=events.append)
    cells = [(event.cell.row, event.cell.layer, event.cell.draft) for event in events
             if isinstance(event, CellEvent)]
    every = {(row, layer) for row in range(3) for layer in (2, 8)}
    assert [draft for *_, draft in cells] == [True] * 6 + [False] * 6
    assert {(row, layer) for row, layer, _ in cells[:6]} == every
    assert {(row, layer) for row, layer, _ in cells[6:]} == every
    assert all(not cell.draft for cell in manifest.cells) and manifest.cells_done == 6
    # Progress runs from the drafts' first step to the last final step, never backwards.
    done = [event.steps_done for event in events if isinstance(event, ProgressEvent)]
    totals = {event.steps_total for event in events if isinstance(event, ProgressEvent)}
    assert done == sorted(done) and len(totals) == 1 and done[-1] == totals.pop()
    stages = [event.stage for event in events if isinstance(event, ProgressEvent)]
    assert stages[0] == "drafts" and stages[-1] != "drafts"
