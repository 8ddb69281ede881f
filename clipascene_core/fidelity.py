"""The fidelity stage: row 0 of every matrix column, all cells trained as one batch.

Each cell (a region's target, a CLIP layer, a seed) owns its MLP_loc and its Adam optimiser;
per step the sketches of all active cells are rendered together and go through CLIP as one
batch with their augmentations. A cell's training is the same as training it alone: it has
its own parameters, optimiser and schedule, and CLIP has no interaction between images.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .augment import apply_grids
from .config import SketchConfig
from .losses import gradnorm_weights, layer_loss, mean_abs_gradient
from .models import ClipEncoder
from .networks import LocationMLP
from .render import bezier_samples, render_strokes
from .targets import TargetBank

logger = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised inside training when the caller's `should_stop` says so."""


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
class FidelityResult:
    """The best checkpoint of one cell.

    points: (N, 4, 2) canvas pixels at the best clean loss; on_canvas: (N,) strokes that touch
    the canvas (strokes pushed entirely off it are dropped from outputs).
    """

    cell: FidelityCell
    points: np.ndarray
    on_canvas: np.ndarray
    initial_loss: float
    best_loss: float
    best_step: int
    eval_losses: list[tuple[int, float]]
    seconds: float
    mlp_state: dict = field(repr=False, default_factory=dict)
    optimizer_state: dict = field(repr=False, default_factory=dict)


@dataclass
class Progress:
    """Training progress, reported after every step."""

    stage: str
    step: int
    steps_done: int
    steps_total: int
    losses: dict[str, float]
    finished: list[FidelityResult] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return self.steps_done / max(self.steps_total, 1)


def loss_terms(config: SketchConfig, region: str, layer: int) -> list[tuple[int, float]]:
    """(layer, weight) terms of a cell's CLIP loss.

    Objects keep a 0.5-weighted layer-4 anchor beside their column's layer (balanced by
    gradnorm); a column at the anchor layer itself has one term with both weights.
    """
    if region != "object":
        return [(layer, config.layer_weight)]
    if layer == config.anchor_layer:
        return [(layer, config.layer_weight + config.anchor_weight)]
    return [(layer, config.layer_weight), (config.anchor_layer, config.anchor_weight)]


def strokes_on_canvas(points: torch.Tensor, widths: torch.Tensor, size: int) -> torch.Tensor:
    """(…, N) bool: strokes with some part within half a width of the canvas (points in px)."""
    samples = bezier_samples(points, 32)
    margin = (widths / 2).unsqueeze(-1)
    inside = (
        (samples[..., 0] >= -margin) & (samples[..., 0] <= size + margin)
        & (samples[..., 1] >= -margin) & (samples[..., 1] <= size + margin)
    )
    return inside.any(-1)


def sketch_images(points: torch.Tensor, widths: torch.Tensor, size: int) -> torch.Tensor:
    """(C, N, 4, 2) canvas px and (C, N) widths -> (C, 3, size, size) sketches in [0, 1]."""
    paper = render_strokes(points, widths, size, size)
    return paper.unsqueeze(1).expand(-1, 3, -1, -1)


def cell_layer_losses(
    encoder: ClipEncoder,
    bank: TargetBank,
    sketches: torch.Tensor,
    cells: Sequence[tuple[str, Sequence[int]]],
    grids: torch.Tensor,
    augmented_targets: dict[str, dict[int, torch.Tensor]],
) -> list[dict[int, tuple[torch.Tensor, torch.Tensor]]]:
    """CLIP layer losses of C sketches against their targets, one CLIP batch for all.

    sketches: (C, 3, S, S); cells: (target name, layers) per sketch; grids: (A, S, S, 2), the
    step's augmentations shared by sketches and targets. Returns per cell {layer: (loss over
    the clean + A augmented pairs, loss of the clean pair alone (detached))}.
    """
    count = sketches.shape[0]
    augmentations = grids.shape[0]
    batch = [sketches]
    if augmentations:
        batch.append(
            apply_grids(sketches.repeat_interleave(augmentations, 0), grids.repeat(count, 1, 1, 1))
        )
    layers = sorted({layer for _, cell_layers in cells for layer in cell_layers})
    features = encoder.layer_features(torch.cat(batch), layers)
    results = []
    for index, (target, cell_layers) in enumerate(cells):
        losses = {}
        rows = [index] + list(range(count + index * augmentations,
                                    count + (index + 1) * augmentations))
        for layer in cell_layers:
            sketch = features[layer][rows]
            goal = torch.cat([bank.clean[target][layer], augmented_targets[target][layer]])
            clean = layer_loss(sketch[:1], goal[:1]).detach()
            losses[layer] = (layer_loss(sketch, goal), clean)
        results.append(losses)
    return results


class FidelityTrainer:
    """Trains a list of fidelity cells together; see the module docstring."""

    def __init__(
        self,
        encoder: ClipEncoder,
        bank: TargetBank,
        cells: Sequence[FidelityCell],
        config: SketchConfig,
    ) -> None:
        self.encoder = encoder
        self.bank = bank
        self.cells = list(cells)
        self.config = config
        self.device = bank.device
        size = config.canvas_size
        self.mlps = [
            LocationMLP(
                torch.from_numpy(cell.initial_points).float(), size, config.location_hidden,
                config.location_residual_scale, seed=cell.seed,
            ).to(self.device)
            for cell in self.cells
        ]
        self.optimizers = [
            torch.optim.Adam(mlp.parameters(), lr=config.lr_location) for mlp in self.mlps
        ]
        self.terms = [loss_terms(config, cell.region, cell.layer) for cell in self.cells]

    def run(
        self,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[FidelityResult]:
        config = self.config
        size = config.canvas_size
        totals = [cell.iterations for cell in self.cells]
        steps_total = sum(totals)
        best: list[dict] = [
            {"loss": float("inf"), "step": 0, "points": None, "mlp": None, "optim": None}
            for _ in self.cells
        ]
        history: list[list[tuple[int, float]]] = [[] for _ in self.cells]
        self.initial_losses: list[float] = [float("nan")] * len(self.cells)
        started = time.perf_counter()
        finished_at = [0.0] * len(self.cells)
        results: list[FidelityResult | None] = [None] * len(self.cells)
        for step in range(1, max(totals) + 1):
            if should_stop is not None and should_stop():
                raise Cancelled()
            active = [index for index, total in enumerate(totals) if step <= total]
            points = torch.stack([self.mlps[index]() for index in active])
            widths = torch.full(points.shape[:2], config.stroke_width, device=self.device)
            sketches = sketch_images(points, widths, size)
            grids, augmented = self.bank.draw()
            losses = cell_layer_losses(
                self.encoder, self.bank, sketches,
                [(self.cells[index].region, [layer for layer, _ in self.terms[index]])
                 for index in active],
                grids, augmented,
            )
            self._backward(active, losses)
            step_losses = {}
            newly_finished = []
            for position, index in enumerate(active):
                clean = sum(
                    weight * float(losses[position][layer][1]) for layer, weight in self.terms[index]
                )
                step_losses[self.cells[index].key] = clean
                if step == 1:
                    self.initial_losses[index] = clean
                if config.is_eval_step(step, totals[index]):
                    history[index].append((step, clean))
                    if clean < best[index]["loss"]:
                        best[index] = {
                            "loss": clean, "step": step,
                            "points": points[position].detach().cpu().double().numpy(),
                            "mlp": copy.deepcopy(self.mlps[index].state_dict()),
                            "optim": copy.deepcopy(self.optimizers[index].state_dict()),
                        }
                self.optimizers[index].step()
                if step == totals[index]:
                    finished_at[index] = time.perf_counter() - started
                    results[index] = self._result(index, best[index], history[index],
                                                  finished_at[index])
                    newly_finished.append(results[index])
            if on_progress is not None:
                done = sum(min(step, total) for total in totals)
                on_progress(Progress("fidelity", step, done, steps_total, step_losses,
                                     newly_finished))
        return [result for result in results if result is not None]

    def _backward(self, active: list[int], losses: list[dict]) -> None:
        """Set the gradients of every active cell's MLP; gradnorm where a cell has 2+ terms."""
        for index in active:
            self.optimizers[index].zero_grad(set_to_none=True)
        term_count = max(len(self.terms[index]) for index in active)
        if term_count == 1:
            total = sum(
                weight * losses[position][layer][0]
                for position, index in enumerate(active)
                for layer, weight in self.terms[index]
            )
            total.backward()
            return
        # Gradnorm needs each term's gradient on its own: one backward per term position k
        # (summed over cells, whose parameters are disjoint), then a weighted combination.
        per_term: list[dict[int, list[torch.Tensor | None]]] = []
        for k in range(term_count):
            members = [(position, index) for position, index in enumerate(active)
                       if len(self.terms[index]) > k]
            total = sum(
                self.terms[index][k][1] * losses[position][self.terms[index][k][0]][0]
                for position, index in members
            )
            parameters = [list(self.mlps[index].parameters()) for _, index in members]
            flat = [parameter for group in parameters for parameter in group]
            gradients = torch.autograd.grad(
                total, flat, retain_graph=k < term_count - 1, allow_unused=True
            )
            grouped, offset = {}, 0
            for (_, index), group in zip(members, parameters, strict=True):
                grouped[index] = list(gradients[offset : offset + len(group)])
                offset += len(group)
            per_term.append(grouped)
        for index in active:
            terms = [grads[index] for grads in per_term if index in grads]
            weights = gradnorm_weights([mean_abs_gradient(grads) for grads in terms])
            for parameter_index, parameter in enumerate(self.mlps[index].parameters()):
                combined = None
                for weight, grads in zip(weights, terms, strict=True):
                    gradient = grads[parameter_index]
                    if gradient is not None:
                        scaled = weight * gradient
                        combined = scaled if combined is None else combined + scaled
                parameter.grad = combined

    def _result(self, index: int, best: dict, history: list, seconds: float) -> FidelityResult:
        cell = self.cells[index]
        points = best["points"]
        widths = torch.full(points.shape[:1], self.config.stroke_width, dtype=torch.float64)
        on_canvas = strokes_on_canvas(torch.from_numpy(points), widths, self.config.canvas_size)
        return FidelityResult(
            cell=cell, points=points, on_canvas=on_canvas.numpy(),
            initial_loss=self.initial_losses[index], best_loss=best["loss"],
            best_step=best["step"], eval_losses=history, seconds=seconds,
            mlp_state=best["mlp"], optimizer_state=best["optim"],
        )
