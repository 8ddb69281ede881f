"""The API's response models: the OpenAPI schema at /docs is generated from these.

Where a model carries a record of the core (clipascene_core.io.records, config.StepCounts),
it is built from the record's fields (`record_fields`) or holds the record itself (a
dataclass pydantic validates and serializes as the record's own JSON form): a field added to
a record is in the API at once, and tests/test_api_records.py holds the rest to them.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from clipascene_core.io.records import CellRecord, Preset, Progress

#: The HTTP API's version, told in /v1/health. Raise it with a change that breaks a client (a
#: field, endpoint or event removed or changed in meaning), together with the extension's
#: clipascene_ext.API_VERSION: each end then says which of the two to update.
API_VERSION = 1


def record_fields(record: type, *names: str) -> dict[str, Any]:
    """The pydantic field definitions (type, default) of a dataclass record's fields: all of
    them, or those named, in the record's order."""
    hints = typing.get_type_hints(record)
    chosen = {}
    for item in dataclasses.fields(record):
        if names and item.name not in names:
            continue
        if item.default is not dataclasses.MISSING:
            default = item.default
        elif item.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=item.default_factory)
        else:
            default = ...
        chosen[item.name] = (hints[item.name], default)
    return chosen


#: A job's progress: its run's `Progress`, an estimate before the run has one, and its cells.
ProgressInfo = create_model(
    "ProgressInfo", **record_fields(Progress),
    #: For a job whose run has not reported its own ETA yet (queued, or preprocessing), eta_s
    #: is an estimate of its run time (not counting jobs ahead of it in the queue): its
    #: cell-steps times the seconds per cell-step "measured" by this daemon's jobs on the
    #: device, or a "default" for the device type when none has run there yet.
    estimate=(Literal["measured", "default"] | None, None),
    cells_done=(int, 0),
    cells_total=(int, 0),
)


class ProgressUpdate(ProgressInfo):
    """The server-sent event `progress`: the job's progress, status and notices whenever one
    of them changes (a notice can come mid-run, e.g. a fallback the split took)."""

    id: str
    status: str
    notices: list[str] = []


class CellReady(create_model("CellFields", **record_fields(CellRecord, "row", "column", "layer",
                                                             "strokes", "draft"))):
    """The server-sent event `cell`: a cell is finished (or a draft: the same cell arrives
    again, final, when the training reaches it), with its place, stroke counts and URLs."""

    id: str
    urls: dict[str, str]


class JobEnded(BaseModel):
    """The server-sent events `done`, `failed` and `cancelled`: the last of a stream."""

    id: str
    status: str
    error: str | None = None


#: The kinds of server-sent event /v1/jobs/{id}/events sends, each with its data.
EVENTS: dict[str, type[BaseModel]] = {"progress": ProgressUpdate, "cell": CellReady,
                                      "done": JobEnded, "failed": JobEnded, "cancelled": JobEnded}


class ImageInfo(BaseModel):
    name: str
    width: int
    height: int


class JobInfo(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    created: float
    started: float | None
    finished: float | None
    progress: ProgressInfo
    error: str | None
    notices: list[str]
    params: dict
    image: ImageInfo
    #: Where the job runs (or ran); for a queued job, the device its preset and estimate are for.
    device: str | None
    #: The preset that runs (or ran) on this job's device, and its steps (resolved when the
    #: job was submitted, or claimed by a device of another type).
    preset: Preset


class Submitted(BaseModel):
    id: str
    status: str
    cached: bool
    #: The job's progress.eta_s and progress.estimate at submission (see ProgressInfo).
    eta_s: float | None = None
    estimate: Literal["measured", "default"] | None = None


class CellInfo(BaseModel):
    row: int
    column: int
    layer: int
    ready: bool
    #: A draft (a progressive run's early, rough cell), replaced by the final cell later.
    draft: bool = False
    strokes: dict[str, int] | None = None
    urls: dict[str, str] | None = None


class MatrixInfo(BaseModel):
    id: str
    status: str
    rows: int
    layers: list[int]
    regions: list[str]
    split: bool
    cells_done: int
    cells_total: int
    cells: list[CellInfo]
    #: GET this for the object mask (white = foreground) once the job has one.
    mask_url: str | None = None


class WorkerState(BaseModel):
    device: str
    state: Literal["not started", "idle", "running", "retrying", "stuck", "stopped", "dead"]
    job: str | None
    problem: str | None
    since: float | None
    #: CLIP's precision here: {"requested", "precision", "reason", "fp32_ms", "bf16_ms",
    #: "machine"} (precision None until `auto` has measured this machine).
    precision: dict | None = None


class Health(BaseModel):
    service: str
    version: str
    #: The HTTP API's version (API_VERSION): the extension compares it with its own.
    api_version: int
    ok: bool
    problems: list[str]
    workers: list[WorkerState]
    devices: list[str]
    clip_model: str
    weights: dict[str, str]
    missing: list[str]
    how_to_get_missing: str | None
    queue_depth: int
    #: {"kind": "local"} or {"kind": "ray", "address", "gpus_per_job", "jobs_at_once",
    #: "cluster": {"nodes", "total", "available"}}.
    executor: dict
