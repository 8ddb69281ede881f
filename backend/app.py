"""The HTTP API of the local sketch service (see docs/architecture.md, "backend")."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import logging
import sqlite3
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from clipascene_core import __version__
from clipascene_core.config import ConfigError, step_counts
from clipascene_core.imageio import ImageInputError, load_image
from clipascene_core.strokes import StrokeSet, document_size, read_svg

from .estimate import estimate, speed_key
from .executors import Executor, ExecutorSettings
from .guard import FORM_OVERHEAD_BYTES, Guard
from .health import missing_clip_weights, weights_report
from .params import JobParams, job_key
from .store import FINAL, STORAGE_ERRORS, Job, JobStore, storage_problem, valid_job_id
from .worker import ModelSettings

logger = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 25 * 2**20
WEB_PAGE = Path(__file__).parent / "web" / "index.html"
EVENT_POLL_S = 0.4
KEEP_ALIVE_S = 15.0


@dataclass
class Settings:
    """How the service runs. devices: one worker each ("cpu", "cuda:0", …)."""

    data_dir: Path
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    models: ModelSettings = field(default_factory=ModelSettings)
    token: str | None = None
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    #: Host names requests may be addressed to (None: any). `serve` sets the bound loopback
    #: names, or --public-name, against DNS rebinding.
    allowed_hosts: tuple[str, ...] | None = None
    start_workers: bool = True
    #: Where jobs run: this machine's devices (local) or a Ray cluster (see executors).
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)


# --- response models (the OpenAPI schema at /docs is generated from these) ------------------

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


class Health(BaseModel):
    service: str
    version: str
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


def _layout(params: dict) -> tuple[int, list[int], bool]:
    config = JobParams(**params).to_config()
    return config.simplicity_rows + 1, list(config.layers), config.split


def _job_info(store: JobStore, job: Job, settings: Settings) -> JobInfo:
    """A job not yet claimed by a worker is shown for the first device ("auto" resolves by it)."""
    device = job.device or settings.devices[0]
    rows, layers, _ = _layout(job.params)
    config = JobParams(**job.params).to_config(torch_device_type(device))
    steps = step_counts(config)
    progress = ProgressInfo(**{key: value for key, value in job.progress.items()
                               if key in ProgressInfo.model_fields})
    progress.cells_done = len(store.cells(job.id))
    progress.cells_total = rows * len(layers)
    # A queued job may keep the progress of an interrupted run: its estimate replaces it.
    if job.status == "queued" or (job.status == "running" and progress.eta_s is None):
        measured = store.meta(speed_key(device, settings.models.identity))
        progress.eta_s, progress.estimate = estimate(measured, device, steps)
    return JobInfo(
        id=job.id, status=job.status, created=job.created, started=job.started,
        finished=job.finished, progress=progress, error=job.error, notices=job.notices,
        params=job.params, image=ImageInfo(name=job.image_name, width=job.width, height=job.height),
        device=device if job.status == "queued" else job.device,
        preset={"requested": config.preset_requested, "ran": config.preset, "steps": steps},
    )


def torch_device_type(device: str) -> str:
    """"cuda:1" -> "cuda"; "auto" -> what PyTorch finds here."""
    if device == "auto":
        from clipascene_core.models import resolve_device

        return resolve_device("auto").type
    return device.split(":")[0]


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the service on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(settings: Settings) -> FastAPI:
    store = JobStore(settings.data_dir)
    wake = threading.Event()
    executor = Executor(settings.executor, store, settings.devices, settings.models, wake)
    workers = executor.workers

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        for job_id, outcome in store.recover():
            logger.warning("job %s was interrupted by a stop of the backend: %s", job_id, outcome)
        if settings.start_workers:
            for worker in workers:
                worker.start()
        yield
        for worker in workers:
            worker.stop()
        for worker in workers:
            if worker.is_alive():
                worker.join(timeout=30)

    # /docs and /redoc load their scripts from a CDN: not for a service reached with a token.
    docs = settings.token is None
    app = FastAPI(title="CLIPascene backend", version=__version__, lifespan=lifespan,
                  description="Local service that turns images into matrices of vector sketches.",
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None)
    app.state.store = store
    app.state.workers = workers
    app.state.settings = settings

    app.add_middleware(Guard, token=settings.token, allowed_hosts=settings.allowed_hosts,
                       max_body_bytes=settings.max_upload_bytes + FORM_OVERHEAD_BYTES)

    @app.exception_handler(sqlite3.Error)
    @app.exception_handler(OSError)
    async def storage_failed(_request: Request, error: Exception):
        logger.error("storage error: %s", error)
        return JSONResponse({"detail": storage_problem(error, settings.data_dir)}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def readable_validation(_request: Request, error: RequestValidationError):
        problems = []
        for item in error.errors():
            where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
            problems.append(f"{where}: {item.get('msg')}")
        return JSONResponse({"detail": "invalid request: " + "; ".join(problems)}, status_code=422)

    def get_job(job_id: str) -> Job:
        if not valid_job_id(job_id):
            raise HTTPException(404, f"no job {job_id[:40]!r}: job ids are 16 hex digits.")
        job = store.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}.")
        return job

    async def read_upload(upload: UploadFile, what: str) -> bytes:
        data = await upload.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise HTTPException(413, f"the {what} is larger than {settings.max_upload_bytes // 2**20} MB.")
        if not data:
            raise HTTPException(400, f"the {what} file is empty.")
        return data

    # --- service -------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def web_page() -> HTMLResponse:
        return HTMLResponse(WEB_PAGE.read_text(encoding="utf-8"))

    @app.get("/v1/health", response_model=Health)
    def health() -> Health:
        report = weights_report(settings.models)
        # A damaged download is as good as none: the split falls back either way.
        missing = [name for name, state in report.items() if state in ("missing", "corrupt")]
        states = [WorkerState(**worker.state()) for worker in workers]
        problems = [f"worker on {state.device} is {state.state}: {state.problem}"
                    for state in states if state.state in ("retrying", "stuck", "dead")]
        try:
            queue_depth = store.queue_depth()
        except STORAGE_ERRORS as error:
            problems.append(storage_problem(error, settings.data_dir))
            queue_depth = -1
        executor_info, executor_problems = executor.report()
        problems += executor_problems
        return Health(
            service="clipascene-backend", version=__version__, ok=not problems, problems=problems,
            workers=states, devices=settings.devices,
            clip_model=settings.models.clip_model, weights=report, missing=missing,
            how_to_get_missing=("run `python3 install.py` (or `clipascene models download`) with "
                                "internet access" if missing else None),
            queue_depth=queue_depth, executor=executor_info,
        )

    # --- jobs ----------------------------------------------------------------------------

    @app.post("/v1/jobs", status_code=202, response_model=Submitted,
              responses={200: {"model": Submitted, "description": "the same job already exists"},
                         409: {"description": "the CLIP weights are missing: no job can run"}})
    async def submit(request: Request, image: UploadFile = File(...), params: str = Form("{}"),
                     mask: UploadFile | None = File(None, description=(
                         "the object mask: a PNG, JPEG or WebP of the (upright) image's size, white "
                         "or opaque where the object is; used instead of the computed one"))):
        form = await request.form()  # already read by FastAPI: the parts as sent
        for part in ("image", "params", "mask"):
            if len(form.getlist(part)) > 1:
                raise HTTPException(400, f"the form has {len(form.getlist(part))} '{part}' parts; "
                                         "send one.")
        dead = [worker.device for worker in workers if worker.state()["state"] == "dead"]
        if dead:
            raise HTTPException(503, f"the worker on {', '.join(dead)} has stopped, so no job "
                                     "would run; restart the backend (its log says why).")
        missing = missing_clip_weights(settings.models)
        if missing:  # refused now rather than failed when a worker tries to load CLIP
            raise HTTPException(409, missing)
        data = await read_upload(image, "image")
        mask_data = await read_upload(mask, "mask") if mask is not None else None
        try:
            decoded = json.loads(params or "{}")
        except json.JSONDecodeError as error:
            raise HTTPException(400, f"params is not valid JSON ({error.msg}).") from None
        except RecursionError:  # json.loads of e.g. "[[[[…" nested thousands deep
            raise HTTPException(400, "params is nested too deeply; send a flat JSON object.") from None
        except ValueError as error:  # e.g. an integer of over 4300 digits
            raise HTTPException(400, f"params has a value Python refuses to read ({error}).") from None
        if not isinstance(decoded, dict):
            raise HTTPException(400, "params must be a JSON object, e.g. {\"preset\": \"preview\"}.")
        try:
            job_params = JobParams(**decoded)
            job_params.to_config()
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}"
                                 for item in error.errors())
            raise HTTPException(422, f"invalid params: {problems}") from None
        except ConfigError as error:
            raise HTTPException(422, f"invalid params: {error}") from None
        checked = await asyncio.to_thread(_check_image, data)
        if mask_data is not None:
            drawn = await asyncio.to_thread(_check_image, mask_data, "mask")
            if (drawn["width"], drawn["height"]) != (checked["width"], checked["height"]):
                raise HTTPException(400, f"the mask is {drawn['width']}x{drawn['height']} pixels but "
                                         f"the image is {checked['width']}x{checked['height']}; "
                                         "draw the mask at the image's size.")
        name = Path(image.filename or "image").name[:200]
        key = job_key(data, job_params, settings.models.identity, mask_data)
        job, cached = store.submit(key, job_params.canonical(), name, data, checked["suffix"],
                                   checked["width"], checked["height"],
                                   mask=(mask_data, drawn["suffix"]) if mask_data is not None else None)
        wake.set()
        progress = _job_info(store, job, settings).progress
        return JSONResponse(Submitted(id=job.id, status=job.status, cached=cached,
                                      eta_s=progress.eta_s, estimate=progress.estimate).model_dump(),
                            status_code=200 if cached else 202)

    @app.get("/v1/jobs", response_model=list[JobInfo])
    def list_jobs(limit: int = Query(50, ge=1, le=500)) -> list[JobInfo]:
        return [_job_info(store, job, settings) for job in store.list(limit)]

    @app.get("/v1/jobs/{job_id}", response_model=JobInfo)
    def job_status(job_id: str) -> JobInfo:
        return _job_info(store, get_job(job_id), settings)

    @app.delete("/v1/jobs/{job_id}", response_model=JobInfo | dict)
    def cancel(job_id: str, purge: bool = False):
        job = get_job(job_id)
        if purge:
            # A job left 'running' by a worker that no longer runs it can go at once.
            if job.status == "running" and any(worker.current == job_id for worker in workers):
                store.request_cancel(job_id)
                raise HTTPException(409, "the job is still stopping; purge it again in a moment.")
            store.purge(job_id)
            return {"id": job_id, "purged": True}
        if job.status not in FINAL:
            job = store.request_cancel(job_id)
        return _job_info(store, job, settings)

    @app.get("/v1/jobs/{job_id}/events")
    async def events(job_id: str, request: Request):
        get_job(job_id)

        async def stream():
            sent_progress = None
            sent_cells = 0
            idle = 0.0
            while True:
                job = await asyncio.to_thread(store.get, job_id)
                if job is None:
                    yield _sse("failed", {"id": job_id, "error": "the job was purged"})
                    return
                cells = await asyncio.to_thread(store.cells, job_id)
                for cell in cells[sent_cells:]:
                    idle = 0.0
                    yield _sse("cell", _cell_links(job, cell))
                sent_cells = len(cells)
                info = _job_info(store, job, settings)
                progress = info.progress.model_dump()
                if progress != sent_progress:
                    idle = 0.0
                    yield _sse("progress", {"id": job_id, "status": job.status, **progress})
                    sent_progress = progress
                if job.status in FINAL:
                    kind = {"done": "done", "failed": "failed", "cancelled": "cancelled"}[job.status]
                    yield _sse(kind, {"id": job_id, "status": job.status, "error": job.error})
                    return
                if await request.is_disconnected():
                    return
                idle += EVENT_POLL_S
                if idle >= KEEP_ALIVE_S:
                    # A comment line: keeps proxies and client read timeouts from closing a
                    # stream that has nothing to say while the job waits in the queue.
                    yield ": keep-alive\n\n"
                    idle = 0.0
                await asyncio.sleep(EVENT_POLL_S)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/v1/jobs/{job_id}/matrix", response_model=MatrixInfo)
    def matrix(job_id: str) -> MatrixInfo:
        job = get_job(job_id)
        rows, layers, split = _layout(job.params)
        ready = {(cell["row"], cell["layer"]): cell for cell in store.cells(job_id)}
        manifest = _manifest(store, job_id)
        regions = manifest.get("regions") if manifest else None
        cells = []
        for row in range(rows):
            for column, layer in enumerate(layers):
                cell = ready.get((row, layer))
                links = _cell_links(job, cell) if cell else {}
                cells.append(CellInfo(row=row, column=column, layer=layer, ready=cell is not None,
                                      strokes=cell["strokes"] if cell else None,
                                      urls=links.get("urls")))
        mask = store.out_dir(job_id) / "mask.png"
        return MatrixInfo(id=job_id, status=job.status, rows=rows, layers=layers,
                          regions=regions or (["background", "foreground"] if split else ["scene"]),
                          split=bool(manifest["preprocessing"]["split"]) if manifest else split,
                          cells_done=len(ready), cells_total=rows * len(layers), cells=cells,
                          mask_url=f"/v1/jobs/{job_id}/mask.png" if mask.is_file() else None)

    def find_cell(job: Job, row: int, column: int) -> dict:
        _, layers, _ = _layout(job.params)
        if not 0 <= column < len(layers):
            raise HTTPException(404, f"column {column} does not exist; this job has {len(layers)}.")
        for cell in store.cells(job.id):
            if cell["row"] == row and cell["layer"] == layers[column]:
                return cell
        raise HTTPException(404, f"cell ({row}, {column}) is not ready (or does not exist).")

    def cell_file(job: Job, cell: dict, part: str) -> Path:
        files = cell["files"]
        if part not in files:
            raise HTTPException(404, f"this job has no {part} part: it was sketched as one region.")
        return store.out_dir(job.id) / files[part]

    @app.get("/v1/jobs/{job_id}/cells/{row}/{column}.svg", response_class=Response,
             responses={200: {"content": {"image/svg+xml": {}}}})
    def cell_svg(job_id: str, row: int, column: int,
                 part: Literal["combined", "foreground", "background"] = "combined") -> Response:
        job = get_job(job_id)
        path = cell_file(job, find_cell(job, row, column), part)
        return Response(path.read_bytes(), media_type="image/svg+xml")

    @app.get("/v1/jobs/{job_id}/cells/{row}/{column}.png", response_class=Response,
             responses={200: {"content": {"image/png": {}}}})
    async def cell_png(job_id: str, row: int, column: int,
                       part: Literal["combined", "foreground", "background"] = "combined",
                       size: int = Query(256, ge=16, le=2048)) -> Response:
        job = get_job(job_id)
        path = cell_file(job, find_cell(job, row, column), part)
        data = await asyncio.to_thread(_thumbnail, path, size)
        return Response(data, media_type="image/png")

    @app.get("/v1/jobs/{job_id}/grid.png", response_class=FileResponse)
    def grid(job_id: str):
        job = get_job(job_id)
        path = store.out_dir(job.id) / "grid.png"
        if not path.is_file():
            raise HTTPException(404, "the overview is written when the whole matrix is done.")
        return FileResponse(path, media_type="image/png")

    @app.get("/v1/jobs/{job_id}/mask.png", response_class=FileResponse,
             responses={200: {"content": {"image/png": {}}}})
    def mask_png(job_id: str):
        """The object mask the job uses (white = foreground), drawn or computed."""
        job = get_job(job_id)
        path = store.out_dir(job.id) / "mask.png"
        if not path.is_file():
            raise HTTPException(404, "the object mask is written when the job's preprocessing is done."
                                if _layout(job.params)[2] else
                                "this job is sketched as one region: it has no object mask.")
        return FileResponse(path, media_type="image/png")

    @app.get("/v1/jobs/{job_id}/manifest.json")
    def manifest_file(job_id: str):
        job = get_job(job_id)
        manifest = _manifest(store, job.id)
        if manifest is None:
            raise HTTPException(404, "no cell is finished yet.")
        return manifest

    return app


def _sse(kind: str, data: dict) -> str:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n"


def _cell_links(job: Job, cell: dict) -> dict:
    _, layers, _ = _layout(job.params)
    column = layers.index(cell["layer"])
    base = f"/v1/jobs/{job.id}/cells/{cell['row']}/{column}"
    urls = {"combined": f"{base}.svg", "png": f"{base}.png"}
    for part in ("foreground", "background"):
        if part in cell["files"]:
            urls[part] = f"{base}.svg?part={part}"
    return {"id": job.id, "row": cell["row"], "column": column, "layer": cell["layer"],
            "strokes": cell["strokes"], "urls": urls}


def _manifest(store: JobStore, job_id: str) -> dict | None:
    path = store.out_dir(job_id) / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


#: One upload is decoded at a time, so concurrent uploads cannot add up their decoding memory.
_DECODING = threading.Lock()


def _check_image(data: bytes, what: str = "image") -> dict:
    """Validate an upload (the image, or the `what` part) by content (format, size,
    integrity) -> its suffix and upright size."""
    suffixes = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}
    try:
        with _DECODING:
            image = load_image(data)
    except ImageInputError as error:
        message = str(error) if what == "image" else f"the {what} cannot be used: {error}"
        raise HTTPException(error.http_status, message) from None
    return {"suffix": suffixes[image.format], "width": image.width, "height": image.height}


def _thumbnail(svg: Path, size: int) -> bytes:
    # A part whose strokes were all cut away renders as blank paper of the cell's size.
    merged = StrokeSet.merged(list(read_svg(svg).values()), *document_size(svg))
    buffer = io.BytesIO()
    merged.render(max_side=size).save(buffer, format="PNG")
    return buffer.getvalue()

