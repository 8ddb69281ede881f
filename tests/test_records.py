"""The records that cross the seams read what earlier versions wrote, and the job store
keeps each job's matrix layout from its submission on."""

from __future__ import annotations

import json
import sqlite3

from clipascene_backend.params import JobParams
from clipascene_backend.store import JobStore
from clipascene_core.io.records import CellRecord, Layout, Manifest, OutputFolder

#: A cell and a manifest as schema 1 wrote them: no `pieces`, no `preset`, no schema_version.
SCHEMA_1_CELL = {"row": 0, "layer": 8, "column": 0, "strokes": {"scene": 12},
                 "files": {"combined": "cells/r0_L8.svg", "png": "cells/r0_L8.png"},
                 "regions": {"scene": {"strokes": 12}}}
SCHEMA_1 = {"kind": "clipascene-matrix", "image": {"file": "a.png", "width": 40, "height": 30},
            "layers": [8], "rows": 2, "regions": ["scene"], "preprocessing": {"split": False},
            "notices": [], "cells_total": 2, "cells_done": 1, "cells": [SCHEMA_1_CELL],
            "parameters": {}, "versions": {}, "command": "clipascene sketch a.png"}


def test_a_manifest_written_by_schema_1_still_reads(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(SCHEMA_1))
    manifest = OutputFolder(tmp_path).read_manifest()
    assert manifest is not None and manifest.schema_version == 1
    assert (manifest.rows, manifest.layers, manifest.split) == (2, [8], False)
    assert manifest.cells == [CellRecord(0, 8, 0, SCHEMA_1_CELL["files"], {"scene": 12}, {},
                                         {"scene": {"strokes": 12}})]
    written = manifest.to_dict()
    assert written["cells_total"] == 2 and written["cells_done"] == 1


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


def test_a_store_made_before_layouts_were_recorded_gets_them(tmp_path):
    store = JobStore(tmp_path)
    params = JobParams(preset="preview", layers=[2, 11], rows=3)
    job, _ = store.submit("key", params.canonical(), Layout(4, (2, 11), True), "a.png", b"png",
                          ".png", 10, 10)
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as connection:
        connection.execute("ALTER TABLE jobs DROP COLUMN layout")  # as an earlier version made it
    reopened = JobStore(tmp_path).get(job.id)
    assert reopened.layout == Layout(4, (2, 11), True)
    assert reopened.params == job.params


def test_a_manifest_reads_back_as_written():
    manifest = Manifest(layers=[2, 8], rows=2, regions=["background", "foreground"],
                        cells=[CellRecord(1, 8, 1, {"combined": "c.svg"}, {"background": 3},
                                          {"background": 4}, {})])
    again = Manifest.from_dict(json.loads(json.dumps(manifest.to_dict())))
    assert again == manifest and again.cells_total == 4
