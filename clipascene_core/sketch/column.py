"""One column of the matrix as a chain: its fidelity sketch, then its simplicity rows.

A column (a region and a CLIP layer) trains its fidelity sketch once per seed; when every
seed's run is in, the best one is row 0 and starts the column's simplicity rows
(`simplicity.SimplicityColumn`), which settle row by row. Every step of the chain is a typed
result the engine settles (`engine.TaskResult.settle`): nothing dispatches on types.

A chain can also continue from a checkpoint (`ChainPoint`, scene/resume.py): after its
fidelity sketch or after one of its rows, it trains the rows that follow from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config import SketchConfig
from .engine import Settled, Task
from .fidelity import FidelityCell, FidelityResult, FidelityTask, by_layer
from .simplicity import ChainPoint, RowStart, SimplicityColumn


@dataclass
class FidelitySketch:
    """Row 0 of a column: the best of its seeds' fidelity runs (a `engine.CellSketch`)."""

    best: FidelityResult
    tried: list[FidelityResult]
    row: int = 0
    #: Where row 1 starts (None when the column has no simplicity rows).
    next_start: RowStart | None = None

    def chain_point(self, draws: int) -> ChainPoint:
        """The column's checkpoint after its fidelity sketch (see `ChainPoint`)."""
        return ChainPoint(0, draws, self.best, self.next_start)

    @property
    def region(self) -> str:
        return self.best.cell.region

    @property
    def layer(self) -> int:
        return self.best.cell.layer

    @property
    def points(self) -> np.ndarray:
        return self.best.points

    @property
    def keep(self) -> np.ndarray:
        """Strokes pushed entirely off the canvas are left out."""
        return self.best.on_canvas

    @property
    def widths(self) -> np.ndarray:
        """Every stroke at the base width, as the reference draws its fidelity sketches."""
        return np.ones(len(self.best.points))

    def details(self) -> dict:
        best = self.best
        return {
            "strokes": int(best.on_canvas.sum()),
            "dropped_off_canvas": int((~best.on_canvas).sum()), "seed": best.cell.seed,
            "iterations": best.cell.iterations, "initial_loss": best.initial_loss,
            "clip_loss": best.best_loss,
            "layer_losses": by_layer(best.best_layer_losses),
            "best_step": best.best_step,
            "eval_losses": [[step, loss] for step, loss in best.eval_losses],
            "seeds_tried": {str(item.cell.seed): item.best_loss for item in self.tried},
            "seconds": round(best.seconds, 3)}


class ColumnChain:
    """The tasks of one (region, layer) column, from its initial strokes per seed."""

    def __init__(self, region: str, layer: int, initial: dict[int, np.ndarray],
                 config: SketchConfig, device: torch.device) -> None:
        self.config = config
        self.device = device
        iterations = config.fidelity_iterations(region, layer)
        self.cells = [FidelityCell(region, layer, seed, initial[seed], iterations)
                      for seed in config.seeds]
        self.tried: list[FidelityResult] = []
        #: The checkpoint the chain continues from (`resume_from`), or None: from its start.
        self.point: ChainPoint | None = None

    def resume_from(self, point: ChainPoint) -> None:
        """Continue from `point` instead of the start: the rows after its row, each trained
        as it is from there in an uninterrupted run (every row run seeds its own draws)."""
        self.point = point

    @property
    def finished(self) -> bool:
        return self.point is not None and self.point.start is None

    def tasks(self) -> list[Task]:
        """The fidelity runs, one per seed (or a resumed chain's next row); the rows follow
        as results settle."""
        point = self.point
        if point is None:
            return [FidelityTask(cell, self.config, self.device, owner=self) for cell in self.cells]
        if point.start is None:
            return []
        tasks = SimplicityColumn(point.fidelity, self.config, self.device).row_tasks(
            point.row + 1, point.start)
        for task in tasks:
            task.wake = point.draws
        return tasks

    @property
    def steps(self) -> int:
        """Training steps of the chain still to train (fidelity runs and every row's runs)."""
        config = self.config
        rows_done = -1 if self.point is None else self.point.row
        rows = (config.simplicity_rows - max(rows_done, 0)) * config.simplicity_steps
        fidelity = sum(cell.iterations for cell in self.cells) if self.point is None else 0
        return fidelity + len(config.seeds) * rows

    def fidelity_done(self, result: FidelityResult) -> Settled:
        self.tried.append(result)
        if len(self.tried) < len(self.cells):
            return Settled()
        best = min(self.tried, key=lambda item: item.best_loss)
        rows = SimplicityColumn(best, self.config, self.device)
        start = SimplicityColumn.first_start(best) if rows.ratios else None
        return Settled([FidelitySketch(best, list(self.tried), next_start=start)],
                       [] if start is None else rows.row_tasks(1, start))
