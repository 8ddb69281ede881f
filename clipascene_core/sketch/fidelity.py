"""The fidelity stage: row 0 of every matrix column.

Each cell (a region's target, a CLIP layer, a seed) owns its MLP_loc and its Adam optimiser
and runs in the shared batch of `engine.Engine`.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from ..config import SketchConfig
from ..models.clip import ClipEncoder
from .engine import Engine, LayerLosses, Progress, Settled, Task, TaskResult, strokes_on_canvas
from .losses import gradnorm_factors, set_gradients
from .mlps import LocationMLP
from .targets import TargetBank

logger = logging.getLogger(__name__)


@dataclass
class FidelityCell:
    """One fidelity sketch to train.

    region: "scene" (whole image), "background" or "object" (foreground re-framed).
    initial_points: (N, 4, 2) canvas pixels from the saliency-guided initialisation.
    """

    region: str
    layer: int
    seed: int
    initial_points: np.ndarray
    iterations: int

    @property
    def key(self) -> str:
        return f"{self.region}-L{self.layer}-s{self.seed}"


@dataclass
class FidelityResult(TaskResult):
    """The best checkpoint of one cell.

    points: (N, 4, 2) canvas pixels at the best clean loss; on_canvas: (N,) strokes that touch
    the canvas (strokes pushed entirely off it are dropped from outputs).
    owner: what receives the result (column.ColumnChain, which picks the best seed and starts
    the simplicity rows); None for a cell trained on its own (`train_fidelity`).
    """

    cell: FidelityCell
    points: np.ndarray
    on_canvas: np.ndarray
    initial_loss: float
    best_loss: float
    best_step: int
    #: The raw clean loss of each of the cell's layers at the best checkpoint.
    best_layer_losses: dict[int, float]
    eval_losses: list[tuple[int, float]]
    seconds: float
    mlp_state: dict = field(repr=False, default_factory=dict)
    optimizer_state: dict = field(repr=False, default_factory=dict)
    owner: FidelityOwner | None = field(repr=False, default=None)

    def settle(self) -> Settled:
        return self.owner.fidelity_done(self) if self.owner is not None else Settled()


class FidelityOwner(Protocol):
    def fidelity_done(self, result: FidelityResult) -> Settled: ...


@dataclass
class Checkpoint:
    """The best clean loss of a fidelity run so far, with what drew it: the points (canvas px,
    detached), the raw loss of each layer, and MLP_loc's and Adam's states at that step."""

    loss: float = float("inf")
    step: int = 0
    layer_losses: dict[int, float] = field(default_factory=dict)
    points: np.ndarray | None = None
    mlp: dict = field(repr=False, default_factory=dict)
    optimizer: dict = field(repr=False, default_factory=dict)


def loss_terms(config: SketchConfig, region: str, layer: int) -> list[tuple[int, float]]:
    """(layer, coefficient) of each CLIP loss term of a cell, the column's own layer first.

    As the reference sets its layer weights (scripts/generate_fidelity_levels.py): 1 on the
    column's layer, and for objects 0.5 on the layer-4 anchor, which the column's weight
    overrides when the column is layer 4 itself (a single term, coefficient 1).
    """
    terms = [(layer, config.layer_weight)]
    if region == "object" and layer != config.anchor_layer:
        terms.append((config.anchor_layer, config.anchor_weight))
    return terms


def weighted_clean_loss(terms: list[tuple[int, float]], losses: LayerLosses) -> float:
    """The clean pair's loss of a cell, sum of coefficient x layer loss (no gradnorm weights:
    they change every step, so checkpoints compare on fixed coefficients)."""
    return sum(weight * float(losses[layer][1]) for layer, weight in terms)


def clean_layer_losses(terms: list[tuple[int, float]], losses: LayerLosses) -> dict[int, float]:
    """The clean pair's raw loss per layer of a cell, {layer: L_layer}."""
    return {layer: float(losses[layer][1]) for layer, _ in terms}


def by_layer(layer_losses: dict[int, float]) -> dict[str, float]:
    """{layer: loss} as the manifest writes it, {"layer": loss} (JSON keys are text)."""
    return {str(layer): value for layer, value in layer_losses.items()}


class FidelityTask(Task):
    """Trains one fidelity cell: MLP_loc with Adam, best clean loss kept from `eval_start`."""

    stage = "fidelity"

    def __init__(self, cell: FidelityCell, config: SketchConfig, device: torch.device,
                 owner: FidelityOwner | None = None) -> None:
        self.cell = cell
        self.owner = owner
        self.config = config
        self.target = cell.region
        self.column = cell.layer
        self.terms = loss_terms(config, cell.region, cell.layer)
        self.layers = [layer for layer, _ in self.terms]
        self.total_steps = cell.iterations
        self.steps_done = 0
        self.done = False
        self.mlp = LocationMLP(
            torch.from_numpy(cell.initial_points).float(), config.canvas_size,
            config.location_hidden, config.location_residual_scale, seed=cell.seed,
        ).to(device)
        self.optimizer = torch.optim.Adam(self.mlp.parameters(), lr=config.lr_location)
        self.initial_loss = float("nan")
        self.best = Checkpoint()
        self.history: list[tuple[int, float]] = []
        self.started = time.perf_counter()
        self._points: torch.Tensor | None = None

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.mlp.parameters())

    def sketch(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._points = self.mlp()
        widths = torch.full(self._points.shape[:1], self.config.stroke_width,
                            device=self._points.device)
        return self._points, widths

    def loss_terms(self, losses: LayerLosses) -> list[torch.Tensor]:
        # Raw per-layer losses: gradnorm measures their gradients before the coefficients
        # apply (reference models/loss.py), so the 0.5 anchor keeps its weight.
        return [losses[layer][0] for layer in self.layers]

    def apply(self, gradients: list[list[torch.Tensor | None]],
              losses: LayerLosses) -> list[TaskResult]:
        step = self.steps_done + 1
        clean = weighted_clean_loss(self.terms, losses)
        if step == 1:
            self.initial_loss = clean
        # The clean loss belongs to the parameters that drew this step's sketch, before the
        # update: that is the checkpoint to keep.
        if self.config.is_eval_step(step, self.total_steps):
            self.history.append((step, clean))
            if clean < self.best.loss:
                self.best = Checkpoint(
                    clean, step, clean_layer_losses(self.terms, losses),
                    self._points.detach().cpu().double().numpy(),
                    copy.deepcopy(self.mlp.state_dict()), copy.deepcopy(self.optimizer.state_dict()))
        self._set_gradients(gradients)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps_done = step
        if step < self.total_steps:
            return []
        self.done = True
        return [self._result()]

    def _set_gradients(self, gradients: list[list[torch.Tensor | None]]) -> None:
        """sum_k c_k w_k grad L_k, gradnorm's w_k measured on MLP_loc (a single term: w = 1)."""
        factors = gradnorm_factors(gradients, [weight for _, weight in self.terms], slice(None))
        set_gradients(self.parameters(), gradients, factors)

    def _result(self) -> FidelityResult:
        best = self.best
        on_canvas = strokes_on_canvas(torch.from_numpy(best.points), self.config.stroke_width,
                                      self.config.canvas_size)
        return FidelityResult(
            cell=self.cell, points=best.points, on_canvas=on_canvas.numpy(),
            initial_loss=self.initial_loss, best_loss=best.loss, best_step=best.step,
            best_layer_losses=best.layer_losses, eval_losses=self.history,
            seconds=time.perf_counter() - self.started, mlp_state=best.mlp,
            optimizer_state=best.optimizer, owner=self.owner,
        )


def train_fidelity(
    encoder: ClipEncoder,
    bank: TargetBank,
    cells: Sequence[FidelityCell],
    config: SketchConfig,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[FidelityResult]:
    """Train fidelity cells together; results in the order of `cells`."""
    tasks = [FidelityTask(cell, config, bank.device) for cell in cells]
    results = Engine.for_config(encoder, bank, config).run(
        tasks, on_progress=on_progress, should_stop=should_stop)
    by_cell = {id(result.cell): result for result in results}
    return [by_cell[id(cell)] for cell in cells]
