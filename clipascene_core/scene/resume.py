"""Resuming an interrupted matrix run (cancelled, stopped, crashed) where it stopped.

A run into a folder that already holds finished cells of the same matrix (same parameters,
model and versions, by its manifest) keeps them and does not train their columns again: a
column whose every row is finished is left out of the plan. The other columns train as an
uninterrupted run would train them, so their cells come out the same:

- every column has its own seeded generators (strokes, networks, the simplicity draws), and
- the one generator columns share, the augmentation draws (`targets.TargetBank`), is put
  where the uninterrupted run had it: under the "column" schedule (the CPU's: one column
  after the other) its state is saved in the folder when a column is finished
  (`resume/after_L{layer}.generator`) and restored after the finished columns; under
  "lockstep" every step draws once whichever columns train, so it starts from its seed.

A column that was interrupted midway is trained again from its start (its finished cells
stay listed, and are written again, the same, when it gets there). Drafts (`progressive`)
never count as finished: a resumed run draws them again for the columns it trains.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from ..io.records import CellEvent, CellRecord, Manifest, MatrixEvent, OutputFolder
from ..sketch.engine import Engine
from .matrix import MatrixPlan, plan_matrix, run_plan

logger = logging.getLogger(__name__)

CHECKPOINTS = "resume"


def _generator_file(folder: OutputFolder, layer: int) -> Path:
    return folder.path(CHECKPOINTS) / f"after_L{int(layer)}.generator"


#: What of the manifest's `model` decides the strokes (not, e.g., how a choice was measured).
MODEL_KEYS = ("clip", "weights", "meaningful", "device", "precision")


def _same_matrix(previous: Manifest, plan: MatrixPlan) -> bool:
    current = plan.manifest
    model = [{key: manifest.model.get(key) for key in MODEL_KEYS} for manifest in (previous, current)]
    return (previous.parameters == current.parameters and previous.versions == current.versions
            and model[0] == model[1] and previous.layers == current.layers
            and previous.rows == current.rows and previous.regions == current.regions)


def _schedule(plan: MatrixPlan) -> str:
    return Engine.for_config(plan.encoder, plan.bank, plan.config).schedule


def resume(plan: MatrixPlan, previous: Manifest | None) -> list[int]:
    """Leave the columns `previous` finished out of `plan`, keep all its cells in the plan's
    manifest, and set the augmentation generator as the uninterrupted run had it. Returns
    the layers left out (none when `previous` is another matrix's, or has no whole column)."""
    final = [cell for cell in previous.cells if not cell.draft] if previous is not None else []
    if not final or not _same_matrix(previous, plan):
        return []
    rows = plan.manifest.rows
    finished = {layer for layer in plan.config.layers
                if {cell.row for cell in final if cell.layer == layer} >= set(range(rows))}
    state = None
    if _schedule(plan) == "column":
        # Columns run in order: only a leading run of finished columns can be skipped, up to
        # the last one whose generator state was saved.
        skipped: list[int] = []
        for layer in plan.config.layers:
            path = _generator_file(plan.writer.folder, layer)
            if layer not in finished or not path.is_file():
                break
            skipped.append(layer)
            state = path.read_bytes()
    else:
        skipped = [layer for layer in plan.config.layers if layer in finished]
    if state is not None:
        plan.bank.generator.set_state(torch.frombuffer(bytearray(state), dtype=torch.uint8))
    plan.columns = [column for column in plan.columns if column.cells[0].layer not in skipped]
    for cell in final:  # drafts are drawn again (progressive.py) for the columns still to train
        plan.writer.state.cells[(cell.row, cell.layer)] = cell
    plan.manifest.cells = [plan.writer.state.cells[key] for key in sorted(plan.writer.state.cells)]
    if skipped:
        logger.info("resuming: the columns of layers %s are finished", skipped)
    return skipped


def _checkpoint(plan: MatrixPlan, cell: CellRecord) -> None:
    """When final `cell` finishes its column, save the augmentation generator's state."""
    cells = plan.writer.state.cells
    if not cell.draft and all((row, cell.layer) in cells and not cells[(row, cell.layer)].draft
                              for row in range(plan.manifest.rows)):
        path = _generator_file(plan.writer.folder, cell.layer)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(plan.bank.generator.get_state().numpy().tobytes())


def sketch_resumable(image, out_dir: str | Path, config, encoder, *,
                     on_event: Callable[[MatrixEvent], None] | None = None,
                     should_stop: Callable[[], bool] | None = None, **planning) -> Manifest:
    """`matrix.sketch_matrix`, resuming what an earlier run of the same matrix into `out_dir`
    finished (see the module docstring)."""
    previous = OutputFolder(out_dir).read_manifest()
    planned: list[MatrixPlan] = []

    def forward(event: MatrixEvent) -> None:
        if isinstance(event, CellEvent) and planned:
            _checkpoint(planned[0], event.cell)
        if on_event is not None:
            on_event(event)

    plan = plan_matrix(image, out_dir, config, encoder, on_event=forward, **planning)
    planned.append(plan)
    resume(plan, previous)
    return run_plan(plan, on_event=forward, should_stop=should_stop)
