"""The HTTP API of the local sketch service (see docs/architecture.md, "backend").

`create_app` only assembles the service: its objects on `app.state` (read by the
dependencies in `deps`), the workers' lifespan, the Guard middleware, the error handlers,
and the routers (`routers/`: service, jobs, cells).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import sqlite3
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from clipascene_core import __version__
from clipascene_core.errors import UserError

from .executors import Executor
from .guard import FORM_OVERHEAD_BYTES, Guard
from .routers import cells, jobs, service
from .settings import Settings
from .storage import storage_problem
from .store import JobStore

logger = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the service on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@asynccontextmanager
async def lifespan(app: FastAPI):
    store, settings, workers = app.state.store, app.state.settings, app.state.workers
    for job_id, outcome in await asyncio.to_thread(store.recover):  # SQLite: off the event loop
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


async def storage_failed(request: Request, error: Exception) -> JSONResponse:
    logger.error("storage error: %s", error)
    data_dir = request.app.state.settings.data_dir
    return JSONResponse({"detail": storage_problem(error, data_dir)}, status_code=503)


async def users_mistake(_request: Request, error: UserError) -> JSONResponse:
    """Every `UserError` a route meets (a bad image or mask, parameters out of range, CLIP
    weights this machine lacks): its own status, its one sentence as HTTPException's detail."""
    return JSONResponse({"detail": f"{error.http_prefix}{error}"}, status_code=error.http_status)


async def readable_validation(_request: Request, error: RequestValidationError) -> JSONResponse:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        problems.append(f"{where}: {item.get('msg')}")
    return JSONResponse({"detail": "invalid request: " + "; ".join(problems)}, status_code=422)


def create_app(settings: Settings) -> FastAPI:
    store = JobStore(settings.data_dir)
    wake = threading.Event()
    executor = Executor(settings.executor, store, settings.devices, settings.models, wake)

    # /docs and /redoc load their scripts from a CDN: not for a service reached with a token.
    docs = settings.token is None
    app = FastAPI(title="CLIPascene backend", version=__version__, lifespan=lifespan,
                  description="Local service that turns images into matrices of vector sketches.",
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None)
    app.state.store = store
    app.state.settings = settings
    app.state.executor = executor
    app.state.workers = executor.workers
    app.state.wake = wake  # set after a submission: wakes the idle workers

    app.add_middleware(Guard, token=settings.token, allowed_hosts=settings.allowed_hosts,
                       max_body_bytes=settings.max_upload_bytes + FORM_OVERHEAD_BYTES)
    app.add_exception_handler(sqlite3.Error, storage_failed)
    app.add_exception_handler(OSError, storage_failed)
    app.add_exception_handler(RequestValidationError, readable_validation)
    app.add_exception_handler(UserError, users_mistake)

    app.include_router(service.router)
    app.include_router(jobs.router)
    app.include_router(cells.router)
    return app
