"""Jobs: submit (POST /v1/jobs), list, status, cancel or purge, and the event stream."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError

from clipascene_core.io.images import load_image
from clipascene_core.io.records import Layout
from clipascene_core.models.clip import WeightsError

from ..deps import JobDep, SettingsDep, StoreDep, WakeDep, WorkersDep, read_upload
from ..facts import RunFacts, resolve_facts, torch_device_type
from ..health import missing_clip_weights
from ..jobs_view import cell_ready, job_info
from ..params import JobParams, job_key
from ..schemas import EVENTS, JobEnded, JobInfo, ProgressUpdate, Submitted
from ..store import FINAL
from ..watch import JobWatch

EVENT_POLL_S = 0.4
#: The parts of a submission's form.
FORM_FIELDS = ("image", "params", "mask")
KEEP_ALIVE_S = 15.0

router = APIRouter()


@router.post("/v1/jobs", status_code=202, response_model=Submitted,
             responses={200: {"model": Submitted, "description": "the same job already exists"},
                        409: {"description": "the CLIP weights are missing: no job can run"}})
async def submit(request: Request, store: StoreDep, settings: SettingsDep, workers: WorkersDep,
                 wake: WakeDep, image: UploadFile = File(...), params: str = Form("{}"),
                 mask: UploadFile | None = File(None, description=(
                     "the object mask: a PNG, JPEG or WebP of the (upright) image's size, white "
                     "or opaque where the object is; used instead of the computed one"))):
    form = await request.form()  # already read by FastAPI: the parts as sent
    unknown = sorted(set(form.keys()) - set(FORM_FIELDS))
    if unknown:  # a misspelt `params` would otherwise run the default matrix (hours on a CPU)
        raise HTTPException(400, f"the form has the unknown field {unknown[0][:40]!r}; its fields "
                                 f"are {', '.join(FORM_FIELDS)}.")
    for part in FORM_FIELDS:
        if len(form.getlist(part)) > 1:
            raise HTTPException(400, f"the form has {len(form.getlist(part))} '{part}' parts; "
                                     "send one.")
    dead = [worker.device for worker in workers if worker.state()["state"] == "dead"]
    if dead:
        raise HTTPException(503, f"the worker on {', '.join(dead)} has stopped, so no job "
                                 "would run; restart the backend (its log says why).")
    missing = missing_clip_weights(settings.models)
    if missing:  # refused now rather than failed when a worker tries to load CLIP
        raise WeightsError(missing)
    data = await read_upload(image, "image", settings)
    mask_data = await read_upload(mask, "mask", settings) if mask is not None else None
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
        # The run facts, resolved once for the first device ("auto" resolves by it); a
        # ConfigError is refused here with its sentence, before the image is decoded.
        facts, layout = resolve_facts(job_params.canonical(),
                                      torch_device_type(settings.devices[0]))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}"
                             for item in error.errors())
        raise HTTPException(422, f"invalid params: {problems}") from None
    checked = await _checked(data)
    if mask_data is not None:
        drawn = await _checked(mask_data, "mask")
        if (drawn["width"], drawn["height"]) != (checked["width"], checked["height"]):
            raise HTTPException(400, f"the mask is {drawn['width']}x{drawn['height']} pixels but "
                                     f"the image is {checked['width']}x{checked['height']}; "
                                     "draw the mask at the image's size.")
    name = Path(image.filename or "image").name[:200]
    key = job_key(data, job_params, settings.models.identity, mask_data)
    job, cached, progress = await asyncio.to_thread(
        _store_job, store, settings, key, job_params.canonical(), facts, layout, name, data,
        checked, (mask_data, drawn["suffix"]) if mask_data is not None else None)
    wake.set()
    return JSONResponse(Submitted(id=job.id, status=job.status, cached=cached,
                                  eta_s=progress.eta_s, estimate=progress.estimate).model_dump(),
                        status_code=200 if cached else 202)


def _store_job(store, settings, key: str, params: dict, facts: RunFacts, layout: Layout,
               name: str, data: bytes, checked: dict, mask: tuple[bytes, str] | None):
    """Store a submission (run in a thread: the store is SQLite) -> (job, cached, progress)."""
    job, cached = store.submit(key, params, layout, name, data, checked["suffix"],
                               checked["width"], checked["height"], mask=mask, facts=facts)
    _image_digest(store, job.id, data)
    return job, cached, job_info(store, job, settings).progress


@router.get("/v1/jobs", response_model=list[JobInfo])
def list_jobs(store: StoreDep, settings: SettingsDep,
              limit: int = Query(50, ge=1, le=500),
              image_sha256: str | None = Query(None, pattern="^[0-9a-f]{64}$", description=(
                  "only the jobs of the image with this SHA-256 (of the uploaded bytes), "
                  "e.g. every matrix sketched of one photo"))) -> list[JobInfo]:
    """The newest jobs first."""
    jobs = store.list(limit if image_sha256 is None else 500)
    if image_sha256 is not None:
        jobs = [job for job in jobs if _image_digest(store, job.id) == image_sha256][:limit]
    return [job_info(store, job, settings) for job in jobs]


#: Beside each job's input: the SHA-256 of the uploaded image, for GET /v1/jobs?image_sha256=.
DIGEST_FILE = "input.sha256"


def _image_digest(store, job_id: str, data: bytes | None = None) -> str | None:
    """The SHA-256 of a job's uploaded image: from its file beside the input, else computed
    (from `data`, or the input file) and written there. None when the input is gone."""
    folder = store.job_dir(job_id)
    try:
        return (folder / DIGEST_FILE).read_text().strip()
    except OSError:
        pass
    if data is None:
        job = store.get(job_id)
        try:
            data = (folder / job.image_file).read_bytes() if job is not None else None
        except OSError:
            return None
    if data is None:
        return None
    digest = hashlib.sha256(data).hexdigest()
    try:
        (folder / DIGEST_FILE).write_text(digest)
    except OSError:  # a read-only data folder: computed again next time
        pass
    return digest


@router.get("/v1/jobs/{job_id}", response_model=JobInfo)
def job_status(job: JobDep, store: StoreDep, settings: SettingsDep) -> JobInfo:
    return job_info(store, job, settings)


@router.delete("/v1/jobs/{job_id}", response_model=JobInfo | dict)
def cancel(job: JobDep, store: StoreDep, settings: SettingsDep, workers: WorkersDep,
           purge: bool = False):
    if purge:
        # A job left 'running' by a worker that no longer runs it can go at once; one that a
        # live worker holds, or may have just claimed (it is idle a moment longer), cannot.
        if job.status == "running" and any(
                worker.current == job.id or (worker.current is None and worker.is_alive())
                for worker in workers):
            store.request_cancel(job.id)
            raise HTTPException(409, "the job is still stopping; purge it again in a moment.")
        if not store.purge(job.id, job.status):
            raise HTTPException(409, f"the job just went from {job.status} to another state; "
                                     "purge it again in a moment.")
        return {"id": job.id, "purged": True}
    if job.status not in FINAL:
        job = store.request_cancel(job.id)
        if job is None:  # purged meanwhile
            raise HTTPException(404, "no such job: it was purged just now.")
    return job_info(store, job, settings)


@router.get("/v1/jobs/{job_id}/events")
async def events(job: JobDep, request: Request, store: StoreDep, settings: SettingsDep):
    job_id = job.id
    if getattr(request.app.state, "job_watch", None) is None:
        request.app.state.job_watch = JobWatch(partial(_read_job, store, settings), EVENT_POLL_S)
    watch: JobWatch = request.app.state.job_watch

    async def stream():
        sent_progress = None
        sent_cells: set[tuple[int, int, bool]] = set()  # a draft, then the same cell final
        said = time.monotonic()  # when the stream last said something
        seen = 0
        async with watch.watch(job_id) as snapshot:
            while True:
                await snapshot.after(seen, EVENT_POLL_S)
                seen = snapshot.version
                if snapshot.error is not None:  # the store failed this poll: say nothing
                    pass
                elif seen and snapshot.reading is None:
                    yield _sse("failed", JobEnded(id=job_id, status="failed",
                                                  error="the job was purged"))
                    return
                elif snapshot.reading is not None:
                    job, cells, info = snapshot.reading
                    for cell in cells:
                        if (cell.row, cell.layer, cell.draft) not in sent_cells:
                            said = time.monotonic()
                            sent_cells.add((cell.row, cell.layer, cell.draft))
                            yield _sse("cell", cell_ready(job, cell))
                    progress = ProgressUpdate(**info.progress.model_dump(), id=job_id,
                                              status=job.status, notices=job.notices)
                    if progress != sent_progress:
                        said = time.monotonic()
                        yield _sse("progress", progress)
                        sent_progress = progress
                    if job.status in FINAL:  # the status names the last event
                        yield _sse(job.status, JobEnded(id=job_id, status=job.status,
                                                        error=job.error))
                        return
                if await request.is_disconnected():
                    return
                if time.monotonic() - said >= KEEP_ALIVE_S:
                    # A comment line: keeps proxies and client read timeouts from closing a
                    # stream that has nothing to say while the job waits in the queue.
                    yield ": keep-alive\n\n"
                    said = time.monotonic()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _read_job(store, settings, job_id: str):
    """What an event stream needs of a job (read once a poll for all its streams)."""
    job = store.get(job_id)
    if job is None:
        return None
    cells = store.cells(job_id)
    return job, cells, job_info(store, job, settings, cells)


def _sse(kind: str, data: BaseModel) -> str:
    if not isinstance(data, EVENTS[kind]):
        raise TypeError(f"a {kind!r} event carries a {EVENTS[kind].__name__}")
    return f"event: {kind}\ndata: {data.model_dump_json()}\n\n"


#: Uploads are decoded one at a time, so concurrent uploads cannot add up their decoding
#: memory, on a thread of their own: an upload waiting for its turn holds no thread that
#: other requests need (it waits on the event loop), and each decoding is bounded by the
#: limits `load_image` checks from the header (pixels, decoded bytes, JPEG scans).
_DECODER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload-check")


async def _checked(data: bytes, what: str = "image") -> dict:
    return await asyncio.get_running_loop().run_in_executor(_DECODER, _check_image, data, what)


def _check_image(data: bytes, what: str = "image") -> dict:
    """Validate an upload (the image, or the `what` part) by content (format, size,
    integrity) -> its suffix and upright size."""
    suffixes = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}
    image = load_image(data, None if what == "image" else f"the {what} cannot be used")
    return {"suffix": suffixes[image.format], "width": image.width, "height": image.height}
