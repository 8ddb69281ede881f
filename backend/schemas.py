"""The API's response models: the OpenAPI schema at /docs is generated from these."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

#: The HTTP API's version, told in /v1/health. Raise it with a change that breaks a client (a
#: field, endpoint or event removed or changed in meaning), together with the extension's
#: clipascene_ext.API_VERSION: each end then says which of the two to update.
API_VERSION = 1


class ProgressInfo(BaseModel):
    stage: str | None = None
    fraction: float = 0.0
    steps_done: int | None = None
    steps_total: int | None = None
    eta_s: float | None = None
    #: For a job whose run has not reported its own ETA yet (queued, or preprocessing), eta_s
    #: is an estimate of its run time (not counting jobs ahead of it in the queue): its
    #: cell-steps times the seconds per cell-step "measured" by this daemon's jobs on the
    #: device, or a "default" for the device type when none has run there yet.
    estimate: Literal["measured", "default"] | None = None
    cells_done: int = 0
    cells_total: int = 0


class ProgressUpdate(ProgressInfo):
    """The server-sent event `progress`: the job's progress whenever it changes."""

    id: str
    status: str


class CellReady(BaseModel):
    """The server-sent event `cell`: a cell is finished, with its place and its URLs."""

    id: str
    row: int
    column: int
    layer: int
    strokes: dict[str, int]
    urls: dict[str, str]
    #: A draft: the same cell arrives again, final (draft false), when the training reaches it.
    draft: bool = False


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
    #: The preset that runs (or ran) on this job's device: {"requested", "ran", "steps"}.
    preset: dict


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
