"""The service itself: the web page at / and GET /v1/health."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from clipascene_core import __version__

from ..deps import ExecutorDep, SettingsDep, StoreDep, WorkersDep
from ..health import weights_report
from ..schemas import API_VERSION, Health, WorkerState
from ..storage import STORAGE_ERRORS, storage_problem

WEB_PAGE = Path(__file__).parent.parent / "web" / "index.html"

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def web_page() -> HTMLResponse:
    return HTMLResponse(WEB_PAGE.read_text(encoding="utf-8"))


@router.get("/v1/health", response_model=Health)
def health(store: StoreDep, settings: SettingsDep, workers: WorkersDep,
           executor: ExecutorDep) -> Health:
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
        service="clipascene-backend", version=__version__, api_version=API_VERSION,
        ok=not problems, problems=problems,
        workers=states, devices=settings.devices,
        clip_model=settings.models.clip_model, weights=report, missing=missing,
        how_to_get_missing=("run `python3 install.py` (or `clipascene models download`) with "
                            "internet access" if missing else None),
        queue_depth=queue_depth, executor=executor_info,
    )
