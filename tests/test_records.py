"""The records that cross the seams read what earlier versions wrote, and the job store
keeps each job's matrix layout from its submission on."""

from __future__ import annotations

import json
import sqlite3

from clipascene_backend.facts import RunFacts, resolve_facts
from clipascene_backend.params import JobParams
from clipascene_backend.store import JobStore
from clipascene_core.config import StepCounts, make_config, step_counts
from clipascene_core.io.records import (
    CellRecord,
    Drafts,
    Layout,
    Manifest,
    ModelInfo,
    OutputFolder,
    Preset,
    Timings,
)

#: A cell and a manifest as schema 1 wrote them: no `pieces`, no `preset`, no schema_version.
SCHEMA_1_CELL = {"row": 0, "layer": 8, "column": 0, "strokes": {"scene": 12},
                 "files": {"combined": "cells/r0_L8.svg", "png": "cells/r0_L8.png"},
                 "regions": {"scene": {"strokes": 12}}}
SCHEMA_1 = {"kind": "clipascene-matrix", "image": {"file": "a.png", "width": 40, "height": 30},
            "layers": [8], "rows": 2, "regions": ["scene"], "preprocessing": {"split": False},
            "notices": [], "cells_total": 2, "cells_done": 1, "cells": [SCHEMA_1_CELL],
            "parameters": {}, "versions": {}, "command": "clipascene sketch a.png",
            "model": {"clip": "ViT-B-32", "weights": "openai", "meaningful": True, "device": "cpu"}}


def test_a_manifest_written_by_schema_1_still_reads(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(SCHEMA_1))
    manifest = OutputFolder(tmp_path).read_manifest()
    assert manifest is not None and manifest.schema_version == 1
    assert (manifest.rows, manifest.layers, manifest.split) == (2, [8], False)
    assert manifest.cells == [CellRecord(0, 8, 0, SCHEMA_1_CELL["files"], {"scene": 12}, {},
                                         {"scene": {"strokes": 12}})]
    # Schema 1 had no precision: it reads as not known (a resume compares it, so a schema-1
    # folder is never taken for a bf16 run's).
    assert manifest.model == ModelInfo("ViT-B-32", "openai", True, "cpu")
    assert manifest.model.decisive()["precision"] is None
    written = manifest.to_dict()
    assert written["cells_total"] == 2 and written["cells_done"] == 1
    assert written["model"] == {**SCHEMA_1["model"], "precision": None, "precision_choice": None}


def test_an_unreadable_manifest_is_none_not_an_error(tmp_path):
    folder = OutputFolder(tmp_path)
    assert folder.read_manifest() is None  # none yet
    folder.path(OutputFolder.MANIFEST).write_text('{"cells": [')
    assert folder.read_manifest() is None
    folder.path(OutputFolder.MANIFEST).write_text('{"kind": "clipascene-matrix"}')
    assert folder.read_manifest() is None  # no layers or rows: not a manifest


def test_cell_files_are_named_once(tmp_path):
    split = OutputFolder.cell_files(3, 11, split=True)
    assert split == {"combined": "cells/r3_L11.svg", "png": "cells/r3_L11.png",
                     "foreground": "cells/r3_L11.foreground.svg",
                     "background": "cells/r3_L11.background.svg"}
    assert set(OutputFolder.cell_files(0, 2, split=False)) == {"combined", "png"}
    # What a run writes is what replacing earlier results deletes: those its manifest records.
    from clipascene_core.io.outputs import claim_output_folder

    for name in [*split.values(), OutputFolder.GRID, OutputFolder.MASK,
                 OutputFolder.attention("object"), OutputFolder.target("object")]:
        folder = OutputFolder(tmp_path)
        folder.path(name).parent.mkdir(parents=True, exist_ok=True)
        folder.path(name).write_text("x")
    (tmp_path / "manifest.json").write_text(json.dumps(Manifest(
        layers=[11], rows=4, regions=["background", "foreground"]).to_dict()))
    (tmp_path / "photo.png").write_text("kept")
    assert claim_output_folder(tmp_path, [2], 1, split=False) == 9
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == [
        "manifest.json", "photo.png"]
    assert json.loads((tmp_path / "manifest.json").read_text())["cells_done"] == 0


def test_a_store_made_before_layouts_and_run_facts_were_recorded_gets_them(tmp_path):
    """Each old job gets its layout and run facts: those its manifest records when its run
    wrote one (here: a GPU run whose split fell back to one scene), else its parameters'."""
    store = JobStore(tmp_path)
    params = JobParams(preset="auto", layers=[2, 11], rows=3).canonical()
    queued, _ = store.submit("queued", params, Layout(4, (2, 11), True), "a.png", b"png", ".png",
                             10, 10)
    ran, _ = store.submit("ran", {**params, "seed": 3}, Layout(4, (2, 11), True), "b.png", b"png",
                          ".png", 10, 10)
    preset = Preset("auto", "standard", StepCounts({"scene": {"2": 1500, "11": 1500}}, 400, 3, (3,)))
    store.out_dir(ran.id).mkdir(parents=True)
    store.results(ran.id).path(OutputFolder.MANIFEST).write_text(json.dumps(Manifest(
        layers=[2, 11], rows=4, regions=["scene"], model=ModelInfo(device="cuda:0"),
        preset=preset).to_dict()))
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as connection:
        for column in ("layout", "facts"):  # as an earlier version made it
            connection.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
    reopened = JobStore(tmp_path)
    old = reopened.get(queued.id)
    assert old.layout == Layout(4, (2, 11), True) and old.params == queued.params
    assert old.facts == resolve_facts(params, "cpu")[0]
    assert (old.facts.preset.ran, old.facts.regions) == ("preview", ("background", "foreground"))
    assert reopened.get(ran.id).facts == RunFacts(preset, "cuda", ("scene",))


def test_a_manifest_reads_back_as_written():
    manifest = Manifest(layers=[2, 8], rows=2, regions=["background", "foreground"],
                        cells=[CellRecord(1, 8, 1, {"combined": "c.svg"}, {"background": 3},
                                          {"background": 4}, {})])
    again = Manifest.from_dict(json.loads(json.dumps(manifest.to_dict())))
    assert again == manifest and again.cells_total == 4


def test_presets_step_counts_timings_and_drafts_keep_their_json_keys():
    """The typed records write manifest.json and the API as the dicts before them did."""
    config = make_config("auto", device_type="cpu", seed=2, layers=(2, 8), simplicity_rows=1)
    preset = Preset.of(config, ["background", "object"])
    assert preset.to_dict() == {
        "requested": "auto", "ran": "preview",
        "steps": {"fidelity": {"background": {"2": 500, "8": 500},
                               "foreground": {"2": 500, "8": 500}},
                  "row_steps": 100, "rows": 1, "seeds": [2]}}
    timings = Timings(preparation_s=1.5, drafts_s=0.5, training_s=3.0, total_s=5.0, steps=40)
    manifest = Manifest(layers=[2, 8], rows=2, regions=["background", "foreground"],
                        preset=preset, timings=timings, drafts=Drafts(0.1, 8))
    written = json.loads(json.dumps(manifest.to_dict()))
    assert written["timings"] == {"preparation_s": 1.5, "drafts_s": 0.5, "training_s": 3.0,
                                  "total_s": 5.0, "steps": 40}
    assert written["drafts"] == {"fraction": 0.1, "steps": 8}
    assert Manifest.from_dict(written) == manifest
    # Labels or engine names, the regions count the same steps; the cell-steps add up.
    assert step_counts(config, ["background", "foreground"]) == preset.steps
    assert preset.steps.cell_steps == 4 * (500 + 1 * 100)


def test_timings_and_presets_written_by_earlier_versions_still_read():
    """Timings before drafts had no drafts_s; a schema-1 manifest has no preset at all."""
    old = {**SCHEMA_1, "timings": {"preparation_s": 2.0, "training_s": 8.0, "total_s": 10.0,
                                   "steps": 30}}
    manifest = Manifest.from_dict(old)
    assert manifest.timings == Timings(2.0, 0.0, 8.0, 10.0, 30)
    assert manifest.preset is None and manifest.to_dict()["preset"] == {}
