"""How a stored job is shown over HTTP: its JobInfo, a cell's place and links.

Shared by the jobs routes (status, events) and the cells routes (matrix, cell files).
"""

from __future__ import annotations

from clipascene_core.io.records import CellRecord

from .estimate import estimate, speed_key
from .schemas import CellReady, ImageInfo, JobInfo, ProgressInfo
from .settings import Settings
from .store import Job, JobStore


def job_info(store: JobStore, job: Job, settings: Settings,
             cells: list[CellRecord] | None = None) -> JobInfo:
    """A job as stored (its run facts were resolved when it was submitted or claimed; a job
    not yet claimed is shown for the first device). cells: the job's cells if already read."""
    device = job.device or settings.devices[0]
    steps = job.facts.preset.steps
    cells = store.cells(job.id) if cells is None else cells
    progress = ProgressInfo(**job.progress.to_dict(),
                            cells_done=sum(not cell.draft for cell in cells),
                            cells_total=job.layout.cells_total)
    # A queued job may keep the progress of an interrupted run: its estimate replaces it.
    if job.status == "queued" or (job.status == "running" and progress.eta_s is None):
        measured = store.meta(speed_key(device, settings.models.identity))
        progress.eta_s, progress.estimate = estimate(measured, device, steps)
    return JobInfo(
        id=job.id, status=job.status, created=job.created, started=job.started,
        finished=job.finished, progress=progress, error=job.error, notices=job.notices,
        params=job.params, image=ImageInfo(name=job.image_name, width=job.width, height=job.height),
        device=device if job.status == "queued" else job.device,
        preset=job.facts.preset,
    )


def cell_ready(job: Job, cell: CellRecord) -> CellReady:
    """A finished cell's place in the matrix, stroke counts and URLs (an SSE `cell` event)."""
    column = job.layout.layers.index(cell.layer)
    base = f"/v1/jobs/{job.id}/cells/{cell.row}/{column}"
    urls = {"combined": f"{base}.svg", "png": f"{base}.png"}
    for part in ("foreground", "background"):
        if part in cell.files:
            urls[part] = f"{base}.svg?part={part}"
    return CellReady(id=job.id, row=cell.row, column=column, layer=cell.layer,
                     strokes=cell.strokes, urls=urls, draft=cell.draft)

