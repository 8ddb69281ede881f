"""The HTTP API's models hold every field of the records they carry: a field added to a record
(clipascene_core.io.records, config.StepCounts) without its model fails here, and what the
API sends of a record is the record's own JSON form."""

from __future__ import annotations

import dataclasses

import pytest

from clipascene_backend.schemas import CellInfo, CellReady, JobInfo, MatrixInfo, ProgressInfo
from clipascene_core.config import StepCounts
from clipascene_core.io.records import CellRecord, Layout, Preset, Progress

#: The fields of a cell the API does not send as they are, and why.
CELL_NOT_SENT = {"files": "sent as `urls`, the cell's files by their URL",
                 "pieces": "the paths after the cut, for the manifest only",
                 "regions": "how each region's sketch was made: in manifest.json"}

#: (record, HTTP model, the record's fields the model leaves out).
CARRIED = [(Progress, ProgressInfo, {}), (CellRecord, CellReady, CELL_NOT_SENT),
           (CellRecord, CellInfo, CELL_NOT_SENT), (Layout, MatrixInfo, {})]


@pytest.mark.parametrize("record, model, left_out", CARRIED,
                         ids=[f"{record.__name__}-{model.__name__}" for record, model, _ in CARRIED])
def test_every_field_of_a_record_is_in_its_http_model(record, model, left_out):
    fields = {item.name for item in dataclasses.fields(record)}
    assert set(left_out) <= fields, "a field said to be left out is no longer in the record"
    missing = fields - set(left_out) - set(model.model_fields)
    assert not missing, f"{model.__name__} lacks {sorted(missing)} of {record.__name__}"


def test_a_jobs_preset_is_sent_as_the_record_with_every_step_count():
    schema = JobInfo.model_json_schema()
    definitions = schema["$defs"]
    preset = definitions[schema["properties"]["preset"]["$ref"].rsplit("/", 1)[1]]
    assert set(preset["properties"]) == {item.name for item in dataclasses.fields(Preset)}
    steps = definitions[preset["properties"]["steps"]["$ref"].rsplit("/", 1)[1]]
    assert set(steps["properties"]) == {item.name for item in dataclasses.fields(StepCounts)}


def test_what_the_api_sends_of_a_record_is_its_json_form():
    preset = Preset("auto", "preview", StepCounts({"scene": {"2": 500}}, 100, 8, (0, 1000)))
    info = JobInfo(id="0" * 16, status="queued", created=0.0, started=None, finished=None,
                   progress=ProgressInfo(), error=None, notices=[], params={},
                   image={"name": "a.png", "width": 4, "height": 3}, device="cpu", preset=preset)
    assert info.model_dump(mode="json")["preset"] == preset.to_dict()
    progress = Progress("simplicity", 0.5, 10, 20, 30.0)
    sent = ProgressInfo(**progress.to_dict()).model_dump(mode="json")
    assert {key: sent[key] for key in progress.to_dict()} == progress.to_dict()
    cell = CellRecord(1, 8, 0, {"combined": "c.svg"}, {"scene": 5}, draft=True)
    ready = CellReady(id="0" * 16, urls={}, **{key: value for key, value in cell.to_dict().items()
                                                if key not in CELL_NOT_SENT})
    assert (ready.row, ready.layer, ready.column, ready.strokes, ready.draft) == (1, 8, 0,
                                                                                   {"scene": 5}, True)
