"""The simplicity axis: rows 1..R of a matrix column, as one chain of levels.

MLP_simp gives each stroke a keep probability; a Gumbel-softmax soft mask scales the stroke
widths (removal = width 0). The ratio loss ties the sparsity to the CLIP loss with a target
ratio that halves down the column, so each level keeps fewer strokes. Both MLPs train; each
level warm-starts from the chosen checkpoint of the level before.

Better than the reference: a level's strokes are chosen deterministically (the noiseless
soft mask above the reference's 0.7 threshold) and only among the strokes the level above
kept, so rows are nested and the stroke count never grows down a column.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .config import SketchConfig
from .engine import LayerLosses, Task, strokes_on_canvas
from .fidelity import FidelityResult, loss_terms, weighted_clean_loss
from .losses import gradnorm_weights, mean_abs_gradient
from .networks import LocationMLP, SimplifyMLP

logger = logging.getLogger(__name__)


def ratio_schedule(first_ratio: float, delta: float, levels: int) -> list[float]:
    """r_i = r_1 * 2^(-i * delta), i = 0..levels-1."""
    return [first_ratio * 2.0 ** (-index * delta) for index in range(levels)]


def _keep_logits(probabilities: torch.Tensor) -> torch.Tensor:
    """(..., 2) logits [log p, log(1 - p)] of the keep/drop choice."""
    return torch.stack([probabilities.clamp_min(1e-12).log(),
                        (1 - probabilities).clamp_min(1e-12).log()], -1)


def keep_threshold_mask(probabilities: torch.Tensor, temperature: float, threshold: float) -> torch.Tensor:
    """Deterministic keep decision: the noiseless Gumbel-softmax 'keep' value above threshold.

    softmax([log p, log(1 - p)] / tau)[0] > threshold, the reference's rule without its noise.
    """
    return torch.softmax(_keep_logits(probabilities) / temperature, -1)[..., 0] > threshold


def gumbel_keep(probabilities: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """Soft 'keep' sample of a two-way Gumbel-softmax per stroke: (N,) in (0, 1), differentiable."""
    logits = _keep_logits(probabilities)
    uniform = torch.rand(logits.shape, generator=generator).to(logits.device)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1 - 1e-10)))
    return torch.softmax((logits + gumbel) / temperature, -1)[..., 0]


def zscore_choice(rows: list[list[float]]) -> int:
    """Index of the candidate with the lowest sum of per-column z-scores (lower is better)."""
    values = np.asarray(rows, dtype=np.float64)
    spread = values.std(axis=0)
    spread[spread == 0] = 1.0
    scores = ((values - values.mean(axis=0)) / spread).sum(axis=1)
    return int(np.argmin(scores))


@dataclass
class SimplicityLevel:
    """One simplicity row of a column.

    row: 1..R in the matrix; points: (N, 4, 2) canvas px of ALL strokes at the chosen step;
    keep: (N,) bool, the strokes this row shows (a subset of the row above's).
    """

    region: str
    layer: int
    row: int
    ratio: float
    points: np.ndarray
    keep: np.ndarray
    clip_loss: float
    sparsity: float
    chosen_step: int
    seconds: float
    eval_losses: list[dict] = field(default_factory=list)

    @property
    def strokes(self) -> int:
        return int(self.keep.sum())


class SimplicityChain(Task):
    """All simplicity levels of one (region, layer) column, from its fidelity result."""

    stage = "simplicity"

    def __init__(self, fidelity: FidelityResult, config: SketchConfig, device: torch.device) -> None:
        cell = fidelity.cell
        self.config = config
        self.region = cell.region
        self.layer = cell.layer
        self.target = cell.region
        self.terms = loss_terms(config, cell.region, cell.layer)
        self.layers = [layer for layer, _ in self.terms]
        levels = config.simplicity_rows
        self.ratios = ratio_schedule(1.0 / max(fidelity.best_loss, 1e-12),
                                     config.simplicity_delta(cell.region, cell.layer), levels)
        self.steps_per_level = config.simplicity_steps
        self.total_steps = levels * self.steps_per_level
        self.steps_done = 0
        self.done = levels == 0
        count = fidelity.points.shape[0]
        self.location = LocationMLP(
            torch.from_numpy(cell.initial_points).float(), config.canvas_size,
            config.location_hidden, config.location_residual_scale, seed=cell.seed,
        ).to(device)
        self.location.load_state_dict(fidelity.mlp_state)
        self.location_optimizer = torch.optim.Adam(self.location.parameters(), lr=config.lr_location)
        if fidelity.optimizer_state:
            # Optimizer.load_state_dict keeps the given tensors and updates them in place: a
            # copy leaves the fidelity result intact for anyone else who reads it.
            self.location_optimizer.load_state_dict(copy.deepcopy(fidelity.optimizer_state))
        self.simplify = SimplifyMLP(count, config.simplify_hidden, config.simplify_input,
                                    seed=cell.seed).to(device)
        self.simplify_optimizer = torch.optim.Adam(self.simplify.parameters(), lr=config.lr_simplify)
        self.generator = torch.Generator().manual_seed(
            _chain_seed(cell.seed, cell.region, cell.layer))
        # Strokes still in play: those on the canvas in the fidelity sketch, and afterwards
        # those the previous level kept.
        self.allowed = torch.from_numpy(fidelity.on_canvas.copy()).to(device)
        self.level = 0
        self.level_step = 0
        self.candidates: list[dict] = []
        self.level_started = time.perf_counter()
        self._eval_due = False
        self._current: dict = {}

    # --- the task interface ----------------------------------------------------------------

    def parameters(self) -> list[nn.Parameter]:
        return list(self.location.parameters()) + list(self.simplify.parameters())

    def sketch(self) -> tuple[torch.Tensor, torch.Tensor]:
        points = self.location()
        probabilities = self.simplify()
        inside = strokes_on_canvas(points.detach(), self.config.stroke_width,
                                   self.config.canvas_size)
        soft = gumbel_keep(probabilities, self.config.gumbel_temperature, self.generator)
        mask = soft * (inside & self.allowed).to(soft.dtype)
        # Sparsity counts against all strokes on the canvas, not only those still in play,
        # so the ratio schedule keeps meaning "a fraction of the full sketch" down the column.
        self._current = {"mask": mask, "inside_count": float(inside.sum().clamp_min(1))}
        return points, self.config.stroke_width * mask

    def loss_terms(self, losses: LayerLosses) -> list[torch.Tensor]:
        clip = sum(weight * losses[layer][0] for layer, weight in self.terms)
        sparsity = self._current["mask"].sum() / self._current["inside_count"]
        self._current.update(clip=float(clip.detach()), sparsity=float(sparsity.detach()))
        return [clip, sparsity]

    def apply(self, gradients: list[list[torch.Tensor | None]], losses: LayerLosses) -> list:
        clip_gradients, sparsity_gradients = gradients
        # The total loss is gradnorm(w1 * clip + w2 * sparsity) + (sparsity - r * clip)^2; its
        # gradient is a combination of the two terms' gradients, so no extra CLIP backward.
        simplify_count = len(list(self.simplify.parameters()))
        weights = gradnorm_weights([
            mean_abs_gradient(clip_gradients[-simplify_count:]),
            mean_abs_gradient(sparsity_gradients[-simplify_count:]),
        ])
        ratio = self.ratios[self.level]
        excess = self._current["sparsity"] - ratio * self._current["clip"]
        clip_factor = weights[0] - 2 * excess * ratio
        sparsity_factor = weights[1] + 2 * excess
        for parameter, clip_grad, sparsity_grad in zip(
            self.parameters(), clip_gradients, sparsity_gradients, strict=True
        ):
            parts = []
            if clip_grad is not None:
                parts.append(clip_factor * clip_grad)
            if sparsity_grad is not None:
                parts.append(sparsity_factor * sparsity_grad)
            parameter.grad = sum(parts) if parts else None
        self.location_optimizer.step()
        self.simplify_optimizer.step()
        self.location_optimizer.zero_grad(set_to_none=True)
        self.simplify_optimizer.zero_grad(set_to_none=True)
        self.steps_done += 1
        self.level_step += 1
        self._eval_due = self.level_step in self.config.simplicity_eval_steps()
        return []

    def pending_eval(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self._eval_due:
            return None
        with torch.no_grad():
            points = self.location()
            inside = strokes_on_canvas(points, self.config.stroke_width, self.config.canvas_size)
            keep = keep_threshold_mask(self.simplify(), self.config.gumbel_temperature,
                                       self.config.keep_threshold) & inside & self.allowed
            if not keep.any():
                # A sketch keeps at least one stroke: the most probable of those in play.
                candidates = inside & self.allowed if (inside & self.allowed).any() else self.allowed
                scores = torch.where(candidates, self.simplify(), torch.full_like(self.simplify(), -1))
                keep = torch.zeros_like(keep)
                keep[int(scores.argmax())] = True
        self._pending = {"points": points, "keep": keep,
                         "inside_count": max(float(inside.sum()), 1.0)}
        return points, self.config.stroke_width * keep.to(points.dtype)

    def record_eval(self, losses: LayerLosses) -> list:
        self._eval_due = False
        keep = self._pending["keep"]
        clip = weighted_clean_loss(self.terms, losses)
        sparsity = float(keep.sum()) / self._pending["inside_count"]
        ratio = self.ratios[self.level]
        self.candidates.append({
            "step": self.level_step, "clip": clip, "sparsity": sparsity,
            "ratio_loss": (sparsity - ratio * clip) ** 2,
            "points": self._pending["points"].detach().cpu().double().numpy(),
            "keep": keep.cpu().numpy(),
            "state": self._snapshot(),
        })
        if self.level_step < self.steps_per_level:
            return []
        return [self._finish_level()]

    # --- levels ----------------------------------------------------------------------------

    def _snapshot(self) -> dict:
        return copy.deepcopy({
            "location": self.location.state_dict(),
            "simplify": self.simplify.state_dict(),
            "location_optimizer": self.location_optimizer.state_dict(),
            "simplify_optimizer": self.simplify_optimizer.state_dict(),
        })

    def _finish_level(self) -> SimplicityLevel:
        choice = zscore_choice([[c["clip"], c["sparsity"], c["ratio_loss"]] for c in self.candidates])
        chosen = self.candidates[choice]
        level = SimplicityLevel(
            region=self.region, layer=self.layer, row=self.level + 1, ratio=self.ratios[self.level],
            points=chosen["points"], keep=chosen["keep"], clip_loss=chosen["clip"],
            sparsity=chosen["sparsity"], chosen_step=chosen["step"],
            seconds=time.perf_counter() - self.level_started,
            eval_losses=[{key: c[key] for key in ("step", "clip", "sparsity", "ratio_loss")}
                         for c in self.candidates],
        )
        # The next level starts from the chosen checkpoint, among the strokes it kept.
        state = chosen["state"]
        self.location.load_state_dict(state["location"])
        self.simplify.load_state_dict(state["simplify"])
        self.location_optimizer.load_state_dict(state["location_optimizer"])
        self.simplify_optimizer.load_state_dict(state["simplify_optimizer"])
        self.allowed = torch.from_numpy(chosen["keep"]).to(self.allowed.device)
        self.level += 1
        self.level_step = 0
        self.candidates = []
        self.level_started = time.perf_counter()
        self.done = self.level >= len(self.ratios)
        logger.debug("%s L%d row %d: %d strokes", self.region, self.layer, level.row, level.strokes)
        return level


def _chain_seed(seed: int, region: str, layer: int) -> int:
    """A stable per-column seed for the Gumbel noise (not Python's salted hash)."""
    code = sum((index + 1) * ord(char) for index, char in enumerate(region))
    return (seed * 1_000_003 + code * 101 + layer) % (2**63 - 1)

