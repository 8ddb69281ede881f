"""One column of the matrix as a chain: its fidelity sketch, then its simplicity rows.

A column (a region and a CLIP layer) trains its fidelity sketch once per seed; when every
seed's run is in, the best one is row 0 and starts the column's simplicity rows
(`simplicity.SimplicityColumn`), which settle row by row. Every step of the chain is a typed
result the engine settles (`engine.TaskResult.settle`): nothing dispatches on types.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config import SketchConfig
from .engine import Settled
from .fidelity import FidelityCell, FidelityResult, FidelityTask, by_layer
from .simplicity import SimplicityColumn


@dataclass
class FidelitySketch:
    """Row 0 of a column: the best of its seeds' fidelity runs (a `engine.CellSketch`)."""

    best: FidelityResult
    tried: list[FidelityResult]
    row: int = 0

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

    def tasks(self) -> list[FidelityTask]:
        """The fidelity runs, one per seed; the rows follow as results settle."""
        return [FidelityTask(cell, self.config, self.device, owner=self) for cell in self.cells]

    @property
    def steps(self) -> int:
        """Training steps of the whole chain (fidelity runs and every row's runs)."""
        config = self.config
        rows = config.simplicity_rows * config.simplicity_steps
        return sum(cell.iterations for cell in self.cells) + len(config.seeds) * rows

    def fidelity_done(self, result: FidelityResult) -> Settled:
        self.tried.append(result)
        if len(self.tried) < len(self.cells):
            return Settled()
        best = min(self.tried, key=lambda item: item.best_loss)
        rows = SimplicityColumn(best, self.config, self.device)
        return Settled([FidelitySketch(best, list(self.tried))], rows.start())
