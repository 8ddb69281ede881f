"""The simplicity axis: rows 1..R of a matrix column, as one chain of levels.

MLP_simp gives each stroke a keep probability; a Gumbel-softmax soft mask scales the stroke
widths (removal = width 0). The ratio loss ties the sparsity to the CLIP loss with a target
ratio that halves down the column, so each level keeps fewer strokes. Both MLPs train; each
level warm-starts from the chosen checkpoint of the level before.

Each row is trained once per seed (the `paper` preset: seeds 0 and 1000, as the reference),
every run from the chosen checkpoint of the row above; the row keeps the checkpoint with the
lowest sum of z-scores over all runs' evaluations.

Better than the reference: a row's strokes are chosen deterministically and only among the
strokes the row above kept, so rows are nested and the stroke count never grows down a
column. The count is the reference's expected count (its random rule keeps stroke i when a
fresh Gumbel-softmax sample exceeds 0.7), the strokes are the most probable ones.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..config import SketchConfig
from .engine import LayerLosses, Settled, Task, TaskResult, strokes_on_canvas
from .fidelity import (
    FidelityResult,
    by_layer,
    clean_layer_losses,
    loss_terms,
    weighted_clean_loss,
)
from .keep import choose_kept, gumbel_keep, kept_widths
from .losses import gradnorm_factors, set_gradients
from .mlps import LocationMLP, SimplifyMLP

logger = logging.getLogger(__name__)


def ratio_schedule(first_ratio: float, delta: float, levels: int) -> list[float]:
    """r_i = r_1 * 2^(-i * delta), i = 0..levels-1."""
    return [first_ratio * 2.0 ** (-index * delta) for index in range(levels)]


def zscore_choice(rows: list[list[float]]) -> int:
    """Index of the candidate with the lowest sum of per-column z-scores (lower is better).

    A column with no spread adds nothing (the reference would divide by zero there).
    """
    values = np.asarray(rows, dtype=np.float64)
    spread = values.std(axis=0)
    spread[spread == 0] = 1.0
    scores = ((values - values.mean(axis=0)) / spread).sum(axis=1)
    return int(np.argmin(scores))


@dataclass
class SimplicityLevel:
    """One simplicity row of a column, as chosen among all its runs' evaluations.

    row: 1..R in the matrix; points: (N, 4, 2) canvas px of ALL strokes at the chosen step;
    keep: (N,) bool, the strokes this row shows (a subset of the row above's);
    widths: (N,) each kept stroke's width as a fraction of the base width, its keep sample
    (`kept_widths`; 0 for the others); probabilities: (N,) the keep probabilities at the
    chosen step and noise: (N,) the logistic noise each kept stroke's sample was drawn with;
    clip_loss: sum of coefficient x clean layer loss; layer_losses: the raw clean losses;
    expected_strokes: the reference's expected count that `keep` follows.
    """

    region: str
    layer: int
    row: int
    ratio: float
    points: np.ndarray
    keep: np.ndarray
    widths: np.ndarray
    probabilities: np.ndarray
    noise: np.ndarray
    clip_loss: float
    layer_losses: dict[int, float]
    sparsity: float
    expected_strokes: float
    probability_sum: float
    seed: int
    chosen_step: int
    seconds: float
    eval_losses: list[dict] = field(default_factory=list)
    #: The column it belongs to, and where its next row starts (None after the last row):
    #: what a checkpoint of the column after this row holds (scene/resume.py).
    column: SimplicityColumn | None = field(default=None, repr=False, compare=False)
    next_start: RowStart | None = field(default=None, repr=False, compare=False)

    @property
    def strokes(self) -> int:
        return int(self.keep.sum())

    def chain_point(self, draws: int) -> ChainPoint:
        """The column's checkpoint after this row (see `ChainPoint`)."""
        return ChainPoint(self.row, draws, self.column.fidelity, self.next_start)

    def details(self) -> dict:
        """How the row was made, for the manifest."""
        return {"strokes": self.strokes, "expected_strokes": round(self.expected_strokes, 3),
                "probability_sum": round(self.probability_sum, 3), "ratio": self.ratio,
                "clip_loss": self.clip_loss,
                "layer_losses": by_layer(self.layer_losses),
                "sparsity": self.sparsity, "seed": self.seed, "chosen_step": self.chosen_step,
                "kept": self.kept(),
                "eval_losses": self.eval_losses, "seconds": round(self.seconds, 3)}

    def kept(self) -> dict[str, dict[str, float]]:
        """Per kept stroke (by its SVG name): its keep probability, the logistic noise its
        keep sample was drawn with, and that sample, its width as a fraction of the base."""
        return {f"stroke-{index}": {"probability": float(self.probabilities[index]),
                                    "noise": float(self.noise[index]),
                                    "width": float(self.widths[index])}
                for index in np.flatnonzero(self.keep)}


@dataclass
class RowStart:
    """Where a row's training starts: network weights, optimiser states (None: a fresh Adam,
    or for MLP_simp fresh weights too), and the strokes still in play (N,) bool."""

    location: dict
    location_optimizer: dict | None
    simplify: dict | None
    simplify_optimizer: dict | None
    allowed: np.ndarray


@dataclass
class ChainPoint:
    """A column's checkpoint after row `row` (0: its fidelity sketch), taken when the shared
    augmentation stream had drawn `draws` steps: the chosen fidelity run (what the rows read
    of it: its cell, its strokes, its layer losses) and where the next row starts (None: the
    column is finished)."""

    row: int
    draws: int
    fidelity: FidelityResult | None = None
    start: RowStart | None = None


@dataclass
class RowCandidate:
    """One evaluation of one run of a row: the kept strokes at that step, their losses, and
    the state the next row would start from if this candidate is chosen."""

    seed: int
    step: int
    layer_losses: dict[int, float]
    clip: float
    sparsity: float
    expected: float
    probability_sum: float
    points: np.ndarray
    keep: np.ndarray
    #: None once the row is chosen (the next row has loaded it).
    state: RowStart | None = field(repr=False)
    #: (N,) the kept strokes' widths, keep probabilities and noise (see `SimplicityLevel`).
    widths: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    noise: np.ndarray | None = None

    def summary(self) -> dict:
        return {"seed": self.seed, "step": self.step, "clip": self.clip, "sparsity": self.sparsity,
                "layers": by_layer(self.layer_losses),
                "expected_strokes": self.expected, "strokes": int(self.keep.sum())}


@dataclass
class RowRun(TaskResult):
    """What one run (one seed) of a row hands back to its column."""

    column: SimplicityColumn
    row: int
    candidates: list[RowCandidate]

    def settle(self) -> Settled:
        return self.column.receive(self)


@dataclass
class StepDraw:
    """This step's soft keep mask (N,), differentiable, and the strokes on the canvas, kept
    from `sketch` for the losses; then the step's CLIP loss and sparsity, as numbers."""

    mask: torch.Tensor
    inside_count: float
    clip: float = 0.0
    sparsity: float = 0.0


@dataclass
class PendingEval:
    """An evaluation drawn by `pending_eval`, awaiting its clean losses: all strokes' points
    (N, 4, 2), the strokes kept (N,) bool, their widths as fractions of the base width and
    the noise drawn for them (`kept_widths`), the keep probabilities (N,), the expected
    count, the keep probabilities' sum over the strokes in play, and the strokes on the canvas."""

    points: torch.Tensor
    keep: torch.Tensor
    widths: torch.Tensor
    noise: torch.Tensor
    probabilities: torch.Tensor
    expected: float
    probability_sum: float
    inside_count: float


def cpu_copy(state: dict) -> dict:
    """A detached CPU copy of a (possibly nested) state dict, so snapshots cost no GPU memory."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {key: cpu_copy(value) for key, value in state.items()}
    if isinstance(state, list):
        return [cpu_copy(value) for value in state]
    return state


class SimplicityRowTask(Task):
    """One run of one simplicity row: MLP_loc and MLP_simp trained against the row's ratio."""

    stage = "simplicity"

    def __init__(self, column: SimplicityColumn, row: int, seed: int, start: RowStart) -> None:
        config, device = column.config, column.device
        self.owner = column
        self.config = config
        self.row = row
        self.seed = seed
        self.ratio = column.ratios[row - 1]
        self.target = column.region
        self.column = column.layer
        self.terms = column.terms
        self.layers = [layer for layer, _ in self.terms]
        self.total_steps = config.simplicity_steps
        self.steps_done = 0
        self.done = False
        self.location = LocationMLP(
            torch.from_numpy(column.initial_points).float(), config.canvas_size,
            config.location_hidden, config.location_residual_scale,
        ).to(device)
        self.location.load_state_dict(start.location)
        self.simplify = SimplifyMLP(column.stroke_count, config.simplify_hidden,
                                    config.simplify_input, seed=seed).to(device)
        if start.simplify is not None:
            self.simplify.load_state_dict(start.simplify)
        self.location_optimizer = torch.optim.Adam(self.location.parameters(), lr=config.lr_location)
        self.simplify_optimizer = torch.optim.Adam(self.simplify.parameters(), lr=config.lr_simplify)
        # Optimizer.load_state_dict keeps tensors already on the parameters' device and then
        # updates them in place: each run (one per seed) gets its own copy of the start.
        if start.location_optimizer is not None:
            self.location_optimizer.load_state_dict(copy.deepcopy(start.location_optimizer))
        if start.simplify_optimizer is not None:
            self.simplify_optimizer.load_state_dict(copy.deepcopy(start.simplify_optimizer))
        self.generator = torch.Generator().manual_seed(
            _chain_seed(seed, column.region, column.layer, row))
        # The kept strokes' widths draw from their own stream: training draws stay as they were.
        self.width_generator = torch.Generator().manual_seed(
            _chain_seed(seed, column.region, column.layer, row) + 1)
        self.allowed = torch.from_numpy(start.allowed.copy()).to(device)
        self.candidates: list[RowCandidate] = []
        self._eval_due = False
        self._draw: StepDraw | None = None
        self._pending: PendingEval | None = None

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
        self._draw = StepDraw(mask, float(inside.sum().clamp_min(1)))
        return points, self.config.stroke_width * mask

    def loss_terms(self, losses: LayerLosses) -> list[torch.Tensor]:
        """Each CLIP layer's raw loss, then L_sparse (reference models/loss.py)."""
        draw = self._draw
        sparsity = draw.mask.sum() / draw.inside_count
        clip = [losses[layer][0] for layer in self.layers]
        draw.clip = sum(float(term.detach()) for term in clip)
        draw.sparsity = float(sparsity.detach())
        return clip + [sparsity]

    def apply(self, gradients: list[list[torch.Tensor | None]],
              losses: LayerLosses) -> list[TaskResult]:
        # Total = sum_k c_k w_k L_k + w_s L_sparse + (L_sparse - r sum_k L_k)^2, with gradnorm's
        # w measured on MLP_simp and the raw sum of CLIP layer losses in the ratio term. Its
        # gradient is a combination of the terms' gradients: no extra CLIP backward.
        simplify_count = len(list(self.simplify.parameters()))
        coefficients = [weight for _, weight in self.terms] + [1.0]
        factors = gradnorm_factors(gradients, coefficients, slice(-simplify_count, None))
        excess = self._draw.sparsity - self.ratio * self._draw.clip
        factors = [factor - 2 * excess * self.ratio for factor in factors[:-1]] + [
            factors[-1] + 2 * excess]
        set_gradients(self.parameters(), gradients, factors)
        self.location_optimizer.step()
        self.simplify_optimizer.step()
        self.location_optimizer.zero_grad(set_to_none=True)
        self.simplify_optimizer.zero_grad(set_to_none=True)
        self.steps_done += 1
        self._eval_due = self.steps_done in self.config.simplicity_eval_steps()
        return []

    def pending_eval(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self._eval_due:
            return None
        with torch.no_grad():
            points = self.location()
            probabilities = self.simplify()
            inside = strokes_on_canvas(points, self.config.stroke_width, self.config.canvas_size)
            in_play = inside & self.allowed
            if not in_play.any():
                in_play = self.allowed if self.allowed.any() else torch.ones_like(self.allowed)
            keep, expected = choose_kept(probabilities, in_play, self.config.gumbel_temperature,
                                         self.config.keep_threshold)
            widths, noise = kept_widths(probabilities, keep, self.config.gumbel_temperature,
                                        self.config.keep_threshold, self.width_generator)
        self._pending = PendingEval(points, keep, widths, noise, probabilities.detach().cpu(),
                                    expected, float(probabilities[in_play].sum()),
                                    max(float(inside.sum()), 1.0))
        # Evaluated as drawn: the kept strokes at their widths, the sketch the user gets.
        return points, self.config.stroke_width * widths.to(points.device, points.dtype)

    def record_eval(self, losses: LayerLosses) -> list[TaskResult]:
        self._eval_due = False
        pending = self._pending
        keep = pending.keep.cpu().numpy()
        self.candidates.append(RowCandidate(
            seed=self.seed, step=self.steps_done,
            layer_losses=clean_layer_losses(self.terms, losses),
            clip=weighted_clean_loss(self.terms, losses),
            sparsity=float(keep.sum()) / pending.inside_count,
            expected=pending.expected, probability_sum=pending.probability_sum,
            points=pending.points.detach().cpu().double().numpy(), keep=keep,
            widths=pending.widths.numpy(), probabilities=pending.probabilities.double().numpy(),
            noise=pending.noise.numpy(),
            state=RowStart(
                location=cpu_copy(self.location.state_dict()),
                location_optimizer=cpu_copy(self.location_optimizer.state_dict()),
                simplify=cpu_copy(self.simplify.state_dict()),
                simplify_optimizer=cpu_copy(self.simplify_optimizer.state_dict()),
                allowed=keep,
            ),
        ))
        if self.steps_done < self.total_steps:
            return []
        self.done = True
        return [RowRun(self.owner, self.row, self.candidates)]


class SimplicityColumn:
    """The simplicity rows of one (region, layer) column, from its fidelity result.

    `start()` gives the tasks of row 1; `receive(run)` takes each finished run and, once every
    seed's run of a row is in, settles into that row's level and the tasks of the next row.
    """

    def __init__(self, fidelity: FidelityResult, config: SketchConfig, device: torch.device) -> None:
        cell = fidelity.cell
        self.fidelity = fidelity
        self.config = config
        self.device = device
        self.region = cell.region
        self.layer = cell.layer
        self.terms = loss_terms(config, cell.region, cell.layer)
        self.initial_points = cell.initial_points
        self.stroke_count = fidelity.points.shape[0]
        # r_1 = 1 / the raw sum of the column's clean layer losses at its best checkpoint
        # (reference scripts_utils.get_ratios_dict; a layer-4 object column counts L_4 once).
        self.ratios = ratio_schedule(1.0 / max(sum(fidelity.best_layer_losses.values()), 1e-12),
                                     config.simplicity_delta(cell.region, cell.layer),
                                     config.simplicity_rows)
        self.runs: dict[int, list[RowRun]] = {}
        self.started = time.perf_counter()

    @staticmethod
    def first_start(fidelity: FidelityResult) -> RowStart:
        """Row 1 loads MLP_loc's weights but gives it a fresh Adam (reference scripts/run_ratio.py)."""
        return RowStart(fidelity.mlp_state, None, None, None, fidelity.on_canvas.copy())

    def start(self) -> list[Task]:
        return self.row_tasks(1, self.first_start(self.fidelity)) if self.ratios else []

    def row_tasks(self, row: int, start: RowStart) -> list[Task]:
        """The runs (one per seed) of `row`, from `start`."""
        return [SimplicityRowTask(self, row, seed, start) for seed in self.config.seeds]

    def receive(self, run: RowRun) -> Settled:
        runs = self.runs.setdefault(run.row, [])
        runs.append(run)
        if len(runs) < len(self.config.seeds):
            return Settled()
        candidates = [c for one in runs for c in one.candidates]
        level, chosen = self._choose(run.row, candidates)
        del self.runs[run.row]
        logger.debug("%s L%d row %d: %d strokes", self.region, self.layer, level.row, level.strokes)
        if run.row < len(self.ratios):
            level.next_start = chosen.state
        tasks = [] if level.next_start is None else self.row_tasks(run.row + 1, level.next_start)
        # The networks' snapshots are tens of MB each: once the next row has loaded the chosen
        # one, none is needed (the finished runs stay referenced by the engine's results).
        for candidate in candidates:
            candidate.state = None
        return Settled([level], tasks)

    def _choose(self, row: int, candidates: list[RowCandidate]) -> tuple[SimplicityLevel, RowCandidate]:
        """The candidate with the lowest z-score sum over each layer's loss and L_sparse,
        pooled over all seeds' evaluations (reference sketch_utils.log_best_normalised_sketch)."""
        layers = [layer for layer, _ in self.terms]
        chosen = candidates[zscore_choice(
            [[c.layer_losses[layer] for layer in layers] + [c.sparsity] for c in candidates])]
        level = SimplicityLevel(
            region=self.region, layer=self.layer, row=row, ratio=self.ratios[row - 1],
            points=chosen.points, keep=chosen.keep, widths=chosen.widths,
            probabilities=chosen.probabilities, noise=chosen.noise, clip_loss=chosen.clip,
            layer_losses=chosen.layer_losses, sparsity=chosen.sparsity,
            expected_strokes=chosen.expected, probability_sum=chosen.probability_sum,
            seed=chosen.seed, chosen_step=chosen.step,
            seconds=time.perf_counter() - self.started,
            eval_losses=[c.summary() for c in candidates], column=self,
        )
        self.started = time.perf_counter()
        return level, chosen


def _chain_seed(seed: int, region: str, layer: int, row: int) -> int:
    """A stable per-run seed for the Gumbel noise (not Python's salted hash)."""
    code = sum((index + 1) * ord(char) for index, char in enumerate(region))
    return (seed * 1_000_003 + code * 101 + layer * 7 + row * 1009) % (2**63 - 1)
