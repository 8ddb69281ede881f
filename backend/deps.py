"""What the routes share, as FastAPI dependencies.

`create_app` puts the service's objects on `app.state` (store, settings, executor, workers,
wake); the functions here read them from the request's app (the getters are `async`, so
they skip the thread pool), and the `Annotated` aliases (`StoreDep`, `JobDep`, …) are what
a route declares to get them.
"""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import Depends, HTTPException, Request, UploadFile

from .executors import Executor
from .settings import Settings
from .store import Job, JobStore, valid_job_id
from .worker import Worker


async def get_store(request: Request) -> JobStore:
    return request.app.state.store


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_executor(request: Request) -> Executor:
    return request.app.state.executor


async def get_workers(request: Request) -> list[Worker]:
    return request.app.state.workers


async def get_wake(request: Request) -> threading.Event:
    """Set after a submission: wakes the idle workers."""
    return request.app.state.wake


StoreDep = Annotated[JobStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ExecutorDep = Annotated[Executor, Depends(get_executor)]
WorkersDep = Annotated[list[Worker], Depends(get_workers)]
WakeDep = Annotated[threading.Event, Depends(get_wake)]


def get_job(job_id: str, store: StoreDep) -> Job:
    """The job of the path's {job_id}, or 404."""
    if not valid_job_id(job_id):
        raise HTTPException(404, f"no job {job_id[:40]!r}: job ids are 16 hex digits.")
    job = store.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}.")
    return job


JobDep = Annotated[Job, Depends(get_job)]


async def read_upload(upload: UploadFile, what: str, settings: Settings) -> bytes:
    """The bytes of an uploaded file part, refused when empty or over the upload limit."""
    data = await upload.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise HTTPException(413, f"the {what} is larger than {settings.max_upload_bytes // 2**20} MB.")
    if not data:
        raise HTTPException(400, f"the {what} file is empty.")
    return data
