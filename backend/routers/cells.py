"""A job's results: the matrix, its cells (SVG, PNG thumbnail), grid.png, mask.png, manifest."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse, Response

from clipascene_core.io.records import CellRecord, OutputFolder
from clipascene_core.sketch.strokes import StrokeSet, document_size, read_svg

from ..deps import JobDep, StoreDep
from ..jobs_view import cell_ready
from ..schemas import CellInfo, MatrixInfo
from ..store import JobStore

router = APIRouter()

Part = Literal["combined", "foreground", "background"]
#: Cell files change when a draft's final cell replaces it.
REVALIDATE = {"Cache-Control": "no-cache"}


@router.get("/v1/jobs/{job_id}/matrix", response_model=MatrixInfo)
def matrix(job: JobDep, store: StoreDep) -> MatrixInfo:
    layout = job.layout
    ready = {(cell.row, cell.layer): cell for cell in store.cells(job.id)}
    # Planned as two regions, a run falls back to one when it finds no object: its worker
    # records the regions sketched in the job's facts.
    regions = list(job.facts.regions)
    cells = []
    for row in range(layout.rows):
        for column, layer in enumerate(layout.layers):
            cell = ready.get((row, layer))
            cells.append(CellInfo(row=row, column=column, layer=layer, ready=cell is not None,
                                  draft=cell is not None and cell.draft,
                                  strokes=cell.strokes if cell else None,
                                  urls=cell_ready(job, cell).urls if cell else None))
    has_mask = store.results(job.id).path(OutputFolder.MASK).is_file()
    return MatrixInfo(id=job.id, status=job.status, rows=layout.rows, layers=list(layout.layers),
                      regions=regions, split=regions != ["scene"],
                      cells_done=sum(not cell.draft for cell in ready.values()),
                      cells_total=layout.cells_total, cells=cells,
                      mask_url=f"/v1/jobs/{job.id}/mask.png" if has_mask else None)


def get_cell(job: JobDep, store: StoreDep, row: int, column: int) -> CellRecord:
    """The finished cell at the path's {row}/{column}, or 404."""
    layers = job.layout.layers
    if not 0 <= column < len(layers):
        raise HTTPException(404, f"column {column} does not exist; this job has {len(layers)}.")
    for cell in store.cells(job.id):
        if cell.row == row and cell.layer == layers[column]:
            return cell
    raise HTTPException(404, f"cell ({row}, {column}) is not ready (or does not exist).")


#: Routes that take it declare `job: JobDep` before it, so the path's parameters keep their
#: order (job_id, row, column) in the OpenAPI schema.
CellDep = Annotated[CellRecord, Depends(get_cell)]


def _cell_file(store: JobStore, job_id: str, cell: CellRecord, part: str) -> Path:
    if part not in cell.files:
        raise HTTPException(404, f"this job has no {part} part: it was sketched as one region.")
    return store.results(job_id).path(cell.files[part])


@router.get("/v1/jobs/{job_id}/cells/{row}/{column}.svg", response_class=Response,
            responses={200: {"content": {"image/svg+xml": {}}}})
def cell_svg(job: JobDep, cell: CellDep, store: StoreDep, part: Part = "combined") -> Response:
    path = _cell_file(store, job.id, cell, part)
    # A draft's file is replaced by its final cell's: clients revalidate.
    return Response(path.read_bytes(), media_type="image/svg+xml", headers=REVALIDATE)


@router.get("/v1/jobs/{job_id}/cells/{row}/{column}.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
async def cell_png(job: JobDep, cell: CellDep, store: StoreDep, part: Part = "combined",
                   size: int = Query(256, ge=16, le=2048)) -> Response:
    path = _cell_file(store, job.id, cell, part)
    data = await asyncio.to_thread(_thumbnail, path, size)
    return Response(data, media_type="image/png", headers=REVALIDATE)


@router.get("/v1/jobs/{job_id}/grid.png", response_class=FileResponse)
def grid(job: JobDep, store: StoreDep):
    path = store.results(job.id).path(OutputFolder.GRID)
    if not path.is_file():
        raise HTTPException(404, "the overview is written when the whole matrix is done.")
    return FileResponse(path, media_type="image/png")


@router.get("/v1/jobs/{job_id}/mask.png", response_class=FileResponse,
            responses={200: {"content": {"image/png": {}}}})
def mask_png(job: JobDep, store: StoreDep):
    """The object mask the job uses (white = foreground), drawn or computed."""
    path = store.results(job.id).path(OutputFolder.MASK)
    if not path.is_file():
        raise HTTPException(404, "the object mask is written when the job's preprocessing is done."
                            if job.layout.split else
                            "this job is sketched as one region: it has no object mask.")
    return FileResponse(path, media_type="image/png")


@router.get("/v1/jobs/{job_id}/manifest.json")
def manifest_file(job: JobDep, store: StoreDep):
    manifest = store.results(job.id).read_manifest()
    if manifest is None:
        raise HTTPException(404, "no cell is finished yet.")
    return manifest.to_dict()


def _thumbnail(svg: Path, size: int) -> bytes:
    # A part whose strokes were all cut away renders as blank paper of the cell's size.
    merged = StrokeSet.merged(list(read_svg(svg).values()), *document_size(svg))
    buffer = io.BytesIO()
    merged.render(max_side=size).save(buffer, format="PNG")
    return buffer.getvalue()
